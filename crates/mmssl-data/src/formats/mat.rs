//! MATLAB v5 `.mat` files, as SVHN ships them (`train_32x32.mat`, `test_32x32.mat`):
//! `X` uint8 `[32, 32, 3, N]` in column-major order, `y` `[N, 1]` with label 10 for digit 0.
//!
//! The reader follows MathWorks' "MAT-File Format" (v5 / v7): a 128-byte header, then data
//! elements, each either an 8-byte tag plus data padded to 8 bytes or a small element packed in
//! 8 bytes; `miCOMPRESSED` elements hold one zlib-compressed element; `miMATRIX` elements hold
//! array flags, dimensions, the name and the real part. v7.3 files are HDF5 and are rejected
//! with a message saying how to convert them.

use crate::error::{DataError, Result};
use crate::images::ImageSet;
use flate2::read::ZlibDecoder;
use std::io::Read;
use std::path::Path;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// A numeric MATLAB array.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    /// The variable's name.
    pub name: String,
    /// Dimensions (MATLAB order; the data is column-major).
    pub dims: Vec<usize>,
    /// The real part.
    pub data: MatData,
}

/// The values of a [`MatArray`]: bytes kept as bytes, everything else as `f64`.
#[derive(Debug, Clone, PartialEq)]
pub enum MatData {
    /// Stored as `miUINT8`.
    U8(Vec<u8>),
    /// Any other numeric storage type, converted.
    F64(Vec<f64>),
}

impl MatData {
    fn len(&self) -> usize {
        match self {
            MatData::U8(v) => v.len(),
            MatData::F64(v) => v.len(),
        }
    }
}

struct Cursor<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl<'a> Cursor<'a> {
    fn err(&self, problem: impl Into<String>) -> DataError {
        DataError::format(self.path, problem)
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = [
            self.buf[at],
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
        ];
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Next element: (type, payload), advancing past padding.
    fn element(&mut self) -> Result<(u32, &'a [u8])> {
        if self.buf.len() - self.pos < 8 {
            return Err(self.err(format!("truncated data element tag at byte {}", self.pos)));
        }
        let first = self.u32_at(self.pos);
        let (ty, size, start, padded) = if first >> 16 != 0 {
            // Small data element: type and size in one word, data in the next 4 bytes.
            (first & 0xffff, (first >> 16) as usize, self.pos + 4, 4)
        } else {
            let size = self.u32_at(self.pos + 4) as usize;
            (first, size, self.pos + 8, size)
        };
        if size
            > (if first >> 16 != 0 {
                4
            } else {
                self.buf.len() - start
            })
        {
            return Err(self.err(format!(
                "data element at byte {} declares {size} bytes, beyond the end of the data",
                self.pos
            )));
        }
        let payload = &self.buf[start..start + size];
        let next = if first >> 16 != 0 {
            start + padded
        } else if ty == MI_COMPRESSED {
            start + size
        } else {
            start + size.div_ceil(8) * 8
        };
        self.pos = next.min(self.buf.len());
        Ok((ty, payload))
    }
}

/// Reads every numeric array of a MATLAB v5/v7 `.mat` file (other variables are skipped).
pub fn read_mat(path: impl AsRef<Path>) -> Result<Vec<MatArray>> {
    let path = path.as_ref();
    let bytes = crate::files::read_bytes(path).map_err(|e| DataError::io(path, e))?;
    read_mat_bytes(path, &bytes)
}

/// Parses a MATLAB v5/v7 `.mat` file held in memory, like [`read_mat`]; `name` labels errors.
pub fn read_mat_bytes(name: impl AsRef<Path>, bytes: &[u8]) -> Result<Vec<MatArray>> {
    let path = name.as_ref();
    if bytes.len() >= 8 && bytes.starts_with(b"\x89HDF\r\n\x1a\n")
        || bytes.len() >= 19 && bytes.starts_with(b"MATLAB 7.3 MAT-file")
        || bytes.len() > 520 && &bytes[512..520] == b"\x89HDF\r\n\x1a\n"
    {
        return Err(DataError::format(
            path,
            "this is a MATLAB v7.3 (HDF5) file, which is not supported; re-save it in MATLAB with \
             `save(file, '-v7')` or in Python with scipy.io.savemat (format '5')",
        ));
    }
    if bytes.len() < 128 || !bytes.starts_with(b"MATLAB 5.0 MAT-file") {
        return Err(DataError::format(
            path,
            "not a MATLAB v5 .mat file (the header does not start with 'MATLAB 5.0 MAT-file')",
        ));
    }
    let big_endian = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        other => {
            return Err(DataError::format(
                path,
                format!("bad endian indicator {other:?} in the .mat header"),
            ));
        }
    };
    let mut top = Cursor {
        path,
        buf: bytes,
        pos: 128,
        big_endian,
    };
    let mut arrays = Vec::new();
    while top.pos < bytes.len() {
        let (ty, payload) = top.element()?;
        match ty {
            MI_MATRIX => arrays.extend(matrix(path, payload, big_endian)?),
            MI_COMPRESSED => {
                let inner = inflate(path, payload, big_endian)?;
                let mut c = Cursor {
                    path,
                    buf: &inner,
                    pos: 0,
                    big_endian,
                };
                let (ty, payload) = c.element()?;
                if ty == MI_MATRIX {
                    arrays.extend(matrix(path, payload, big_endian)?);
                }
            }
            _ => {}
        }
    }
    Ok(arrays)
}

