//! Reading representation matrices from NumPy `.npy` files.

use crate::error::{Result, SimilarityError};
use ndarray::Array2;
use ndarray_npy::{ReadNpyError, ReadNpyExt};
use std::path::Path;

/// Reads a 2-D `.npy` array of `f64` or `f32` (C or Fortran order) as an `f64` matrix.
///
/// Every failure names the file: missing, not `.npy`, truncated, not 2-D, or of another
/// element type (the message gives the type found).
pub fn read_matrix(path: impl AsRef<Path>) -> Result<Array2<f64>> {
    let path = path.as_ref();
    let fail = |reason: String| SimilarityError::Npy {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    match Array2::<f64>::read_npy(bytes.as_slice()) {
        Ok(a) => Ok(a),
        Err(ReadNpyError::WrongDescriptor(_)) => match Array2::<f32>::read_npy(bytes.as_slice()) {
            Ok(a) => Ok(a.mapv(f64::from)),
            Err(ReadNpyError::WrongDescriptor(d)) => Err(fail(format!(
                "element type {d} is not supported; save the array as float32 or float64"
            ))),
            Err(e) => Err(fail(describe(e))),
        },
        Err(e) => Err(fail(describe(e))),
    }
}

fn describe(e: ReadNpyError) -> String {
    match e {
        ReadNpyError::WrongNdim(_, found) => {
            format!("expected a 2-D array (samples x features), found {found} dimensions")
        }
        ReadNpyError::MissingData => "the file is truncated: it holds less data than its header \
                                      describes"
            .into(),
        ReadNpyError::ParseHeader(h) => format!("not a valid .npy file ({h})"),
        other => other.to_string(),
    }
}
