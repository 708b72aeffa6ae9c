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
use crate::volume::{Affine, Volume, non_finite};
use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

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

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
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

/// Opens a file, decompressing it when it starts with the gzip magic; the length is returned
/// for uncompressed files.
fn open_maybe_gz(path: &Path) -> Result<(Box<dyn Read>, Option<u64>)> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let mut r = BufReader::new(file);
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut r, &mut magic).map_err(|e| DataError::io(path, e))?;
    let prefix = std::io::Cursor::new(magic[..n].to_vec());
    if n == 2 && magic == GZIP_MAGIC {
        Ok((Box::new(GzDecoder::new(prefix.chain(r))), None))
    } else {
        Ok((Box::new(prefix.chain(r)), Some(len)))
    }
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

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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

/// The raw fields both header versions share, widened.
struct RawHeader {
    version: u8,
    big_endian: bool,
    separate: bool,
    dim: [i64; 8],
    datatype: i64,
    pixdim: [f64; 8],
    vox_offset: f64,
    scl_slope: f64,
    scl_inter: f64,
    xyzt_units: u32,
    qform_code: i32,
    sform_code: i32,
    quatern: [f64; 6],
    srow: [[f64; 4]; 3],
}

fn parse_header(path: &Path, head: &[u8]) -> Result<NiftiHeaderInfo> {
    let first = [head[0], head[1], head[2], head[3]];
    let (size, big_endian) = header_size(path, first)?;
    let raw = if size == 348 {
        raw_nifti1(path, head, big_endian)?
    } else {
        raw_nifti2(path, head, big_endian)?
    };
    validate(path, raw)
}

