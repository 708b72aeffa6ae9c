//! Linear CCA (L-CCA): classical, ridge-regularised canonical correlation analysis fitted on
//! flattened inputs (or any features), used as a representation in the same evaluation.
//!
//! With centred `X1` (`n x d1`), `X2` (`n x d2`), `S11 = X1ᵀX1/(n-1) + r I`,
//! `S22 = X2ᵀX2/(n-1) + r I`, `S12 = X1ᵀX2/(n-1)` and the SVD
//! `S11^(-1/2) S12 S22^(-1/2) = U diag(ρ) Vᵀ` (Hotelling 1936; the whitened formulation of
//! e.g. Uurtio et al. 2017), the projections are `W1 = S11^(-1/2) U_k` and
//! `W2 = S22^(-1/2) V_k`: the `k` canonical variates `X1 W1` and `X2 W2` have (regularised)
//! unit variance and correlations `ρ_1 >= ... >= ρ_k`. The ridge makes the problem well posed
//! for constant pixels (MNIST's borders) and `n <= d`.

use crate::error::{BaselineError, Result};
use mmssl_data::PairedDataset;
use mmssl_similarity::linalg::LinalgBackend;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Settings of linear CCA.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearCcaConfig {
    /// Number of canonical components kept (the representation's size). Default 64.
    pub components: usize,
    /// Ridge `r` added to both auto-covariances. Default `1e-3`.
    pub reg: f64,
}

impl Default for LinearCcaConfig {
    fn default() -> Self {
        LinearCcaConfig {
            components: 64,
            reg: 1e-3,
        }
    }
}

/// A fitted linear CCA: column means and projections of both views.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinearCca {
    means: [Array1<f64>; 2],
    projections: [Array2<f64>; 2],
    correlations: Array1<f64>,
}

fn sym_inv_sqrt(s: &Array2<f64>, floor: f64, linalg: LinalgBackend) -> Result<Array2<f64>> {
    let eig = linalg.eigh(s.view())?;
    let mut scaled = eig.vectors.clone();
    for (mut col, &l) in scaled.axis_iter_mut(Axis(1)).zip(eig.values.iter()) {
        col /= l.max(floor).sqrt();
    }
    Ok(scaled.dot(&eig.vectors.t()))
}

impl LinearCcaConfig {
    /// Fits CCA between `x1` (`n x d1`) and `x2` (`n x d2`), rows are samples.
    pub fn fit(&self, x1: ArrayView2<f64>, x2: ArrayView2<f64>) -> Result<LinearCca> {
        let n = x1.nrows();
        let what = "linear CCA rows (samples) of the two views";
        BaselineError::check_same(what, &[n], &[x2.nrows()])?;
        self.check(n, x1.ncols(), x2.ncols())?;
        let mut moments = Moments::new(x1.ncols(), x2.ncols());
        moments.add(x1.to_owned(), x2.to_owned(), 0)?;
        self.solve(moments)
    }

    /// Refuses settings and sizes (`n` samples of `d1` and `d2` features) it cannot fit.
    fn check(&self, n: usize, d1: usize, d2: usize) -> Result<()> {
        if n < 2 {
            return Err(BaselineError::TooFew {
                what: "linear CCA (samples)",
                needed: 2,
                got: n,
            });
        }
        let kmax = d1.min(d2);
        if self.components == 0 || self.components > kmax {
            return Err(BaselineError::InvalidSetting {
                name: "linear CCA components",
                value: self.components.to_string(),
                reason: format!("must be between 1 and min(d1, d2) = {kmax}"),
            });
        }
        if !(self.reg.is_finite() && self.reg > 0.0) {
            return Err(BaselineError::InvalidSetting {
                name: "linear CCA ridge r",
                value: self.reg.to_string(),
                reason: "must be positive".into(),
            });
        }
        for (view, d) in [(1, d1), (2, d2)] {
            if d > MAX_FEATURES {
                return Err(BaselineError::InvalidSetting {
                    name: "linear CCA input features",
                    value: format!("{d} features (view {view})"),
                    reason: format!(
                        "its {d} x {d} covariance would need {:.0} GB (the limit is \
                         {MAX_FEATURES} features, e.g. 3 x 32 x 32 images); for volumes, fit \
                         it on extracted features instead",
                        (d as f64).powi(2) * 8.0 / 1e9
                    ),
                });
            }
        }
        Ok(())
    }

