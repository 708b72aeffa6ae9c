//! fMRIPrep derivatives in, standardised fALFF in MNI space out: the synthetic study of
//! [`crate::synth_fmriprep`] (built from the real MNI template of `../shared/data/mri`), whose
//! true fALFF is known, read the way a user with an fMRIPrep output folder reads theirs.

use super::maps::sidecar_of;
use super::tests::{assert_refused, run};
use super::*;
use crate::formats::nifti::read_nifti;
use crate::neuro::cohort::Manifest;
use crate::neuro::confounds::{ConfoundsTable, confound_design};
use crate::neuro::synth_fmriprep::{FmriprepSynthConfig, FmriprepSynthReport, synth_fmriprep};
use crate::neuro::volume::Volume;
use crate::volume_tests::shared_template;

/// Two subjects (HC, AD), two sessions each, 8 mm BOLD of 64 frames, 4 mm anatomy, in a new
/// temporary folder; `None` (and a note) where the shared data is absent.
fn study() -> Option<(tempfile::TempDir, FmriprepSynthReport)> {
    let Some((t1, gm)) = shared_template() else {
        eprintln!("skipping: ../shared/data/mri is absent");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = FmriprepSynthConfig {
        subjects: 2,
        sessions: 2,
        frames: 64,
        bold_spacing: 8.0,
        anat_spacing: 4.0,
        ..FmriprepSynthConfig::new(t1, gm)
    };
    let report = synth_fmriprep(&config, &dir.path().join("study")).unwrap();
    Some((dir, report))
}

/// Pearson correlation of two maps inside `mask`.
fn correlation(a: &[f32], b: &[f32], mask: &[f32]) -> f64 {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .zip(mask)
        .filter(|(_, m)| **m > 0.0)
        .map(|((&x, &y), _)| (x as f64, y as f64))
        .collect();
    let n = pairs.len() as f64;
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = pairs.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = pairs.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let syy: f64 = pairs.iter().map(|(_, y)| (y - my).powi(2)).sum();
    sxy / (sxx * syy).sqrt()
}

fn mask_of(series_bold: &Path) -> Vec<f32> {
    let name = series_bold.file_name().unwrap().to_string_lossy();
    let mask = series_bold.with_file_name(name.replace("desc-preproc_bold", "desc-brain_mask"));
    read_nifti(mask).unwrap().into_data()
}

#[test]
fn fmriprep_derivatives_become_standardised_falff_in_mni_space() {
    let Some((dir, study)) = study() else { return };
    let out = dir.path().join("maps");
    let config = BidsConfig::fmriprep(&study.derivatives);
    let report = run(&study.bids, &out, &config).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.used.len(), 4);
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let u = &report.used[0];
    // Names carry the space; the manifest names the z-scored map and the masked T1w.
    assert!(
        u.falff.ends_with(
            "sub-01/ses-1/func/sub-01_ses-1_task-rest_space-MNI152NLin2009cAsym_desc-zstd_falff.nii.gz"
        ),
        "{:?}",
        u.falff
    );
    assert_eq!(u.maps.len(), 6);
    assert!(
        u.t1.ends_with("sub-01/anat/sub-01_space-MNI152NLin2009cAsym_desc-brain_T1w.nii.gz"),
        "{:?}",
        u.t1
    );
    assert_eq!(u.t1_from.as_deref(), Some("sub-01/anat (subject level)"));
    assert_eq!(u.tr, 2.0);
    assert!(u.overlap > 0.99);
    // 24 motion parameters + WM + CSF, 63 of 64 frames (the non-steady-state first one).
    assert_eq!(u.regression.len(), 1);
    assert_eq!(u.regression[0].used.len(), 2 + 26);
    assert_eq!((u.regression[0].kept, u.regression[0].frames), (63, 64));
    let manifest = Manifest::read(&report.manifest).unwrap();
    assert_eq!(manifest.rows().len(), 4);
    assert_eq!(manifest.rows()[1].diagnosis, Diagnosis::Hc);
    assert_eq!(manifest.rows()[2].diagnosis, Diagnosis::Ad);
    assert_eq!(manifest.rows()[0].falff, u.falff);
    assert_eq!(manifest.rows()[0].t1, u.t1);

    // The raw fALFF map follows the true one closely, inside the brain mask only.
    let series = &study.series[0];
    let mask = mask_of(&series.bold);
    let target = read_nifti(&series.target_falff).unwrap();
    let raw = read_nifti(&u.maps[0]).unwrap();
    assert_eq!(raw.affine(), target.affine());
    let r_clean = correlation(raw.data(), target.data(), &mask);
    // 26 confounds of 63 frames take degrees of freedom from the spectrum: still close.
    assert!(r_clean > 0.8, "correlation with the true fALFF {r_clean}");
    assert!(
        raw.data()
            .iter()
            .zip(&mask)
            .all(|(&v, &m)| m > 0.0 || v == 0.0)
    );
    // Without confound regression motion swamps it.
    let none = BidsConfig {
        confounds: crate::ConfoundsConfig::default(),
        ..config.clone()
    };
    let motion = run(&study.bids, &dir.path().join("none"), &none).unwrap();
    let dirty = read_nifti(&motion.used[0].maps[0]).unwrap();
    let r_dirty = correlation(dirty.data(), target.data(), &mask);
    // Six motion parameters, the model the motion was made of: closer still.
    let six = BidsConfig {
        confounds: crate::ConfoundsConfig {
            terms: crate::ConfoundsConfig::parse_terms("6p").unwrap(),
            ..Default::default()
        },
        ..config.clone()
    };
    let m = run(&study.bids, &dir.path().join("6p"), &six).unwrap();
    let r_six = correlation(
        read_nifti(&m.used[0].maps[0]).unwrap().data(),
        target.data(),
        &mask,
    );
    assert!(r_six > 0.95, "6p: {r_six}");
    assert!(
        r_dirty < 0.65 && r_dirty < r_clean - 0.2,
        "without regression {r_dirty}, with {r_clean}"
    );
    // Standardised forms: z-scored and mean-divided inside the mask.
    let inside = |v: &Volume| -> Vec<f64> {
        v.data()
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m > 0.0)
            .map(|(&x, _)| x as f64)
            .collect()
    };
    let z = inside(&read_nifti(&u.maps[1]).unwrap());
    let mean = z.iter().sum::<f64>() / z.len() as f64;
    let sd = (z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (z.len() - 1) as f64).sqrt();
    assert!(mean.abs() < 1e-5 && (sd - 1.0).abs() < 1e-5, "{mean} {sd}");
    let m = inside(&read_nifti(&u.maps[2]).unwrap());
    assert!((m.iter().sum::<f64>() / m.len() as f64 - 1.0).abs() < 1e-5);
    // The sidecar says what was done.
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sidecar_of(&u.falff)).unwrap()).unwrap();
    assert_eq!(side["Standardisation"], "z-scored inside the brain mask");
    assert_eq!(
        side["ConfoundRegression"][0]["used"][2],
        serde_json::json!("trans_x")
    );
    assert!(
        side["BrainMask"]
            .as_str()
            .unwrap()
            .ends_with("desc-brain_mask.nii.gz")
    );
    // The masked T1w: zero outside the anatomical mask, the T1w inside.
    let t1 = read_nifti(&u.t1).unwrap();
    let anat_dir = study.derivatives.join("sub-01/anat");
    let source =
        read_nifti(anat_dir.join("sub-01_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz"))
            .unwrap();
    let amask =
        read_nifti(anat_dir.join("sub-01_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz"))
            .unwrap();
    for ((&a, &s), &m) in t1.data().iter().zip(source.data()).zip(amask.data()) {
        assert_eq!(a, if m > 0.0 { s } else { 0.0 });
    }
    // Run again: everything reused, the regression still reported.
    let again = run(&study.bids, &out, &config).unwrap();
    assert_eq!(again.computed_reused(), (0, 4));
    assert_eq!(again.used[0].regression, u.regression);
}

