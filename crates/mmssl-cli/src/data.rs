//! `mmssl data`: look inside dataset files (`info`), write a synthetic OASIS-3-style cohort
//! (`synth-cohort`) and download MNIST, Fashion-MNIST or SVHN with checksum verification
//! (`download`).

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};
use mmssl_data::{DataError, SynthConfig, SynthReport};
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
            let d = mmssl_data::describe(&a.path)?;
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
        r.shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" x "),
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
