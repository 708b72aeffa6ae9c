//! The error type of this crate.

use std::path::PathBuf;

/// What can go wrong between files on disk and batches.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written (or created, renamed, synced).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An output folder holding files mmssl cannot prove it wrote (it keeps no record of
    /// them there), which writing would replace or mix with.
    #[error(
        "{} holds files mmssl did not write as {what} ({}; there is no {record}): writing here \
         would replace or mix with them; give --out an empty or new folder",
        dir.display(),
        entries.join(", ")
    )]
    ForeignFiles {
        /// The folder.
        dir: PathBuf,
        /// What would have been written (`a synthetic cohort`).
        what: &'static str,
        /// The record that marks a folder mmssl wrote.
        record: &'static str,
        /// What the folder holds.
        entries: Vec<String>,
    },
    /// A download failed (connection, status code such as 404, broken transfer); nothing was
    /// left at `file`.
    #[error("cannot download {file} from {url}: {message}")]
    Download {
        /// The file's final path.
        file: PathBuf,
        /// The address.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A downloaded file does not have the expected checksum; it was deleted.
    #[error(
        "{path}: checksum mismatch: expected MD5 {expected}, got {actual} (the download was \
         deleted; the server sent a different file than the official one)"
    )]
    Checksum {
        /// The file's final path (never written).
        path: PathBuf,
        /// The expected MD5.
        expected: String,
        /// The MD5 of what arrived.
        actual: String,
    },
    /// The file is not what it should be (bad magic, truncated, inconsistent sizes, ...).
    #[error("{path}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        problem: String,
    },
    /// A file of no format `describe` reads.
    #[error(
        "{path}: unknown format ({detail}); `mmssl data info` reads IDX (raw or .gz), MATLAB \
         .mat, NIfTI (.nii, .nii.gz, .hdr) and cohort manifests (.csv)"
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What was seen.
        detail: String,
    },
    /// A dataset file is missing; `hint` says how to get it.
    #[error("{path} not found; {hint}")]
    Missing {
        /// The expected file.
        path: PathBuf,
        /// How to obtain it.
        hint: String,
    },
    /// Two files that belong together disagree.
    #[error("{what}")]
    Mismatch {
        /// The disagreement, naming both files.
        what: String,
    },
    /// A parameter out of range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Its value, as written.
        value: String,
        /// The valid range.
        reason: String,
    },
    /// A voxel of a volume is NaN or infinite.
    #[error("{path}: voxel {voxel:?} is {value}; volumes must hold finite values")]
    NonFinite {
        /// The file (or the description of an in-memory volume).
        path: PathBuf,
        /// The voxel's index `(x, y, z)` or `(x, y, z, t)`.
        voxel: Vec<usize>,
        /// The offending value.
        value: f64,
    },
    /// A row of a CSV manifest is wrong (missing column, missing file, duplicate, bad label).
    #[error("{path}, line {line}: {problem}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The 1-based line of the file (the header is line 1).
        line: u64,
        /// What is wrong, in words.
        problem: String,
    },
    /// An index past the end of a dataset.
    #[error("index {index} is out of range for a dataset of {len} items")]
    OutOfRange {
        /// The index asked for.
        index: usize,
        /// The dataset's length.
        len: usize,
    },
}

impl DataError {
    /// An [`DataError::InvalidParameter`]: `name` = `value` is refused for `reason`.
    pub fn invalid(
        name: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        DataError::InvalidParameter {
            name,
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// A write error for `path`.
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Write {
            path: path.into(),
            source,
        }
    }

    /// A format error for `path`.
    pub fn format(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// An I/O error for `path` (a missing file becomes [`DataError::Missing`] when `hint` is
    /// given).
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DataError>;
