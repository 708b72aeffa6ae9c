//! Issue 35, "nothing lost": what a user's careless or hostile input must not do to the
//! machine or to their results (one test per case, each failing on the main it was found on).

mod common;
use common::*;

/// Item 11: a device given as input is refused at once (before, `/dev/zero` was read until the
/// kernel killed mmssl at 22 GB), as are a folder and a FIFO, naming the file.
#[cfg(unix)]
#[test]
fn devices_fifos_and_folders_are_refused_as_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("b.npy");
    ndarray_npy::WriteNpyExt::write_npy(
        &ndarray::Array2::<f64>::eye(3),
        std::fs::File::create(&npy).unwrap(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let o = mmssl(&["similarity", "--a", "/dev/zero", "--b", arg(&npy)]);
    assert_fails(&o, &["/dev/zero", "not a regular file"]);
    assert!(started.elapsed().as_secs() < 30, "refused at once");
    let o = mmssl(&["similarity", "--a", arg(dir.path()), "--b", arg(&npy)]);
    assert_fails(&o, &["not a regular file"]);
    let o = mmssl(&[
        "run",
        "--config",
        "/dev/zero",
        "--out",
        arg(&dir.path().join("r")),
    ]);
    assert_fails(&o, &["/dev/zero", "mmssl reads only regular files"]);
    let fifo = dir.path().join("fifo.toml");
    if std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        // A FIFO with no writer would block the read forever: refused before it is opened.
        let o = mmssl(&[
            "run",
            "--config",
            arg(&fifo),
            "--out",
            arg(&dir.path().join("r")),
        ]);
        assert_fails(&o, &["fifo.toml", "mmssl reads only regular files"]);
        let o = mmssl(&["data", "info", arg(&fifo)]);
        assert_fails(&o, &["mmssl reads only regular files"]);
    }
    assert!(
        !dir.path().join("r").exists(),
        "a refused run writes nothing"
    );
}
