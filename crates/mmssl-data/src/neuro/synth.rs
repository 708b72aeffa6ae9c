//! A synthetic paired-volume cohort made from a real T1 template, for trying the OASIS-3
//! pipeline end to end without OASIS-3 (which needs a data use agreement).
//!
//! From a T1 template in MNI space (e.g. the MNI ICBM152 2009a T1 and its grey-matter
//! probability map) each subject gets a smooth random deformation (a global shift plus a few
//! low-frequency sinusoidal displacement waves), and each of its 1-3 sessions a smooth
//! multiplicative bias field and noise inside the brain. Per session two volumes are written
//! at 3 mm on an axis-aligned grid covering the template:
//!
//! - **T1**: the deformed template, with grey-matter loss `t1 * (1 - loss * gm)`;
//! - **fALFF-like**: `0.2 + 0.45 * smooth(gm) + smooth noise`, lowered in a posterior
//!   (posterior cingulate / precuneus) region for AD, clamped into `[0.01, 0.99]` inside the
//!   brain and 0 outside.
//!
//! The group effect: AD subjects lose grey matter in the hippocampi and lateral temporal lobes
//! (Gaussian regions around [`HIPPOCAMPI_MNI`] and [`TEMPORAL_MNI`], progressing over
//! sessions) and have lower posterior fALFF (around [`POSTERIOR_MNI`]), in line with the
//! medial temporal atrophy and posterior default-mode hypoactivity reported in Alzheimer's
//! disease; HC subjects get only a small random loss. Subjects alternate HC, AD, HC, ...
//! The two effects' strengths are drawn independently per AD subject, or, with
//! [`SynthConfig::stage`], scaled together by one disease stage per subject;
//! [`SynthConfig::hc_stage`] then puts HC subjects on the same continuum.
//!
//! Everything is seeded: the same configuration writes the same files.

use crate::error::{DataError, Result};
use crate::formats::nifti::{read_nifti, write_nifti};
use crate::loading::dataset::item_rng;
use crate::neuro::preprocess::{VoxelGrid, resample, trilinear};
use crate::neuro::volume::{Affine, Volume};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// MNI coordinates (mm) of the left and right hippocampus, centres of the AD atrophy.
pub const HIPPOCAMPI_MNI: [[f64; 3]; 2] = [[-26.0, -22.0, -14.0], [26.0, -22.0, -14.0]];
/// MNI coordinates (mm) of the left and right lateral temporal lobe (half-strength atrophy).
pub const TEMPORAL_MNI: [[f64; 3]; 2] = [[-50.0, -20.0, -18.0], [50.0, -20.0, -18.0]];
/// MNI coordinates (mm) of the posterior cingulate / precuneus, centre of the fALFF drop.
pub const POSTERIOR_MNI: [f64; 3] = [0.0, -56.0, 30.0];
/// Width (standard deviation, mm) of the hippocampal atrophy regions.
pub const HIPPOCAMPAL_SIGMA_MM: f64 = 8.0;
/// Width (standard deviation, mm) of the temporal atrophy regions.
pub const TEMPORAL_SIGMA_MM: f64 = 10.0;
/// Width (standard deviation, mm) of the posterior fALFF region.
pub const POSTERIOR_SIGMA_MM: f64 = 15.0;

