//! Choosing each session's images and checking them from their headers and sidecars alone:
//! which run, which anatomical image (the session's own or the subject's), the repetition
//! time, the spatial overlap with the anatomical brain, the companions of a derivative series
//! (brain mask, confounds table), and the names of the maps to write.

use super::layout::{AnatImage, BidsFile, sidecar};
use super::{BidsConfig, BidsSession, RunChoice, TrSource};
use crate::formats::nifti::{NiftiHeaderInfo, read_nifti_header};
use crate::neuro::confounds::ConfoundsConfig;
use crate::neuro::falff::AlffReduction;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings a map's sidecar records; equal settings and sources mean the map is reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct MapSettings {
    pub sources: Vec<String>,
    repetition_time: f64,
    band_hz: [f64; 2],
    detrend: bool,
    alff_reduction: AlffReduction,
    runs: RunChoice,
    pub brain_mask: Option<String>,
    confounds: Option<ConfoundsConfig>,
    smooth_fwhm_mm: f64,
}

pub(super) fn name_of(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// A session's anatomical image: the file chosen, its brain mask, and the file the manifest
/// names (the masked copy written for a derivative T1w).
#[derive(Debug, Clone)]
pub(super) struct AnatPlan {
    pub source: PathBuf,
    pub mask: Option<PathBuf>,
    /// The masked T1w to write (derivatives, T1w images).
    pub masked: Option<PathBuf>,
    pub manifest: PathBuf,
    pub notes: Vec<String>,
}

/// The brain of an anatomical image: world positions (every other voxel along each axis).
pub(super) struct AnatPoints {
    pub points: Vec<[f64; 3]>,
}

/// Chooses one candidate (or all, for [`RunChoice::Mean`]); the error says which compete.
/// A note says what was chosen among several.
fn choose<'a>(
    files: &'a [BidsFile],
    runs: RunChoice,
    what: &str,
    notes: &mut Vec<String>,
) -> std::result::Result<Vec<&'a BidsFile>, String> {
    let names = || {
        files
            .iter()
            .map(BidsFile::file_name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match (files.len(), runs) {
        (0, _) => return Err(format!("no {what}")),
        (1, _) => return Ok(vec![&files[0]]),
        (_, RunChoice::First) => vec![&files[0]],
        (_, RunChoice::Last) => vec![&files[files.len() - 1]],
        (_, RunChoice::Mean) => files.iter().collect(),
        (n, RunChoice::Refuse) => {
            return Err(format!(
                "{n} candidates for the {what} ({}); choose with --runs first|last|mean or an \
                 acquisition filter",
                names()
            ));
        }
    };
    let runs_name = match runs {
        RunChoice::First => "first",
        RunChoice::Last => "last",
        RunChoice::Mean => "mean",
        RunChoice::Refuse => "refuse",
    };
    notes.push(format!(
        "{} candidates for the {what} ({}): {} (--runs {runs_name})",
        files.len(),
        names(),
        if chosen.len() > 1 {
            "their maps averaged".to_string()
        } else {
            format!("took {}", chosen[0].file_name())
        }
    ));
    Ok(chosen)
}

fn what_anat(config: &BidsConfig) -> String {
    match (&config.derivatives, config.anat) {
        (None, _) => "T1w image (anat/*_T1w.nii[.gz])".into(),
        (Some(_), AnatImage::T1w) => format!(
            "preprocessed T1w image in space {} (anat/*_space-{}_desc-preproc_T1w.nii.gz)",
            config.space, config.space
        ),
        (Some(_), AnatImage::GreyMatter) => format!(
            "grey-matter probability map in space {} (anat/*_space-{}_label-GM_probseg.nii.gz)",
            config.space, config.space
        ),
    }
}

fn passed_over(s: &BidsSession) -> String {
    if s.passed_over.is_empty() {
        String::new()
    } else {
        format!(
            " (passed over for their space or description: {}; choose with --space / --desc)",
            s.passed_over.join(", ")
        )
    }
}

/// Chooses a session's anatomical image and its mask.
pub(super) fn plan_anat(
    out: &Path,
    s: &BidsSession,
    config: &BidsConfig,
) -> std::result::Result<AnatPlan, String> {
    let mut notes = Vec::new();
    let runs = match config.runs {
        RunChoice::Mean => RunChoice::First,
        other => other,
    };
    let what = what_anat(config);
    let t1 = match choose(&s.t1w, runs, &what, &mut notes) {
        Ok(t) => t[0],
        Err(e) => return Err(format!("{e}{}", passed_over(s))),
    };
    if let Some(from) = &s.t1w_from {
        notes.push(format!(
            "no anatomical image of its own: using {} from {from}",
            t1.file_name()
        ));
    }
    let header = read_nifti_header(&t1.path).map_err(|e| e.to_string())?;
    if header.dims.len() > 3 && header.dims[3..].iter().any(|&d| d > 1) {
        return Err(format!(
            "{}: an anatomical image must be 3D, this one has dimensions {:?}",
            t1.path.display(),
            header.dims
        ));
    }
    let source = std::path::absolute(&t1.path).unwrap_or_else(|_| t1.path.clone());
    let Some(deriv) = &config.derivatives else {
        return Ok(AnatPlan {
            manifest: source.clone(),
            source,
            mask: None,
            masked: None,
            notes,
        });
    };
    let exts = [".nii.gz", ".nii"];
    let mask = match config.anat {
        AnatImage::T1w => t1.sibling(&[("desc", Some("brain"))], "mask", &exts),
        AnatImage::GreyMatter => {
            t1.sibling(&[("label", None), ("desc", Some("brain"))], "mask", &exts)
        }
    };
    if mask.is_none() {
        notes.push(format!(
            "no brain mask beside {} (*_desc-brain_mask.nii.gz): its non-zero voxels are the \
             brain",
            t1.file_name()
        ));
    }
    let (masked, manifest) = match config.anat {
        AnatImage::T1w => {
            // The derivative's folder layout, mirrored under `out`.
            let rel = t1.path.strip_prefix(deriv).unwrap_or(&t1.path);
            let rel_dir = rel.parent().unwrap_or(Path::new(""));
            let mut entities = t1.name.entities.clone();
            match entities.iter_mut().find(|(k, _)| k == "desc") {
                Some(d) => d.1 = "brain".into(),
                None => entities.push(("desc".into(), "brain".into())),
            }
            let stem: Vec<String> = entities.iter().map(|(k, v)| format!("{k}-{v}")).collect();
            let path = out
                .join(rel_dir)
                .join(format!("{}_T1w.nii.gz", stem.join("_")));
            (Some(path.clone()), path)
        }
        AnatImage::GreyMatter => (None, source.clone()),
    };
    Ok(AnatPlan {
        source,
        mask,
        masked,
        manifest,
        notes,
    })
}

/// The fraction of `points` inside the field of view of a grid (voxel centres +- half a voxel).
fn overlap(points: &[[f64; 3]], header: &NiftiHeaderInfo) -> f64 {
    let Some(inverse) = header.affine.inverse() else {
        return 0.0;
    };
    let dims = header.dims4();
    let inside = points
        .iter()
        .filter(|p| {
            let v = inverse.apply(**p);
            (0..3).all(|a| v[a] >= -0.5 && v[a] <= dims[a] as f64 - 0.5)
        })
        .count();
    inside as f64 / points.len().max(1) as f64
}

/// A session ready to compute.
pub(super) struct Planned {
    pub subject: String,
    pub session: Option<String>,
    pub t1: PathBuf,
    pub t1_from: Option<String>,
    pub bold: Vec<PathBuf>,
    pub masks: Vec<Option<PathBuf>>,
    pub confounds: Vec<Option<PathBuf>>,
    pub tr: f64,
    pub overlap: f64,
    /// `[fALFF, ALFF]` x `[raw, zstd, meanstd]`.
    pub maps: [[PathBuf; 3]; 2],
    pub settings: MapSettings,
    pub notes: Vec<String>,
}

/// The repetition time of one series: sidecar and header, reconciled by `--tr-from`.
fn repetition_time(
    meta: Option<f64>,
    header: Option<f64>,
    b: &BidsFile,
    config: &BidsConfig,
    notes: &mut Vec<String>,
) -> std::result::Result<f64, String> {
    let ok = |t: &f64| t.is_finite() && *t > 0.0;
    let (side, head) = (meta.filter(ok), header.filter(ok));
    match (side, head, config.tr_from) {
        (None, None, _) => Err(format!(
            "{}: neither its JSON sidecar (RepetitionTime) nor its header (pixdim[4]) gives a \
             repetition time",
            b.path.display()
        )),
        (Some(s), None, _) => Ok(s),
        (None, Some(h), _) => {
            notes.push(format!(
                "{}: no RepetitionTime in its sidecar; the header's {} s is used",
                b.file_name(),
                h as f32
            ));
            Ok(h)
        }
        (Some(s), Some(h), from) => {
            if (h - s).abs() <= 1e-3 * s.max(h) {
                return Ok(s);
            }
            let (used, other) = match from {
                TrSource::Sidecar => (s, "the sidecar's"),
                TrSource::Header => (h, "the header's"),
            };
            notes.push(format!(
                "{}: the sidecar's RepetitionTime {s} s contradicts the header's {} s; {other} \
                 {used} s is used (--tr-from {})",
                b.file_name(),
                h as f32, // the header stores it as f32
                match from {
                    TrSource::Sidecar => "sidecar",
                    TrSource::Header => "header",
                }
            ));
            Ok(used)
        }
    }
}

/// Checks a session's BOLD series and decides what to compute; `Err` is the reason to skip it.
pub(super) fn plan(
    root: &Path,
    out: &Path,
    s: &BidsSession,
    anat: &AnatPlan,
    points: &AnatPoints,
    config: &BidsConfig,
) -> std::result::Result<Planned, String> {
    let mut notes = anat.notes.clone();
    notes.extend(s.notes.iter().cloned());
    let what = match &config.derivatives {
        None => format!(
            "task-{} BOLD series (func/*_task-{}_bold.nii[.gz])",
            config.task, config.task
        ),
        Some(_) => format!(
            "task-{} BOLD series in space {} with desc {} (func/*_task-{}_space-{}_desc-{}_bold.nii.gz)",
            config.task, config.space, config.desc, config.task, config.space, config.desc
        ),
    };
    let bolds = match choose(&s.bold, config.runs, &what, &mut notes) {
        Ok(b) => b,
        Err(e) => return Err(format!("{e}{}", passed_over(s))),
    };
    let source_root = config.derivatives.as_deref().unwrap_or(root);
    let mut tr: Option<f64> = None;
    let (mut masks, mut confounds) = (Vec::new(), Vec::new());
    let mut worst_overlap = 1.0f64;
    let exts = [".nii.gz", ".nii"];
    for b in &bolds {
        let mut meta = sidecar(source_root, b).map_err(|e| e.to_string())?;
        if config.derivatives.is_some() && !meta.contains_key("RepetitionTime") {
            // The raw series' sidecar, when the derivative's has no RepetitionTime.
            let mut raw = (*b).clone();
            raw.name.entities.retain(|(k, _)| {
                !matches!(k.as_str(), "space" | "res" | "den" | "desc" | "cohort")
            });
            let mut dir = root.join(format!("sub-{}", s.subject));
            if let Some(ses) = &s.session {
                dir = dir.join(format!("ses-{ses}"));
            }
            raw.path = dir.join("func").join("x");
            if let Ok(m) = sidecar(root, &raw)
                && let Some(t) = m.get("RepetitionTime")
            {
                meta.insert("RepetitionTime".into(), t.clone());
            }
        }
        let header = read_nifti_header(&b.path).map_err(|e| e.to_string())?;
        let frames = header.dims.get(3).copied().unwrap_or(1);
        if header.dims.len() < 4 || frames < 2 {
            return Err(format!(
                "{}: a BOLD series must be 4D, this one has dimensions {:?}",
                b.path.display(),
                header.dims
            ));
        }
        let side = meta.get("RepetitionTime").and_then(|v| v.as_f64());
        let this = repetition_time(side, header.tr, b, config, &mut notes)?;
        if let Some(t) = tr
            && (t - this).abs() > 1e-6 * t
        {
            return Err(format!(
                "the runs to average have different repetition times ({t} s and {this} s at {})",
                b.path.display()
            ));
        }
        tr = Some(this);
        let fraction = overlap(&points.points, &header);
        if fraction < config.min_overlap {
            return Err(format!(
                "only {:.0}% of the brain of {} lies inside the field of view of {} (at least \
                 {:.0}% is required, --min-overlap): the two images do not share a world space \
                 (a series never aligned to the T1w, or a wrong affine in one header)",
                100.0 * fraction,
                anat.source.display(),
                b.path.display(),
                100.0 * config.min_overlap
            ));
        }
        worst_overlap = worst_overlap.min(fraction);
        if config.derivatives.is_some() {
            let mask = b.sibling(&[("desc", Some("brain"))], "mask", &exts);
            if mask.is_none() {
                return Err(format!(
                    "no brain mask beside {} (expected {})",
                    b.path.display(),
                    b.sibling(&[("desc", Some("brain"))], "mask", &[""])
                        .map(|p| name_of(&p))
                        .unwrap_or_else(|| "*_desc-brain_mask.nii.gz".into())
                ));
            }
            masks.push(mask);
            let drop: Vec<(&str, Option<&str>)> = ["space", "res", "den", "cohort"]
                .iter()
                .map(|k| (*k, None))
                .chain([("desc", Some("confounds"))])
                .collect();
            let table = b
                .sibling(&drop, "timeseries", &[".tsv"])
                .or_else(|| b.sibling(&drop, "regressors", &[".tsv"]));
            if table.is_none() && config.confounds.is_active() {
                return Err(format!(
                    "no confounds table beside {} (*_desc-confounds_timeseries.tsv) for the \
                     confound model {}",
                    b.path.display(),
                    config.confounds.terms.join("+")
                ));
            }
            confounds.push(table);
        } else {
            masks.push(None);
            confounds.push(None);
        }
    }
    let tr = tr.unwrap_or(0.0);
    // Output names: the chosen series' entities without `desc` (and without `run` when runs
    // are averaged), `desc-zstd` / `desc-meanstd` for the standardised forms.
    let first = &bolds[0].name;
    let stem: Vec<String> = first
        .entities
        .iter()
        .filter(|(k, _)| k != "desc" && !(bolds.len() > 1 && k == "run"))
        .map(|(k, v)| format!("{k}-{v}"))
        .collect();
    let mut dir = out.join(format!("sub-{}", s.subject));
    if let Some(ses) = &s.session {
        dir = dir.join(format!("ses-{ses}"));
    }
    let dir = dir.join("func");
    let base = stem.join("_");
    let file = |desc: &str, suffix: &str| {
        dir.join(if desc.is_empty() {
            format!("{base}_{suffix}.nii.gz")
        } else {
            format!("{base}_desc-{desc}_{suffix}.nii.gz")
        })
    };
    let forms = |suffix: &str| {
        [
            file("", suffix),
            file("zstd", suffix),
            file("meanstd", suffix),
        ]
    };
    let tag = if config.derivatives.is_some() {
        "bids:preprocessed:"
    } else {
        "bids:raw:"
    };
    let relative = |p: &Path| {
        format!(
            "{tag}{}",
            p.strip_prefix(source_root).unwrap_or(p).to_string_lossy()
        )
    };
    let mut sources: Vec<String> = bolds.iter().map(|b| relative(&b.path)).collect();
    sources.extend(masks.iter().flatten().map(|p| relative(p)));
    sources.extend(confounds.iter().flatten().map(|p| relative(p)));
    let confound_model = confounds
        .iter()
        .any(Option::is_some)
        .then(|| config.confounds.clone());
    Ok(Planned {
        subject: s.subject.clone(),
        session: s.session.clone(),
        t1: anat.manifest.clone(),
        t1_from: s.t1w_from.clone(),
        bold: bolds.iter().map(|b| b.path.clone()).collect(),
        masks: masks.clone(),
        confounds,
        tr,
        overlap: worst_overlap,
        maps: [forms("falff"), forms("alff")],
        settings: MapSettings {
            sources,
            repetition_time: tr,
            band_hz: config.falff.band,
            detrend: config.falff.detrend,
            alff_reduction: config.falff.alff,
            runs: config.runs,
            brain_mask: masks.first().cloned().flatten().map(|p| relative(&p)),
            confounds: confound_model,
            smooth_fwhm_mm: config.smooth_fwhm,
        },
        notes,
    })
}
