//! A synthetic resting-state study as fMRIPrep leaves it: a raw BIDS root (participants and
//! the task sidecar) and, under `derivatives/fmriprep/`, each subject's preprocessed T1w,
//! brain mask and grey-matter map in MNI space, and each session's preprocessed BOLD series in
//! MNI space with its brain mask, JSON sidecar and confounds table. It is what
//! [`crate::bids_to_manifest`] reads with [`crate::BidsConfig::fmriprep`], built from the MNI
//! template so that every number is known:
//!
//! - every voxel's series is a sum of cosines on the frequency bins of the series, with
//!   amplitudes chosen so that its fALFF is a known **target**: `0.25 + 0.35 * GM`, lowered
//!   for AD subjects around the posterior cingulate ([`crate::POSTERIOR_MNI`]) by
//!   [`FmriprepSynthConfig::falff_drop`];
//! - subject motion (six parameters, a random walk plus [`FmriprepSynthConfig::spikes`]
//!   one-frame jumps) adds to every voxel with a voxel-specific loading, and is written, with
//!   its Friston expansion, framewise displacement (Power et al. 2012, rotations on a 50 mm
//!   sphere) and a non-steady-state first frame, to the confounds table. Regressing
//!   `motion6` (or `24p`) recovers the target; ignoring it does not.
//!
//! Everything is seeded: the same configuration writes the same files.

use crate::error::{DataError, Result};
use crate::formats::nifti::{read_nifti, write_nifti};
use crate::loading::dataset::item_rng;
use crate::neuro::preprocess::{VoxelGrid, resample};
use crate::neuro::synth::{POSTERIOR_MNI, POSTERIOR_SIGMA_MM, gaussian};
use crate::neuro::volume::{Affine, Volume};
use rand::{Rng, RngExt};
use realfft::RealFftPlanner;
use realfft::num_complex::Complex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The space every image of the synthetic study is in.
pub const SYNTH_SPACE: &str = "MNI152NLin2009cAsym";

/// Settings of [`synth_fmriprep`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FmriprepSynthConfig {
    /// The MNI T1 template (skull-stripped), 1 mm.
    pub template_t1: PathBuf,
    /// The grey-matter probability map on the template's grid.
    pub template_gm: PathBuf,
    /// Subjects (half HC, half AD, alternating).
    pub subjects: usize,
    /// Sessions per subject (the T1w is subject-level, as fMRIPrep writes it for several).
    pub sessions: usize,
    /// Frames per series.
    pub frames: usize,
    /// Repetition time in seconds.
    pub tr: f64,
    /// Voxel size of the BOLD series, mm.
    pub bold_spacing: f64,
    /// Voxel size of the anatomical images, mm.
    pub anat_spacing: f64,
    /// Motion's share of the signal: the standard deviation of the motion part of a voxel's
    /// series relative to that of its neural part (0: no motion).
    pub motion: f64,
    /// One-frame motion jumps per series (each makes two frames of high displacement).
    pub spikes: usize,
    /// Relative fALFF drop at the posterior cingulate in AD subjects.
    pub falff_drop: f64,
    /// Seed.
    pub seed: u64,
}

