//! Tests of `mmssl data` (info, synth-cohort, download) and of `mmssl_data::download` against
//! a tiny local HTTP server.

use mmssl_data::DataError;
use mmssl_data::download::{DownloadOptions, Source, download, download_with, file_md5};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
mod common;
use common::scratch;

use common::{
    arg, assert_contains_all, assert_fails, assert_ok, mmssl, stderr, stdout, synth, write_file,
};

/// `../shared/data` beside the project, when present.
fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "skipping: {} is absent (real data files for tests)",
            p.display()
        );
        None
    }
}

/// Serves the files of `root` over HTTP/1.1 on 127.0.0.1 (404 for anything else); returns
/// the base URL. The server thread lives as long as the test process.
fn serve(root: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // Skip the headers.
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" || line == "\n" => break,
                    Ok(_) => {}
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let name = path.trim_start_matches('/');
            let file = (!name.is_empty() && !name.contains(".."))
                .then(|| root.join(name))
                .filter(|p| p.is_file());
            let _ = match file.and_then(|p| std::fs::read(p).ok()) {
                Some(body) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: \
                             application/octet-stream\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&body)),
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
                ),
            };
            let _ = stream.flush();
        }
    });
    format!("http://127.0.0.1:{port}/")
}

/// A small real-format IDX pair (5 images of 2x3, 5 labels), gzip-compressed.
fn write_idx_pair(dir: &Path) -> [(String, PathBuf); 2] {
    use flate2::{Compression, write::GzEncoder};
    let gz = |bytes: &[u8], name: &str| {
        let p = dir.join(name);
        let mut e = GzEncoder::new(std::fs::File::create(&p).unwrap(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap();
        (name.to_string(), p)
    };
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 3];
    images.extend((0..30).map(|i| i as u8 * 8));
    let mut labels = vec![0, 0, 8, 1, 0, 0, 0, 5];
    labels.extend([3, 1, 4, 1, 5]);
    [
        gz(&images, "imgs-idx3-ubyte.gz"),
        gz(&labels, "labels-idx1-ubyte.gz"),
    ]
}

fn source_for(base: &str, files: &[(String, PathBuf)]) -> Source {
    let pairs: Vec<(String, String)> = files
        .iter()
        .map(|(n, p)| (n.clone(), file_md5(p).unwrap()))
        .collect();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    Source::new("test", base, &refs)
}

fn no_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn download_fetches_verifies_and_skips_present_files() {
    let served = tempfile::tempdir().unwrap();
    let files = write_idx_pair(served.path());
    let base = serve(served.path().to_path_buf());
    let source = source_for(&base, &files);
    let dest = tempfile::tempdir().unwrap();
    let dir = dest.path().join("sub");
    let fetched = download(&source, &dir, true).unwrap();
    assert_eq!(fetched.len(), 2);
    assert!(fetched.iter().all(|f| f.downloaded));
    let images = mmssl_data::read_idx_images(
        dir.join("imgs-idx3-ubyte.gz"),
        dir.join("labels-idx1-ubyte.gz"),
    )
    .unwrap();
    assert_eq!(images.len(), 5);
    assert_eq!(
        mmssl_data::read_idx(dir.join("labels-idx1-ubyte.gz"))
            .unwrap()
            .data,
        vec![3, 1, 4, 1, 5]
    );
    let mut names = no_leftovers(&dir);
    names.sort();
    assert_eq!(names, ["imgs-idx3-ubyte.gz", "labels-idx1-ubyte.gz"]);

    // Second time: nothing is downloaded, even with the server's files gone.
    for (_, p) in &files {
        std::fs::remove_file(p).unwrap();
    }
    let again = download(&source, &dir, true).unwrap();
    assert!(again.iter().all(|f| !f.downloaded), "{again:?}");
    assert_eq!(again[0].bytes, fetched[0].bytes);
}

#[test]
fn download_with_a_wrong_checksum_is_an_error_and_leaves_nothing() {
    let served = tempfile::tempdir().unwrap();
    let files = write_idx_pair(served.path());
    let base = serve(served.path().to_path_buf());
    let wrong = "0123456789abcdef0123456789abcdef";
    let source = Source::new("test", &base, &[(files[1].0.as_str(), wrong)]);
    let dest = tempfile::tempdir().unwrap();
    let err = download(&source, dest.path(), true).unwrap_err();
    assert!(matches!(err, DataError::Checksum { .. }), "{err:?}");
    let msg = err.to_string();
    let actual = file_md5(&files[1].1).unwrap();
    assert!(msg.contains("labels-idx1-ubyte.gz"), "{msg}");
    assert!(msg.contains(wrong) && msg.contains(&actual), "{msg}");
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(no_leftovers(dest.path()).is_empty(), "files left behind");
}

#[test]
fn download_of_a_missing_file_says_404() {
    let served = tempfile::tempdir().unwrap();
    let base = serve(served.path().to_path_buf());
    let source = Source::new(
        "test",
        &base,
        &[("absent.gz", "0123456789abcdef0123456789abcdef")],
    );
    let dest = tempfile::tempdir().unwrap();
    let err = download(&source, dest.path(), true).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, DataError::Download { .. }), "{err:?}");
    assert!(msg.contains("absent.gz") && msg.contains("404"), "{msg}");
    assert!(no_leftovers(dest.path()).is_empty());
}

