//! The run directory survives interruption: a `mmssl pretrain` killed with SIGKILL at
//! arbitrary moments, or stopped by SIGTERM (a checkpoint in the middle of an epoch, exit 75),
//! and resumed ends with the same checkpoints and metrics as a run that was never interrupted; `--resume` refuses other settings; baselines go through the separate
//! phases with their option flags.

mod common;
use common::scratch;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use common::{
    TINY, arg, assert_contains_all, assert_fails, assert_ok, command, mmssl, on_run, read_json,
};
use mmssl_objectives::ObjectiveConfig;
use mmssl_train::ContrastiveConfig;
use rand::SeedableRng;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A small CR pretraining on the embedded MNIST split: 3 epochs of 20 steps.
fn pretrain_args(out: &Path) -> Vec<String> {
    [
        "pretrain",
        "--objective",
        "CR",
        "--epochs",
        "3",
        "--train-limit",
        "640",
        "--batch-size",
        "32",
        "--seed",
        "3",
        "--quiet",
        "--out",
        arg(out),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs `mmssl ARGS` (owned strings) to completion.
fn mmssl_owned(args: &[String]) -> std::process::Output {
    mmssl(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Starts the pretraining of [`pretrain_args`] in `out` (resumed when it has a checkpoint),
/// its stdout and stderr connected to `io()`.
fn start_pretrain(out: &Path, io: fn() -> Stdio) -> std::process::Child {
    let mut args = pretrain_args(out);
    if out.join("checkpoints/state.json").exists() {
        args.push("--resume".into());
    }
    command()
        .args(&args)
        .stdout(io())
        .stderr(io())
        .spawn()
        .unwrap()
}

/// Resumes the run of [`pretrain_args`] in `out` to its end.
fn resume_to_the_end(out: &Path) {
    let mut args = pretrain_args(out);
    args.push("--resume".into());
    assert_ok(&mmssl_owned(&args));
}

/// Asserts that the runs in `whole` and `other` ended with the same weights, bit for bit, in
/// their last and best checkpoints; `how` says how `other` was interrupted.
fn assert_same_checkpoints(whole: &Path, other: &Path, how: &str) {
    for file in ["last.bpk", "best.bpk"] {
        let a = weights(&whole.join("checkpoints").join(file));
        let b = weights(&other.join("checkpoints").join(file));
        assert!(a.len() > 10_000);
        assert!(a == b, "{file} differs after {how} and resumes");
    }
}

fn epochs_done(out: &Path) -> usize {
    std::fs::read_to_string(out.join("checkpoints/state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["epochs_done"].as_u64())
        .unwrap_or(0) as usize
}

/// Every float parameter of a module, in visiting order.
struct Weights(Vec<f32>);

impl ModuleVisitor for Weights {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0
            .extend(param.val().into_data().try_to_vec::<f32>().unwrap());
    }
}

/// The parameters of a CR model checkpoint (the files themselves hold random parameter ids,
/// so their bytes differ between identical runs).
fn weights(file: &Path) -> Vec<f32> {
    let shapes = vec![vec![1, 32, 32], vec![1, 32, 32]];
    let model = ContrastiveConfig::new(ObjectiveConfig::new("CR".parse().unwrap()))
        .init(
            &shapes,
            &Device::flex(),
            &mut rand::rngs::StdRng::seed_from_u64(99),
        )
        .unwrap()
        .try_load_file(file)
        .unwrap();
    let mut w = Weights(Vec::new());
    model.visit(&mut w);
    w.0
}

/// The per-epoch numbers of `metrics.jsonl` that do not depend on timing.
fn metrics(out: &Path) -> Vec<(f64, Option<f64>, String)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["train_loss"].as_f64().unwrap(),
                v["valid_loss"].as_f64(),
                v["terms"].to_string(),
            )
        })
        .collect()
}

#[test]
fn a_run_killed_at_any_moment_resumes_to_the_uninterrupted_result() {
    let (dir, whole) = scratch("whole");
    assert_ok(&mmssl_owned(&pretrain_args(&whole)));
    assert_eq!(metrics(&whole).len(), 3);

    // The same run, killed with SIGKILL at several moments after its first and second epochs
    // were checkpointed (inside the next epoch, or while it writes its checkpoint), and
    // resumed each time.
    let cut = dir.path().join("cut");
    let mut kills = 0;
    for (after_epochs, delay_ms) in [(1, 150), (2, 40), (2, 400)] {
        let mut child = start_pretrain(&cut, Stdio::null);
        let start = Instant::now();
        while epochs_done(&cut) < after_epochs && start.elapsed() < Duration::from_secs(300) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 2, "the run finished before it could be killed");
    resume_to_the_end(&cut);

    // Same weights (bit for bit), same best model, same metrics, one line per epoch.
    assert_same_checkpoints(&whole, &cut, &format!("{kills} kills"));
    assert_eq!(metrics(&whole), metrics(&cut));
    // Only the committed epoch's files are left, and the previous commit's (the fallback of a
    // damaged last one): no temporary file, no older epoch.
    let mut names: Vec<String> = std::fs::read_dir(cut.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let state = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(cut.join("checkpoints").join(name)).unwrap())
            .unwrap()
    };
    let mut expected: Vec<String> = ["best.bpk", "last.bpk", "state.json", "state.previous.json"]
        .map(String::from)
        .to_vec();
    for s in [state("state.json"), state("state.previous.json")] {
        for key in ["last", "optimizer", "best"] {
            if let Some(name) = s["files"][key].as_str() {
                expected.push(name.to_string());
            }
        }
    }
    expected.sort();
    expected.dedup();
    assert_eq!(names, expected);

    // The same run stopped by SIGTERM (what Slurm sends before a time limit or a preemption):
    // it finishes its step, saves a checkpoint there, says how to continue and exits 75;
    // resumed, it ends with the same numbers.
    let term = dir.path().join("term");
    let mut stops = 0;
    for (after_epochs, delay_ms) in [(1, 60), (2, 30)] {
        let child = start_pretrain(&term, Stdio::piped);
        let start = Instant::now();
        while epochs_done(&term) < after_epochs && start.elapsed() < Duration::from_secs(300) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let pid = child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            continue; // it finished before the signal came
        }
        stops += 1;
        assert_eq!(out.status.code(), Some(75), "{err}");
        assert!(err.contains("stop requested"), "{err}");
        assert!(err.contains("training stopped on request"), "{err}");
        let next = format!(
            "to continue: mmssl pretrain --resume --out {}",
            term.display()
        );
        assert!(err.contains(&next), "{err}");
        // Its checkpoint is where it stopped: inside an epoch, or at the end of one.
        let state = read_json(term.join("checkpoints/state.json"));
        let stopped_at = state["partial"]["step"].as_u64().unwrap_or(0);
        eprintln!(
            "stopped after {} epochs and {stopped_at} steps",
            epochs_done(&term)
        );
        assert!(epochs_done(&term) >= after_epochs, "{state}");
    }
    assert!(stops >= 1, "the run finished before SIGTERM came");
    resume_to_the_end(&term);
    assert_same_checkpoints(&whole, &term, &format!("{stops} stops on SIGTERM"));
    assert_eq!(metrics(&whole), metrics(&term));
}

