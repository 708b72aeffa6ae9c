//! # mmssl-objectives
//!
//! The contrastive objectives of the CR/XX/CC/RR taxonomy (Fedorov et al., "Self-Supervised
//! Multimodal Domino: in Search of Biomarkers for Alzheimer's Disease", ICHI 2021,
//! arXiv:2012.13623) on any burn device.
//!
//! - [`ObjectiveSpec`]: parsed from `CR-XX-CC`, `RR`, `CR:1,XX:0.5`; all 15 combinations.
//! - [`Edge`] and [`edge_terms`]: which embeddings each edge pairs, over ordered modality pairs.
//! - [`Scores`]: every anchor against every target with one matrix product, clipping and the
//!   score penalty; positives by a gather, negatives by a `[B L_a, B]` sample mask.
//! - [`Estimator`]: InfoNCE (AMDIM style), Jensen-Shannon, Donsker-Varadhan, NWJ.
//! - [`CriticKind`]: scaled dot product, cosine with temperature, bilinear.
//! - [`Objective`]: a configured objective over `n` modalities, returning the total loss and
//!   named terms; [`Contrast`] (a builder with the paper's defaults) and [`contrast`] are the
//!   single-term building blocks for custom objectives ([`contrast_shared_targets`] for
//!   several anchor sets against one target). The authors' `estimator(x, y)` scores the rows
//!   of `y`: it is `Contrast::new().forward(y, x)` here.
//!
//! # Example
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use mmssl_objectives::{ModalityEmbeddings, ObjectiveConfig};
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! let device = Device::flex();
//! let mut rng = StdRng::seed_from_u64(0);
//! let objective = ObjectiveConfig::new("CR-XX-CC".parse().unwrap())
//!     .init(&device, &mut rng)
//!     .unwrap();
//! let view = || ModalityEmbeddings {
//!     conv: Tensor::<3>::random([8, 64, 64], Distribution::Normal(0.0, 1.0), &device),
//!     latent: Tensor::<2>::random([8, 64], Distribution::Normal(0.0, 1.0), &device),
//! };
//! let out = objective.forward(&[view(), view()], &mut rng).unwrap();
//! assert_eq!(out.terms.len(), 6); // CR[0], CR[1], XX[0->1], XX[1->0], CC[0->1], CC[1->0]
//! assert_eq!(out.terms[2].term.to_string(), "XX[0->1]");
//! ```
#![deny(missing_docs)]

/// Builder methods for the fields of a settings type: each
/// `/// doc` `with_name => field: Type;` becomes
/// `pub fn with_name(mut self, value: Type) -> Self`, setting `field`. Used inside an `impl`.
#[macro_export]
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident => $field:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$field = value;
                self
            }
        )*
    };
}

mod contrast;
mod critic;
mod edge;
mod error;
mod estimator;
mod objective;
mod scores;
mod spec;

pub use contrast::{Contrast, Negatives};
pub use critic::{
    BilinearCritic, BilinearCriticConfig, Critic, CriticKind, DEFAULT_COSINE_TEMPERATURE,
};
pub use edge::{EdgeTerm, EmbeddingKind, edge_terms};
pub use error::{ObjectiveError, Result};
pub use estimator::Estimator;
pub use objective::{
    DEFAULT_CLIP, DEFAULT_EMBEDDING_DIM, DEFAULT_PENALTY, ModalityEmbeddings, Objective,
    ObjectiveConfig, ObjectiveOutput, TermOutput, contrast, contrast_shared_targets,
    contrast_unfused,
};
pub use scores::{Scores, softplus};
pub use spec::{Edge, MAX_WEIGHT, ObjectiveSpec};

#[cfg(test)]
mod fused_tests;
#[cfg(test)]
mod tests;
