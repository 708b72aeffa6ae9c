//! Results you can trust: run folders that never hold stale or mixed results, inputs checked
//! before hours are spent, honest output. Each test reproduces a behaviour of the `mmssl`
//! binary that was wrong before and checks the refusal or the correct result.

mod common;
use common::scratch;

use common::{
    arg, assert_contains_all, assert_fails, assert_ok, mmssl, on_run, read_json, read_text, stderr,
    tiny,
};
use std::path::PathBuf;

/// A temporary folder holding a tiny quiet `mmssl COMMAND` ([`tiny`]) in its `run` folder; the
/// run's path.
fn finished(command: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, out) = scratch("run");
    assert_ok(&tiny(command, &out, &["--quiet"]));
    (dir, out)
}

#[test]
fn a_folder_with_a_run_is_refused_unless_resumed_or_overwritten() {
    let (_dir, out) = finished("run");
    let metrics = read_text(out.join("metrics.jsonl"));
    // A second run into the same folder used to empty metrics.jsonl and replace the weights.
    let res = tiny("run", &out, &["--quiet", "--seed", "3"]);
    assert_fails(&res, &["not empty", "--overwrite"]);
    assert_eq!(read_text(out.join("metrics.jsonl")), metrics);
    // `pretrain` over a finished run used to leave the old eval.json beside new weights.
    let res = tiny("pretrain", &out, &["--quiet", "--seed", "3"]);
    assert_eq!(res.status.code(), Some(2));
    // --overwrite removes the old results first: no stale eval.json after a pretrain.
    assert_ok(&tiny(
        "pretrain",
        &out,
        &["--quiet", "--seed", "3", "--overwrite"],
    ));
    assert!(!out.join("eval.json").exists());
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        config.contains("seed = 3") && !config.contains("overwrite = true"),
        "{config}"
    );
}

#[test]
fn resume_reads_the_folders_configuration_and_a_missing_folder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // A typo in the folder name used to start a new run silently.
    let res = mmssl(&[
        "pretrain",
        "--resume",
        "--out",
        arg(&dir.path().join("typo")),
        "--quiet",
    ]);
    assert_fails(&res, &["nothing to resume"]);
    assert!(!dir.path().join("typo").exists());
    // `--resume --out RUN` alone continues with RUN's settings (it used to need every flag
    // repeated, and refused the defaults as other settings).
    let out = dir.path().join("run");
    assert_ok(&tiny("pretrain", &out, &["--quiet", "--seed", "5"]));
    let res = mmssl(&["pretrain", "--resume", "--out", arg(&out), "--quiet"]);
    assert_ok(&res);
    // A flag that contradicts the folder is still refused, naming the setting.
    let res = mmssl(&[
        "pretrain",
        "--resume",
        "--out",
        arg(&out),
        "--seed",
        "6",
        "--quiet",
    ]);
    assert_fails(&res, &["seed: 5 then, 6 now"]);
}

#[test]
fn linear_eval_keeps_the_similarity_it_did_not_recompute() {
    let (_dir, out) = finished("run");
    let before = read_json(out.join("eval.json"));
    assert!(before["similarity"]["cka"].is_f64());
    assert_ok(&on_run(
        "linear-eval",
        &out,
        &["--eval-epochs", "2", "--quiet"],
    ));
    let after = read_json(out.join("eval.json"));
    assert_eq!(after["eval_epochs"], 2);
    assert_eq!(after["similarity"], before["similarity"]);
    // The analysis alone takes no evaluation flags.
    let res = on_run("analyze", &out, &["--eval-epochs", "3"]);
    assert_fails(&res, &["linear-eval"]);
}

