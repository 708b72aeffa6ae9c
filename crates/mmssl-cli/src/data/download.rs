//! `mmssl data download`: fetch a dataset's files with MD5 verification, timeouts and retries.

use super::*;
use indicatif::{ProgressBar, ProgressStyle};
use md5::{Digest, Md5};
use std::fs::File;
use std::io::IsTerminal;
use std::io::{Read, Write};
use std::path::Path;

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