    /// Fits CCA between the two modalities of every item of `data` (as drawn in epoch 0),
    /// flattened, without holding the data in memory: the covariances are accumulated over
    /// blocks of items (shifted by the first block's means, which keeps the sums accurate),
    /// so any number of pairs fits in `O(d1² + d2² + d1 d2)` memory.
    pub fn fit_dataset(&self, data: &dyn PairedDataset) -> mmssl_train::Result<LinearCca> {
        if data.modalities() != 2 {
            return Err(BaselineError::Modalities {
                method: "linear CCA",
                needed: "2",
                got: data.modalities(),
            }
            .into());
        }
        let n = data.len();
        let d1: usize = data.shape(0).iter().product();
        let d2: usize = data.shape(1).iter().product();
        self.check(n, d1, d2)?;
        let mut moments = Moments::new(d1, d2);
        for rows in blocks(n) {
            let start = rows.start;
            let (x1, _) = rows_matrix(data, 0, rows.clone())?;
            let (x2, _) = rows_matrix(data, 1, rows)?;
            moments.add(x1, x2, start)?;
        }
        Ok(self.solve(moments)?)
    }

    /// The projections from the accumulated means and covariances.
    fn solve(&self, moments: Moments) -> Result<LinearCca> {
        let (means, mut s11, mut s22, s12) = moments.finish();
        let linalg = LinalgBackend::default();
        s11.diag_mut().mapv_inplace(|v| v + self.reg);
        s22.diag_mut().mapv_inplace(|v| v + self.reg);
        let a = sym_inv_sqrt(&s11, self.reg * 0.5, linalg)?;
        let b = sym_inv_sqrt(&s22, self.reg * 0.5, linalg)?;
        let t = a.dot(&s12).dot(&b);
        let svd = linalg.svd(t.view())?;
        let k = self.components;
        let w1 = a.dot(&svd.u.slice(s![.., ..k]));
        let w2 = b.dot(&svd.vt.slice(s![..k, ..]).t());
        Ok(LinearCca {
            means,
            projections: [w1, w2],
            correlations: svd.s.slice(s![..k]).to_owned(),
        })
    }
}

impl LinearCca {
    /// The canonical correlations of the kept components (on the fitting data), non-increasing.
    pub fn correlations(&self) -> &Array1<f64> {
        &self.correlations
    }

    /// The column means of `modality` (0 or 1) on the fitting data, subtracted before
    /// projecting: `d`.
    pub fn mean(&self, modality: usize) -> Option<&Array1<f64>> {
        self.means.get(modality)
    }

    /// The projection of `modality` (0 or 1): `d x k`.
    pub fn projection(&self, modality: usize) -> Option<&Array2<f64>> {
        self.projections.get(modality)
    }

    /// Canonical variates of `x` (`n x d` of `modality`): `n x k`.
    pub fn transform(&self, modality: usize, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        let (mean, w) = match (self.means.get(modality), self.projections.get(modality)) {
            (Some(m), Some(w)) => (m, w),
            _ => {
                return Err(BaselineError::InvalidSetting {
                    name: "modality",
                    value: modality.to_string(),
                    reason: "linear CCA has modalities 0 and 1".into(),
                });
            }
        };
        let what = "linear CCA features (fitted, given)";
        BaselineError::check_same(what, &[w.nrows()], &[x.ncols()])?;
        Ok((&x - mean).dot(w))
    }

    /// The canonical variates of every item of `data` for `modality`, as features for linear
    /// evaluation (items as drawn in epoch 0; every item needs a label).
    pub fn features(
        &self,
        data: &dyn PairedDataset,
        modality: usize,
    ) -> mmssl_train::Result<mmssl_train::Features> {
        let k = self.correlations.len();
        let mut values = Vec::with_capacity(data.len() * k);
        let mut labels = Vec::with_capacity(data.len());
        // In blocks, so that only the k-dimensional variates of all items are held.
        for rows in blocks(data.len()) {
            let (x, block_labels) = rows_matrix(data, modality, rows.clone())?;
            let z = self.transform(modality, x.view())?;
            values.extend(z.iter().map(|&v| v as f32));
            for (i, l) in rows.zip(block_labels) {
                labels.push(l.ok_or_else(|| mmssl_train::TrainError::MissingLabel {
                    item: i,
                    needed_by: "linear evaluation",
                })?);
            }
        }
        Ok(mmssl_train::Features {
            dim: k,
            values,
            labels,
        })
    }
}

/// Every item of `data` (as drawn in epoch 0) for `modality`, flattened: `n x (C * spatial)`,
/// with the labels.
pub fn dataset_matrix(
    data: &dyn PairedDataset,
    modality: usize,
) -> mmssl_train::Result<(Array2<f64>, Vec<Option<usize>>)> {
    rows_matrix(data, modality, 0..data.len())
}

/// Items per block of [`LinearCcaConfig::fit_dataset`] and [`LinearCca::features`].
const BLOCK: usize = 2048;

/// `0..n` in consecutive blocks of [`BLOCK`] items.
fn blocks(n: usize) -> impl Iterator<Item = Range<usize>> {
    (0..n)
        .step_by(BLOCK)
        .map(move |start| start..(start + BLOCK).min(n))
}

/// The first and second moments of two views, accumulated block by block. Each view is
/// shifted by the mean of its first block, which keeps the sums accurate (a single block is
/// centred exactly).
struct Moments {
    n: usize,
    shift: Option<[Array1<f64>; 2]>,
    sums: [Array1<f64>; 2],
    s11: Array2<f64>,
    s22: Array2<f64>,
    s12: Array2<f64>,
}

