//! Records the git commit the binary is built from (`MMSSL_GIT_REVISION`, written to each
//! run's `run.json`), whatever directory the binary later runs in. Outside a git checkout (a
//! crates.io build) nothing is set and runs record `null`. Uncommitted edits are not flagged:
//! the script reruns when the commit moves, not on every edit.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) else {
        return;
    };
    // Rerun when the checked-out commit moves (a commit, a checkout, a fetch that packs refs).
    for f in ["HEAD", "packed-refs"] {
        let p = Path::new(&git_dir).join(f);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let p = Path::new(&git_dir).join(head);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
    let Some(rev) = git(&["rev-parse", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=MMSSL_GIT_REVISION={rev}");
}
