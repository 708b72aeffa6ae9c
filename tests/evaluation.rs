//! The evaluations beyond the linear probe through the public facade: k-NN, cross-modal
//! retrieval and embedding maps in a run's report and folder, the online evaluation while
//! pretraining (which must not change the pretraining), and the errors for what cannot work.
#![allow(clippy::field_reassign_with_default)]

use mmssl::burn::tensor::Device;
use mmssl::protocol::{
    Phases, ProtocolError, Quiet, Registry, RetrievalSpace, RunConfig, run, run_with,
};
use std::path::Path;

mod common;
use common::scratch;

/// A tiny run of CR-XX-CC (16-wide `z`) into `out` ([`common::tiny`]).
fn tiny(out: &Path) -> RunConfig {
    common::tiny("CR-XX-CC;latent_dim=16", out)
}

/// Every file under `dir`, by relative path, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        out.push((name, std::fs::read(&p).unwrap()));
    }
    out.sort();
    out
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn online_evaluation_leaves_pretraining_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, online) = (dir.path().join("plain"), dir.path().join("online"));
    let pretrain = |c: &RunConfig| {
        let registry = Registry::builtin();
        run_with(c, &registry, Phases::PRETRAIN, &Device::flex(), &mut Quiet).unwrap()
    };
    let mut config = tiny(&plain);
    config.training.epochs = 2;
    pretrain(&config);
    config.output.dir = online.clone();
    config.evaluation.online_every = 1;
    config.evaluation.online_items = 200;
    config.evaluation.knn_k = Some(5);
    pretrain(&config);
    // The same weights, bit for bit: both best checkpoints' encoders (trained with the heads,
    // so any change would show in them) exported to safetensors (a checkpoint file itself
    // holds random parameter ids, so its bytes differ from run to run).
    let exported = |run: &Path| {
        let out = run.join("exported");
        mmssl::protocol::interop::export_run(
            run,
            &out,
            false,
            false,
            &Registry::builtin(),
            &Device::flex(),
            &mut Quiet,
        )
        .unwrap();
        files(&out)
    };
    // A safetensors file as its header (parsed: the order of its keys is free) and its data.
    let tensors = |files: Vec<(String, Vec<u8>)>| -> Vec<(String, serde_json::Value, Vec<u8>)> {
        files
            .into_iter()
            .filter(|(n, _)| n.ends_with(".safetensors"))
            .map(|(n, bytes)| {
                let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                let header = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
                (n, header, bytes[8 + len..].to_vec())
            })
            .collect()
    };
    let (a, b) = (tensors(exported(&plain)), tensors(exported(&online)));
    assert!(a.len() >= 2, "both encoders exported");
    assert_eq!(a, b, "the online evaluation changed the weights");
    let (ma, mb) = (metrics(&plain), metrics(&online));
    assert_eq!(ma.len(), 2);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(x["train_loss"], y["train_loss"]);
        assert_eq!(x["valid_loss"], y["valid_loss"]);
        assert!(x.get("online").is_none());
        let o = &y["online"];
        for key in [
            "probe_m0", "probe_m1", "knn_m0", "knn_m1", "r1_0to1", "r1_1to0",
        ] {
            let v = o[key].as_f64().unwrap_or(f64::NAN);
            assert!((0.0..=1.0).contains(&v), "{key} = {o}");
        }
    }
    assert!(online.join("online.png").exists() && online.join("online.svg").exists());
    assert!(!plain.join("online.png").exists());
    // The reference point: the same evaluation of the model before its first step. The
    // untrained encoder retrieves its pairs worse than after two epochs.
    assert!(!plain.join("online_start.json").exists());
    let start: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(online.join("online_start.json")).unwrap())
            .unwrap();
    assert_eq!(start["epochs_trained"], 0);
    for key in ["probe_m0", "knn_m1", "r1_0to1", "mrr_1to0"] {
        let v = start["online"][key].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&v), "{key} = {start}");
    }
    let (before, after) = (&start["online"]["mrr_0to1"], &mb[1]["online"]["mrr_0to1"]);
    assert!(before.as_f64() < after.as_f64(), "{before} -> {after}");
    // The curves start at 0 epochs.
    let svg = std::fs::read_to_string(online.join("online.svg")).unwrap();
    assert!(
        svg.contains("linear probe m0"),
        "the legend names the curves"
    );
}

/// Asks to stop once `after` training steps have been reported (as a SIGTERM handler would).
struct StopAfter(usize);
impl mmssl::train::Progress for StopAfter {
    fn step(&mut self, _: &mmssl::train::StepReport<'_>) {
        self.0 = self.0.saturating_sub(1);
    }
    fn stop_requested(&self) -> bool {
        self.0 == 0
    }
}
impl mmssl::protocol::Observer for StopAfter {}

