//! The training loop end to end on real MNIST pairs: the loss goes down, an interrupted and
//! resumed run ends exactly where an uninterrupted one does (killed after an epoch, or asked
//! to stop in the middle of one), and a NaN stops training with a
//! precise error while keeping the last good checkpoint.

use burn::module::Module;
use burn::tensor::Device;
use mmssl_data::{MapItems, PairedDataset, TwoViewConfig, TwoViewMnist};
use mmssl_train::{
    Checkpoints, ContrastiveModel, EpochMetrics, FitConfig, FitData, FitRun, LoaderConfig, Method,
    OneCycleConfig, Progress, Quiet, TrainError, fit,
};

mod common;
use common::*;

/// `epochs` epochs of training from the seeded model, without validation or checkpoints.
fn train_plainly(
    data: &dyn PairedDataset,
    epochs: usize,
    device: &Device,
) -> Result<mmssl_train::FitOutcome<ContrastiveModel>, TrainError> {
    fit(
        model(data, device),
        FitData::new(data),
        &config(epochs),
        FitRun {
            device,
            checkpoints: None,
            progress: &mut Quiet,
        },
    )
}

#[test]
fn loss_decreases_on_real_two_view_mnist() {
    let Some(images) = mnist(256) else { return };
    let device = Device::flex().autodiff();
    let data = TwoViewMnist::new(images, TwoViewConfig::default()).unwrap();
    let out = train_plainly(&data, 4, &device).unwrap();
    let first = out.history[0].train_loss;
    let last = out.history.last().unwrap().train_loss;
    assert!(last < first, "training loss {first} -> {last}");
    assert!(
        out.history
            .iter()
            .all(|m| m.terms.contains_key("XX[0->1]") && m.terms.contains_key("CR[1]"))
    );
}

struct DieAfter(usize);
impl Progress for DieAfter {
    fn epoch(&mut self, m: &EpochMetrics) {
        if m.epoch == self.0 {
            panic!("simulated kill after epoch {}", m.epoch);
        }
    }
}

#[test]
fn interrupted_and_resumed_run_equals_uninterrupted_run() {
    let Some((data, valid)) = sets() else { return };
    let device = Device::flex().autodiff();
    let cfg = config(3);
    let tmp = tempfile::tempdir().unwrap();
    let ck_a = Checkpoints::new(tmp.path().join("a")).unwrap();
    // A fresh seeded model trained with validation and checkpoints.
    let run = |cfg: &FitConfig, ck: &Checkpoints, progress: &mut dyn Progress| {
        let model = model(&data, &device);
        fit(
            model,
            FitData::new(&data).with_valid(&valid),
            cfg,
            FitRun {
                device: &device,
                checkpoints: Some(ck),
                progress,
            },
        )
    };
    let straight = run(&cfg, &ck_a, &mut Quiet).unwrap();

    // The interrupted run loads on the training thread and the resumed one with three
    // workers (the straight run: the default two): loader settings change speed, not numbers,
    // and a run may resume with other ones.
    let ck_b = Checkpoints::new(tmp.path().join("b")).unwrap();
    let inline = FitConfig {
        loader: LoaderConfig::synchronous(),
        ..cfg.clone()
    };
    let three = FitConfig {
        loader: LoaderConfig {
            workers: 3,
            prefetch: 1,
        },
        ..cfg.clone()
    };
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&inline, &ck_b, &mut DieAfter(2))
    }));
    assert!(killed.is_err(), "the simulated kill must interrupt the run");
    let ck_b = ck_b.resume(true);
    let resumed = run(&three, &ck_b, &mut Quiet).unwrap();

    assert_eq!(weights(&straight.last), weights(&resumed.last));
    // Validation terms: the same names as the training terms, each epoch; the last epoch's are
    // those of the last model evaluated again with that epoch's draws.
    let epochs = straight.history.len();
    for m in &straight.history {
        assert_eq!(
            m.valid_terms.keys().collect::<Vec<_>>(),
            m.terms.keys().collect::<Vec<_>>()
        );
        assert!(m.valid_terms.values().all(|v| v.is_finite() && *v > 0.0));
    }
    let (loss, terms) =
        mmssl_train::evaluate_terms(&straight.last, &valid, &cfg, epochs - 1, &device).unwrap();
    let last = straight.history.last().unwrap();
    assert_eq!(Some(loss), last.valid_loss);
    assert_eq!(terms, last.valid_terms);
    // The loss is the terms' sum plus the score penalties (at least 0).
    let sum: f64 = terms.values().sum();
    assert!(
        loss >= sum - 1e-4 && loss < sum + 1.0,
        "{loss} against {terms:?}"
    );
    // A run without validation writes no validation terms (nor the key in metrics.jsonl).
    let plain = fit(
        model(&data, &device),
        FitData::new(&data),
        &config(1),
        FitRun::new(&device, &mut Quiet),
    )
    .unwrap();
    assert!(plain.history[0].valid_terms.is_empty());
    let json = serde_json::to_string(&plain.history[0]).unwrap();
    assert!(!json.contains("valid_terms"), "{json}");
    assert!(json.contains("\"terms\""), "{json}");
    assert_eq!(comparable(&straight.history), comparable(&resumed.history));
    assert_eq!(straight.best_epoch, resumed.best_epoch);
    assert!(ck_b.best().exists() && ck_b.last().exists());
    // The best model in memory is the one in best.bpk, and the resumed run has it too (read
    // back from its checkpoint when the best epoch came before the kill).
    let best = weights(straight.best.as_ref().expect("three epochs ran"));
    let from_file = model(&data, &device).try_load_file(ck_a.best()).unwrap();
    assert_eq!(best, weights(&from_file));
    assert_eq!(best, weights(resumed.best.as_ref().unwrap()));
    // A different configuration refuses to resume.
    let other = config(4);
    let err = fit(
        model(&data, &device),
        FitData::new(&data).with_valid(&valid),
        &other,
        FitRun::new(&device, &mut Quiet).with_checkpoints(&ck_b),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("another configuration"), "{err}");
}

