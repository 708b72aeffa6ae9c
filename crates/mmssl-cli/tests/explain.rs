//! `mmssl explain` end to end: the image grids of a Two-View MNIST run, its refusals, and on
//! a synthetic cohort NIfTI maps on the input grids whose group comparison finds the planted
//! regions (`explain_cohort.rs`).

mod common;

use common::{TINY, arg, assert_fails, assert_ok, mmssl, read_json, stdout};

#[test]
fn a_two_view_run_is_explained_as_image_grids() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut args = vec!["run"];
    args.extend(TINY);
    args.extend(["--out", arg(&run), "--quiet"]);
    assert_ok(&mmssl(&args));
    let explain = |extra: &[&str]| {
        let mut a = vec!["explain", arg(&run), "--quiet"];
        a.extend(extra);
        mmssl(&a)
    };
    // The classifier's decision for 40 test digits by integrated gradients.
    let res = explain(&["--target", "decision", "--limit", "40", "--steps", "4"]);
    assert_ok(&res);
    let out = stdout(&res);
    assert!(out.contains("40 items explained"), "{out}");
    assert!(out.contains("classifier test accuracy"), "{out}");
    let report = read_json(run.join("explain/explain.json"));
    assert_eq!(report["items"], 40);
    // Ten classes, each against the rest, for both views; a class with fewer than two of
    // the 40 digits is listed as skipped, not dropped silently.
    let counts: Vec<u64> = report["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[1].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 40);
    let maps = report["models"][0]["maps"].as_array().unwrap();
    assert_eq!(maps.len(), 2);
    for m in maps {
        let done = m["contrasts"].as_array().unwrap().len();
        let skipped = m["skipped"].as_array().unwrap().len();
        assert_eq!(done + skipped, 10, "{m}");
        assert_eq!(done, counts.iter().filter(|&&c| c >= 2).count());
        let figure = std::path::PathBuf::from(m["figure"].as_str().unwrap());
        let png = std::fs::read(&figure).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{}", figure.display());
        // Image maps are PNG only: no NIfTI, no mask.
        assert!(m["class_means"].as_array().unwrap().is_empty());
    }
    assert!(report["mask"].is_null());
    let accuracy = report["models"][0]["classifier_accuracy"]
        .as_array()
        .unwrap();
    assert_eq!(accuracy.len(), 2);
    // The classifier is the run's: its test accuracy is eval.json's.
    let eval = read_json(run.join("eval.json"));
    for m in 0..2 {
        let a = accuracy[m].as_f64().unwrap();
        let b = eval["linear_eval"][m]["pretrained"]["accuracy"]
            .as_f64()
            .unwrap();
        assert!((a - b).abs() < 1e-9, "modality {m}: {a} vs {b}");
    }
    // An earlier explanation is kept unless --overwrite.
    assert_fails(
        &explain(&["--limit", "4", "--method", "gradient"]),
        &["not empty", "explain"],
    );
    assert_ok(&explain(&[
        "--limit",
        "4",
        "--method",
        "gradient",
        "--overwrite",
        "--reference",
    ]));
    let report = read_json(run.join("explain/explain.json"));
    assert_eq!(report["models"][1]["model"], "random-init");
    assert_eq!(report["models"][0]["maps"][0]["target"], "shared-1");
    // Bad settings name themselves.
    assert_fails(
        &explain(&[
            "--target",
            "unit",
            "--unit",
            "999",
            "--out",
            arg(&dir.path().join("u")),
        ]),
        &["explain.unit", "999", "units"],
    );
    assert_fails(&explain(&["--target", "unit"]), &["--unit"]);
    assert_fails(&explain(&["--components", "0"]), &["explain.components"]);
    assert_fails(
        &explain(&["--method", "smoothgrad", "--samples", "0"]),
        &["samples"],
    );
}

#[test]
fn what_cannot_be_explained_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Not a run folder.
    assert_fails(
        &mmssl(&["explain", arg(dir.path()), "--quiet"]),
        &["config.toml", "run folder"],
    );
    // Linear CCA has no encoder to differentiate.
    let run = dir.path().join("lcca");
    let mut args = vec!["run", "--method", "lcca"];
    args.extend(TINY);
    args.extend(["--out", arg(&run), "--quiet"]);
    assert_ok(&mmssl(&args));
    assert_fails(
        &mmssl(&["explain", arg(&run), "--quiet"]),
        &["cannot explain", "lcca"],
    );
}
