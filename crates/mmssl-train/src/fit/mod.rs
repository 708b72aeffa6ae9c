//! The one training loop, shared by every method and by linear evaluation (whose probe is a
//! [`Method`] too): seeded epoch order, RAdam with the one-cycle schedule stepped per batch,
//! validation loss per epoch, the model of the best epoch, best and last checkpoints written
//! atomically, exact resumption, and a guard that stops on a NaN or infinite loss.

use crate::error::{Result, TrainError};
use crate::linear_eval::Frozen;
use crate::method::Method;
use crate::onecycle::{LrDriver, OneCycleConfig};
use crate::radam::RAdamConfig;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use mmssl_data::{BatchPlan, LoaderConfig, PairedDataset, collate, item_rng, prefetch};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

mod checkpoint;
mod progress;

pub use checkpoint::Checkpoints;
use checkpoint::{LoopState, PartialEpoch, io};
pub use progress::{Progress, Quiet, StepReport};

/// The former name of [`FitConfig`] (renamed so as not to sit beside the protocol's
/// `TrainingConfig`, the `[training]` section of a run configuration, under a near-same name).
#[deprecated(since = "0.1.0", note = "renamed FitConfig")]
pub type TrainConfig = FitConfig;

/// Settings of [`fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Items per batch (64). The last incomplete batch of an epoch is dropped (contrastive
    /// estimation and BatchNorm need more than one item) unless `partial_batches` is set.
    pub batch_size: usize,
    /// Seed of the epoch order and the methods' random draws.
    pub seed: u64,
    /// The optimiser.
    pub optimizer: RAdamConfig,
    /// Learning rate when no schedule is used (4e-4).
    pub lr: f64,
    /// The one-cycle schedule (on by default), stepped per batch.
    pub schedule: Option<OneCycleConfig>,
    /// Background loading of upcoming batches (2 workers by default). It changes speed only:
    /// any setting gives the same numbers, and a run may resume with another one.
    #[serde(default)]
    pub loader: LoaderConfig,
    /// Also train and validate on the last incomplete batch of each pass, so that every item
    /// counts (linear evaluation does). Off by default: contrastive estimation and BatchNorm
    /// need full batches, and a batch size of at least 2.
    #[serde(default)]
    pub partial_batches: bool,
}

impl FitConfig {
    /// Whether `other` describes the same run (everything but the loader settings equal).
    fn same_run(&self, other: &FitConfig) -> bool {
        let mut a = self.clone();
        a.loader = other.loader;
        a == *other
    }
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 50,
            batch_size: 64,
            seed: 0,
            optimizer: RAdamConfig::default(),
            lr: 4e-4,
            schedule: Some(OneCycleConfig::default()),
            loader: LoaderConfig::default(),
            partial_batches: false,
        }
    }
}

/// What one epoch measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// The epoch's number, counted from 1 (as every epoch number mmssl shows or writes:
    /// messages, progress, `metrics.jsonl`, checkpoint file names).
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Mean training value of each named term.
    pub terms: BTreeMap<String, f64>,
    /// Mean validation loss, if a validation set was given.
    pub valid_loss: Option<f64>,
    /// Mean validation value of each named term (empty without a validation set): set
    /// against `terms`, it shows which terms generalise and which fall only in training.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub valid_terms: BTreeMap<String, f64>,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// Training pairs processed per second.
    pub pairs_per_second: f64,
    /// Seconds the training steps spent waiting for data (the loader's workers had not yet
    /// loaded the next batch, or, without workers, loading it). Near zero when loading keeps
    /// up with training.
    #[serde(default)]
    pub data_wait_seconds: f64,
    /// What [`Progress::evaluate_epoch`] measured on the model at the end of the epoch (the
    /// online evaluation: probe and k-NN accuracy, retrieval), by name; empty when nothing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub online: BTreeMap<String, f64>,
}

pub use mmssl_kernels::runtime::on_pool;

/// The order of the training items in `epoch`: a permutation seeded by `(seed, epoch)`.
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut item_rng(seed, epoch as u64, u64::MAX));
    order
}

