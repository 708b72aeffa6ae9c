//! From a BIDS dataset to the cohort manifest that `--dataset oasis3` reads: each session's
//! anatomical image and resting-state BOLD series are found by their BIDS entities, ALFF and
//! fALFF are computed from the BOLD series ([`falff`]) with the repetition time of its JSON
//! sidecar (or header), the maps are written as a BIDS derivative dataset, and labels and
//! covariates come from `participants.tsv` (or a subject's `sessions.tsv`).
//!
//! **Two kinds of input.** With [`BidsConfig::derivatives`] the images are fMRIPrep's (or any
//! pipeline writing the BIDS-Derivatives layout: C-PAC, ...): the preprocessed BOLD series of
//! one space and description (`*_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz`), its
//! brain mask (`*_desc-brain_mask`), its confounds table (`*_desc-confounds_timeseries.tsv`),
//! and the preprocessed T1w in the same space (or its grey-matter probability map,
//! [`AnatImage`]); confounds are regressed and frames scrubbed ([`crate::ConfoundsConfig`]),
//! the maps are computed inside the brain mask, optionally smoothed, standardised, and named
//! with the input's `space-`. Without it the images are the raw dataset's, and nothing of
//! that preprocessing happens: [`BidsReport::warnings`] says so.
//!
//! ```text
//! DERIV/
//!   dataset_description.json          DatasetType "derivative", GeneratedBy mmssl
//!   manifest.csv                      subject, session, t1, falff, label, covariates...
//!   bids_report.json                  the settings, every session used and skipped, every choice
//!   sub-01/anat/
//!     sub-01_space-MNI152NLin2009cAsym_desc-brain_T1w.nii.gz   (derivatives: T1w x brain mask)
//!   sub-01/ses-1/func/
//!     sub-01_ses-1_task-rest_space-MNI152NLin2009cAsym_falff.nii.gz              (+ .json)
//!     sub-01_ses-1_task-rest_space-MNI152NLin2009cAsym_desc-zstd_falff.nii.gz    z-scored
//!     sub-01_ses-1_task-rest_space-MNI152NLin2009cAsym_desc-meanstd_falff.nii.gz / mean
//!     ... the same three for ALFF
//! ```
//! (Maps of a raw series carry no `space-`: in BIDS-Derivatives an image without one is in
//! the space of its raw source.)
//!
//! Nothing is dropped silently, and every automatic choice is said: a session that cannot be
//! used (no anatomical image, no BOLD series of the task, a 3D "BOLD" file, no repetition
//! time, a BOLD field of view that misses the brain, an unreadable file, several runs with
//! [`RunChoice::Refuse`]) is listed in [`BidsReport::skipped`] with its reason (with
//! [`BidsConfig::strict`] it is an error instead); the choices made for a session used (which
//! run, which T1w for a session without one, which repetition time when sidecar and header
//! disagree, duplicate `.nii` / `.nii.gz` copies) are in [`BidsUsed::choices`], and problems
//! of the dataset (no `participants.tsv`, a non-conformant `sessions.tsv`, which is then
//! ignored) in [`BidsReport::warnings`]. A file name that does not parse as BIDS, or whose
//! entities contradict its folder, is an error naming the file. Maps already written with the
//! same settings and sources are reused (unless [`BidsConfig::overwrite`]), so an interrupted
//! conversion continues where it stopped.

#[cfg(test)]
mod fmriprep_tests;
mod labels;
mod layout;
#[cfg(test)]
mod layout_tests;
mod maps;
mod plan;
#[cfg(test)]
mod tests;

pub use layout::{AnatImage, BidsFile, BidsName, BidsSession};

pub use labels::parse_label_map;

