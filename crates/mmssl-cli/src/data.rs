//! `mmssl data`: look inside dataset files (`info`), write a synthetic OASIS-3-style cohort
//! (`synth-cohort`) and download MNIST, Fashion-MNIST or SVHN with checksum verification
//! (`download`).

use clap::{Args, Subcommand, ValueEnum};
use flate2::read::GzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};
use mmssl_data::{DataError, Diagnosis, Manifest, MatData, SynthConfig, SynthReport};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::IsTerminal;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Arguments of `mmssl data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DataCommand,
}

/// `mmssl data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Describe a dataset file: IDX (raw or .gz), MATLAB .mat, NIfTI (.nii, .nii.gz, .hdr) or
    /// a cohort manifest (.csv).
    Info(InfoArgs),
    /// Write a synthetic OASIS-3-style cohort (T1 + fALFF pairs, HC and AD) and its manifest.
    SynthCohort(SynthArgs),
    /// Download MNIST, Fashion-MNIST or SVHN and verify every file's MD5 checksum.
    Download(DownloadArgs),
}

/// Arguments of `mmssl data info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The file to describe.
    pub path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mmssl data synth-cohort`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// The output folder (volumes and `manifest.csv`).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of subjects (half HC, half AD). At least 12: the protocol holds out a fifth of
    /// each diagnosis and deals the rest into 5 folds, each of which needs a subject of both
    /// diagnoses.
    #[arg(long, default_value_t = 20)]
    pub subjects: usize,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// T1 template in MNI space (default: the bundled MNI ICBM152 2009a T1).
    #[arg(long)]
    pub t1: Option<PathBuf>,
    /// Grey-matter probability map of the template (default: the bundled one when `--t1` is
    /// not given; without a map one is derived from the T1 intensities).
    #[arg(long)]
    pub gm: Option<PathBuf>,
}

/// Arguments of `mmssl data download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The dataset.
    #[arg(value_enum)]
    pub dataset: DatasetName,
    /// The folder to write the files to (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Download from this address instead of the official one (a mirror holding the same
    /// file names; the official checksums still apply).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Seconds to wait for a connection, and then for the server's answer, before giving up
    /// on an attempt.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Further attempts after a failed transfer (a timeout, a broken connection, a server
    /// error), each announced, a few seconds apart.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
}

/// The datasets `mmssl data download` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatasetName {
    /// MNIST (4 IDX files, about 11 MB).
    Mnist,
    /// Fashion-MNIST (4 IDX files, about 30 MB).
    FashionMnist,
    /// SVHN cropped digits, train and test (`train_32x32.mat`, `test_32x32.mat`, about 240 MB).
    Svhn,
}

/// Where a dataset's files are and what their MD5 checksums must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The dataset's name, for messages.
    pub name: String,
    /// The address the file names are appended to.
    pub base_url: String,
    /// `(file name, MD5 as lowercase hex)`.
    pub files: Vec<(String, String)>,
}

impl Source {
    /// A source from a base URL and `(file name, md5)` pairs.
    pub fn new(name: &str, base_url: &str, files: &[(&str, &str)]) -> Self {
        Source {
            name: name.into(),
            base_url: base_url.into(),
            files: files
                .iter()
                .map(|(f, m)| (f.to_string(), m.to_ascii_lowercase()))
                .collect(),
        }
    }

    /// The official source of a dataset (checksums as torchvision publishes them).
    pub fn official(dataset: DatasetName) -> Self {
        const IDX: [&str; 4] = [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ];
        let idx = |md5: [&'static str; 4]| -> Vec<(&'static str, &'static str)> {
            IDX.into_iter().zip(md5).collect()
        };
        match dataset {
            DatasetName::Mnist => Source::new(
                "MNIST",
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                &idx([
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ]),
            ),
            DatasetName::FashionMnist => Source::new(
                "Fashion-MNIST",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                &idx([
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ]),
            ),
            DatasetName::Svhn => Source::new(
                "SVHN",
                "http://ufldl.stanford.edu/housenumbers/",
                &[
                    ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
                    ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
                ],
            ),
        }
    }

