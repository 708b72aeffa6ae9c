//! Pretraining's own record, as it goes: each epoch's metrics appended to `metrics.jsonl`, and,
//! every `evaluation.online_every` epochs, the online evaluation of the model as the epoch
//! leaves it ([`OnlineEvaluation`]): a fresh linear probe and k-NN on frozen features of
//! labelled training items, scored on labelled validation items, and retrieval between the
//! validation pairs. The numbers go into the epoch's [`EpochMetrics::online`], so into the
//! checkpointed history and `metrics.jsonl`; `online.png`/`.svg` draw them as curves.
//!
//! The model is only read (evaluation mode; [`Represent`]), the probe has its own seed, and the
//! training loop's random draws do not depend on it: pretraining with and without the online
//! evaluation gives the same weights, bit for bit.

use crate::config::EvaluationConfig;
use crate::datasets::Datasets;
use crate::error::{ProtocolError, Result};
use crate::folder::write_atomic;
use crate::neighbourhood::{map_sample, to_matrix};
use crate::observe::Observer;
use burn::tensor::Device;
use mmssl_data::{PairedDataset, Subset};
use mmssl_similarity::Retrieval;
use mmssl_train::{EpochMetrics, LinearEvalConfig, Progress, Represent, StepReport, linear_eval};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

/// The online evaluation of a run: its sets, settings and schedule.
pub struct OnlineEvaluation {
    every: usize,
    epochs: usize,
    train: Subset,
    valid: Subset,
    settings: EvaluationConfig,
    probe: LinearEvalConfig,
    classes: usize,
    device: Device,
}

impl OnlineEvaluation {
    /// The online evaluation `settings` ask for (`None` when `online_every` is 0): up to
    /// `online_items` labelled training and validation items of `data`, sampled with `seed`;
    /// the probe trained as `probe` says for `online_probe_epochs` epochs. `epochs` is the
    /// pretraining's length (the last epoch is always evaluated). A k-NN `k` above the sampled
    /// training items is an error naming the settings.
    pub fn new(
        settings: &EvaluationConfig,
        seed: u64,
        data: &Datasets,
        probe: &LinearEvalConfig,
        classes: usize,
        device: &Device,
    ) -> Result<Option<OnlineEvaluation>> {
        if settings.online_every == 0 {
            return Ok(None);
        }
        let sample = |set: &Subset, salt: u64| -> Result<Subset> {
            let idx = map_sample(set.len(), settings.online_items, seed ^ salt);
            Ok(Subset::new(Arc::new(set.clone()), idx)?)
        };
        let train = sample(data.eval_train(), 0x6f6e_6c69)?;
        let valid = sample(data.eval_valid(), 0x6e65_7631)?;
        if let Some(k) = settings.knn_k.filter(|&k| k > train.len()) {
            return Err(ProtocolError::setting(
                "evaluation.knn_k",
                k,
                format!(
                    "the online k-NN draws its neighbours from {} labelled training items \
                     (online_items = {}); give a smaller knn_k or more online_items",
                    train.len(),
                    settings.online_items
                ),
            ));
        }
        let mut probe = probe.clone();
        probe.training.epochs = settings.online_probe_epochs;
        Ok(Some(OnlineEvaluation {
            every: settings.online_every,
            epochs: 0,
            train,
            valid,
            settings: settings.clone(),
            probe,
            classes,
            device: device.clone(),
        }))
    }

