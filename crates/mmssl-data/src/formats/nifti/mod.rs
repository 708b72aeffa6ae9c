//! Reading and writing NIfTI volumes (`.nii`, `.nii.gz`, and `.hdr`/`.img` pairs).
//!
//! Follows the NIfTI-1 definition (Cox et al., "A (sort of) new image data format standard:
//! NIfTI-1", 2004; the annotated `nifti1.h`) and NIfTI-2 (the `nifti2.h` of the NIfTI Data
//! Format Working Group, 2011): the 348-byte NIfTI-1 header is parsed by the `nifti` crate;
//! the 540-byte NIfTI-2 header (64-bit dimensions, `f64` fields) is parsed here. Both byte
//! orders are read (detected from `sizeof_hdr`).
//!
//! - Data types: `u8`, `i8`, `i16`, `u16`, `i32`, `u32`, `i64`, `u64`, `f32`, `f64`; complex,
//!   RGB and 128-bit types are rejected with an error naming the type.
//! - Scaling: `value = scl_slope * stored + scl_inter` when `scl_slope` is finite and
//!   non-zero (the standard's rule), computed in `f64`.
//! - Affine: the `sform` when `sform_code > 0`, else the `qform` (quaternion, `nifti1.h`
//!   "method 2") when `qform_code > 0`, else `diag(pixdim[1..4])` ("method 1"). Spatial units
//!   (metres, microns) are converted to millimetres.
//! - TR: `pixdim[4]` of a 4D series, in seconds after honouring the time units (`ms`, `us`;
//!   unknown units are taken as seconds).
//! - Safety: the data length implied by the header is checked against the file's length before
//!   anything large is allocated; for gzip files memory grows only with data actually
//!   decompressed. NaN or infinite voxels are an error naming the voxel.

use crate::error::{DataError, Result};
use crate::formats::gzip::{GZIP_MAGIC, open_maybe_gz, read_up_to};
use crate::neuro::volume::{Affine, Volume};
use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

mod data;
mod header;
mod nifti2;
mod write;

use data::read_data;
use header::{RawHeader, parse_header};
pub use write::write_nifti;

/// The storage type of the voxels of a NIfTI file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoxelType {
    /// `DT_UINT8` (2).
    U8,
    /// `DT_INT8` (256).
    I8,
    /// `DT_INT16` (4).
    I16,
    /// `DT_UINT16` (512).
    U16,
    /// `DT_INT32` (8).
    I32,
    /// `DT_UINT32` (768).
    U32,
    /// `DT_INT64` (1024).
    I64,
    /// `DT_UINT64` (1280).
    U64,
    /// `DT_FLOAT32` (16).
    F32,
    /// `DT_FLOAT64` (64).
    F64,
}

impl VoxelType {
    /// From the header's `datatype` code; unsupported codes are an error naming the type.
    pub fn from_code(code: i64) -> std::result::Result<Self, String> {
        Ok(match code {
            2 => VoxelType::U8,
            256 => VoxelType::I8,
            4 => VoxelType::I16,
            512 => VoxelType::U16,
            8 => VoxelType::I32,
            768 => VoxelType::U32,
            1024 => VoxelType::I64,
            1280 => VoxelType::U64,
            16 => VoxelType::F32,
            64 => VoxelType::F64,
            other => {
                let name = match other {
                    0 => "unknown (0)",
                    1 => "binary (1 bit per voxel)",
                    32 => "complex64",
                    128 => "RGB24",
                    1536 => "float128",
                    1792 => "complex128",
                    2048 => "complex256",
                    2304 => "RGBA32",
                    _ => "not a NIfTI data type",
                };
                return Err(format!(
                    "datatype {other} ({name}) is not supported; supported: u8, i8, i16, u16, \
                     i32, u32, i64, u64, f32, f64"
                ));
            }
        })
    }

    /// The NIfTI `datatype` code.
    pub fn code(self) -> i16 {
        match self {
            VoxelType::U8 => 2,
            VoxelType::I8 => 256,
            VoxelType::I16 => 4,
            VoxelType::U16 => 512,
            VoxelType::I32 => 8,
            VoxelType::U32 => 768,
            VoxelType::I64 => 1024,
            VoxelType::U64 => 1280,
            VoxelType::F32 => 16,
            VoxelType::F64 => 64,
        }
    }

