//! The deep CCA loss of Andrew et al. (ICML 2013), differentiable on every backend and stable
//! for small batches and rank-deficient representations.
//!
//! # Definition
//! For two representations `H1` (`m x o1`) and `H2` (`m x o2`) of the same `m` samples, with
//! centred columns `H̄`:
//!
//! ```text
//! S11 = H̄1ᵀ H̄1 / (m - 1) + r I      S22 = H̄2ᵀ H̄2 / (m - 1) + r I      S12 = H̄1ᵀ H̄2 / (m - 1)
//! T   = S11^(-1/2) S12 S22^(-1/2)
//! ```
//!
//! The total correlation is the trace norm of `T` (the sum of its singular values, Andrew et
//! al. 2013, section 2.2), or `sqrt(trace(Tᵀ T))` (its Frobenius norm, what the code released
//! with Fedorov et al. 2021 computes), optionally over the top `k` singular values only. The loss is
//! minus the correlation.
//!
//! # How it is computed, and why it is stable
//! burn has no symmetric eigendecomposition, and Newton-Schulz iterations for `S^(-1/2)`
//! converge slowly when `r` is small against the largest variance (tens of iterations, each
//! adding matrix products to the autodiff graph, with float32 round-off accumulating). The
//! matrices involved are tiny (`o x o`, with `o` the head size, 64 in the paper), so this
//! module reads `H1` and `H2` back to the host and does the whole computation in float64 with
//! a symmetric eigensolver and an SVD (faer, or LAPACK with the `lapack` feature of
//! mmssl-similarity):
//!
//! - `S^(-1/2) = Q diag(λ^(-1/2)) Qᵀ` from `S = Q diag(λ) Qᵀ`; `λ >= r > 0` by construction,
//!   so the inverse square root exists even when `m <= o` or `H` is rank-deficient.
//! - The gradient is analytic (the derivation of Andrew et al. 2013, section 2.2, generalised
//!   to any `∂corr/∂T`): with `G_T = ∂corr/∂T` (`U Vᵀ` for the trace norm, `T / ||T||_F` for
//!   the Frobenius norm, restricted to the top `k` singular pairs when asked; where the trace
//!   norm is not differentiable because singular values are 0, its minimum-norm subgradient,
//!   which drops the pairs of zero singular values),
//!   `∂/∂S12 = S11^(-1/2) G_T S22^(-1/2)`, and the gradients reaching `S11^(-1/2)` and
//!   `S22^(-1/2)` are taken through the inverse square root by the Daleckii-Krein formula
//!   `∂/∂S = Q (F ∘ (Qᵀ G Q)) Qᵀ` with
//!   `F_ij = -1 / (√λi √λj (√λi + √λj))` (no cancellation, finite for equal eigenvalues, bounded
//!   by `r^(-3/2) / 2`). Then `∂/∂H̄1 = (2 H̄1 ∂/∂S11 + H̄2 (∂/∂S12)ᵀ) / (m - 1)` and likewise for
//!   `H2`, projected onto centred matrices.
//! - The loss handed back to burn is `value + (s - detach(s))` with `s = <H1, G1> + <H2, G2>`
//!   and `G` the host gradients as constants: its value is exactly the float64 loss (rounded
//!   once to the inputs' float type) and its gradient is exactly the analytic one, on any backend.
//!
//! The exact float64 correlation is returned alongside the tensor ([`DeepCcaOutput`]), and
//! [`DeepCca::evaluate_f64`] evaluates the loss and gradients on plain float64 matrices.

use crate::error::{BaselineError, Result};
use burn::tensor::{DType, Tensor, TensorData};
use mmssl_similarity::linalg::LinalgBackend;
use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// Which norm of `T` is the total correlation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorrelationNorm {
    /// The sum of the singular values of `T` (Andrew et al. 2013). The default.
    #[default]
    TraceNorm,
    /// `sqrt(trace(Tᵀ T))`, the Frobenius norm (the authors' released code).
    Frobenius,
}

