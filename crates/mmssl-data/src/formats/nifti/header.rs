//! The NIfTI-1 header, the checks both versions share and the affine.

use super::nifti2::raw_nifti2;
use super::*;
use crate::error::{DataError, Result};
use crate::neuro::volume::Affine;
use std::path::Path;

/// The raw fields both header versions share, widened.
pub(super) struct RawHeader {
    pub(super) version: u8,
    pub(super) big_endian: bool,
    pub(super) separate: bool,
    pub(super) dim: [i64; 8],
    pub(super) datatype: i64,
    pub(super) pixdim: [f64; 8],
    pub(super) vox_offset: f64,
    pub(super) scl_slope: f64,
    pub(super) scl_inter: f64,
    pub(super) xyzt_units: u32,
    pub(super) qform_code: i32,
    pub(super) sform_code: i32,
    pub(super) quatern: [f64; 6],
    pub(super) srow: [[f64; 4]; 3],
}

pub(super) fn parse_header(path: &Path, head: &[u8]) -> Result<NiftiHeaderInfo> {
    let first = [head[0], head[1], head[2], head[3]];
    let (size, big_endian) = header_size(path, first)?;
    let raw = if size == 348 {
        raw_nifti1(path, head, big_endian)?
    } else {
        raw_nifti2(path, head, big_endian)?
    };
    validate(path, raw)
}

pub(super) fn raw_nifti1(path: &Path, head: &[u8], big_endian: bool) -> Result<RawHeader> {
    let h = ::nifti::NiftiHeader::from_reader(head).map_err(|e| match e {
        ::nifti::NiftiError::InvalidFormat => DataError::format(
            path,
            format!(
                "wrong magic {:?} at byte 344 (expected \"n+1\" or \"ni1\")",
                String::from_utf8_lossy(&head[344..348.min(head.len())])
            ),
        ),
        other => DataError::format(path, format!("bad NIfTI-1 header: {other}")),
    })?;
    let parsed_be = h.endianness == ::nifti::Endianness::Big;
    if parsed_be != big_endian {
        return Err(DataError::format(
            path,
            "inconsistent byte order: sizeof_hdr and dim[0] disagree",
        ));
    }
    let mut dim = [0i64; 8];
    for (d, &v) in dim.iter_mut().zip(&h.dim) {
        // `dim` is a signed short in nifti1.h.
        *d = v as i16 as i64;
    }
    let mut pixdim = [0f64; 8];
    for (p, &v) in pixdim.iter_mut().zip(&h.pixdim) {
        *p = v as f64;
    }
    let f = |v: [f32; 4]| v.map(|x| x as f64);
    Ok(RawHeader {
        version: 1,
        big_endian,
        separate: &h.magic == b"ni1\0",
        dim,
        datatype: h.datatype as i64,
        pixdim,
        vox_offset: h.vox_offset as f64,
        scl_slope: h.scl_slope as f64,
        scl_inter: h.scl_inter as f64,
        xyzt_units: h.xyzt_units as u32,
        qform_code: h.qform_code as i32,
        sform_code: h.sform_code as i32,
        quatern: [
            h.quatern_b,
            h.quatern_c,
            h.quatern_d,
            h.quatern_x,
            h.quatern_y,
            h.quatern_z,
        ]
        .map(|x| x as f64),
        srow: [f(h.srow_x), f(h.srow_y), f(h.srow_z)],
    })
}

