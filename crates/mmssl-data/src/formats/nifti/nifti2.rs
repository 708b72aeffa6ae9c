//! The NIfTI-2 header (540 bytes: 64-bit dimensions, `f64` fields).

use super::*;
use crate::error::{DataError, Result};
use std::path::Path;

/// The NIfTI-2 header (`nifti2.h`): offsets of its fields in the 540 bytes.
pub(super) fn raw_nifti2(path: &Path, head: &[u8], be: bool) -> Result<RawHeader> {
    let magic = &head[4..12];
    let separate = match &magic[..4] {
        b"n+2\0" => false,
        b"ni2\0" => true,
        _ => {
            return Err(DataError::format(
                path,
                format!(
                    "wrong magic {:?} at byte 4 of a NIfTI-2 header (expected \"n+2\" or \"ni2\")",
                    String::from_utf8_lossy(&magic[..4])
                ),
            ));
        }
    };
    if &magic[4..] != b"\r\n\x1a\n" {
        return Err(DataError::format(
            path,
            "corrupt NIfTI-2 magic: bytes 8-11 should be \\r\\n\\x1a\\n (the file may have been \
             transferred in text mode)",
        ));
    }
    // A reader of the `$n`-byte `$t` at a byte offset, in the header's byte order.
    macro_rules! reader {
        ($t:ty, $n:literal) => {
            |at: usize| {
                let mut bytes = [0u8; $n];
                bytes.copy_from_slice(&head[at..at + $n]);
                if be {
                    <$t>::from_be_bytes(bytes)
                } else {
                    <$t>::from_le_bytes(bytes)
                }
            }
        };
    }
    let (f64_at, i64_at) = (reader!(f64, 8), reader!(i64, 8));
    let (i32_at, i16_at) = (reader!(i32, 4), reader!(i16, 2));
    let mut dim = [0i64; 8];
    for (k, d) in dim.iter_mut().enumerate() {
        *d = i64_at(16 + 8 * k);
    }
    let mut pixdim = [0f64; 8];
    for (k, p) in pixdim.iter_mut().enumerate() {
        *p = f64_at(104 + 8 * k);
    }
    let row = |at: usize| [f64_at(at), f64_at(at + 8), f64_at(at + 16), f64_at(at + 24)];
    let vox_offset = i64_at(168);
    Ok(RawHeader {
        version: 2,
        big_endian: be,
        separate,
        dim,
        datatype: i16_at(12) as i64,
        pixdim,
        vox_offset: vox_offset as f64,
        scl_slope: f64_at(176),
        scl_inter: f64_at(184),
        xyzt_units: i32_at(500) as u32,
        qform_code: i32_at(344),
        sform_code: i32_at(348),
        quatern: [
            f64_at(352),
            f64_at(360),
            f64_at(368),
            f64_at(376),
            f64_at(384),
            f64_at(392),
        ],
        srow: [row(400), row(432), row(464)],
    })
}