/// Settings of [`synth_cohort`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    /// The T1 template (in MNI space; skull-stripped, background 0).
    pub template_t1: PathBuf,
    /// Its grey-matter probability map (any grid); without one, a crude GM likelihood is
    /// derived from the T1 intensities.
    pub template_gm: Option<PathBuf>,
    /// Number of subjects (half HC, half AD; at least 2).
    pub subjects: usize,
    /// Fewest and most sessions per subject (1 and 3).
    pub sessions: [usize; 2],
    /// Voxel size of the written volumes in mm (3).
    pub spacing: f64,
    /// Largest displacement of the random deformation in mm (4).
    pub deformation_mm: f64,
    /// Strength of the bias field (log-amplitude, 0.15).
    pub bias: f64,
    /// Noise standard deviation relative to the template's 99th percentile (0.02).
    pub noise: f64,
    /// Grey-matter loss of AD at the centre of the hippocampal regions (0.35).
    pub atrophy: f64,
    /// Relative fALFF reduction of AD at the centre of the posterior region (0.3).
    pub falff_drop: f64,
    /// A disease stage shared by both modalities: `Some([lo, hi])` draws one stage per AD
    /// subject, uniform in `[lo, hi]` (HC: in `[0, 0.15 lo]`, or in
    /// [`hc_stage`](Self::hc_stage)), and scales both the grey-matter loss
    /// (`atrophy * stage`) and the fALFF reduction (`falff_drop * stage`) by it, each capped
    /// at 0.9. `None` (the default) draws the two effects' strengths independently,
    /// 0.8-1.2 times `atrophy` and `falff_drop` for AD, so the modalities share only the
    /// diagnosis. Neurodegeneration and the loss of function progress together in AD, so a
    /// shared stage is the more faithful model, and it gives the modalities a graded disease
    /// signal in common.
    #[serde(default)]
    pub stage: Option<[f64; 2]>,
    /// The HC subjects' stage range when [`stage`](Self::stage) is set: `Some([lo, hi])` draws
    /// each HC subject's stage uniform in `[lo, hi]` instead of in `[0, 0.15 lo]` of the AD
    /// range. A range that reaches up to AD's models a preclinical continuum: every subject,
    /// HC or AD, then carries a graded effect in the planted regions that both modalities
    /// share, and the diagnosis is where it lies on that continuum. Needs `stage`.
    #[serde(default)]
    pub hc_stage: Option<[f64; 2]>,
    /// Seed of every random draw.
    pub seed: u64,
}

impl SynthConfig {
    /// Defaults for a template (and optional GM map).
    pub fn new(template_t1: impl Into<PathBuf>, template_gm: Option<PathBuf>) -> Self {
        SynthConfig {
            template_t1: template_t1.into(),
            template_gm,
            subjects: 20,
            sessions: [1, 3],
            spacing: 3.0,
            deformation_mm: 4.0,
            bias: 0.15,
            noise: 0.02,
            atrophy: 0.35,
            falff_drop: 0.3,
            stage: None,
            hc_stage: None,
            seed: 0,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |name, value: String, reason: &str| Err(DataError::invalid(name, value, reason));
        if self.subjects < 2 {
            return bad(
                "subjects",
                self.subjects.to_string(),
                "at least 2 (HC and AD)",
            );
        }
        let [lo, hi] = self.sessions;
        if lo == 0 || lo > hi || hi > 99 {
            return bad(
                "sessions",
                format!("{lo}-{hi}"),
                "1 <= fewest <= most <= 99 sessions per subject",
            );
        }
        if !(self.spacing.is_finite() && self.spacing >= 0.5) {
            return bad("spacing", self.spacing.to_string(), "at least 0.5 mm");
        }
        for (name, v, max) in [
            ("deformation_mm", self.deformation_mm, 30.0),
            ("bias", self.bias, 2.0),
            ("noise", self.noise, 1.0),
            ("atrophy", self.atrophy, 0.9),
            ("falff_drop", self.falff_drop, 0.9),
        ] {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                return bad(name, v.to_string(), &format!("must be in [0, {max}]"));
            }
        }
        for (name, range) in [("stage", self.stage), ("hc_stage", self.hc_stage)] {
            if let Some([lo, hi]) = range
                && !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi <= 10.0)
            {
                return bad(
                    name,
                    format!("{lo}-{hi}"),
                    "0 <= lowest <= highest <= 10 (a multiple of atrophy and falff_drop)",
                );
            }
        }
        if let (Some([lo, hi]), None) = (self.hc_stage, self.stage) {
            return bad(
                "hc_stage",
                format!("{lo}-{hi}"),
                "needs `stage`: the HC range only applies to a shared disease stage",
            );
        }
        Ok(())
    }
}

/// What [`synth_cohort`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthReport {
    /// The manifest (`manifest.csv` in the output folder).
    pub manifest: PathBuf,
    /// Subjects written.
    pub subjects: usize,
    /// Sessions (pairs) written.
    pub sessions: usize,
    /// HC subjects.
    pub hc: usize,
    /// AD subjects.
    pub ad: usize,
    /// Shape of the written volumes.
    pub shape: [usize; 3],
}

/// A standard normal draw (Box-Muller).
pub(crate) fn gaussian<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A smooth random scalar field: a sum of plane waves with wavelengths of 60-160 mm.
struct Waves {
    waves: Vec<([f64; 3], f64, f64)>,
}