use crate::error::{DataError, Result};
use crate::neuro::cohort::Diagnosis;
use crate::neuro::confounds::{ConfoundsConfig, Regression};
use crate::neuro::falff::FalffConfig;
use labels::{Labels, write_manifest};
use layout::{DerivativeFilters, Filters, scan};
use maps::{compute, prepare_anat};
use plan::{AnatPoints, plan, plan_anat};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What to do when a session has several candidate images (runs, or acquisitions when no
/// acquisition filter is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunChoice {
    /// The first (lowest acquisition label, then lowest run number).
    #[default]
    First,
    /// The last.
    Last,
    /// Every BOLD run, their ALFF and fALFF maps averaged voxel by voxel (the runs must share
    /// a grid); the T1w image is the first.
    Mean,
    /// Skip the session, saying which files compete.
    Refuse,
}

/// Settings of [`bids_to_manifest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BidsConfig {
    /// The BOLD series' task label (`rest`: `*_task-rest_bold.nii.gz`).
    pub task: String,
    /// Only T1w images with this acquisition label (`acq-<label>`).
    pub t1_acq: Option<String>,
    /// Only BOLD series with this acquisition label.
    pub bold_acq: Option<String>,
    /// Several candidates in a session.
    pub runs: RunChoice,
    /// The column of `participants.tsv` (or of a subject's `sessions.tsv`, which wins) that
    /// holds the diagnosis; `None` tries `diagnosis`, `group` and `dx` and leaves every session
    /// unlabelled when none exists.
    pub label_column: Option<String>,
    /// Values of that column and the class each means (`"Cognitively normal" -> HC`). Values
    /// not listed are read as `HC`, `AD` or `other` (any case); empty and `n/a` mean no label
    /// (the session is used for pretraining only). Any other value is an error naming it.
    pub label_map: BTreeMap<String, Diagnosis>,
    /// Further columns copied into the manifest (`age`, `sex`), from `sessions.tsv` where it
    /// has them, else `participants.tsv`.
    pub covariates: Vec<String>,
    /// The ALFF/fALFF settings (its `tr` must be `None`: the sidecars give it).
    pub falff: FalffConfig,
    /// A derivative dataset of the BIDS dataset (fMRIPrep's output folder) whose preprocessed
    /// images to use; the BIDS dataset itself then gives labels, covariates and the raw
    /// sidecars. `None`: the raw images.
    pub derivatives: Option<PathBuf>,
    /// The space of the derivative images (`MNI152NLin2009cAsym`; `T1w` for the subject's
    /// anatomical space).
    pub space: String,
    /// The description of the derivative BOLD series (`preproc`).
    pub desc: String,
    /// The anatomical image of a derivative dataset.
    pub anat: AnatImage,
    /// Confound regression and scrubbing of derivative series (needs their confounds table).
    pub confounds: ConfoundsConfig,
    /// Gaussian smoothing of the maps inside the brain mask, FWHM in mm (0: none).
    pub smooth_fwhm: f64,
    /// The form of the fALFF map the manifest names (all three are written).
    pub standardise: Standardise,
    /// Which repetition time wins when the sidecar and the header disagree.
    pub tr_from: TrSource,
    /// The smallest fraction of the anatomical brain mask that must lie inside the BOLD field
    /// of view (0.8).
    pub min_overlap: f64,
    /// Compute every map again even where one with the same settings exists.
    pub overwrite: bool,
    /// Fail on the first session that cannot be used instead of skipping it.
    pub strict: bool,
}

impl Default for BidsConfig {
    fn default() -> Self {
        BidsConfig {
            task: "rest".into(),
            t1_acq: None,
            bold_acq: None,
            runs: RunChoice::First,
            label_column: None,
            label_map: BTreeMap::new(),
            covariates: Vec::new(),
            falff: FalffConfig::default(),
            derivatives: None,
            space: "MNI152NLin2009cAsym".into(),
            desc: "preproc".into(),
            anat: AnatImage::T1w,
            confounds: ConfoundsConfig::default(),
            smooth_fwhm: 0.0,
            standardise: Standardise::None,
            tr_from: TrSource::Sidecar,
            min_overlap: 0.8,
            overwrite: false,
            strict: false,
        }
    }
}

