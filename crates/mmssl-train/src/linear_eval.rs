//! Linear evaluation, the paper's protocol: freeze the pretrained encoder, take the raw latent
//! `z` of one modality at a time as features, train `Linear(dim, classes)` (Xavier init) with
//! cross-entropy, RAdam and the one-cycle schedule, pick the epoch by validation loss, and
//! report test accuracy, balanced accuracy and ROC-AUC.

use crate::error::{Result, TrainError};
use crate::method::Method;
use crate::metrics::{accuracy, balanced_accuracy, roc_auc};
use crate::onecycle::{LrDriver, OneCycleConfig};
use crate::radam::RAdamConfig;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use mmssl_data::{PairedDataset, item_rng, load_batch};
use mmssl_encoders::init::xavier_param;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Settings of [`linear_eval`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearEvalConfig {
    /// Epochs of classifier training (50 for images; the paper uses 500 for volumes).
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Seed of the classifier's initialisation and batch order.
    pub seed: u64,
    /// The optimiser.
    pub optimizer: RAdamConfig,
    /// Learning rate without a schedule.
    pub lr: f64,
    /// The one-cycle schedule (on by default).
    pub schedule: Option<OneCycleConfig>,
    /// Extract features with the encoder's BatchNorm in training mode (batch statistics), as
    /// the authors' code does, instead of evaluation mode (running statistics, the default).
    /// In training mode a sample's features depend on the other samples of its batch.
    pub batchnorm_train_mode: bool,
}

impl Default for LinearEvalConfig {
    fn default() -> Self {
        LinearEvalConfig {
            epochs: 50,
            batch_size: 64,
            seed: 0,
            optimizer: RAdamConfig::default(),
            lr: 4e-4,
            schedule: Some(OneCycleConfig::default()),
            batchnorm_train_mode: false,
        }
    }
}

/// Features of a dataset: `n x dim` values and the labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Row-major `n x dim`.
    pub values: Vec<f32>,
    /// Feature size.
    pub dim: usize,
    /// One label per row.
    pub labels: Vec<usize>,
}

impl Features {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn rows(&self, idx: &[usize], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        let mut v = Vec::with_capacity(idx.len() * self.dim);
        for &i in idx {
            v.extend_from_slice(&self.values[i * self.dim..(i + 1) * self.dim]);
        }
        let y: Vec<i64> = idx.iter().map(|&i| self.labels[i] as i64).collect();
        (
            Tensor::from_data(TensorData::new(v, [idx.len(), self.dim]), device),
            Tensor::from_data(TensorData::new(y, [idx.len()]), device),
        )
    }
}

/// The representations of `modality` for every item of `data` (with labels), computed with
/// the encoder frozen. Items without a label are an error.
///
/// With `batchnorm_train_mode` the encoder's BatchNorm layers normalise each batch of
/// `batch_size` items with its own statistics (the authors' code, which leaves the encoder in
/// training mode), and, like PyTorch in training mode, they update the model's running
/// statistics as they go; `device` must then be an autodiff device.
pub fn extract_features<M: Method>(
    model: &M,
    data: &dyn PairedDataset,
    modality: usize,
    batch_size: usize,
    batchnorm_train_mode: bool,
    device: &Device,
) -> Result<Features> {
    let plain = device.clone().without_autodiff();
    let eval = model.valid();
    // Training mode needs the autodiff device (burn's BatchNorm takes batch statistics only
    // there); with every parameter untracked no graph is recorded, so memory stays flat.
    let train_mode = batchnorm_train_mode.then(|| model.clone().no_grad());
    let mut values = Vec::new();
    let mut labels = Vec::with_capacity(data.len());
    let mut dim = 0;
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(batch_size.max(1)) {
        let z = if let Some(model) = &train_mode {
            let batch = load_batch(data, chunk, 0, device)?;
            model.represent(&batch, modality)?.detach()
        } else {
            let batch = load_batch(data, chunk, 0, &plain)?;
            eval.represent(&batch, modality)?
        };
        dim = z.dims()[1];
        values.extend(
            z.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| TrainError::Readback {
                    what: "features",
                    reason: format!("{e:?}"),
                })?,
        );
        for &i in chunk {
            labels.push(data.label(i).ok_or_else(|| TrainError::MissingLabel {
                item: i,
                needed_by: "linear evaluation",
            })?);
        }
    }
    Ok(Features {
        values,
        dim,
        labels,
    })
}

/// The outcome of [`linear_eval`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearEvalResult {
    /// Test accuracy of the classifier of the best epoch.
    pub accuracy: f64,
    /// Test balanced accuracy (mean per-class recall).
    pub balanced_accuracy: f64,
    /// Test ROC-AUC: binary, or the unweighted mean of the one-vs-rest AUCs of the classes
    /// that have both positives and negatives in the test set; `None` when no class has.
    pub roc_auc: Option<f64>,
    /// Test cross-entropy.
    pub test_loss: f64,
    /// The epoch chosen by validation loss.
    pub best_epoch: usize,
    /// Validation loss per epoch.
    pub valid_losses: Vec<f64>,
}

#[derive(Module, Debug)]
struct Classifier {
    linear: Linear,
}

/// Mean cross-entropy of `logits` `[B, K]` against class indices `targets` `[B]` (used by
/// linear evaluation and by the supervised baseline).
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let n = targets.dims()[0];
    log_softmax(logits, 1)
        .gather(1, targets.reshape([n, 1]))
        .mean()
        .neg()
}