impl std::str::FromStr for CorrelationNorm {
    type Err = BaselineError;

    /// `trace` (or `trace-norm`) or `frobenius`, case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" | "trace-norm" => Ok(CorrelationNorm::TraceNorm),
            "frobenius" => Ok(CorrelationNorm::Frobenius),
            _ => Err(BaselineError::UnknownName {
                what: "deep CCA norm",
                value: s.to_string(),
                valid: "trace, frobenius".into(),
            }),
        }
    }
}

/// Settings of the deep CCA loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DeepCcaConfig {
    /// The ridge `r` added to both auto-covariances; must be positive. Default `1e-3`.
    pub reg: f64,
    /// The norm of `T` that is maximised.
    #[serde(default)]
    pub norm: CorrelationNorm,
    /// Only the top `k` singular values of `T` count (`None`: all).
    #[serde(default)]
    pub top_k: Option<usize>,
}

impl Default for DeepCcaConfig {
    fn default() -> Self {
        DeepCcaConfig {
            reg: 1e-3,
            norm: CorrelationNorm::TraceNorm,
            top_k: None,
        }
    }
}

impl DeepCcaConfig {
    /// The defaults: ridge `1e-3`, the trace norm, every canonical correlation.
    ///
    /// ```
    /// use mmssl_baselines::{CorrelationNorm, DeepCcaConfig};
    /// let c = DeepCcaConfig::new()
    ///     .with_reg(1e-2)
    ///     .with_norm(CorrelationNorm::Frobenius)
    ///     .with_top_k(Some(5));
    /// assert_eq!((c.reg, c.norm, c.top_k), (1e-2, CorrelationNorm::Frobenius, Some(5)));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    mmssl_objectives::setters! {
        /// Sets the ridge added to both auto-covariances (must be positive).
        with_reg => reg: f64;
        /// Sets the norm of `T` that is maximised.
        with_norm => norm: CorrelationNorm;
        /// Counts only the top `k` canonical correlations (`None`: all).
        with_top_k => top_k: Option<usize>;
    }
}

/// The deep CCA loss with its settings.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DeepCca {
    /// Settings.
    pub config: DeepCcaConfig,
}

/// The loss on a pair of float64 matrices, with its gradients.
#[derive(Debug, Clone)]
pub struct DeepCcaF64 {
    /// The total correlation (the loss is its negative).
    pub correlation: f64,
    /// All singular values of `T`, non-increasing (the canonical correlations of the
    /// regularised problem).
    pub singular_values: Array1<f64>,
    /// `∂loss/∂H1` (`m x o1`).
    pub grad_h1: Array2<f64>,
    /// `∂loss/∂H2` (`m x o2`).
    pub grad_h2: Array2<f64>,
}

/// The loss on burn tensors.
#[derive(Debug, Clone)]
pub struct DeepCcaOutput {
    /// `-correlation`, `[1]`, differentiable with respect to both inputs.
    pub loss: Tensor<1>,
    /// The total correlation in float64.
    pub correlation: f64,
    /// The singular values of `T` in float64.
    pub singular_values: Array1<f64>,
}

impl DeepCca {
    /// The loss with `config`.
    pub fn new(config: DeepCcaConfig) -> Self {
        DeepCca { config }
    }

    fn check_config(&self) -> Result<()> {
        let r = self.config.reg;
        if !(r.is_finite() && r > 0.0) {
            return Err(BaselineError::InvalidSetting {
                name: "deep CCA ridge r",
                value: r.to_string(),
                reason: "must be a positive number (the inverse square roots need it)".into(),
            });
        }
        if self.config.top_k == Some(0) {
            return Err(BaselineError::InvalidSetting {
                name: "deep CCA top_k",
                value: "0".into(),
                reason: "keeps no component; use None for all".into(),
            });
        }
        Ok(())
    }

