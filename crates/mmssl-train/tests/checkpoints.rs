//! Checkpoint integrity: every committed file and the state itself carry a SHA-256; a resume
//! that finds the last commit damaged (a file zeroed, `state.json` edited) continues from the
//! one before it, saying so, and ends where a run never damaged ends; with no intact commit
//! it refuses. The caller's record of the run travels in the checksummed state.

use burn::tensor::Device;
use mmssl_train::{
    Checkpoints, ContrastiveModel, FitData, FitOutcome, FitRun, Progress, TrainError, fit,
};
use std::path::Path;

mod common;
use common::*;

/// Hears notices, and asks to stop once `stop_after` steps are done (`usize::MAX`: never).
struct Listener {
    stop_after: usize,
    steps: usize,
    notices: Vec<String>,
}

impl Listener {
    fn new(stop_after: usize) -> Self {
        Listener {
            stop_after,
            steps: 0,
            notices: Vec::new(),
        }
    }
}

impl Progress for Listener {
    fn step(&mut self, _: &mmssl_train::StepReport<'_>) {
        self.steps += 1;
    }
    fn notice(&mut self, message: &str) {
        self.notices.push(message.to_string());
    }
    fn stop_requested(&self) -> bool {
        self.steps >= self.stop_after
    }
}

/// Three epochs of 4 steps into `dir` (resuming what is there), as far as `progress` lets.
fn run(dir: &Path, progress: &mut Listener) -> Result<FitOutcome<ContrastiveModel>, TrainError> {
    let (data, valid) = sets().unwrap();
    let device = Device::flex().autodiff();
    let ck = Checkpoints::new(dir)
        .unwrap()
        .resume(true)
        .with_record(serde_json::json!({"data": "64 pairs"}));
    fit(
        model(&data, &device),
        FitData::new(&data).with_valid(&valid),
        &config(3),
        FitRun::new(&device, progress).with_checkpoints(&ck),
    )
}

/// Stops `dir`'s run at the end of epoch `epochs` (its checkpoint committed).
fn stop_after_epochs(dir: &Path, epochs: usize) {
    let err = run(dir, &mut Listener::new(4 * epochs)).err().unwrap();
    assert!(matches!(err, TrainError::Interrupted { .. }), "{err}");
}

/// Zeroes 4 KiB in the middle of `file`.
fn zero_block(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let mid = bytes.len() / 2;
    let end = (mid + 4096).min(bytes.len());
    bytes[mid..end].fill(0);
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn a_damaged_last_checkpoint_gives_way_to_the_one_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let straight = run(&tmp.path().join("straight"), &mut Listener::new(usize::MAX)).unwrap();
    // A model file of the last commit zeroed in part.
    let dir = tmp.path().join("zeroed");
    stop_after_epochs(&dir, 2);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["files"]["last"], "last.e0002.bpk");
    assert_eq!(
        state["files"]["sha256"]["last.e0002.bpk"]
            .as_str()
            .map(str::len),
        Some(64)
    );
    // The commit before it is kept, with its files.
    assert!(dir.join("state.previous.json").exists());
    assert!(dir.join("last.e0001.bpk").exists());
    zero_block(&dir.join("last.e0002.bpk"));
    let mut listener = Listener::new(usize::MAX);
    let resumed = run(&dir, &mut listener).unwrap();
    assert_eq!(listener.notices.len(), 1, "{:?}", listener.notices);
    let notice = &listener.notices[0];
    assert!(
        notice.contains("last.e0002.bpk does not match its checksum")
            && notice.contains("resuming from the one before it (after epoch 1"),
        "{notice}"
    );
    assert!(dir.join("state.damaged.json").exists());
    // Epochs 2 and 3 trained again from epoch 1's checkpoint: the run never damaged.
    assert_eq!(comparable(&straight.history), comparable(&resumed.history));
    assert!(weights(&straight.last) == weights(&resumed.last));

    // state.json edited by hand (its step count): found, and the same fallback.
    let dir = tmp.path().join("edited");
    stop_after_epochs(&dir, 2);
    let text = std::fs::read_to_string(dir.join("state.json")).unwrap();
    let edited = text.replace("\"steps_done\": 8", "\"steps_done\": 5");
    assert_ne!(edited, text);
    std::fs::write(dir.join("state.json"), edited).unwrap();
    let mut listener = Listener::new(usize::MAX);
    let resumed = run(&dir, &mut listener).unwrap();
    assert!(
        listener.notices[0].contains("state.json was edited or damaged"),
        "{:?}",
        listener.notices
    );
    assert!(weights(&straight.last) == weights(&resumed.last));
}