/// Asks to stop once `after` steps have been reported (as a SIGTERM handler would).
struct StopAfter {
    after: usize,
    seen: usize,
}
impl Progress for StopAfter {
    fn step(&mut self, _: &mmssl_train::StepReport<'_>) {
        self.seen += 1;
    }
    fn stop_requested(&self) -> bool {
        self.seen >= self.after
    }
    // Marks which run measured the reference: only the first may.
    fn evaluate_start(
        &mut self,
        model: &dyn mmssl_train::Represent,
    ) -> std::collections::BTreeMap<String, f64> {
        [
            ("after".to_string(), self.after as f64),
            ("modalities".to_string(), model.modalities() as f64),
        ]
        .into()
    }
}

#[test]
fn a_run_stopped_mid_epoch_resumes_to_the_uninterrupted_numbers() {
    let Some((data, valid)) = sets() else { return };
    // 4 steps per epoch, 3 epochs.
    let (device, cfg) = (Device::flex().autodiff(), config(3));
    let tmp = tempfile::tempdir().unwrap();
    let run = |ck: &Checkpoints, progress: &mut dyn Progress| {
        fit(
            model(&data, &device),
            FitData::new(&data).with_valid(&valid),
            &cfg,
            FitRun {
                device: &device,
                checkpoints: Some(ck),
                progress,
            },
        )
    };
    let straight = run(&Checkpoints::new(tmp.path().join("a")).unwrap(), &mut Quiet).unwrap();

    // Stopped after step 2 of epoch 2 (6 steps in all), then after 1 more step (epoch 2, step
    // 3), then at the end of epoch 2 by a request during its last step, then finished. Epochs
    // and steps are counted from 1, in the errors as in the checkpoint files' names.
    let ck = Checkpoints::new(tmp.path().join("b")).unwrap().resume(true);
    let stops = [(6, 2, 2, true), (1, 2, 3, true), (1, 2, 4, false)];
    for (after, epoch, step, mid_epoch) in stops {
        match run(&ck, &mut StopAfter { after, seen: 0 }) {
            Err(TrainError::Interrupted {
                epoch: e,
                step: s,
                checkpoint,
            }) => {
                assert_eq!((e, s), (epoch, step));
                assert_eq!(checkpoint.as_deref(), Some(tmp.path().join("b").as_path()));
            }
            Err(other) => panic!("expected an interruption, got {other}"),
            Ok(_) => panic!("expected an interruption, the run finished"),
        }
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join("b/state.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(state["partial"].is_object(), mid_epoch, "{state}");
        if mid_epoch {
            assert_eq!(state["partial"]["step"], step);
            let name = format!("last.e{epoch:04}s{step:06}.bpk");
            assert!(tmp.path().join("b").join(&name).exists(), "{name}");
        }
        assert_eq!(state["epochs_done"], if mid_epoch { 1 } else { 2 });
        // Only the newest checkpoint's files and the previous commit's (the fallback of a
        // damaged last one) are kept.
        let mut stamped: Vec<String> = std::fs::read_dir(tmp.path().join("b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("last.e"))
            .collect();
        stamped.sort();
        let previous: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join("b/state.previous.json")).unwrap(),
        )
        .unwrap();
        let mut named = vec![
            previous["files"]["last"].as_str().unwrap().to_string(),
            state["files"]["last"].as_str().unwrap().to_string(),
        ];
        named.sort();
        assert_eq!(stamped, named);
    }
    let resumed = run(&ck, &mut Quiet).unwrap();
    assert_eq!(comparable(&straight.history), comparable(&resumed.history));
    // The reference before training was measured once, by the first of the stopped runs
    // (after = 6), and carried through every resume; the straight run measured nothing.
    assert!(straight.before_training.is_empty());
    assert_eq!(
        resumed.before_training,
        [("after".to_string(), 6.0), ("modalities".to_string(), 2.0)].into()
    );
    assert!(weights(&straight.last) == weights(&resumed.last));
    assert_eq!(straight.best_epoch, resumed.best_epoch);
    assert_eq!(
        weights(straight.best.as_ref().unwrap()),
        weights(resumed.best.as_ref().unwrap())
    );

    // Without checkpoints the request still stops training, and the error says nothing was
    // saved.
    let err = fit(
        model(&data, &device),
        FitData::new(&data),
        &cfg,
        FitRun {
            device: &device,
            checkpoints: None,
            progress: &mut StopAfter { after: 1, seen: 0 },
        },
    )
    .err()
    .unwrap();
    assert!(
        matches!(
            err,
            TrainError::Interrupted {
                epoch: 1,
                step: 1,
                checkpoint: None
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("no checkpoint"), "{err}");
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let Some(images) = mnist(32) else { return };
    let device = Device::flex().autodiff();
    // One value of every item of the second epoch (its draws' index 1) poisoned with NaN.
    let pairs = TwoViewMnist::new(images, TwoViewConfig::default()).unwrap();
    let data = MapItems::new(pairs, |d: &TwoViewMnist, i, epoch| {
        let mut item = d.get(i, epoch)?;
        if epoch == 1 {
            item.views[1][3] = f32::NAN;
        }
        Ok(item)
    });
    let tmp = tempfile::tempdir().unwrap();
    let ck = Checkpoints::new(tmp.path()).unwrap();
    let err = fit(
        model(&data, &device),
        FitData::new(&data),
        &config(3),
        FitRun::new(&device, &mut Quiet).with_checkpoints(&ck),
    )
    .err()
    .expect("NaN input must stop training");
    match &err {
        TrainError::NonFinite {
            epoch,
            step,
            culprit,
            ..
        } => {
            assert_eq!((*epoch, *step), (2, 1), "counted from 1");
            assert!(
                culprit.contains("CR[") || culprit.contains("XX["),
                "{culprit}"
            );
        }
        other => panic!("expected NonFinite, got {other}"),
    }
    assert!(err.to_string().contains("epoch 2, step 1"), "{err}");
    // The first epoch's checkpoint is intact and loads.
    let fresh = model(&data, &device);
    let loaded = fresh
        .try_load_file(ck.last())
        .expect("last good checkpoint loads");
    assert!(weights(&loaded).iter().all(|w| w.is_finite()));
    let _ = loaded.modalities();
}

#[test]
fn frozen_features_feed_linear_evaluation() {
    use mmssl_data::Subset;
    use mmssl_train::{LinearEvalConfig, extract_features, linear_eval};
    use std::sync::Arc;
    let Some(images) = mnist(640) else { return };
    let device = Device::flex().autodiff();
    let all: Arc<dyn PairedDataset> =
        Arc::new(TwoViewMnist::new(images, TwoViewConfig::default()).unwrap());
    let part = |r: std::ops::Range<usize>| Subset::new(all.clone(), r.collect()).unwrap();
    let (train, valid, test) = (part(0..384), part(384..512), part(512..640));
    let out = train_plainly(&train, 1, &device).unwrap();
    let feats = |d: &Subset, bn_train: bool| {
        extract_features(&out.last, d, 0, 64, bn_train, &device).unwrap()
    };
    let (ftr, fva, fte) = (
        feats(&train, false),
        feats(&valid, false),
        feats(&test, false),
    );
    assert_eq!((ftr.len(), ftr.dim, ftr.values.len()), (384, 64, 384 * 64));
    assert_eq!(
        fte.labels,
        (512..640)
            .map(|i| all.label(i).unwrap())
            .collect::<Vec<_>>()
    );
    // Evaluation-mode features do not depend on the batch; training-mode ones do.
    let eval_a = extract_features(&out.last, &test, 0, 64, false, &device).unwrap();
    let eval_b = extract_features(&out.last, &test, 0, 32, false, &device).unwrap();
    let max_diff = eval_a
        .values
        .iter()
        .zip(&eval_b.values)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        max_diff < 1e-4,
        "eval-mode features changed with the batch size: {max_diff}"
    );
    assert_ne!(feats(&test, true).values, fte.values);
    let mut cfg = LinearEvalConfig::default();
    cfg.training.epochs = 30;
    cfg.training.schedule = Some(OneCycleConfig {
        max_lr: 0.05,
        ..Default::default()
    });
    let r = linear_eval(&ftr, &fva, &fte, 10, &cfg, &device).unwrap();
    assert!(r.accuracy > 0.3, "{r:?}");
    assert!(r.roc_auc.unwrap() > 0.7, "{r:?}");
}