#[test]
fn a_grid_changed_between_runs_is_refused_or_rerun_on_request() {
    let (dir, grid) = scratch("grid.toml");
    let out = dir.path().join("exp");
    let write = |limit: u32| {
        std::fs::write(
            &grid,
            format!(
                "methods = [\"XX\"]\nseeds = [0]\n[settings]\nepochs = 1\ntrain_limit = {limit}\n\
                 eval_epochs = 1\nbatch_size = 32\n"
            ),
        )
        .unwrap()
    };
    let run = |extra: &[&str]| {
        let mut args = vec!["experiment", "--grid", arg(&grid), "--out", arg(&out)];
        args.extend(extra);
        mmssl(&args)
    };
    write(64);
    assert_ok(&run(&["--quiet"]));
    let cell = out.join("two-view-mnist/XX/fold0-seed0");
    // Unchanged: the finished cell is reused, and said so.
    let res = run(&[]);
    assert_ok(&res);
    assert!(
        stderr(&res).contains("finished, skipped"),
        "{}",
        stderr(&res)
    );
    // Changed: the old results used to be reported as the new grid's.
    write(96);
    let res = run(&["--quiet"]);
    assert_fails(
        &res,
        &["other settings", "data.train_limit: 64 then, 96 now"],
    );
    // On request the old cell is moved aside and run again.
    assert_ok(&run(&["--quiet", "--rerun-changed"]));
    let eval = read_json(cell.join("eval.json"));
    assert_eq!(eval["sizes"][0], 96);
    let aside: Vec<_> = std::fs::read_dir(cell.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".replaced-"))
        .collect();
    assert_eq!(aside.len(), 1);
    // The same method twice (`XX` and `xx`) is refused rather than run and counted twice.
    std::fs::write(&grid, "methods = [\"XX\", \"xx\"]\n").unwrap();
    let res = run(&["--quiet"]);
    assert_fails(&res, &["same method"]);
}

#[test]
fn settings_that_can_only_fail_later_fail_before_pretraining() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, needle) in [
        (vec!["--eval-epochs", "0"], "evaluation.epochs"),
        (vec!["--epochs", "0"], "training.epochs"),
        (vec!["--objective", "CR:1e40"], "at most 1e6"),
    ] {
        let out = dir.path().join(flags.join("_").replace([':', '-'], ""));
        let mut args = vec!["run", "--out", arg(&out), "--quiet"];
        args.extend(flags.iter().copied());
        let res = mmssl(&args);
        assert_eq!(res.status.code(), Some(2), "{flags:?}");
        assert!(stderr(&res).contains(needle), "{flags:?}: {}", stderr(&res));
        assert!(
            !out.join("checkpoints").exists(),
            "{flags:?}: nothing was trained"
        );
    }
    // An output folder that cannot be written (here: below a regular file, which even root
    // cannot write into) fails at once, not after the first epoch.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let res = tiny("run", &file.join("run"), &["--quiet"]);
    assert_fails(&res, &["cannot write"]);
    // A negative number names the flag instead of "unexpected argument '-3'".
    let res = mmssl(&["run", "--epochs", "-3"]);
    let err = assert_fails(&res, &["'-3'", "--epochs"]);
    assert!(!err.contains("unexpected argument"), "{err}");
    // `CR:-1` shows the weight as written.
    let res = mmssl(&["run", "--objective", "CR:-1", "--quiet"]);
    assert!(stderr(&res).contains("`-1`"), "{}", stderr(&res));
}

#[test]
fn progress_is_printed_without_a_terminal_and_unused_flags_are_named() {
    let (_dir, out) = scratch("run");
    // stderr is a pipe here, as under nohup or a cluster job: plain lines, not silence.
    let res = tiny("run", &out, &["--manifest", "cohort.csv"]);
    assert_ok(&res);
    let err = stderr(&res);
    assert_contains_all(
        &err,
        &[
            "pretraining",
            "epoch   1: train loss",
            "linear evaluation of modality 0 (pretrained)",
            "linear evaluation of modality 1 (random initialisation)",
            "--manifest is not read by the dataset two-view-mnist",
        ],
    );
}

#[test]
fn a_corrupt_checkpoint_is_reported_as_a_read_error() {
    let (_dir, out) = finished("pretrain");
    std::fs::write(out.join("checkpoints/best.bpk"), b"not a checkpoint").unwrap();
    // Its checksum (in state.json) finds it first.
    let res = on_run("linear-eval", &out, &["--quiet"]);
    assert_fails(&res, &["best.bpk does not match its checksum"]);
    // Without a committed state to check it against (an imported model), reading it fails.
    std::fs::remove_file(out.join("checkpoints/state.json")).unwrap();
    let res = on_run("linear-eval", &out, &["--quiet"]);
    let err = assert_fails(&res, &["cannot read", "best.bpk"]);
    assert!(!err.contains("cannot write"), "{err}");
}
