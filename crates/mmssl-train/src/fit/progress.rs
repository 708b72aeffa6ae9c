//! What [`fit`](super::fit) tells the outside while it trains, and how the outside answers:
//! the [`Progress`] interface (steps, epochs, the online evaluation, stop requests).

use super::EpochMetrics;
use crate::linear_eval::Represent;
use std::collections::BTreeMap;

/// What one training step reports to [`Progress::step`].
#[derive(Debug, Clone, Copy)]
pub struct StepReport<'a> {
    /// The epoch's number, from 1.
    pub epoch: usize,
    /// The step's number within the epoch, from 1 (the steps of the epoch done with it).
    pub step: usize,
    /// Steps of the epoch.
    pub steps: usize,
    /// The step's loss.
    pub loss: f64,
    /// The step's named loss terms.
    pub terms: &'a [(String, f64)],
}

/// Receives progress from [`fit`](super::fit) (progress bars, logs) and may ask it to stop. `Send`: the
/// training steps, and so the calls, run on a thread of rayon's pool.
pub trait Progress: Send {
    /// After every training step.
    fn step(&mut self, _report: &StepReport<'_>) {}
    /// After every epoch.
    fn epoch(&mut self, _metrics: &EpochMetrics) {}
    /// After an epoch's validation, before its checkpoint: numbers measured on the model as
    /// the epoch leaves it, kept in the epoch's [`EpochMetrics::online`] (and so in the
    /// checkpointed history); `epoch` is the epoch's number, from 1. `model` gives frozen features only (evaluation mode, nothing of
    /// the training state changes): the training goes on exactly as without it. Values that
    /// are not finite are left out (JSON, and so the checkpoint, cannot hold them; measure
    /// them as absent). The default measures nothing.
    fn evaluate_epoch(&mut self, _epoch: usize, _model: &dyn Represent) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
    /// Once, before the first training step of a run that starts (not of one resumed from a
    /// checkpoint): numbers measured on the model as training receives it (its random
    /// initialisation, or the weights it starts from), the reference the
    /// [`evaluate_epoch`](Progress::evaluate_epoch) values are read against. Kept in the
    /// checkpointed state and returned as [`FitOutcome::before_training`](super::FitOutcome);
    /// like `evaluate_epoch`, it reads frozen features only and changes nothing of the
    /// training. The default measures nothing.
    fn evaluate_start(&mut self, _model: &dyn Represent) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
    /// Something the user must know that does not stop training: a damaged checkpoint
    /// replaced by the one before it on resume. The default prints it to standard error.
    fn notice(&mut self, message: &str) {
        eprintln!("warning: {message}");
    }
    /// Asked after every step: `true` makes [`fit`](super::fit) stop once that step is done, save a
    /// checkpoint there (in the middle of an epoch if need be) and return
    /// [`TrainError::Interrupted`](crate::TrainError::Interrupted); resuming from it gives the same numbers as a run that was
    /// never stopped. What a handler of SIGTERM or Ctrl-C answers (`mmssl` does). The default
    /// never stops.
    fn stop_requested(&self) -> bool {
        false
    }
}

/// A [`Progress`] that reports nothing.
pub struct Quiet;
impl Progress for Quiet {}
