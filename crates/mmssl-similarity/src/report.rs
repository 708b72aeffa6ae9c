//! All metrics at once, as a serialisable report.

use crate::cka::{linear_cka, linear_cka_debiased};
use crate::error::Result;
use crate::linalg::LinalgBackend;
use crate::prepare::centred_pair;
use crate::{Pwcca, Svcca};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// Every similarity index between two representations, as `mmssl similarity` prints it.
///
/// A metric that is undefined for this input (CCA and PWCCA with `n <= d`, debiased CKA with
/// `n < 4`) is `None` (JSON `null`) and [`Self::warnings`] says why; it is never NaN.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimilarityReport {
    /// Mean canonical correlation (see [`crate::Cca`]).
    pub cca: Option<f64>,
    /// SVCCA mean canonical correlation (see [`crate::Svcca`]).
    pub svcca: Option<f64>,
    /// Projection-weighted CCA, weights from A (see [`crate::Pwcca`]).
    pub pwcca: Option<f64>,
    /// Linear CKA (see [`crate::linear_cka`]).
    pub cka: Option<f64>,
    /// Debiased linear CKA (see [`crate::linear_cka_debiased`]).
    pub cka_debiased: Option<f64>,
    /// Number of samples.
    pub n: usize,
    /// Features of A.
    pub d_a: usize,
    /// Features of B.
    pub d_b: usize,
    /// Singular directions SVCCA kept of A and of B.
    pub svcca_kept: Option<(usize, usize)>,
    /// The variance fraction SVCCA kept.
    pub svcca_threshold: f64,
    /// The linear-algebra backend used.
    pub backend: LinalgBackend,
    /// Why a metric is missing, or what to keep in mind (rank deficiency), in words.
    pub warnings: Vec<String>,
}

/// Computes every similarity index with one configuration.
///
/// ```
/// use mmssl_similarity::Similarity;
/// use ndarray::Array2;
/// let a = Array2::from_shape_fn((50, 3), |(i, j)| ((i * 7 + j * 13) % 11) as f64);
/// let b = a.mapv(|x| 2.0 * x + 1.0);
/// let report = Similarity::new().report(a.view(), b.view()).unwrap();
/// assert!((report.cka.unwrap() - 1.0).abs() < 1e-12);
/// assert!((report.cca.unwrap() - 1.0).abs() < 1e-9);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Similarity {
    backend: LinalgBackend,
    svcca: Svcca,
}

impl Similarity {
    /// Default backend, SVCCA threshold 0.99.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses the linear-algebra backend.
    pub fn backend(mut self, backend: LinalgBackend) -> Self {
        self.backend = backend;
        self.svcca = self.svcca.backend(backend);
        self
    }

    /// The fraction of variance SVCCA keeps, in `(0, 1]`.
    pub fn svcca_threshold(mut self, threshold: f64) -> Result<Self> {
        self.svcca = self.svcca.threshold(threshold)?;
        Ok(self)
    }

    /// Computes all indices. Errors only for input that no metric can use (different `n`,
    /// `n < 2`, NaN/Inf, no columns, zero variance); metric-specific failures become `None`
    /// plus a warning.
    pub fn report(&self, a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<SimilarityReport> {
        centred_pair("similarity", 2, a, b)?;
        let mut warnings = Vec::new();
        let (cca, pwcca) = match Pwcca::new().backend(self.backend).fit(a, b) {
            Ok(p) => {
                warnings.extend(p.cca.warnings.iter().map(|w| format!("cca: {w}")));
                (Some(p.cca.mean), Some(p.value))
            }
            Err(e) => {
                warnings.push(format!("cca, pwcca: {e}"));
                (None, None)
            }
        };
        let keep = |warnings: &mut Vec<String>, name: &str, r: Result<f64>| match r {
            Ok(v) => Some(v),
            Err(e) => {
                warnings.push(format!("{name}: {e}"));
                None
            }
        };
        let sv = self.svcca.fit(a, b);
        let svcca_kept = sv.as_ref().ok().map(|s| (s.kept_a, s.kept_b));
        if let Some((ka, kb)) = svcca_kept
            && 4 * (ka + kb) > a.nrows()
        {
            warnings.push(format!(
                "svcca: {ka} + {kb} directions from {} samples: canonical correlations are biased \
                 upward at this ratio (independent data do not give 0); compare runs of the same \
                 size only, or use CKA",
                a.nrows()
            ));
        }
        let svcca = keep(&mut warnings, "svcca", sv.map(|s| s.mean));
        let cka = if a.nrows() <= 2 {
            // Two centred samples span one direction: CKA is 1 whatever they are.
            warnings.push(format!(
                "cka: undefined with n = {} samples (two centred samples span one direction, \
                 so linear CKA is 1 whatever the representations)",
                a.nrows()
            ));
            None
        } else {
            keep(&mut warnings, "cka", linear_cka(a, b))
        };
        let cka_debiased = keep(&mut warnings, "cka_debiased", linear_cka_debiased(a, b));
        Ok(SimilarityReport {
            cca,
            svcca,
            pwcca,
            cka,
            cka_debiased,
            n: a.nrows(),
            d_a: a.ncols(),
            d_b: b.ncols(),
            svcca_kept,
            svcca_threshold: self.svcca.threshold_value(),
            backend: self.backend,
            warnings,
        })
    }
}
