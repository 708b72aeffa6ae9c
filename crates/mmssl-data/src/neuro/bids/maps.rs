//! Choosing each session's images, checking them, and computing and writing its maps.

use super::layout::sidecar;
use super::{BidsConfig, BidsFile, BidsSession, RunChoice, write_atomic};
use crate::formats::nifti::{read_nifti, read_nifti_header, write_nifti};
use crate::neuro::falff::{AlffReduction, FalffConfig, falff};
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
}

/// A session ready to compute: what was chosen, or why it cannot be used.
pub(super) struct Planned {
    pub subject: String,
    pub session: Option<String>,
    pub t1: PathBuf,
    pub bold: Vec<PathBuf>,
    pub tr: f64,
    pub falff: PathBuf,
    pub alff: PathBuf,
    pub settings: MapSettings,
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
pub(super) fn plan(
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

pub(super) fn sidecar_of(map: &Path) -> PathBuf {
    let name = map.file_name().unwrap_or_default().to_string_lossy();
    map.with_file_name(format!("{}.json", name.trim_end_matches(".nii.gz")))
}

/// Computes and writes a session's maps, or reuses them; `Ok(true)` when computed.
pub(super) fn compute(p: &Planned, config: &BidsConfig) -> std::result::Result<bool, String> {
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
