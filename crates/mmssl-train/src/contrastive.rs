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
    ConvHead, ConvHeadConfig, EncoderOptions, LatentHead, LatentHeadConfig, Variant,
};
use mmssl_objectives::{ModalityEmbeddings, Objective, ObjectiveConfig, ObjectiveSpec};
use rand::Rng;
use rand::rngs::StdRng;

/// Encoders, heads and objective of a contrastive run.
#[derive(Module, Debug)]
pub struct ContrastiveModel {
    backbone: Backbone,
    conv_heads: Vec<ConvHead>,
    latent_heads: Vec<LatentHead>,
    objective: Objective,
}

impl ContrastiveModel {
    /// A model for modalities whose items have `shapes` (`[C, 32, 32]` or `[C, 64, 64, 64]`),
    /// with `latent_dim`-dimensional representations and `objective`.
    pub fn new<R: Rng + ?Sized>(
        shapes: &[Vec<usize>],
        latent_dim: usize,
        objective: &ObjectiveConfig,
        device: &Device,
        rng: &mut R,
    ) -> Result<Self> {
        let options = EncoderOptions::default();
        Self::with_options(shapes, latent_dim, &options, objective, device, rng)
    }

    /// [`ContrastiveModel::new`] with encoders of `options`' width and every part (encoders,
    /// heads) in its [`Variant`].
    pub fn with_options<R: Rng + ?Sized>(
        shapes: &[Vec<usize>],
        latent_dim: usize,
        options: &EncoderOptions,
        objective: &ObjectiveConfig,
        device: &Device,
        rng: &mut R,
    ) -> Result<Self> {
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

    /// The objective.
    pub fn objective(&self) -> &Objective {
        &self.objective
    }
}

impl Method for ContrastiveModel {
    fn loss(&self, batch: &Batch, rng: &mut StdRng) -> Result<StepOutput> {
        let mut views = Vec::with_capacity(self.backbone.modalities());
        for (i, out) in self.backbone.encode_all(batch)?.into_iter().enumerate() {
            views.push(ModalityEmbeddings {
                conv: self.conv_heads[i].forward(out.conv),
                latent: self.latent_heads[i].forward(out.z),
            });
        }
        let out = self.objective.forward(&views, rng)?;
        let terms = out
            .terms
            .iter()
            .map(|t| (t.term.to_string(), t.loss.clone()))
            .collect();
        Ok(StepOutput {
            loss: out.total,
            terms,
        })
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
        objective_options(ObjectiveConfig::new(self.0.clone()), o)?;
        o.count("latent_dim", 64)?;
        model_options(o)?;
        Ok(())
    }

    fn build(
        &self,
        o: &MethodOptions<'_>,
        s: &BuildSetup<'_>,
        rng: &mut StdRng,
    ) -> Result<ContrastiveModel> {
        let objective = objective_options(ObjectiveConfig::new(self.0.clone()), o)?;
        ContrastiveModel::with_options(
            s.shapes,
            o.count("latent_dim", 64)?,
            &model_options(o)?,
            &objective,
            s.device,
            rng,
        )
    }
}