/// What [`fit`] trains on: the training pairs and, optionally, the validation pairs whose
/// loss picks the best epoch.
#[derive(Clone, Copy)]
pub struct FitData<'a> {
    /// The training pairs.
    pub train: &'a dyn PairedDataset,
    /// The validation pairs (`None`: the best epoch is the one of the lowest training loss).
    pub valid: Option<&'a dyn PairedDataset>,
}

impl<'a> FitData<'a> {
    /// Training on `train`, without validation.
    pub fn new(train: &'a dyn PairedDataset) -> Self {
        FitData { train, valid: None }
    }

    /// The same, validated on `valid` after every epoch.
    pub fn with_valid(self, valid: &'a dyn PairedDataset) -> Self {
        FitData {
            valid: Some(valid),
            ..self
        }
    }
}

/// Where [`fit`] runs and to whom it reports: the device, the checkpoints (`None`: nothing is
/// saved) and the [`Progress`] that hears of each step and epoch and may ask to stop.
pub struct FitRun<'a> {
    /// The device the model and the batches live on.
    pub device: &'a Device,
    /// Where the checkpoints go, and whether to resume from them.
    pub checkpoints: Option<&'a Checkpoints>,
    /// The progress reports.
    pub progress: &'a mut dyn Progress,
}

impl<'a> FitRun<'a> {
    /// A run on `device` reporting to `progress`, without checkpoints.
    pub fn new(device: &'a Device, progress: &'a mut dyn Progress) -> Self {
        FitRun {
            device,
            checkpoints: None,
            progress,
        }
    }

    /// The same, saving (or resuming from) `checkpoints`.
    pub fn with_checkpoints(self, checkpoints: &'a Checkpoints) -> Self {
        FitRun {
            checkpoints: Some(checkpoints),
            ..self
        }
    }
}

/// The result of [`fit`].
pub struct FitOutcome<M> {
    /// The model after the last epoch.
    pub last: M,
    /// Per-epoch metrics, including epochs done before a resume.
    pub history: Vec<EpochMetrics>,
    /// Number (from 1) of the epoch with the lowest validation loss (training loss without a
    /// validation set).
    pub best_epoch: Option<usize>,
    /// The model after that epoch, in evaluation form (`Module::valid`: no autodiff, BatchNorm
    /// on its running statistics); `None` when no epoch ran, or when a resumed run's best
    /// epoch came before the resume and its checkpoint named no best model.
    pub best: Option<M>,
    /// What [`Progress::evaluate_start`] measured before the first step (kept across resumes;
    /// empty when it measured nothing).
    pub before_training: BTreeMap<String, f64>,
}