impl Moments {
    fn new(d1: usize, d2: usize) -> Self {
        Moments {
            n: 0,
            shift: None,
            sums: [Array1::zeros(d1), Array1::zeros(d2)],
            s11: Array2::zeros((d1, d1)),
            s22: Array2::zeros((d2, d2)),
            s12: Array2::zeros((d1, d2)),
        }
    }

    /// Adds the rows of `x1` and `x2` (the same samples, the first being row `first` of the
    /// whole data); a NaN or infinity is an error naming its row and column.
    fn add(&mut self, mut x1: Array2<f64>, mut x2: Array2<f64>, first: usize) -> Result<()> {
        for (view, x) in [(1, &x1), (2, &x2)] {
            if let Some(((row, col), v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
                return Err(BaselineError::NonFinite {
                    what: format!("linear CCA view {view}"),
                    value: *v,
                    row: first + row,
                    column: col,
                });
            }
        }
        let [c1, c2] = self.shift.get_or_insert_with(|| {
            [
                x1.mean_axis(Axis(0)).expect("a block has rows"),
                x2.mean_axis(Axis(0)).expect("a block has rows"),
            ]
        });
        x1 -= &*c1;
        x2 -= &*c2;
        self.n += x1.nrows();
        self.sums[0] += &x1.sum_axis(Axis(0));
        self.sums[1] += &x2.sum_axis(Axis(0));
        general_mat_mul(1.0, &x1.t(), &x1, 1.0, &mut self.s11);
        general_mat_mul(1.0, &x2.t(), &x2, 1.0, &mut self.s22);
        general_mat_mul(1.0, &x1.t(), &x2, 1.0, &mut self.s12);
        Ok(())
    }

    /// The means and the covariances `S11`, `S22`, `S12` (divided by `n - 1`; `n >= 2`).
    fn finish(self) -> ([Array1<f64>; 2], Array2<f64>, Array2<f64>, Array2<f64>) {
        // Of shifted data: (Σ x xᵀ - n μ μᵀ) / (n - 1), with μ the shifted mean.
        let n = self.n as f64;
        let [mu1, mu2] = self.sums.map(|s| s / n);
        let outer = |a: &Array1<f64>, b: &Array1<f64>| {
            a.view()
                .insert_axis(Axis(1))
                .dot(&b.view().insert_axis(Axis(0)))
        };
        let scale = 1.0 / (n - 1.0);
        let s11 = (self.s11 - outer(&mu1, &mu1) * n) * scale;
        let s22 = (self.s22 - outer(&mu2, &mu2) * n) * scale;
        let s12 = (self.s12 - outer(&mu1, &mu2) * n) * scale;
        let [c1, c2] = self.shift.expect("rows were added");
        ([mu1 + c1, mu2 + c2], s11, s22, s12)
    }
}

/// The most features per view linear CCA accepts (a 16,384-feature covariance is 2 GB).
pub const MAX_FEATURES: usize = 16_384;

/// The items `rows` of `data` (as drawn in epoch 0) for `modality`, flattened, with labels.
fn rows_matrix(
    data: &dyn PairedDataset,
    modality: usize,
    rows: Range<usize>,
) -> mmssl_train::Result<(Array2<f64>, Vec<Option<usize>>)> {
    if modality >= data.modalities() {
        return Err(mmssl_train::TrainError::NoModality {
            modality,
            available: data.modalities(),
        });
    }
    let d: usize = data.shape(modality).iter().product();
    let mut values = Vec::with_capacity(rows.len() * d);
    let mut labels = Vec::with_capacity(rows.len());
    for i in rows.clone() {
        let item = data.get(i, 0)?;
        values.extend(item.views[modality].iter().map(|&v| v as f64));
        labels.push(item.label);
    }
    let got = values.len();
    Array2::from_shape_vec((rows.len(), d), values)
        .map_err(|_| {
            BaselineError::ShapeMismatch {
                what: "flattened items (rows x features) and their values",
                left: vec![rows.len(), d],
                right: vec![got],
            }
            .into()
        })
        .map(|x| (x, labels))
}

/// The options of `lcca`.
pub const LCCA_OPTIONS: &[mmssl_train::MethodOption] = &[
    mmssl_train::MethodOption::new(
        "components",
        "canonical components kept, the representation's size (default 64)",
    ),
    mmssl_train::MethodOption::new("reg", "ridge added to the auto-covariances (default 0.001)"),
];

impl LinearCcaConfig {
    /// The configuration the options `o` of `lcca` describe (the defaults where absent).
    pub fn from_options(o: &mmssl_train::MethodOptions<'_>) -> mmssl_train::Result<Self> {
        let d = LinearCcaConfig::default();
        Ok(LinearCcaConfig {
            components: o.count("components", d.components)?,
            reg: o.positive("reg", d.reg)?,
        })
    }
}
