//! Linear evaluation on synthetic features: accuracy, the one loop, errors.

use super::*;
use crate::onecycle::OneCycleConfig;
use mmssl_data::{Batch, ViewBatch};
use rand::RngExt;

/// Two Gaussian blobs per class in 8 dimensions; `shift` separates the classes.
fn blobs(n: usize, classes: usize, shift: f32, seed: u64) -> Features {
    let mut rng = item_rng(seed, 0, 0);
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let c = i % classes;
        for d in 0..8 {
            let centre = if d == c { shift } else { 0.0 };
            values.push(centre + rng.random_range(-1.0f32..1.0));
        }
        labels.push(c);
    }
    Features {
        values,
        dim: 8,
        labels,
    }
}

fn quick() -> LinearEvalConfig {
    let mut c = LinearEvalConfig::default();
    c.training.epochs = 15;
    c.training.batch_size = 32;
    c.training.schedule = Some(OneCycleConfig {
        max_lr: 0.05,
        ..Default::default()
    });
    c
}

/// Linear evaluation of blobs of `classes` classes `shift` apart (training, validation and test
/// sets of 600, `valid` and 2 `valid` items).
fn evaluate(classes: usize, shift: f32, valid: usize, seed: u64) -> LinearEvalResult {
    let set = |n, k| blobs(n, classes, shift, seed + k);
    let (tr, va, te) = (set(600, 0), set(valid, 1), set(2 * valid, 2));
    linear_eval(&tr, &va, &te, classes, &quick(), &Device::flex()).unwrap()
}

#[test]
fn separable_features_are_classified_well() {
    let r = evaluate(3, 4.0, 150, 1);
    assert!(r.accuracy > 0.95, "{r:?}");
    assert!(r.roc_auc.unwrap() > 0.99);
    assert!(r.balanced_accuracy > 0.95);
    assert_eq!(r.valid_losses.len(), 15);
    assert!(
        r.valid_losses[r.best_epoch - 1]
            <= r.valid_losses.iter().cloned().fold(f64::INFINITY, f64::min)
    );
}

#[test]
fn uninformative_features_stay_near_chance() {
    let r = evaluate(2, 0.0, 200, 4);
    assert!((r.accuracy - 0.5).abs() < 0.1, "{r:?}");
    assert!((r.roc_auc.unwrap() - 0.5).abs() < 0.1);
}

#[test]
fn bad_inputs_are_errors() {
    let device = Device::flex();
    let f = blobs(10, 2, 1.0, 7);
    let empty = Features {
        values: vec![],
        dim: 8,
        labels: vec![],
    };
    assert!(matches!(
        linear_eval(&f, &empty, &f, 2, &quick(), &device),
        Err(TrainError::EmptyFeatures {
            train: 10,
            valid: 0,
            test: 10
        })
    ));
    assert!(matches!(
        linear_eval(&f, &f, &f, 1, &quick(), &device),
        Err(TrainError::InvalidSetting {
            name: "classes",
            ..
        })
    ));
    let mut no_epochs = quick();
    no_epochs.training.epochs = 0;
    assert!(matches!(
        linear_eval(&f, &f, &f, 2, &no_epochs, &device),
        Err(TrainError::InvalidSetting { name: "epochs", .. })
    ));
}

/// Counts the steps of each epoch.
struct Steps(Vec<usize>);
impl crate::fit::Progress for Steps {
    fn step(&mut self, r: &crate::fit::StepReport<'_>) {
        if self.0.len() < r.epoch {
            self.0.resize(r.epoch, 0);
        }
        self.0[r.epoch - 1] += 1;
    }
}

