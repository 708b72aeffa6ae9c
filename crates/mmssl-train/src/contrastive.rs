//! A contrastive method: one encoder and two heads per modality, and an objective of the
//! CR/XX/CC/RR taxonomy over them.

use crate::encoder::{AnyEncoder, Backbone};
use crate::error::{Result, TrainError};
use crate::factory::{
    BuildSetup, LATENT_DIM, MethodFactory, MethodOption, MethodOptions, OBJECTIVE_OPTIONS,
    objective_options,
};
use crate::method::{Method, StepOutput};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mmssl_data::Batch;
use mmssl_encoders::{
    ConvHead, ConvHeadConfig, EncoderOptions, EncoderOutput, LatentHead, LatentHeadConfig, Variant,
};
use mmssl_objectives::{ModalityEmbeddings, Objective, ObjectiveConfig, ObjectiveSpec};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// Encoders, heads and objective of a contrastive run.
#[derive(Module, Debug)]
pub struct ContrastiveModel {
    backbone: Backbone,
    conv_heads: Vec<ConvHead>,
    latent_heads: Vec<LatentHead>,
    objective: Objective,
}

/// The settings of a [`ContrastiveModel`]: the objective, the size of `z` and the encoders'
/// width and variant; [`init`](ContrastiveConfig::init) builds the model for the data's item
/// shapes.
///
/// ```
/// use mmssl_train::ContrastiveConfig;
/// use mmssl_objectives::ObjectiveConfig;
/// use rand::SeedableRng;
///
/// let device = burn::tensor::Device::flex().autodiff();
/// let objective = ObjectiveConfig::new("CR-XX".parse().unwrap());
/// let mut rng = rand::rngs::StdRng::seed_from_u64(0);
/// let model = ContrastiveConfig::new(objective)
///     .with_latent_dim(32)
///     .init(&[vec![1, 32, 32], vec![1, 32, 32]], &device, &mut rng)
///     .unwrap();
/// # let _ = model;
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContrastiveConfig {
    /// The objective and its estimator settings (the heads' embedding size is its
    /// `embedding_dim`).
    pub objective: ObjectiveConfig,
    /// The size of each modality's representation `z` (64).
    #[serde(default = "default_latent_dim")]
    pub latent_dim: usize,
    /// The encoders' width and the variant of every part (mmssl's by default).
    #[serde(default)]
    pub encoder: EncoderOptions,
}

fn default_latent_dim() -> usize {
    64
}

impl ContrastiveConfig {
    /// The model of `objective`, `z` of 64, mmssl's encoders.
    pub fn new(objective: ObjectiveConfig) -> Self {
        ContrastiveConfig {
            objective,
            latent_dim: default_latent_dim(),
            encoder: EncoderOptions::default(),
        }
    }

    /// The same with `z` of `latent_dim`.
    pub fn with_latent_dim(self, latent_dim: usize) -> Self {
        ContrastiveConfig { latent_dim, ..self }
    }

    /// The same with encoders (and heads) of `encoder`'s width and variant.
    pub fn with_encoder(self, encoder: EncoderOptions) -> Self {
        ContrastiveConfig { encoder, ..self }
    }

    /// The model for modalities whose items have `shapes` (`[C, 32, 32]` or
    /// `[C, 64, 64, 64]`), its weights drawn from `rng`.
    pub fn init<R: Rng + ?Sized>(
        &self,
        shapes: &[Vec<usize>],
        device: &Device,
        rng: &mut R,
    ) -> Result<ContrastiveModel> {
        let (latent_dim, options, objective) = (self.latent_dim, &self.encoder, &self.objective);
        if shapes.is_empty() {
            return Err(TrainError::NoModalities);
        }
        let mut encoders = Vec::new();
        let mut conv_heads = Vec::new();
        let mut latent_heads = Vec::new();
        for shape in shapes {
            let enc = AnyEncoder::for_shape_with(shape, latent_dim, options, device, rng)?;
            conv_heads.push(
                ConvHeadConfig::new(enc.tapped_channels())
                    .with_out_channels(objective.embedding_dim)
                    .with_variant(options.variant)
                    .init(device, rng)?,
            );
            latent_heads.push(
                LatentHeadConfig::new()
                    .with_in_features(latent_dim)
                    .with_out_features(objective.embedding_dim)
                    .with_variant(options.variant)
                    .init(device, rng)?,
            );
            encoders.push(enc);
        }
        let objective = objective.init(device, rng)?;
        // Fail now, not at the first step, if the spec needs more modalities.
        objective.terms(shapes.len())?;
        Ok(ContrastiveModel {
            backbone: Backbone::new(encoders)?,
            conv_heads,
            latent_heads,
            objective,
        })
    }
}

