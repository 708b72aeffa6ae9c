//! k-NN, retrieval and maps from the command line: `--set` on `run`, `linear-eval` and
//! `analyze`, what each writes, and the settings each refuses.

mod common;
use common::*;

#[test]
fn run_and_its_phases_take_evaluation_settings() {
    let (_dir, run) = scratch("r");
    let o = tiny(
        "run",
        &run,
        &[
            "--quiet",
            "--set",
            "knn_k=7",
            "--set",
            "analysis.maps=true",
            "--set",
            "map_points=30",
        ],
    );
    assert_ok(&o);
    let out = stdout(&o);
    assert_contains_all(
        &out,
        &[
            "7-NN (cosine, majority vote)",
            "0 -> 1 | z |",
            // 64 training pairs for 64-wide z: the canonical subspace cannot be fitted.
            "note: retrieval 0 -> 1 in the canonical space not computed",
            "underdetermined",
            "map of both modalities: 60 points",
        ],
    );
    for f in [
        "tsne_m0",
        "tsne_m1",
        "tsne_joint",
        "tsne_random_m0",
        "tsne_random_m1",
        "tsne_random_joint",
    ] {
        assert!(run.join("maps").join(format!("{f}.png")).exists(), "{f}");
    }
    let eval = read_json(run.join("eval.json"));
    assert_eq!(eval["linear_eval"][1]["knn"]["pretrained"]["k"], 7);
    // The saved configuration says what was done.
    assert!(read_text(run.join("config.toml")).contains("knn_k = 7"));
    // linear-eval with other k-NN settings; the maps of the earlier analysis stay.
    let o = on_run(
        "linear-eval",
        &run,
        &[
            "--quiet",
            "--set",
            "knn_k=3",
            "--set",
            "knn_voting=distance",
        ],
    );
    assert_ok(&o);
    let eval = read_json(run.join("eval.json"));
    let knn = &eval["linear_eval"][0]["knn"]["pretrained"];
    assert_eq!(
        (knn["k"].as_u64(), knn["voting"].as_str()),
        (Some(3), Some("distance"))
    );
    assert_eq!(eval["maps"].as_array().map(Vec::len), Some(6));
    // Settings that are not the evaluation's or the analysis' are refused by the phases.
    let o = on_run("linear-eval", &run, &["--set", "epochs=3"]);
    assert_fails(
        &o,
        &["--set epochs=3", "only evaluation and analysis settings"],
    );
    let o = on_run("analyze", &run, &["--set", "map_points=12"]);
    assert_fails(&o, &["analysis.map_points", "at least 25 points"]);
}

#[test]
fn bad_settings_name_the_key_and_write_nothing() {
    let (_dir, run) = scratch("r");
    let o = tiny("run", &run, &["--set", "knn_metric=manhattan"]);
    assert_fails(&o, &["evaluation.knn_metric", "manhattan"]);
    let o = tiny("run", &run, &["--set", "no_such_setting=1"]);
    assert_fails(&o, &["no_such_setting"]);
    let o = tiny("run", &run, &["--set", "knn_k"]);
    assert_fails(&o, &["--set knn_k", "KEY=VALUE"]);
    let o = tiny("run", &run, &["--set", "knn_k=100"]);
    assert_fails(
        &o,
        &["evaluation.knn_k", "k = 100 is too large", "64 samples"],
    );
    assert!(!run.join("checkpoints").exists());
}

#[test]
fn the_default_k_shrinks_to_a_small_training_set() {
    let (_dir, run) = scratch("r");
    let words = "run --epochs 1 --train-limit 12 --batch-size 4 --eval-epochs 1 --quiet --out";
    let o = mmssl_words(words, &[arg(&run)]);
    assert_ok(&o);
    let eval = read_json(run.join("eval.json"));
    assert_eq!(eval["linear_eval"][0]["knn"]["pretrained"]["k"], 12);
    assert_eq!(eval["linear_eval"][0]["knn"]["pretrained"]["n_train"], 12);
}
