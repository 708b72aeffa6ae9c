//! `mmssl explain` end to end: the image grids of a Two-View MNIST run, its refusals, and on
//! a synthetic cohort NIfTI maps on the input grids whose group comparison finds the planted
//! regions (`explain_cohort.rs`).

mod common;
use common::scratch;

use common::{arg, assert_fails, assert_ok, mmssl, read_json, stderr, stdout, tiny, write_file};

#[test]
fn a_two_view_run_is_explained_as_image_grids() {
    let (dir, run) = scratch("run");
    assert_ok(&tiny("run", &run, &["--quiet"]));
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
        // Paths in explain.json are relative to the run folder.
        let figure = run.join(m["figure"].as_str().unwrap());
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
    // An earlier explanation is kept unless --overwrite, and the refusal names only what
    // works (`explain` has no --resume).
    let again = explain(&["--limit", "4", "--method", "gradient"]);
    assert_fails(&again, &["not empty", "explain", "--overwrite"]);
    assert!(!stderr(&again).contains("--resume"), "{}", stderr(&again));
    // A template does not apply to image maps: refused, not ignored.
    let garbage = write_file(dir.path(), "garbage.nii", b"not a volume");
    let other = dir.path().join("other");
    assert_fails(
        &explain(&[
            "--limit",
            "4",
            "--method",
            "gradient",
            "--template",
            arg(&garbage),
            "--out",
            arg(&other),
        ]),
        &["template", "garbage.nii", "image run"],
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
    assert_ok(&tiny("run", &run, &["--method", "lcca", "--quiet"]));
    assert_fails(
        &mmssl(&["explain", arg(&run), "--quiet"]),
        &["cannot explain", "lcca"],
    );
}

/// The synthetic cohort's planted effects, found by the maps of a run on it: 12 subjects with
/// strong effects (grey-matter loss 0.8 at the hippocampal centres, fALFF drop 0.8 at the
/// posterior centre), CR-XX for 2 epochs, the classifier's decision by integrated gradients
/// with 8 steps, for the pretrained and the randomly initialised encoders. (The measured
/// validation at a larger size is in docs/biomarkers.md.)
#[test]
fn the_maps_of_a_synthetic_cohort_find_its_planted_regions() {
    use mmssl_data::{planted_recovery, planted_regions, read_nifti};
    let (dir, cohort) = scratch("cohort");
    common::synth_cohort(&cohort, &["--atrophy", "0.8", "--falff-drop", "0.8"]);
    let run = dir.path().join("run");
    let manifest = cohort.join("manifest.csv");
    let extra = [
        "--objective",
        "CR-XX",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--eval-epochs",
        "2",
    ];
    assert_ok(&common::on_cohort("run", &manifest, &run, &extra));
    assert_ok(&mmssl(&[
        "explain",
        arg(&run),
        "--target",
        "decision",
        "--set",
        "all",
        "--steps",
        "8",
        "--reference",
        "--quiet",
    ]));
    let out = run.join("explain");
    let report = read_json(out.join("explain.json"));
    assert_eq!(report["items"], 12, "one labelled session per subject");
    // Each session's map is written on the grid of the cohort's files (the MNI template at
    // 3 mm that synth-cohort resampled every volume to), voxel-aligned with it, not on the
    // 64^3 grid the model saw.
    let mut rows = csv::Reader::from_path(out.join("pretrained/items.csv")).unwrap();
    let header = rows.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), 12);
    for r in records.iter().take(3) {
        let (subject, session) = r[0].split_once('_').unwrap();
        for (modality, file) in [("t1", "T1w"), ("falff", "falff")] {
            let source = mmssl_data::read_nifti_header(
                cohort
                    .join(subject)
                    .join(format!("{session}_{file}.nii.gz")),
            )
            .unwrap();
            let map = read_nifti(
                out.join("pretrained/decision")
                    .join(modality)
                    .join("items")
                    .join(format!("{}.nii.gz", &r[0])),
            )
            .unwrap();
            assert_eq!(map.shape().to_vec(), source.dims[..3].to_vec());
            assert_eq!(map.affine(), &source.affine);
        }
    }
    for file in ["mask.nii.gz", "pretrained/decision/t1/t_AD-vs-HC.nii.gz"] {
        let h = mmssl_data::read_nifti_header(out.join(file)).unwrap();
        assert_eq!(h.dims[..3], [66, 78, 63], "{file}");
    }
    // Integrated gradients are complete: per item the attributions sum to the decision at the
    // input minus the decision at the zero input, up to the midpoint rule's error with 8 steps
    // on a piecewise-linear network (the unit tests check 2% with 64 steps).
    for modality in ["t1", "falff"] {
        let get = |r: &csv::StringRecord, c: &str| -> f64 {
            r[col(&format!("decision/{modality}/{c}"))].parse().unwrap()
        };
        let (mut errors, mut deltas, mut sums) = (Vec::new(), Vec::new(), Vec::new());
        for r in &records {
            let delta = get(r, "value") - get(r, "value_at_zero");
            let sum = get(r, "attribution_sum");
            errors.push((sum - delta).abs() / delta.abs().max(1e-3));
            deltas.push(delta);
            sums.push(sum);
        }
        errors.sort_by(f64::total_cmp);
        assert!(
            errors[6] < 0.3,
            "{modality}: median relative error {}",
            errors[6]
        );
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (md, ms) = (mean(&deltas), mean(&sums));
        let cov: f64 = deltas
            .iter()
            .zip(&sums)
            .map(|(d, s)| (d - md) * (s - ms))
            .sum();
        let var = |v: &[f64], m: f64| v.iter().map(|x| (x - m).powi(2)).sum::<f64>();
        let r = cov / (var(&deltas, md) * var(&sums, ms)).sqrt();
        assert!(r > 0.9, "{modality}: correlation {r}");
    }
    // The group comparison (Welch's t, AD against HC) peaks near a planted centre and puts
    // its |t| mass inside the planted regions (within 1.5 sigma) at least 1.5 times their
    // share of the brain, more than the same maps of the untrained encoders do.
    let mask = read_nifti(out.join("mask.nii.gz")).unwrap();
    let score = |model: &str, modality: usize, name: &str| {
        let t = read_nifti(
            out.join(model)
                .join("decision")
                .join(name)
                .join("t_AD-vs-HC.nii.gz"),
        )
        .unwrap();
        planted_recovery(&t, Some(&mask), &planted_regions(modality), 1.5, 0.0).unwrap()
    };
    for (modality, name, max_distance) in [(0, "t1", 15.0), (1, "falff", 20.0)] {
        let trained = score("pretrained", modality, name);
        let random = score("random-init", modality, name);
        assert!(
            trained.peak_distance_mm <= max_distance,
            "{name}: {trained:?}"
        );
        assert!(trained.enrichment >= 1.5, "{name}: {trained:?}");
        assert!(
            trained.enrichment > random.enrichment,
            "{name}: {trained:?} against {random:?}"
        );
    }
    // The figure of each map is written.
    let png = std::fs::read(out.join("pretrained/decision/t1/figure.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}
