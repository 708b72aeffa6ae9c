//! Linear evaluation, the paper's protocol: freeze the pretrained encoder, take the raw latent
//! `z` of one modality at a time as features, train `Linear(dim, classes)` (Xavier init) with
//! cross-entropy, RAdam and the one-cycle schedule, pick the epoch by validation loss, and
//! report test accuracy, balanced accuracy and ROC-AUC.
//!
//! The classifier is a [`Method`] ([`LinearProbe`]) over the cached features, trained by the
//! same loop as pretraining ([`fit`]) with the same settings ([`TrainConfig`]).

use crate::error::{Result, TrainError};
use crate::fit::{Quiet, TrainConfig, fit};
use crate::method::{Method, StepOutput};
use crate::metrics::{accuracy, balanced_accuracy, roc_auc};
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use mmssl_data::{Batch, LoaderConfig, PairedDataset, PairedItem, ViewBatch, item_rng, load_batch};
use mmssl_encoders::init::xavier_param;
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

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
    pub training: TrainConfig,
    /// Extract features with the encoder's BatchNorm in training mode (batch statistics), as
    /// the authors' code does, instead of evaluation mode (running statistics, the default).
    /// In training mode a sample's features depend on the other samples of its batch.
    pub batchnorm_train_mode: bool,
}

impl Default for LinearEvalConfig {
    fn default() -> Self {
        LinearEvalConfig {
            training: TrainConfig {
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

/// [`Features`] as a dataset of one modality of `[dim]` vectors, for the training loop.
struct FeatureSet<'a> {
    features: &'a Features,
    classes: usize,
}

impl PairedDataset for FeatureSet<'_> {
    fn len(&self) -> usize {
        self.features.len()
    }

    fn modalities(&self) -> usize {
        1
    }

    fn shape(&self, _modality: usize) -> Vec<usize> {
        vec![self.features.dim]
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.features.labels.get(index).copied()
    }

    fn get(&self, index: usize, _epoch: u64) -> mmssl_data::Result<PairedItem> {
        let d = self.features.dim;
        let row = self
            .features
            .values
            .get(index * d..(index + 1) * d)
            .ok_or_else(|| mmssl_data::DataError::Mismatch {
                what: format!(
                    "feature row {index} of {} rows of {d} values",
                    self.features.len()
                ),
            })?;
        Ok(PairedItem {
            views: vec![row.to_vec()],
            label: self.label(index),
        })
    }
}

/// The classifier of linear evaluation as a [`Method`] over feature vectors (a batch of one
/// [`ViewBatch::Vectors`] modality with labels): `Linear(dim, classes)`, cross-entropy loss;
/// its representation of a batch is the logits.
#[derive(Module, Debug)]
pub struct LinearProbe {
    linear: Linear,
}

impl LinearProbe {
    /// `Linear(dim, classes)` with Xavier-uniform weights (gain 1) drawn from `rng` and a zero
    /// bias.
    pub fn new<R: Rng + ?Sized>(dim: usize, classes: usize, device: &Device, rng: &mut R) -> Self {
        let mut linear = LinearConfig::new(dim, classes)
            .with_initializer(Initializer::Zeros)
            .init(device);
        linear.weight = xavier_param([dim, classes], dim, classes, 1.0, rng, device);
        linear.bias = Some(Param::from_data(
            TensorData::new(vec![0f32; classes], [classes]),
            device,
        ));
        LinearProbe { linear }
    }

    /// Class logits `[B, classes]` of features `[B, dim]`.
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.linear.forward(features)
    }

    fn features(batch: &Batch) -> Result<Tensor<2>> {
        match batch.views.as_slice() {
            [ViewBatch::Vectors(x)] => Ok(x.clone()),
            [other] => Err(TrainError::ViewKind {
                encoder: "linear probe's vector",
                got: other.kind(),
            }),
            views => Err(TrainError::ModalityCount {
                model: 1,
                batch: views.len(),
            }),
        }
    }
}

impl Method for LinearProbe {
    fn loss(&self, batch: &Batch, _rng: &mut StdRng) -> Result<StepOutput> {
        let x = Self::features(batch)?;
        let targets = batch
            .label_tensor(&x.device())
            .ok_or_else(|| TrainError::MissingLabel {
                item: batch.labels.iter().position(Option::is_none).unwrap_or(0),
                needed_by: "linear evaluation",
            })?;
        Ok(StepOutput {
            loss: cross_entropy(self.logits(x), targets),
            terms: Vec::new(),
        })
    }

    fn represent(&self, batch: &Batch, _modality: usize) -> Result<Tensor<2>> {
        Ok(self.logits(Self::features(batch)?))
    }

    fn modalities(&self) -> usize {
        1
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
    let probe = LinearProbe::new(train.dim, classes, &device, &mut rng);
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
        &train_set,
        Some(&valid_set),
        &config.training,
        None,
        &device,
        &mut Quiet,
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
    use crate::onecycle::OneCycleConfig;
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
        fn step(&mut self, epoch: usize, _step: usize, _steps: usize, _loss: f64) {
            if self.0.len() <= epoch {
                self.0.resize(epoch + 1, 0);
            }
            self.0[epoch] += 1;
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
            let probe = LinearProbe::new(8, 2, &device, &mut item_rng(0, 0, 0));
            let mut seen = Steps(Vec::new());
            let out = fit(probe, &set, Some(&set), &config, None, &device, &mut seen).unwrap();
            assert_eq!(seen.0, vec![steps; 2], "partial batches {partial}");
            assert!(out.best.is_some() && out.best_epoch.is_some());
        }
    }

    #[test]
    fn the_weighted_validation_loss_is_the_loss_over_every_item() {
        let device = Device::flex();
        let valid = blobs(45, 3, 2.0, 9);
        let probe = LinearProbe::new(8, 3, &device, &mut item_rng(1, 0, 0));
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
        let probe = LinearProbe::new(4, 2, &device, &mut item_rng(2, 0, 0));
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
}
