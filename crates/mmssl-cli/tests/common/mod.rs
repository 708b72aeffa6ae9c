//! Helpers shared by the integration tests of the `mmssl` binary (each test file uses some).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Proxy settings of the environment, removed so that downloads from the tests' local HTTP
/// server go to it directly.
const PROXY_VARS: [&str; 6] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// The `mmssl` binary under test, without proxy settings.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mmssl"));
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    cmd
}

/// Runs `mmssl ARGS` to completion.
pub fn mmssl(args: &[&str]) -> Output {
    command()
        .args(args)
        .output()
        .expect("the mmssl binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the command succeeded, showing its exit code and output otherwise.
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// Asserts that `text` contains every one of `needles`, showing the text otherwise.
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` missing:\n{text}");
    }
}

/// A text file the binary wrote.
pub fn read_text(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The lines of `RUN/metrics.jsonl`: one per epoch trained.
pub fn metric_lines(run: &Path) -> usize {
    read_text(run.join("metrics.jsonl")).lines().count()
}

/// Writes `contents` to `dir/name`; returns the file's path.
pub fn write_file(dir: &Path, name: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// A JSON file the binary wrote.
pub fn read_json(path: impl AsRef<Path>) -> serde_json::Value {
    let path = path.as_ref();
    let text = read_text(path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts that the command failed with exit code 2 (a usage or data error) and that its
/// stderr contains every one of `needles`; returns stderr.
pub fn assert_fails(o: &Output, needles: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
    err
}

/// `path` as a command-line argument (the tests' temporary paths are UTF-8).
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Runs `mmssl` with the words of `line` (split at white space; no quoting), then `extra`
/// (paths and other words that may hold spaces).
pub fn mmssl_words(line: &str, extra: &[&str]) -> Output {
    let mut args: Vec<&str> = line.split_whitespace().collect();
    args.extend_from_slice(extra);
    mmssl(&args)
}

/// Runs `mmssl COMMAND --run RUN EXTRA...` (`linear-eval`, `analyze`).
pub fn on_run(command: &str, run: &Path, extra: &[&str]) -> Output {
    let mut args = vec![command, "--run", arg(run)];
    args.extend_from_slice(extra);
    mmssl(&args)
}

/// The flags of a tiny Two-View MNIST run: 64 pairs, one epoch of batches of 32, one epoch of
/// linear evaluation (the last two flags).
pub const TINY: [&str; 8] = [
    "--epochs",
    "1",
    "--train-limit",
    "64",
    "--batch-size",
    "32",
    "--eval-epochs",
    "1",
];

/// `mmssl COMMAND` of a tiny run ([`TINY`]) into `out`, then `EXTRA...`.
pub fn tiny(command: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![command];
    args.extend(TINY);
    args.extend(["--out", arg(out)]);
    args.extend(extra);
    mmssl(&args)
}

/// Writes `DIR/grid.toml`: a grid of `methods` x `seeds` (TOML arrays as written, e.g.
/// `"\"XX\", \"ae\""` and `"0, 1"`) with one tiny epoch each.
pub fn tiny_grid(dir: &Path, methods: &str, seeds: &str) -> PathBuf {
    let text = format!(
        "methods = [{methods}]\nseeds = [{seeds}]\n[settings]\nepochs = 1\ntrain_limit = 64\n\
         eval_epochs = 1\nbatch_size = 32\n"
    );
    write_file(dir, "grid.toml", text)
}

/// `mmssl experiment --grid GRID --out OUT --quiet EXTRA...`.
pub fn experiment(grid: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "experiment",
        "--grid",
        arg(grid),
        "--out",
        arg(out),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    mmssl(&args)
}

/// `mmssl COMMAND --dataset oasis3 --manifest MANIFEST --out OUT --quiet EXTRA...`: a
/// command on a volume cohort.
pub fn on_cohort(command: &str, manifest: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        command,
        "--dataset",
        "oasis3",
        "--manifest",
        arg(manifest),
        "--out",
        arg(out),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    mmssl(&args)
}

/// `mmssl run` of CR-XX on a volume cohort: one epoch of batches of 2, two epochs of linear
/// evaluation, into `out`.
pub fn run_on_cohort(manifest: &Path, out: &Path) -> Output {
    let extra = [
        "--objective",
        "CR-XX",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--eval-epochs",
        "2",
    ];
    on_cohort("run", manifest, out, &extra)
}

/// `mmssl data synth-cohort --out DIR EXTRA...`.
pub fn synth(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["data", "synth-cohort", "--out", arg(dir)];
    args.extend_from_slice(extra);
    mmssl(&args)
}

/// `mmssl data synth-cohort --out DIR --subjects 12 EXTRA...`, which must succeed.
pub fn synth_cohort(dir: &Path, extra: &[&str]) {
    let mut args = vec!["--subjects", "12"];
    args.extend(extra);
    assert_ok(&synth(dir, &args));
}

/// A new temporary folder (removed when the guard drops) and the path `name` inside it (not
/// created).
pub fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}