    /// Bytes per voxel.
    pub fn bytes(self) -> usize {
        match self {
            VoxelType::U8 | VoxelType::I8 => 1,
            VoxelType::I16 | VoxelType::U16 => 2,
            VoxelType::I32 | VoxelType::U32 | VoxelType::F32 => 4,
            VoxelType::I64 | VoxelType::U64 | VoxelType::F64 => 8,
        }
    }
}

/// What a NIfTI header says, validated and in millimetres and seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NiftiHeaderInfo {
    /// 1 (348-byte header) or 2 (540-byte header).
    pub version: u8,
    /// Whether the file is big-endian.
    pub big_endian: bool,
    /// The dimensions `dim[1..=dim[0]]`.
    pub dims: Vec<usize>,
    /// The storage type.
    pub voxel_type: VoxelType,
    /// Voxel sizes in millimetres (`|pixdim[1..4]|`, or the affine's column lengths where
    /// `pixdim` is zero or invalid).
    pub voxel_size: [f64; 3],
    /// Byte offset of the data in the data file.
    pub vox_offset: u64,
    /// The scaling slope applied (1 when the header has none).
    pub scl_slope: f64,
    /// The scaling intercept applied (0 when the header has no slope).
    pub scl_inter: f64,
    /// `qform_code`.
    pub qform_code: i32,
    /// `sform_code`.
    pub sform_code: i32,
    /// The voxel-to-world affine in millimetres (sform, else qform, else pixdim scaling).
    pub affine: Affine,
    /// The repetition time in seconds, for 4D series whose header gives one.
    pub tr: Option<f64>,
    /// Whether the data lives in a separate `.img` file (magic `ni1` / `ni2`).
    pub separate_data: bool,
}