    /// The loss `-corr(H1, H2)` as a differentiable burn tensor.
    ///
    /// `h1` is `[m, o1]`, `h2` is `[m, o2]` (rows are samples), on any device; `m >= 2`.
    pub fn forward(&self, h1: Tensor<2>, h2: Tensor<2>) -> Result<DeepCcaOutput> {
        let a = to_host(&h1, "H1")?;
        let b = to_host(&h2, "H2")?;
        let r = self.evaluate_f64(a.view(), b.view())?;
        // The constants take the inputs' float type, so a float64 model gets the float64 loss
        // and gradients unrounded.
        let device = h1.device();
        let dtype = h1.dtype();
        let g1 = from_host(&r.grad_h1, &device, dtype);
        let g2 = from_host(&r.grad_h2, &device, h2.dtype());
        let s = (h1 * g1).sum() + (h2 * g2).sum();
        let value =
            Tensor::<1>::from_data(TensorData::new(vec![-r.correlation], [1]), (&device, dtype));
        Ok(DeepCcaOutput {
            loss: value + (s.clone() - s.detach()),
            correlation: r.correlation,
            singular_values: r.singular_values,
        })
    }

    /// The correlation and the gradients of the loss (`-correlation`) on float64 matrices.
    pub fn evaluate_f64(&self, h1: ArrayView2<f64>, h2: ArrayView2<f64>) -> Result<DeepCcaF64> {
        self.check_config()?;
        let (m, o1) = h1.dim();
        let o2 = h2.ncols();
        BaselineError::check_same("deep CCA rows (samples) of H1 and H2", &[m], &[h2.nrows()])?;
        if m < 2 {
            return Err(BaselineError::TooFew {
                what: "deep CCA (samples for a covariance)",
                needed: 2,
                got: m,
            });
        }
        if o1 == 0 || o2 == 0 {
            return Err(BaselineError::TooFew {
                what: "deep CCA (features in each view)",
                needed: 1,
                got: 0,
            });
        }
        for (name, h) in [("H1", &h1), ("H2", &h2)] {
            if let Some(((row, col), v)) = h.indexed_iter().find(|(_, v)| !v.is_finite()) {
                return Err(BaselineError::NonFinite {
                    what: format!("deep CCA input {name}"),
                    value: *v,
                    row,
                    column: col,
                });
            }
        }
        let linalg = LinalgBackend::default();
        let scale = 1.0 / (m as f64 - 1.0);
        let c1 = centre(h1);
        let c2 = centre(h2);
        let mut s11 = c1.t().dot(&c1) * scale;
        let mut s22 = c2.t().dot(&c2) * scale;
        for i in 0..o1 {
            s11[[i, i]] += self.config.reg;
        }
        for i in 0..o2 {
            s22[[i, i]] += self.config.reg;
        }
        let s12 = c1.t().dot(&c2) * scale;
        let e1 = InvSqrt::new(&s11, self.config.reg, linalg)?;
        let e2 = InvSqrt::new(&s22, self.config.reg, linalg)?;
        let t = e1.value.dot(&s12).dot(&e2.value);
        let svd = linalg.svd(t.view())?;
        let k_all = svd.s.len();
        let k = self.config.top_k.unwrap_or(k_all).min(k_all);
        let u = svd.u.slice(ndarray::s![.., ..k]);
        let vt = svd.vt.slice(ndarray::s![..k, ..]);
        let sk = svd.s.slice(ndarray::s![..k]);
        let (correlation, g_t) = match self.config.norm {
            CorrelationNorm::TraceNorm => {
                // The trace norm is not differentiable where a singular value is 0 (n <= d,
                // dead or duplicated units); take its minimum-norm subgradient, which leaves
                // out the singular pairs of zero singular values.
                let tol = 1e-12 * svd.s.first().copied().unwrap_or(0.0).max(1.0);
                let live = sk.iter().filter(|&&x| x > tol).count();
                let ul = u.slice(ndarray::s![.., ..live]);
                let vl = vt.slice(ndarray::s![..live, ..]);
                (sk.sum(), ul.dot(&vl))
            }
            CorrelationNorm::Frobenius => {
                let f = sk.mapv(|x| x * x).sum().sqrt();
                let mut us = u.to_owned();
                for (mut col, &s) in us.axis_iter_mut(Axis(1)).zip(sk.iter()) {
                    col *= if f > 0.0 { s / f } else { 0.0 };
                }
                (f, us.dot(&vt))
            }
        };
        // Gradients of the correlation, then negated for the loss.
        let g12 = e1.value.dot(&g_t).dot(&e2.value);
        let g_a = g_t.dot(&e2.value).dot(&s12.t());
        let g_b = s12.t().dot(&e1.value).dot(&g_t);
        let g11 = e1.backward(&g_a);
        let g22 = e2.backward(&g_b);
        let gh1 = (c1.dot(&g11) * 2.0 + c2.dot(&g12.t())) * scale;
        let gh2 = (c2.dot(&g22) * 2.0 + c1.dot(&g12)) * scale;
        Ok(DeepCcaF64 {
            correlation,
            singular_values: svd.s,
            grad_h1: centre(gh1.view()).mapv(|x| -x),
            grad_h2: centre(gh2.view()).mapv(|x| -x),
        })
    }
}

