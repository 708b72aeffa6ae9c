//! The supervised baseline: the encoder trained with labels (the discriminative reference).

use crate::Baseline;
use crate::error::{BaselineError, Result};
use crate::step::LossTerms;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};
use mmssl_data::Batch;
use mmssl_encoders::init::xavier_param;
use mmssl_train::Result as TrainResult;
use mmssl_train::{AnyEncoder, Backbone, BuildSetup, Method, MethodOptions, StepOutput};
use rand::Rng;
use rand::rngs::StdRng;

/// One encoder and one linear classifier per modality, trained with cross-entropy on the
/// labels.
///
/// The paper's supervised reference trains one model per modality. Here each modality has its
/// own encoder and classifier and the losses are summed: no parameter is shared, so the
/// gradient of each model is exactly that of training it alone (and RAdam's update is
/// per-parameter), while one run serves every modality. The representation is the encoder's
/// `z`, as for every other method.
#[derive(Module, Debug)]
pub struct Supervised {
    backbone: Backbone,
    classifiers: Vec<Linear>,
}

/// The settings of a [`Supervised`] model: the classes and the size of `z`;
/// [`init`](SupervisedConfig::init) builds it for the data's item shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SupervisedConfig {
    /// The number of classes (at least 2).
    pub classes: usize,
    /// The size of each modality's representation `z` (64).
    pub latent_dim: usize,
}

impl SupervisedConfig {
    /// A model for `classes` classes with `z` of 64.
    pub fn new(classes: usize) -> Self {
        SupervisedConfig {
            classes,
            latent_dim: 64,
        }
    }

    /// The same with `z` of `latent_dim`.
    pub fn with_latent_dim(self, latent_dim: usize) -> Self {
        SupervisedConfig { latent_dim, ..self }
    }

    /// The model for modalities of `shapes`. Classifiers are `Linear(latent_dim, classes)`
    /// with Xavier-uniform weights and every bias `1 / classes`.
    pub fn init<R>(&self, shapes: &[Vec<usize>], device: &Device, rng: &mut R) -> Result<Supervised>
    where
        R: Rng + ?Sized,
    {
        let SupervisedConfig {
            classes,
            latent_dim,
        } = *self;
        BaselineError::check_some_modalities(shapes, "a model")?;
        if classes < 2 {
            return Err(BaselineError::InvalidSetting {
                name: "classes",
                value: classes.to_string(),
                reason: "the supervised baseline needs at least 2".into(),
            });
        }
        let mut encoders = Vec::new();
        let mut classifiers = Vec::new();
        for shape in shapes {
            encoders.push(AnyEncoder::for_shape(shape, latent_dim, device, rng)?);
            classifiers.push(classifier(latent_dim, classes, device, rng));
        }
        Ok(Supervised {
            backbone: Backbone::new(encoders)?,
            classifiers,
        })
    }
}

impl Supervised {
    /// A supervised model for modalities of `shapes`, `latent_dim`-dimensional `z` and
    /// `classes` classes.
    #[deprecated(
        since = "0.1.0",
        note = "use SupervisedConfig::new(classes).with_latent_dim(d).init(shapes, device, rng)"
    )]
    pub fn new<R: Rng + ?Sized>(
        shapes: &[Vec<usize>],
        latent_dim: usize,
        classes: usize,
        device: &Device,
        rng: &mut R,
    ) -> Result<Self> {
        SupervisedConfig::new(classes)
            .with_latent_dim(latent_dim)
            .init(shapes, device, rng)
    }

    /// Class logits `[B, classes]` of `modality`.
    pub fn logits(&self, batch: &Batch, modality: usize) -> mmssl_train::Result<Tensor<2>> {
        let z = self.represent(batch, modality)?;
        Ok(self.classifiers[modality].forward(z))
    }
}

/// `Linear(d, classes)`: Xavier-uniform weights (gain 1), bias `1 / classes`.
pub(crate) fn classifier<R: Rng + ?Sized>(
    d: usize,
    classes: usize,
    device: &Device,
    rng: &mut R,
) -> Linear {
    let mut linear = LinearConfig::new(d, classes).init(device);
    // burn stores the weight as [in, out].
    linear.weight = xavier_param([d, classes], d, classes, 1.0, rng, device);
    linear.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![1.0f32 / classes as f32; classes], [classes]),
        device,
    )));
    linear
}

/// Mean cross-entropy of `logits` `[B, K]` against the batch's labels, which must all be
/// present and below `K`.
pub(crate) fn cross_entropy(logits: Tensor<2>, batch: &Batch) -> mmssl_train::Result<Tensor<1>> {
    let device = logits.device();
    let k = logits.dims()[1];
    let targets =
        batch
            .label_tensor(&device)
            .ok_or_else(|| mmssl_train::TrainError::MissingLabel {
                item: batch.labels.iter().position(Option::is_none).unwrap_or(0),
                needed_by: "the supervised baseline",
            })?;
    if let Some(bad) = batch.labels.iter().flatten().find(|&&l| l >= k) {
        return Err(BaselineError::LabelOutOfRange {
            label: *bad,
            classes: k,
        }
        .into());
    }
    Ok(mmssl_train::cross_entropy(logits, targets))
}

impl Method for Supervised {
    fn loss(&self, batch: &Batch, _rng: &mut StdRng) -> mmssl_train::Result<StepOutput> {
        self.backbone.check(batch)?;
        let mut terms = LossTerms::default();
        for m in 0..self.backbone.modalities() {
            terms.add(
                format!("CE[{m}]"),
                cross_entropy(self.logits(batch, m)?, batch)?,
            );
        }
        Ok(terms.into_output())
    }

    fn represent(&self, batch: &Batch, modality: usize) -> mmssl_train::Result<Tensor<2>> {
        self.backbone.represent(batch, modality)
    }

    fn modalities(&self) -> usize {
        self.backbone.modalities()
    }
}

#[cfg(test)]
impl Supervised {
    /// The bias of modality `m`'s classifier (tests).
    pub(crate) fn classifier_bias(&self, m: usize) -> Vec<f32> {
        self.classifiers[m]
            .bias
            .as_ref()
            .map(|b| b.val().into_data().try_to_vec::<f32>().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Builds the `supervised` baseline (option `latent_dim`); it trains on labelled items.
#[derive(Debug, Clone, Copy, Default)]
pub struct SupervisedFactory;

impl mmssl_train::MethodFactory for SupervisedFactory {
    type Model = crate::Baseline;

    fn options(&self) -> Vec<mmssl_train::MethodOption> {
        vec![mmssl_train::LATENT_DIM]
    }

    fn check(&self, o: &MethodOptions) -> TrainResult<()> {
        o.count("latent_dim", 64).map(|_| ())
    }

    fn build(&self, o: &MethodOptions, s: &BuildSetup, rng: &mut StdRng) -> TrainResult<Baseline> {
        let latent = o.count("latent_dim", 64)?;
        Ok(Baseline::Supervised(
            SupervisedConfig::new(s.classes)
                .with_latent_dim(latent)
                .init(s.shapes, s.device, rng)?,
        ))
    }

    fn needs_labels(&self) -> bool {
        true
    }
}