    /// The same files and checksums from another base URL.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    fn url(&self, file: &str) -> String {
        if self.base_url.ends_with('/') {
            format!("{}{file}", self.base_url)
        } else {
            format!("{}/{file}", self.base_url)
        }
    }
}

/// What [`download`] did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The file's final path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// `false` when the file was already there with the right checksum (nothing downloaded).
    pub downloaded: bool,
}

/// A failure of `mmssl data`, printed as `error: ...` with exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum DataCmdError {
    /// A reader of `mmssl-data` failed (the message names the file).
    #[error(transparent)]
    Data(#[from] DataError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `data info` on a file of no supported format.
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
    /// The template shipped with the sources is not where it was at build time.
    #[error(
        "the bundled MNI152 template is missing ({path} not found: this mmssl binary was \
         moved away from its source tree); pass --t1 FILE [--gm FILE] with an MNI-space T1 \
         template"
    )]
    NoTemplate {
        /// The file looked for.
        path: PathBuf,
    },
    /// An HTTP request failed (connection, status code such as 404, broken transfer).
    #[error("cannot download {file} from {url}: {message}")]
    Http {
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
    /// JSON encoding failed.
    #[error("cannot encode the result as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataCmdError + '_ {
    move |source| DataCmdError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs `mmssl data ...` and returns the text it prints on stdout.
pub fn run(args: &DataArgs) -> Result<String, DataCmdError> {
    match &args.command {
        DataCommand::Info(a) => {
            let d = describe(&a.path)?;
            Ok(if a.json {
                serde_json::to_string_pretty(&d.json())?
            } else {
                d.text()
            })
        }
        DataCommand::SynthCohort(a) => {
            let report = synth(a)?;
            Ok(synth_text(&report))
        }
        DataCommand::Download(a) => {
            let mut source = Source::official(a.dataset);
            if let Some(url) = &a.base_url {
                source = source.with_base_url(url.clone());
            }
            let options = DownloadOptions {
                quiet: a.quiet,
                timeout: std::time::Duration::from_secs(a.timeout.max(1)),
                retries: a.retries,
                retry_pause: std::time::Duration::from_secs(3),
            };
            let fetched = download_with(&source, &a.dir, &options)?;
            let mut out = String::new();
            for f in &fetched {
                let what = if f.downloaded {
                    "downloaded"
                } else {
                    "already present"
                };
                out.push_str(&format!(
                    "{}: {} bytes, MD5 verified ({what})\n",
                    f.path.display(),
                    f.bytes
                ));
            }
            out.push_str(&format!("{} is ready in {}", source.name, a.dir.display()));
            Ok(out)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// info

/// A description of a file: its format and ordered fields, as text or JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The file.
    pub path: PathBuf,
    /// The format, in words (`IDX`, `MATLAB .mat`, `NIfTI-1`, `NIfTI-2`, `cohort manifest`).
    pub format: String,
    /// `(key, value, text)`: the JSON value and how it reads in text.
    pub fields: Vec<(String, Value, String)>,
}

impl Description {
    fn new(path: &Path, format: &str) -> Self {
        Description {
            path: path.to_path_buf(),
            format: format.into(),
            fields: Vec::new(),
        }
    }

    fn add(&mut self, key: &str, value: Value, text: impl Into<String>) {
        self.fields.push((key.into(), value, text.into()));
    }

    /// The value of a field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|f| f.0 == key).map(|f| &f.1)
    }

    /// The JSON object (`path`, `format` and every field).
    pub fn json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("path".into(), json!(self.path.display().to_string()));
        m.insert("format".into(), json!(self.format));
        for (k, v, _) in &self.fields {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    /// Human-readable lines.
    pub fn text(&self) -> String {
        let mut s = format!("{}: {}\n", self.path.display(), self.format);
        for (k, _, t) in &self.fields {
            let label = k
                .trim_end_matches("_mm")
                .trim_end_matches("_s")
                .replace('_', " ");
            s.push_str(&format!("  {:<24} {t}\n", format!("{label}:")));
        }
        s.pop();
        s
    }
}

fn dims_text(dims: &[usize]) -> String {
    dims.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" x ")
}

/// The first `n` bytes of a file's content (decompressed when it is gzip), and whether it was
/// compressed.
fn peek(path: &Path, n: usize) -> Result<(Vec<u8>, bool), DataCmdError> {
    let mut file = File::open(path).map_err(|e| DataCmdError::from(DataError::io(path, e)))?;
    let mut raw = Vec::new();
    (&mut file)
        .take(2)
        .read_to_end(&mut raw)
        .map_err(io_err(path))?;
    let gz = raw == [0x1f, 0x8b];
    let chained = std::io::Cursor::new(raw).chain(file);
    let mut out = Vec::with_capacity(n);
    let res = if gz {
        GzDecoder::new(chained).take(n as u64).read_to_end(&mut out)
    } else {
        chained.take(n as u64).read_to_end(&mut out)
    };
    if let Err(e) = res {
        // A corrupt stream: report what could be read (the readers will name the problem).
        if out.is_empty() {
            return Err(DataError::format(path, format!("corrupt gzip data: {e}")).into());
        }
    }
    Ok((out, gz))
}

/// Describes a dataset file; the format is detected from the content (and `.csv` names).
pub fn describe(path: &Path) -> Result<Description, DataCmdError> {
    let (head, gz) = peek(path, 544)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if head.starts_with(b"MATLAB") {
        return describe_mat(path);
    }
    if nifti_version(&head).is_some() {
        return describe_nifti(path, &head, gz);
    }
    if head.len() >= 4 && head[0] == 0 && head[1] == 0 && idx_type(head[2]).is_some() {
        return describe_idx(path, &head, gz);
    }
    if name.ends_with(".csv") {
        return describe_manifest(path);
    }
    if name.ends_with(".nii") || name.ends_with(".nii.gz") || name.ends_with(".hdr") {
        return Err(DataError::format(
            path,
            "not a valid NIfTI file: sizeof_hdr is neither 348 nor 540 (truncated or corrupt?)",
        )
        .into());
    }
    let detail = if head.is_empty() {
        "the file is empty".to_string()
    } else {
        let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "{}first bytes {}",
            if gz { "gzip-compressed; " } else { "" },
            shown.join(" ")
        )
    };
    Err(DataCmdError::UnknownFormat {
        path: path.to_path_buf(),
        detail,
    })
}

fn idx_type(code: u8) -> Option<(&'static str, usize)> {
    Some(match code {
        0x08 => ("u8", 1),
        0x09 => ("i8", 1),
        0x0b => ("i16", 2),
        0x0c => ("i32", 4),
        0x0d => ("f32", 4),
        0x0e => ("f64", 8),
        _ => return None,
    })
}

fn describe_idx(path: &Path, head: &[u8], gz: bool) -> Result<Description, DataCmdError> {
    let (ty, _) = idx_type(head[2]).expect("checked by the caller");
    let mut d = Description::new(path, "IDX");
    d.add("compressed", json!(gz), if gz { "gzip" } else { "no" });
    d.add("element_type", json!(ty), ty);
    if ty != "u8" {
        let ndims = head[3] as usize;
        let dims: Vec<usize> = (0..ndims)
            .filter_map(|i| head.get(4 + 4 * i..8 + 4 * i))
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .collect();
        d.add("dims", json!(dims), dims_text(&dims));
        d.add(
            "note",
            json!("only unsigned-byte IDX files (MNIST, Fashion-MNIST) are read by mmssl"),
            "only unsigned-byte IDX files (MNIST, Fashion-MNIST) are read by mmssl; data not checked",
        );
        return Ok(d);
    }
    let arr = mmssl_data::read_idx(path)?;
    d.add("dims", json!(arr.dims), dims_text(&arr.dims));
    d.add("count", json!(arr.dims[0]), arr.dims[0].to_string());
    if arr.dims.len() == 3 {
        d.add(
            "kind",
            json!("images"),
            format!("{} images of {}x{}", arr.dims[0], arr.dims[1], arr.dims[2]),
        );
    } else if arr.dims.len() == 1 {
        let mut counts: BTreeMap<u8, usize> = BTreeMap::new();
        for &v in &arr.data {
            *counts.entry(v).or_default() += 1;
        }
        d.add("kind", json!("labels"), format!("{} labels", arr.dims[0]));
        let text = counts
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let obj: serde_json::Map<String, Value> = counts
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        d.add("classes", json!(counts.len()), counts.len().to_string());
        d.add("class_counts", Value::Object(obj), text);
    }
    Ok(d)
}

fn describe_mat(path: &Path) -> Result<Description, DataCmdError> {
    let arrays = mmssl_data::read_mat(path)?;
    let mut d = Description::new(path, "MATLAB .mat (v5)");
    let mut list = Vec::new();
    let mut lines = Vec::new();
    for a in &arrays {
        let class = match a.data {
            MatData::U8(_) => "uint8",
            MatData::F64(_) => "numeric (read as double)",
        };
        list.push(json!({"name": a.name, "class": class, "dims": a.dims}));
        lines.push(format!("{} {} [{}]", a.name, class, dims_text(&a.dims)));
    }
    d.add("arrays", Value::Array(list), lines.join("; "));
    let x = arrays.iter().find(|a| a.name == "X");
    let y = arrays.iter().find(|a| a.name == "y");
    if let (Some(x), Some(y)) = (x, y) {
        let n_labels: usize = y.dims.iter().product();
        if x.dims.len() == 4 && x.dims[2] == 3 && x.dims[3] == n_labels {
            let images = x.dims[3];
            d.add(
                "svhn",
                json!({"images": images, "labels": n_labels, "height": x.dims[0], "width": x.dims[1]}),
                format!(
                    "looks like SVHN: {images} images of {}x{}x3, {n_labels} labels (10 = digit 0)",
                    x.dims[0], x.dims[1]
                ),
            );
            let labels: Vec<f64> = match &y.data {
                MatData::U8(v) => v.iter().map(|&b| b as f64).collect(),
                MatData::F64(v) => v.clone(),
            };
            let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
            for v in labels {
                *counts.entry(v as i64).or_default() += 1;
            }
            let obj: serde_json::Map<String, Value> = counts
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            let text = counts
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            d.add("label_counts", Value::Object(obj), text);
        }
    }
    if d.get("svhn").is_none() {
        d.add(
            "svhn",
            Value::Null,
            "no (SVHN files hold `X` [32, 32, 3, N] and `y` [N, 1])",
        );
    }
    Ok(d)
}

fn nifti_version(head: &[u8]) -> Option<u8> {
    let b: [u8; 4] = head.get(..4)?.try_into().ok()?;
    match (i32::from_le_bytes(b), i32::from_be_bytes(b)) {
        (348, _) | (_, 348) => Some(1),
        (540, _) | (_, 540) => Some(2),
        _ => None,
    }
}

fn xform_name(code: i32) -> &'static str {
    match code {
        1 => "scanner",
        2 => "aligned",
        3 => "Talairach",
        4 => "MNI 152",
        5 => "template",
        _ => "unknown",
    }
}