#[test]
fn the_reference_before_training_survives_a_resume_and_is_not_measured_again() {
    let dir = tempfile::tempdir().unwrap();
    let (straight, stopped) = (dir.path().join("straight"), dir.path().join("stopped"));
    let mut config = tiny(&straight);
    config.training.epochs = 2;
    config.evaluation.online_every = 1;
    config.evaluation.online_items = 200;
    config.evaluation.knn_k = Some(5);
    let registry = Registry::builtin();
    let device = Device::flex();
    run_with(&config, &registry, Phases::PRETRAIN, &device, &mut Quiet).unwrap();
    // Stopped after 3 steps, then resumed: the reference is the one measured before the
    // first step (carried in the checkpoint), not the model's after those steps.
    config.output.dir = stopped.clone();
    let err = run_with(
        &config,
        &registry,
        Phases::PRETRAIN,
        &device,
        &mut StopAfter(3),
    );
    assert!(
        matches!(
            err,
            Err(ProtocolError::Train(
                mmssl::train::TrainError::Interrupted { .. }
            ))
        ),
        "{err:?}"
    );
    config.output.resume = true;
    run_with(&config, &registry, Phases::PRETRAIN, &device, &mut Quiet).unwrap();
    let start = |d: &Path| std::fs::read_to_string(d.join("online_start.json")).unwrap();
    assert_eq!(start(&stopped), start(&straight));
    // And every epoch's online numbers are those of the run never stopped.
    let online = |d: &Path| -> Vec<serde_json::Value> {
        metrics(d)
            .into_iter()
            .map(|m| m["online"].clone())
            .collect()
    };
    assert_eq!(online(&stopped), online(&straight));
    assert_eq!(online(&stopped).len(), 2);
}

#[test]
fn a_run_reports_knn_retrieval_and_maps_beside_the_random_init() {
    let (_dir, out) = scratch("run");
    let mut config = tiny(&out);
    config.evaluation.knn_k = Some(10);
    config.analysis.maps = true;
    config.analysis.map_points = 150;
    let report = run(&config, &Device::flex(), &mut Quiet).unwrap();
    for m in &report.linear_eval {
        let knn = m.knn.as_ref().expect("k-NN evaluated by default");
        assert_eq!((knn.pretrained.k, knn.pretrained.n_train), (10, 256));
        assert_eq!(knn.pretrained.n_test, 1000);
        assert!((0.0..=1.0).contains(&knn.pretrained.accuracy));
        assert!(knn.random_init.is_some());
    }
    assert_eq!(report.retrieval.len(), 4, "{:?}", report.notes);
    for space in [RetrievalSpace::Z, RetrievalSpace::Canonical] {
        for (q, g) in [(0, 1), (1, 0)] {
            let r = report
                .retrieval
                .iter()
                .find(|r| r.space == space && r.query == q && r.gallery == g)
                .unwrap();
            assert_eq!(r.pretrained.n, 1000);
            assert_eq!(r.pretrained.recall_at[0].chance, 0.001);
            assert!(r.random_init.is_some());
        }
    }
    let names: Vec<&str> = report.maps.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "modality 0 (rotated)",
            "modality 1 (noisy)",
            "both modalities",
            "modality 0 (rotated), random initialisation",
            "modality 1 (noisy), random initialisation",
            "both modalities, random initialisation",
        ]
    );
    let random: Vec<bool> = report.maps.iter().map(|m| m.random_init).collect();
    assert_eq!(random, [false, false, false, true, true, true]);
    assert_eq!(report.maps[5].files[0], "maps/tsne_random_joint.png");
    for m in &report.maps {
        assert!(m.trustworthiness > 0.5 && m.trustworthiness <= 1.0, "{m:?}");
        for f in &m.files {
            let bytes = std::fs::read(out.join(f)).unwrap();
            if f.ends_with(".png") {
                assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
            } else {
                let svg = String::from_utf8(bytes).unwrap();
                assert!(svg.contains("class 7") && svg.contains("trustworthiness"));
            }
        }
    }
    assert_eq!(report.maps[2].points, 300);
    assert!(report.maps[0].notes[0].contains("150 of the 1000 test items"));
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert!(eval["linear_eval"][0]["knn"]["random_init"]["accuracy"].is_f64());
    assert_eq!(eval["retrieval"].as_array().unwrap().len(), 4);
    assert_eq!(eval["maps"].as_array().unwrap().len(), 6);
    assert_eq!(eval["maps"][4]["random_init"], true);
    let text = report.summary();
    assert!(text.contains("10-NN (cosine, majority vote)"), "{text}");
    assert!(text.contains("0 -> 1 | canonical |"), "{text}");
    assert!(
        text.contains("map of both modalities: 300 points"),
        "{text}"
    );
}

#[test]
fn a_run_with_maps_and_curves_is_overwritten_whole() {
    let (_dir, out) = scratch("run");
    let mut config = tiny(&out);
    config.training.epochs = 1;
    config.evaluation.online_every = 1;
    config.evaluation.online_items = 100;
    config.evaluation.knn_k = Some(5);
    config.analysis.maps = true;
    config.analysis.map_points = 40;
    run(&config, &Device::flex(), &mut Quiet).unwrap();
    for f in ["maps", "online.png", "online.svg", "online_start.json"] {
        assert!(out.join(f).exists(), "{f}");
    }
    // Its figures are the run's own: an overwrite takes them away with the rest (they were
    // foreign files once, and the folder was refused), and nothing of them stays beside a
    // run that draws none.
    let mut plain = tiny(&out);
    plain.training.epochs = 1;
    plain.output.overwrite = true;
    run(&plain, &Device::flex(), &mut Quiet).unwrap();
    for f in ["maps", "online.png", "online.svg", "online_start.json"] {
        assert!(!out.join(f).exists(), "{f} left from the run overwritten");
    }
}