#[test]
fn resume_refuses_other_settings_and_a_run_takes_one_method() {
    let (_dir, out) = scratch("r");
    let mut args = pretrain_args(&out);
    args[4] = "1".into(); // one epoch
    assert_ok(&mmssl_owned(&args));
    // Another training set size and another seed: refused, naming both.
    let mut other = pretrain_args(&out);
    other[6] = "672".into();
    other[10] = "4".into();
    other.push("--resume".into());
    let res = mmssl_owned(&other);
    assert_fails(&res, &["cannot resume", "train_limit", "seed"]);
    // So is more epochs (the one-cycle schedule spans the whole run).
    let mut longer = args.clone();
    longer[4] = "2".into();
    longer.push("--resume".into());
    let res = mmssl_owned(&longer);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("epochs: 1 then, 2 now"), "{err}");
    // Where and how it runs may change: the same settings with other loader threads resume.
    let mut same = args.clone();
    same.extend(["--resume".into(), "--workers".into(), "0".into()]);
    assert_ok(&mmssl_owned(&same));
    assert_eq!(metrics(&out).len(), 1);

    let res = mmssl(&["run", "--objective", "RR", "--method", "ae", "--quiet"]);
    assert_fails(&res, &["--objective RR", "--method ae"]);
    let res = mmssl(&["run", "--lr", "-1", "--quiet"]);
    assert_eq!(res.status.code(), Some(2));
}

