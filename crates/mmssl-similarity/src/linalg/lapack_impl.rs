//! The LAPACK implementation, through ndarray-linalg (cargo feature `lapack`).

use super::{Eigh, Svd};
use crate::error::{Result, SimilarityError};
use ndarray::{Array1, Array2, ArrayView2};
use ndarray_linalg::{Eigh as _, JobSvd, QR, SVDDC, UPLO};

fn err(operation: &'static str) -> impl Fn(ndarray_linalg::error::LinalgError) -> SimilarityError {
    move |e| SimilarityError::Linalg {
        operation,
        reason: e.to_string(),
    }
}

pub(super) fn thin_qr(a: ArrayView2<f64>) -> Result<(Array2<f64>, Array2<f64>)> {
    a.to_owned().qr().map_err(err("QR (LAPACK)"))
}

pub(super) fn svd(a: ArrayView2<f64>) -> Result<Svd> {
    let (u, s, vt) = a
        .to_owned()
        .svddc(JobSvd::Some)
        .map_err(err("SVD (LAPACK)"))?;
    match (u, vt) {
        (Some(u), Some(vt)) => Ok(Svd { u, s, vt }),
        _ => Err(SimilarityError::Linalg {
            operation: "SVD (LAPACK)",
            reason: "singular vectors were not returned".into(),
        }),
    }
}

pub(super) fn singular_values(a: ArrayView2<f64>) -> Result<Array1<f64>> {
    let (_, s, _) = a
        .to_owned()
        .svddc(JobSvd::None)
        .map_err(err("singular values (LAPACK)"))?;
    Ok(s)
}

pub(super) fn eigh(a: ArrayView2<f64>) -> Result<Eigh> {
    let (values, vectors) = a
        .to_owned()
        .eigh(UPLO::Lower)
        .map_err(err("symmetric eigendecomposition (LAPACK)"))?;
    Ok(Eigh { values, vectors })
}
