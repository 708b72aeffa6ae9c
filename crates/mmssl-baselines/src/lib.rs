//! # mmssl-baselines
//!
//! The methods the contrastive taxonomy is compared against, each behind the same
//! [`mmssl_train::Method`] interface as the objectives, so the one training loop, the linear
//! evaluation and the similarity analysis serve them unchanged:
//!
//! | name (`--method`) | model | loss |
//! | --- | --- | --- |
//! | `supervised` | [`Supervised`]: encoder + `Linear(64, classes)` per modality | cross-entropy |
//! | `ae` | [`Hybrid`] ([`HybridConfig::ae`]): DCGAN encoder + decoder per modality | MSE summed over modalities |
//! | `dccae` | [`HybridConfig::dccae`] | AE + deep CCA between latent heads |
//! | `cr-cca` | [`HybridConfig::cr_cca`] | CR edge + deep CCA |
//! | `rr-ae` | [`HybridConfig::rr_ae`] | RR edge + AE |
//! | `mmvae` | [`Mmvae`] | mixture-of-experts IWAE / DReG bound |
//! | `lcca` | [`LinearCca`] | closed-form CCA on flattened inputs |
//!
//! Each trained baseline has a factory beside its model ([`SupervisedFactory`],
//! [`HybridFactory`], [`MmvaeFactory`]): the options of its method spec
//! (`dccae;cca_dim=10;cca_norm=frobenius`) and how to build it; `mmssl-protocol` registers them
//! by name.
//!
//! The deep CCA loss ([`DeepCca`]) is computed in float64 with an exact symmetric
//! eigendecomposition and an analytic gradient, finite for any batch size and for rank-deficient
//! representations (see its module documentation).
//!
//! # Example
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use mmssl_baselines::{DeepCca, DeepCcaConfig};
//!
//! let device = Device::flex();
//! // Two 3-feature views of 5 samples; the second is a copy of the first.
//! let v: Vec<f32> = vec![0.1, 1.0, -0.3, 0.7, 0.2, 0.5, -1.2, 0.4, 0.9, 0.3, -0.8, 0.1, 1.5, 0.6, -0.2];
//! let h = Tensor::<2>::from_data(TensorData::new(v, [5, 3]), &device);
//! let out = DeepCca::new(DeepCcaConfig::default()).forward(h.clone(), h).unwrap();
//! // Identical views: every canonical correlation is close to 1 (the ridge takes a little off).
//! assert!(out.correlation > 2.9 && out.correlation <= 3.0);
//! ```
#![deny(missing_docs)]

mod decoder;
pub mod deep_cca;
mod error;
mod hybrid;
mod kind;
pub mod lcca;
pub mod mmvae;
mod step;
mod supervised;

pub use decoder::{AnyDecoder, flatten_view, mse};
pub use deep_cca::{CorrelationNorm, DeepCca, DeepCcaConfig, DeepCcaF64, DeepCcaOutput};
pub use error::{BaselineError, Result};
pub use hybrid::{DEFAULT_CCA_DIM, Hybrid, HybridConfig, HybridFactory};
pub use kind::Baseline;
#[allow(deprecated)]
pub use kind::{BaselineKind, BaselineOptions};
pub use lcca::{LCCA_OPTIONS, LinearCca, LinearCcaConfig, MAX_FEATURES, dataset_matrix};
pub use mmvae::{Laplace, Mmvae, MmvaeConfig, MmvaeEstimate, MmvaeEstimator, MmvaeFactory};
pub use supervised::{Supervised, SupervisedConfig, SupervisedFactory};

#[cfg(test)]
mod deep_cca_tests;
#[cfg(test)]
mod tests;