#[test]
fn download_replaces_a_present_file_with_a_wrong_checksum() {
    let served = tempfile::tempdir().unwrap();
    let files = write_idx_pair(served.path());
    let base = serve(served.path().to_path_buf());
    let source = source_for(&base, &files[1..]);
    let dest = tempfile::tempdir().unwrap();
    std::fs::write(dest.path().join(&files[1].0), b"stale").unwrap();
    let fetched = download(&source, dest.path(), true).unwrap();
    assert!(fetched[0].downloaded);
    assert_eq!(
        file_md5(&fetched[0].path).unwrap(),
        file_md5(&files[1].1).unwrap()
    );
}

/// `mmssl data download NAME --dir DIR --base-url BASE --quiet`.
fn download_cli(name: &str, dir: &Path, base: &str) -> std::process::Output {
    mmssl(&[
        "data",
        "download",
        name,
        "--dir",
        arg(dir),
        "--base-url",
        base,
        "--quiet",
    ])
}

#[test]
fn cli_download_of_recompressed_mnist_reports_the_checksum_mismatch() {
    let Some(shared) = shared() else { return };
    let base = serve(shared.join("mnist"));
    let dest = tempfile::tempdir().unwrap();
    let dir = dest.path().join("mnist");
    let out = download_cli("mnist", &dir, &base);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    // The first file: the official MD5 against the re-gzipped copy's.
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains("f68b3c2dcbeaaa9fbdd348bbdeb94873"), "{err}");
    assert!(err.contains("c7dfcf1bfd3481a40f7b3aedbdbd083c"), "{err}");
    assert!(no_leftovers(&dir).is_empty(), "{:?}", no_leftovers(&dir));
}

#[test]
fn cli_download_404_is_an_error() {
    let served = tempfile::tempdir().unwrap();
    let base = serve(served.path().to_path_buf());
    let dest = tempfile::tempdir().unwrap();
    let out = download_cli("svhn", dest.path(), &base);
    assert_fails(&out, &["train_32x32.mat", "404"]);
}