#[test]
fn what_cannot_work_is_refused_before_pretraining() {
    let (_dir, out) = scratch("run");
    let mut config = tiny(&out);
    config.evaluation.knn_k = Some(300);
    let err = run(&config, &Device::flex(), &mut Quiet).unwrap_err();
    assert!(
        matches!(&err, ProtocolError::InvalidSetting { field, .. } if field == "evaluation.knn_k"),
        "{err}"
    );
    assert!(err.to_string().contains("k = 300 is too large"), "{err}");
    assert!(!out.join("checkpoints").exists(), "nothing was pretrained");
    let mut config = tiny(&out);
    config.evaluation.online_every = 1;
    config.evaluation.online_items = 4;
    config.evaluation.knn_k = Some(5);
    let err = run(&config, &Device::flex(), &mut Quiet).unwrap_err();
    assert!(err.to_string().contains("online_items"), "{err}");
    let mut config = tiny(&out);
    config.analysis.maps = true;
    config.analysis.map_points = 10;
    config.evaluation.knn_voting = mmssl::similarity::Voting::Temperature;
    config.evaluation.knn_temperature = -1.0;
    let err = config.validate(&Registry::builtin()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("analysis.map_points") && text.contains("evaluation.knn_temperature"),
        "every problem at once: {text}"
    );
}

/// Stops the run before its `at + 1`th linear evaluation, as a SIGTERM would.
struct StopAtEvaluation {
    seen: usize,
    at: usize,
    notes: Vec<String>,
}
impl mmssl::train::Progress for StopAtEvaluation {
    fn stop_requested(&self) -> bool {
        self.seen >= self.at
    }
}
impl mmssl::protocol::Observer for StopAtEvaluation {
    fn phase(&mut self, phase: mmssl::protocol::Phase) {
        if matches!(phase, mmssl::protocol::Phase::Evaluating { .. }) {
            self.seen += 1;
        }
    }
    fn note(&mut self, message: &str) {
        self.notes.push(message.to_string());
    }
}

/// Issue 35 item 19: an evaluation stopped after some of its probes keeps them
/// (`eval.partial.json`); the next attempt trains only the rest, and the results are those of
/// an evaluation never stopped.
#[test]
fn an_interrupted_evaluation_keeps_the_probes_it_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (straight, stopped) = (dir.path().join("straight"), dir.path().join("stopped"));
    let registry = Registry::builtin();
    let device = Device::flex();
    let mut config = tiny(&straight);
    config.training.epochs = 1;
    let evaluate = |c: &RunConfig, observer: &mut StopAtEvaluation| {
        run_with(c, &registry, Phases::EVALUATE, &device, observer)
    };
    for out in [&straight, &stopped] {
        config.output.dir = out.clone();
        run_with(&config, &registry, Phases::PRETRAIN, &device, &mut Quiet).unwrap();
    }
    config.output.dir = straight.clone();
    let never = |notes| StopAtEvaluation {
        seen: 0,
        at: usize::MAX,
        notes,
    };
    let report = evaluate(&config, &mut never(Vec::new())).unwrap();
    // Stopped before the third of four probes: modality 0's two are kept.
    config.output.dir = stopped.clone();
    let mut stop = StopAtEvaluation {
        seen: 0,
        at: 2,
        notes: Vec::new(),
    };
    let err = evaluate(&config, &mut stop).unwrap_err();
    assert!(matches!(err, ProtocolError::Interrupted { .. }), "{err}");
    let partial: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stopped.join("eval.partial.json")).unwrap())
            .unwrap();
    let kept: Vec<&String> = partial["results"].as_object().unwrap().keys().collect();
    assert_eq!(kept, ["m0-pretrained", "m0-random-init"]);
    let mut again = never(Vec::new());
    let resumed = evaluate(&config, &mut again).unwrap();
    assert_eq!(again.notes.len(), 2, "{:?}", again.notes);
    assert!(again.notes[0].contains("modality 0 (pretrained): kept"));
    let json = |r: &mmssl::protocol::RunReport| serde_json::to_string(&r.linear_eval).unwrap();
    assert_eq!(json(&resumed), json(&report));
    assert!(
        !stopped.join("eval.partial.json").exists(),
        "gone with eval.json"
    );
    // Other evaluation settings do not take the kept probes.
    let mut stop = StopAtEvaluation {
        seen: 0,
        at: 2,
        notes: Vec::new(),
    };
    evaluate(&config, &mut stop).unwrap_err();
    config.evaluation.epochs = Some(3);
    let mut other = never(Vec::new());
    evaluate(&config, &mut other).unwrap();
    assert!(other.notes.is_empty(), "{:?}", other.notes);
}