pub(super) fn validate(path: &Path, h: RawHeader) -> Result<NiftiHeaderInfo> {
    let bad = |problem: String| DataError::format(path, problem);
    let ndim = h.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(bad(format!(
            "dim[0] = {ndim}: the number of dimensions must be 1 to 7"
        )));
    }
    let ndim = ndim as usize;
    let mut dims = Vec::with_capacity(ndim);
    for k in 1..=ndim {
        let d = h.dim[k];
        if d < 1 {
            return Err(bad(format!("dim[{k}] = {d}: dimensions must be positive")));
        }
        dims.push(usize::try_from(d).map_err(|_| bad(format!("dim[{k}] = {d} is too large")))?);
    }
    if let Some(k) = dims.iter().skip(4).position(|&d| d > 1) {
        return Err(bad(format!(
            "dimensions {dims:?}: volumes with more than 4 dimensions (dim[{}] = {}) are not \
             supported",
            k + 5,
            dims[k + 4]
        )));
    }
    let voxel_type = VoxelType::from_code(h.datatype).map_err(bad)?;
    let count = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count
        .and_then(|c| c.checked_mul(voxel_type.bytes()))
        .is_none()
    {
        return Err(bad(format!("dimensions {dims:?} overflow")));
    }
    let header_len = if h.version == 1 { 348 } else { 540 };
    let vox_offset = if h.separate {
        // In a .hdr/.img pair the offset is into the .img file.
        h.vox_offset
    } else if h.vox_offset == 0.0 {
        // Some writers leave 0 in single files; the data then follows the 4 extension bytes.
        header_len as f64 + 4.0
    } else {
        h.vox_offset
    };
    if !(vox_offset.is_finite() && vox_offset >= 0.0 && vox_offset <= MAX_VOX_OFFSET as f64)
        || vox_offset.fract() != 0.0
    {
        return Err(bad(format!("invalid vox_offset {}", h.vox_offset)));
    }
    let vox_offset = vox_offset as u64;
    if !h.separate && vox_offset < header_len {
        return Err(bad(format!(
            "vox_offset {vox_offset} points inside the {header_len}-byte header"
        )));
    }
    let (scl_slope, scl_inter) = if h.scl_slope.is_finite() && h.scl_slope != 0.0 {
        (
            h.scl_slope,
            if h.scl_inter.is_finite() {
                h.scl_inter
            } else {
                0.0
            },
        )
    } else {
        (1.0, 0.0)
    };
    let space = match h.xyzt_units & 0x07 {
        1 => 1000.0, // metres
        3 => 1e-3,   // microns
        _ => 1.0,    // millimetres or unknown
    };
    let time = match h.xyzt_units & 0x38 {
        0 | 8 => Some(1.0), // unknown (taken as seconds) or seconds
        16 => Some(1e-3),
        24 => Some(1e-6),
        _ => None, // Hz, ppm, rad/s: not a time axis
    };
    let affine = header_affine(path, &h, space)?;
    let mut voxel_size = affine.voxel_sizes();
    for (a, v) in voxel_size.iter_mut().enumerate() {
        let p = h.pixdim[a + 1].abs() * space;
        if p.is_finite() && p > 0.0 {
            *v = p;
        }
    }
    let tr = match (dims.get(3), time) {
        (Some(&t), Some(unit)) if t > 1 => {
            let tr = h.pixdim[4] * unit;
            (tr.is_finite() && tr > 0.0).then_some(tr)
        }
        _ => None,
    };
    Ok(NiftiHeaderInfo {
        version: h.version,
        big_endian: h.big_endian,
        dims,
        voxel_type,
        voxel_size,
        vox_offset,
        scl_slope,
        scl_inter,
        qform_code: h.qform_code,
        sform_code: h.sform_code,
        affine,
        tr,
        separate_data: h.separate,
    })
}

/// The affine: sform, else qform, else pixdim scaling (`nifti1.h` methods 3, 2, 1).
pub(super) fn header_affine(path: &Path, h: &RawHeader, space: f64) -> Result<Affine> {
    let scaled = |mut a: Affine| {
        for row in a.rows.iter_mut().take(3) {
            for v in row.iter_mut() {
                *v *= space;
            }
        }
        a
    };
    let (what, affine) = if h.sform_code > 0 {
        ("sform", Affine::from_rows(h.srow))
    } else if h.qform_code > 0 {
        ("qform", qform_affine(h))
    } else {
        let mut s = [1.0; 3];
        for (a, v) in s.iter_mut().enumerate() {
            let p = h.pixdim[a + 1].abs();
            if p.is_finite() && p > 0.0 {
                *v = p;
            }
        }
        ("pixdim", Affine::scaling(s, [0.0; 3]))
    };
    let affine = scaled(affine);
    if affine.inverse().is_none() {
        return Err(DataError::format(
            path,
            format!(
                "the {what} affine {:?} is singular or not finite",
                affine.rows
            ),
        ));
    }
    Ok(affine)
}

/// The qform ("method 2" of `nifti1.h`): rotation from the quaternion `(a, b, c, d)` with
/// `a = sqrt(1 - b^2 - c^2 - d^2)`, columns scaled by `pixdim[1..4]` (the third by `qfac =
/// pixdim[0]`, taken as 1 unless it is -1), translation `qoffset`.
pub(super) fn qform_affine(h: &RawHeader) -> Affine {
    let [b, c, d, qx, qy, qz] = h.quatern;
    let (mut a, mut b, mut c, mut d) = (1.0 - (b * b + c * c + d * d), b, c, d);
    if a < 1e-7 {
        // A 180-degree rotation: a = 0 and (b, c, d) renormalised (as nifti1_io does).
        let n = (b * b + c * c + d * d).sqrt();
        if n > 0.0 && n.is_finite() {
            (b, c, d) = (b / n, c / n, d / n);
        }
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let qfac = if h.pixdim[0] == -1.0 { -1.0 } else { 1.0 };
    let mut s = [0.0; 3];
    for (k, v) in s.iter_mut().enumerate() {
        let p = h.pixdim[k + 1];
        *v = if p.is_finite() && p > 0.0 { p } else { 1.0 };
    }
    s[2] *= qfac;
    let t = [qx, qy, qz];
    let mut top = [[0.0; 4]; 3];
    for i in 0..3 {
        for j in 0..3 {
            top[i][j] = r[i][j] * s[j];
        }
        top[i][3] = t[i];
    }
    Affine::from_rows(top)
}
