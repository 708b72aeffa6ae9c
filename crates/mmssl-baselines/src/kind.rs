//! Baselines by name (`--method`), and one module type for all trainable ones.
//!
//! [`BaselineKind`] and [`BaselineOptions`] were a second table of the methods, beside the
//! protocol's registry; they are deprecated and go in the next release.
#![allow(deprecated)]

use crate::deep_cca::DeepCcaConfig;
use crate::error::{BaselineError, Result};
use crate::hybrid::{DEFAULT_CCA_DIM, Hybrid, HybridConfig};
use crate::mmvae::{Mmvae, MmvaeConfig, MmvaeEstimator};
use crate::supervised::{Supervised, SupervisedConfig};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mmssl_data::Batch;
use mmssl_train::{Method, StepOutput};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The settings of the baselines that a run chooses (the `mmssl` flags `--mmvae-k`,
/// `--mmvae-estimator`, `--mmvae-learn-prior`, `--cca-dim`, `--cca-norm`, `--cca-top-k`,
/// `--cca-reg`). The default is the paper's setting for each.
#[deprecated(
    since = "0.1.0",
    note = "the method registry (mmssl_protocol::Registry::builtin) is the one table of methods; build a baseline with its factory (HybridFactory::DCCAE, MmvaeFactory, SupervisedFactory) and its options"
)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineOptions {
    /// MMVAE's importance samples `K` per modality and item.
    pub mmvae_k: usize,
    /// MMVAE's estimator.
    pub mmvae_estimator: MmvaeEstimator,
    /// Whether MMVAE learns its prior's scale.
    pub mmvae_learn_prior: bool,
    /// The deep CCA loss of DCCAE and CR-CCA.
    pub cca: DeepCcaConfig,
    /// The output size of the heads that feed the deep CCA loss
    /// ([`HybridConfig::cca_dim`]).
    pub cca_dim: usize,
}

impl Default for BaselineOptions {
    fn default() -> Self {
        BaselineOptions {
            mmvae_k: MmvaeConfig::default().k,
            mmvae_estimator: MmvaeEstimator::default(),
            mmvae_learn_prior: false,
            cca: DeepCcaConfig::default(),
            cca_dim: DEFAULT_CCA_DIM,
        }
    }
}

/// A baseline method, by the name the CLI takes.
#[deprecated(
    since = "0.1.0",
    note = "the method registry (mmssl_protocol::Registry::builtin) is the one table of methods; build a baseline with its factory (HybridFactory::DCCAE, MmvaeFactory, SupervisedFactory)"
)]
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

    /// Builds the trainable model for modalities of `shapes`, `latent_dim`-dimensional
    /// representations and `classes` classes, with the settings in `options` (each used only
    /// by the baselines it concerns; [`BaselineOptions::default`] holds the paper's).
    pub fn build<R: Rng + ?Sized>(
        self,
        shapes: &[Vec<usize>],
        latent_dim: usize,
        classes: usize,
        options: &BaselineOptions,
        device: &Device,
        rng: &mut R,
    ) -> Result<Baseline> {
        let cca = |cfg: HybridConfig| HybridConfig {
            cca: cfg.cca.map(|(_, w)| (options.cca, w)),
            cca_dim: options.cca_dim,
            ..cfg
        };
        Ok(match self {
            BaselineKind::Supervised => Baseline::Supervised(
                SupervisedConfig::new(classes)
                    .with_latent_dim(latent_dim)
                    .init(shapes, device, rng)?,
            ),
            BaselineKind::Ae => {
                Baseline::Hybrid(HybridConfig::ae(latent_dim).init(shapes, device, rng)?)
            }
            BaselineKind::Dccae => {
                Baseline::Hybrid(cca(HybridConfig::dccae(latent_dim)).init(shapes, device, rng)?)
            }
            BaselineKind::CrCca => {
                Baseline::Hybrid(cca(HybridConfig::cr_cca(latent_dim)).init(shapes, device, rng)?)
            }
            BaselineKind::RrAe => {
                Baseline::Hybrid(HybridConfig::rr_ae(latent_dim).init(shapes, device, rng)?)
            }
            BaselineKind::Mmvae => Baseline::Mmvae(
                MmvaeConfig {
                    latent_dim,
                    k: options.mmvae_k,
                    estimator: options.mmvae_estimator,
                    learn_prior: options.mmvae_learn_prior,
                    ..MmvaeConfig::default()
                }
                .init(shapes, device, rng)?,
            ),
            BaselineKind::Lcca => {
                return Err(BaselineError::NotTrainable {
                    method: "linear CCA",
                    how: "LinearCcaConfig::fit",
                });
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
                BaselineError::UnknownName {
                    what: "method",
                    value: s.to_string(),
                    valid: names.join(", "),
                }
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