/// Trains `model` on `train`, validating on `valid` after every epoch.
///
/// With `checkpoints`, the model, the optimiser and the loop state are saved after every epoch
/// (atomically), and `best.bpk` holds the model of the best validation loss. With
/// [`Checkpoints::resume`], a
/// run continues after the last completed epoch of those checkpoints; since the epoch order,
/// the methods' draws and the optimiser state are all restored, on the CPU backend it ends
/// with the same weights and metrics as a run that was never interrupted.
///
/// A NaN or infinite loss stops training with [`TrainError::NonFinite`] naming the epoch, step
/// and the first non-finite term; checkpoints of earlier epochs are kept.
///
/// When `progress` asks to stop ([`Progress::stop_requested`], asked after every step), the
/// loop stops after the current step, saves a checkpoint there (with `checkpoints`: the model,
/// the optimiser, the step within the epoch and the epoch's sums so far) and returns
/// [`TrainError::Interrupted`]; resumed, the run finishes with the same weights and metrics as
/// one that never stopped. A stop asked during an epoch's last step or its validation takes
/// effect after that epoch's checkpoint.
///
/// ```no_run
/// # use mmssl_train::{Checkpoints, FitConfig, FitData, FitRun, Method, Quiet, fit};
/// # fn demo<M: Method>(model: M, train: &dyn mmssl_data::PairedDataset,
/// #     valid: &dyn mmssl_data::PairedDataset, device: &burn::tensor::Device) -> mmssl_train::Result<()> {
/// let data = FitData::new(train).with_valid(valid);
/// let checkpoints = Checkpoints::new("run/checkpoints")?;
/// let mut progress = Quiet;
/// let run = FitRun::new(device, &mut progress).with_checkpoints(&checkpoints);
/// let outcome = fit(model, data, &FitConfig::default(), run)?;
/// println!("best epoch: {:?}", outcome.best_epoch);
/// # Ok(()) }
/// ```
pub fn fit<M: Method>(
    mut model: M,
    data: FitData<'_>,
    config: &FitConfig,
    run: FitRun<'_>,
) -> Result<FitOutcome<M>> {
    let FitData { train, valid } = data;
    let FitRun {
        device,
        checkpoints,
        progress,
    } = run;
    if config.batch_size == 0 || (config.batch_size < 2 && !config.partial_batches) {
        return Err(TrainError::InvalidSetting {
            name: "batch_size",
            value: config.batch_size.to_string(),
            reason: if config.batch_size == 0 {
                "a batch needs at least 1 item"
            } else {
                "contrastive training needs at least 2"
            },
        });
    }
    let all: Vec<usize> = (0..train.len()).collect();
    let steps_per_epoch = BatchPlan {
        order: &all,
        batch_size: config.batch_size,
        partial: config.partial_batches,
    }
    .len();
    let items_per_epoch = (steps_per_epoch * config.batch_size).min(train.len());
    if steps_per_epoch == 0 {
        return Err(TrainError::TooFewItems {
            set: "training",
            items: train.len(),
            batch: config.batch_size,
        });
    }
    let total_steps = steps_per_epoch * config.epochs;
    let (mut optim, driver) = LrDriver::new(
        &config.optimizer,
        config.lr,
        config.schedule.as_ref(),
        total_steps,
    )?;
    let mut state = LoopState {
        epochs_done: 0,
        steps_done: 0,
        best: None,
        history: Vec::new(),
        config: config.clone(),
        files: None,
        partial: None,
        before_training: BTreeMap::new(),
        record: None,
        checksum: None,
    };
    let mut best_model: Option<M> = None;
    // The committed state, checked against its checksums (or the one before it, when the
    // last is damaged).
    let saved = match checkpoints {
        Some(ck) if ck.resume => ck.load(progress)?,
        _ => None,
    };
    if let (Some(ck), Some(saved)) = (checkpoints, saved) {
        if !saved.config.same_run(config) {
            return Err(TrainError::ResumeMismatch { state: ck.state() });
        }
        let (last, optimizer) = match &saved.files {
            Some(f) => (ck.dir.join(&f.last), ck.dir.join(&f.optimizer)),
            None => (ck.last(), ck.optimizer()),
        };
        model = model
            .try_load_file(&last)
            .map_err(|e| io(&last, format!("{e:?}")))?;
        optim = optim
            .load(&optimizer)
            .map_err(|e| io(&optimizer, format!("{e:?}")))?;
        if let Some(best) = saved.files.as_ref().and_then(|f| f.best.as_ref()) {
            let best = ck.dir.join(best);
            // `valid()` is a copy with its own BatchNorm running statistics: loading into a
            // plain clone would write the best epoch's statistics into the training model's.
            best_model = Some(
                model
                    .valid()
                    .try_load_file(&best)
                    .map_err(|e| io(&best, format!("{e:?}")))?,
            );
        }
        // Finish what a kill after the last commit may have left undone.
        ck.publish(&saved)?;
        state = saved;
    }
    if state.steps_done == 0 && state.partial.is_none() {
        // Before the first step of a run that starts: the reference point of the online
        // evaluation (frozen features only; the training below is the same without it).
        state.before_training = progress.evaluate_start(&Frozen {
            model: &model,
            device,
        });
        state.before_training.retain(|_, v| v.is_finite());
    }
    let shapes: Vec<Vec<usize>> = (0..train.modalities()).map(|m| train.shape(m)).collect();
    for epoch in state.epochs_done..config.epochs {
        let started = Instant::now();
        let order = epoch_order(train.len(), config.seed, epoch);
        // A run stopped inside this epoch continues after its last step: the batches are
        // consecutive chunks of the order, and every draw is seeded by (epoch, step).
        let resumed = state.partial.take().filter(|p| p.epoch == epoch);
        let first = resumed.as_ref().map_or(0, |p| p.step);
        let plan = BatchPlan {
            order: &order[(first * config.batch_size).min(order.len())..],
            batch_size: config.batch_size,
            partial: config.partial_batches,
        };
        let (mut loss_sum, mut term_sums, before, waited_before) = match resumed {
            Some(p) => (p.loss_sum, p.term_sums, p.seconds, p.data_wait_seconds),
            None => (0.0, BTreeMap::<String, f64>::new(), 0.0, 0.0),
        };
        let mut lr = config.lr;
        let mut done = first;
        let (trained, waited) = prefetch(train, plan, epoch as u64, config.loader, |batches| {
            on_pool(|| {
                for step in first..steps_per_epoch {
                    if step > first && progress.stop_requested() {
                        break;
                    }
                    lr = driver.lr_at(state.steps_done);
                    let items = batches
                        .next()
                        .ok_or_else(|| TrainError::BatchNotLoaded { step })??;
                    let batch = collate(&items, &shapes, device)?;
                    let mut rng =
                        item_rng(config.seed ^ 0x6d6d_7373_6c00, epoch as u64, step as u64);
                    let out = model.loss(&batch, &mut rng)?;
                    let (value, term_values) = out.values("the loss")?;
                    if !value.is_finite() {
                        let culprit = term_values
                            .iter()
                            .find(|(_, v)| !v.is_finite())
                            .map(|(n, v)| format!("term {n} = {v}"))
                            .unwrap_or_else(|| "no single term (their sum overflowed)".into());
                        return Err(TrainError::NonFinite {
                            epoch: epoch + 1,
                            step: step + 1,
                            value,
                            culprit,
                        });
                    }
                    loss_sum += value;
                    for (n, v) in &term_values {
                        *term_sums.entry(n.clone()).or_default() += v;
                    }
                    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
                    model = optim.step(lr, model, grads);
                    state.steps_done += 1;
                    done = step + 1;
                    progress.step(&StepReport {
                        epoch: epoch + 1,
                        step: step + 1,
                        steps: steps_per_epoch,
                        loss: value,
                        terms: &term_values,
                    });
                }
                Ok((model, batches.waited()))
            })
        })?;
        model = trained;
        let waited = waited.as_secs_f64() + waited_before;
        if done < steps_per_epoch {
            // Asked to stop inside the epoch: save where it stands and say so.
            state.partial = Some(PartialEpoch {
                epoch,
                step: done,
                loss_sum,
                term_sums,
                seconds: before + started.elapsed().as_secs_f64(),
                data_wait_seconds: waited,
            });
            return Err(interrupted(
                &mut state,
                &model,
                &optim,
                checkpoints,
                epoch + 1,
                done,
            ));
        }
        let train_loss = loss_sum / steps_per_epoch as f64;
        let (valid_loss, valid_terms) = match valid {
            Some(v) => {
                let (loss, terms) = evaluate_terms(&model, v, config, epoch, device)?;
                (Some(loss), terms)
            }
            None => (None, BTreeMap::new()),
        };
        let seconds = before + started.elapsed().as_secs_f64();
        let mut online = progress.evaluate_epoch(
            epoch + 1,
            &Frozen {
                model: &model,
                device,
            },
        );
        online.retain(|_, v| v.is_finite());
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss,
            terms: term_sums
                .into_iter()
                .map(|(k, v)| (k, v / steps_per_epoch as f64))
                .collect(),
            valid_loss,
            valid_terms,
            lr,
            seconds,
            pairs_per_second: items_per_epoch as f64 / seconds.max(1e-9),
            data_wait_seconds: waited,
            online,
        };
        let score = valid_loss.unwrap_or(train_loss);
        let improved = state.best.is_none_or(|(b, _)| score < b);
        if improved {
            state.best = Some((score, epoch));
            // A snapshot in evaluation form: its own running statistics (a clone would share
            // the training model's and follow them), parameters shared until the next step
            // replaces them.
            best_model = Some(model.valid());
        }
        state.epochs_done = epoch + 1;
        state.history.push(metrics.clone());
        if let Some(ck) = checkpoints {
            ck.commit(&mut state, &model, &optim, improved)?;
        }
        progress.epoch(&metrics);
        if epoch + 1 < config.epochs && progress.stop_requested() {
            // Asked to stop during the epoch's last step or its validation: the epoch's
            // checkpoint is the place to continue from.
            return Err(TrainError::Interrupted {
                epoch: epoch + 1,
                step: steps_per_epoch,
                checkpoint: checkpoints.map(|c| c.dir.clone()),
            });
        }
    }
    Ok(FitOutcome {
        last: model,
        history: state.history,
        best_epoch: state.best.map(|(_, e)| e + 1),
        best: best_model,
        before_training: state.before_training,
    })
}

