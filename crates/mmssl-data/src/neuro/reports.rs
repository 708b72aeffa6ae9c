//! What the data commands print, and the template they default to: the summaries of
//! [`synth_cohort`](crate::synth_cohort), [`synth_fmriprep`](crate::synth_fmriprep) and
//! [`bids_to_manifest`](crate::bids_to_manifest), the settings of a [`BidsConfig`] in words,
//! and the MNI152 template bundled with this crate.

use crate::error::{DataError, Result};
use crate::neuro::bids::{AnatImage, BidsConfig, BidsReport, Standardise, TrSource};
use crate::neuro::synth::{SynthConfig, SynthReport};
use crate::neuro::synth_fmriprep::FmriprepSynthReport;
use std::path::PathBuf;

/// The MNI ICBM152 T1 template and grey-matter map shipped in `mmssl-data/data/mni152`, found
/// through the source path fixed at build time; [`DataError::Missing`] when they are not there
/// (a program moved away from its source tree).
pub fn bundled_template() -> Result<(PathBuf, PathBuf)> {
    let t1 = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/mni152/mni152_t1_1mm.nii.gz"
    ));
    let gm = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/mni152/mni152_gm_1mm.nii.gz"
    ));
    for p in [&t1, &gm] {
        if !p.is_file() {
            return Err(DataError::Missing {
                path: p.clone(),
                hint: "the MNI152 template bundled with mmssl-data is not where it was at build \
                       time (this program was moved away from its source tree); give an \
                       MNI-space T1 template instead (`--t1 FILE [--gm FILE]`)"
                    .into(),
            });
        }
    }
    Ok((t1, gm))
}

/// The fewest subjects a synthetic cohort can have for the protocol's cohorts: per diagnosis
/// one held out (a fifth, rounded) and five for the five folds.
pub const MIN_SYNTH_SUBJECTS: usize = 12;

/// The batch size the printed `next:` command uses: a validation fold of the smallest cohort
/// holds 2 subjects, so at least 2 sessions, and a set must fill at least one batch.
const SYNTH_BATCH: usize = 2;

impl SynthConfig {
    /// Refuses a cohort too small for the protocol's split ([`MIN_SYNTH_SUBJECTS`]):
    /// [`synth_cohort`](crate::synth_cohort) itself writes any cohort of two or more.
    pub fn check_protocol_size(&self) -> Result<()> {
        if self.subjects < MIN_SYNTH_SUBJECTS {
            return Err(DataError::invalid(
                "subjects",
                self.subjects.to_string(),
                format!(
                    "at least {MIN_SYNTH_SUBJECTS}: the protocol holds out a fifth of each \
                     diagnosis and deals the rest into 5 folds that each need both diagnoses"
                ),
            ));
        }
        Ok(())
    }
}

impl SynthReport {
    /// What `mmssl data synth-cohort` prints: the counts, the manifest and a command that
    /// trains on the cohort.
    pub fn summary(&self) -> String {
        let r = self;
        format!(
            "synthetic cohort: {} subjects ({} HC, {} AD), {} sessions, volumes {}\n\
         manifest: {}\n\
         next: mmssl run --dataset oasis3 --manifest {} --objective CR-XX --epochs 2 \
         --batch-size {SYNTH_BATCH} --out RUN",
            r.subjects,
            r.hc,
            r.ad,
            r.sessions,
            r.shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(" x "),
            r.manifest.display(),
            r.manifest.display()
        )
    }
}

impl FmriprepSynthReport {
    /// What `mmssl data synth-fmriprep` prints: the series written, where, and the command
    /// that computes their maps.
    pub fn summary(&self) -> String {
        let subjects = self
            .series
            .iter()
            .map(|s| &s.subject)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        format!(
            "synthetic fMRIPrep study: {} series of {subjects} subjects in {}\n\
             derivatives: {}\n\
             next: mmssl data bids {} --derivatives {} --out MAPS",
            self.series.len(),
            self.bids.display(),
            self.derivatives.display(),
            self.bids.display(),
            self.derivatives.display()
        )
    }
}