impl Waves {
    fn new<R: Rng + ?Sized>(rng: &mut R, count: usize, amplitude: f64) -> Self {
        let waves = (0..count)
            .map(|_| {
                let dir = [gaussian(rng), gaussian(rng), gaussian(rng)];
                let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-9);
                let wavelength = rng.random_range(60.0..160.0);
                let k = dir.map(|v| v / norm * 2.0 * std::f64::consts::PI / wavelength);
                let phase = rng.random_range(0.0..2.0 * std::f64::consts::PI);
                let amp = amplitude * rng.random_range(0.3..1.0) / (count as f64).sqrt();
                (k, phase, amp)
            })
            .collect();
        Waves { waves }
    }

    fn at(&self, w: [f64; 3]) -> f64 {
        self.waves
            .iter()
            .map(|(k, p, a)| a * (k[0] * w[0] + k[1] * w[1] + k[2] * w[2] + p).sin())
            .sum()
    }
}

fn gauss_bump(w: [f64; 3], c: [f64; 3], sigma: f64) -> f64 {
    let d2: f64 = (0..3).map(|a| (w[a] - c[a]).powi(2)).sum();
    (-d2 / (2.0 * sigma * sigma)).exp()
}

/// The AD atrophy weight at `w` (1 at the hippocampal centres).
fn atrophy_weight(w: [f64; 3]) -> f64 {
    let h: f64 = HIPPOCAMPI_MNI
        .iter()
        .map(|&c| gauss_bump(w, c, HIPPOCAMPAL_SIGMA_MM))
        .sum();
    let t: f64 = TEMPORAL_MNI
        .iter()
        .map(|&c| gauss_bump(w, c, TEMPORAL_SIGMA_MM))
        .sum();
    (h + 0.5 * t).min(1.0)
}

/// Separable Gaussian smoothing (standard deviation `sigma` voxels) of a 3D array.
fn smooth(data: &[f32], shape: [usize; 3], sigma: f64) -> Vec<f32> {
    crate::neuro::stats::smooth_axes(data, shape, [sigma; 3])
}

/// The 99th percentile of the positive values.
fn p99(data: &[f32]) -> f64 {
    let mut v: Vec<f32> = data.iter().copied().filter(|&x| x > 0.0).collect();
    if v.is_empty() {
        return 0.0;
    }
    let k = ((v.len() - 1) as f64 * 0.99).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    *x as f64
}

/// The record a synthetic cohort's folder keeps (the settings that wrote it): a folder that
/// holds anything else but no such record is never written into.
pub const SYNTH_RECORD: &str = "synth-cohort.json";

/// Refuses an output folder that holds files but no [`SYNTH_RECORD`] (the user's own files,
/// or another tool's, that a cohort would replace or mix with); missing or empty is fine.
fn check_cohort_folder(out: &Path) -> Result<()> {
    let entries: Vec<String> = match std::fs::read_dir(out) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DataError::io(out, e)),
    };
    if entries.is_empty() || entries.iter().any(|n| n == SYNTH_RECORD) {
        return Ok(());
    }
    let mut entries = entries;
    entries.sort();
    Err(DataError::ForeignFiles {
        dir: out.to_path_buf(),
        what: "a synthetic cohort",
        record: SYNTH_RECORD,
        entries,
    })
}

