//! The protocol through the public facade only, as a downstream crate uses it: a run from a
//! `RunConfig` and its exact reproduction from the run folder's `config.toml`, a grid with a
//! method registered from outside beside a built-in one, and configuration round trips.
// A configuration is built field by field from the defaults: its sections nest too deep for
// one struct literal to read well.
#![allow(clippy::field_reassign_with_default)]

use mmssl::burn::tensor::Device;
use mmssl::objectives::ObjectiveConfig;
use mmssl::protocol::{
    BuildSetup, DatasetKind, Grid, GridOptions, MethodFactory, MethodOption, MethodOptions, Phases,
    ProtocolError, Quiet, Registry, RunConfig, load_run_config, run, run_with,
};
use mmssl::train::Result as TrainResult;
use mmssl::train::{ContrastiveConfig, ContrastiveModel};
use rand::rngs::StdRng;
use std::path::Path;

mod common;
use common::scratch;
use common::tiny;

fn read(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_run_from_a_config_is_reproduced_from_its_folder() {
    let (dir, first) = scratch("first");
    let config = tiny("XX;estimator=jsd;critic=cosine(0.5);latent_dim=32", &first);
    let report = run(&config, &Device::flex(), &mut Quiet).unwrap();
    assert_eq!(
        report.method,
        "XX;critic=cosine(0.5);estimator=jsd;latent_dim=32"
    );
    assert_eq!(report.sizes, [256, 1000, 1000]);
    assert_eq!(report.linear_eval.len(), 2);
    for m in &report.linear_eval {
        assert!((0.0..=1.0).contains(&m.pretrained.accuracy));
        assert!(m.random_init.is_some());
    }
    let sim = report.similarity.as_ref().expect("analysed");
    assert!(sim.cka.is_some_and(|v| (0.0..=1.0).contains(&v)));
    for f in ["config.toml", "run.json", "metrics.jsonl", "eval.json"] {
        assert!(first.join(f).exists(), "{f}");
    }
    // The folder's config.toml is the complete configuration (the evaluation epochs resolved,
    // the method canonical)...
    let saved = load_run_config(&first).unwrap();
    let mut expected = config.clone();
    expected.method = report.method.parse().unwrap();
    assert_eq!(saved, expected);
    // ...and running it into another folder gives the same results.
    let mut again = saved.clone();
    again.output.dir = dir.path().join("second");
    run(&again, &Device::flex(), &mut Quiet).unwrap();
    let (a, b) = (
        read(&first.join("eval.json")),
        read(&again.output.dir.join("eval.json")),
    );
    assert_eq!(a["linear_eval"], b["linear_eval"]);
    assert_eq!(a["similarity"], b["similarity"]);
    // Resuming with other settings is refused, naming them.
    let mut other = saved;
    other.seed = 5;
    other.output.resume = true;
    let e = run(&other, &Device::flex(), &mut Quiet).unwrap_err();
    assert!(
        matches!(&e, ProtocolError::ResumeMismatch { differences, .. }
            if differences.iter().any(|d| d.starts_with("seed"))),
        "{e}"
    );
}

/// RR between small latents, as a downstream crate would wrap its own model.
struct SmallRr;

impl MethodFactory for SmallRr {
    type Model = ContrastiveModel;

    fn options(&self) -> Vec<MethodOption> {
        vec![MethodOption::new("width", "latent size (default 16)")]
    }

    fn check(&self, o: &MethodOptions<'_>) -> TrainResult<()> {
        o.count("width", 16).map(|_| ())
    }

    fn build(
        &self,
        o: &MethodOptions,
        s: &BuildSetup,
        rng: &mut StdRng,
    ) -> TrainResult<ContrastiveModel> {
        let objective = ObjectiveConfig::new("RR".parse()?).with_embedding_dim(16);
        ContrastiveConfig::new(objective)
            .with_latent_dim(o.count("width", 16)?)
            .init(s.shapes, s.device, rng)
    }
}

#[test]
fn a_grid_runs_a_method_registered_from_outside_beside_a_builtin_one() {
    let mut registry = Registry::builtin();
    registry.register("small-rr", SmallRr).unwrap();
    let text = "methods = [\"small-rr;width=8\", \"lcca;components=4\"]\nseeds = [3]\n\
                [settings]\ntrain_limit = 128\nepochs = 1\nbatch_size = 32\nworkers = 0\n\
                eval_epochs = 2\n";
    // Without the registration the grid is refused, naming the method.
    let e = Grid::from_toml_str(text, &Registry::builtin()).unwrap_err();
    assert!(e.to_string().contains("small-rr"), "{e}");
    let grid = Grid::from_toml_str(text, &registry).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let (device, options) = (Device::flex(), GridOptions::default());
        grid.run(dir.path(), &registry, &device, options, &mut Quiet)
    };
    let rows = run().unwrap();
    assert_eq!(rows.len(), 4, "two methods x two modalities");
    assert_eq!(rows[0].method, "small-rr;width=8");
    assert_eq!(
        (rows[0].seed, rows[3].method.as_str()),
        (3, "lcca;components=4")
    );
    let cell = dir
        .path()
        .join("two-view-mnist/small-rr_width_8/fold0-seed3");
    let eval = read(&cell.join("eval.json"));
    assert_eq!(eval["method"], "small-rr;width=8");
    let md = std::fs::read_to_string(dir.path().join("results.md")).unwrap();
    assert!(
        md.contains("small-rr;width=8") && md.contains("lcca;components=4"),
        "{md}"
    );
    assert!(dir.path().join("accuracy_two-view-mnist.svg").exists());
    // Running it again reuses the finished cells: the same rows.
    let again = run().unwrap();
    assert_eq!(again, rows);
    // One phase alone on a finished cell: the analysis from the best checkpoint.
    let config = load_run_config(&cell).unwrap();
    let report = run_with(
        &config,
        &registry,
        Phases::ANALYZE,
        &Device::flex(),
        &mut Quiet,
    )
    .unwrap();
    assert!(report.similarity.is_some() && report.linear_eval.is_empty());
}

