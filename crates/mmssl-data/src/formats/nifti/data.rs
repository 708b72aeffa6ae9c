//! The voxel data: read exactly what the header implies and convert it to `f32`.

use super::*;
use crate::error::{DataError, Result};
use crate::neuro::volume::{Volume, non_finite};
use std::io::Read;
use std::path::Path;

/// Skips to the data, reads exactly the bytes the header implies and converts them.
pub(super) fn read_data(
    path: &Path,
    info: &NiftiHeaderInfo,
    mut r: impl Read,
    consumed: u64,
    raw_len: Option<u64>,
    header_path: &Path,
) -> Result<Volume> {
    let need = info
        .data_bytes()
        .ok_or_else(|| DataError::format(header_path, "dimensions overflow"))?;
    let skip = info.vox_offset.checked_sub(consumed).ok_or_else(|| {
        DataError::format(path, "vox_offset points inside the header".to_string())
    })?;
    if let Some(len) = raw_len {
        let have = len.saturating_sub(info.vox_offset);
        if len < info.vox_offset || have < need as u64 {
            return Err(DataError::format(
                path,
                format!(
                    "truncated: dimensions {:?} of {:?} need {need} data bytes from offset {} \
                     but the file holds {have}",
                    info.dims, info.voxel_type, info.vox_offset
                ),
            ));
        }
    }
    let skipped = std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink())
        .map_err(|e| corrupt(path, e))?;
    if skipped < skip {
        return Err(DataError::format(
            path,
            format!(
                "truncated: the file ends before the data offset {}",
                info.vox_offset
            ),
        ));
    }
    // Reserve fully only what the file's length has vouched for; compressed data grows as it
    // is actually decompressed.
    let reserve = if raw_len.is_some() {
        need
    } else {
        need.min(1 << 24)
    };
    let mut bytes = Vec::with_capacity(reserve);
    (&mut r)
        .take(need as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| corrupt(path, e))?;
    if bytes.len() < need {
        return Err(DataError::format(
            path,
            format!(
                "truncated: dimensions {:?} of {:?} need {need} data bytes, found {}",
                info.dims,
                info.voxel_type,
                bytes.len()
            ),
        ));
    }
    let dims = info.dims4();
    let source = header_path.display().to_string();
    let data = decode(info, &bytes, dims, &source)?;
    drop(bytes);
    let v = Volume::new_4d(data, dims, info.affine, info.tr, source)?;
    v.with_voxel_size(info.voxel_size)
}

/// Converts stored values to `f32` with the header's scaling, rejecting non-finite results.
pub(super) fn decode(
    info: &NiftiHeaderInfo,
    bytes: &[u8],
    dims: [usize; 4],
    source: &str,
) -> Result<Vec<f32>> {
    let (slope, inter) = (info.scl_slope, info.scl_inter);
    let be = info.big_endian;
    let scaled = slope != 1.0 || inter != 0.0;
    let mut out = Vec::with_capacity(bytes.len() / info.voxel_type.bytes());
    macro_rules! run {
        ($t:ty, $n:expr) => {{
            for c in bytes.chunks_exact($n) {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                let v = if be {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                };
                let x = if scaled {
                    (v as f64 * slope + inter) as f32
                } else {
                    v as f32
                };
                if !x.is_finite() {
                    let raw = if scaled {
                        v as f64 * slope + inter
                    } else {
                        v as f64
                    };
                    return Err(non_finite(source, out.len(), dims, raw));
                }
                out.push(x);
            }
        }};
    }
    match info.voxel_type {
        VoxelType::U8 => run!(u8, 1),
        VoxelType::I8 => run!(i8, 1),
        VoxelType::I16 => run!(i16, 2),
        VoxelType::U16 => run!(u16, 2),
        VoxelType::I32 => run!(i32, 4),
        VoxelType::U32 => run!(u32, 4),
        VoxelType::I64 => run!(i64, 8),
        VoxelType::U64 => run!(u64, 8),
        VoxelType::F32 => run!(f32, 4),
        VoxelType::F64 => run!(f64, 8),
    }
    Ok(out)
}
