//! Choosing each session's images, checking them (dimensions, repetition time, spatial
//! overlap), and computing and writing its maps: confound regression and scrubbing, brain
//! mask, ALFF/fALFF, smoothing and standardisation.

use super::layout::{AnatImage, BidsFile, sidecar};
use super::{BidsConfig, BidsSession, RunChoice, TrSource, write_atomic};
use crate::formats::nifti::{NiftiHeaderInfo, read_nifti, read_nifti_header, write_nifti};
use crate::neuro::confounds::{
    ConfoundsConfig, ConfoundsTable, Regression, confound_design, regress_confounds,
};
use crate::neuro::falff::{AlffReduction, FalffConfig, falff};
use crate::neuro::preprocess::{Grid, Mask};
use crate::neuro::stats::smooth_axes;
use crate::neuro::volume::Volume;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The settings a map's sidecar records; equal settings and sources mean the map is reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct MapSettings {
    sources: Vec<String>,
    repetition_time: f64,
    band_hz: [f64; 2],
    detrend: bool,
    alff_reduction: AlffReduction,
    runs: RunChoice,
    brain_mask: Option<String>,
    confounds: Option<ConfoundsConfig>,
    smooth_fwhm_mm: f64,
}

fn name_of(p: &Path) -> String {
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

/// The brain of an anatomical image as points in world space, writing its masked copy where
/// planned (reused when it exists and names the same sources). Without a mask file: the
/// non-zero voxels of a derivative; the head of a raw T1w (above a tenth of its 98th
/// percentile).
pub(super) fn prepare_anat(
    a: &AnatPlan,
    config: &BidsConfig,
) -> std::result::Result<AnatPoints, String> {
    let image = read_nifti(&a.source).map_err(|e| e.to_string())?;
    let grid = Grid::of(&image);
    let inside: Vec<bool> = match &a.mask {
        Some(m) => {
            let mask = read_nifti(m).map_err(|e| e.to_string())?;
            Mask::from_volume(&mask, &grid)
                .map_err(|e| e.to_string())?
                .flags()
                .to_vec()
        }
        None if config.derivatives.is_some() => image.data().iter().map(|&v| v > 0.0).collect(),
        None => {
            let mut nonzero: Vec<f32> = image.data().iter().copied().filter(|&v| v > 0.0).collect();
            if nonzero.is_empty() {
                return Err(format!("{}: the image is all zeros", a.source.display()));
            }
            let k = ((nonzero.len() - 1) as f64 * 0.98) as usize;
            let (_, p98, _) = nonzero.select_nth_unstable_by(k, f32::total_cmp);
            let cut = 0.1 * *p98;
            image.data().iter().map(|&v| v > cut).collect()
        }
    };
    if !inside.iter().any(|&b| b) {
        return Err(format!(
            "{}: its brain mask is empty",
            a.mask.as_ref().unwrap_or(&a.source).display()
        ));
    }
    if let Some(dest) = &a.masked {
        let sources: Vec<String> = std::iter::once(&a.source)
            .chain(a.mask.as_ref())
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let existing = std::fs::read_to_string(sidecar_of(dest))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let same = existing.is_some_and(|v| v["Sources"] == serde_json::json!(sources));
        if config.overwrite || !dest.exists() || !same {
            let data = image
                .data()
                .iter()
                .zip(&inside)
                .map(|(&v, &m)| if m { v } else { 0.0 })
                .collect();
            let masked = image
                .with_data(data, image.dims())
                .map_err(|e| e.to_string())?;
            write_map(&masked, dest)?;
            let side = serde_json::json!({
                "Description": "the preprocessed T1w image inside its brain mask (zero outside), written by mmssl",
                "Sources": sources,
            });
            let text = serde_json::to_string_pretty(&side).map_err(|e| e.to_string())?;
            write_atomic(&sidecar_of(dest), text.as_bytes()).map_err(|e| e.to_string())?;
        }
    }
    let [nx, ny, nz] = image.shape();
    let mut points = Vec::new();
    for z in (0..nz).step_by(2) {
        for y in (0..ny).step_by(2) {
            for x in (0..nx).step_by(2) {
                if inside[x + nx * (y + ny * z)] {
                    points.push(image.world(x as f64, y as f64, z as f64));
                }
            }
        }
    }
    Ok(AnatPoints { points })
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

pub(super) fn sidecar_of(map: &Path) -> PathBuf {
    let name = map.file_name().unwrap_or_default().to_string_lossy();
    map.with_file_name(format!("{}.json", name.trim_end_matches(".nii.gz")))
}

fn write_map(volume: &Volume, path: &Path) -> std::result::Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = path.with_file_name(format!(
        "{}.partial.nii.gz",
        name_of(path).trim_end_matches(".nii.gz")
    ));
    write_nifti(volume, &tmp).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Gaussian smoothing of `data` inside `inside` only (normalised convolution: each brain
/// voxel becomes the kernel-weighted mean of the brain voxels around it; zero outside).
fn smooth_inside(data: &[f32], inside: &[bool], grid: &Volume, fwhm: f64) -> Vec<f32> {
    let sigma_mm = fwhm / (2.0 * (2.0 * std::f64::consts::LN_2).sqrt());
    let sizes = grid.voxel_size();
    let sigma = [0, 1, 2].map(|a| sigma_mm / sizes[a]);
    let weights: Vec<f32> = inside.iter().map(|&b| b as u8 as f32).collect();
    let masked: Vec<f32> = data
        .iter()
        .zip(inside)
        .map(|(&v, &b)| if b { v } else { 0.0 })
        .collect();
    let num = smooth_axes(&masked, grid.shape(), sigma);
    let den = smooth_axes(&weights, grid.shape(), sigma);
    num.iter()
        .zip(&den)
        .zip(inside)
        .map(|((&n, &d), &b)| if b && d > 0.0 { n / d } else { 0.0 })
        .collect()
}

/// `[raw, z-scored, divided by the mean]` inside the brain (zero outside).
fn standardised(data: &[f32], inside: &[bool]) -> std::result::Result<[Vec<f32>; 3], String> {
    let vals: Vec<f64> = data
        .iter()
        .zip(inside)
        .filter(|(_, b)| **b)
        .map(|(&v, _)| v as f64)
        .collect();
    let n = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / n.max(1.0);
    let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    if vals.is_empty() || sd.is_nan() || sd <= 0.0 || mean.is_nan() || mean <= 0.0 {
        return Err(format!(
            "the map is constant inside the brain ({} voxels): nothing fluctuates in the \
             low-frequency band",
            vals.len()
        ));
    }
    let map = |f: &dyn Fn(f64) -> f64| -> Vec<f32> {
        data.iter()
            .zip(inside)
            .map(|(&v, &b)| if b { f(v as f64) as f32 } else { 0.0 })
            .collect()
    };
    Ok([map(&|v| v), map(&|v| (v - mean) / sd), map(&|v| v / mean)])
}

/// What a session's computation reports.
pub(super) struct Computed {
    pub computed: bool,
    pub regression: Vec<Regression>,
}

/// Computes and writes a session's maps, or reuses them.
pub(super) fn compute(p: &Planned, config: &BidsConfig) -> std::result::Result<Computed, String> {
    let settings_of = |map: &Path| -> Option<MapSettings> {
        let text = std::fs::read_to_string(sidecar_of(map)).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        serde_json::from_value(v.get("mmssl")?.clone()).ok()
    };
    let reusable = !config.overwrite
        && p.maps
            .iter()
            .flatten()
            .all(|m| m.exists() && settings_of(m).as_ref() == Some(&p.settings));
    if reusable {
        // What the regression did when the maps were made, from their sidecar.
        let regression = std::fs::read_to_string(sidecar_of(&p.maps[0][0]))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| serde_json::from_value(v.get("ConfoundRegression")?.clone()).ok())
            .unwrap_or_default();
        return Ok(Computed {
            computed: false,
            regression,
        });
    }
    let falff_config = FalffConfig {
        tr: Some(p.tr),
        ..config.falff.clone()
    };
    let mut regression = Vec::new();
    // The first run's grid, the ALFF and fALFF sums, the brain inside every run's mask.
    type Sums = (Volume, Vec<f32>, Vec<f32>, Option<Vec<bool>>);
    let mut sum: Option<Sums> = None;
    for (k, path) in p.bold.iter().enumerate() {
        let mut bold = read_nifti(path).map_err(|e| e.to_string())?;
        let inside = match &p.masks[k] {
            Some(m) => {
                let mask = read_nifti(m).map_err(|e| e.to_string())?;
                let flags = Mask::from_volume(&mask, &Grid::of(&bold))
                    .map_err(|e| e.to_string())?
                    .flags()
                    .to_vec();
                if !flags.iter().any(|&b| b) {
                    return Err(format!("{}: the brain mask is empty", m.display()));
                }
                Some(flags)
            }
            None => None,
        };
        if let Some(table_path) = &p.confounds[k] {
            let table = ConfoundsTable::read(table_path).map_err(|e| e.to_string())?;
            let design = confound_design(&table, &config.confounds, bold.frames())
                .map_err(|e| e.to_string())?;
            let (clean, report) =
                regress_confounds(bold, inside.as_deref(), &design).map_err(|e| e.to_string())?;
            bold = clean;
            regression.push(report);
        }
        let maps = falff(&bold, &falff_config).map_err(|e| e.to_string())?;
        let keep = |v: &Volume| -> Vec<f32> {
            match &inside {
                Some(m) => v
                    .data()
                    .iter()
                    .zip(m)
                    .map(|(&x, &b)| if b { x } else { 0.0 })
                    .collect(),
                None => v.data().to_vec(),
            }
        };
        match &mut sum {
            None => {
                let (a, f) = (keep(&maps.alff), keep(&maps.falff));
                sum = Some((maps.falff, a, f, inside));
            }
            Some((grid, a, f, m)) => {
                if grid.dims() != maps.falff.dims() || grid.affine() != maps.falff.affine() {
                    return Err(format!(
                        "{}: the runs to average lie on different grids ({:?} and {:?})",
                        path.display(),
                        grid.dims(),
                        maps.falff.dims()
                    ));
                }
                a.iter_mut()
                    .zip(keep(&maps.alff))
                    .for_each(|(x, y)| *x += y);
                f.iter_mut()
                    .zip(keep(&maps.falff))
                    .for_each(|(x, y)| *x += y);
                if let (Some(m), Some(other)) = (m.as_mut(), inside.as_ref()) {
                    m.iter_mut().zip(other).for_each(|(x, y)| *x = *x && *y);
                }
            }
        }
    }
    let Some((grid, a, f, inside)) = sum else {
        return Err("no BOLD series".into());
    };
    let n = p.bold.len() as f32;
    let dims = grid.dims();
    // Without a brain mask, the brain is where the series fluctuate.
    let inside = inside.unwrap_or_else(|| a.iter().map(|&v| v > 0.0).collect());
    for (kind, (data, paths)) in [(0usize, (f, &p.maps[0])), (1, (a, &p.maps[1]))] {
        let mut mean: Vec<f32> = data.into_iter().map(|v| v / n).collect();
        if config.smooth_fwhm > 0.0 {
            mean = smooth_inside(&mean, &inside, &grid, config.smooth_fwhm);
        }
        let forms =
            standardised(&mean, &inside).map_err(|e| format!("{}: {e}", p.bold[0].display()))?;
        let (what, description) = if kind == 0 {
            (
                "fALFF",
                "fractional amplitude of low-frequency fluctuation (Zou et al. 2008)",
            )
        } else {
            (
                "ALFF",
                "amplitude of low-frequency fluctuation (Zang et al. 2007)",
            )
        };
        for (form, (values, path)) in forms.into_iter().zip(paths).enumerate() {
            let volume = grid
                .with_data(values, [dims[0], dims[1], dims[2], 1])
                .map_err(|e| e.to_string())?;
            write_map(&volume, path)?;
            let standardisation = [
                "none",
                "z-scored inside the brain mask",
                "divided by its mean inside the brain mask",
            ][form];
            let side = serde_json::json!({
                "Description": format!("{what}: {description}, computed by mmssl {}", env!("CARGO_PKG_VERSION")),
                "Sources": p.settings.sources,
                "RepetitionTime": p.tr,
                "FrequencyBandHz": config.falff.band,
                "Detrending": if config.falff.detrend { "mean and linear trend" } else { "mean" },
                "RunsAveraged": p.bold.len(),
                "BrainMask": p.settings.brain_mask,
                "ConfoundRegression": regression,
                "SmoothingFWHMmm": config.smooth_fwhm,
                "Standardisation": standardisation,
                "mmssl": p.settings,
            });
            let text = serde_json::to_string_pretty(&side).map_err(|e| e.to_string())?;
            write_atomic(&sidecar_of(path), text.as_bytes()).map_err(|e| e.to_string())?;
        }
    }
    Ok(Computed {
        computed: true,
        regression,
    })
}
