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
    // A regular file only (`/dev/zero` or a FIFO would be read without end), and no more than
    // its size.
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail(
            "not a regular file (a folder, a device, a FIFO or a socket)".into(),
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, meta.len()), &mut bytes)
        })
        .map_err(|e| fail(e.to_string()))?;
    // A header may claim any shape: compare it with the data before anything is allocated.
    check_claimed_size(&bytes).map_err(fail)?;
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

/// Checks that the data a `.npy` header describes (its `shape` times the element size of its
/// `descr`) fits in the file. Headers this cannot read are left to the reader's own errors.
fn check_claimed_size(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Ok(());
    }
    let (len_bytes, start) = match bytes[6] {
        1 => (2, 10),
        _ => (4, 12),
    };
    if bytes.len() < start {
        return Ok(());
    }
    let header_len = match len_bytes {
        2 => u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
        _ => u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
    };
    let Some(header) = bytes.get(start..start.saturating_add(header_len)) else {
        return Ok(());
    };
    let header = String::from_utf8_lossy(header);
    let item = header
        .split("'descr'")
        .nth(1)
        .and_then(|r| r.split('\'').nth(1))
        .and_then(|d| d.trim_start_matches(['<', '>', '|', '=']).get(1..))
        .and_then(|n| n.parse::<u64>().ok());
    let shape: Option<Vec<u64>> = header
        .split("'shape'")
        .nth(1)
        .and_then(|r| Some(&r[r.find('(')? + 1..r.find(')')?]))
        .and_then(|dims| {
            dims.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| d.trim_end_matches('L').parse::<u64>().ok())
                .collect::<Option<Vec<u64>>>()
        });
    let (Some(item), Some(shape)) = (item, shape) else {
        return Ok(());
    };
    let available = (bytes.len() - (start + header_len).min(bytes.len())) as u64;
    let claimed = shape.iter().try_fold(item, |acc, &d| acc.checked_mul(d));
    match claimed {
        Some(c) if c <= available => Ok(()),
        _ => Err(format!(
            "the header claims shape {shape:?} of {item}-byte elements ({}), but the file holds \
             only {available} bytes of data: it is truncated or its header is corrupt",
            claimed.map_or("more than 2^64 bytes".into(), |c| format!("{c} bytes"))
        )),
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