/// Decompresses one `miCOMPRESSED` payload. Memory grows only with data actually produced, up
/// to the size the inner element's tag declares.
fn inflate(path: &Path, payload: &[u8], big_endian: bool) -> Result<Vec<u8>> {
    let mut z = ZlibDecoder::new(payload);
    let mut tag = [0u8; 8];
    z.read_exact(&mut tag)
        .map_err(|e| DataError::format(path, format!("corrupt compressed element: {e}")))?;
    let word = |b: [u8; 4]| {
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let size = word([tag[4], tag[5], tag[6], tag[7]]) as u64;
    let mut out = tag.to_vec();
    z.take(size)
        .read_to_end(&mut out)
        .map_err(|e| DataError::format(path, format!("corrupt compressed element: {e}")))?;
    if (out.len() as u64) < 8 + size {
        return Err(DataError::format(
            path,
            format!(
                "compressed element is truncated: {} of {size} bytes",
                out.len() - 8
            ),
        ));
    }
    Ok(out)
}

fn matrix(path: &Path, payload: &[u8], big_endian: bool) -> Result<Option<MatArray>> {
    if payload.is_empty() {
        return Ok(None); // an empty matrix placeholder
    }
    let mut c = Cursor {
        path,
        buf: payload,
        pos: 0,
        big_endian,
    };
    let (_, flags) = c.element()?;
    if flags.len() < 8 {
        return Err(c.err("array flags element is too short"));
    }
    let word = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    };
    let class = word(&flags[0..4]) & 0xff;
    // 1 cell, 2 struct, 3 object, 4 char, 5 sparse: not numeric arrays.
    if !(6..=15).contains(&class) {
        return Ok(None);
    }
    let (dty, dims_raw) = c.element()?;
    if dty != MI_INT32 || dims_raw.len() % 4 != 0 || dims_raw.is_empty() {
        return Err(c.err("bad dimensions element in a matrix"));
    }
    let dims: Vec<usize> = dims_raw
        .chunks(4)
        .map(|b| word(b) as i32)
        .map(|d| d.max(0) as usize)
        .collect();
    let (_, name) = c.element()?;
    let name = String::from_utf8_lossy(name)
        .trim_end_matches('\0')
        .to_string();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| c.err(format!("dimensions {dims:?} of `{name}` overflow")))?;
    let (ty, raw) = c.element()?;
    let data = numeric(path, &name, ty, raw, big_endian)?;
    let stored = data.len();
    if stored != count {
        let what =
            format!("`{name}` declares dimensions {dims:?} ({count} values) but stores {stored}");
        return Err(DataError::format(path, what));
    }
    Ok(Some(MatArray { name, dims, data }))
}