    /// The pretraining's length, so that its last epoch is evaluated too.
    pub fn until(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Whether epoch `epoch` (its number, from 1) is evaluated.
    pub fn due(&self, epoch: usize) -> bool {
        epoch.is_multiple_of(self.every) || epoch == self.epochs
    }

    /// Probe accuracy (`probe_m{m}`) and k-NN accuracy (`knn_m{m}`) of each modality on the
    /// validation items, and retrieval recall@1 and mean reciprocal rank between them
    /// (`r1_{a}to{b}`, `mrr_{a}to{b}`, in `z`).
    pub fn evaluate(&self, model: &dyn Represent) -> Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        let mut valid = Vec::new();
        for m in 0..model.modalities() {
            let tr = model.features(&self.train, m)?;
            let va = model.features(&self.valid, m)?;
            let probe = linear_eval(&tr, &va, &va, self.classes, &self.probe, &self.device)?;
            out.insert(format!("probe_m{m}"), probe.accuracy);
            if let Some(knn) = self.settings.knn(tr.len()) {
                let r = knn.evaluate(
                    to_matrix(&tr).view(),
                    &tr.labels,
                    to_matrix(&va).view(),
                    &va.labels,
                    self.classes,
                )?;
                out.insert(format!("knn_m{m}"), r.accuracy);
            }
            valid.push(to_matrix(&va));
        }
        if self.settings.retrieval {
            for a in 0..valid.len() {
                for b in (0..valid.len()).filter(|&b| b != a) {
                    // Undefined (z of other widths, constant z): left out, not a failure.
                    if let Ok(r) = Retrieval::new().evaluate(valid[a].view(), valid[b].view()) {
                        out.insert(format!("r1_{a}to{b}"), r.recall(1).unwrap_or(f64::NAN));
                        out.insert(format!("mrr_{a}to{b}"), r.mean_reciprocal_rank);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Appends each epoch's metrics to `metrics.jsonl` as it ends, runs the online evaluation
/// when due, and passes everything on.
pub(crate) struct MetricsLog<'a> {
    pub(crate) file: std::fs::File,
    pub(crate) inner: &'a mut dyn Observer,
    pub(crate) online: Option<OnlineEvaluation>,
}

impl MetricsLog<'_> {
    /// The online evaluation of `model` (nothing without one); a failure is a warning naming
    /// `when`, and measures nothing.
    fn measure(&mut self, model: &dyn Represent, when: &str) -> BTreeMap<String, f64> {
        let Some(online) = self.online.as_ref() else {
            return BTreeMap::new();
        };
        online.evaluate(model).unwrap_or_else(|e| {
            self.inner
                .warning(&format!("the online evaluation {when} failed: {e}"));
            BTreeMap::new()
        })
    }
}

impl Progress for MetricsLog<'_> {
    fn step(&mut self, report: &StepReport<'_>) {
        self.inner.step(report);
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        if let Ok(line) = serde_json::to_string(m) {
            let _ = writeln!(self.file, "{line}");
        }
        self.inner.epoch(m);
    }

    fn evaluate_epoch(&mut self, epoch: usize, model: &dyn Represent) -> BTreeMap<String, f64> {
        match self.online.as_ref().is_some_and(|o| o.due(epoch)) {
            true => self.measure(model, &format!("after epoch {epoch}")),
            false => BTreeMap::new(),
        }
    }

    fn evaluate_start(&mut self, model: &dyn Represent) -> BTreeMap<String, f64> {
        self.measure(model, "before training")
    }

    fn notice(&mut self, message: &str) {
        self.inner.warning(message);
    }

    fn stop_requested(&self) -> bool {
        self.inner.stop_requested()
    }
}

/// The file of the online evaluation before training (the curves' points at 0 epochs).
pub const ONLINE_START: &str = "online_start.json";

/// Writes pretraining's record into `out` from the checkpointed state: `metrics.jsonl`, one
/// line per epoch of `history` (a run killed between an epoch's checkpoint and its log line,
/// and resumed, still logs every epoch once), `online_start.json` with the values measured
/// `before_training` (when any), and the online curves ([`draw_online_curves`]).
pub(crate) fn write_history(
    before_training: &BTreeMap<String, f64>,
    history: &[EpochMetrics],
    out: &std::path::Path,
) -> Result<()> {
    let mut lines = String::new();
    for m in history {
        lines += &serde_json::to_string(m).unwrap_or_default();
        lines.push('\n');
    }
    write_atomic(&out.join("metrics.jsonl"), &lines)?;
    let start = out.join(ONLINE_START);
    if before_training.is_empty() {
        if start.exists() {
            std::fs::remove_file(&start).map_err(|e| ProtocolError::write(&start, e))?;
        }
    } else {
        let record = serde_json::json!({ "epochs_trained": 0, "online": before_training });
        let text = serde_json::to_string_pretty(&record).unwrap_or_default();
        write_atomic(&start, &text)?;
    }
    if !draw_online_curves(before_training, history, out)? {
        // No online evaluation this time: no curves left from an earlier one.
        for ext in ["png", "svg"] {
            let old = out.join(format!("online.{ext}"));
            if old.exists() {
                std::fs::remove_file(&old).map_err(|e| ProtocolError::write(&old, e))?;
            }
        }
    }
    Ok(())
}

/// Draws the online evaluation as curves into `out/online.svg` and `.png`: probe and k-NN
/// accuracy per modality and retrieval recall@1 per direction, against the epochs trained,
/// from the values measured `before_training` (at 0 epochs: the reference every later point
/// is read against) and those of each epoch of `history`. Returns whether there was anything
/// to draw.
pub fn draw_online_curves(
    before_training: &BTreeMap<String, f64>,
    history: &[EpochMetrics],
    out: &std::path::Path,
) -> Result<bool> {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let points =
        std::iter::once((0, before_training)).chain(history.iter().map(|m| (m.epoch, &m.online)));
    for (trained, values) in points {
        for (name, &v) in values {
            let label = if let Some(rest) = name.strip_prefix("probe_") {
                format!("linear probe {rest}")
            } else if let Some(rest) = name.strip_prefix("knn_") {
                format!("k-NN {rest}")
            } else if let Some(rest) = name.strip_prefix("r1_") {
                format!("R@1 {}", rest.replace("to", " -> "))
            } else {
                continue;
            };
            if v.is_finite() {
                series.entry(label).or_default().push((trained as f64, v));
            }
        }
    }
    if series.is_empty() {
        return Ok(false);
    }
    let series: Vec<(String, Vec<(f64, f64)>)> = series.into_iter().collect();
    crate::plots::curves_chart(
        &series,
        "Online evaluation during pretraining",
        &out.join("online"),
    )?;
    Ok(true)
}
