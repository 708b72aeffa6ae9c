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

mod layout;
#[cfg(test)]
mod tests;

pub use layout::{BidsFile, BidsName, BidsSession};

use crate::error::{DataError, Result};
use crate::formats::nifti::{read_nifti, read_nifti_header, write_nifti};
use crate::neuro::cohort::Diagnosis;
use crate::neuro::falff::{AlffReduction, FalffConfig, falff};
use layout::{Filters, Table, scan, sidecar};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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

/// The settings a map's sidecar records; equal settings and sources mean the map is reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MapSettings {
    sources: Vec<String>,
    repetition_time: f64,
    band_hz: [f64; 2],
    detrend: bool,
    alff_reduction: AlffReduction,
    runs: RunChoice,
}

/// A session ready to compute: what was chosen, or why it cannot be used.
struct Planned {
    subject: String,
    session: Option<String>,
    t1: PathBuf,
    bold: Vec<PathBuf>,
    tr: f64,
    falff: PathBuf,
    alff: PathBuf,
    settings: MapSettings,
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

/// Chooses one candidate (or all, for [`RunChoice::Mean`]); the error says which compete.
fn choose<'a>(
    files: &'a [BidsFile],
    runs: RunChoice,
    what: &str,
) -> std::result::Result<Vec<&'a BidsFile>, String> {
    match (files.len(), runs) {
        (0, _) => Err(format!("no {what}")),
        (1, _) => Ok(vec![&files[0]]),
        (_, RunChoice::First) => Ok(vec![&files[0]]),
        (_, RunChoice::Last) => Ok(vec![&files[files.len() - 1]]),
        (_, RunChoice::Mean) => Ok(files.iter().collect()),
        (n, RunChoice::Refuse) => Err(format!(
            "{n} candidates for the {what} ({}); choose with --runs first|last|mean or an \
             acquisition filter",
            files
                .iter()
                .map(|f| f
                    .path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Checks a session's files and decides what to compute; `Err` is the reason to skip it.
fn plan(
    root: &Path,
    out: &Path,
    s: &BidsSession,
    config: &BidsConfig,
) -> std::result::Result<Planned, String> {
    let t1_runs = match config.runs {
        RunChoice::Mean => RunChoice::First,
        other => other,
    };
    let t1 = choose(&s.t1w, t1_runs, "T1w image (anat/*_T1w.nii[.gz])")?[0];
    let header = read_nifti_header(&t1.path).map_err(|e| e.to_string())?;
    if header.dims.len() > 3 && header.dims[3..].iter().any(|&d| d > 1) {
        return Err(format!(
            "{}: a T1w image must be 3D, this one has dimensions {:?}",
            t1.path.display(),
            header.dims
        ));
    }
    let what = format!(
        "task-{} BOLD series (func/*_task-{}_bold.nii[.gz])",
        config.task, config.task
    );
    let bolds = choose(&s.bold, config.runs, &what)?;
    let mut tr: Option<f64> = None;
    for b in &bolds {
        let meta = sidecar(root, b).map_err(|e| e.to_string())?;
        let side = match meta.get("RepetitionTime").and_then(|v| v.as_f64()) {
            Some(t) if t.is_finite() && t > 0.0 => t,
            Some(_) | None => {
                return Err(format!(
                    "{}: its JSON sidecar gives no positive RepetitionTime (seconds)",
                    b.path.display()
                ));
            }
        };
        let header = read_nifti_header(&b.path).map_err(|e| e.to_string())?;
        let frames = header.dims.get(3).copied().unwrap_or(1);
        if header.dims.len() < 4 || frames < 2 {
            return Err(format!(
                "{}: a BOLD series must be 4D, this one has dimensions {:?}",
                b.path.display(),
                header.dims
            ));
        }
        if let Some(h) = header.tr
            && h > 0.0
            && (h - side).abs() > 1e-3 * side.max(h)
        {
            return Err(format!(
                "{}: the sidecar's RepetitionTime {side} s contradicts the header's {} s",
                b.path.display(),
                h as f32 // the header stores it as f32
            ));
        }
        if let Some(t) = tr
            && (t - side).abs() > 1e-6 * t
        {
            return Err(format!(
                "the runs to average have different repetition times ({t} s and {side} s at {})",
                b.path.display()
            ));
        }
        tr = Some(side);
    }
    let tr = tr.unwrap_or(0.0);
    // Output names: the chosen series' entities, without `run` when runs are averaged.
    let first = &bolds[0].name;
    let mut stem: Vec<String> = first
        .entities
        .iter()
        .filter(|(k, _)| !(bolds.len() > 1 && k == "run"))
        .map(|(k, v)| format!("{k}-{v}"))
        .collect();
    let mut dir = out.join(format!("sub-{}", s.subject));
    if let Some(ses) = &s.session {
        dir = dir.join(format!("ses-{ses}"));
    }
    let dir = dir.join("func");
    stem.push(String::new());
    let base = stem.join("_");
    Ok(Planned {
        subject: s.subject.clone(),
        session: s.session.clone(),
        t1: std::path::absolute(&t1.path).unwrap_or_else(|_| t1.path.clone()),
        bold: bolds.iter().map(|b| b.path.clone()).collect(),
        tr,
        falff: dir.join(format!("{base}falff.nii.gz")),
        alff: dir.join(format!("{base}alff.nii.gz")),
        settings: MapSettings {
            sources: bolds
                .iter()
                .map(|b| {
                    b.path
                        .strip_prefix(root)
                        .unwrap_or(&b.path)
                        .to_string_lossy()
                        .into_owned()
                })
                .collect(),
            repetition_time: tr,
            band_hz: config.falff.band,
            detrend: config.falff.detrend,
            alff_reduction: config.falff.alff,
            runs: config.runs,
        },
    })
}

fn sidecar_of(map: &Path) -> PathBuf {
    let name = map.file_name().unwrap_or_default().to_string_lossy();
    map.with_file_name(format!("{}.json", name.trim_end_matches(".nii.gz")))
}

/// Computes and writes a session's maps, or reuses them; `Ok(true)` when computed.
fn compute(p: &Planned, config: &BidsConfig) -> std::result::Result<bool, String> {
    let settings_of = |map: &Path| -> Option<MapSettings> {
        let text = std::fs::read_to_string(sidecar_of(map)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        serde_json::from_value(v.get("mmssl")?.clone()).ok()
    };
    let reusable = !config.overwrite
        && [&p.falff, &p.alff]
            .iter()
            .all(|m| m.exists() && settings_of(m).as_ref() == Some(&p.settings));
    if reusable {
        return Ok(false);
    }
    let falff_config = FalffConfig {
        tr: Some(p.tr),
        ..config.falff.clone()
    };
    let mut sum: Option<(crate::neuro::volume::Volume, Vec<f32>, Vec<f32>)> = None;
    for path in &p.bold {
        let bold = read_nifti(path).map_err(|e| e.to_string())?;
        let maps = falff(&bold, &falff_config).map_err(|e| e.to_string())?;
        match &mut sum {
            None => {
                let (a, f) = (maps.alff.data().to_vec(), maps.falff.data().to_vec());
                sum = Some((maps.falff, a, f));
            }
            Some((grid, a, f)) => {
                if grid.dims() != maps.falff.dims() || grid.affine() != maps.falff.affine() {
                    return Err(format!(
                        "{}: the runs to average lie on different grids ({:?} and {:?})",
                        path.display(),
                        grid.dims(),
                        maps.falff.dims()
                    ));
                }
                a.iter_mut()
                    .zip(maps.alff.data())
                    .for_each(|(x, y)| *x += y);
                f.iter_mut()
                    .zip(maps.falff.data())
                    .for_each(|(x, y)| *x += y);
            }
        }
    }
    let Some((grid, a, f)) = sum else {
        return Err("no BOLD series".into());
    };
    let n = p.bold.len() as f32;
    let dims = grid.dims();
    let dir = p.falff.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (data, path, what, description) in [
        (
            f,
            &p.falff,
            "fALFF",
            "fractional amplitude of low-frequency fluctuation (Zou et al. 2008)",
        ),
        (
            a,
            &p.alff,
            "ALFF",
            "amplitude of low-frequency fluctuation (Zang et al. 2007)",
        ),
    ] {
        let mean: Vec<f32> = data.into_iter().map(|v| v / n).collect();
        let volume = grid
            .with_data(mean, [dims[0], dims[1], dims[2], 1])
            .map_err(|e| e.to_string())?;
        let tmp = path.with_file_name(format!(
            "{}.partial.nii.gz",
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .trim_end_matches(".nii.gz")
        ));
        write_nifti(&volume, &tmp).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
        let side = serde_json::json!({
            "Description": format!("{what}: {description}, computed by mmssl {}", env!("CARGO_PKG_VERSION")),
            "Sources": p.settings.sources.iter().map(|s| format!("bids:raw:{s}")).collect::<Vec<_>>(),
            "RepetitionTime": p.tr,
            "FrequencyBandHz": config.falff.band,
            "Detrending": if config.falff.detrend { "mean and linear trend" } else { "mean" },
            "RunsAveraged": p.bold.len(),
            "mmssl": p.settings,
        });
        let text = serde_json::to_string_pretty(&side).map_err(|e| e.to_string())?;
        write_atomic(&sidecar_of(path), text.as_bytes()).map_err(|e| e.to_string())?;
    }
    Ok(true)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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

fn write_manifest(
    path: &Path,
    out: &Path,
    used: &[BidsUsed],
    labels: &Labels,
    config: &BidsConfig,
) -> Result<()> {
    let err = |e: csv::Error| DataError::format(path, e.to_string());
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["subject", "session", "t1", "falff", "label"];
    header.extend(config.covariates.iter().map(String::as_str));
    w.write_record(&header).map_err(err)?;
    for u in used {
        let falff = u.falff.strip_prefix(out).unwrap_or(&u.falff);
        let session = labels.has_sessions.then_some(u.session.as_str());
        let mut record = vec![
            u.subject.clone(),
            u.session.clone(),
            u.t1.to_string_lossy().into_owned(),
            falff.to_string_lossy().into_owned(),
            u.label.clone(),
        ];
        for c in &config.covariates {
            record.push(labels.covariate(&u.subject, session, c));
        }
        w.write_record(&record).map_err(err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| DataError::format(path, e.to_string()))?;
    write_atomic(path, &bytes)
}

/// The label and covariate tables of a dataset.
struct Labels {
    participants: Option<Table>,
    sessions: BTreeMap<String, Table>,
    column: Option<String>,
    map: BTreeMap<String, Diagnosis>,
    has_sessions: bool,
}

impl Labels {
    fn read(root: &Path, sessions: &[BidsSession], config: &BidsConfig) -> Result<Labels> {
        let participants = Table::read(&root.join("participants.tsv"), "participant_id")?;
        let mut per_subject = BTreeMap::new();
        for subject in sessions.iter().map(|s| &s.subject).collect::<BTreeSet<_>>() {
            let path = root
                .join(format!("sub-{subject}"))
                .join(format!("sub-{subject}_sessions.tsv"));
            if let Some(t) = Table::read(&path, "session_id")? {
                per_subject.insert(subject.clone(), t);
            }
        }
        let has = |c: &str| {
            participants.as_ref().is_some_and(|t| t.has(c))
                || per_subject.values().any(|t| t.has(c))
        };
        let where_ = || {
            format!(
                "{}participants.tsv{}",
                root.display().to_string() + "/",
                if per_subject.is_empty() {
                    ""
                } else {
                    " or the sessions.tsv files"
                }
            )
        };
        let column = match &config.label_column {
            Some(c) if has(c) => Some(c.clone()),
            Some(c) => {
                return Err(DataError::format(
                    root.join("participants.tsv"),
                    format!("no label column `{c}` in {}", where_()),
                ));
            }
            None => ["diagnosis", "group", "dx"]
                .into_iter()
                .find(|c| has(c))
                .map(str::to_string),
        };
        for c in &config.covariates {
            if !has(c) {
                return Err(DataError::format(
                    root.join("participants.tsv"),
                    format!("no covariate column `{c}` in {}", where_()),
                ));
            }
        }
        let labels = Labels {
            participants,
            sessions: per_subject,
            column,
            map: config.label_map.clone(),
            has_sessions: sessions.iter().any(|s| s.session.is_some()),
        };
        // Every value of the label column must mean something: all unmapped ones at once.
        let mut unknown = BTreeSet::new();
        for s in sessions {
            if let Some(raw) = labels.raw_label(&s.subject, s.session.as_deref())
                && labels.parse(&raw).is_none()
            {
                unknown.insert(raw);
            }
        }
        if !unknown.is_empty() {
            return Err(DataError::format(
                root.join("participants.tsv"),
                format!(
                    "the label column `{}` has values that are not HC, AD, other or empty: {}; \
                     map them (--label-map \"VALUE=HC,VALUE=AD\")",
                    labels.column.as_deref().unwrap_or(""),
                    unknown
                        .into_iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(labels)
    }

    /// The value of `column` for a session: its `sessions.tsv` row if it has the column, else
    /// the subject's `participants.tsv` row.
    fn value(&self, subject: &str, session: Option<&str>, column: &str) -> Option<String> {
        if let (Some(t), Some(ses)) = (self.sessions.get(subject), session)
            && t.has(column)
            && let Some(v) = t.get(&format!("ses-{ses}"), column)
        {
            return Some(v.to_string());
        }
        self.participants
            .as_ref()
            .and_then(|t| t.get(&format!("sub-{subject}"), column))
            .map(str::to_string)
    }

    fn raw_label(&self, subject: &str, session: Option<&str>) -> Option<String> {
        self.value(subject, session, self.column.as_deref()?)
    }

    fn parse(&self, raw: &str) -> Option<Diagnosis> {
        let v = raw.trim();
        if let Some(d) = self.map.get(v) {
            return Some(*d);
        }
        if v.is_empty() || v.eq_ignore_ascii_case("n/a") {
            return Some(Diagnosis::Unlabelled);
        }
        Diagnosis::parse(v)
    }

    fn label(&self, subject: &str, session: Option<&str>) -> Diagnosis {
        self.raw_label(subject, session)
            .and_then(|r| self.parse(&r))
            .unwrap_or(Diagnosis::Unlabelled)
    }

    fn covariate(&self, subject: &str, session: Option<&str>, column: &str) -> String {
        match self.value(subject, session, column) {
            Some(v) if v != "n/a" => v,
            _ => String::new(),
        }
    }
}

/// Parses `VALUE=CLASS,VALUE=CLASS` (classes `HC`, `AD`, `other`, or empty for no label) into
/// a [`BidsConfig::label_map`]; the error names the part that does not parse.
pub fn parse_label_map(text: &str) -> std::result::Result<BTreeMap<String, Diagnosis>, String> {
    let mut map = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((value, class)) = part.rsplit_once('=') else {
            return Err(format!("`{part}` is not VALUE=CLASS"));
        };
        let Some(d) = Diagnosis::parse(class) else {
            return Err(format!(
                "`{part}`: the class `{}` is not HC, AD, other or empty",
                class.trim()
            ));
        };
        map.insert(value.trim().to_string(), d);
    }
    Ok(map)
}