impl ContrastiveModel {
    /// A model for modalities whose items have `shapes` (`[C, 32, 32]` or `[C, 64, 64, 64]`),
    /// with `latent_dim`-dimensional representations and `objective`.
    #[deprecated(
        since = "0.1.0",
        note = "use ContrastiveConfig::new(objective).with_latent_dim(d).init(shapes, device, rng)"
    )]
    pub fn new<R: Rng + ?Sized>(
        shapes: &[Vec<usize>],
        latent_dim: usize,
        objective: &ObjectiveConfig,
        device: &Device,
        rng: &mut R,
    ) -> Result<Self> {
        ContrastiveConfig::new(objective.clone())
            .with_latent_dim(latent_dim)
            .init(shapes, device, rng)
    }

    /// The objective.
    pub fn objective(&self) -> &Objective {
        &self.objective
    }
}

/// Everything the built-in contrastive model computes on a batch: what a method that extends
/// it (see [`ExtraTerm`]) receives.
#[derive(Debug, Clone)]
pub struct ContrastiveStep {
    /// Each modality's encoder output: the tapped map `conv` and the representation `z`.
    pub encoded: Vec<EncoderOutput>,
    /// Each modality's head embeddings (conv head on the map, latent head on `z`).
    pub embeddings: Vec<ModalityEmbeddings>,
    /// The objective's loss and its named terms.
    pub output: StepOutput,
}

impl ContrastiveModel {
    /// The whole step on `batch`: encodings, embeddings and the objective's output.
    pub fn step(&self, batch: &Batch, rng: &mut StdRng) -> Result<ContrastiveStep> {
        let encoded = self.backbone.encode_all(batch)?;
        let embeddings: Vec<ModalityEmbeddings> = encoded
            .iter()
            .enumerate()
            .map(|(i, out)| ModalityEmbeddings {
                conv: self.conv_heads[i].forward(out.conv.clone()),
                latent: self.latent_heads[i].forward(out.z.clone()),
            })
            .collect();
        let out = self.objective.forward(&embeddings, rng)?;
        let terms = out
            .terms
            .iter()
            .map(|t| (t.term.to_string(), t.loss.clone()))
            .collect();
        Ok(ContrastiveStep {
            encoded,
            embeddings,
            output: StepOutput {
                loss: out.total,
                terms,
            },
        })
    }
}

impl Method for ContrastiveModel {
    fn loss(&self, batch: &Batch, rng: &mut StdRng) -> Result<StepOutput> {
        Ok(self.step(batch, rng)?.output)
    }

    fn represent(&self, batch: &Batch, modality: usize) -> Result<Tensor<2>> {
        self.backbone.represent(batch, modality)
    }

    fn modalities(&self) -> usize {
        self.backbone.modalities()
    }
}

/// The encoders' width and the model's definition, as options of a contrastive method
/// (`CR-XX-CC;variant=authors;width=32`).
pub const MODEL_OPTIONS: &[MethodOption] = &[
    MethodOption::new(
        "variant",
        "mmssl (default) or authors: the model definition where mmssl's and the authors' \
         PyTorch code differ (conv head shortcut bias, running variance, initialisation; \
         docs/interop.md)",
    ),
    MethodOption::new(
        "width",
        "channels of the encoders' first convolution, the later ones scaling with it \
         (default 32, the paper's)",
    ),
];

/// The [`MODEL_OPTIONS`] of `o`, checked.
pub fn model_options(o: &MethodOptions<'_>) -> Result<EncoderOptions> {
    let variant = match o.raw("variant") {
        Some(v) => v.parse::<Variant>().map_err(|e| o.bad("variant", e))?,
        None => Variant::Mmssl,
    };
    Ok(EncoderOptions {
        width: o.count("width", mmssl_encoders::BASE_WIDTH)?,
        variant,
    })
}

/// Builds a [`ContrastiveModel`] for an objective spec, with the options of
/// [`OBJECTIVE_OPTIONS`], [`LATENT_DIM`] and [`MODEL_OPTIONS`]
/// (`XX;estimator=jsd;critic=cosine(0.1);variant=authors`).
#[derive(Debug, Clone)]
pub struct ContrastiveFactory(pub ObjectiveSpec);

impl MethodFactory for ContrastiveFactory {
    type Model = ContrastiveModel;

    fn options(&self) -> Vec<MethodOption> {
        let mut v = OBJECTIVE_OPTIONS.to_vec();
        v.push(LATENT_DIM);
        v.extend_from_slice(MODEL_OPTIONS);
        v
    }

    fn check(&self, o: &MethodOptions<'_>) -> Result<()> {
        self.config(o).map(|_| ())
    }