#[test]
fn scrubbing_smoothing_spaces_and_anatomy_are_chosen() {
    let Some((dir, study)) = study() else { return };
    let fmriprep = BidsConfig::fmriprep(&study.derivatives);
    // Scrubbing at 0.5 mm removes each jump's two frames and the first.
    let scrub = BidsConfig {
        confounds: crate::ConfoundsConfig {
            fd_threshold: Some(0.5),
            ..fmriprep.confounds.clone()
        },
        ..fmriprep.clone()
    };
    let r = run(&study.bids, &dir.path().join("scrub"), &scrub).unwrap();
    let series = &study.series[0];
    let table_path = series
        .bold
        .with_file_name("sub-01_ses-1_task-rest_desc-confounds_timeseries.tsv");
    let design = confound_design(
        &ConfoundsTable::read(&table_path).unwrap(),
        &scrub.confounds,
        64,
    )
    .unwrap();
    let mut censored: Vec<usize> = (0..64).filter(|&t| !design.keep[t]).collect();
    let mut expected = vec![0];
    for &t in &series.spike_frames {
        expected.extend([t, t + 1]);
    }
    expected.sort_unstable();
    censored.sort_unstable();
    assert_eq!(censored, expected);
    assert_eq!(r.used[0].regression[0].kept, 64 - expected.len());

    // Smoothing inside the mask: smoother, still zero outside.
    let smooth = BidsConfig {
        smooth_fwhm: 12.0,
        ..fmriprep.clone()
    };
    let s = run(&study.bids, &dir.path().join("smooth"), &smooth).unwrap();
    let p = run(&study.bids, &dir.path().join("plain"), &fmriprep).unwrap();
    let mask = mask_of(&series.bold);
    let roughness = |path: &Path| -> f64 {
        let v = read_nifti(path).unwrap();
        let d = v.data();
        (1..d.len())
            .filter(|&i| mask[i] > 0.0 && mask[i - 1] > 0.0)
            .map(|i| (d[i] - d[i - 1]).powi(2) as f64)
            .sum()
    };
    assert!(roughness(&s.used[0].maps[0]) < 0.5 * roughness(&p.used[0].maps[0]));
    let sm = read_nifti(&s.used[0].maps[0]).unwrap();
    assert!(
        sm.data()
            .iter()
            .zip(&mask)
            .all(|(&v, &m)| m > 0.0 || v == 0.0)
    );

    // Another space: sub-01 ses-1 also has an MNI152NLin6Asym series.
    let func = series.bold.parent().unwrap();
    for (from, to) in [
        ("desc-preproc_bold.nii.gz", "desc-preproc_bold.nii.gz"),
        ("desc-preproc_bold.json", "desc-preproc_bold.json"),
        ("desc-brain_mask.nii.gz", "desc-brain_mask.nii.gz"),
    ] {
        std::fs::copy(
            func.join(format!(
                "sub-01_ses-1_task-rest_space-MNI152NLin2009cAsym_{from}"
            )),
            func.join(format!("sub-01_ses-1_task-rest_space-MNI152NLin6Asym_{to}")),
        )
        .unwrap();
    }
    // The default space takes the 2009c series, without a word about the other.
    let d = run(&study.bids, &dir.path().join("d"), &fmriprep).unwrap();
    assert!(
        d.used[0].bold[0]
            .to_string_lossy()
            .contains("space-MNI152NLin2009cAsym")
    );
    let six = BidsConfig {
        space: "MNI152NLin6Asym".into(),
        anat: AnatImage::GreyMatter,
        ..fmriprep.clone()
    };
    // The anatomical images exist in 2009c only: every session is skipped, naming them.
    let needles = [
        "no grey-matter probability map in space MNI152NLin6Asym",
        "sub-01_space-MNI152NLin2009cAsym_label-GM_probseg.nii.gz",
    ];
    assert_refused(&study.bids, &dir.path().join("six"), &six, &needles);
}