fn numeric(path: &Path, name: &str, ty: u32, raw: &[u8], be: bool) -> Result<MatData> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {{
            if raw.len() % $n != 0 {
                return Err(DataError::format(
                    path,
                    format!(
                        "`{name}`: {} bytes is not a whole number of values",
                        raw.len()
                    ),
                ));
            }
            MatData::F64(
                raw.chunks($n)
                    .map(|b| {
                        let a: [u8; $n] = b.try_into().expect("chunk size");
                        (if be {
                            <$t>::from_be_bytes(a)
                        } else {
                            <$t>::from_le_bytes(a)
                        }) as f64
                    })
                    .collect(),
            )
        }};
    }
    Ok(match ty {
        MI_UINT8 => MatData::U8(raw.to_vec()),
        MI_INT8 => MatData::F64(raw.iter().map(|&b| b as i8 as f64).collect()),
        MI_INT16 => conv!(i16, 2),
        MI_UINT16 => conv!(u16, 2),
        MI_INT32 => conv!(i32, 4),
        MI_UINT32 => conv!(u32, 4),
        MI_SINGLE => conv!(f32, 4),
        MI_DOUBLE => conv!(f64, 8),
        MI_INT64 => conv!(i64, 8),
        MI_UINT64 => conv!(u64, 8),
        other => {
            return Err(DataError::format(
                path,
                format!("`{name}` has unsupported storage type {other}"),
            ));
        }
    })
}

/// Loads an SVHN `.mat` file (`X` `[32, 32, 3, N]` uint8, `y` `[N, 1]`, label 10 = digit 0)
/// as an [`ImageSet`] of 3-channel 32x32 images with labels 0-9.
pub fn load_svhn_mat(path: impl AsRef<Path>) -> Result<ImageSet> {
    let path = path.as_ref();
    let arrays = read_mat(path)?;
    let get = |n: &str| {
        arrays.iter().find(|a| a.name == n).ok_or_else(|| {
            DataError::format(
                path,
                format!("no variable `{n}` (SVHN files hold `X` and `y`)"),
            )
        })
    };
    let (x, y) = (get("X")?, get("y")?);
    if x.dims.len() != 4 || x.dims[2] != 3 {
        return Err(DataError::format(
            path,
            format!("`X` should be [height, width, 3, N], found {:?}", x.dims),
        ));
    }
    let (h, w, n) = (x.dims[0], x.dims[1], x.dims[3]);
    let ny: usize = y.dims.iter().product();
    if ny != n {
        return Err(DataError::Mismatch {
            what: format!(
                "{}: `X` holds {n} images but `y` holds {ny} labels",
                path.display()
            ),
        });
    }
    let xv: Vec<u8> = match &x.data {
        MatData::U8(v) => v.clone(),
        MatData::F64(v) => v
            .iter()
            .map(|&p| {
                if (0.0..=255.0).contains(&p) && p.fract() == 0.0 {
                    Ok(p as u8)
                } else {
                    Err(DataError::format(
                        path,
                        format!("`X` holds {p}, not a 0-255 pixel value"),
                    ))
                }
            })
            .collect::<Result<_>>()?,
    };
    let yv: Vec<f64> = match &y.data {
        MatData::U8(v) => v.iter().map(|&b| b as f64).collect(),
        MatData::F64(v) => v.clone(),
    };
    let labels = yv
        .iter()
        .enumerate()
        .map(|(i, &l)| match l {
            10.0 => Ok(0u8),
            l if (0.0..=9.0).contains(&l) && l.fract() == 0.0 => Ok(l as u8),
            l => Err(DataError::format(
                path,
                format!("label {l} of image {i} is not a digit 0-10"),
            )),
        })
        .collect::<Result<Vec<u8>>>()?;
    // Column-major [h, w, 3, n] -> channel-major [n, 3, h, w].
    let mut pixels = vec![0u8; n * 3 * h * w];
    for img in 0..n {
        for ch in 0..3 {
            for col in 0..w {
                for row in 0..h {
                    let src = row + h * (col + w * (ch + 3 * img));
                    pixels[((img * 3 + ch) * h + row) * w + col] = xv[src];
                }
            }
        }
    }
    ImageSet::new(pixels, labels, 3, h, w, path.display().to_string())
}
