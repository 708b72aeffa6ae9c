//! The classifier of linear evaluation as a method, and cached features as its dataset.

use super::*;
use crate::error::{Result, TrainError};
use crate::method::{Method, StepOutput};
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use mmssl_data::{Batch, PairedDataset, PairedItem, ViewBatch};
use mmssl_encoders::init::xavier_param;
use rand::Rng;
use rand::rngs::StdRng;

/// [`Features`] as a dataset of one modality of `[dim]` vectors, for the training loop.
pub(super) struct FeatureSet<'a> {
    pub(super) features: &'a Features,
    pub(super) classes: usize,
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

/// The settings of a [`LinearProbe`]: `Linear(dim, classes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinearProbeConfig {
    /// The feature size.
    pub dim: usize,
    /// The number of classes.
    pub classes: usize,
}

impl LinearProbeConfig {
    /// A probe from `dim` features to `classes` logits.
    pub fn new(dim: usize, classes: usize) -> Self {
        LinearProbeConfig { dim, classes }
    }

    /// `Linear(dim, classes)` with Xavier-uniform weights (gain 1) drawn from `rng` and a zero
    /// bias.
    pub fn init<R: Rng + ?Sized>(&self, device: &Device, rng: &mut R) -> LinearProbe {
        let LinearProbeConfig { dim, classes } = *self;
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
}

impl LinearProbe {
    /// `Linear(dim, classes)` with Xavier-uniform weights (gain 1) drawn from `rng` and a zero
    /// bias.
    #[deprecated(
        since = "0.1.0",
        note = "use LinearProbeConfig::new(dim, classes).init(device, rng)"
    )]
    pub fn new<R: Rng + ?Sized>(dim: usize, classes: usize, device: &Device, rng: &mut R) -> Self {
        LinearProbeConfig::new(dim, classes).init(device, rng)
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
