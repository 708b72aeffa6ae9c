//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.
//!
//! A file is a 4-byte magic number (`0, 0, type, ndims`; type `0x08` = unsigned bytes), then
//! `ndims` big-endian `u32` dimensions, then the data. Images have 3 dimensions
//! (`n, rows, cols`), labels 1 (`n`).

use crate::error::{DataError, Result};
use crate::formats::gzip::{GZIP_MAGIC, open_maybe_gz, read_up_to};
use crate::images::ImageSet;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values in row-major order.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes (`.gz` or raw, detected from the content).
///
/// The data length is checked against the dimensions before anything large is allocated (for
/// compressed files, memory grows only with data actually decompressed); trailing bytes, a
/// short file, a wrong magic number or element type are errors naming the file.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let (r, len) = open_maybe_gz(path)?;
    parse(path, r, len)
}

/// Parses an IDX array held in memory (`.gz` or raw); `name` labels errors.
pub fn read_idx_bytes(name: impl AsRef<Path>, bytes: &[u8]) -> Result<IdxArray> {
    let path = name.as_ref();
    if bytes.starts_with(&GZIP_MAGIC) {
        parse(path, GzDecoder::new(bytes), None)
    } else {
        parse(path, bytes, Some(bytes.len() as u64))
    }
}

/// The real MNIST test split (10,000 images, `t10k`), shipped inside this crate so that a
/// fresh clone can train without downloading anything.
pub fn embedded_mnist_test() -> Result<ImageSet> {
    let images = read_idx_bytes(
        "embedded t10k-images-idx3-ubyte.gz",
        include_bytes!("../../data/mnist/t10k-images-idx3-ubyte.gz"),
    )?;
    let labels = read_idx_bytes(
        "embedded t10k-labels-idx1-ubyte.gz",
        include_bytes!("../../data/mnist/t10k-labels-idx1-ubyte.gz"),
    )?;
    ImageSet::new(
        images.data,
        labels.data,
        1,
        images.dims[1],
        images.dims[2],
        "embedded MNIST t10k",
    )
}

fn parse(path: &Path, mut r: impl Read, raw_len: Option<u64>) -> Result<IdxArray> {
    let io = |e: std::io::Error| DataError::io(path, e);
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut r, &mut magic).map_err(io)?;
    if got < 4 {
        return Err(DataError::format(
            path,
            "too short to be an IDX file (no 4-byte magic number)",
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::format(
            path,
            format!(
                "not an IDX file: the magic number starts {:02x} {:02x}, expected 00 00",
                magic[0], magic[1]
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(DataError::format(
            path,
            format!(
                "IDX element type 0x{:02x} is not supported (expected 0x08, unsigned bytes)",
                magic[2]
            ),
        ));
    }
    let ndims = magic[3] as usize;
    if ndims == 0 {
        return Err(DataError::format(path, "IDX file declares 0 dimensions"));
    }
    let mut dims = Vec::with_capacity(ndims);
    for i in 0..ndims {
        let mut b = [0u8; 4];
        if read_up_to(&mut r, &mut b).map_err(io)? < 4 {
            return Err(DataError::format(
                path,
                format!("truncated header: dimension {i} of {ndims} is missing"),
            ));
        }
        dims.push(u32::from_be_bytes(b) as usize);
    }
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::format(path, format!("dimensions {dims:?} overflow")))?;
    let header = 4 + 4 * ndims as u64;
    if let Some(file_len) = raw_len {
        let expected = header + len as u64;
        if file_len < expected {
            return Err(DataError::format(
                path,
                format!(
                    "truncated: dimensions {dims:?} need {len} data bytes but the file has {}",
                    file_len - header.min(file_len)
                ),
            ));
        }
        if file_len > expected {
            return Err(DataError::format(
                path,
                format!(
                    "{} unexpected trailing bytes after the {dims:?} data",
                    file_len - expected
                ),
            ));
        }
    }
    let mut data = Vec::new();
    (&mut r)
        .take(len as u64)
        .read_to_end(&mut data)
        .map_err(|e| DataError::format(path, format!("corrupt compressed data: {e}")))?;
    if data.len() < len {
        return Err(DataError::format(
            path,
            format!(
                "truncated: dimensions {dims:?} need {len} data bytes, found {}",
                data.len()
            ),
        ));
    }
    let mut extra = [0u8; 1];
    if read_up_to(&mut r, &mut extra)
        .map_err(|e| DataError::format(path, format!("corrupt compressed data: {e}")))?
        > 0
    {
        return Err(DataError::format(
            path,
            format!("unexpected trailing bytes after the {dims:?} data"),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Reads an images file and its labels file into an [`ImageSet`] (1 channel).
pub fn read_idx_images(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<ImageSet> {
    let (ip, lp) = (images.as_ref(), labels.as_ref());
    let im = read_idx(ip)?;
    if im.dims.len() != 3 {
        return Err(DataError::format(
            ip,
            format!(
                "expected 3 dimensions (n, rows, cols) for images, found {:?}",
                im.dims
            ),
        ));
    }
    let lb = read_idx(lp)?;
    if lb.dims.len() != 1 {
        return Err(DataError::format(
            lp,
            format!("expected 1 dimension (n) for labels, found {:?}", lb.dims),
        ));
    }
    if im.dims[0] != lb.dims[0] {
        return Err(DataError::Mismatch {
            what: format!(
                "{} has {} images but {} has {} labels",
                ip.display(),
                im.dims[0],
                lp.display(),
                lb.dims[0]
            ),
        });
    }
    ImageSet::new(
        im.data,
        lb.data,
        1,
        im.dims[1],
        im.dims[2],
        ip.display().to_string(),
    )
}

/// Loads an MNIST-layout folder: `{train,t10k}-images-idx3-ubyte[.gz]` and the labels.
pub fn load_mnist_dir(dir: impl AsRef<Path>, split: MnistSplit) -> Result<ImageSet> {
    let dir = dir.as_ref();
    let prefix = match split {
        MnistSplit::Train => "train",
        MnistSplit::Test => "t10k",
    };
    let find = |stem: &str| {
        let gz = dir.join(format!("{prefix}-{stem}.gz"));
        let raw = dir.join(format!("{prefix}-{stem}"));
        if gz.exists() {
            Ok(gz)
        } else if raw.exists() {
            Ok(raw)
        } else {
            Err(DataError::Missing {
                path: gz,
                hint: format!(
                    "expected the four official IDX files of MNIST or Fashion-MNIST \
                     ({prefix}-images-idx3-ubyte.gz, {prefix}-labels-idx1-ubyte.gz and their \
                     train/t10k counterparts, .gz or raw) in {}; fetch them with \
                     `mmssl data download mnist --dir {}` (or `fashion-mnist`)",
                    dir.display(),
                    dir.display()
                ),
            })
        }
    };
    let labels = find("labels-idx1-ubyte")?;
    let set = read_idx_images(find("images-idx3-ubyte")?, &labels)?;
    // MNIST and Fashion-MNIST have 10 classes: a label beyond them is a corrupt file, found
    // now rather than as a crash at the end of a run (or as extra classes).
    if let Some((i, &l)) = set.labels().iter().enumerate().find(|&(_, &l)| l > 9) {
        return Err(DataError::format(
            &labels,
            format!(
                "label {l} of item {i} is not a class 0-9 (MNIST and Fashion-MNIST have 10 \
                 classes)"
            ),
        ));
    }
    Ok(set)
}

/// Which split of an MNIST-layout folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MnistSplit {
    /// The 60,000 training images (`train-*`).
    Train,
    /// The 10,000 test images (`t10k-*`).
    Test,
}