impl FmriprepSynthConfig {
    /// Defaults: 8 subjects, 1 session, 120 frames at TR 2 s, BOLD at 4 mm, anatomy at 2 mm,
    /// motion 2, 2 spikes, drop 0.5, seed 0.
    pub fn new(template_t1: impl Into<PathBuf>, template_gm: impl Into<PathBuf>) -> Self {
        FmriprepSynthConfig {
            template_t1: template_t1.into(),
            template_gm: template_gm.into(),
            subjects: 8,
            sessions: 1,
            frames: 120,
            tr: 2.0,
            bold_spacing: 4.0,
            anat_spacing: 2.0,
            motion: 2.0,
            spikes: 2,
            falff_drop: 0.5,
            seed: 0,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |name, value: String, reason: &str| Err(DataError::invalid(name, value, reason));
        if self.subjects < 1 || self.sessions < 1 {
            return bad(
                "subjects / sessions",
                format!("{} / {}", self.subjects, self.sessions),
                "at least one of each",
            );
        }
        if self.frames < 16 {
            return bad("frames", self.frames.to_string(), "at least 16");
        }
        for (name, v) in [
            ("tr", self.tr),
            ("bold_spacing", self.bold_spacing),
            ("anat_spacing", self.anat_spacing),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(name, v.to_string(), "a positive number");
            }
        }
        if !(self.motion.is_finite() && self.motion >= 0.0) {
            return bad("motion", self.motion.to_string(), "non-negative");
        }
        if !(self.falff_drop.is_finite() && (0.0..1.0).contains(&self.falff_drop)) {
            return bad("falff_drop", self.falff_drop.to_string(), "in [0, 1)");
        }
        if 2 * self.spikes + 2 > self.frames / 4 {
            return bad(
                "spikes",
                self.spikes.to_string(),
                "at most one spike per 8 frames",
            );
        }
        Ok(())
    }
}

/// One session written by [`synth_fmriprep`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthSeries {
    /// Subject label.
    pub subject: String,
    /// Session label.
    pub session: String,
    /// `HC` or `AD`.
    pub diagnosis: String,
    /// The preprocessed BOLD series.
    pub bold: PathBuf,
    /// Its true fALFF map (brain only), for checking.
    pub target_falff: PathBuf,
    /// The frames of the motion jumps (each also moves the next frame's displacement).
    pub spike_frames: Vec<usize>,
}

/// What [`synth_fmriprep`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FmriprepSynthReport {
    /// The raw BIDS root.
    pub bids: PathBuf,
    /// The fMRIPrep derivative folder.
    pub derivatives: PathBuf,
    /// Every series.
    pub series: Vec<SynthSeries>,
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| DataError::io(d, e))?;
    }
    std::fs::write(path, text).map_err(|e| DataError::io(path, e))
}

fn write_volume(v: &Volume, path: &Path) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| DataError::io(d, e))?;
    }
    write_nifti(v, path)
}

/// The template's bounding grid at `spacing` mm.
fn grid_at(template: &Volume, spacing: f64) -> Result<VoxelGrid> {
    let sizes = template.voxel_size();
    let shape = template.shape();
    let origin = template.world(0.0, 0.0, 0.0);
    let n = [0, 1, 2].map(|a| ((shape[a] as f64 * sizes[a]) / spacing).floor().max(1.0) as usize);
    VoxelGrid::new(n, Affine::scaling([spacing; 3], origin))
}

