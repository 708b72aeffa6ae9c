//! Reading the voxels and writing the files: each anatomical image's brain (and masked
//! copy), and each session's maps: confound regression and scrubbing, brain mask, ALFF/fALFF,
//! smoothing and standardisation, with their sidecars.

use super::plan::{AnatPlan, AnatPoints, MapSettings, Planned, name_of};
use super::{BidsConfig, write_atomic};
use crate::formats::nifti::{read_nifti, write_nifti};
use crate::neuro::confounds::{ConfoundsTable, Regression, confound_design, regress_confounds};
use crate::neuro::falff::{FalffConfig, falff};
use crate::neuro::preprocess::{Mask, VoxelGrid};
use crate::neuro::stats::smooth_axes;
use crate::neuro::volume::Volume;
use std::path::{Path, PathBuf};

/// The brain of an anatomical image as points in world space, writing its masked copy where
/// planned (reused when it exists and names the same sources). Without a mask file: the
/// non-zero voxels of a derivative; the head of a raw T1w (above a tenth of its 98th
/// percentile).
pub(super) fn prepare_anat(
    a: &AnatPlan,
    config: &BidsConfig,
) -> std::result::Result<AnatPoints, String> {
    let image = read_nifti(&a.source).map_err(|e| e.to_string())?;
    let grid = VoxelGrid::of(&image);
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
                let flags = Mask::from_volume(&mask, &VoxelGrid::of(&bold))
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
