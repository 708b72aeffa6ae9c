//! Checkpoints of the training loop: the loop's state, and the files of one checkpoint
//! committed together.

use super::{EpochMetrics, FitConfig};
use crate::error::{Result, TrainError};
use crate::method::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The loop's own state, saved beside the checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct LoopState {
    /// Epochs completed.
    pub(super) epochs_done: usize,
    /// Steps taken.
    pub(super) steps_done: usize,
    /// Best validation (or training) loss so far, and its epoch.
    pub(super) best: Option<(f64, usize)>,
    /// Metrics of completed epochs.
    pub(super) history: Vec<EpochMetrics>,
    /// The configuration the run was started with.
    pub(super) config: FitConfig,
    /// The checkpoint files of the completed epochs (`None` in a state written before they
    /// were named here: then `last.bpk` and `optimizer.bpk`).
    #[serde(default)]
    pub(super) files: Option<CheckpointFiles>,
    /// Where a run stopped in the middle of an epoch (see [`Progress::stop_requested`]); the
    /// files then hold the model and optimiser after that epoch's first `step` steps.
    #[serde(default)]
    pub(super) partial: Option<PartialEpoch>,
    /// What the progress measured before the first step ([`super::Progress::evaluate_start`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) before_training: BTreeMap<String, f64>,
}

/// An epoch stopped after some of its steps, and what it had accumulated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PartialEpoch {
    /// The epoch.
    pub(super) epoch: usize,
    /// Its steps done.
    pub(super) step: usize,
    /// Sum of their losses.
    pub(super) loss_sum: f64,
    /// Sums of their named terms.
    pub(super) term_sums: BTreeMap<String, f64>,
    /// Wall time spent on them.
    pub(super) seconds: f64,
    /// Time of it spent waiting for data.
    pub(super) data_wait_seconds: f64,
}

/// The files one committed checkpoint consists of, named by the epoch that wrote them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct CheckpointFiles {
    pub(super) last: String,
    pub(super) optimizer: String,
    pub(super) best: Option<String>,
}

impl CheckpointFiles {
    fn names(&self) -> impl Iterator<Item = &str> {
        [Some(&self.last), Some(&self.optimizer), self.best.as_ref()]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

/// Where checkpoints go: after every epoch the model, the optimiser and the loop state; the
/// model of the best validation loss when it improves.
///
/// One epoch's checkpoint is several files, committed together: the epoch writes new files
/// named by its number (`last.e0003.bpk`, `optimizer.e0003.bpk`, `best.e0003.bpk`), each
/// through a temporary file, a flush to disk and a rename; then `state.json`, which names them,
/// is replaced the same way. Replacing `state.json` is the commit: a process killed at any
/// moment (even by `kill -9`) leaves either the previous epoch's complete set or the new one,
/// never a mix, and a resumed run continues from whichever `state.json` names. After the
/// commit the stable names `last.bpk` and `best.bpk` (what evaluation and users load) are
/// pointed at the new files (hard links, or copies where links are impossible) and the
/// previous epoch's files are deleted; a resume redoes both steps if a kill interrupted them.
/// A run asked to stop in the middle of an epoch ([`Progress::stop_requested`]) commits the
/// same way, its files named by epoch and step (`last.e0003s000012.bpk`).
#[derive(Debug, Clone)]
pub struct Checkpoints {
    pub(super) dir: PathBuf,
    pub(super) resume: bool,
}

impl Checkpoints {
    /// Checkpoints in `dir` (created if needed).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        Ok(Checkpoints { dir, resume: false })
    }

    /// Continue the run these checkpoints hold (if any) instead of starting over.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// The file of the best model.
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.bpk")
    }

    /// The file of the last model.
    pub fn last(&self) -> PathBuf {
        self.dir.join("last.bpk")
    }

    pub(super) fn optimizer(&self) -> PathBuf {
        self.dir.join("optimizer.bpk")
    }

    /// The committed loop state (`state.json`): a run has a checkpoint to resume from once it
    /// exists.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Saves the checkpoint of the epoch `state` has just completed, or of the steps of
    /// [`LoopState::partial`] (see the type's documentation for the order of the writes).
    pub(super) fn commit<M: Method>(
        &self,
        state: &mut LoopState,
        model: &M,
        optim: &burn::optim::ModuleOptimizer,
        improved: bool,
    ) -> Result<()> {
        let tag = match &state.partial {
            Some(p) => format!("e{:04}s{:06}", p.epoch, p.step),
            None => format!("e{:04}", state.epochs_done),
        };
        let files = CheckpointFiles {
            last: format!("last.{tag}.bpk"),
            optimizer: format!("optimizer.{tag}.bpk"),
            best: if improved {
                Some(format!("best.{tag}.bpk"))
            } else {
                state.files.as_ref().and_then(|f| f.best.clone())
            },
        };
        // burn's running statistics (BatchNorm) hold their last update aside until something
        // synchronises them, and a record would miss it; `valid()` synchronises them (the
        // state is shared with the training model), as validation does.
        let _ = model.valid();
        let save = |name: &str| {
            let m = model.clone();
            atomic(&self.dir.join(name), |p| {
                m.save_file(p).map_err(|e| format!("{e:?}"))
            })
        };
        save(&files.last)?;
        if improved && let Some(best) = &files.best {
            save(best)?;
        }
        atomic(&self.dir.join(&files.optimizer), |p| {
            optim.save(p).map_err(|e| format!("{e:?}"))
        })?;
        state.files = Some(files);
        let text = serde_json::to_string_pretty(&*state).map_err(|e| io(&self.state(), e))?;
        atomic(&self.state(), |p| {
            std::fs::write(p, text).map_err(|e| e.to_string())
        })?;
        self.publish(state)
    }

    /// Points `last.bpk` and `best.bpk` at the files `state` names and deletes every other
    /// checkpoint file of this directory (older epochs', temporary files of an interrupted
    /// write).
    pub(super) fn publish(&self, state: &LoopState) -> Result<()> {
        let Some(files) = &state.files else {
            return Ok(());
        };
        link_or_copy(&self.dir.join(&files.last), &self.last())?;
        if let Some(best) = &files.best {
            link_or_copy(&self.dir.join(best), &self.best())?;
        }
        let keep: Vec<&str> = files.names().collect();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let stamped = ["last.e", "best.e", "optimizer.e"]
                .iter()
                .any(|p| name.starts_with(p));
            let temporary = name.ends_with(".tmp");
            if (stamped || temporary) && !keep.contains(&name) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
            }
        }
        Ok(())
    }
}

/// Makes `dst` the same file as `src` (a hard link, or a copy where the file system has no
/// links), replacing `dst` atomically.
fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    let tmp = dst.with_extension("link.tmp");
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(src, &tmp).is_err() {
        std::fs::copy(src, &tmp).map_err(|e| io(src, e))?;
    }
    std::fs::rename(&tmp, dst).map_err(|e| io(dst, e))
}

pub(super) fn io(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Writes through a temporary file, flushed to disk, and a rename, so a crash never leaves a
/// partial file.
fn atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> std::result::Result<(), String>,
{
    let tmp = path.with_extension("tmp");
    write(&tmp).map_err(|e| io(&tmp, e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}
