//! Canonical correlation analysis: the canonical correlations of two representations and their
//! mean, as in eq. 1 of Fedorov et al. (ISBI 2021): `(1 / min(d_a, d_b)) * ||Q_A^T Q_B||_*`
//! with `Q` from the thin QR decomposition of each centred matrix.

use crate::error::{Result, SimilarityError};
use crate::linalg::LinalgBackend;
use crate::prepare::centred_pair;
use ndarray::{Array1, Array2, ArrayView2, s};
use serde::Serialize;

/// The outcome of [`Cca::fit`].
#[derive(Debug, Clone, Serialize)]
pub struct CcaResult {
    /// Mean canonical correlation: the sum of [`Self::correlations`] over `min(d_a, d_b)`.
    pub mean: f64,
    /// Canonical correlations in non-increasing order, `min(rank_a, rank_b)` of them.
    pub correlations: Array1<f64>,
    /// Numerical rank of the centred A.
    pub rank_a: usize,
    /// Numerical rank of the centred B.
    pub rank_b: usize,
    /// Things the caller should know (rank deficiency), in words.
    pub warnings: Vec<String>,
}

/// Canonical correlation analysis between two representation matrices.
///
/// Rows are samples, columns are features; columns are centred here. CCA needs more samples
/// than features in each matrix (`n > d`): otherwise every correlation is trivially 1 and an
/// error ([`SimilarityError::Underdetermined`]) says so.
///
/// A rank-deficient matrix (dead or duplicated units) is handled rather than rejected: its
/// orthonormal basis is restricted to its numerical column space (singular values above
/// `max(n, d) * eps * s_max`), the undefined canonical correlations count as 0 in the mean,
/// and [`CcaResult::warnings`] says how many.
///
/// ```
/// use mmssl_similarity::Cca;
/// use ndarray::array;
/// let a = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.5], [0.3, 0.1]];
/// let r = Cca::new().fit(a.view(), a.view()).unwrap();
/// assert!((r.mean - 1.0).abs() < 1e-12);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Cca {
    backend: LinalgBackend,
}

/// An orthonormal basis of a centred matrix's column space, and the matrix's rank.
pub(crate) struct Basis {
    pub q: Array2<f64>,
    pub rank: usize,
}

impl Cca {
    /// CCA with the default linear-algebra backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses the linear-algebra backend.
    pub fn backend(mut self, backend: LinalgBackend) -> Self {
        self.backend = backend;
        self
    }

    /// Canonical correlations between `a` (`n x d_a`) and `b` (`n x d_b`).
    pub fn fit(&self, a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<CcaResult> {
        let (ac, bc) = centred_pair("CCA", 2, a, b)?;
        self.fit_centred("CCA", &ac, &bc).map(|(r, _, _)| r)
    }

    /// CCA on already-centred, checked matrices. Also returns `A`'s basis and the left
    /// singular vectors of `Q_A^T Q_B` (for PWCCA).
    pub(crate) fn fit_centred(
        &self,
        metric: &'static str,
        ac: &Array2<f64>,
        bc: &Array2<f64>,
    ) -> Result<(CcaResult, Basis, Array2<f64>)> {
        let n = ac.nrows();
        for (matrix, m) in [("A", ac), ("B", bc)] {
            if n <= m.ncols() {
                return Err(SimilarityError::Underdetermined {
                    metric,
                    matrix,
                    n,
                    d: m.ncols(),
                });
            }
        }
        let basis_a = self.basis(ac.view())?;
        let basis_b = self.basis(bc.view())?;
        let m = basis_a.q.t().dot(&basis_b.q);
        let svd = self.backend.svd(m.view())?;
        // Singular values of a product of orthonormal bases are cosines of principal angles;
        // rounding can push them a few ulps above 1.
        let correlations = svd.s.mapv(|x| x.clamp(0.0, 1.0));
        let (d_a, d_b) = (ac.ncols(), bc.ncols());
        let mut warnings = Vec::new();
        for (name, basis, d) in [("A", &basis_a, d_a), ("B", &basis_b, d_b)] {
            if basis.rank < d {
                warnings.push(format!(
                    "{name} has numerical rank {} < {d} columns (constant, dead or linearly \
                     dependent units); the missing canonical correlations count as 0 in the mean",
                    basis.rank
                ));
            }
        }
        let mean = correlations.sum() / d_a.min(d_b) as f64;
        let rank_a = basis_a.rank;
        let result = CcaResult {
            mean,
            correlations,
            rank_a,
            rank_b: basis_b.rank,
            warnings,
        };
        let k = result.correlations.len();
        let u = svd.u.slice(s![.., ..k]).to_owned();
        Ok((result, basis_a, u))
    }

    /// Orthonormal basis of the column space of a centred matrix (thin QR; restricted through
    /// the SVD of `R` when the matrix is rank-deficient).
    pub(crate) fn basis(&self, c: ArrayView2<f64>) -> Result<Basis> {
        let (n, d) = c.dim();
        let (q, r) = self.backend.thin_qr(c)?;
        let svd_r = self.backend.svd(r.view())?;
        let tol = n.max(d) as f64 * f64::EPSILON * svd_r.s[0];
        let rank = svd_r.s.iter().filter(|&&x| x > tol).count();
        if rank == d {
            return Ok(Basis { q, rank });
        }
        let q = q.dot(&svd_r.u.slice(s![.., ..rank]));
        Ok(Basis { q, rank })
    }
}
