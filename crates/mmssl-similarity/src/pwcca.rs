//! Projection-weighted CCA (Morcos, Raghu and Bengio, "Insights on representational similarity
//! in neural networks with canonical correlation", NeurIPS 2018).
//!
//! PWCCA weighs each canonical correlation `rho_i` by how much of A's units the `i`-th
//! canonical variate of A accounts for: `alpha_i = sum_j |<h_i, a_j>|`, with `h_i` the data of
//! A projected on its `i`-th canonical direction (unit norm; the variates are orthonormal) and
//! `a_j` the `j`-th centred column (unit) of A; `alpha` is normalised to sum to 1 and
//! `PWCCA = sum_i alpha_i rho_i`.
//!
//! Two things peers get wrong, and this implementation does not: the weights come from the
//! canonical *variates* (data projected on the directions), not from the coefficient vectors
//! of the directions; and they are computed against the units of A, the first argument, so
//! PWCCA is not symmetric: `pwcca(a, b)` weighs by A. (Morcos et al.'s code adds the unit means
//! back before weighting; here, as for every metric of this crate, columns are centred.)

use crate::cca::{Cca, CcaResult};
use crate::error::Result;
use crate::linalg::LinalgBackend;
use crate::prepare::centred_pair;
use ndarray::{Array1, ArrayView2};
use serde::Serialize;

/// The outcome of [`Pwcca::fit`].
#[derive(Debug, Clone, Serialize)]
pub struct PwccaResult {
    /// The projection-weighted mean canonical correlation.
    pub value: f64,
    /// The weights `alpha_i`, summing to 1, in the order of the correlations.
    pub weights: Array1<f64>,
    /// The underlying CCA.
    pub cca: CcaResult,
}

/// Projection-weighted CCA of `a` against `b` (weights from `a`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Pwcca {
    backend: LinalgBackend,
}

impl Pwcca {
    /// PWCCA with the default backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses the linear-algebra backend.
    pub fn backend(mut self, backend: LinalgBackend) -> Self {
        self.backend = backend;
        self
    }

    /// PWCCA of `a` (`n x d_a`, the side that gives the weights) against `b` (`n x d_b`).
    pub fn fit(&self, a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<PwccaResult> {
        let (ac, bc) = centred_pair("PWCCA", 2, a, b)?;
        let cca = Cca::new().backend(self.backend);
        let (cca, basis_a, u) = cca.fit_centred("PWCCA", &ac, &bc)?;
        // Canonical variates of A: its orthonormal basis rotated by the left singular vectors
        // of Q_A^T Q_B. They are orthonormal already, so no further orthonormalisation.
        let h = basis_a.q.dot(&u);
        let alpha_raw = h.t().dot(&ac).mapv(f64::abs).sum_axis(ndarray::Axis(1));
        let total = alpha_raw.sum();
        let weights = alpha_raw / total;
        let value = weights.dot(&cca.correlations);
        Ok(PwccaResult {
            value,
            weights,
            cca,
        })
    }
}
