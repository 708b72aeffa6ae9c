//! Baselines by name (`--method`), and one module type for all trainable ones.

use crate::error::{BaselineError, Result};
use crate::hybrid::{Hybrid, HybridConfig};
use crate::mmvae::{Mmvae, MmvaeConfig};
use crate::supervised::Supervised;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mmssl_data::Batch;
use mmssl_train::{Method, StepOutput};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A baseline method, by the name the CLI takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BaselineKind {
    /// `supervised`: encoder + linear classifier, cross-entropy.
    Supervised,
    /// `ae`: autoencoder per modality.
    Ae,
    /// `dccae`: AE + deep CCA.
    Dccae,
    /// `cr-cca`: CR + deep CCA.
    CrCca,
    /// `rr-ae`: RR + AE.
    RrAe,
    /// `mmvae`: the mixture-of-experts multimodal VAE.
    Mmvae,
    /// `lcca`: linear CCA on flattened inputs (fitted in closed form, not trained).
    Lcca,
}

impl BaselineKind {
    /// Every baseline.
    pub const ALL: [BaselineKind; 7] = [
        BaselineKind::Supervised,
        BaselineKind::Ae,
        BaselineKind::Dccae,
        BaselineKind::CrCca,
        BaselineKind::RrAe,
        BaselineKind::Mmvae,
        BaselineKind::Lcca,
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            BaselineKind::Supervised => "supervised",
            BaselineKind::Ae => "ae",
            BaselineKind::Dccae => "dccae",
            BaselineKind::CrCca => "cr-cca",
            BaselineKind::RrAe => "rr-ae",
            BaselineKind::Mmvae => "mmvae",
            BaselineKind::Lcca => "lcca",
        }
    }

    /// Whether the method is trained by the training loop (all but linear CCA).
    pub fn is_trained(self) -> bool {
        self != BaselineKind::Lcca
    }

    /// Whether the method needs labels during training (supervised only).
    pub fn needs_labels(self) -> bool {
        self == BaselineKind::Supervised
    }

    /// Builds the trainable model with the paper's defaults for modalities of `shapes`,
    /// `latent_dim`-dimensional representations and `classes` classes; `mmvae_k` is MMVAE's
    /// number of importance samples (ignored by the others).
    pub fn build<R: Rng + ?Sized>(
        self,
        shapes: &[Vec<usize>],
        latent_dim: usize,
        classes: usize,
        mmvae_k: usize,
        device: &Device,
        rng: &mut R,
    ) -> Result<Baseline> {
        Ok(match self {
            BaselineKind::Supervised => {
                Baseline::Supervised(Supervised::new(shapes, latent_dim, classes, device, rng)?)
            }
            BaselineKind::Ae => {
                Baseline::Hybrid(HybridConfig::ae(latent_dim).init(shapes, device, rng)?)
            }
            BaselineKind::Dccae => {
                Baseline::Hybrid(HybridConfig::dccae(latent_dim).init(shapes, device, rng)?)
            }
            BaselineKind::CrCca => {
                Baseline::Hybrid(HybridConfig::cr_cca(latent_dim).init(shapes, device, rng)?)
            }
            BaselineKind::RrAe => {
                Baseline::Hybrid(HybridConfig::rr_ae(latent_dim).init(shapes, device, rng)?)
            }
            BaselineKind::Mmvae => Baseline::Mmvae(
                MmvaeConfig {
                    latent_dim,
                    k: mmvae_k,
                    ..MmvaeConfig::default()
                }
                .init(shapes, device, rng)?,
            ),
            BaselineKind::Lcca => {
                return Err(BaselineError::Config(
                    "linear CCA is fitted in closed form (LinearCcaConfig::fit), not trained"
                        .into(),
                ));
            }
        })
    }
}

impl fmt::Display for BaselineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BaselineKind {
    type Err = BaselineError;

    /// Parses a CLI name (case-insensitive; `_` and `-` are interchangeable).
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        BaselineKind::ALL
            .into_iter()
            .find(|k| k.name() == norm || (norm == "l-cca" && *k == BaselineKind::Lcca))
            .ok_or_else(|| {
                let names: Vec<&str> = BaselineKind::ALL.iter().map(|k| k.name()).collect();
                BaselineError::Config(format!(
                    "unknown method {s:?}; the baselines are {}",
                    names.join(", ")
                ))
            })
    }
}

/// Any trainable baseline, as one module type (for the CLI and checkpoints).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Baseline {
    /// [`Supervised`].
    Supervised(Supervised),
    /// [`Hybrid`] (AE, DCCAE, CR-CCA, RR-AE).
    Hybrid(Hybrid),
    /// [`Mmvae`].
    Mmvae(Mmvae),
}

impl Method for Baseline {
    fn loss(&self, batch: &Batch, rng: &mut StdRng) -> mmssl_train::Result<StepOutput> {
        match self {
            Baseline::Supervised(m) => m.loss(batch, rng),
            Baseline::Hybrid(m) => m.loss(batch, rng),
            Baseline::Mmvae(m) => m.loss(batch, rng),
        }
    }

    fn represent(&self, batch: &Batch, modality: usize) -> mmssl_train::Result<Tensor<2>> {
        match self {
            Baseline::Supervised(m) => m.represent(batch, modality),
            Baseline::Hybrid(m) => m.represent(batch, modality),
            Baseline::Mmvae(m) => m.represent(batch, modality),
        }
    }

    fn modalities(&self) -> usize {
        match self {
            Baseline::Supervised(m) => m.modalities(),
            Baseline::Hybrid(m) => m.modalities(),
            Baseline::Mmvae(m) => m.modalities(),
        }
    }
}