#[test]
fn baselines_go_through_the_phases_with_their_settings() {
    let dir = tempfile::tempdir().unwrap();
    let common = [&TINY[..6], &["--quiet"]].concat();
    // DCCAE with its CCA settings, a constant learning rate and BatchNorm in training mode
    // for the evaluation.
    let out = dir.path().join("dccae");
    let mut args = vec![
        "pretrain",
        "--method",
        "dccae",
        "--cca-dim",
        "4",
        "--cca-norm",
        "frobenius",
        "--cca-top-k",
        "2",
        "--schedule",
        "constant",
        "--lr",
        "0.001",
        "--out",
        arg(&out),
    ];
    args.extend(&common);
    let res = mmssl(&args);
    assert_ok(&res);
    assert!(
        !String::from_utf8_lossy(&res.stderr).contains("warning"),
        "no warning for a CCA dimension below the batch size"
    );
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert_contains_all(
        &config,
        &[
            "method = \"dccae;cca_dim=4;cca_norm=frobenius;cca_top_k=2\"",
            "schedule = \"constant\"",
            "[evaluation]\nepochs = 50",
        ],
    );
    let run = read_json(out.join("run.json"));
    assert_eq!(run["train"]["lr"], 0.001);
    assert!(run["train"]["schedule"].is_null());
    let terms = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(terms.contains("CCA[0,1]"), "{terms}");
    let res = on_run(
        "linear-eval",
        &out,
        &["--eval-epochs", "1", "--bn-train-mode", "--quiet"],
    );
    assert_ok(&res);
    let eval = read_json(out.join("eval.json"));
    assert_eq!(
        eval["method"],
        "dccae;cca_dim=4;cca_norm=frobenius;cca_top_k=2"
    );
    assert_eq!(eval["linear_eval"].as_array().unwrap().len(), 2);

    // A CCA dimension the batch cannot support is warned about.
    let out = dir.path().join("wide");
    let mut args = vec!["pretrain", "--method", "cr-cca", "--cca-dim", "40"];
    args.extend(["--out", arg(&out)]);
    args.extend(&common);
    let res = mmssl(&args);
    assert_ok(&res);
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("warning") && err.contains("cca_dim 40"),
        "{err}"
    );

    // Linear CCA: fitted by `pretrain`, evaluated by `linear-eval` from lcca.json.
    let out = dir.path().join("lcca");
    assert_ok(&mmssl(&[
        "pretrain",
        "--method",
        "lcca",
        "--lcca-components",
        "8",
        "--train-limit",
        "3000",
        "--quiet",
        "--out",
        arg(&out),
    ]));
    let lcca = read_json(out.join("lcca.json"));
    assert_eq!(lcca["canonical_correlations"].as_array().unwrap().len(), 8);
    assert_ok(&on_run(
        "linear-eval",
        &out,
        &["--eval-epochs", "5", "--quiet"],
    ));
    let eval = read_json(out.join("eval.json"));
    assert_eq!(eval["method"], "lcca;components=8");
    assert_eq!(eval["eval_epochs"], 5);
    for m in eval["linear_eval"].as_array().unwrap() {
        let acc = m["pretrained"]["accuracy"].as_f64().unwrap();
        assert!(acc > 0.2, "{m}");
    }
}
