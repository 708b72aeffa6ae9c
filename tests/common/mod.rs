//! Helpers shared by the facade's integration tests.
#![allow(dead_code, clippy::field_reassign_with_default)]

use mmssl::protocol::RunConfig;
use std::path::{Path, PathBuf};

/// A tiny run of `method` on the embedded MNIST test split into `out`: 256 training pairs, one
/// epoch of batches of 32 (no loader threads), two epochs of linear evaluation.
pub fn tiny(method: &str, out: &Path) -> RunConfig {
    let mut c = RunConfig::default();
    c.method = method.parse().unwrap();
    c.data.train_limit = Some(256);
    c.training.epochs = 1;
    c.training.batch_size = 32;
    c.training.workers = 0;
    c.evaluation.epochs = Some(2);
    c.output.dir = out.to_path_buf();
    c
}

/// A new temporary folder (removed when the guard drops) and the path `name` inside it (not
/// created).
pub fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}