#[test]
fn the_probe_trains_in_the_one_loop_on_every_item() {
    let device = Device::flex().autodiff();
    let train = blobs(70, 2, 3.0, 8);
    let set = FeatureSet {
        features: &train,
        classes: 2,
    };
    let mut config = quick().training;
    config.epochs = 2;
    for (partial, steps) in [(true, 3), (false, 2)] {
        config.partial_batches = partial;
        let probe = LinearProbeConfig::new(8, 2).init(&device, &mut item_rng(0, 0, 0));
        let mut seen = Steps(Vec::new());
        let out = fit(
            probe,
            FitData::new(&set).with_valid(&set),
            &config,
            FitRun::new(&device, &mut seen),
        )
        .unwrap();
        assert_eq!(seen.0, vec![steps; 2], "partial batches {partial}");
        assert!(out.best.is_some() && out.best_epoch.is_some());
    }
}

#[test]
fn the_weighted_validation_loss_is_the_loss_over_every_item() {
    let device = Device::flex();
    let valid = blobs(45, 3, 2.0, 9);
    let probe = LinearProbeConfig::new(8, 3).init(&device, &mut item_rng(1, 0, 0));
    let config = quick().training; // batches of 32: one of 32 and one of 13
    let set = FeatureSet {
        features: &valid,
        classes: 3,
    };
    let got = crate::fit::evaluate_loss(&probe, &set, &config, 0, &device).unwrap();
    let (x, y) = valid.all_rows(&device);
    let want = cross_entropy(probe.logits(x), y).into_scalar::<f32>() as f64;
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
}

#[test]
fn the_probe_refuses_other_views_and_missing_labels() {
    let device = Device::flex();
    let probe = LinearProbeConfig::new(4, 2).init(&device, &mut item_rng(2, 0, 0));
    let images = Batch {
        views: vec![ViewBatch::Images(Tensor::zeros([2, 1, 2, 2], &device))],
        labels: vec![Some(0), Some(1)],
    };
    let mut rng = item_rng(0, 0, 0);
    assert!(matches!(
        probe.loss(&images, &mut rng),
        Err(TrainError::ViewKind { got: "images", .. })
    ));
    let unlabelled = Batch {
        views: vec![ViewBatch::Vectors(Tensor::zeros([2, 4], &device))],
        labels: vec![Some(0), None],
    };
    assert!(matches!(
        probe.loss(&unlabelled, &mut rng),
        Err(TrainError::MissingLabel { item: 1, .. })
    ));
    assert_eq!(probe.represent(&unlabelled, 0).unwrap().dims(), [2, 2]);
}

#[test]
fn bad_sizes_and_labels_are_errors_and_batches_of_one_train() {
    let device = Device::flex();
    let f = blobs(12, 2, 3.0, 10);
    let mut wide = blobs(12, 2, 3.0, 11);
    wide.dim = 4;
    wide.values.truncate(48);
    assert!(matches!(
        linear_eval(&f, &wide, &f, 2, &quick(), &device),
        Err(TrainError::InvalidSetting {
            name: "features",
            ..
        })
    ));
    let mut high = f.clone();
    high.labels[3] = 5;
    let err = linear_eval(&f, &f, &high, 2, &quick(), &device).unwrap_err();
    assert!(err.to_string().contains("a label is 5"), "{err}");
    let mut zero = quick();
    zero.training.batch_size = 0;
    assert!(matches!(
        linear_eval(&f, &f, &f, 2, &zero, &device),
        Err(TrainError::InvalidSetting {
            name: "batch_size",
            ..
        })
    ));
    let mut one = quick();
    one.training.batch_size = 1;
    one.training.epochs = 2;
    let r = linear_eval(&f, &f, &f, 2, &one, &device).unwrap();
    assert_eq!(r.valid_losses.len(), 2);
}

#[test]
fn the_configuration_serialises_flat_as_before() {
    let json = serde_json::to_value(LinearEvalConfig::default()).unwrap();
    for key in [
        "epochs",
        "batch_size",
        "seed",
        "lr",
        "schedule",
        "batchnorm_train_mode",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    let back: LinearEvalConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, LinearEvalConfig::default());
}
