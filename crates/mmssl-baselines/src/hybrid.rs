//! The reconstruction and CCA baselines: AE, DCCAE, CR-CCA and RR-AE, as one model with
//! optional parts.

use crate::Baseline;
use crate::decoder::{AnyDecoder, mse};
use crate::deep_cca::{DeepCca, DeepCcaConfig};
use crate::error::{BaselineError, Result};
use crate::step::LossTerms;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mmssl_data::Batch;
use mmssl_encoders::{ConvHead, ConvHeadConfig, LatentHead, LatentHeadConfig};
use mmssl_objectives::{Edge, ModalityEmbeddings, Objective, ObjectiveConfig, ObjectiveSpec};
use mmssl_train::Result as TrainResult;
use mmssl_train::{AnyEncoder, Backbone, BuildSetup, Method, MethodOptions, StepOutput};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// Which parts a [`Hybrid`] model has and how its loss terms are weighted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HybridConfig {
    /// Weight of the reconstruction error (`None`: no decoders).
    pub reconstruction: Option<f64>,
    /// The deep CCA loss between the latent heads of modalities 0 and 1, with its weight
    /// (`None`: no CCA term).
    pub cca: Option<(DeepCcaConfig, f64)>,
    /// A contrastive objective over conv and latent heads (`None`: none).
    pub objective: Option<ObjectiveConfig>,
    /// Size of the encoders' `z`.
    pub latent_dim: usize,
    /// Size of the contrastive heads' outputs (conv and latent heads of the objective).
    pub embedding_dim: usize,
    /// Size of the outputs of the latent heads that feed the deep CCA loss (their own heads,
    /// separate from the contrastive ones). Default [`DEFAULT_CCA_DIM`].
    ///
    /// With a batch of `m` samples the sample cross-covariance has rank at most `m - 1`: when
    /// `cca_dim >= m - 1` every canonical correlation can be made (close to) 1 by the heads
    /// alone, whatever the encoders learn, and the CCA term carries no signal (see
    /// docs/baselines.md). Keep it well below the batch size.
    #[serde(default = "default_cca_dim")]
    pub cca_dim: usize,
}

/// The default size of the deep CCA heads' outputs: 10, as Wang et al. (ICML 2015, "On deep
/// multi-view representation learning") use for DCCA and DCCAE on noisy two-view MNIST, well
/// below the batch size of 64.
pub const DEFAULT_CCA_DIM: usize = 10;

fn default_cca_dim() -> usize {
    DEFAULT_CCA_DIM
}

impl HybridConfig {
    fn base(latent_dim: usize) -> Self {
        HybridConfig {
            reconstruction: None,
            cca: None,
            objective: None,
            latent_dim,
            embedding_dim: 64,
            cca_dim: DEFAULT_CCA_DIM,
        }
    }

    /// AE: per-modality encoder and decoder; the mean squared reconstruction error summed over
    /// modalities.
    pub fn ae(latent_dim: usize) -> Self {
        HybridConfig {
            reconstruction: Some(1.0),
            ..Self::base(latent_dim)
        }
    }

    /// DCCAE (Wang et al., ICML 2015): AE plus the deep CCA loss between the two modalities'
    /// latent heads.
    pub fn dccae(latent_dim: usize) -> Self {
        HybridConfig {
            reconstruction: Some(1.0),
            cca: Some((DeepCcaConfig::default(), 1.0)),
            ..Self::base(latent_dim)
        }
    }

    /// CR-CCA: the unimodal CR edge of each modality plus the deep CCA loss between them.
    pub fn cr_cca(latent_dim: usize) -> Self {
        HybridConfig {
            cca: Some((DeepCcaConfig::default(), 1.0)),
            objective: Some(ObjectiveConfig::new(edge_spec(Edge::CR))),
            ..Self::base(latent_dim)
        }
    }

    /// RR-AE: the cross-modal RR edge plus the AE reconstruction.
    pub fn rr_ae(latent_dim: usize) -> Self {
        HybridConfig {
            reconstruction: Some(1.0),
            objective: Some(ObjectiveConfig::new(edge_spec(Edge::RR))),
            ..Self::base(latent_dim)
        }
    }

