//! Issue 35, "nothing lost": what a user's careless or hostile input must not do to the
//! machine or to their results (one test per case, each failing on the main it was found on).

mod common;
use common::*;

/// Item 11: a device given as input is refused at once (before, `/dev/zero` was read until the
/// kernel killed mmssl at 22 GB), as are a folder and a FIFO, naming the file.
#[cfg(unix)]
#[test]
fn devices_fifos_and_folders_are_refused_as_inputs() {
    let (dir, npy) = scratch("b.npy");
    ndarray_npy::WriteNpyExt::write_npy(
        &ndarray::Array2::<f64>::eye(3),
        std::fs::File::create(&npy).unwrap(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let o = mmssl(&["similarity", "--a", "/dev/zero", "--b", arg(&npy)]);
    assert_fails(&o, &["/dev/zero", "not a regular file"]);
    assert!(started.elapsed().as_secs() < 30, "refused at once");
    let o = mmssl(&["similarity", "--a", arg(dir.path()), "--b", arg(&npy)]);
    assert_fails(&o, &["not a regular file"]);
    let o = mmssl(&[
        "run",
        "--config",
        "/dev/zero",
        "--out",
        arg(&dir.path().join("r")),
    ]);
    assert_fails(&o, &["/dev/zero", "mmssl reads only regular files"]);
    let fifo = dir.path().join("fifo.toml");
    if std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        // A FIFO with no writer would block the read forever: refused before it is opened.
        let o = mmssl(&[
            "run",
            "--config",
            arg(&fifo),
            "--out",
            arg(&dir.path().join("r")),
        ]);
        assert_fails(&o, &["fifo.toml", "mmssl reads only regular files"]);
        let o = mmssl(&["data", "info", arg(&fifo)]);
        assert_fails(&o, &["mmssl reads only regular files"]);
    }
    assert!(
        !dir.path().join("r").exists(),
        "a refused run writes nothing"
    );
}

/// Item 4: a grid cell evaluated again with other settings (`linear-eval --eval-epochs 2` where
/// the grid says 1) is no longer taken for a finished cell of the grid: its `config.toml`
/// records the evaluation that made its `eval.json`, and the grid names the difference.
#[test]
fn a_cell_evaluated_with_other_settings_is_not_mixed_into_the_grid() {
    let (dir, out) = scratch("exp");
    let grid = tiny_grid(dir.path(), "\"XX\"", "0");
    assert_ok(&experiment(&grid, &out, &[]));
    let cell = out.join("two-view-mnist/XX/fold0-seed0");
    assert_ok(&on_run(
        "linear-eval",
        &cell,
        &["--quiet", "--eval-epochs", "2"],
    ));
    assert!(read_text(cell.join("config.toml")).contains("epochs = 2"));
    let o = experiment(&grid, &out, &[]);
    assert_fails(&o, &["fold0-seed0", "evaluation.epochs"]);
    // Asked to, the grid runs the cell again with its own settings.
    assert_ok(&experiment(&grid, &out, &["--rerun-changed"]));
    let saved = read_text(cell.join("config.toml"));
    assert!(
        saved.contains("epochs = 1") && !saved.contains("epochs = 2"),
        "{saved}"
    );
}

/// Item 5: `pretrain --resume` with other evaluation settings leaves `config.toml` describing
/// the `eval.json` beside it, and says how to evaluate with the new settings.
#[test]
fn config_toml_keeps_describing_the_evaluation_beside_it() {
    let (_dir, run) = scratch("r");
    assert_ok(&tiny("run", &run, &["--quiet"]));
    let o = mmssl(&[
        "pretrain",
        "--resume",
        "--out",
        arg(&run),
        "--eval-epochs",
        "5",
        "--quiet",
    ]);
    assert_ok(&o);
    let saved = read_text(run.join("config.toml"));
    assert!(
        saved.contains("epochs = 1") && !saved.contains("epochs = 5"),
        "{saved}"
    );
    let err = stderr(&o);
    assert_contains_all(
        &err,
        &["holds results made with", "--set evaluation.epochs=5"],
    );
    // Evaluating with the new settings records them.
    assert_ok(&on_run(
        "linear-eval",
        &run,
        &["--quiet", "--eval-epochs", "3"],
    ));
    assert!(read_text(run.join("config.toml")).contains("epochs = 3"));
}

/// Item 6: a `linear-eval` stopped by SIGTERM prints the command that repeats it, its
/// evaluation settings included (before: `mmssl linear-eval --run R`, which evaluated with the
/// run's own settings).
#[cfg(unix)]
#[test]
fn an_interrupted_evaluation_prints_the_command_that_repeats_it() {
    use std::io::{BufRead, BufReader};
    let (_dir, run) = scratch("r");
    assert_ok(&tiny("pretrain", &run, &["--quiet"]));
    let mut child = command()
        .args(["linear-eval", "--run", arg(&run), "--eval-epochs", "400"])
        .args(["--set", "knn_k=3"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Once the evaluation of the first modality has begun, stop it.
    for line in lines.by_ref() {
        if line.unwrap().contains("linear evaluation") {
            break;
        }
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(75), "{rest:?}");
    let next = rest
        .iter()
        .find_map(|l| l.strip_prefix("to continue: "))
        .unwrap_or_else(|| panic!("no continuation in {rest:?}"));
    assert_eq!(
        next,
        format!(
            "mmssl linear-eval --run {} --set evaluation.epochs=400 --set evaluation.knn_k=3",
            run.display()
        )
    );
}

/// Item 10: a run that fails while setting up (here a batch larger than the training set)
/// leaves a folder that a plain rerun takes over (before: refused, "resume it", while
/// `--resume` was refused too).
#[test]
fn a_run_that_never_trained_does_not_block_the_next() {
    let (_dir, run) = scratch("r");
    let words = "run --train-limit 16 --batch-size 32 --epochs 1 --quiet --out";
    let o = mmssl_words(words, &[arg(&run)]);
    assert_fails(&o, &["16"]);
    assert!(
        run.join("config.toml").exists(),
        "the failed run left its record"
    );
    assert_ok(&tiny("run", &run, &["--quiet"]));
    assert!(run.join("eval.json").exists());
    // A folder that did train is still refused without --resume or --overwrite.
    let o = tiny("run", &run, &["--quiet"]);
    assert_fails(&o, &["--resume", "--overwrite"]);
}

/// Item 13: two runs started at the same moment without `--out` get two folders (before, the
/// second was refused: `runs/CR-<time> is locked`).
#[test]
fn runs_started_together_without_out_get_their_own_folders() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut args = vec!["run", "--quiet"];
        args.extend(TINY);
        command()
            .args(&args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let mut folders: Vec<String> = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    assert_eq!(folders.len(), 2, "{folders:?}");
    for f in &folders {
        assert!(
            dir.path().join("runs").join(f).join("eval.json").exists(),
            "{f}"
        );
    }
}

/// Item 1: a grid never replaces or mixes with files it did not write: the user's own
/// `results.csv` in `--out` (before: truncated to 0 bytes by `--aggregate-only`, exit 0), or a
/// folder holding a single run, is refused before anything is written.
#[test]
fn a_grid_never_replaces_or_mixes_with_files_it_did_not_write() {
    let (dir, out) = scratch("mine");
    std::fs::create_dir(&out).unwrap();
    let grid = tiny_grid(dir.path(), "\"XX\"", "0");
    let own = write_file(&out, "results.csv", "patient,score\n1,0.5\n");
    write_file(&out, "results.md", "# my notes\n");
    let o = experiment(&grid, &out, &["--aggregate-only"]);
    assert_fails(
        &o,
        &["not an experiment folder", "results.csv", "results.md"],
    );
    assert_eq!(read_text(&own), "patient,score\n1,0.5\n");
    assert!(!out.join("cells.json").exists(), "nothing written");
    let run = dir.path().join("run");
    assert_ok(&tiny("run", &run, &["--quiet"]));
    let o = experiment(&grid, &run, &[]);
    assert_fails(&o, &["config.toml", "eval.json"]);
    assert!(!run.join("cells.json").exists() && !run.join("two-view-mnist").exists());
    // An experiment folder of mmssl is aggregated again as before.
    let exp = dir.path().join("exp");
    assert_ok(&experiment(&grid, &exp, &[]));
    assert_ok(&experiment(&grid, &exp, &["--aggregate-only"]));
    assert!(read_text(exp.join("results.csv")).starts_with("dataset,method"));
}

/// Item 2: `data synth-cohort` never writes over the user's own files (before: their
/// `manifest.csv` was silently replaced); over a cohort it wrote itself it may.
#[test]
fn a_synthetic_cohort_is_never_written_over_the_users_files() {
    let (dir, out) = scratch("study");
    std::fs::create_dir(&out).unwrap();
    let own = write_file(
        &out,
        "manifest.csv",
        "subject,session,t1,falff,label\nA,1,a.nii,b.nii,HC\n",
    );
    let o = synth(&out, &["--subjects", "12"]);
    assert_fails(
        &o,
        &[
            "study",
            "manifest.csv",
            "synth-cohort.json",
            "empty or new folder",
        ],
    );
    assert!(read_text(&own).contains("A,1,a.nii"));
    let cohort = dir.path().join("cohort");
    synth_cohort(&cohort, &[]);
    assert!(cohort.join("synth-cohort.json").exists());
    synth_cohort(&cohort, &["--seed", "4"]);
}

/// Item 7: a `config.toml` edited after the run started (`train_limit` 64 -> 32) no longer
/// resumes on other data: the checkpoint keeps its own record of what defines the run, and the
/// resume names the difference.
#[test]
fn a_resume_checks_the_run_against_the_checkpoints_own_record() {
    let (_dir, run) = scratch("r");
    assert_ok(&tiny("pretrain", &run, &["--quiet"]));
    let config = run.join("config.toml");
    let text = read_text(&config);
    assert!(text.contains("train_limit = 64"), "{text}");
    std::fs::write(
        &config,
        text.replace("train_limit = 64", "train_limit = 32"),
    )
    .unwrap();
    let o = mmssl(&["pretrain", "--resume", "--out", arg(&run), "--quiet"]);
    assert_fails(
        &o,
        &[
            "its checkpoint was made with other settings",
            "data.train_limit: 64 then, 32 now",
        ],
    );
    // Put back, the run resumes (it has nothing left to do).
    std::fs::write(&config, text).unwrap();
    assert_ok(&mmssl(&[
        "pretrain",
        "--resume",
        "--out",
        arg(&run),
        "--quiet",
    ]));
}

/// Item 8: a damaged checkpoint (4 KiB of its model zeroed) is found by its checksum: a resume
/// continues from the commit before it and says so even under `--quiet`; with no earlier
/// commit it refuses, naming the file.
#[test]
fn a_damaged_checkpoint_is_never_resumed_silently() {
    let (_dir, run) = scratch("r");
    let pretrain = |extra: &[&str]| {
        let mut args = vec![
            "pretrain",
            "--train-limit",
            "64",
            "--batch-size",
            "32",
            "--out",
            arg(&run),
            "--quiet",
        ];
        args.extend(extra);
        mmssl(&args)
    };
    let zero = |name: &str| {
        let file = run.join("checkpoints").join(name);
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid..mid + 4096].fill(0);
        std::fs::write(&file, bytes).unwrap();
    };
    assert_ok(&pretrain(&["--epochs", "2"]));
    let before = read_text(run.join("metrics.jsonl"));
    zero("last.e0002.bpk");
    let o = pretrain(&["--epochs", "2", "--resume"]);
    assert_ok(&o);
    assert_contains_all(
        &stderr(&o),
        &[
            "last.e0002.bpk does not match its checksum",
            "resuming from the one before it (after epoch 1",
        ],
    );
    // Epoch 2 trained again from epoch 1: the same losses.
    let losses = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"].clone())
            .collect()
    };
    assert_eq!(
        losses(&read_text(run.join("metrics.jsonl"))),
        losses(&before)
    );
    // One commit only, damaged: refused.
    std::fs::remove_dir_all(&run).unwrap();
    assert_ok(&pretrain(&["--epochs", "1"]));
    zero("last.e0001.bpk");
    let o = pretrain(&["--epochs", "1", "--resume"]);
    assert_fails(
        &o,
        &[
            "last.e0001.bpk does not match its checksum",
            "no earlier checkpoint",
        ],
    );
    // Its best model is intact and evaluates; damaged, it is refused.
    assert_ok(&on_run(
        "linear-eval",
        &run,
        &["--eval-epochs", "1", "--quiet"],
    ));
    zero("best.bpk");
    let o = on_run("linear-eval", &run, &["--eval-epochs", "1", "--quiet"]);
    assert_fails(
        &o,
        &[
            "best.bpk does not match its checksum",
            "cannot be evaluated",
        ],
    );
}

/// Item 21: a command whose output is closed before it prints (`mmssl ... | head`, the reader
/// gone) ends quietly with exit 0 (it panicked with "Broken pipe", exit 101).
#[test]
fn a_closed_output_ends_a_command_quietly() {
    for args in [&["methods"][..], &["info"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = command()
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{err}"
        );
    }
}
