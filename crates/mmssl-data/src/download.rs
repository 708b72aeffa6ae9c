//! Downloading a dataset's files with MD5 verification, timeouts and retries (what
//! `mmssl data download` runs): [`Source::official`] knows MNIST, Fashion-MNIST and SVHN (the
//! checksums torchvision publishes), [`Source::new`] any other set of files.
//!
//! Each file is written to `NAME.part` and renamed to `NAME` only once its checksum matches,
//! so a folder never holds a partial or wrong file under a dataset's name.
//!
//! ```no_run
//! use mmssl_data::download::{DatasetName, Source, download};
//!
//! let fetched = download(&Source::official(DatasetName::Mnist), "data/mnist".as_ref(), true)?;
//! assert_eq!(fetched.len(), 4);
//! # Ok::<(), mmssl_data::DataError>(())
//! ```

use crate::DataError;
use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};
use std::fs::File;
use std::io::IsTerminal;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The datasets with an official download address and checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetName {
    /// MNIST (4 IDX files, about 11 MB).
    Mnist,
    /// Fashion-MNIST (4 IDX files, about 30 MB).
    FashionMnist,
    /// SVHN cropped digits, train and test (`train_32x32.mat`, `test_32x32.mat`, about 240 MB).
    Svhn,
}

impl DatasetName {
    /// Every dataset, in the order of their names in [`DatasetName::name`].
    pub const ALL: [DatasetName; 3] = [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Svhn,
    ];

    /// Its name on the command line: `mnist`, `fashion-mnist` or `svhn`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Svhn => "svhn",
        }
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DatasetName {
    type Err = DataError;

    fn from_str(text: &str) -> Result<Self, DataError> {
        DatasetName::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                DataError::invalid("dataset", text, "one of mnist, fashion-mnist or svhn")
            })
    }
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

    /// The address of one of its files.
    pub fn url(&self, file: &str) -> String {
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

/// The MD5 of a file as lowercase hex.
pub fn file_md5(path: &Path) -> Result<String, DataError> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
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
pub fn download(source: &Source, dir: &Path, quiet: bool) -> Result<Vec<Fetched>, DataError> {
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
) -> Result<Vec<Fetched>, DataError> {
    let quiet = options.quiet;
    std::fs::create_dir_all(dir).map_err(|e| DataError::write(dir, e))?;
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
                let bytes = std::fs::metadata(&path)
                    .map_err(|e| DataError::io(&path, e))?
                    .len();
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
                Err(e @ DataError::Download { .. })
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
        std::fs::rename(&part, &path).map_err(|e| DataError::write(&path, e))?;
        out.push(Fetched {
            path,
            bytes,
            downloaded: true,
        });
    }
    Ok(out)
}

/// Whether a failed transfer may succeed if tried again: not a client error (HTTP 4xx).
fn retryable(e: &DataError) -> bool {
    match e {
        DataError::Download { message, .. } => !message.starts_with("HTTP 4"),
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
) -> Result<u64, DataError> {
    let url = source.url(name);
    let http = |message: String| DataError::Download {
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
    let mut file = File::create(part).map_err(|e| DataError::write(part, e))?;
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
        file.write_all(&buf[..n])
            .map_err(|e| DataError::write(part, e))?;
        total += n as u64;
        bar.set_position(total);
    }
    file.sync_all().map_err(|e| DataError::write(part, e))?;
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
        return Err(DataError::Checksum {
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
