//! Checkpoints of the training loop: the loop's state, and the files of one checkpoint
//! committed together.

use super::{EpochMetrics, FitConfig, Progress};
use crate::error::{Result, TrainError};
use crate::method::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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
    /// What the caller says defines the run ([`Checkpoints::with_record`]), as it was when the
    /// run started: a resume compares it with what it is asked to continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) record: Option<serde_json::Value>,
    /// SHA-256 of the state itself (its compact JSON without this field): an edited or
    /// damaged `state.json` is found before it is used. `None` in states written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) checksum: Option<String>,
}

impl LoopState {
    /// The SHA-256 of the state without its checksum.
    fn own_checksum(&self) -> String {
        let bare = LoopState {
            checksum: None,
            ..self.clone()
        };
        let text = serde_json::to_string(&bare).unwrap_or_default();
        hex(&Sha256::digest(text.as_bytes()))
    }
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
    /// SHA-256 of each file, by name (empty in states written before checksums).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) sha256: BTreeMap<String, String>,
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
/// pointed at the new files (hard links, or copies where links are impossible) and the files
/// of older commits are deleted, but for the previous commit's (its state kept as
/// `state.previous.json`); a resume redoes both steps if a kill interrupted them.
///
/// Every committed file's SHA-256 is kept in `state.json`, and the state carries its own. A
/// resume checks them all before loading anything: when the last commit is damaged (a file
/// truncated or zeroed on disk, `state.json` edited by hand) it continues from the previous
/// commit, if that one is intact, and says so ([`Progress::notice`]); otherwise it refuses
/// ([`TrainError::DamagedCheckpoint`]). It never continues silently from damaged files.
/// A run asked to stop in the middle of an epoch ([`Progress::stop_requested`]) commits the
/// same way, its files named by epoch and step (`last.e0003s000012.bpk`).
#[derive(Debug, Clone)]
pub struct Checkpoints {
    pub(super) dir: PathBuf,
    pub(super) resume: bool,
    record: Option<serde_json::Value>,
}

impl Checkpoints {
    /// Checkpoints in `dir` (created if needed).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        Ok(Checkpoints {
            dir,
            resume: false,
            record: None,
        })
    }

    /// The checkpoints in `dir` for reading ([`Checkpoints::saved_record`]), without creating
    /// the folder.
    pub fn open(dir: impl Into<PathBuf>) -> Self {
        Checkpoints {
            dir: dir.into(),
            resume: false,
            record: None,
        }
    }

    /// Continue the run these checkpoints hold (if any) instead of starting over.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// What defines the run, as the caller sees it (its data, method, training and seed):
    /// kept in every committed state, so that a resume can check it is asked to continue the
    /// same run ([`Checkpoints::saved_record`]) even when the files that describe the run
    /// beside the checkpoints were edited.
    pub fn with_record(mut self, record: serde_json::Value) -> Self {
        self.record = Some(record);
        self
    }

    /// The record ([`Checkpoints::with_record`]) of the committed state, or of the one
    /// before it when the committed one does not match its own checksum (the record is part of
    /// what the checksum covers; the model files are checked when a resume loads them).
    /// `None` without a checkpoint or a record. Changes nothing on disk.
    pub fn saved_record(&self) -> Result<Option<serde_json::Value>> {
        let state = self
            .read_checked(&self.state())
            .or_else(|_| self.read_checked(&self.previous_state()))
            .unwrap_or_default();
        Ok(state.and_then(|s| s.record))
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

    /// Checks the committed checkpoint before its best model is used (evaluation, export):
    /// the state against its own checksum, and `best.bpk` against the checksum of the file
    /// it stands for (checkpoints without a state, imported weights, have none to check).
    /// Returns the SHA-256 of `best.bpk`, which identifies the model evaluated.
    pub fn verify(&self) -> Result<String> {
        let damaged = |reason: String| TrainError::DamagedCheckpoint {
            state: self.state(),
            reason,
            fallback: "its best model cannot be evaluated or exported: train the run again \
                       (--overwrite)"
                .into(),
        };
        let state = self.read_checked(&self.state()).map_err(damaged)?;
        let found = sha256_file(&self.best()).map_err(|e| io(&self.best(), e))?;
        let files = state.as_ref().and_then(|s| s.files.as_ref());
        match files.and_then(|f| f.best.as_ref().and_then(|b| f.sha256.get(b))) {
            Some(sum) if *sum != found => {
                Err(damaged("best.bpk does not match its checksum".into()))
            }
            _ => Ok(found),
        }
    }

    /// The committed state before the last commit (`state.previous.json`), and its files:
    /// where a resume falls back when the last one is damaged.
    pub fn previous_state(&self) -> PathBuf {
        self.dir.join("state.previous.json")
    }

    /// The state at `path` if it exists, checked against its own checksum and each of its
    /// files against theirs; `Err` says what does not match.
    fn verified(&self, path: &Path) -> std::result::Result<Option<LoopState>, String> {
        let state = self.read_checked(path)?;
        for (name, sum) in state
            .iter()
            .flat_map(|s| s.files.iter().flat_map(|f| &f.sha256))
        {
            let file = self.dir.join(name);
            match sha256_file(&file) {
                Ok(found) if found == *sum => {}
                Ok(_) => return Err(format!("{name} does not match its checksum")),
                Err(e) => return Err(format!("{name} cannot be read: {e}")),
            }
        }
        Ok(state)
    }

    /// The state at `path` if it exists, checked against its own checksum (not its files).
    fn read_checked(&self, path: &Path) -> std::result::Result<Option<LoopState>, String> {
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let mut state: LoopState =
            serde_json::from_str(&text).map_err(|e| format!("it does not parse: {e}"))?;
        if state.checksum.is_none() {
            // Written before checksums, when the history counted epochs from 0.
            for m in &mut state.history {
                m.epoch += 1;
            }
        }
        if let Some(sum) = &state.checksum
            && *sum != state.own_checksum()
        {
            return Err(format!(
                "{} was edited or damaged: its content does not match its checksum",
                file_name(path)
            ));
        }
        Ok(Some(state))
    }

    /// The committed state to resume from, checked ([`Checkpoints::verified`]). When the last
    /// commit is damaged and the one before it is intact, that one is restored as the
    /// committed state (the damaged `state.json` kept as `state.damaged.json`), and
    /// `progress` hears of it ([`Progress::notice`]); with no intact one, an error.
    pub(super) fn load(&self, progress: &mut dyn Progress) -> Result<Option<LoopState>> {
        let current = self.state();
        let why = match self.verified(&current) {
            Ok(state) => return Ok(state),
            Err(why) => why,
        };
        let previous = self.previous_state();
        let fallback = match self.verified(&previous) {
            Ok(Some(state)) => state,
            Ok(None) => {
                return Err(TrainError::DamagedCheckpoint {
                    state: current,
                    reason: why,
                    fallback: "there is no earlier checkpoint to resume from: start the run again \
                               (--overwrite)"
                        .into(),
                });
            }
            Err(also) => {
                return Err(TrainError::DamagedCheckpoint {
                    state: current,
                    reason: why,
                    fallback: format!(
                        "the one before it is damaged too ({also}): start the run again \
                         (--overwrite)"
                    ),
                });
            }
        };
        link_or_copy(&current, &self.dir.join("state.damaged.json"))?;
        link_or_copy(&previous, &current)?;
        progress.notice(&format!(
            "the last checkpoint in {} is damaged ({why}); resuming from the one before it \
             ({}; the damaged state is kept as state.damaged.json)",
            self.dir.display(),
            match &fallback.partial {
                Some(p) => format!("epoch {}, after step {}", p.epoch + 1, p.step),
                None => format!("after epoch {}", fallback.epochs_done),
            }
        ));
        Ok(Some(fallback))
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
            // Epochs are named by their number from 1, as everywhere.
            Some(p) => format!("e{:04}s{:06}", p.epoch + 1, p.step),
            None => format!("e{:04}", state.epochs_done),
        };
        let earlier = state.files.as_ref();
        let mut files = CheckpointFiles {
            last: format!("last.{tag}.bpk"),
            optimizer: format!("optimizer.{tag}.bpk"),
            best: if improved {
                Some(format!("best.{tag}.bpk"))
            } else {
                earlier.and_then(|f| f.best.clone())
            },
            sha256: BTreeMap::new(),
        };
        // A best model kept from an earlier epoch keeps the checksum it was written with.
        if let (false, Some(best), Some(earlier)) = (improved, &files.best, earlier)
            && let Some(sum) = earlier.sha256.get(best)
        {
            files.sha256.insert(best.clone(), sum.clone());
        }
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
        let mut written = vec![files.last.clone(), files.optimizer.clone()];
        if improved {
            written.extend(files.best.clone());
        }
        for name in written {
            let path = self.dir.join(&name);
            files
                .sha256
                .insert(name, sha256_file(&path).map_err(|e| io(&path, e))?);
        }
        state.files = Some(files);
        state.record = self.record.clone();
        state.checksum = Some(state.own_checksum());
        let text = serde_json::to_string_pretty(&*state).map_err(|e| io(&self.state(), e))?;
        // The committed state becomes the previous one (kept with its files), the fallback
        // of a resume that finds the new one damaged: a link to it, which keeps its content
        // when the new state replaces it below.
        if self.state().exists() {
            link_or_copy(&self.state(), &self.previous_state())?;
        }
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
        // The previous commit's files stay too: the fallback of a damaged last commit.
        let previous: Option<LoopState> = std::fs::read_to_string(self.previous_state())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let keep: Vec<&str> = files
            .names()
            .chain(
                previous
                    .iter()
                    .flat_map(|p| p.files.iter().flat_map(|f| f.names())),
            )
            .collect();
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

/// The SHA-256 of a file's bytes, in hex.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