/// Saves the checkpoint of epoch `epoch` (from 1) stopped after `step` steps (with `checkpoints`) and
/// returns the error that says where the run stopped; a failure to save is returned instead.
fn interrupted<M: Method>(
    state: &mut LoopState,
    model: &M,
    optim: &burn::optim::ModuleOptimizer,
    checkpoints: Option<&Checkpoints>,
    epoch: usize,
    step: usize,
) -> TrainError {
    if let Some(ck) = checkpoints
        && let Err(e) = ck.commit(state, model, optim, false)
    {
        return e;
    }
    TrainError::Interrupted {
        epoch,
        step,
        checkpoint: checkpoints.map(|c| c.dir.clone()),
    }
}

/// Mean loss of `model` (in evaluation mode: BatchNorm running statistics, no autodiff) over
/// the full batches of `data` (and the incomplete last one with `partial_batches`, each batch
/// weighted by its items), with the draws of `epoch`.
pub fn evaluate_loss<M: Method>(
    model: &M,
    data: &dyn PairedDataset,
    config: &FitConfig,
    epoch: usize,
    device: &Device,
) -> Result<f64> {
    evaluate_terms(model, data, config, epoch, device).map(|(loss, _)| loss)
}

/// [`evaluate_loss`] and the mean of each named term of the loss over the same batches,
/// averaged the same way: which terms generalise to held-out data and which only fall in
/// training.
pub fn evaluate_terms<M: Method>(
    model: &M,
    data: &dyn PairedDataset,
    config: &FitConfig,
    epoch: usize,
    device: &Device,
) -> Result<(f64, BTreeMap<String, f64>)> {
    let eval = model.valid();
    let plain = device.clone().without_autodiff();
    let order: Vec<usize> = (0..data.len()).collect();
    let plan = BatchPlan {
        order: &order,
        batch_size: config.batch_size,
        partial: config.partial_batches,
    };
    let steps = plan.len();
    if steps == 0 {
        return Err(TrainError::TooFewItems {
            set: "validation",
            items: data.len(),
            batch: config.batch_size,
        });
    }
    let shapes: Vec<Vec<usize>> = (0..data.modalities()).map(|m| data.shape(m)).collect();
    let sums = move |batches: &mut mmssl_data::Prefetch<'_>| {
        // Per batch: its weight (1, or its items with partial batches), the loss, the terms.
        let (mut weights, mut loss_sum) = (0.0, 0.0);
        let mut term_sums = BTreeMap::<String, f64>::new();
        for (step, items) in batches.enumerate() {
            let items = items?;
            let batch = collate(&items, &shapes, &plain)?;
            let mut rng = item_rng(config.seed ^ 0x7661_6c69_6400, epoch as u64, step as u64);
            let out = eval.loss(&batch, &mut rng)?;
            let (loss, terms) = out.values("the validation loss")?;
            // Full batches only: the plain mean of the batch means (as before partial batches
            // existed, to the last bit); otherwise each batch weighted by its items.
            let w = if config.partial_batches {
                items.len() as f64
            } else {
                1.0
            };
            weights += w;
            loss_sum += loss * w;
            for (name, v) in terms {
                *term_sums.entry(name).or_default() += v * w;
            }
        }
        // (At least one batch: an empty plan was refused above.)
        Ok((
            loss_sum / weights,
            term_sums
                .into_iter()
                .map(|(k, v)| (k, v / weights))
                .collect(),
        ))
    };
    prefetch(data, plan, epoch as u64, config.loader, |batches| {
        on_pool(move || sums(batches))
    })
}
