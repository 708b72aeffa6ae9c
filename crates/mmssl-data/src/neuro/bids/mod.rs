//! From a BIDS dataset to the cohort manifest that `--dataset oasis3` reads: each session's
//! T1w image and resting-state BOLD series are found by their BIDS entities, ALFF and fALFF are
//! computed from the BOLD series ([`falff`]) with the repetition time of its JSON sidecar, the
//! maps are written as a BIDS derivative dataset, and labels and covariates come from
//! `participants.tsv` (or a subject's `sessions.tsv`).
//!
//! ```text
//! DERIV/
//!   dataset_description.json          DatasetType "derivative", GeneratedBy mmssl
//!   manifest.csv                      subject, session, t1, falff, label, covariates...
//!   bids_report.json                  the settings, every session used, every session skipped
//!   sub-01/ses-1/func/
//!     sub-01_ses-1_task-rest_falff.nii.gz   (+ .json: sources, TR, band, detrending)
//!     sub-01_ses-1_task-rest_alff.nii.gz    (+ .json)
//! ```
//!
//! Nothing is dropped silently: a session that cannot be used (no T1w, no BOLD series of the
//! task, a 3D "BOLD" file, a repetition time missing from the sidecar or contradicting the
//! header, an unreadable file, several runs with [`RunChoice::Refuse`]) is listed in
//! [`BidsReport::skipped`] with its reason; with [`BidsConfig::strict`] it is an error instead.
//! A file name that does not parse as BIDS, or whose entities contradict its folder, is an
//! error naming the file. Maps already written with the same settings and sources are reused
//! (unless [`BidsConfig::overwrite`]), so an interrupted conversion continues where it stopped.

mod labels;
mod layout;
mod maps;
#[cfg(test)]
mod tests;

pub use layout::{BidsFile, BidsName, BidsSession};

pub use labels::parse_label_map;

use crate::error::{DataError, Result};
use crate::neuro::cohort::Diagnosis;
use crate::neuro::falff::FalffConfig;
use labels::{Labels, write_manifest};
use layout::{Filters, scan};
use maps::{compute, plan};
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
            overwrite: false,
            strict: false,
        }
    }
}

/// A session that went into the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BidsUsed {
    /// Subject label.
    pub subject: String,
    /// Session label (`1` in a dataset without sessions).
    pub session: String,
    /// The T1w image.
    pub t1: PathBuf,
    /// The BOLD series the maps come from.
    pub bold: Vec<PathBuf>,
    /// The fALFF map.
    pub falff: PathBuf,
    /// The ALFF map.
    pub alff: PathBuf,
    /// The repetition time, in seconds.
    pub tr: f64,
    /// The label as the manifest writes it (`HC`, `AD`, `other`, empty).
    pub label: String,
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
    let filters = Filters {
        task: &config.task,
        t1_acq: config.t1_acq.as_deref(),
        bold_acq: config.bold_acq.as_deref(),
    };
    let sessions = scan(root, &filters)?;
    if sessions.is_empty() {
        return Err(DataError::format(
            root,
            "no subject folders (sub-<label>/): is this the root of a BIDS dataset?",
        ));
    }
    let labels = Labels::read(root, &sessions, config)?;
    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let out = std::path::absolute(out).map_err(|e| DataError::io(out, e))?;
    // Plan every session first (cheap: headers and sidecars), then compute in parallel.
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    for s in &sessions {
        match plan(root, &out, s, config) {
            Ok(p) => planned.push(p),
            Err(reason) => {
                let skip = BidsSkipped {
                    subject: s.subject.clone(),
                    session: s.session.clone().unwrap_or_default(),
                    reason,
                };
                if config.strict {
                    return Err(DataError::format(&s.dir, skip.reason));
                }
                skipped.push(skip);
            }
        }
    }
    let total = planned.len();
    let done = AtomicUsize::new(0);
    let results: Vec<std::result::Result<bool, String>> = planned
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
            Ok(computed) => {
                let label = labels.label(&p.subject, p.session.as_deref());
                used.push(BidsUsed {
                    subject: p.subject,
                    session: p.session.unwrap_or_else(|| "1".into()),
                    t1: p.t1,
                    bold: p.bold,
                    falff: p.falff,
                    alff: p.alff,
                    tr: p.tr,
                    label: label.as_str().to_string(),
                    computed,
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
    if used.is_empty() {
        let reasons: Vec<String> = skipped
            .iter()
            .take(5)
            .map(|s| format!("sub-{} ses-{}: {}", s.subject, s.session, s.reason))
            .collect();
        return Err(DataError::format(
            root,
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