fn describe_nifti(path: &Path, head: &[u8], gz: bool) -> Result<Description, DataCmdError> {
    let info = mmssl_data::read_nifti_header(path)?;
    // Read the data too, so that a truncated or corrupt file is reported here.
    let volume = if info.separate_data {
        None
    } else {
        Some(mmssl_data::read_nifti(path)?)
    };
    let mut d = Description::new(path, &format!("NIfTI-{}", info.version));
    d.add("compressed", json!(gz), if gz { "gzip" } else { "no" });
    d.add(
        "byte_order",
        json!(if info.big_endian { "big" } else { "little" }),
        if info.big_endian {
            "big-endian"
        } else {
            "little-endian"
        },
    );
    let dt = format!("{:?}", info.voxel_type).to_lowercase();
    d.add(
        "datatype",
        json!(dt),
        format!("{dt} (code {})", info.voxel_type.code()),
    );
    d.add("dims", json!(info.dims), dims_text(&info.dims));
    let vs = info.voxel_size;
    d.add(
        "voxel_size_mm",
        json!(vs),
        format!("{:.4} x {:.4} x {:.4} mm", vs[0], vs[1], vs[2]),
    );
    // xyzt_units: byte 123 in NIfTI-1, i32 at byte 500 in NIfTI-2.
    let units = if info.version == 1 {
        head.get(123).map(|&b| b as u32)
    } else {
        head.get(500..504).map(|b| {
            let b = [b[0], b[1], b[2], b[3]];
            if info.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        })
    }
    .unwrap_or(0);
    let space = match units & 0x07 {
        1 => "m",
        2 => "mm",
        3 => "um",
        _ => "unknown (taken as mm)",
    };
    let time = match units & 0x38 {
        8 => "s",
        16 => "ms",
        24 => "us",
        32 => "Hz",
        40 => "ppm",
        48 => "rad/s",
        _ => "unknown",
    };
    d.add(
        "units",
        json!({"space": space, "time": time}),
        format!("space {space}, time {time}"),
    );
    if info.dims.len() >= 4 && info.dims[3] > 1 {
        d.add(
            "tr_s",
            json!(info.tr),
            info.tr
                .map(|t| format!("{t} s"))
                .unwrap_or_else(|| "not given".into()),
        );
    }
    let scaled = !(info.scl_slope == 1.0 && info.scl_inter == 0.0);
    d.add(
        "scaling",
        json!({"slope": info.scl_slope, "intercept": info.scl_inter}),
        if scaled {
            format!("value * {} + {}", info.scl_slope, info.scl_inter)
        } else {
            "none".into()
        },
    );
    let source = if info.sform_code > 0 {
        format!("sform ({})", xform_name(info.sform_code))
    } else if info.qform_code > 0 {
        format!("qform ({})", xform_name(info.qform_code))
    } else {
        "pixdim (no sform or qform)".into()
    };
    d.add(
        "affine_source",
        json!({"source": source, "sform_code": info.sform_code, "qform_code": info.qform_code}),
        source.clone(),
    );
    let a = &info.affine.rows;
    d.add(
        "affine",
        json!(a),
        a.iter()
            .take(3)
            .map(|r| format!("[{:.3} {:.3} {:.3} {:.3}]", r[0], r[1], r[2], r[3]))
            .collect::<Vec<_>>()
            .join(" "),
    );
    if info.separate_data {
        d.add(
            "data",
            json!("separate .img file"),
            "in a separate .img file (not read)",
        );
    }
    if let Some(v) = volume {
        let (lo, hi) = v
            .data()
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        d.add(
            "value_range",
            json!([lo, hi]),
            format!("{lo} to {hi} (after scaling)"),
        );
    }
    Ok(d)
}