/// Writes a synthetic cohort into `out_dir` (created if needed; a folder holding other files
/// than an earlier synthetic cohort's is refused, [`SYNTH_RECORD`]): per session
/// `sub-XXXX/ses-YY_T1w.nii.gz` and `sub-XXXX/ses-YY_falff.nii.gz`, and `manifest.csv` with
/// columns `subject, session, t1, falff, label, age, sex` (paths relative to the manifest).
pub fn synth_cohort(config: &SynthConfig, out_dir: impl AsRef<Path>) -> Result<SynthReport> {
    config.validate()?;
    let out_dir = out_dir.as_ref();
    check_cohort_folder(out_dir)?;
    let t1 = read_nifti(&config.template_t1)?;
    if t1.frames() != 1 {
        return Err(DataError::format(
            &config.template_t1,
            "the T1 template must be a 3D volume",
        ));
    }
    let scale = p99(t1.data());
    if scale <= 0.0 {
        return Err(DataError::format(
            &config.template_t1,
            "the T1 template has no positive voxel",
        ));
    }
    let gm = match &config.template_gm {
        Some(p) => {
            let g = read_nifti(p)?;
            let g = if VoxelGrid::of(&g) == VoxelGrid::of(&t1) && g.frames() == 1 {
                g
            } else {
                let first = g.with_data(g.frame(0).unwrap_or(&[]).to_vec(), {
                    let [x, y, z] = g.shape();
                    [x, y, z, 1]
                })?;
                resample(&first, &VoxelGrid::of(&t1))?
            };
            let gmax = g.data().iter().fold(0f32, |m, &v| m.max(v));
            // Probabilities stored as 0-255 or 0-1 alike.
            let div = if gmax > 1.0 { gmax } else { 1.0 };
            g.data()
                .iter()
                .map(|&v| (v / div).clamp(0.0, 1.0))
                .collect()
        }
        None => t1
            .data()
            .iter()
            .map(|&v| {
                let r = v as f64 / scale;
                if v > 0.0 {
                    (1.0 - (r - 0.6).abs() / 0.25).clamp(0.0, 1.0) as f32
                } else {
                    0.0
                }
            })
            .collect::<Vec<f32>>(),
    };
    // The output grid: axis-aligned, `spacing` mm, covering the template's corners.
    let [nx, ny, nz] = t1.shape();
    let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    for c in 0..8 {
        let corner = [
            if c & 1 == 0 { 0.0 } else { nx as f64 - 1.0 },
            if c & 2 == 0 { 0.0 } else { ny as f64 - 1.0 },
            if c & 4 == 0 { 0.0 } else { nz as f64 - 1.0 },
        ];
        let w = t1.affine().apply(corner);
        for a in 0..3 {
            lo[a] = lo[a].min(w[a]);
            hi[a] = hi[a].max(w[a]);
        }
    }
    let sp = config.spacing;
    let shape: [usize; 3] = std::array::from_fn(|a| ((hi[a] - lo[a]) / sp).floor() as usize + 1);
    let grid = VoxelGrid::new(shape, Affine::scaling([sp; 3], lo))?;
    let inv = t1
        .affine()
        .inverse()
        .ok_or_else(|| DataError::format(&config.template_t1, "singular affine"))?;
    std::fs::create_dir_all(out_dir).map_err(|e| DataError::io(out_dir, e))?;

    let mut csv_out = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| DataError::format(out_dir.join("manifest.csv"), e.to_string());
    csv_out
        .write_record(["subject", "session", "t1", "falff", "label", "age", "sex"])
        .map_err(csv_err)?;
    let n = grid.len();
    let src_shape = t1.shape();
    let (mut hc, mut ad, mut sessions_written) = (0, 0, 0);
    for s in 0..config.subjects {
        let is_ad = s % 2 == 1;
        if is_ad {
            ad += 1;
        } else {
            hc += 1;
        }
        let mut rng = item_rng(config.seed, 0, s as u64);
        let sessions = rng.random_range(config.sessions[0]..=config.sessions[1]);
        let shift: [f64; 3] =
            std::array::from_fn(|_| rng.random_range(-1.0..1.0) * config.deformation_mm * 0.5);
        let warp: Vec<Waves> = (0..3)
            .map(|_| Waves::new(&mut rng, 4, config.deformation_mm * 0.5))
            .collect();
        let mut severity = if is_ad {
            config.atrophy * rng.random_range(0.8..1.2)
        } else {
            config.atrophy * rng.random_range(0.0..0.15)
        };
        let mut falff_drop = if is_ad {
            config.falff_drop * rng.random_range(0.8..1.2)
        } else {
            config.falff_drop * rng.random_range(0.0..0.1)
        };
        // (Drawn after the independent strengths, so that cohorts without a stage keep their
        // numbers.)
        if let Some([lo, hi]) = config.stage {
            let u = rng.random::<f64>();
            let stage = match (is_ad, config.hc_stage) {
                (true, _) => lo + (hi - lo) * u,
                (false, Some([hc_lo, hc_hi])) => hc_lo + (hc_hi - hc_lo) * u,
                (false, None) => 0.15 * lo * u,
            };
            severity = (config.atrophy * stage).min(0.9);
            falff_drop = (config.falff_drop * stage).min(0.9);
        }
        let age0 = if is_ad { 74.0 } else { 70.0 } + 5.0 * gaussian(&mut rng);
        let sex = if rng.random_bool(0.5) { "F" } else { "M" };
        let subject = format!("sub-{:04}", s + 1);
        let sub_dir = out_dir.join(&subject);
        std::fs::create_dir_all(&sub_dir).map_err(|e| DataError::io(&sub_dir, e))?;
        // Template samples at the deformed positions (shared by the subject's sessions).
        let mut base_t1 = vec![0f32; n];
        let mut base_gm = vec![0f32; n];
        let mut atrophy_w = vec![0f32; n];
        let mut posterior_w = vec![0f32; n];
        for k in 0..shape[2] {
            for j in 0..shape[1] {
                for i in 0..shape[0] {
                    let v = i + shape[0] * (j + shape[1] * k);
                    let w = grid.affine.apply([i as f64, j as f64, k as f64]);
                    let src: [f64; 3] = std::array::from_fn(|a| w[a] + shift[a] + warp[a].at(w));
                    let p = inv.apply(src);
                    base_t1[v] = trilinear(t1.data(), src_shape, p).max(0.0);
                    base_gm[v] = trilinear(&gm, src_shape, p).clamp(0.0, 1.0);
                    atrophy_w[v] = atrophy_weight(src) as f32;
                    posterior_w[v] = gauss_bump(src, POSTERIOR_MNI, POSTERIOR_SIGMA_MM) as f32;
                }
            }
        }
        let brain: Vec<bool> = base_t1.iter().map(|&v| v > 0.0).collect();
        for session in 0..sessions {
            let mut rng = item_rng(config.seed, 1 + session as u64, s as u64);
            // AD progresses by 10% per session.
            let loss = severity * (1.0 + 0.1 * session as f64);
            let bias = Waves::new(&mut rng, 3, config.bias);
            let texture = Waves::new(&mut rng, 6, 0.08);
            let mut t1_out = vec![0f32; n];
            let mut gm_now = vec![0f32; n];
            // The world position (mm) of voxel `v` (x fastest).
            let world = |v: usize| {
                let (i, j, k) = (
                    v % shape[0],
                    (v / shape[0]) % shape[1],
                    v / (shape[0] * shape[1]),
                );
                grid.affine.apply([i as f64, j as f64, k as f64])
            };
            for v in 0..n {
                let l = (loss * atrophy_w[v] as f64).min(0.9);
                gm_now[v] = (base_gm[v] as f64 * (1.0 - l)) as f32;
                if brain[v] {
                    let w = world(v);
                    let dark = base_t1[v] as f64 * (1.0 - l * base_gm[v] as f64);
                    let noisy = dark * bias.at(w).exp() + config.noise * scale * gaussian(&mut rng);
                    // Keep the brain strictly positive so that the mask stays the brain.
                    t1_out[v] = noisy.max(1e-3 * scale) as f32;
                }
            }
            let gm_smooth = smooth(&gm_now, shape, 6.0 / sp);
            let mut falff_out = vec![0f32; n];
            for v in 0..n {
                if brain[v] {
                    let w = world(v);
                    let base = 0.2 + 0.45 * gm_smooth[v] as f64 + texture.at(w);
                    let drop = 1.0 - falff_drop * posterior_w[v] as f64;
                    let value = base * drop + 0.02 * gaussian(&mut rng);
                    falff_out[v] = value.clamp(0.01, 0.99) as f32;
                }
            }
            let ses = format!("ses-{:02}", session + 1);
            let t1_rel = format!("{subject}/{ses}_T1w.nii.gz");
            let falff_rel = format!("{subject}/{ses}_falff.nii.gz");
            let t1_vol = Volume::new(t1_out, shape, grid.affine, &t1_rel)?;
            let falff_vol = Volume::new(falff_out, shape, grid.affine, &falff_rel)?;
            write_nifti(&t1_vol, out_dir.join(&t1_rel))?;
            write_nifti(&falff_vol, out_dir.join(&falff_rel))?;
            let age = format!("{:.1}", age0 + 1.5 * session as f64);
            csv_out
                .write_record([
                    subject.as_str(),
                    ses.as_str(),
                    t1_rel.as_str(),
                    falff_rel.as_str(),
                    if is_ad { "AD" } else { "HC" },
                    age.as_str(),
                    sex,
                ])
                .map_err(csv_err)?;
            sessions_written += 1;
        }
    }
    let manifest = out_dir.join("manifest.csv");
    let bytes = csv_out
        .into_inner()
        .map_err(|e| DataError::format(&manifest, e.to_string()))?;
    std::fs::write(&manifest, bytes).map_err(|e| DataError::io(&manifest, e))?;
    let record = out_dir.join(SYNTH_RECORD);
    let text = serde_json::to_string_pretty(config).unwrap_or_default();
    std::fs::write(&record, text).map_err(|e| DataError::write(&record, e))?;
    Ok(SynthReport {
        manifest,
        subjects: config.subjects,
        sessions: sessions_written,
        hc,
        ad,
        shape,
    })
}