impl NiftiHeaderInfo {
    /// The number of voxels, checked for overflow.
    pub fn voxel_count(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// The number of data bytes the header implies, checked for overflow.
    pub fn data_bytes(&self) -> Option<usize> {
        self.voxel_count()?.checked_mul(self.voxel_type.bytes())
    }

    /// `[x, y, z, t]` (missing dimensions are 1).
    pub fn dims4(&self) -> [usize; 4] {
        let mut d = [1; 4];
        for (o, &v) in d.iter_mut().zip(&self.dims) {
            *o = v;
        }
        d
    }
}

/// Offsets past this are not credible for any real file.
const MAX_VOX_OFFSET: u64 = 1 << 32;

/// Reads a NIfTI volume (`.nii`, `.nii.gz`, or a `.hdr` whose data is in the `.img` /
/// `.img.gz` beside it). Compression is detected from the content, not the name.
pub fn read_nifti(path: impl AsRef<Path>) -> Result<Volume> {
    let path = path.as_ref();
    let (head, info, reader, raw_len) = open_header(path)?;
    if info.separate_data {
        drop(reader);
        let img = companion_image(path)?;
        let (r, raw_len) = open_maybe_gz(&img)?;
        return read_data(&img, &info, r, 0, raw_len, path);
    }
    read_data(path, &info, reader, head, raw_len, path)
}

/// Reads a NIfTI volume held in memory (`.nii` bytes, gzip-compressed or not); `name` labels
/// errors. A header-only (`ni1`/`ni2`) file is an error: its data is in another file.
pub fn read_nifti_bytes(name: impl AsRef<Path>, bytes: &[u8]) -> Result<Volume> {
    let path = name.as_ref();
    let (mut r, raw_len): (Box<dyn Read + '_>, Option<u64>) = if bytes.starts_with(&GZIP_MAGIC) {
        (Box::new(GzDecoder::new(bytes)), None)
    } else {
        (Box::new(bytes), Some(bytes.len() as u64))
    };
    let head = read_header_bytes(path, &mut r)?;
    let info = parse_header(path, &head)?;
    if info.separate_data {
        return Err(DataError::format(
            path,
            "this is a header-only NIfTI file (magic ni1/ni2): its data is in a separate .img \
             file; read it with read_nifti on the .hdr path",
        ));
    }
    read_data(path, &info, r, head.len() as u64, raw_len, path)
}

/// Reads and validates the header of a NIfTI file without reading the data.
pub fn read_nifti_header(path: impl AsRef<Path>) -> Result<NiftiHeaderInfo> {
    open_header(path.as_ref()).map(|(_, info, _, _)| info)
}

/// Parses and validates a NIfTI header from the first bytes of a file (gzip-compressed or
/// not; the data need not follow); `name` labels errors.
pub fn parse_nifti_header(name: impl AsRef<Path>, bytes: &[u8]) -> Result<NiftiHeaderInfo> {
    let path = name.as_ref();
    let head = if bytes.starts_with(&GZIP_MAGIC) {
        read_header_bytes(path, &mut GzDecoder::new(bytes))?
    } else {
        read_header_bytes(path, &mut &bytes[..])?
    };
    parse_header(path, &head)
}

type Opened = (u64, NiftiHeaderInfo, Box<dyn Read>, Option<u64>);

fn open_header(path: &Path) -> Result<Opened> {
    let (mut r, raw_len) = open_maybe_gz(path)?;
    let head = read_header_bytes(path, &mut r)?;
    let info = parse_header(path, &head)?;
    Ok((head.len() as u64, info, r, raw_len))
}

fn companion_image(hdr: &Path) -> Result<PathBuf> {
    let name = hdr.file_name().map(|n| n.to_string_lossy().into_owned());
    let stem = name.as_deref().and_then(|n| {
        n.strip_suffix(".hdr.gz")
            .or_else(|| n.strip_suffix(".hdr"))
            .or_else(|| n.strip_suffix(".HDR"))
    });
    let Some(stem) = stem else {
        return Err(DataError::format(
            hdr,
            "a header-only NIfTI file (magic ni1/ni2) must be named .hdr or .hdr.gz so that its \
             .img can be found",
        ));
    };
    for ext in ["img", "img.gz", "IMG"] {
        let p = hdr.with_file_name(format!("{stem}.{ext}"));
        if p.exists() {
            return Ok(p);
        }
    }
    Err(DataError::Missing {
        path: hdr.with_file_name(format!("{stem}.img")),
        hint: format!(
            "the header {} says its data is in a separate .img file (or .img.gz)",
            hdr.display()
        ),
    })
}

fn corrupt(path: &Path, e: std::io::Error) -> DataError {
    DataError::format(path, format!("corrupt or unreadable data: {e}"))
}

/// Reads exactly one header (348 or 540 bytes, decided by `sizeof_hdr`).
fn read_header_bytes(path: &Path, r: &mut impl Read) -> Result<Vec<u8>> {
    let mut first = [0u8; 4];
    let n = read_up_to(r, &mut first).map_err(|e| corrupt(path, e))?;
    if n < 4 {
        return Err(DataError::format(
            path,
            format!("truncated: {n} bytes, too short to hold a NIfTI header"),
        ));
    }
    let size = header_size(path, first)?.0;
    let mut head = vec![0u8; size];
    head[..4].copy_from_slice(&first);
    let got = read_up_to(r, &mut head[4..]).map_err(|e| corrupt(path, e))?;
    if got < size - 4 {
        return Err(DataError::format(
            path,
            format!("truncated header: {} of the {size} header bytes", got + 4),
        ));
    }
    Ok(head)
}

/// `(header size, big endian)` from the first four bytes.
fn header_size(path: &Path, first: [u8; 4]) -> Result<(usize, bool)> {
    let le = i32::from_le_bytes(first);
    let be = i32::from_be_bytes(first);
    match (le, be) {
        (348, _) => Ok((348, false)),
        (_, 348) => Ok((348, true)),
        (540, _) => Ok((540, false)),
        (_, 540) => Ok((540, true)),
        _ => Err(DataError::format(
            path,
            format!(
                "not a NIfTI file: sizeof_hdr is {le} (expected 348 for NIfTI-1 or 540 for \
                 NIfTI-2, in either byte order)"
            ),
        )),
    }
}
