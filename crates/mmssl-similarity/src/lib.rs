//! # mmssl-similarity
//!
//! How similar are two representations of the same samples? This crate answers with the
//! indices used to compare modalities in Fedorov et al., "Self-Supervised Multimodal Domino: in
//! Search of Biomarkers for Alzheimer's Disease" (ICHI 2021, arXiv:2012.13623):
//!
//! | index | function / type | reference |
//! | --- | --- | --- |
//! | mean canonical correlation | [`Cca`] | Hotelling 1936; eq. 1 of Fedorov et al. |
//! | SVCCA | [`Svcca`] | Raghu et al., NeurIPS 2017 |
//! | PWCCA | [`Pwcca`] | Morcos et al., NeurIPS 2018 |
//! | linear CKA | [`linear_cka`] | Kornblith et al., ICML 2019; eq. 2 of Fedorov et al. |
//! | debiased linear CKA | [`linear_cka_debiased`] | Kornblith et al. 2019, Song et al. 2012 |
//!
//! and judges one representation, or two in one space, by its neighbourhoods:
//!
//! | evaluation | function / type | reference |
//! | --- | --- | --- |
//! | exact nearest neighbours (cosine, Euclidean) | [`nearest_neighbours`] | |
//! | k-NN classification (majority, distance- or temperature-weighted votes) | [`Knn`] | Wu et al., CVPR 2018 (weighted k-NN) |
//! | cross-modal retrieval: recall@k, median/mean rank, MRR, chance levels | [`Retrieval`] | |
//! | the shared canonical subspace of two modalities | [`CanonicalProjection`] | Hotelling 1936 |
//! | 2-D maps (Barnes-Hut t-SNE) | [`Tsne`] | van der Maaten, JMLR 2014 |
//! | trustworthiness of a map | [`trustworthiness`] | Venna & Kaski, ICANN 2001 |
//! | accuracy, balanced accuracy, ROC-AUC | [`metrics`] | |
//!
//! Inputs are two `f64` matrices `A` (`n x d_a`) and `B` (`n x d_b`) whose rows are the same
//! `n` samples; columns are centred internally. Bad input (different `n`, NaN, constant
//! matrices, CCA with `n <= d`) is a [`SimilarityError`], never a panic or a NaN.
//!
//! The linear algebra (thin QR, SVD, symmetric eigendecomposition) sits behind
//! [`linalg::LinalgBackend`]: pure-Rust faer by default, LAPACK with the `lapack` feature.
//!
//! # Example
//!
//! ```
//! use mmssl_similarity::{Similarity, linear_cka};
//! use ndarray::Array2;
//!
//! // Two views of 200 samples: B is a rotated, rescaled copy of A's first 3 features + noise.
//! let a = Array2::from_shape_fn((200, 4), |(i, j)| ((i * 31 + j * 17) % 23) as f64 / 23.0);
//! let b = Array2::from_shape_fn((200, 3), |(i, j)| 2.0 * a[[i, (j + 1) % 3]] + 0.01 * (i % 3) as f64);
//! let report = Similarity::new().report(a.view(), b.view()).unwrap();
//! assert!(report.cka.unwrap() > 0.5);
//! assert!(report.cca.unwrap() > 0.9);
//! assert!((linear_cka(a.view(), a.view()).unwrap() - 1.0).abs() < 1e-12);
//! ```
#![deny(missing_docs)]

mod cca;
mod cka;
mod embedding;
mod error;
mod knn;
pub mod linalg;
pub mod metrics;
mod neighbours;
mod npy;
mod prepare;
mod pwcca;
mod report;
mod retrieval;
mod svcca;

pub use cca::{Cca, CcaResult};
pub use cka::{linear_cka, linear_cka_debiased};
pub use embedding::{Tsne, TsneMap, trustworthiness};
pub use error::{Result, SimilarityError};
pub use knn::{Knn, KnnResult, Voting};
pub use neighbours::{Metric, Neighbours, nearest_neighbours};
pub use npy::read_matrix;
pub use pwcca::{Pwcca, PwccaResult};
pub use report::{Similarity, SimilarityReport};
pub use retrieval::{CanonicalProjection, RecallAt, Retrieval, RetrievalResult};
pub use svcca::{Svcca, SvccaResult};

/// Mean canonical correlation between `a` and `b` with the default backend
/// (shorthand for `Cca::new().fit(a, b)?.mean`).
pub fn cca(a: ndarray::ArrayView2<f64>, b: ndarray::ArrayView2<f64>) -> Result<f64> {
    Ok(Cca::new().fit(a, b)?.mean)
}

/// SVCCA keeping 99% of the variance (shorthand for `Svcca::new().fit(a, b)?.mean`).
pub fn svcca(a: ndarray::ArrayView2<f64>, b: ndarray::ArrayView2<f64>) -> Result<f64> {
    Ok(Svcca::new().fit(a, b)?.mean)
}

/// PWCCA of `a` against `b`, weights from `a` (shorthand for `Pwcca::new().fit(a, b)?.value`).
pub fn pwcca(a: ndarray::ArrayView2<f64>, b: ndarray::ArrayView2<f64>) -> Result<f64> {
    Ok(Pwcca::new().fit(a, b)?.value)
}

#[cfg(test)]
mod npy_tests;
#[cfg(test)]
mod tests;
