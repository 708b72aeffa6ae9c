//! SVCCA (Raghu et al., "SVCCA: Singular Vector Canonical Correlation Analysis for Deep
//! Learning Dynamics and Interpretability", NeurIPS 2017): reduce each representation to the
//! top singular directions that explain a given fraction of its variance, then CCA.

use crate::cca::{Cca, CcaResult};
use crate::error::{Result, SimilarityError};
use crate::linalg::LinalgBackend;
use crate::prepare::centred_pair;
use ndarray::{Array2, ArrayView2, s};
use serde::Serialize;

/// The outcome of [`Svcca::fit`].
#[derive(Debug, Clone, Serialize)]
pub struct SvccaResult {
    /// Mean canonical correlation of the reduced representations, over `min(kept_a, kept_b)`.
    pub mean: f64,
    /// Singular directions kept of A.
    pub kept_a: usize,
    /// Singular directions kept of B.
    pub kept_b: usize,
    /// The CCA of the reduced representations.
    pub cca: CcaResult,
}

/// SVCCA between two representation matrices.
///
/// For each centred matrix, the smallest number `k` of leading singular directions whose
/// squared singular values sum to at least `threshold` (default 0.99) of the total is kept,
/// and the data is replaced by its coordinates `U_k * S_k` on them. CCA then runs on the
/// reduced matrices; since `k <= rank <= n - 1`, it can run when `n <= d`, but it is only
/// meaningful while `kept_a + kept_b < n`: beyond that the two reduced column spaces (of
/// dimension at most `n - 1` after centring) must intersect, and canonical correlations of 1
/// come from the sample size alone. Such inputs are a
/// [`SimilarityError::SvccaUnderdetermined`].
#[derive(Debug, Clone, Copy)]
pub struct Svcca {
    backend: LinalgBackend,
    threshold: f64,
}

impl Default for Svcca {
    fn default() -> Self {
        Self {
            backend: LinalgBackend::default(),
            threshold: 0.99,
        }
    }
}

impl Svcca {
    /// SVCCA keeping 99% of the variance, default backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// The fraction of variance to keep, in `(0, 1]`.
    pub fn threshold(mut self, threshold: f64) -> Result<Self> {
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(SimilarityError::InvalidParameter {
                name: "svcca_threshold",
                value: threshold,
                reason: "the fraction of variance kept must lie in (0, 1]",
            });
        }
        self.threshold = threshold;
        Ok(self)
    }

    /// The fraction of variance kept.
    pub fn threshold_value(&self) -> f64 {
        self.threshold
    }

    /// Chooses the linear-algebra backend.
    pub fn backend(mut self, backend: LinalgBackend) -> Self {
        self.backend = backend;
        self
    }

    /// SVCCA between `a` (`n x d_a`) and `b` (`n x d_b`).
    pub fn fit(&self, a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<SvccaResult> {
        let (ac, bc) = centred_pair("SVCCA", 2, a, b)?;
        let ra = self.reduce(&ac)?;
        let rb = self.reduce(&bc)?;
        let (kept_a, kept_b) = (ra.ncols(), rb.ncols());
        let n = ac.nrows();
        if kept_a + kept_b >= n {
            return Err(SimilarityError::SvccaUnderdetermined { n, kept_a, kept_b });
        }
        let cca = Cca::new().backend(self.backend);
        let (cca, _, _) = cca.fit_centred("SVCCA", &ra, &rb)?;
        Ok(SvccaResult {
            mean: cca.mean,
            kept_a,
            kept_b,
            cca,
        })
    }

    /// Coordinates of the centred matrix on its leading singular directions.
    fn reduce(&self, c: &Array2<f64>) -> Result<Array2<f64>> {
        let svd = self.backend.svd(c.view())?;
        let (n, d) = c.dim();
        let tol = n.max(d) as f64 * f64::EPSILON * svd.s[0];
        let rank = svd.s.iter().filter(|&&x| x > tol).count();
        let total: f64 = svd.s.iter().map(|x| x * x).sum();
        let mut acc = 0.0;
        let mut k = svd.s.len();
        for (i, x) in svd.s.iter().enumerate() {
            acc += x * x;
            if acc >= self.threshold * total {
                k = i + 1;
                break;
            }
        }
        let k = k.min(rank).max(1);
        Ok(&svd.u.slice(s![.., ..k]) * &svd.s.slice(s![..k]))
    }
}
