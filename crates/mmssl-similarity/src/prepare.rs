//! Input checks and column centring shared by every metric.

use crate::error::{Result, SimilarityError};
use ndarray::{Array2, ArrayView2, Axis};

/// Checks one matrix (non-empty, finite) and returns it with centred columns.
///
/// A matrix whose centred Frobenius norm is below `n * eps` times its raw norm (every column
/// constant up to rounding) is rejected as [`SimilarityError::ZeroVariance`].
pub(crate) fn centred(matrix: &'static str, a: ArrayView2<f64>) -> Result<Array2<f64>> {
    let n = a.nrows();
    crate::neighbours::check_finite(matrix, a)?;
    let mean = a
        .mean_axis(Axis(0))
        .expect("n >= 1 was checked by the caller");
    let c = &a - &mean;
    let raw = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let cen = c.iter().map(|x| x * x).sum::<f64>().sqrt();
    if cen == 0.0 || cen <= (n as f64) * f64::EPSILON * raw {
        return Err(SimilarityError::ZeroVariance { matrix });
    }
    Ok(c)
}

/// Checks a pair of matrices (`n >= needed`, same `n`) and centres both.
pub(crate) fn centred_pair(
    metric: &'static str,
    needed: usize,
    a: ArrayView2<f64>,
    b: ArrayView2<f64>,
) -> Result<(Array2<f64>, Array2<f64>)> {
    if a.nrows() != b.nrows() {
        return Err(SimilarityError::SampleMismatch {
            n_a: a.nrows(),
            n_b: b.nrows(),
        });
    }
    if a.nrows() < needed {
        return Err(SimilarityError::TooFewSamples {
            metric,
            needed,
            n: a.nrows(),
        });
    }
    Ok((centred("A", a)?, centred("B", b)?))
}
