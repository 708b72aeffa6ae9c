//! End-to-end tests of the `mmssl` binary.

mod common;
use common::scratch;

use common::{
    arg, assert_contains_all, assert_fails, assert_ok, experiment, metric_lines, mmssl, on_cohort,
    on_run, read_json, read_text, run_on_cohort, tiny, tiny_grid, write_file,
};
use std::path::{Path, PathBuf};

#[test]
fn run_pretrains_evaluates_and_writes_the_run_directory() {
    let (dir, out) = scratch("run");
    let o = arg(&out);
    let res = mmssl(&[
        "run",
        "--objective",
        "XX-RR",
        "--epochs",
        "1",
        "--train-limit",
        "128",
        "--eval-epochs",
        "2",
        "--batch-size",
        "32",
        "--out",
        o,
        "--quiet",
    ]);
    assert_ok(&res);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        stdout.contains("XX-RR on TwoViewMnist: 128 train"),
        "{stdout}"
    );
    let eval: serde_json::Value = read_json(out.join("eval.json"));
    let modalities = eval["linear_eval"].as_array().unwrap();
    assert_eq!(modalities.len(), 2);
    for m in modalities {
        for which in ["pretrained", "random_init"] {
            let acc = m[which]["accuracy"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&acc));
        }
    }
    assert!(eval["similarity"]["cka"].is_f64());
    assert_eq!(metric_lines(&out), 1);
    let config = read_text(out.join("config.toml"));
    assert!(config.contains("method = \"XX-RR\""), "{config}");
    let run: serde_json::Value = read_json(out.join("run.json"));
    assert_eq!(run["seed"], 0);
    for f in ["best.bpk", "last.bpk", "optimizer.e0001.bpk", "state.json"] {
        assert!(out.join("checkpoints").join(f).exists(), "{f}");
    }
    // The folder's config.toml reproduces the run exactly in another folder.
    let copy = dir.path().join("copy");
    let config = out.join("config.toml");
    let res = mmssl(&[
        "run",
        "--config",
        arg(&config),
        "--out",
        arg(&copy),
        "--quiet",
    ]);
    assert_ok(&res);
    let again: serde_json::Value = read_json(copy.join("eval.json"));
    assert_eq!(eval["linear_eval"], again["linear_eval"]);
    assert_eq!(eval["similarity"], again["similarity"]);
    assert_eq!(eval["method"], again["method"]);
}

#[test]
fn methods_lists_every_method_with_its_options_and_specs_carry_them() {
    let res = mmssl(&["methods"]);
    assert_ok(&res);
    let text = String::from_utf8_lossy(&res.stdout);
    assert_contains_all(
        &text,
        &[
            "CR-XX-CC",
            "estimator",
            "critic",
            "dccae",
            "cca_norm",
            "mmvae",
            "lcca",
            "components",
        ],
    );
    // An option the method does not take is refused with the list of those it takes.
    let res = mmssl(&["run", "--method", "XX;temperature=0.1", "--quiet"]);
    assert_fails(&res, &["temperature", "critic"]);
    let res = mmssl(&["run", "--objective", "XX;critic=cosine(-1)", "--quiet"]);
    assert_fails(&res, &["critic"]);
}

#[test]
fn run_rejects_bad_objectives_and_missing_data_clearly() {
    let (dir, o) = scratch("run");
    let res = mmssl(&["run", "--objective", "CR-QQ", "--out", arg(&o), "--quiet"]);
    assert_fails(&res, &["unknown edge `QQ`"]);
    let missing = dir.path().join("nowhere");
    let res = mmssl(&[
        "run",
        "--quiet",
        "--data-dir",
        arg(&missing),
        "--out",
        arg(&o),
    ]);
    let fetch = format!("mmssl data download mnist --dir {}", missing.display());
    assert_fails(&res, &["IDX files", &fetch]);
}