    fn build(
        &self,
        o: &MethodOptions,
        s: &BuildSetup,
        rng: &mut StdRng,
    ) -> Result<ContrastiveModel> {
        self.config(o)?.init(s.shapes, s.device, rng)
    }
}

/// A term a downstream method adds to a built-in contrastive objective: `weight *
/// compute(step)` on every batch, logged as `name`. A plain function of the
/// [`ContrastiveStep`], so the model stays a plain module:
///
/// ```
/// use burn::tensor::Tensor;
/// use mmssl_train::{ContrastiveFactory, ContrastiveStep};
///
/// /// An L2 penalty on each modality's representation.
/// fn l2_of_z(step: &ContrastiveStep) -> Tensor<1> {
///     let mut terms = step.encoded.iter().map(|e| e.z.clone().powi_scalar(2).mean());
///     let first = terms.next().expect("a modality");
///     terms.fold(first, |a, b| a + b)
/// }
///
/// let cr_l2 = ContrastiveFactory("CR".parse().unwrap()).with_term("l2", 0.01, l2_of_z);
/// ```
///
/// Register the factory under a name (`Registry::register("cr-l2", cr_l2)` in
/// `mmssl-protocol`) and it runs like a built-in method: it takes the objective's options
/// (`cr-l2;latent_dim=32`).
#[derive(Debug, Clone, Copy)]
pub struct ExtraTerm {
    /// The name in the logs.
    pub name: &'static str,
    /// Its weight in the loss.
    pub weight: f64,
    /// The term from the built-in step: a `[1]` tensor.
    pub compute: fn(&ContrastiveStep) -> Tensor<1>,
}

/// A built-in contrastive model plus [`ExtraTerm`]s.
#[derive(Module, Debug)]
pub struct ExtendedModel {
    base: ContrastiveModel,
    #[module(skip)]
    terms: Vec<ExtraTerm>,
}

impl ExtendedModel {
    /// The built-in model it extends.
    pub fn base(&self) -> &ContrastiveModel {
        &self.base
    }
}

impl Method for ExtendedModel {
    fn loss(&self, batch: &Batch, rng: &mut StdRng) -> Result<StepOutput> {
        let step = self.base.step(batch, rng)?;
        let mut output = step.output.clone();
        for term in &self.terms {
            output = output.with_term(term.name, (term.compute)(&step).mul_scalar(term.weight));
        }
        Ok(output)
    }

    fn represent(&self, batch: &Batch, modality: usize) -> Result<Tensor<2>> {
        self.base.represent(batch, modality)
    }

    fn modalities(&self) -> usize {
        self.base.modalities()
    }
}

/// Builds an [`ExtendedModel`]: the objective's [`ContrastiveFactory`] and its terms.
#[derive(Debug, Clone)]
pub struct ExtendedFactory {
    base: ContrastiveFactory,
    terms: Vec<ExtraTerm>,
}

impl ContrastiveFactory {
    /// The model's configuration from the options: the objective's (estimator, critic, ...),
    /// `latent_dim` (64) and the encoders' (`width`, `variant`). What `check` validates and
    /// `build` initialises.
    pub fn config(&self, o: &MethodOptions<'_>) -> Result<ContrastiveConfig> {
        let objective = objective_options(ObjectiveConfig::new(self.0.clone()), o)?;
        Ok(ContrastiveConfig::new(objective)
            .with_latent_dim(o.count("latent_dim", 64)?)
            .with_encoder(model_options(o)?))
    }

    /// This objective with the term `weight * compute(step)` added, logged as `name`.
    pub fn with_term(
        self,
        name: &'static str,
        weight: f64,
        compute: fn(&ContrastiveStep) -> Tensor<1>,
    ) -> ExtendedFactory {
        ExtendedFactory {
            base: self,
            terms: Vec::new(),
        }
        .with_term(name, weight, compute)
    }
}

impl ExtendedFactory {
    /// One more term.
    pub fn with_term(
        mut self,
        name: &'static str,
        weight: f64,
        compute: fn(&ContrastiveStep) -> Tensor<1>,
    ) -> ExtendedFactory {
        self.terms.push(ExtraTerm {
            name,
            weight,
            compute,
        });
        self
    }
}

impl MethodFactory for ExtendedFactory {
    type Model = ExtendedModel;

    fn options(&self) -> Vec<MethodOption> {
        self.base.options()
    }

    fn check(&self, o: &MethodOptions<'_>) -> Result<()> {
        self.base.check(o)
    }

    fn build(&self, o: &MethodOptions, s: &BuildSetup, rng: &mut StdRng) -> Result<ExtendedModel> {
        Ok(ExtendedModel {
            base: self.base.build(o, s, rng)?,
            terms: self.terms.clone(),
        })
    }
}