fn describe_manifest(path: &Path) -> Result<Description, DataCmdError> {
    let bytes = std::fs::read(path).map_err(|e| DataCmdError::from(DataError::io(path, e)))?;
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let m = Manifest::parse(path, &bytes, &base, false)?;
    let mut d = Description::new(path, "cohort manifest (CSV)");
    d.add("rows", json!(m.rows().len()), m.rows().len().to_string());
    let subjects = m.subjects();
    d.add(
        "subjects",
        json!(subjects.len()),
        subjects.len().to_string(),
    );
    let label = |g: Diagnosis| match g {
        Diagnosis::Unlabelled => "unlabelled",
        other => other.as_str(),
    };
    let mut sessions: BTreeMap<&str, usize> = BTreeMap::new();
    for r in m.rows() {
        *sessions.entry(label(r.diagnosis)).or_default() += 1;
    }
    let mut subj: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &subjects {
        *subj.entry(label(s.diagnosis)).or_default() += 1;
    }
    let text = |m: &BTreeMap<&str, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    d.add("sessions_per_diagnosis", json!(sessions), text(&sessions));
    d.add("subjects_per_diagnosis", json!(subj), text(&subj));
    let cov = m.covariate_names();
    d.add(
        "covariates",
        json!(cov),
        if cov.is_empty() {
            "none".to_string()
        } else {
            cov.join(", ")
        },
    );
    let missing = m
        .rows()
        .iter()
        .flat_map(|r| [&r.t1, &r.falff])
        .filter(|p| !p.exists())
        .count();
    d.add(
        "missing_files",
        json!(missing),
        if missing == 0 {
            "none (every T1 and fALFF file exists)".to_string()
        } else {
            format!("{missing} referenced volumes do not exist")
        },
    );
    Ok(d)
}