/// A tiny run of `--method NAME`; returns eval.json.
fn method_run(name: &str, dir: &Path) -> serde_json::Value {
    let out = dir.join(name);
    let res = tiny(
        "run",
        &out,
        &["--method", name, "--mmvae-k", "2", "--quiet"],
    );
    assert!(
        res.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        stdout.contains(&format!("{} on TwoViewMnist: 64 train", label(name))),
        "{stdout}"
    );
    read_json(out.join("eval.json"))
}

/// The method as a report names it: `--mmvae-k 2` is an option of `mmvae` only.
fn label(name: &str) -> String {
    match name {
        "mmvae" => "mmvae;k=2".into(),
        other => other.into(),
    }
}

#[test]
fn run_trains_and_evaluates_baselines_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["supervised", "ae", "dccae", "cr-cca", "rr-ae", "mmvae"] {
        let eval = method_run(name, dir.path());
        assert_eq!(eval["method"], label(name).as_str());
        for m in eval["linear_eval"].as_array().unwrap() {
            for which in ["pretrained", "random_init"] {
                let acc = m[which]["accuracy"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&acc), "{name}: {m}");
            }
        }
        assert!(dir.path().join(name).join("checkpoints/best.bpk").exists());
    }
    // Linear CCA is fitted, not trained: no random-init comparison, canonical correlations saved.
    let eval = method_run("lcca", dir.path());
    for m in eval["linear_eval"].as_array().unwrap() {
        assert!((0.0..=1.0).contains(&m["pretrained"]["accuracy"].as_f64().unwrap()));
        assert!(m["random_init"].is_null());
    }
    let lcca: serde_json::Value = read_json(dir.path().join("lcca/lcca.json"));
    let rho = lcca["canonical_correlations"].as_array().unwrap();
    assert_eq!(rho.len(), 64);
    assert!(rho[0].as_f64().unwrap() > 0.5);
    // Unknown names list the baselines.
    let res = mmssl(&["run", "--method", "vae", "--quiet"]);
    assert_fails(&res, &["unknown method", "mmvae"]);
}

#[test]
fn run_pairs_mnist_with_fashion_mnist_by_label() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if !shared.join("fashion-mnist").exists() {
        eprintln!("skipping: {} is absent", shared.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnist = shared.join("mnist");
    // `mmssl run` on MNIST paired with Fashion-MNIST into OUT, then EXTRA...
    let fashion = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "run",
            "--dataset",
            "mnist-fashion",
            "--data-dir",
            arg(&mnist),
        ];
        args.extend(["--out", arg(out), "--quiet"]);
        args.extend_from_slice(extra);
        mmssl(&args)
    };
    let out = dir.path().join("mf");
    let res = fashion(
        &out,
        &[
            "--objective",
            "XX",
            "--epochs",
            "1",
            "--train-limit",
            "96",
            "--eval-epochs",
            "1",
            "--batch-size",
            "32",
        ],
    );
    assert_ok(&res);
    let eval: serde_json::Value = read_json(out.join("eval.json"));
    // 96 random training pairs; validation pairs one per image of the smaller side of each
    // class in a stratified twelfth (5,000 images each side); test pairs from t10k.
    let sizes: Vec<u64> = serde_json::from_value(eval["sizes"].clone()).unwrap();
    assert_eq!(sizes[0], 96);
    assert!(sizes[1] > 4000 && sizes[1] <= 5000, "{sizes:?}");
    assert!(sizes[2] > 8000 && sizes[2] <= 10_000, "{sizes:?}");
    assert_eq!(eval["linear_eval"].as_array().unwrap().len(), 2);
    // Without the MNIST folder the error says what is needed.
    let res = mmssl(&["run", "--dataset", "mnist-svhn", "--quiet"]);
    assert_fails(&res, &["--data-dir", "train_32x32.mat"]);
    // A missing Fashion-MNIST folder gets the exact command that fetches Fashion-MNIST.
    let missing = dir.path().join("no-fashion");
    let res = fashion(
        &dir.path().join("no-fashion-run"),
        &["--second-data-dir", arg(&missing)],
    );
    let fetch = format!(
        "mmssl data download fashion-mnist --dir {}",
        missing.display()
    );
    assert_fails(&res, &[&fetch]);
}