    /// Builds the model for modalities whose items have `shapes`.
    pub fn init<R>(&self, shapes: &[Vec<usize>], device: &Device, rng: &mut R) -> Result<Hybrid>
    where
        R: Rng + ?Sized,
    {
        BaselineError::check_some_modalities(shapes, "a model")?;
        if self.reconstruction.is_none() && self.cca.is_none() && self.objective.is_none() {
            return Err(BaselineError::InvalidSetting {
                name: "terms",
                value: "none".into(),
                reason: "a hybrid model needs a reconstruction, CCA or contrastive term".into(),
            });
        }
        for (name, w) in [
            ("reconstruction", self.reconstruction),
            ("cca", self.cca.map(|c| c.1)),
        ] {
            if let Some(w) = w
                && !(w.is_finite() && w >= 0.0)
            {
                return Err(BaselineError::InvalidSetting {
                    name,
                    value: w.to_string(),
                    reason: "a weight must be a non-negative number".into(),
                });
            }
        }
        if self.cca.is_some() && self.cca_dim == 0 {
            return Err(BaselineError::InvalidSetting {
                name: "cca_dim",
                value: "0".into(),
                reason: "the deep CCA heads need at least one output".into(),
            });
        }
        if self.cca.is_some() && shapes.len() != 2 {
            return Err(BaselineError::Modalities {
                method: "the deep CCA loss",
                needed: "2",
                got: shapes.len(),
            });
        }
        let mut encoders = Vec::new();
        let mut decoders = Vec::new();
        let mut conv_heads = Vec::new();
        let mut latent_heads = Vec::new();
        let mut cca_heads = Vec::new();
        let needs_heads = self.objective.is_some();
        for shape in shapes {
            let enc = AnyEncoder::for_shape(shape, self.latent_dim, device, rng)?;
            if self.reconstruction.is_some() {
                decoders.push(AnyDecoder::for_shape(shape, self.latent_dim, device, rng)?);
            }
            if needs_heads {
                conv_heads.push(
                    ConvHeadConfig::new(enc.tapped_channels())
                        .with_out_channels(self.embedding_dim)
                        .init(device, rng)?,
                );
                latent_heads.push(
                    LatentHeadConfig::new()
                        .with_in_features(self.latent_dim)
                        .with_out_features(self.embedding_dim)
                        .init(device, rng)?,
                );
            }
            if self.cca.is_some() {
                cca_heads.push(
                    LatentHeadConfig::new()
                        .with_in_features(self.latent_dim)
                        .with_out_features(self.cca_dim)
                        .init(device, rng)?,
                );
            }
            encoders.push(enc);
        }
        let objective = match &self.objective {
            Some(cfg) => {
                let mut cfg = cfg.clone();
                cfg.embedding_dim = self.embedding_dim;
                let o = cfg.init(device, rng)?;
                o.terms(shapes.len())?;
                Some(o)
            }
            None => None,
        };
        Ok(Hybrid {
            backbone: Backbone::new(encoders)?,
            decoders,
            conv_heads,
            latent_heads,
            cca_heads,
            objective,
            settings: self.clone(),
        })
    }
}

fn edge_spec(edge: Edge) -> ObjectiveSpec {
    ObjectiveSpec::new(&[(edge, 1.0)]).expect("a single edge of weight 1 is a valid spec")
}

/// Encoders with optional decoders (reconstruction), heads and a contrastive objective, and an
/// optional deep CCA term: AE, DCCAE, CR-CCA and RR-AE are configurations of it
/// ([`HybridConfig::ae`], ...). The representation is the encoder's `z`.
#[derive(Module, Debug)]
pub struct Hybrid {
    backbone: Backbone,
    decoders: Vec<AnyDecoder>,
    conv_heads: Vec<ConvHead>,
    latent_heads: Vec<LatentHead>,
    cca_heads: Vec<LatentHead>,
    objective: Option<Objective>,
    #[module(skip)]
    settings: HybridConfig,
}

impl Hybrid {
    /// The settings the model was built with.
    pub fn config(&self) -> &HybridConfig {
        &self.settings
    }

    /// Reconstructions of every modality of `batch` from its own `z`.
    pub fn reconstruct(&self, batch: &Batch) -> mmssl_train::Result<Vec<mmssl_data::ViewBatch>> {
        let outs = self.backbone.encode_all(batch)?;
        if self.decoders.is_empty() {
            return Err(BaselineError::InvalidSetting {
                name: "reconstruction",
                value: "none".into(),
                reason: "this model has no decoders to reconstruct with".into(),
            }
            .into());
        }
        Ok(outs
            .into_iter()
            .zip(&self.decoders)
            .map(|(out, decoder)| decoder.forward(out.z))
            .collect())
    }
}