// ---------------------------------------------------------------------------------------------
// synth-cohort

/// The MNI ICBM152 T1 template and grey-matter map shipped in `mmssl-data/data/mni152`, found
/// through the source path fixed at build time; an error telling to pass `--t1` when they
/// are not there (a binary moved away from its source tree).
pub fn bundled_template() -> Result<(PathBuf, PathBuf), DataCmdError> {
    let t1 = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mmssl-data/data/mni152/mni152_t1_1mm.nii.gz"
    ));
    let gm = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mmssl-data/data/mni152/mni152_gm_1mm.nii.gz"
    ));
    for p in [&t1, &gm] {
        if !p.is_file() {
            return Err(DataCmdError::NoTemplate { path: p.clone() });
        }
    }
    Ok((t1, gm))
}

/// The fewest subjects a synthetic cohort can have for `--dataset oasis3`: per diagnosis one
/// held out (a fifth, rounded) and five for the five folds.
pub const MIN_SYNTH_SUBJECTS: usize = 12;

/// The batch size the printed `next:` command uses: a validation fold of the smallest cohort
/// holds 2 subjects, so at least 2 sessions, and a set must fill at least one batch.
const SYNTH_BATCH: usize = 2;

/// Writes the synthetic cohort `mmssl data synth-cohort` describes.
pub fn synth(args: &SynthArgs) -> Result<SynthReport, DataCmdError> {
    let (t1, gm) = match &args.t1 {
        Some(t1) => (t1.clone(), args.gm.clone()),
        None => {
            let (t1, gm) = bundled_template()?;
            (t1, Some(args.gm.clone().unwrap_or(gm)))
        }
    };
    let mut config = SynthConfig::new(t1, gm);
    if args.subjects < MIN_SYNTH_SUBJECTS {
        return Err(DataCmdError::Data(DataError::InvalidParameter {
            name: "--subjects",
            value: args.subjects.to_string(),
            reason: format!(
                "at least {MIN_SYNTH_SUBJECTS}: the protocol holds out a fifth of each diagnosis \
                 and deals the rest into 5 folds that each need both diagnoses"
            ),
        }));
    }
    config.subjects = args.subjects;
    config.seed = args.seed;
    Ok(mmssl_data::synth_cohort(&config, &args.out)?)
}