#[test]
fn pretrain_then_linear_eval_then_analyze_with_a_config_file() {
    let (dir, out) = scratch("phases");
    let config = write_file(
        dir.path(),
        "settings.toml",
        "objective = \"CR\"\nepochs = 1\ntrain_limit = 64\nbatch_size = 32\neval_epochs = 3\nquiet = true\nseed = 4\n",
    );
    // The command line's --epochs 2 overrides the file's 1.
    let res = mmssl(&[
        "pretrain",
        "--config",
        arg(&config),
        "--epochs",
        "2",
        "--out",
        arg(&out),
    ]);
    assert_ok(&res);
    let saved = read_text(out.join("config.toml"));
    assert!(
        saved.contains("method = \"CR\"") && saved.contains("epochs = 2"),
        "{saved}"
    );
    assert!(
        saved.contains("seed = 4") && !saved.contains("settings.toml"),
        "{saved}"
    );
    assert_eq!(metric_lines(&out), 2);
    assert!(out.join("checkpoints/best.bpk").exists());
    assert!(!out.join("eval.json").exists());

    let res = on_run("linear-eval", &out, &["--eval-epochs", "1", "--quiet"]);
    assert_ok(&res);
    let eval: serde_json::Value = read_json(out.join("eval.json"));
    assert_eq!(eval["eval_epochs"], 1);
    assert_eq!(eval["method"], "CR");
    assert_eq!(eval["linear_eval"].as_array().unwrap().len(), 2);
    assert!(eval["similarity"].is_null());
    // linear-eval did not train again.
    assert_eq!(metric_lines(&out), 2);

    let res = on_run("analyze", &out, &["--quiet"]);
    assert_ok(&res);
    let sim: serde_json::Value = read_json(out.join("similarity.json"));
    let cka = sim["similarity"]["cka"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&cka));

    // Errors: a directory without a run, an unknown key in a config file.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let res = on_run("linear-eval", &empty, &[]);
    assert_fails(&res, &["config.toml"]);
    std::fs::write(&config, "epochz = 3\n").unwrap();
    let res = mmssl(&["run", "--config", arg(&config)]);
    assert_fails(&res, &["settings.toml", "epochz"]);
}