fn raw_nifti1(path: &Path, head: &[u8], big_endian: bool) -> Result<RawHeader> {
    let h = nifti::NiftiHeader::from_reader(head).map_err(|e| match e {
        nifti::NiftiError::InvalidFormat => DataError::format(
            path,
            format!(
                "wrong magic {:?} at byte 344 (expected \"n+1\" or \"ni1\")",
                String::from_utf8_lossy(&head[344..348.min(head.len())])
            ),
        ),
        other => DataError::format(path, format!("bad NIfTI-1 header: {other}")),
    })?;
    let parsed_be = h.endianness == nifti::Endianness::Big;
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

/// The NIfTI-2 header (`nifti2.h`): offsets of its fields in the 540 bytes.
fn raw_nifti2(path: &Path, head: &[u8], be: bool) -> Result<RawHeader> {
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
    let b8 = |at: usize| -> [u8; 8] {
        let mut a = [0u8; 8];
        a.copy_from_slice(&head[at..at + 8]);
        a
    };
    let b4 = |at: usize| -> [u8; 4] { [head[at], head[at + 1], head[at + 2], head[at + 3]] };
    let f64_at = |at: usize| {
        if be {
            f64::from_be_bytes(b8(at))
        } else {
            f64::from_le_bytes(b8(at))
        }
    };
    let i64_at = |at: usize| {
        if be {
            i64::from_be_bytes(b8(at))
        } else {
            i64::from_le_bytes(b8(at))
        }
    };
    let i32_at = |at: usize| {
        if be {
            i32::from_be_bytes(b4(at))
        } else {
            i32::from_le_bytes(b4(at))
        }
    };
    let i16_at = |at: usize| {
        let a = [head[at], head[at + 1]];
        if be {
            i16::from_be_bytes(a)
        } else {
            i16::from_le_bytes(a)
        }
    };
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

fn validate(path: &Path, h: RawHeader) -> Result<NiftiHeaderInfo> {
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
fn header_affine(path: &Path, h: &RawHeader, space: f64) -> Result<Affine> {
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
fn qform_affine(h: &RawHeader) -> Affine {
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

/// Skips to the data, reads exactly the bytes the header implies and converts them.
fn read_data(
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
fn decode(
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

/// Writes `volume` as a NIfTI-1 file of `f32` voxels (`.nii`, or gzip-compressed `.nii.gz`),
/// little-endian; the affine goes to the sform (`sform_code` 2, aligned anatomical) and, when
/// its linear part is a rotation times positive scales, to the qform as well; units are mm and
/// s; `pixdim[4]` is the TR of a 4D volume.
pub fn write_nifti(volume: &Volume, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let ok = name
        .as_deref()
        .is_some_and(|n| n.ends_with(".nii") || n.ends_with(".nii.gz"));
    if !ok {
        return Err(DataError::InvalidParameter {
            name: "output path",
            value: path.display().to_string(),
            reason: "NIfTI output names end with .nii or .nii.gz".into(),
        });
    }
    let a = volume.affine();
    let row = |r: usize| a.rows[r].map(|v| v as f32);
    let vs = volume.voxel_size();
    let mut header = nifti::NiftiHeader {
        sform_code: 2,
        qform_code: 0,
        srow_x: row(0),
        srow_y: row(1),
        srow_z: row(2),
        pixdim: [
            1.0,
            vs[0] as f32,
            vs[1] as f32,
            vs[2] as f32,
            volume.tr().unwrap_or(1.0) as f32,
            1.0,
            1.0,
            1.0,
        ],
        xyzt_units: 2 | 8,
        endianness: nifti::Endianness::Little,
        ..Default::default()
    };
    let mut descrip = b"mmssl".to_vec();
    descrip.resize(80, 0);
    header.descrip = descrip;
    if let Some((qfac, quat)) = quaternion(a) {
        header.qform_code = 2;
        header.pixdim[0] = qfac as f32;
        header.quatern_b = quat[0] as f32;
        header.quatern_c = quat[1] as f32;
        header.quatern_d = quat[2] as f32;
        header.quatern_x = a.rows[0][3] as f32;
        header.quatern_y = a.rows[1][3] as f32;
        header.quatern_z = a.rows[2][3] as f32;
        let cols = a.voxel_sizes();
        header.pixdim[1] = cols[0] as f32;
        header.pixdim[2] = cols[1] as f32;
        header.pixdim[3] = cols[2] as f32;
    }
    let [nx, ny, nz, nt] = volume.dims();
    if [nx, ny, nz, nt].iter().any(|&d| d > i16::MAX as usize) {
        return Err(DataError::InvalidParameter {
            name: "volume dimensions",
            value: format!("{:?}", volume.dims()),
            reason: "NIfTI-1 dimensions are at most 32767".into(),
        });
    }
    use ndarray::ShapeBuilder;
    let options = nifti::writer::WriterOptions::new(path).reference_header(&header);
    let written = if nt == 1 {
        let view = ndarray::ArrayView::from_shape((nx, ny, nz).f(), volume.data())
            .map_err(|e| DataError::format(path, format!("bad volume shape: {e}")))?;
        options.write_nifti(&view)
    } else {
        let view = ndarray::ArrayView::from_shape((nx, ny, nz, nt).f(), volume.data())
            .map_err(|e| DataError::format(path, format!("bad volume shape: {e}")))?;
        options.write_nifti(&view)
    };
    written.map_err(|e| match e {
        nifti::NiftiError::Io(io) => DataError::io(path, io),
        other => DataError::format(path, format!("cannot write NIfTI: {other}")),
    })
}

/// The qform quaternion `(b, c, d)` and `qfac` of an affine whose linear part is a rotation
/// (or a rotation with the third axis reflected) times positive column scales; `None` for
/// shears. The conversion follows `nifti_mat44_to_quatern` of `nifti1_io.c`.
fn quaternion(a: &Affine) -> Option<(f64, [f64; 3])> {
    let s = a.voxel_sizes();
    if s.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
        return None;
    }
    let mut r = [[0.0; 3]; 3];
    for (row, src) in r.iter_mut().zip(&a.rows) {
        for (j, v) in row.iter_mut().enumerate() {
            *v = src[j] / s[j];
        }
    }
    // Orthogonality of the normalised columns.
    for p in 0..3 {
        for q in p + 1..3 {
            let dot: f64 = (0..3).map(|i| r[i][p] * r[i][q]).sum();
            if dot.abs() > 1e-4 {
                return None;
            }
        }
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (a_, b, c, d);
    if trace > 0.5 {
        let a0 = 0.5 * trace.sqrt();
        a_ = a0;
        b = 0.25 * (r[2][1] - r[1][2]) / a0;
        c = 0.25 * (r[0][2] - r[2][0]) / a0;
        d = 0.25 * (r[1][0] - r[0][1]) / a0;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            let b0 = 0.5 * xd.sqrt();
            b = b0;
            c = 0.25 * (r[0][1] + r[1][0]) / b0;
            d = 0.25 * (r[0][2] + r[2][0]) / b0;
            a_ = 0.25 * (r[2][1] - r[1][2]) / b0;
        } else if yd > 1.0 {
            let c0 = 0.5 * yd.sqrt();
            c = c0;
            b = 0.25 * (r[0][1] + r[1][0]) / c0;
            d = 0.25 * (r[1][2] + r[2][1]) / c0;
            a_ = 0.25 * (r[0][2] - r[2][0]) / c0;
        } else {
            let d0 = 0.5 * zd.sqrt();
            d = d0;
            b = 0.25 * (r[0][2] + r[2][0]) / d0;
            c = 0.25 * (r[1][2] + r[2][1]) / d0;
            a_ = 0.25 * (r[1][0] - r[0][1]) / d0;
        }
    }
    let q = if a_ < 0.0 { [-b, -c, -d] } else { [b, c, d] };
    q.iter().all(|v| v.is_finite()).then_some((qfac, q))
}