fn synth_text(r: &SynthReport) -> String {
    format!(
        "synthetic cohort: {} subjects ({} HC, {} AD), {} sessions, volumes {}\n\
         manifest: {}\n\
         next: mmssl run --dataset oasis3 --manifest {} --objective CR-XX --epochs 2 \
         --batch-size {SYNTH_BATCH} --out RUN",
        r.subjects,
        r.hc,
        r.ad,
        r.sessions,
        dims_text(&r.shape),
        r.manifest.display(),
        r.manifest.display()
    )
}

// ---------------------------------------------------------------------------------------------
// download

/// The MD5 of a file as lowercase hex.
pub fn file_md5(path: &Path) -> Result<String, DataCmdError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads every file of `source` into `dir` (created if missing), verifying each MD5.
///
/// A file already in `dir` with the right checksum is skipped. Each download goes to
/// `dir/NAME.part` and is renamed to `dir/NAME` only once its checksum matches; a mismatch
/// or a failed transfer deletes the partial file and is an error naming the file. Progress
/// bars unless `quiet`.
pub fn download(source: &Source, dir: &Path, quiet: bool) -> Result<Vec<Fetched>, DataCmdError> {
    download_with(
        source,
        dir,
        &DownloadOptions {
            quiet,
            ..Default::default()
        },
    )
}

/// How [`download_with`] waits and retries.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// No progress bars or messages.
    pub quiet: bool,
    /// The longest wait for a connection, and then for the server's answer, per attempt.
    pub timeout: std::time::Duration,
    /// Further attempts after a failed transfer.
    pub retries: u32,
    /// The pause before each further attempt.
    pub retry_pause: std::time::Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            quiet: false,
            timeout: std::time::Duration::from_secs(60),
            retries: 3,
            retry_pause: std::time::Duration::from_secs(3),
        }
    }
}