fn info_json(path: &Path) -> serde_json::Value {
    let out = mmssl(&["data", "info", "--json", arg(path)]);
    assert_ok(&out);
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn info_on_real_idx_files() {
    let Some(shared) = shared() else { return };
    let labels = shared.join("mnist/t10k-labels-idx1-ubyte.gz");
    let j = info_json(&labels);
    assert_eq!(j["format"], "IDX");
    assert_eq!(j["element_type"], "u8");
    assert_eq!(j["dims"], serde_json::json!([10000]));
    assert_eq!(j["classes"], 10);
    assert_eq!(j["class_counts"]["1"], 1135);
    let out = mmssl(&[
        "data",
        "info",
        shared
            .join("fashion-mnist/t10k-images-idx3-ubyte.gz")
            .to_str()
            .unwrap(),
    ]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("10000 x 28 x 28"), "{text}");
    assert!(text.contains("gzip"), "{text}");
}

#[test]
fn info_on_svhn_format_mat() {
    let Some(shared) = shared() else { return };
    for f in ["svhn_layout_compressed.mat", "svhn_layout_raw.mat"] {
        let j = info_json(&shared.join("svhn-format").join(f));
        assert!(j["format"].as_str().unwrap().contains("MATLAB"), "{j}");
        assert_eq!(j["svhn"]["images"], 64, "{j}");
        assert_eq!(j["svhn"]["labels"], 64, "{j}");
        let arrays = j["arrays"].as_array().unwrap();
        let x = arrays.iter().find(|a| a["name"] == "X").unwrap();
        assert_eq!(x["dims"], serde_json::json!([32, 32, 3, 64]));
        assert_eq!(x["class"], "uint8");
    }
    let out = mmssl(&[
        "data",
        "info",
        shared
            .join("svhn-format/svhn_layout_raw.mat")
            .to_str()
            .unwrap(),
    ]);
    assert_ok(&out);
    assert!(stdout(&out).contains("looks like SVHN: 64 images"));
}

#[test]
fn info_on_nifti_1_and_2() {
    let Some(shared) = shared() else { return };
    let mri = shared.join("mri");
    let j = info_json(&mri.join("mni152_t1_1mm.nii.gz"));
    assert_eq!(j["format"], "NIfTI-1");
    assert_eq!(j["dims"], serde_json::json!([197, 233, 189]));
    assert_eq!(j["datatype"], "u8");
    assert!(
        j["affine_source"]["source"]
            .as_str()
            .unwrap()
            .starts_with("sform")
    );
    let j = info_json(&mri.join("bold_4d_small.nii.gz"));
    assert_eq!(j["dims"], serde_json::json!([10, 10, 18, 40]));
    assert!((j["tr_s"].as_f64().unwrap() - 1.35).abs() < 1e-6, "{j}");
    assert_eq!(j["units"]["time"], "s");
    let j = info_json(&mri.join("example_nifti2.nii.gz"));
    assert_eq!(j["format"], "NIfTI-2");
    assert_eq!(j["dims"], serde_json::json!([32, 20, 12, 2]));
    assert_eq!(j["datatype"], "i16");
    let j = info_json(&mri.join("anatomical_big_endian.nii"));
    assert_eq!(j["byte_order"], "big");
    let out = mmssl(&["data", "info", arg(&mri.join("bold_4d_small.nii.gz"))]);
    assert_ok(&out);
    let text = stdout(&out);
    assert_contains_all(
        &text,
        &[
            "NIfTI-1",
            "i16",
            "10 x 10 x 18 x 40",
            "tr:",
            "scaling:",
            "sform",
        ],
    );
}

#[test]
fn synth_cohort_then_info_on_its_manifest() {
    let (dir, out_dir) = scratch("cohort");
    // Too few subjects for the protocol's folds is refused at once, with the limit.
    let out = synth(&out_dir, &["--subjects", "4"]);
    assert_fails(&out, &["at least 12"]);
    assert!(!out_dir.join("manifest.csv").exists());
    let out = synth(&out_dir, &["--subjects", "12", "--seed", "3"]);
    assert_ok(&out);
    let text = stdout(&out);
    let manifest = out_dir.join("manifest.csv");
    assert!(manifest.is_file());
    assert!(text.contains("12 subjects (6 HC, 6 AD)"), "{text}");
    assert!(
        text.contains(&format!(
            "mmssl run --dataset oasis3 --manifest {}",
            manifest.display()
        )),
        "{text}"
    );
    // The printed next command works on the smallest cohort (it failed on a batch larger
    // than the training set): run it as printed, evaluation shortened.
    let next = text
        .lines()
        .find_map(|l| l.strip_prefix("next: mmssl "))
        .expect("a next: line");
    let run_dir = dir.path().join("next-run");
    let mut args: Vec<String> = next
        .split_whitespace()
        .map(|a| {
            if a == "RUN" {
                run_dir.to_string_lossy().into_owned()
            } else {
                a.to_string()
            }
        })
        .collect();
    args.extend(["--eval-epochs", "2", "--quiet"].map(String::from));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_ok(&mmssl(&refs));
    assert!(run_dir.join("eval.json").exists());
    let j = info_json(&manifest);
    assert_eq!(j["subjects"], 12);
    assert_eq!(j["subjects_per_diagnosis"]["HC"], 6);
    assert_eq!(j["subjects_per_diagnosis"]["AD"], 6);
    assert_eq!(j["missing_files"], 0);
    let rows = j["rows"].as_u64().unwrap();
    let per: u64 = j["sessions_per_diagnosis"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(rows, per);
    // A volume it wrote is a valid NIfTI.
    let m = mmssl_data::Manifest::read(&manifest).unwrap();
    let j = info_json(&m.rows()[0].t1);
    assert_eq!(j["format"], "NIfTI-1");
}

#[test]
fn synth_cohort_with_a_missing_template_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = synth(&dir.path().join("c"), &["--t1", "/nonexistent/t1.nii.gz"]);
    assert_fails(&out, &["/nonexistent/t1.nii.gz"]);
}

#[test]
fn synth_cohort_stage_flags_are_checked() {
    let (_dir, out_dir) = scratch("c");
    // The HC range only means something on a shared stage.
    assert_fails(&synth(&out_dir, &["--hc-stage", "0,0.5"]), &["--stage"]);
    assert_fails(
        &synth(&out_dir, &["--stage", "0.5,x"]),
        &["`x`", "not a number"],
    );
    assert_fails(&synth(&out_dir, &["--stage", "0.5"]), &["expected LO,HI"]);
    // An unordered HC range is refused by name before anything is written.
    assert_fails(
        &synth(&out_dir, &["--stage", "0.5,1.5", "--hc-stage", "0.5,0.1"]),
        &["hc_stage", "0.5-0.1"],
    );
    assert!(!out_dir.join("manifest.csv").exists());
}

#[test]
fn bundled_template_is_found() {
    let (t1, gm) = mmssl_data::bundled_template().unwrap();
    assert!(t1.is_file() && gm.is_file());
}

#[test]
fn info_errors_name_the_file_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // Missing file.
    let missing = dir.path().join("nope.nii.gz");
    let out = mmssl(&["data", "info", arg(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: "));
    assert!(stderr(&out).contains("nope.nii.gz"), "{}", stderr(&out));
    // Unknown format.
    let text = write_file(dir.path(), "notes.txt", "hello, this is not a dataset\n");
    let out = mmssl(&["data", "info", arg(&text)]);
    assert_fails(&out, &["notes.txt", "unknown format"]);
    // Empty file.
    let empty = write_file(dir.path(), "empty.bin", b"");
    let out = mmssl(&["data", "info", arg(&empty)]);
    assert_fails(&out, &["empty"]);
    // Truncated IDX (raw): the header promises more than the file holds.
    let idx = write_file(
        dir.path(),
        "short-idx1-ubyte",
        [0, 0, 8, 1, 0, 0, 0, 100, 1, 2, 3],
    );
    let out = mmssl(&["data", "info", arg(&idx)]);
    assert_fails(&out, &["short-idx1-ubyte"]);
    // A bad manifest.
    let csv = write_file(dir.path(), "cohort.csv", "subject,session\nA,1\n");
    let out = mmssl(&["data", "info", arg(&csv)]);
    assert_fails(&out, &["cohort.csv"]);
}

#[test]
fn info_on_truncated_real_files() {
    let Some(shared) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (src, keep) in [
        ("mri/anatomical_big_endian.nii", 20_000),
        ("mri/bold_4d_small.nii.gz", 30_000),
        ("mnist/t10k-labels-idx1-ubyte.gz", 2_000),
        ("svhn-format/svhn_layout_raw.mat", 50_000),
    ] {
        let bytes = std::fs::read(shared.join(src)).unwrap();
        let name = Path::new(src).file_name().unwrap();
        let p = write_file(dir.path(), name, &bytes[..keep]);
        let out = mmssl(&["data", "info", arg(&p)]);
        assert_eq!(out.status.code(), Some(2), "{src}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with("error: ") && err.contains(&*name.to_string_lossy()),
            "{src}: {err}"
        );
    }
}

#[test]
fn a_server_that_accepts_and_never_answers_times_out_and_is_retried() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    // Accepts every connection and holds it open without a byte of answer (the download used
    // to wait for ever, silently).
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let source = Source::new(
        "test",
        &format!("http://{addr}/"),
        &[("a.bin", "00000000000000000000000000000000")],
    );
    let dest = tempfile::tempdir().unwrap();
    let options = DownloadOptions {
        quiet: true,
        timeout: std::time::Duration::from_secs(1),
        retries: 1,
        retry_pause: std::time::Duration::from_millis(10),
    };
    let err = download_with(&source, dest.path(), &options).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, DataError::Download { .. })
            && msg.contains("timed out")
            && msg.contains("a.bin"),
        "{msg}"
    );
    // The first attempt and one retry.
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert!(
        no_leftovers(dest.path()).is_empty(),
        "{:?}",
        no_leftovers(dest.path())
    );
}