impl BidsConfig {
    /// The settings for fMRIPrep derivatives at `derivatives`: space `MNI152NLin2009cAsym`,
    /// BOLD `desc-preproc`, the preprocessed T1w, 24 motion parameters + white matter + CSF
    /// regressed (`24p+wm-csf`), no scrubbing, no smoothing, z-scored fALFF in the manifest.
    pub fn fmriprep(derivatives: impl Into<PathBuf>) -> Self {
        BidsConfig {
            derivatives: Some(derivatives.into()),
            confounds: ConfoundsConfig {
                terms: vec!["motion24".into(), "wm-csf".into()],
                ..Default::default()
            },
            standardise: Standardise::Z,
            ..Default::default()
        }
    }
}

/// The form of a map: as computed, z-scored inside the brain mask, or divided by its mean
/// there (the "standardised" ALFF/fALFF of DPABI and C-PAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Standardise {
    /// As computed (`*_falff.nii.gz`).
    #[default]
    None = 0,
    /// `(v - mean) / sd` inside the brain (`*_desc-zstd_falff.nii.gz`).
    Z = 1,
    /// `v / mean` inside the brain (`*_desc-meanstd_falff.nii.gz`).
    Mean = 2,
}

/// Where the repetition time comes from when the JSON sidecar and the NIfTI header disagree
/// (either alone is used when the other lacks it, and a disagreement is reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrSource {
    /// The sidecar's `RepetitionTime` (BIDS: the sidecar is authoritative).
    #[default]
    Sidecar,
    /// The header's `pixdim[4]`.
    Header,
}

/// A session that went into the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BidsUsed {
    /// Subject label.
    pub subject: String,
    /// Session label (`1` in a dataset without sessions).
    pub session: String,
    /// The anatomical image the manifest names (a derivative T1w: its masked copy under the
    /// output folder).
    pub t1: PathBuf,
    /// Where the anatomical image comes from when the session has none of its own.
    pub t1_from: Option<String>,
    /// The BOLD series the maps come from.
    pub bold: Vec<PathBuf>,
    /// The fALFF map the manifest names ([`BidsConfig::standardise`]).
    pub falff: PathBuf,
    /// The ALFF map of the same form.
    pub alff: PathBuf,
    /// Every map written: `[fALFF, ALFF]` x `[raw, z-scored, mean-divided]`.
    pub maps: Vec<PathBuf>,
    /// The repetition time, in seconds.
    pub tr: f64,
    /// The fraction of the anatomical brain inside the BOLD field of view (the smallest over
    /// averaged runs).
    pub overlap: f64,
    /// The confound regression of each series (empty without a confounds table; read back
    /// from the maps' sidecar when they were reused).
    pub regression: Vec<Regression>,
    /// The label as the manifest writes it (`HC`, `AD`, `other`, empty).
    pub label: String,
    /// Automatic choices made for this session, in words.
    pub choices: Vec<String>,
    /// Whether the maps were computed now (`false`: reused).
    pub computed: bool,
}

/// A session left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidsSkipped {
    /// Subject label.
    pub subject: String,
    /// Session label (empty in a dataset without sessions).
    pub session: String,
    /// Why, naming the file concerned.
    pub reason: String,
}

/// What [`bids_to_manifest`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BidsReport {
    /// The manifest written.
    pub manifest: PathBuf,
    /// The label column used, if any.
    pub label_column: Option<String>,
    /// Sessions in the manifest.
    pub used: Vec<BidsUsed>,
    /// Sessions left out, with their reasons.
    pub skipped: Vec<BidsSkipped>,
    /// Problems of the dataset as a whole, and the note that raw series are not preprocessed.
    pub warnings: Vec<String>,
}

impl BidsReport {
    /// Sessions whose maps were computed now, and reused.
    pub fn computed_reused(&self) -> (usize, usize) {
        let computed = self.used.iter().filter(|u| u.computed).count();
        (computed, self.used.len() - computed)
    }
}