impl Method for Hybrid {
    fn loss(&self, batch: &Batch, rng: &mut StdRng) -> mmssl_train::Result<StepOutput> {
        let outs = self.backbone.encode_all(batch)?;
        let mut terms = LossTerms::default();
        if let Some(w) = self.settings.reconstruction {
            for (m, v) in batch.views.iter().enumerate() {
                let rec = self.decoders[m].forward(outs[m].z.clone());
                terms.add_weighted(format!("recon[{m}]"), mse(&rec, v)?, w);
            }
        }
        let mut latents = Vec::new();
        if !self.latent_heads.is_empty() {
            for (m, out) in outs.iter().enumerate() {
                latents.push(self.latent_heads[m].forward(out.z.clone()));
            }
        }
        if let Some(objective) = &self.objective {
            let views: Vec<ModalityEmbeddings> = outs
                .iter()
                .enumerate()
                .map(|(m, out)| ModalityEmbeddings {
                    conv: self.conv_heads[m].forward(out.conv.clone()),
                    latent: latents[m].clone(),
                })
                .collect();
            let o = objective.forward(&views, rng)?;
            for t in &o.terms {
                terms.log(t.term.to_string(), t.loss.clone());
            }
            terms.add_to_total(o.total);
        }
        if let Some((cfg, w)) = self.settings.cca {
            let h0 = self.cca_heads[0].forward(outs[0].z.clone());
            let h1 = self.cca_heads[1].forward(outs[1].z.clone());
            let out = DeepCca::new(cfg).forward(h0, h1)?;
            terms.add_weighted("CCA[0,1]", out.loss, w);
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

/// Builds one of the hybrid baselines (`ae`, `dccae`, `cr-cca`, `rr-ae`) from its options:
/// `latent_dim`, and those of its terms (the reconstruction weight, the deep CCA settings, the
/// objective's settings).
#[derive(Debug, Clone, Copy)]
pub struct HybridFactory {
    preset: fn(usize) -> HybridConfig,
}

const CCA_OPTIONS: &[mmssl_train::MethodOption] = &[
    mmssl_train::MethodOption::new(
        "cca_dim",
        "output size of the heads feeding the deep CCA loss (default 10; keep it below the \
         batch size minus one)",
    ),
    mmssl_train::MethodOption::new(
        "cca_norm",
        "trace (default: the sum of canonical correlations) or frobenius (the authors' code)",
    ),
    mmssl_train::MethodOption::new(
        "cca_top_k",
        "only the top k canonical correlations count (default all)",
    ),
    mmssl_train::MethodOption::new(
        "cca_reg",
        "ridge added to the auto-covariances (default 0.001)",
    ),
    mmssl_train::MethodOption::new("cca_weight", "weight of the deep CCA term (default 1)"),
];

impl HybridFactory {
    /// AE.
    pub const AE: HybridFactory = HybridFactory {
        preset: HybridConfig::ae,
    };
    /// DCCAE.
    pub const DCCAE: HybridFactory = HybridFactory {
        preset: HybridConfig::dccae,
    };
    /// CR-CCA.
    pub const CR_CCA: HybridFactory = HybridFactory {
        preset: HybridConfig::cr_cca,
    };
    /// RR-AE.
    pub const RR_AE: HybridFactory = HybridFactory {
        preset: HybridConfig::rr_ae,
    };

    /// The configuration the options `o` describe (the preset's where absent).
    pub fn config(&self, o: &mmssl_train::MethodOptions<'_>) -> mmssl_train::Result<HybridConfig> {
        let mut c = (self.preset)(o.count("latent_dim", 64)?);
        if let Some(w) = c.reconstruction.as_mut() {
            *w = o.non_negative("reconstruction", *w)?;
        }
        if let Some((cca, w)) = c.cca.as_mut() {
            *cca = DeepCcaConfig {
                reg: o.positive("cca_reg", cca.reg)?,
                norm: o.get_or("cca_norm", cca.norm)?,
                top_k: match o.get::<usize>("cca_top_k")? {
                    Some(0) => return Err(o.bad("cca_top_k", "must be at least 1")),
                    k => k.or(cca.top_k),
                },
            };
            *w = o.non_negative("cca_weight", *w)?;
            c.cca_dim = o.count("cca_dim", c.cca_dim)?;
        }
        if let Some(objective) = c.objective.take() {
            c.objective = Some(mmssl_train::objective_options(objective, o)?);
            c.embedding_dim = o.count("embedding_dim", c.embedding_dim)?;
        }
        Ok(c)
    }
}

impl mmssl_train::MethodFactory for HybridFactory {
    type Model = crate::Baseline;

    fn options(&self) -> Vec<mmssl_train::MethodOption> {
        let preset = (self.preset)(64);
        let mut v = vec![mmssl_train::LATENT_DIM];
        if preset.reconstruction.is_some() {
            v.push(mmssl_train::MethodOption::new(
                "reconstruction",
                "weight of the reconstruction error (default 1)",
            ));
        }
        if preset.cca.is_some() {
            v.extend_from_slice(CCA_OPTIONS);
        }
        if preset.objective.is_some() {
            v.extend_from_slice(mmssl_train::OBJECTIVE_OPTIONS);
        }
        v
    }

    fn check(&self, o: &MethodOptions) -> TrainResult<()> {
        self.config(o).map(|_| ())
    }

    fn build(&self, o: &MethodOptions, s: &BuildSetup, rng: &mut StdRng) -> TrainResult<Baseline> {
        Ok(Baseline::Hybrid(
            self.config(o)?.init(s.shapes, s.device, rng)?,
        ))
    }

    fn warnings(
        &self,
        o: &mmssl_train::MethodOptions<'_>,
        training: &mmssl_train::FitConfig,
    ) -> Vec<String> {
        let batch = training.batch_size;
        match self.config(o) {
            Ok(c) if c.cca.is_some() && c.cca_dim + 1 >= batch => vec![format!(
                "cca_dim {} with batch size {batch}: a batch's cross-covariance has rank at most \
                 {}, so every canonical correlation can be 1 whatever the encoders learn and \
                 the deep CCA term carries no signal; use a CCA dimension below the batch size \
                 minus one",
                c.cca_dim,
                batch.saturating_sub(1)
            )],
            _ => Vec::new(),
        }
    }
}