/// `S^(-1/2)` of a symmetric positive definite matrix, kept with its eigendecomposition for
/// the backward pass.
struct InvSqrt {
    value: Array2<f64>,
    vectors: Array2<f64>,
    roots: Array1<f64>,
}

impl InvSqrt {
    fn new(s: &Array2<f64>, reg: f64, linalg: LinalgBackend) -> Result<Self> {
        let eig = linalg.eigh(s.view())?;
        // Exact arithmetic gives λ >= r; rounding can take a few ulps of ||S|| off.
        let roots = eig.values.mapv(|l| l.max(reg * 0.5).sqrt());
        let mut scaled = eig.vectors.clone();
        for (mut col, &q) in scaled.axis_iter_mut(Axis(1)).zip(roots.iter()) {
            col /= q;
        }
        let value = scaled.dot(&eig.vectors.t());
        Ok(InvSqrt {
            value,
            vectors: eig.vectors,
            roots,
        })
    }

    /// `∂L/∂S` from `∂L/∂S^(-1/2)` (Daleckii-Krein), symmetric.
    fn backward(&self, g: &Array2<f64>) -> Array2<f64> {
        let q = &self.vectors;
        let mut inner = q.t().dot(g).dot(q);
        let n = self.roots.len();
        for i in 0..n {
            for j in 0..n {
                let (a, b) = (self.roots[i], self.roots[j]);
                inner[[i, j]] *= -1.0 / (a * b * (a + b));
            }
        }
        let full = q.dot(&inner).dot(&q.t());
        (&full + &full.t()) * 0.5
    }
}

fn centre(h: ArrayView2<f64>) -> Array2<f64> {
    let mean = h
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(h.ncols()));
    &h - &mean
}

fn to_host(t: &Tensor<2>, name: &str) -> Result<Array2<f64>> {
    let [m, o] = t.dims();
    let values = t
        .clone()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .map_err(|e| BaselineError::Readback {
            what: "a deep CCA input",
            reason: format!("{name}: {e:?}"),
        })?;
    Array2::from_shape_vec((m, o), values).map_err(|e| BaselineError::Readback {
        what: "a deep CCA input",
        reason: format!("{name}: {e}"),
    })
}

fn from_host(a: &Array2<f64>, device: &burn::tensor::Device, dtype: DType) -> Tensor<2> {
    let (m, o) = a.dim();
    let v: Vec<f64> = a.iter().copied().collect();
    Tensor::from_data(TensorData::new(v, [m, o]), (device, dtype))
}