/// Converts the BIDS dataset at `root` into ALFF/fALFF derivatives and a cohort manifest under
/// `out` (see the module documentation). Sessions are processed in parallel on rayon's pool;
/// `progress(done, total)` is called as each session ends (from any thread).
pub fn bids_to_manifest(
    root: &Path,
    out: &Path,
    config: &BidsConfig,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<BidsReport> {
    if config.falff.tr.is_some() {
        return Err(DataError::InvalidParameter {
            name: "falff.tr",
            value: format!("{:?}", config.falff.tr),
            reason: "the repetition time of a BIDS series comes from its sidecar".into(),
        });
    }
    if let Some(d) = &config.derivatives {
        if !d.is_dir() {
            return Err(DataError::format(
                d,
                "not a folder (a derivative dataset: fMRIPrep's output folder)",
            ));
        }
        if !(config.min_overlap.is_finite() && (0.0..=1.0).contains(&config.min_overlap)) {
            return Err(DataError::InvalidParameter {
                name: "min_overlap",
                value: config.min_overlap.to_string(),
                reason: "a fraction in [0, 1]".into(),
            });
        }
    } else if config.confounds.is_active() {
        return Err(DataError::InvalidParameter {
            name: "confounds",
            value: config.confounds.terms.join("+"),
            reason: "confound regression and scrubbing need the confounds tables of a \
                     derivative dataset (--derivatives)"
                .into(),
        });
    }
    if !(config.smooth_fwhm.is_finite() && config.smooth_fwhm >= 0.0) {
        return Err(DataError::InvalidParameter {
            name: "smooth_fwhm",
            value: config.smooth_fwhm.to_string(),
            reason: "a non-negative width in millimetres".into(),
        });
    }
    let filters = Filters {
        task: &config.task,
        t1_acq: config.t1_acq.as_deref(),
        bold_acq: config.bold_acq.as_deref(),
        derivative: config.derivatives.as_ref().map(|_| DerivativeFilters {
            space: &config.space,
            desc: &config.desc,
            anat: config.anat,
        }),
    };
    let images = config.derivatives.as_deref().unwrap_or(root);
    if config.derivatives.is_some() && !root.is_dir() {
        return Err(DataError::format(
            root,
            "not a folder (the raw BIDS dataset, for participants.tsv and sessions.tsv)",
        ));
    }
    let sessions = scan(images, &filters)?;
    if sessions.is_empty() {
        return Err(DataError::format(
            images,
            "no subject folders (sub-<label>/): is this the root of a BIDS dataset?",
        ));
    }
    let mut warnings = Vec::new();
    if config.derivatives.is_none() {
        warnings.push(
            "NO PREPROCESSING: fALFF is computed from the raw BOLD series (no motion \
             correction, no registration to the T1w or a template, no brain mask, no confound \
             regression). Studies compute fALFF on preprocessed series: run fMRIPrep and pass \
             its output folder with --derivatives."
                .to_string(),
        );
    }
    let labels = Labels::read(root, &sessions, config, &mut warnings)?;
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let out = std::path::absolute(out).map_err(|e| DataError::io(out, e))?;
    let mut skipped = Vec::new();
    let skip = |s: &BidsSession, reason: String, skipped: &mut Vec<BidsSkipped>| {
        let skip = BidsSkipped {
            subject: s.subject.clone(),
            session: s.session.clone().unwrap_or_default(),
            reason,
        };
        if config.strict {
            return Err(DataError::format(&s.dir, skip.reason));
        }
        skipped.push(skip);
        Ok(())
    };
    // Anatomical images first: each distinct file once (in parallel), for its brain's extent
    // and, for a derivative T1w, its masked copy.
    let mut anat_plans = Vec::new();
    for s in &sessions {
        match plan_anat(&out, s, config) {
            Ok(a) => anat_plans.push(Some(a)),
            Err(reason) => {
                skip(s, reason, &mut skipped)?;
                anat_plans.push(None);
            }
        }
    }
    let mut distinct: Vec<&plan::AnatPlan> = Vec::new();
    for a in anat_plans.iter().flatten() {
        if !distinct.iter().any(|d| d.source == a.source) {
            distinct.push(a);
        }
    }
    let prepared: Vec<(PathBuf, std::result::Result<AnatPoints, String>)> = distinct
        .par_iter()
        .map(|a| (a.source.clone(), prepare_anat(a, config)))
        .collect();
    // Plan every session (cheap: headers and sidecars), then compute in parallel.
    let mut planned = Vec::new();
    for (s, a) in sessions.iter().zip(&anat_plans) {
        let Some(a) = a else { continue };
        let points = match prepared.iter().find(|(p, _)| *p == a.source) {
            Some((_, Ok(points))) => points,
            Some((_, Err(reason))) => {
                skip(s, reason.clone(), &mut skipped)?;
                continue;
            }
            None => continue,
        };
        match plan(root, &out, s, a, points, config) {
            Ok(p) => planned.push(p),
            Err(reason) => skip(s, reason, &mut skipped)?,
        }
    }
    let total = planned.len();
    let done = AtomicUsize::new(0);
    let results: Vec<std::result::Result<maps::Computed, String>> = planned
        .par_iter()
        .map(|p| {
            let r = compute(p, config);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            r
        })
        .collect();
    let mut used = Vec::new();
    for (p, r) in planned.into_iter().zip(results) {
        match r {
            Ok(c) => {
                let label = labels.label(&p.subject, p.session.as_deref());
                let form = config.standardise as usize;
                used.push(BidsUsed {
                    falff: p.maps[0][form].clone(),
                    alff: p.maps[1][form].clone(),
                    maps: p.maps.iter().flatten().cloned().collect(),
                    subject: p.subject,
                    session: p.session.unwrap_or_else(|| "1".into()),
                    t1: p.t1,
                    t1_from: p.t1_from,
                    bold: p.bold,
                    tr: p.tr,
                    overlap: p.overlap,
                    regression: c.regression,
                    label: label.as_str().to_string(),
                    choices: p.notes,
                    computed: c.computed,
                })
            }
            Err(reason) => {
                if config.strict {
                    return Err(DataError::format(&p.bold[0], reason));
                }
                skipped.push(BidsSkipped {
                    subject: p.subject,
                    session: p.session.unwrap_or_default(),
                    reason,
                });
            }
        }
    }
    skipped.sort_by(|a, b| (&a.subject, &a.session).cmp(&(&b.subject, &b.session)));
    if used.is_empty() {
        let reasons: Vec<String> = skipped
            .iter()
            .take(5)
            .map(|s| format!("sub-{} ses-{}: {}", s.subject, s.session, s.reason))
            .collect();
        return Err(DataError::format(
            images,
            format!("no session could be used; {}", reasons.join("; ")),
        ));
    }
    let manifest = out.join("manifest.csv");
    write_manifest(&manifest, &out, &used, &labels, config)?;
    write_description(root, &out)?;
    let report = BidsReport {
        manifest,
        label_column: labels.column.clone(),
        used,
        skipped,
        warnings,
    };
    let path = out.join("bids_report.json");
    let text = serde_json::to_string_pretty(&serde_json::json!({
        "settings": config,
        "report": report,
    }))
    .map_err(|e| DataError::format(&path, e.to_string()))?;
    write_atomic(&path, text.as_bytes())?;
    Ok(report)
}

pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

/// The derivative dataset's `dataset_description.json`.
fn write_description(root: &Path, out: &Path) -> Result<()> {
    let name = std::fs::read_to_string(root.join("dataset_description.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("Name").and_then(|n| n.as_str()).map(str::to_string))
        .unwrap_or_else(|| "BIDS dataset".into());
    let description = serde_json::json!({
        "Name": format!("ALFF and fALFF of {name}"),
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": "mmssl",
            "Version": env!("CARGO_PKG_VERSION"),
            "Description": "ALFF/fALFF of the resting-state BOLD series, and the cohort manifest of mmssl --dataset oasis3",
        }],
        "SourceDatasets": [{ "URL": format!("file://{}", std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()).display()) }],
    });
    let path = out.join("dataset_description.json");
    let text = serde_json::to_string_pretty(&description)
        .map_err(|e| DataError::format(&path, e.to_string()))?;
    write_atomic(&path, text.as_bytes())
}