#[test]
fn grey_matter_desc_and_missing_files_are_handled_by_name() {
    let Some((dir, study)) = study() else { return };
    let fmriprep = BidsConfig::fmriprep(&study.derivatives);
    // The grey-matter map as the anatomical modality: the manifest names it directly.
    let gm = BidsConfig {
        anat: AnatImage::GreyMatter,
        ..fmriprep.clone()
    };
    let r = run(&study.bids, &dir.path().join("gm"), &gm).unwrap();
    assert!(
        r.used[0]
            .t1
            .ends_with("sub-01_space-MNI152NLin2009cAsym_label-GM_probseg.nii.gz")
    );
    // A description nothing has: skipped, saying which files were passed over.
    let other = BidsConfig {
        desc: "smoothAROMAnonaggr".into(),
        ..fmriprep.clone()
    };
    let needles = [
        "with desc smoothAROMAnonaggr",
        "passed over for their space or description",
        "desc-preproc_bold.nii.gz",
    ];
    assert_refused(&study.bids, &dir.path().join("o"), &other, &needles);
    // The confounds table of one session gone: that session is skipped by name.
    let series = &study.series[1];
    let table = series
        .bold
        .with_file_name("sub-01_ses-2_task-rest_desc-confounds_timeseries.tsv");
    std::fs::remove_file(&table).unwrap();
    // No RepetitionTime in one derivative sidecar: the raw dataset's sidecar gives it.
    std::fs::remove_file(
        study.series[2].bold.with_file_name(
            "sub-02_ses-1_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.json",
        ),
    )
    .unwrap();
    let r = run(&study.bids, &dir.path().join("m"), &fmriprep).unwrap();
    assert_eq!(r.skipped.len(), 1);
    assert!(
        r.skipped[0].reason.contains("no confounds table")
            && r.skipped[0]
                .reason
                .contains("sub-01_ses-2_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold"),
        "{}",
        r.skipped[0].reason
    );
    let u = r
        .used
        .iter()
        .find(|u| u.subject == "02" && u.session == "1")
        .unwrap();
    assert_eq!(u.tr, 2.0);
    assert!(u.choices.iter().all(|c| !c.contains("RepetitionTime")));
    // Without a model, a missing table is no reason to skip.
    let none = BidsConfig {
        confounds: crate::ConfoundsConfig::default(),
        ..fmriprep.clone()
    };
    let r = run(&study.bids, &dir.path().join("n"), &none).unwrap();
    assert!(r.skipped.is_empty());
    // Confounds on raw data: refused.
    let raw = BidsConfig {
        derivatives: None,
        ..fmriprep
    };
    assert_refused(&study.bids, &dir.path().join("r"), &raw, &["--derivatives"]);
}