#[test]
fn with_no_intact_checkpoint_a_resume_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // One commit only: nothing to fall back to.
    let dir = tmp.path().join("one");
    stop_after_epochs(&dir, 1);
    zero_block(&dir.join("optimizer.e0001.bpk"));
    let err = run(&dir, &mut Listener::new(usize::MAX)).err().unwrap();
    assert!(
        matches!(&err, TrainError::DamagedCheckpoint { reason, .. }
            if reason.contains("optimizer.e0001.bpk")),
        "{err}"
    );
    assert!(
        err.to_string().contains("there is no earlier checkpoint"),
        "{err}"
    );
    // Both commits damaged.
    let dir = tmp.path().join("both");
    stop_after_epochs(&dir, 2);
    zero_block(&dir.join("last.e0002.bpk"));
    zero_block(&dir.join("last.e0001.bpk"));
    let err = run(&dir, &mut Listener::new(usize::MAX)).err().unwrap();
    assert!(err.to_string().contains("damaged too"), "{err}");
    // Refused, nothing changed: the state is still the damaged one.
    assert!(!dir.join("state.damaged.json").exists());
}

#[test]
fn the_record_travels_in_the_checksummed_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    assert_eq!(Checkpoints::open(&dir).saved_record().unwrap(), None);
    stop_after_epochs(&dir, 2);
    let record = Checkpoints::open(&dir).saved_record().unwrap();
    assert_eq!(record, Some(serde_json::json!({"data": "64 pairs"})));
    // An edited record is not believed: the previous commit's (intact) one is read.
    let text = std::fs::read_to_string(dir.join("state.json")).unwrap();
    std::fs::write(dir.join("state.json"), text.replace("64 pairs", "32 pairs")).unwrap();
    let record = Checkpoints::open(&dir).saved_record().unwrap();
    assert_eq!(record, Some(serde_json::json!({"data": "64 pairs"})));
}

/// Issue 35 item 15: epochs are counted from 1 in the history, the errors and the files; a
/// state written before (no checksum, history from 0) is read with its history renumbered.
#[test]
fn epochs_count_from_one_and_older_states_are_renumbered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    // Stopped after 6 steps: the second epoch's second step.
    let err = run(&dir, &mut Listener::new(6)).err().unwrap();
    assert!(
        matches!(
            err,
            TrainError::Interrupted {
                epoch: 2,
                step: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("after step 2 of epoch 2"), "{err}");
    assert!(dir.join("last.e0002s000002.bpk").exists());
    let straight = run(&dir, &mut Listener::new(usize::MAX)).unwrap();
    let numbers: Vec<usize> = straight.history.iter().map(|m| m.epoch).collect();
    assert_eq!(numbers, [1, 2, 3]);
    assert!(straight.best_epoch.is_some_and(|b| (1..=3).contains(&b)));
    // The same state as an older mmssl wrote it: no checksums, epochs from 0.
    let path = dir.join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let state_mut = state.as_object_mut().unwrap();
    state_mut.remove("checksum");
    state_mut.remove("record");
    state_mut["files"].as_object_mut().unwrap().remove("sha256");
    for m in state_mut["history"].as_array_mut().unwrap() {
        m["epoch"] = (m["epoch"].as_u64().unwrap() - 1).into();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    let old = run(&dir, &mut Listener::new(usize::MAX)).unwrap();
    let numbers: Vec<usize> = old.history.iter().map(|m| m.epoch).collect();
    assert_eq!(numbers, [1, 2, 3]);
}