#[test]
fn experiment_runs_a_grid_skips_finished_runs_and_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let grid = tiny_grid(dir.path(), "\"XX\", \"ae\"", "0, 1");
    let out = dir.path().join("exp");
    let res = experiment(&grid, &out, &[]);
    assert_ok(&res);
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("| two-view-mnist | XX | 2 |"), "{stdout}");
    assert!(stdout.contains("8 result rows"), "{stdout}");
    let run_dir = out.join("two-view-mnist/ae/fold0-seed1");
    assert!(run_dir.join("eval.json").exists());
    let csv = read_text(out.join("results.csv"));
    assert_eq!(csv.lines().count(), 1 + 8, "{csv}");
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .starts_with("dataset,method,fold,seed,modality,accuracy")
    );
    for f in [
        "results.md",
        "accuracy_two-view-mnist.svg",
        "accuracy_two-view-mnist.png",
        "similarity_two-view-mnist.png",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // A second invocation finds every run finished: nothing is trained again.
    let modified = || {
        std::fs::metadata(run_dir.join("eval.json"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = modified();
    let res = experiment(&grid, &out, &[]);
    assert!(res.status.success());
    assert_eq!(before, modified());
    assert_eq!(read_text(out.join("results.csv")), csv);
    // A run that fails (here: deep CCA heads of size 0) does not stop the grid: the finished
    // runs are still aggregated, the failure is named and saved, and the exit code says so.
    std::fs::write(
        &grid,
        "methods = [\"XX\", \"dccae\"]\nseeds = [0]\n[settings]\nepochs = 1\ntrain_limit = 64\neval_epochs = 1\nbatch_size = 32\ncca_dim = 0\n",
    )
    .unwrap();
    let res = experiment(&grid, &out, &[]);
    assert_fails(&res, &["1 of 2 runs failed", "dccae", "cca_dim"]);
    assert!(
        out.join("two-view-mnist/dccae/fold0-seed0/error.txt")
            .exists()
    );
    let csv = read_text(out.join("results.csv"));
    assert!(csv.contains(",XX,") && !csv.contains("dccae"), "{csv}");
}

#[test]
fn run_on_a_synthetic_volume_cohort() {
    let mri = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mri");
    if !mri.exists() {
        eprintln!("skipping: {} is absent", mri.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = mmssl_data::SynthConfig::new(
        mri.join("mni152_t1_1mm.nii.gz"),
        Some(mri.join("mni152_gm_1mm.nii.gz")),
    );
    cfg.subjects = 16;
    cfg.sessions = [1, 2];
    cfg.seed = 3;
    let report = mmssl_data::synth_cohort(&cfg, dir.path().join("cohort")).unwrap();
    let out = dir.path().join("run3d");
    let res = run_on_cohort(&report.manifest, &out);
    assert_ok(&res);
    let eval: serde_json::Value = read_json(out.join("eval.json"));
    let ms = eval["linear_eval"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    for m in ms {
        // HC vs AD: a binary ROC-AUC is reported.
        assert!(m["pretrained"]["roc_auc"].is_f64(), "{m}");
    }
    // The subject split and the landmarks learnt on the training subjects are saved.
    let split: serde_json::Value = read_json(out.join("split.json"));
    let holdout = split["holdout"].as_array().unwrap().len();
    let in_folds: usize = split["folds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_array().unwrap().len())
        .sum();
    assert_eq!(holdout + in_folds, 16);
    assert!(out.join("landmarks.json").exists());
    // The supervised baseline trains on the labelled sessions (pretraining sessions may have
    // no diagnosis); volumes default to 500 evaluation epochs, the paper's.
    let sup = dir.path().join("sup3d");
    let res = on_cohort(
        "pretrain",
        &report.manifest,
        &sup,
        &[
            "--method",
            "supervised",
            "--epochs",
            "1",
            "--batch-size",
            "2",
        ],
    );
    assert_ok(&res);
    let config = read_text(sup.join("config.toml"));
    assert!(config.contains("[evaluation]\nepochs = 500"), "{config}");
    // Linear CCA on raw 64³ volumes is refused with the reason.
    let lcca = dir.path().join("lcca3d");
    let res = on_cohort("pretrain", &report.manifest, &lcca, &["--method", "lcca"]);
    assert_fails(&res, &["262144 features"]);
    // A manifest whose labelled sessions cannot be evaluated fails before pretraining: no
    // labelled session at all, or one class only (it used to print accuracy 0 or 1).
    let text = read_text(&report.manifest);
    let header = text.lines().next().unwrap();
    let label_col = header.split(',').position(|c| c == "label").unwrap();
    for (name, label, needle) in [
        ("unlabelled.csv", "", "no labelled item"),
        ("one-class.csv", "HC", "of class 0"),
    ] {
        let mut out_text = format!("{header}\n");
        for line in text.lines().skip(1) {
            let mut cols: Vec<&str> = line.split(',').collect();
            cols[label_col] = label;
            out_text += &format!("{}\n", cols.join(","));
        }
        let manifest = report.manifest.with_file_name(name);
        std::fs::write(&manifest, out_text).unwrap();
        let run_dir = dir.path().join(name);
        let res = on_cohort("run", &manifest, &run_dir, &["--batch-size", "2"]);
        assert_fails(&res, &[needle, "labelled"]);
        assert!(
            !run_dir.join("metrics.jsonl").exists(),
            "{name}: nothing was trained"
        );
    }
    // Without a manifest the error says what is needed.
    let res = mmssl(&["run", "--dataset", "oasis3", "--quiet"]);
    assert_fails(&res, &["--manifest"]);
}
