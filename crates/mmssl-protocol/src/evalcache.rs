//! The linear evaluations an interrupted evaluation finished, kept for the next attempt
//! (`eval.partial.json`): a task stopped by Slurm's warning before its time limit, or by
//! Ctrl-C, does not train the probes it already trained again. Each entry is only taken when
//! the evaluation settings and the evaluated checkpoint (its SHA-256) are those it was made
//! with; the file goes when `eval.json` is written.

use crate::error::{ProtocolError, Result};
use crate::folder::write_atomic;
use mmssl_train::LinearEvalResult;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file of the finished linear evaluations of an unfinished evaluation.
pub const EVAL_PARTIAL: &str = "eval.partial.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// What the results depend on: the linear-evaluation settings and the checkpoint.
    key: String,
    /// The results, by `m{modality}-{pretrained|random-init}`.
    results: BTreeMap<String, LinearEvalResult>,
}

/// The finished linear evaluations of a run folder's evaluation.
pub(crate) struct EvalCache {
    path: PathBuf,
    saved: Saved,
}

fn entry(modality: usize, random_init: bool) -> String {
    format!(
        "m{modality}-{}",
        if random_init {
            "random-init"
        } else {
            "pretrained"
        }
    )
}

impl EvalCache {
    /// The cache of `dir` for results made under `key`: what an earlier attempt with the same
    /// key finished, or nothing (a file of another key, or one that does not parse, is not
    /// used, and is replaced at the first result).
    pub(crate) fn open(dir: &Path, key: String) -> EvalCache {
        let path = dir.join(EVAL_PARTIAL);
        let saved = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Saved>(&t).ok())
            .filter(|s| s.key == key)
            .unwrap_or(Saved {
                key,
                results: BTreeMap::new(),
            });
        EvalCache { path, saved }
    }

    /// The result an earlier attempt finished for `modality` of the pretrained or the
    /// random-init encoder.
    pub(crate) fn get(&self, modality: usize, random_init: bool) -> Option<LinearEvalResult> {
        self.saved
            .results
            .get(&entry(modality, random_init))
            .cloned()
    }

    /// Keeps `result` (written at once, atomically).
    pub(crate) fn put(
        &mut self,
        modality: usize,
        random_init: bool,
        result: &LinearEvalResult,
    ) -> Result<()> {
        self.saved
            .results
            .insert(entry(modality, random_init), result.clone());
        let text = serde_json::to_string_pretty(&self.saved)
            .map_err(|e| ProtocolError::write(&self.path, e))?;
        write_atomic(&self.path, &text)
    }

    /// The evaluation is complete: the cache goes.
    pub(crate) fn finish(self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ProtocolError::write(&self.path, e))
            }
            _ => Ok(()),
        }
    }
}