#[test]
fn configurations_round_trip_through_toml_and_json_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = tiny("mmvae;k=2;estimator=iwae", &dir.path().join("r"));
    c.data.dataset = DatasetKind::MnistFashion;
    c.data.data_dir = Some("../data/mnist".into());
    c.seed = 11;
    c.analysis.enabled = false;
    for name in ["run.toml", "run.json"] {
        let path = dir.path().join(name);
        c.save(&path).unwrap();
        assert_eq!(RunConfig::load(&path).unwrap(), c, "{name}");
    }
    c.validate(&Registry::builtin()).unwrap();
    // The same file with a typo names the file and the key.
    let text = std::fs::read_to_string(dir.path().join("run.toml"))
        .unwrap()
        .replace("batch_size", "batch_sise");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let e = RunConfig::load(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.toml") && e.contains("batch_sise"), "{e}");
}

#[test]
fn a_folder_another_run_writes_is_refused() {
    let (_dir, out) = scratch("run");
    // Another writer holds the folder (here this process; the lock is the system's, so a
    // dead process never leaves one behind).
    let held = mmssl::protocol::FolderLock::acquire(&out).unwrap();
    let e = run(&tiny("XX", &out), &Device::flex(), &mut Quiet).unwrap_err();
    assert!(
        matches!(&e, ProtocolError::Locked { holder: Some(p), .. } if *p == std::process::id()),
        "{e}"
    );
    assert!(!out.join("config.toml").exists(), "nothing was written");
    drop(held);
    // Free again: a new run starts; into a folder holding one, only with overwrite.
    let mut config = tiny("XX", &out);
    config.training.epochs = 1;
    assert!(run(&config, &Device::flex(), &mut Quiet).is_ok());
    let e = run(&config, &Device::flex(), &mut Quiet).unwrap_err();
    assert!(
        matches!(e, ProtocolError::NotEmpty { foreign: false, .. }),
        "{e}"
    );
    config.output.overwrite = true;
    assert!(run(&config, &Device::flex(), &mut Quiet).is_ok());
}

#[test]
fn a_refused_run_writes_nothing() {
    let names = |dir: &Path| -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    let dir = tempfile::tempdir().unwrap();
    // A folder of the user's own files is refused, even with overwrite, and left as it was
    // (it used to keep a `.lock` file of the refused run).
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine").unwrap();
    for overwrite in [false, true] {
        let mut config = tiny("XX", &mine);
        config.output.overwrite = overwrite;
        let e = run(&config, &Device::flex(), &mut Quiet).unwrap_err();
        assert!(
            matches!(e, ProtocolError::NotEmpty { foreign: true, .. }),
            "{e}"
        );
        assert_eq!(names(&mine), ["notes.txt"]);
    }
    // Resuming a folder that does not exist is refused without making it.
    let absent = dir.path().join("absent");
    let mut config = tiny("XX", &absent);
    config.output.resume = true;
    let e = run(&config, &Device::flex(), &mut Quiet).unwrap_err();
    assert!(matches!(e, ProtocolError::NothingToResume { .. }), "{e}");
    assert!(
        !absent.exists(),
        "the refused resume made {}",
        absent.display()
    );
}

/// The warnings a run gives.
#[derive(Default)]
struct Warnings(Vec<String>);

impl mmssl::train::Progress for Warnings {}

impl mmssl::protocol::Observer for Warnings {
    fn warning(&mut self, message: &str) {
        self.0.push(message.to_string());
    }
}

#[test]
fn a_resume_without_a_checkpoint_says_that_it_starts_over() {
    let (_dir, out) = scratch("run");
    let config = tiny("CR", &out);
    let first = run(&config, &Device::flex(), &mut Quiet).unwrap();
    std::fs::remove_dir_all(out.join("checkpoints")).unwrap();
    let mut again = config.clone();
    again.output.resume = true;
    let mut heard = Warnings::default();
    let registry = Registry::builtin();
    let second = run_with(&again, &registry, Phases::ALL, &Device::flex(), &mut heard).unwrap();
    assert!(
        heard.0.iter().any(|w| w.contains("nothing to resume from")),
        "{:?}",
        heard.0
    );
    // It started over: the same run again (same seed, same numbers on the CPU), its
    // metrics written once.
    assert_eq!(
        serde_json::to_value(&first.linear_eval).unwrap(),
        serde_json::to_value(&second.linear_eval).unwrap()
    );
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), config.training.epochs, "{lines}");
}