/// Writes the study under `out` (`out/` the raw root, `out/derivatives/fmriprep/` the
/// derivatives; see the module documentation). An existing `out` with other content is
/// refused.
pub fn synth_fmriprep(config: &FmriprepSynthConfig, out: &Path) -> Result<FmriprepSynthReport> {
    config.validate()?;
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| DataError::io(out, e))?
            .next()
            .is_some()
    {
        return Err(DataError::format(
            out,
            "not empty: the synthetic study is written into a new or empty folder",
        ));
    }
    let t1 = read_nifti(&config.template_t1)?;
    let gm = read_nifti(&config.template_gm)?;
    let anat_grid = grid_at(&t1, config.anat_spacing)?;
    let bold_grid = grid_at(&t1, config.bold_spacing)?;
    let t1_anat = resample(&t1, &anat_grid)?;
    let gm_anat = resample(&gm, &anat_grid)?;
    let gm_max = gm_anat.data().iter().fold(0f32, |m, &v| m.max(v)).max(1e-6);
    let t1_max = t1_anat.data().iter().fold(0f32, |m, &v| m.max(v)).max(1e-6);
    let anat_mask: Vec<f32> = t1_anat
        .data()
        .iter()
        .map(|&v| (v > 0.05 * t1_max) as u8 as f32)
        .collect();
    let gm_prob: Vec<f32> = gm_anat.data().iter().map(|&v| v / gm_max).collect();
    // The anatomical image "with skull": the brain plus a dim shell, as fMRIPrep's
    // desc-preproc_T1w is not skull-stripped.
    let t1_with_shell: Vec<f32> = t1_anat
        .data()
        .iter()
        .map(|&v| if v > 0.05 * t1_max { v } else { 0.15 * t1_max })
        .collect();
    let t1_bold = resample(&t1, &bold_grid)?;
    let gm_bold = resample(&gm, &bold_grid)?;
    let bold_mask: Vec<bool> = t1_bold.data().iter().map(|&v| v > 0.05 * t1_max).collect();
    let deriv = out.join("derivatives").join("fmriprep");
    write_text(
        &out.join("dataset_description.json"),
        r#"{"Name": "mmssl synthetic resting-state study", "BIDSVersion": "1.9.0", "DatasetType": "raw"}"#,
    )?;
    write_text(
        &out.join("task-rest_bold.json"),
        &format!(
            "{{\"TaskName\": \"rest\", \"RepetitionTime\": {}}}",
            config.tr
        ),
    )?;
    write_text(
        &deriv.join("dataset_description.json"),
        r#"{"Name": "fMRIPrep - fMRI PREProcessing workflow (synthetic, written by mmssl)", "BIDSVersion": "1.9.0", "DatasetType": "derivative", "GeneratedBy": [{"Name": "mmssl synth_fmriprep"}]}"#,
    )?;
    let mut participants = String::from("participant_id\tdiagnosis\tage\n");
    let mut series = Vec::new();
    let frames = config.frames;
    let half = frames / 2;
    let df = 1.0 / (frames as f64 * config.tr);
    // Bins 1 .. half-1 carry signal (the Nyquist bin none); which are in 0.01-0.1 Hz.
    let in_band: Vec<bool> = (0..half)
        .map(|k| {
            let f = k as f64 * df;
            k > 0 && (0.01..=0.1).contains(&f)
        })
        .collect();
    let n_in = in_band.iter().filter(|&&b| b).count();
    let n_out = half - 1 - n_in;
    if n_in == 0 || n_out == 0 {
        return Err(DataError::InvalidParameter {
            name: "frames / tr",
            value: format!("{frames} / {}", config.tr),
            reason: "the series must have frequency bins inside and outside 0.01-0.1 Hz".into(),
        });
    }
    let mut planner = RealFftPlanner::<f64>::new();
    let inverse = planner.plan_fft_inverse(frames);
    for s in 0..config.subjects {
        let subject = format!("{:02}", s + 1);
        let ad = s % 2 == 1;
        let diagnosis = if ad { "AD" } else { "HC" };
        let mut rng = item_rng(config.seed, 1, s as u64);
        participants += &format!(
            "sub-{subject}\t{diagnosis}\t{}\n",
            60 + rng.random_range(0..25)
        );
        let anat = deriv.join(format!("sub-{subject}")).join("anat");
        let stem = format!("sub-{subject}_space-{SYNTH_SPACE}");
        let on_anat = |data: Vec<f32>| t1_anat.with_data(data, t1_anat.dims());
        write_volume(
            &on_anat(t1_with_shell.clone())?,
            &anat.join(format!("{stem}_desc-preproc_T1w.nii.gz")),
        )?;
        write_volume(
            &on_anat(anat_mask.clone())?,
            &anat.join(format!("{stem}_desc-brain_mask.nii.gz")),
        )?;
        write_volume(
            &on_anat(gm_prob.clone())?,
            &anat.join(format!("{stem}_label-GM_probseg.nii.gz")),
        )?;
        let drop = if ad {
            config.falff_drop * rng.random_range(0.8..1.2)
        } else {
            0.0
        };
        let n = bold_grid.len();
        let target: Vec<f64> = (0..n)
            .map(|v| {
                if !bold_mask[v] {
                    return 0.0;
                }
                let [nx, ny, _] = bold_grid.shape;
                let p = bold_grid.affine.apply([
                    (v % nx) as f64,
                    ((v / nx) % ny) as f64,
                    (v / (nx * ny)) as f64,
                ]);
                let d2: f64 = (0..3).map(|a| (p[a] - POSTERIOR_MNI[a]).powi(2)).sum();
                let g = (gm_bold.data()[v] / gm_max).clamp(0.0, 1.0) as f64;
                (0.25 + 0.35 * g) * (1.0 - drop * (-d2 / (2.0 * POSTERIOR_SIGMA_MM.powi(2))).exp())
            })
            .collect();
        for ses in 0..config.sessions {
            let session = format!("{}", ses + 1);
            let mut rng = item_rng(config.seed, 2 + ses as u64, s as u64);
            // Motion: six random walks (mm and radians), then one-frame jumps.
            let mut motion = vec![vec![0f64; frames]; 6];
            for (j, m) in motion.iter_mut().enumerate() {
                let step = if j < 3 { 0.03 } else { 0.0005 };
                for t in 1..frames {
                    m[t] = m[t - 1] + step * gaussian(&mut rng);
                }
            }
            let mut spikes = Vec::new();
            while spikes.len() < config.spikes {
                let t = rng.random_range(2..frames - 1);
                if spikes.iter().all(|&u: &usize| u.abs_diff(t) > 2) {
                    spikes.push(t);
                }
            }
            spikes.sort_unstable();
            for &t in &spikes {
                for (j, m) in motion.iter_mut().enumerate() {
                    m[t] += if j < 3 { 0.8 } else { 0.01 } * gaussian(&mut rng).signum();
                }
            }
            // Each parameter, standardised, with a voxel-specific loading.
            let standard: Vec<Vec<f64>> = motion
                .iter()
                .map(|m| {
                    let mean = m.iter().sum::<f64>() / frames as f64;
                    let sd = (m.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / frames as f64)
                        .sqrt()
                        .max(1e-12);
                    m.iter().map(|x| (x - mean) / sd).collect()
                })
                .collect();
            let mut data = vec![0f32; n * frames];
            let mut spectrum = inverse.make_input_vec();
            let mut signal = inverse.make_output_vec();
            for v in 0..n {
                if !bold_mask[v] {
                    continue;
                }
                let f = target[v];
                let (a_in, a_out) = (f / n_in as f64, (1.0 - f) / n_out as f64);
                for (k, c) in spectrum.iter_mut().enumerate() {
                    let amp = if k == 0 || k >= half {
                        0.0
                    } else if in_band[k] {
                        a_in
                    } else {
                        a_out
                    };
                    let phase = rng.random_range(0.0..2.0 * std::f64::consts::PI);
                    *c = Complex::from_polar(amp / 2.0, phase);
                }
                inverse
                    .process(&mut spectrum, &mut signal)
                    .map_err(|e| DataError::format(out, format!("inverse FFT failed: {e}")))?;
                let sd = (signal.iter().map(|x| x * x).sum::<f64>() / frames as f64).sqrt();
                let loads: Vec<f64> = (0..6).map(|_| gaussian(&mut rng) / 6f64.sqrt()).collect();
                let base = 500.0 + 500.0 * t1_bold.data()[v] as f64 / t1_max as f64;
                for t in 0..frames {
                    let m: f64 = (0..6).map(|j| loads[j] * standard[j][t]).sum();
                    let x = base + 20.0 * (signal[t] / sd.max(1e-12)) + 20.0 * config.motion * m;
                    data[v + t * n] = x as f32;
                }
            }
            let func = deriv
                .join(format!("sub-{subject}"))
                .join(format!("ses-{session}"))
                .join("func");
            let stem = format!("sub-{subject}_ses-{session}_task-rest");
            let bold = Volume::new_4d(
                data,
                [
                    bold_grid.shape[0],
                    bold_grid.shape[1],
                    bold_grid.shape[2],
                    frames,
                ],
                bold_grid.affine,
                Some(config.tr),
                "synthetic BOLD",
            )?;
            let bold_path = func.join(format!(
                "{stem}_space-{SYNTH_SPACE}_desc-preproc_bold.nii.gz"
            ));
            write_volume(&bold, &bold_path)?;
            write_text(
                &func.join(format!("{stem}_space-{SYNTH_SPACE}_desc-preproc_bold.json")),
                &format!(
                    "{{\"RepetitionTime\": {}, \"TaskName\": \"rest\", \"SkullStripped\": false}}",
                    config.tr
                ),
            )?;
            let mask3 = |values: Vec<f32>| {
                Volume::new(values, bold_grid.shape, bold_grid.affine, "synthetic")
            };
            write_volume(
                &mask3(bold_mask.iter().map(|&b| b as u8 as f32).collect())?,
                &func.join(format!("{stem}_space-{SYNTH_SPACE}_desc-brain_mask.nii.gz")),
            )?;
            let target_path = func.join(format!(
                "{stem}_space-{SYNTH_SPACE}_desc-target_falff.nii.gz"
            ));
            write_volume(
                &mask3(target.iter().map(|&f| f as f32).collect())?,
                &target_path,
            )?;
            write_text(
                &func.join(format!("{stem}_desc-confounds_timeseries.tsv")),
                &confounds_table(&motion, &mut rng, frames),
            )?;
            series.push(SynthSeries {
                subject: subject.clone(),
                session,
                diagnosis: diagnosis.into(),
                bold: bold_path,
                target_falff: target_path,
                spike_frames: spikes.clone(),
            });
        }
    }
    write_text(&out.join("participants.tsv"), &participants)?;
    Ok(FmriprepSynthReport {
        bids: out.to_path_buf(),
        derivatives: deriv,
        series,
    })
}