impl BidsConfig {
    /// The settings in force, defaults included, in one paragraph (what `mmssl data bids`
    /// prints before its summary).
    pub fn describe(&self) -> String {
        let config = self;
        let form = match config.standardise {
            Standardise::None => "fALFF as computed",
            Standardise::Z => "fALFF z-scored inside the brain mask (desc-zstd)",
            Standardise::Mean => "fALFF divided by its brain mean (desc-meanstd)",
        };
        let common = format!(
            "band {}-{} Hz, {}, TR from the {} when it disagrees with the {}, at least {:.0}% of \
         the brain inside the BOLD field of view, smoothing {}, manifest: {form}",
            config.falff.band[0],
            config.falff.band[1],
            if config.falff.detrend {
                "mean and linear trend removed"
            } else {
                "mean removed"
            },
            match config.tr_from {
                TrSource::Sidecar => "sidecar",
                TrSource::Header => "header",
            },
            match config.tr_from {
                TrSource::Sidecar => "header",
                TrSource::Header => "sidecar",
            },
            100.0 * config.min_overlap,
            if config.smooth_fwhm > 0.0 {
                format!("{} mm FWHM inside the brain mask", config.smooth_fwhm)
            } else {
                "none".into()
            },
        );
        match &config.derivatives {
            None => format!("raw BIDS series; {common}"),
            Some(d) => {
                let c = &config.confounds;
                let confounds = if c.terms.is_empty() {
                    "none".to_string()
                } else {
                    format!("{} ({} columns)", c.terms.join("+"), c.columns().len())
                };
                let scrub = match c.fd_threshold {
                    Some(fd) => format!(
                        "frames with framewise displacement > {fd} mm{}, at least {:.0}% kept",
                        if c.min_segment > 1 {
                            format!(" and kept runs shorter than {} frames", c.min_segment)
                        } else {
                            String::new()
                        },
                        100.0 * c.min_kept
                    ),
                    None => "none (non-steady-state frames only)".into(),
                };
                format!(
                    "derivatives {}: space {}, BOLD desc-{}, anatomical {}; confounds {confounds}; \
                 scrubbing {scrub}; {common}",
                    d.display(),
                    config.space,
                    config.desc,
                    match config.anat {
                        AnatImage::T1w => "preprocessed T1w inside its brain mask",
                        AnatImage::GreyMatter => "grey-matter probability map",
                    }
                )
            }
        }
    }
}

impl BidsReport {
    /// The summary `mmssl data bids` prints: the warnings, counts, every choice made (the
    /// same choice of several sessions on one line), the frames kept after censoring, every
    /// skipped session with its reason, and the next command.
    pub fn summary(&self) -> String {
        let report = self;
        let count = |l: &str| report.used.iter().filter(|u| u.label == l).count();
        let (computed, reused) = report.computed_reused();
        let mut out = String::new();
        for w in &report.warnings {
            out += &format!("WARNING: {w}\n");
        }
        out += &format!(
            "{} sessions of {} subjects in {} (HC {}, AD {}, other {}, unlabelled {}; label column: {})\n\
         maps computed for {computed} sessions, reused for {reused}\n",
            report.used.len(),
            report
                .used
                .iter()
                .map(|u| &u.subject)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            report.manifest.display(),
            count("HC"),
            count("AD"),
            count("other"),
            count(""),
            report.label_column.as_deref().unwrap_or("none"),
        );
        // Every choice; the same choice of several sessions (labels aside) on one line.
        let mut choices: Vec<(String, Vec<(String, &str)>)> = Vec::new();
        for u in &report.used {
            for c in &u.choices {
                let general = c
                    .replace(&format!("sub-{}", u.subject), "sub-*")
                    .replace(&format!("ses-{}", u.session), "ses-*");
                let who = (format!("sub-{} ses-{}", u.subject, u.session), c.as_str());
                match choices.iter_mut().find(|(g, _)| *g == general) {
                    Some((_, list)) => list.push(who),
                    None => choices.push((general, vec![who])),
                }
            }
        }
        if !choices.is_empty() {
            out += "choices made:\n";
            for (general, who) in choices {
                match who.as_slice() {
                    [(session, own)] => out += &format!("  {session}: {own}\n"),
                    _ => {
                        let names: Vec<&str> = who.iter().map(|(s, _)| s.as_str()).collect();
                        out += &format!(
                            "  {} sessions ({}): {general}\n",
                            who.len(),
                            names.join(", ")
                        );
                    }
                }
            }
        }
        let scrubbed: Vec<String> = report
            .used
            .iter()
            .flat_map(|u| {
                u.regression
                    .iter()
                    .filter(|r| r.kept < r.frames)
                    .map(move |r| {
                        format!(
                            "sub-{} ses-{} {}/{}",
                            u.subject, u.session, r.kept, r.frames
                        )
                    })
            })
            .collect();
        if !scrubbed.is_empty() {
            out += &format!("frames kept after censoring: {}\n", scrubbed.join(", "));
        }
        if !report.skipped.is_empty() {
            out += &format!("{} sessions skipped:\n", report.skipped.len());
            for s in &report.skipped {
                let ses = if s.session.is_empty() {
                    String::new()
                } else {
                    format!(" ses-{}", s.session)
                };
                out += &format!("  sub-{}{ses}: {}\n", s.subject, s.reason);
            }
        }
        out += &format!(
            "next: mmssl run --dataset oasis3 --manifest {}",
            report.manifest.display()
        );
        out
    }
}
