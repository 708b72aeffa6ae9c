//! The pure-Rust implementation, on faer.

use super::{Eigh, Svd};
use crate::error::{Result, SimilarityError};
use faer::{Mat, MatRef, Side};
use ndarray::{Array1, Array2, ArrayView2};

fn to_faer(a: ArrayView2<f64>) -> Mat<f64> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[[i, j]])
}

fn to_nd(m: MatRef<'_, f64>) -> Array2<f64> {
    Array2::from_shape_fn((m.nrows(), m.ncols()), |(i, j)| m[(i, j)])
}

pub(super) fn thin_qr(a: ArrayView2<f64>) -> (Array2<f64>, Array2<f64>) {
    let qr = to_faer(a).qr();
    (to_nd(qr.compute_thin_Q().as_ref()), to_nd(qr.thin_R()))
}

pub(super) fn svd(a: ArrayView2<f64>) -> Result<Svd> {
    let svd = to_faer(a).thin_svd().map_err(|e| SimilarityError::Linalg {
        operation: "SVD (faer)",
        reason: format!("{e:?}"),
    })?;
    let s = svd.S().column_vector();
    Ok(Svd {
        u: to_nd(svd.U()),
        s: Array1::from_iter(s.iter().copied()),
        vt: to_nd(svd.V().transpose()),
    })
}

pub(super) fn singular_values(a: ArrayView2<f64>) -> Result<Array1<f64>> {
    let s = to_faer(a)
        .singular_values()
        .map_err(|e| SimilarityError::Linalg {
            operation: "singular values (faer)",
            reason: format!("{e:?}"),
        })?;
    Ok(Array1::from(s))
}

pub(super) fn eigh(a: ArrayView2<f64>) -> Result<Eigh> {
    let e = to_faer(a)
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| SimilarityError::Linalg {
            operation: "symmetric eigendecomposition (faer)",
            reason: format!("{e:?}"),
        })?;
    let values = e.S().column_vector();
    Ok(Eigh {
        values: Array1::from_iter(values.iter().copied()),
        vectors: to_nd(e.U()),
    })
}