/// Trains a linear classifier on `train` features, selects the epoch by loss on `valid`, and
/// evaluates on `test`. `classes` is the number of classes.
pub fn linear_eval(
    train: &Features,
    valid: &Features,
    test: &Features,
    classes: usize,
    config: &LinearEvalConfig,
    device: &Device,
) -> Result<LinearEvalResult> {
    if train.is_empty() || valid.is_empty() || test.is_empty() {
        return Err(TrainError::EmptyFeatures {
            train: train.len(),
            valid: valid.len(),
            test: test.len(),
        });
    }
    if classes < 2 {
        return Err(TrainError::InvalidSetting {
            name: "classes",
            value: classes.to_string(),
            reason: "linear evaluation needs at least 2 classes",
        });
    }
    let device = device.clone().autodiff();
    let dim = train.dim;
    let mut rng = item_rng(config.seed, 0, u64::MAX - 1);
    let mut linear = LinearConfig::new(dim, classes)
        .with_initializer(Initializer::Zeros)
        .init(&device);
    linear.weight = xavier_param([dim, classes], dim, classes, 1.0, &mut rng, &device);
    linear.bias = Some(Param::from_data(
        TensorData::new(vec![0f32; classes], [classes]),
        &device,
    ));
    let mut model = Classifier { linear };
    let steps_per_epoch = train.len().div_ceil(config.batch_size.max(1));
    let (mut optim, driver) = LrDriver::new(
        &config.optimizer,
        config.lr,
        config.schedule.as_ref(),
        steps_per_epoch * config.epochs.max(1),
    )?;
    let plain = device.clone().without_autodiff();
    let loss_on = |m: &Classifier, f: &Features| -> f64 {
        let idx: Vec<usize> = (0..f.len()).collect();
        let (x, y) = f.rows(&idx, &plain);
        cross_entropy(m.valid().linear.forward(x), y).into_scalar::<f32>() as f64
    };
    let mut best: Option<(f64, usize, Classifier)> = None;
    let mut valid_losses = Vec::with_capacity(config.epochs);
    let mut step = 0;
    for epoch in 0..config.epochs {
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut item_rng(config.seed, epoch as u64, u64::MAX));
        for chunk in order.chunks(config.batch_size.max(1)) {
            let lr = driver.lr_at(step);
            let (x, y) = train.rows(chunk, &device);
            let loss = cross_entropy(model.linear.forward(x), y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            step += 1;
        }
        let v = loss_on(&model, valid);
        valid_losses.push(v);
        if best.as_ref().is_none_or(|(b, _, _)| v < *b) {
            best = Some((v, epoch, model.clone()));
        }
    }
    let (_, best_epoch, chosen) = best.ok_or_else(|| TrainError::InvalidSetting {
        name: "epochs",
        value: config.epochs.to_string(),
        reason: "linear evaluation needs at least 1 epoch",
    })?;
    let idx: Vec<usize> = (0..test.len()).collect();
    let (x, y) = test.rows(&idx, &plain);
    let logits = chosen.valid().linear.forward(x);
    let test_loss = cross_entropy(logits.clone(), y).into_scalar::<f32>() as f64;
    let probs: Vec<f32> = softmax(logits, 1)
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| TrainError::Readback {
            what: "probabilities",
            reason: format!("{e:?}"),
        })?;
    let probs: Vec<Vec<f64>> = probs
        .chunks(classes)
        .map(|r| r.iter().map(|&p| p as f64).collect())
        .collect();
    let predicted: Vec<usize> = probs
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                })
                .0
        })
        .collect();
    Ok(LinearEvalResult {
        accuracy: accuracy(&predicted, &test.labels),
        balanced_accuracy: balanced_accuracy(&predicted, &test.labels, classes),
        roc_auc: roc_auc(&probs, &test.labels, classes),
        test_loss,
        best_epoch,
        valid_losses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
        LinearEvalConfig {
            epochs: 15,
            batch_size: 32,
            schedule: Some(OneCycleConfig {
                max_lr: 0.05,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn separable_features_are_classified_well() {
        let device = Device::flex();
        let (tr, va, te) = (
            blobs(600, 3, 4.0, 1),
            blobs(150, 3, 4.0, 2),
            blobs(300, 3, 4.0, 3),
        );
        let r = linear_eval(&tr, &va, &te, 3, &quick(), &device).unwrap();
        assert!(r.accuracy > 0.95, "{r:?}");
        assert!(r.roc_auc.unwrap() > 0.99);
        assert!(r.balanced_accuracy > 0.95);
        assert_eq!(r.valid_losses.len(), 15);
        assert!(
            r.valid_losses[r.best_epoch]
                <= r.valid_losses.iter().cloned().fold(f64::INFINITY, f64::min)
        );
    }

    #[test]
    fn uninformative_features_stay_near_chance() {
        let device = Device::flex();
        let (tr, va, te) = (
            blobs(600, 2, 0.0, 4),
            blobs(200, 2, 0.0, 5),
            blobs(400, 2, 0.0, 6),
        );
        let r = linear_eval(&tr, &va, &te, 2, &quick(), &device).unwrap();
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
        let no_epochs = LinearEvalConfig {
            epochs: 0,
            ..quick()
        };
        assert!(matches!(
            linear_eval(&f, &f, &f, 2, &no_epochs, &device),
            Err(TrainError::InvalidSetting { name: "epochs", .. })
        ));
    }
}