/// [`download`] with its timeouts and retries chosen: a server that accepts the connection and
/// never answers fails the attempt after `timeout`; failed transfers are retried `retries`
/// times, each retry announced; a checksum mismatch or an HTTP 4xx is not retried.
pub fn download_with(
    source: &Source,
    dir: &Path,
    options: &DownloadOptions,
) -> Result<Vec<Fetched>, DataCmdError> {
    let quiet = options.quiet;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(options.timeout))
        .timeout_recv_response(Some(options.timeout))
        .build()
        .into();
    let mut out = Vec::new();
    for (name, md5) in &source.files {
        let path = dir.join(name);
        if path.is_file() {
            if file_md5(&path)? == *md5 {
                let bytes = std::fs::metadata(&path).map_err(io_err(&path))?.len();
                if !quiet {
                    eprintln!("{}: already present, checksum OK", path.display());
                }
                out.push(Fetched {
                    path,
                    bytes,
                    downloaded: false,
                });
                continue;
            }
            if !quiet {
                eprintln!(
                    "{}: present but its checksum differs; downloading again",
                    path.display()
                );
            }
        }
        let part = dir.join(format!("{name}.part"));
        let mut attempt = 0;
        let bytes = loop {
            if !quiet && !std::io::stderr().is_terminal() {
                eprintln!("{}: downloading {}", path.display(), source.url(name));
            }
            let result = fetch_one(&agent, source, name, md5, &path, &part, quiet);
            if result.is_err() {
                let _ = std::fs::remove_file(&part);
            }
            match result {
                Err(e @ DataCmdError::Http { .. })
                    if attempt < options.retries && retryable(&e) =>
                {
                    attempt += 1;
                    if !quiet {
                        eprintln!("{e}; retrying ({attempt} of {})", options.retries);
                    }
                    std::thread::sleep(options.retry_pause);
                }
                other => break other?,
            }
        };
        std::fs::rename(&part, &path).map_err(io_err(&path))?;
        out.push(Fetched {
            path,
            bytes,
            downloaded: true,
        });
    }
    Ok(out)
}

/// Whether a failed transfer may succeed if tried again: not a client error (HTTP 4xx).
fn retryable(e: &DataCmdError) -> bool {
    match e {
        DataCmdError::Http { message, .. } => !message.starts_with("HTTP 4"),
        _ => false,
    }
}

fn fetch_one(
    agent: &ureq::Agent,
    source: &Source,
    name: &str,
    md5: &str,
    path: &Path,
    part: &Path,
    quiet: bool,
) -> Result<u64, DataCmdError> {
    let url = source.url(name);
    let http = |message: String| DataCmdError::Http {
        file: path.to_path_buf(),
        url: url.clone(),
        message,
    };
    let mut response = agent.get(&url).call().map_err(|e| match e {
        ureq::Error::StatusCode(404) => http("HTTP 404 not found on the server".into()),
        ureq::Error::Timeout(what) => http(format!(
            "no answer from the server: timed out ({what}); check the network or the address"
        )),
        ureq::Error::StatusCode(code) => http(format!("HTTP status {code}")),
        other => http(other.to_string()),
    })?;
    let len = response.body().content_length();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        let bar = match len {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_message(name.to_string());
        bar
    };
    let mut reader = response.body_mut().as_reader();
    let mut file = File::create(part).map_err(io_err(part))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(http(format!("transfer broken after {total} bytes: {e}"))),
        };
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(io_err(part))?;
        total += n as u64;
        bar.set_position(total);
    }
    file.sync_all().map_err(io_err(part))?;
    drop(file);
    bar.finish_and_clear();
    if let Some(n) = len
        && n != total
    {
        return Err(http(format!(
            "received {total} bytes, the server announced {n}"
        )));
    }
    let actual = hex(&hasher.finalize());
    if actual != md5 {
        return Err(DataCmdError::Checksum {
            path: path.to_path_buf(),
            expected: md5.to_string(),
            actual,
        });
    }
    if !quiet {
        eprintln!("{}: {total} bytes, checksum OK", path.display());
    }
    Ok(total)
}
