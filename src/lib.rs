//! # mmssl
//!
//! Multimodal self-supervised representation learning on [burn](https://burn.dev): every
//! objective of the CR/XX/CC/RR taxonomy of Fedorov et al., "Self-Supervised Multimodal
//! Domino: in Search of Biomarkers for Alzheimer's Disease" (ICHI 2021, arXiv:2012.13623), the baselines
//! they compare against, and the evaluation (linear probes, CCA/SVCCA/PWCCA/CKA similarity),
//! on CPU, wgpu or CUDA with the same code.
//!
//! This facade re-exports the member crates:
//!
//! | module | crate | job |
//! | --- | --- | --- |
//! | [`data`] | `mmssl-data` | datasets, pairing, splits, volumes |
//! | [`kernels`] | `mmssl-kernels` | fused CPU kernels as layers, runtime settings |
//! | [`encoders`] | `mmssl-encoders` | DCGAN encoders/decoders (2D and 3D from one table), projection heads |
//! | [`objectives`] | `mmssl-objectives` | critics, estimators, edges, objective specs |
//! | [`baselines`] | `mmssl-baselines` | supervised, AE, deep CCA family, MMVAE, linear CCA |
//! | [`similarity`] | `mmssl-similarity` | CCA, SVCCA, PWCCA, linear CKA; k-NN, cross-modal retrieval, t-SNE maps, trustworthiness |
//! | [`train`] | `mmssl-train` | the training loop, linear evaluation, metrics |
//! | [`protocol`] | `mmssl-protocol` | run configurations, the method registry, runs, grids, results |
//!
//! Backends are cargo features of this crate: the `flex` CPU backend is always built; `wgpu`
//! and `cuda` are opt-in, and `lapack` switches the similarity metrics' linear algebra to
//! LAPACK (see `docs/backends.md`). Libraries take a [`burn::tensor::Device`]; only the
//! `mmssl` binary chooses one.
//!
//! # Example
//!
//! ```
//! use mmssl::similarity::Similarity;
//! use ndarray::Array2;
//!
//! let a = Array2::from_shape_fn((100, 8), |(i, j)| ((i * 13 + j * 7) % 17) as f64);
//! let report = Similarity::new().report(a.view(), a.view()).unwrap();
//! assert!((report.cka.unwrap() - 1.0).abs() < 1e-12);
//! ```
#![deny(missing_docs)]

pub use burn;
pub use mmssl_baselines as baselines;
pub use mmssl_data as data;
pub use mmssl_encoders as encoders;
pub use mmssl_kernels as kernels;
pub use mmssl_objectives as objectives;
pub use mmssl_protocol as protocol;
pub use mmssl_similarity as similarity;
pub use mmssl_train as train;
pub use ndarray;
pub use rand;

/// Everything a downstream method names, in one import: `use mmssl::prelude::*;`.
///
/// It brings `burn` itself into scope too, so `#[derive(Module)]` (whose expansion names
/// `burn::module::...`) works without `burn` in your `Cargo.toml`; likewise `rand` and
/// `ndarray`, which appear in mmssl's public signatures.
///
/// ```
/// use mmssl::prelude::*;
///
/// /// CR plus an L2 penalty on each modality's representation, as a method of its own.
/// fn l2_of_z(step: &ContrastiveStep) -> Tensor<1> {
///     let mut terms = step.encoded.iter().map(|e| e.z.clone().powi_scalar(2).mean());
///     let first = terms.next().expect("a modality");
///     terms.fold(first, |a, b| a + b)
/// }
///
/// let mut registry = Registry::builtin();
/// registry
///     .register("cr-l2", ContrastiveFactory("CR".parse().unwrap()).with_term("l2", 0.01, l2_of_z))
///     .unwrap();
/// assert!(registry.resolve(&"cr-l2;latent_dim=32".parse().unwrap()).is_ok());
///
/// /// A module of your own, derived through the facade.
/// #[derive(Module, Debug)]
/// struct Projection {
///     linear: burn::nn::Linear,
/// }
/// ```
pub mod prelude {
    pub use crate::burn;
    pub use crate::burn::module::Module;
    pub use crate::burn::tensor::{Device, Tensor};
    pub use crate::data::{Batch, PairedDataset, ViewBatch};
    pub use crate::encoders::EncoderOutput;
    pub use crate::ndarray::{self, Array1, Array2};
    pub use crate::protocol::{
        BuildSetup, DatasetKind, Grid, GridOptions, Method, MethodFactory, MethodOption,
        MethodOptions, MethodSpec, Observer, Phases, ProtocolError, Quiet, Registry, RunConfig,
        RunReport, Terminal, run_with,
    };
    pub use crate::rand::{self, Rng, SeedableRng, rngs::StdRng};
    /// The result of a method's `build`, `loss` and `represent` (`mmssl::train::Result`).
    pub use crate::train::Result as TrainResult;
    pub use crate::train::{
        AnyEncoder, Backbone, ContrastiveConfig, ContrastiveFactory, ContrastiveModel,
        ContrastiveStep, ExtendedFactory, ExtraTerm, StepOutput, TrainError,
    };
}
