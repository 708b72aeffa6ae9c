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
use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use serde::{Deserialize, Serialize};

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
        if x2.nrows() != n {
            return Err(BaselineError::Shape(format!(
                "linear CCA needs the same samples in both views: {n} and {} rows",
                x2.nrows()
            )));
        }
        if n < 2 {
            return Err(BaselineError::Shape(format!(
                "linear CCA needs at least 2 samples, got {n}"
            )));
        }
        let kmax = x1.ncols().min(x2.ncols());
        if self.components == 0 || self.components > kmax {
            return Err(BaselineError::Config(format!(
                "linear CCA components = {} must be between 1 and min(d1, d2) = {kmax}",
                self.components
            )));
        }
        if !(self.reg.is_finite() && self.reg > 0.0) {
            return Err(BaselineError::Config(format!(
                "linear CCA ridge r = {} must be positive",
                self.reg
            )));
        }
        for (name, x) in [("view 1", &x1), ("view 2", &x2)] {
            if let Some(((row, col), v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
                return Err(BaselineError::NonFinite(format!(
                    "linear CCA {name} has {v} at row {row}, column {col}"
                )));
            }
        }
        let linalg = LinalgBackend::default();
        let m1 = x1.mean_axis(Axis(0)).expect("n >= 2");
        let m2 = x2.mean_axis(Axis(0)).expect("n >= 2");
        let c1 = &x1 - &m1;
        let c2 = &x2 - &m2;
        let scale = 1.0 / (n as f64 - 1.0);
        let mut s11 = c1.t().dot(&c1) * scale;
        let mut s22 = c2.t().dot(&c2) * scale;
        s11.diag_mut().mapv_inplace(|v| v + self.reg);
        s22.diag_mut().mapv_inplace(|v| v + self.reg);
        let s12 = c1.t().dot(&c2) * scale;
        let a = sym_inv_sqrt(&s11, self.reg * 0.5, linalg)?;
        let b = sym_inv_sqrt(&s22, self.reg * 0.5, linalg)?;
        let t = a.dot(&s12).dot(&b);
        let svd = linalg.svd(t.view())?;
        let k = self.components;
        let w1 = a.dot(&svd.u.slice(s![.., ..k]));
        let w2 = b.dot(&svd.vt.slice(s![..k, ..]).t());
        Ok(LinearCca {
            means: [m1, m2],
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

    /// The projection of `modality` (0 or 1): `d x k`.
    pub fn projection(&self, modality: usize) -> Option<&Array2<f64>> {
        self.projections.get(modality)
    }

    /// Canonical variates of `x` (`n x d` of `modality`): `n x k`.
    pub fn transform(&self, modality: usize, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        let (mean, w) = match (self.means.get(modality), self.projections.get(modality)) {
            (Some(m), Some(w)) => (m, w),
            _ => {
                return Err(BaselineError::Config(format!(
                    "linear CCA has modalities 0 and 1, not {modality}"
                )));
            }
        };
        if x.ncols() != w.nrows() {
            return Err(BaselineError::Shape(format!(
                "linear CCA for modality {modality} was fitted on {} features, got {}",
                w.nrows(),
                x.ncols()
            )));
        }
        Ok((&x - mean).dot(w))
    }

    /// The canonical variates of every item of `data` for `modality`, as features for linear
    /// evaluation (items as drawn in epoch 0; every item needs a label).
    pub fn features(
        &self,
        data: &dyn PairedDataset,
        modality: usize,
    ) -> mmssl_train::Result<mmssl_train::Features> {
        let (x, labels) = dataset_matrix(data, modality)?;
        let z = self.transform(modality, x.view())?;
        let labels = labels
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                l.ok_or_else(|| {
                    mmssl_train::TrainError::Config(format!(
                        "item {i} has no label; linear evaluation needs labels"
                    ))
                })
            })
            .collect::<mmssl_train::Result<Vec<usize>>>()?;
        Ok(mmssl_train::Features {
            dim: z.ncols(),
            values: z.iter().map(|&v| v as f32).collect(),
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
    if modality >= data.modalities() {
        return Err(mmssl_train::TrainError::Config(format!(
            "the dataset has {} modalities, not {}",
            data.modalities(),
            modality + 1
        )));
    }
    let d: usize = data.shape(modality).iter().product();
    let n = data.len();
    let mut values = Vec::with_capacity(n * d);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let item = data.get(i, 0)?;
        values.extend(item.views[modality].iter().map(|&v| v as f64));
        labels.push(item.label);
    }
    Array2::from_shape_vec((n, d), values)
        .map_err(|e| {
            mmssl_train::TrainError::Batch(format!("item sizes disagree with the shape: {e}"))
        })
        .map(|x| (x, labels))
}