/// The confounds table of a series: motion with its expansion, framewise displacement,
/// white-matter, CSF and global signals (random walks) with theirs, one non-steady-state frame.
fn confounds_table<R: Rng + ?Sized>(motion: &[Vec<f64>], rng: &mut R, frames: usize) -> String {
    let names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"];
    let mut columns: Vec<(String, Vec<f64>)> = Vec::new();
    let mut walk = |scale: f64, base: f64| -> Vec<f64> {
        let mut x = vec![base; frames];
        for t in 1..frames {
            x[t] = x[t - 1] + scale * gaussian(rng);
        }
        x
    };
    let signals: Vec<(&str, Vec<f64>)> = vec![
        ("global_signal", walk(2.0, 800.0)),
        ("csf", walk(3.0, 600.0)),
        ("white_matter", walk(2.0, 700.0)),
    ];
    let expand = |name: &str, x: &[f64], columns: &mut Vec<(String, Vec<f64>)>| {
        let d: Vec<f64> = (0..frames)
            .map(|t| if t == 0 { f64::NAN } else { x[t] - x[t - 1] })
            .collect();
        columns.push((name.to_string(), x.to_vec()));
        columns.push((format!("{name}_derivative1"), d.clone()));
        columns.push((format!("{name}_power2"), x.iter().map(|v| v * v).collect()));
        columns.push((
            format!("{name}_derivative1_power2"),
            d.iter().map(|v| v * v).collect(),
        ));
    };
    for (name, x) in &signals {
        expand(name, x, &mut columns);
    }
    for (name, x) in names.iter().zip(motion) {
        expand(name, x, &mut columns);
    }
    let fd: Vec<f64> = (0..frames)
        .map(|t| {
            if t == 0 {
                return f64::NAN;
            }
            (0..6)
                .map(|j| {
                    let d = (motion[j][t] - motion[j][t - 1]).abs();
                    if j < 3 { d } else { 50.0 * d }
                })
                .sum()
        })
        .collect();
    columns.push(("framewise_displacement".into(), fd));
    columns.push((
        "non_steady_state_outlier00".into(),
        (0..frames).map(|t| (t == 0) as u8 as f64).collect(),
    ));
    let mut text = columns
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join("\t");
    text.push('\n');
    for t in 0..frames {
        let row: Vec<String> = columns
            .iter()
            .map(|(_, c)| {
                if c[t].is_nan() {
                    "n/a".to_string()
                } else {
                    format!("{}", c[t])
                }
            })
            .collect();
        text += &row.join("\t");
        text.push('\n');
    }
    text
}
