//! Confound regression and scrubbing against the numpy reference of
//! `tests/fixtures/fmriprep/make_reference.py`, expansions, masks, and the errors.

use super::*;
use crate::formats::nifti::read_nifti;
use crate::tests::assert_error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fmriprep")
        .join(name)
}

fn table() -> ConfoundsTable {
    ConfoundsTable::read(&fixture("sub-01_task-rest_desc-confounds_timeseries.tsv")).unwrap()
}

/// mmssl's regression and scrubbing against the numpy reference of `make_reference.py`
/// (itself checked against `nilearn.signal.clean` where nothing is scrubbed).
#[test]
fn regression_and_scrubbing_match_the_numpy_reference() {
    let bold = read_nifti(fixture("sub-01_task-rest_bold.nii.gz")).unwrap();
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("confound_reference.json")).unwrap())
            .unwrap();
    let table = table();
    assert_eq!((table.frames(), table.names.len()), (30, 84));
    let n = bold.frame_len();
    for case in reference.as_array().unwrap() {
        let config = ConfoundsConfig {
            terms: ConfoundsConfig::parse_terms(case["confounds"].as_str().unwrap()).unwrap(),
            fd_threshold: case["fd"].as_f64(),
            min_segment: case["min_segment"].as_u64().unwrap() as usize,
            min_kept: 0.3,
        };
        let design = confound_design(&table, &config, bold.frames()).unwrap();
        let expected_keep: Vec<bool> = serde_json::from_value(case["kept"].clone()).unwrap();
        assert_eq!(design.keep, expected_keep, "{}", case["confounds"]);
        assert_eq!(design.non_steady, 3);
        let (clean, report) = regress_confounds(bold.clone(), None, &design).unwrap();
        assert_eq!(report.kept, design.kept());
        assert!(report.dropped.is_empty(), "{:?}", report.dropped);
        let residuals = case["residuals"].as_array().unwrap();
        let scale = residuals
            .iter()
            .flat_map(|r| r.as_array().unwrap())
            .fold(0f64, |m, v| m.max(v.as_f64().unwrap().abs()));
        let mut worst = 0f64;
        for (v, r) in residuals.iter().enumerate() {
            for (t, e) in r.as_array().unwrap().iter().enumerate() {
                let got = clean.data()[v + t * n] as f64;
                worst = worst.max((got - e.as_f64().unwrap()).abs());
            }
        }
        assert!(
            worst <= 2e-6 * scale,
            "{}: largest difference {worst} of {scale}",
            case["confounds"]
        );
    }
}

#[test]
fn missing_expansions_are_computed_and_masks_zero_the_outside() {
    let full = table();
    let mut cut = full.clone();
    for name in ["csf_derivative1", "csf_power2", "csf_derivative1_power2"] {
        let i = cut.names.iter().position(|n| n == name).unwrap();
        cut.names.remove(i);
        cut.columns.remove(i);
    }
    let config = ConfoundsConfig {
        terms: ConfoundsConfig::parse_terms("wm-csf8").unwrap(),
        ..Default::default()
    };
    let a = confound_design(&full, &config, 30).unwrap();
    let b = confound_design(&cut, &config, 30).unwrap();
    assert_eq!(a.names, b.names);
    for (x, y) in a.values.iter().zip(&b.values) {
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() <= 1e-6 * p.abs().max(1.0), "{p} {q}");
        }
    }
    // A mask: outside voxels are zero, inside ones as without a mask.
    let bold = read_nifti(fixture("sub-01_task-rest_bold.nii.gz")).unwrap();
    let mask: Vec<bool> = (0..bold.frame_len()).map(|v| v % 3 != 0).collect();
    let (all, _) = regress_confounds(bold.clone(), None, &a).unwrap();
    let (masked, _) = regress_confounds(bold.clone(), Some(&mask), &a).unwrap();
    for (i, (&x, &y)) in all.data().iter().zip(masked.data()).enumerate() {
        let v = i % bold.frame_len();
        assert_eq!(y, if mask[v] { x } else { 0.0 });
    }
    // A column repeated under another name is dropped, and said.
    let mut twice = full.clone();
    let i = twice.names.iter().position(|n| n == "csf").unwrap();
    twice.names.push("csf_copy".into());
    twice.columns.push(twice.columns[i].clone());
    let config = ConfoundsConfig {
        terms: ConfoundsConfig::parse_terms("csf+csf_copy").unwrap(),
        ..Default::default()
    };
    let d = confound_design(&twice, &config, 30).unwrap();
    let (_, r) = regress_confounds(bold.clone(), None, &d).unwrap();
    assert_eq!(r.dropped, ["csf_copy"]);
    assert_eq!(r.used, ["intercept", "linear trend", "csf"]);
}

#[test]
fn bad_models_and_tables_are_errors_naming_them() {
    assert_eq!(
        ConfoundsConfig::parse_terms("36p").unwrap().join("+"),
        "motion24+wm-csf8+gs4"
    );
    assert_eq!(
        ConfoundsConfig::parse_terms("9p+gs, a_comp_cor_00").unwrap(),
        ["motion6", "wm-csf", "gs", "a_comp_cor_00"]
    );
    assert!(ConfoundsConfig::parse_terms("none").unwrap().is_empty());
    assert!(
        ConfoundsConfig::parse_terms("6p++gs")
            .unwrap_err()
            .contains("empty term")
    );
    assert!(
        ConfoundsConfig::parse_terms("motion-7")
            .unwrap_err()
            .contains("motion-7")
    );
    let t = table();
    let model = |text: &str| ConfoundsConfig {
        terms: ConfoundsConfig::parse_terms(text).unwrap(),
        ..Default::default()
    };
    assert_error(
        confound_design(&t, &model("6p+a_comp_cor_99"), 30),
        &["no column `a_comp_cor_99`", "confounds_timeseries"],
    );
    assert_error(
        confound_design(&t, &model("6p"), 40),
        &["30 rows, but the BOLD series has 40 frames"],
    );
    let strict = ConfoundsConfig {
        fd_threshold: Some(0.5),
        ..model("6p")
    };
    assert_error(
        confound_design(&t, &strict, 30),
        &["censoring keeps", "of 30 frames"],
    );
    let bad = ConfoundsConfig {
        fd_threshold: Some(-1.0),
        ..model("6p")
    };
    assert!(confound_design(&t, &bad, 30).is_err());
    // A cell that is not a number, a short row.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.tsv");
    std::fs::write(&p, "trans_x\trot_x\n0.1\tabc\n").unwrap();
    assert_error(ConfoundsTable::read(&p), &["line 2, column `rot_x`: `abc`"]);
    std::fs::write(&p, "trans_x\trot_x\n0.1\n").unwrap();
    assert_error(ConfoundsTable::read(&p), &["1 values for 2"]);
}
