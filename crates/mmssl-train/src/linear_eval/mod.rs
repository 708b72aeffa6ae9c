//! Linear evaluation, the paper's protocol: freeze the pretrained encoder, take the raw latent
//! `z` of one modality at a time as features, train `Linear(dim, classes)` (Xavier init) with
//! cross-entropy, RAdam and the one-cycle schedule, pick the epoch by validation loss, and
//! report test accuracy, balanced accuracy and ROC-AUC.
//!
//! The classifier is a [`Method`] ([`LinearProbe`]) over the cached features, trained by the
//! same loop as pretraining ([`fit`]) with the same settings ([`FitConfig`]).

use crate::error::{Result, TrainError};
use crate::fit::{FitConfig, FitData, FitRun, Quiet, fit};
use crate::method::Method;
use crate::metrics::{accuracy, balanced_accuracy, roc_auc};
use burn::module::Module;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use mmssl_data::{LoaderConfig, PairedDataset, item_rng, load_batch};
use serde::{Deserialize, Serialize};

mod probe;
#[cfg(test)]
mod tests;

use probe::FeatureSet;
pub use probe::{LinearProbe, LinearProbeConfig};

/// Settings of [`linear_eval`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearEvalConfig {
    /// The classifier's training, by the same loop and settings as pretraining: epochs (50 for
    /// images; the paper uses 500 for volumes), batch size, seed (of the classifier's
    /// initialisation and the batch order), optimiser, learning rate and schedule. The default
    /// keeps the incomplete last batch (`partial_batches`), so every item counts, and loads the
    /// cached features on the training thread (no loader workers). Serialised flat, beside
    /// `batchnorm_train_mode`.
    #[serde(flatten)]
    pub training: FitConfig,
    /// Extract features with the encoder's BatchNorm in training mode (batch statistics), as
    /// the authors' code does, instead of evaluation mode (running statistics, the default).
    /// In training mode a sample's features depend on the other samples of its batch.
    pub batchnorm_train_mode: bool,
}

impl Default for LinearEvalConfig {
    fn default() -> Self {
        LinearEvalConfig {
            training: FitConfig {
                partial_batches: true,
                loader: LoaderConfig {
                    workers: 0,
                    ..Default::default()
                },
                ..Default::default()
            },
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

    fn all_rows(&self, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        let y: Vec<i64> = self.labels.iter().map(|&l| l as i64).collect();
        (
            Tensor::from_data(
                TensorData::new(self.values.clone(), [self.len(), self.dim]),
                device,
            ),
            Tensor::from_data(TensorData::new(y, [self.len()]), device),
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
    // On a pool thread, as the training steps (`on_pool`); the models move there.
    crate::fit::on_pool(move || {
        let (mut values, mut labels, mut dim) = (Vec::new(), Vec::with_capacity(data.len()), 0);
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
    })
}

/// A model's frozen representations, as the online evaluation sees a model during training
/// ([`crate::Progress::evaluate_epoch`]).
pub trait Represent {
    /// The model's modalities.
    fn modalities(&self) -> usize;
    /// The representations of `modality` for every item of `data` (labelled), with the
    /// encoder in evaluation mode ([`extract_features`], batches of 256).
    fn features(&self, data: &dyn PairedDataset, modality: usize) -> Result<Features>;
}

/// A training model seen through [`Represent`].
pub(crate) struct Frozen<'a, M> {
    pub(crate) model: &'a M,
    pub(crate) device: &'a Device,
}

impl<M: Method> Represent for Frozen<'_, M> {
    fn modalities(&self) -> usize {
        self.model.modalities()
    }

    fn features(&self, data: &dyn PairedDataset, modality: usize) -> Result<Features> {
        extract_features(self.model, data, modality, 256, false, self.device)
    }
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
    /// The number (from 1) of the epoch chosen by validation loss: its loss is
    /// `valid_losses[best_epoch - 1]`.
    pub best_epoch: usize,
    /// Validation loss per epoch, the first epoch's first.
    pub valid_losses: Vec<f64>,
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
///
/// The classifier is a [`LinearProbe`] trained by [`fit`] with `config.training`; its initial
/// weights come from `config.training.seed`.
pub fn linear_eval(
    train: &Features,
    valid: &Features,
    test: &Features,
    classes: usize,
    config: &LinearEvalConfig,
    device: &Device,
) -> Result<LinearEvalResult> {
    Ok(linear_eval_probe([train, valid, test], classes, config, device)?.0)
}

/// [`linear_eval`] on the features `[train, valid, test]`, and the chosen classifier (the
/// epoch of the lowest validation loss, on the autodiff device) with it: the same seed,
/// settings and features give the same classifier, so the decision a run's linear evaluation
/// made can be rebuilt from its run folder (e.g. to explain it).
pub fn linear_eval_probe(
    [train, valid, test]: [&Features; 3],
    classes: usize,
    config: &LinearEvalConfig,
    device: &Device,
) -> Result<(LinearEvalResult, LinearProbe)> {
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
    if config.training.epochs == 0 {
        return Err(TrainError::InvalidSetting {
            name: "epochs",
            value: "0".into(),
            reason: "linear evaluation needs at least 1 epoch",
        });
    }
    for (set, f) in [("validation", valid), ("test", test)] {
        if f.dim != train.dim {
            return Err(TrainError::InvalidSetting {
                name: "features",
                value: format!("{set} features of {} values", f.dim),
                reason: "every set needs the training features' size",
            });
        }
    }
    if let Some(l) = [train, valid, test]
        .iter()
        .flat_map(|f| f.labels.iter())
        .find(|&&l| l >= classes)
    {
        return Err(TrainError::InvalidSetting {
            name: "classes",
            value: format!("{classes} (a label is {l})"),
            reason: "every label must be below the number of classes",
        });
    }
    let device = device.clone().autodiff();
    let mut rng = item_rng(config.training.seed, 0, u64::MAX - 1);
    let probe = LinearProbeConfig::new(train.dim, classes).init(&device, &mut rng);
    let (train_set, valid_set) = (
        FeatureSet {
            features: train,
            classes,
        },
        FeatureSet {
            features: valid,
            classes,
        },
    );
    let outcome = fit(
        probe,
        FitData::new(&train_set).with_valid(&valid_set),
        &config.training,
        FitRun::new(&device, &mut Quiet),
    )?;
    let valid_losses: Vec<f64> = outcome
        .history
        .iter()
        .map(|m| m.valid_loss.unwrap_or(f64::NAN))
        .collect();
    let (Some(best_epoch), Some(chosen)) = (outcome.best_epoch, outcome.best) else {
        return Err(TrainError::InvalidSetting {
            name: "epochs",
            value: config.training.epochs.to_string(),
            reason: "linear evaluation needs at least 1 epoch",
        });
    };
    let plain = device.clone().without_autodiff();
    let (x, y) = test.all_rows(&plain);
    let logits = chosen.valid().logits(x);
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
    let result = LinearEvalResult {
        accuracy: accuracy(&predicted, &test.labels),
        balanced_accuracy: balanced_accuracy(&predicted, &test.labels, classes),
        roc_auc: roc_auc(&probs, &test.labels, classes),
        test_loss,
        best_epoch,
        valid_losses,
    };
    Ok((result, chosen))
}
