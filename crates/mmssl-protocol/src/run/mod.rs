//! One run of the protocol: pretrain the method (or fit linear CCA), evaluate each modality
//! linearly against the same model at its random initialisation, compare the modalities, and
//! write the run folder.
//!
//! The run folder holds `config.toml` (the complete [`RunConfig`]), `run.json` (version, git
//! revision, device, resolved training and evaluation settings), `metrics.jsonl` (one line per
//! pretraining epoch), `checkpoints/` and `eval.json` (the [`RunReport`]).

use crate::config::RunConfig;
use crate::datasets::load_datasets;
use crate::error::{ProtocolError, Result};
use crate::folder::FolderLock;
use crate::registry::Registry;
use burn::tensor::Device;
use mmssl_data::{PairedDataset, Subset};
use mmssl_similarity::{Similarity, SimilarityReport};
use mmssl_train::{
    EpochMetrics, Features, LinearEvalConfig, LinearEvalResult, OneCycleConfig, Progress,
    StepReport, TrainConfig,
};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

mod session;
#[cfg(test)]
mod tests;

pub(crate) use session::Session;

/// Which parts of a run to do: `run` all three; `pretrain`, `linear-eval` and `analyze` one
/// each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// Train the method (or fit linear CCA) and write the checkpoints.
    pub pretrain: bool,
    /// Linear evaluation of each modality (pretrained and at random initialisation).
    pub evaluate: bool,
    /// Similarity of the modalities' test-set representations.
    pub analyze: bool,
}

impl Phases {
    /// The phases to run: pretraining, linear evaluation, similarity analysis.
    pub const fn new(pretrain: bool, evaluate: bool, analyze: bool) -> Self {
        Phases {
            pretrain,
            evaluate,
            analyze,
        }
    }

    /// All three phases.
    pub const ALL: Phases = Phases::new(true, true, true);
    /// Pretraining only.
    pub const PRETRAIN: Phases = Phases::new(true, false, false);
    /// Linear evaluation of a pretrained run.
    pub const EVALUATE: Phases = Phases::new(false, true, false);
    /// Similarity analysis of a pretrained run.
    pub const ANALYZE: Phases = Phases::new(false, false, true);
}

/// Where a run is, for an [`Observer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Loading and preparing the data.
    Loading,
    /// Pretraining (steps and epochs follow through [`Progress`]).
    Pretraining,
    /// Linear evaluation of one modality (`random_init`: of the reference model).
    Evaluating {
        /// The modality.
        modality: usize,
        /// Whether it is the randomly initialised reference.
        random_init: bool,
    },
    /// Similarity of the modalities.
    Analysing,
    /// Attribution maps (`random_init`: of the reference model); items follow as steps.
    Explaining {
        /// Whether it is the randomly initialised reference.
        random_init: bool,
    },
}

/// Receives a run's progress: the training loop's steps and epochs ([`Progress`]), the phases,
/// and warnings. Every method has a default that ignores it.
pub trait Observer: Progress {
    /// A phase starts.
    fn phase(&mut self, _phase: Phase) {}
    /// Something that runs but is probably not what was meant.
    fn warning(&mut self, _message: &str) {}
    /// A line of information (grids: which cell starts, which failed).
    fn note(&mut self, _message: &str) {}
}

impl Observer for mmssl_train::Quiet {}

/// Linear evaluation of one modality, trained and at random initialisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModalityEval {
    /// The modality (Two-View MNIST: 0 = rotated view, 1 = noisy view).
    pub modality: usize,
    /// The pretrained encoder.
    pub pretrained: LinearEvalResult,
    /// The same architecture at its random initialisation (`None` for linear CCA, which has
    /// no random initialisation).
    pub random_init: Option<LinearEvalResult>,
}

/// Everything `eval.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The method's canonical spec (`CR-XX-CC`, `dccae;cca_dim=12`).
    pub method: String,
    /// The dataset.
    pub dataset: crate::DatasetKind,
    /// Items in the training, validation and test sets.
    pub sizes: [usize; 3],
    /// Per-modality linear evaluation.
    pub linear_eval: Vec<ModalityEval>,
    /// Similarity of the two modalities' representations on the test set (when analysed).
    pub similarity: Option<SimilarityReport>,
    /// Why the similarity could not be computed from these representations (e.g. one
    /// modality's test representations are constant: a collapsed encoder), when it could not;
    /// the rest of the report stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity_error: Option<String>,
    /// Seconds spent pretraining, evaluating and comparing (0 for a phase not run).
    pub seconds: [f64; 3],
    /// Linear-evaluation epochs used.
    pub eval_epochs: usize,
}

impl RunReport {
    /// The result table, as `mmssl run` prints it.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} on {:?}: {} train / {} valid / {} test pairs\n\n",
            self.method, self.dataset, self.sizes[0], self.sizes[1], self.sizes[2]
        );
        if !self.linear_eval.is_empty() {
            s += "modality | test accuracy (pretrained) | test accuracy (random init) | ROC-AUC (pretrained)\n";
            s += "---------+----------------------------+-----------------------------+---------------------\n";
        }
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        for m in &self.linear_eval {
            s += &format!(
                "{:>8} | {:>26.4} | {:>27} | {:>20}\n",
                m.modality,
                m.pretrained.accuracy,
                f(m.random_init.as_ref().map(|r| r.accuracy)),
                f(m.pretrained.roc_auc),
            );
        }
        if let Some(sim) = &self.similarity {
            s += &format!(
                "\nsimilarity of the two modalities' z on the test set: CCA {}, SVCCA {}, PWCCA {}, CKA {}\n",
                f(sim.cca),
                f(sim.svcca),
                f(sim.pwcca),
                f(sim.cka)
            );
            // Every caveat, not only in eval.json: a `-` or a biased value has its reason here.
            for w in &sim.warnings {
                s += &format!("  note: {w}\n");
            }
        }
        if let Some(e) = &self.similarity_error {
            s += &format!("\nsimilarity of the two modalities: not computed ({e})\n");
        }
        s += &format!(
            "time: pretraining {:.0} s, linear evaluation {:.0} s, similarity {:.1} s\n",
            self.seconds[0], self.seconds[1], self.seconds[2]
        );
        s
    }
}

/// Writes `text` to `path` through a temporary file and a rename: a reader never sees a
/// partial file.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| ProtocolError::write(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ProtocolError::write(path, e))
}

/// The configuration a run folder was made with (`RUN/config.toml`), its output directory set
/// to `run_dir`.
pub fn load_run_config(run_dir: &Path) -> Result<RunConfig> {
    let path = run_dir.join("config.toml");
    if !path.exists() {
        return Err(ProtocolError::File {
            path,
            reason: format!(
                "missing: is {} a run folder made by `mmssl pretrain` or `mmssl run`?",
                run_dir.display()
            ),
        });
    }
    let mut config = RunConfig::load(&path)?;
    config.output.dir = run_dir.to_path_buf();
    Ok(config)
}

/// The linear-evaluation epochs, the pretraining settings and the linear-evaluation settings
/// of `config`.
fn settings(config: &RunConfig) -> (usize, TrainConfig, LinearEvalConfig) {
    let eval_epochs = config.evaluation.epochs_for(config.data.dataset);
    let t = &config.training;
    let schedule = match t.schedule {
        crate::ScheduleKind::OneCycle => Some(OneCycleConfig {
            max_lr: t.max_lr,
            ..Default::default()
        }),
        crate::ScheduleKind::Constant => None,
    };
    let mut eval_config = LinearEvalConfig {
        batchnorm_train_mode: config.evaluation.bn_train_mode,
        ..Default::default()
    };
    eval_config.training.epochs = eval_epochs;
    eval_config.training.seed = config.seed;
    eval_config.training.lr = t.lr;
    eval_config.training.schedule = schedule;
    let train_config = TrainConfig {
        epochs: t.epochs,
        batch_size: t.batch_size,
        seed: config.seed,
        lr: t.lr,
        schedule,
        loader: mmssl_train::LoaderConfig {
            workers: t.workers,
            ..Default::default()
        },
        ..Default::default()
    };
    (eval_epochs, train_config, eval_config)
}

/// Runs all phases of `config` with the built-in methods on `device` (the autodiff wrapper is
/// added when missing) and returns the report.
pub fn run(config: &RunConfig, device: &Device, observer: &mut dyn Observer) -> Result<RunReport> {
    run_with(config, &Registry::builtin(), Phases::ALL, device, observer)
}

/// Per-modality evaluations, test-set features of each modality, pretraining and evaluation
/// seconds.
pub(crate) type Evaluated = (Vec<ModalityEval>, Vec<Features>, f64, f64);

/// Runs the chosen `phases` of `config`, its method looked up in `registry`. Evaluation and
/// analysis use the best checkpoint of the run folder. Writes `eval.json` (evaluation, with
/// the similarity when analysed too) or `similarity.json` (analysis alone).
pub fn run_with(
    config: &RunConfig,
    registry: &Registry,
    phases: Phases,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<RunReport> {
    config.validate(registry)?;
    let method = registry.resolve(&config.method)?;
    let out = &config.output.dir.clone();
    let (eval_epochs, train_config, eval_config) = settings(config);
    // The method in its canonical spelling: `cc-xx-cr` and `CR-XX-CC` are one run.
    // Data paths absolute, so the saved configuration means the same from anywhere.
    let mut canonical = config.clone();
    canonical.method = method.spec().clone();
    canonical.absolute_paths();
    let config = &canonical;
    // A model to start from is checked before anything is written.
    if let (true, false, Some(from)) = (
        phases.pretrain,
        config.output.resume,
        &config.training.init_from,
    ) {
        crate::interop::check_init_from(from, config.method.to_string().as_str(), registry)?;
    }
    // One writer per folder; the lock goes when the run ends, however it ends.
    let _lock = FolderLock::acquire(out)?;
    if phases.pretrain && config.output.resume {
        if !out.join("config.toml").exists() {
            return Err(ProtocolError::NothingToResume { dir: out.clone() });
        }
        let saved = saved_config(out, registry)?;
        let differences = saved.identity_differences(config)?;
        if !differences.is_empty() {
            return Err(ProtocolError::ResumeMismatch {
                dir: out.clone(),
                differences,
            });
        }
    } else if phases.pretrain {
        crate::folder::prepare_fresh(out, config.output.overwrite)?;
    }
    if phases.pretrain {
        // An unwritable folder fails now, not after the first epoch (and a run that fails
        // before its first file leaves nothing that would block the next one).
        let probe = out.join(".probe");
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| ProtocolError::write(&probe, e))?;
    }
    // Labels that can only fail the evaluation fail now, before hours of pretraining.
    let labels = phases.evaluate || (phases.pretrain && method.needs_labels());
    let loaded = Loaded::new(config, device, labels, observer)?;
    let (data, device) = (&loaded.data, &loaded.device);
    let sizes = data.sizes();
    if phases.pretrain {
        let details = serde_json::json!({
            "sizes": sizes,
            "train": train_config,
            "linear_eval": eval_config,
        });
        write_run_record(config, device, details)?;
    }
    for w in method.warnings(&train_config) {
        observer.warning(&w);
    }
    let mut session = loaded.session(config, &train_config, &eval_config, phases, observer);
    let (linear, test_z, pretrain_seconds, eval_seconds) = method.execute(&mut session)?;
    let t2 = Instant::now();
    let to_nd = |f: &Features| {
        ndarray::Array2::from_shape_fn((f.len(), f.dim), |(i, j)| f.values[i * f.dim + j] as f64)
    };
    let (similarity, similarity_error) =
        if phases.analyze && config.analysis.enabled && test_z.len() >= 2 {
            session.observer.phase(Phase::Analysing);
            let sim = Similarity::new().svcca_threshold(config.analysis.svcca_threshold)?;
            match analyse(&sim, &to_nd(&test_z[0]), &to_nd(&test_z[1])) {
                Ok(r) => (Some(r), None),
                Err(e) => {
                    session.observer.warning(&format!(
                        "the similarity of the modalities is not computed: {e}"
                    ));
                    (None, Some(e))
                }
            }
        } else {
            (None, None)
        };
    // Evaluation alone keeps the similarity an earlier analysis of this folder computed.
    let similarity = match similarity {
        None if phases.evaluate && !phases.analyze => earlier_similarity(out),
        s => s,
    };
    let report = RunReport {
        method: method.spec().to_string(),
        dataset: config.data.dataset,
        sizes,
        linear_eval: linear,
        similarity,
        similarity_error,
        seconds: [pretrain_seconds, eval_seconds, t2.elapsed().as_secs_f64()],
        eval_epochs,
    };
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    if phases.evaluate {
        write_atomic(&out.join("eval.json"), &json)?;
    } else if phases.analyze {
        write_atomic(&out.join("similarity.json"), &json)?;
    }
    Ok(report)
}

/// A run's data, loaded, on the autodiff form of its device, with what its models are built
/// from.
struct Loaded {
    device: Device,
    data: crate::datasets::Datasets,
    shapes: Vec<Vec<usize>>,
    classes: usize,
}

impl Loaded {
    /// Loads the sets of `config`; with `labels`, refuses labelled sets that the linear
    /// evaluation cannot use.
    fn new(
        config: &RunConfig,
        device: &Device,
        labels: bool,
        observer: &mut dyn Observer,
    ) -> Result<Self> {
        let device = if device.is_autodiff() {
            device.clone()
        } else {
            device.clone().autodiff()
        };
        observer.phase(Phase::Loading);
        let data = load_datasets(config)?;
        if labels {
            check_labels("training", data.eval_train())?;
            check_labels("validation", data.eval_valid())?;
            check_labels("test", &data.test)?;
        }
        let shapes = (0..data.train.modalities())
            .map(|m| data.train.shape(m))
            .collect();
        let classes = data.eval_train().classes();
        Ok(Loaded {
            device,
            data,
            shapes,
            classes,
        })
    }

    /// A session on this data.
    fn session<'a>(
        &'a self,
        config: &'a RunConfig,
        train_config: &'a TrainConfig,
        eval_config: &'a LinearEvalConfig,
        phases: Phases,
        observer: &'a mut dyn Observer,
    ) -> Session<'a> {
        Session {
            config,
            data: &self.data,
            device: &self.device,
            shapes: &self.shapes,
            train_config,
            eval_config,
            classes: self.classes,
            phases,
            observer,
        }
    }
}

/// Runs `f` with the method of the run configured by `config` (a run folder's saved
/// configuration) and a session on its loaded data, under the folder's lock: the entry to the
/// phases after pretraining that are not a run's own (explanations).
pub(crate) fn with_session<R>(
    config: &RunConfig,
    registry: &Registry,
    device: &Device,
    observer: &mut dyn Observer,
    f: impl FnOnce(&crate::registry::ResolvedMethod, &mut Session<'_>) -> Result<R>,
) -> Result<R> {
    config.validate(registry)?;
    let method = registry.resolve(&config.method)?;
    let (_, train_config, eval_config) = settings(config);
    let _lock = FolderLock::acquire(&config.output.dir)?;
    let loaded = Loaded::new(config, device, true, observer)?;
    let phases = Phases::new(false, false, false);
    let mut session = loaded.session(config, &train_config, &eval_config, phases, observer);
    f(&method, &mut session)
}

/// Writes a new run folder's record: `config.toml` (the configuration that reproduces it, with
/// its evaluation epochs and without `resume`/`overwrite`) and `run.json` (versions, backend,
/// device, seed, method, and `details`' fields).
pub(crate) fn write_run_record(
    config: &RunConfig,
    device: &Device,
    details: serde_json::Value,
) -> Result<()> {
    let out = &config.output.dir;
    let mut saved = config.clone();
    saved.output.resume = false;
    saved.output.overwrite = false;
    saved.evaluation.epochs = Some(config.evaluation.epochs_for(config.data.dataset));
    saved.save(out.join("config.toml"))?;
    let mut run_info = serde_json::json!({
        "mmssl_version": env!("CARGO_PKG_VERSION"),
        "git_revision": option_env!("MMSSL_GIT_REVISION"),
        "backend": config.backend,
        "device": format!("{device:?}"),
        "seed": config.seed,
        "method": config.method.to_string(),
    });
    if let (Some(info), serde_json::Value::Object(more)) = (run_info.as_object_mut(), details) {
        info.extend(more);
    }
    write_atomic(
        &out.join("run.json"),
        &serde_json::to_string_pretty(&run_info).unwrap_or_default(),
    )
}

/// Loads the data of `config` on the autodiff form of `device` and calls `f` with what its
/// models are built from, without taking the folder's lock (for the commands that make a
/// folder, import, or only read one, export); `labels` as in a run's evaluation.
pub(crate) fn with_setup<R>(
    config: &RunConfig,
    device: &Device,
    observer: &mut dyn Observer,
    labels: bool,
    f: impl FnOnce(&mmssl_train::BuildSetup<'_>, &crate::datasets::Datasets) -> Result<R>,
) -> Result<R> {
    let loaded = Loaded::new(config, device, labels, observer)?;
    let setup = mmssl_train::BuildSetup {
        shapes: &loaded.shapes,
        classes: loaded.classes,
        device: &loaded.device,
    };
    f(&setup, &loaded.data)
}

/// The similarity of two modalities' test representations; an input the indices are not
/// defined for (fewer than two items, a non-finite value, a modality whose representations are
/// all the same) is a message for the report, not a failure of the run: training and linear
/// evaluation stand.
fn analyse(
    sim: &Similarity,
    a: &ndarray::Array2<f64>,
    b: &ndarray::Array2<f64>,
) -> std::result::Result<SimilarityReport, String> {
    sim.report(a.view(), b.view()).map_err(|e| e.to_string())
}

/// The labelled `set` of the linear evaluation must have labelled items of at least two
/// classes.
fn check_labels(set: &'static str, data: &Subset) -> Result<()> {
    let mut classes = std::collections::BTreeSet::new();
    let mut unlabelled = 0;
    for i in 0..data.len() {
        match data.label(i) {
            Some(l) => {
                classes.insert(l);
            }
            None => unlabelled += 1,
        }
    }
    let reason = match classes.len() {
        0 => format!(
            "it has no labelled item ({} items, {unlabelled} without a label)",
            data.len()
        ),
        1 => format!(
            "all its {} labelled items are of class {}: accuracy would be 0 or 1 whatever the \
             representation",
            data.len() - unlabelled,
            classes.first().copied().unwrap_or_default()
        ),
        _ => return Ok(()),
    };
    Err(ProtocolError::Labels { set, reason })
}

/// The similarity an earlier `eval.json` or `similarity.json` of `dir` holds, if any.
fn earlier_similarity(dir: &Path) -> Option<SimilarityReport> {
    ["eval.json", "similarity.json"].iter().find_map(|f| {
        let text = std::fs::read_to_string(dir.join(f)).ok()?;
        let mut v: serde_json::Value = serde_json::from_str(&text).ok()?;
        serde_json::from_value(v["similarity"].take()).ok()?
    })
}

/// The configuration saved in `dir`, its method in canonical spelling and its data paths
/// absolute (as a new run's are), ready to compare.
pub(crate) fn saved_config(dir: &Path, registry: &Registry) -> Result<RunConfig> {
    let mut saved = load_run_config(dir)?;
    if let Ok(m) = registry.resolve(&saved.method) {
        saved.method = m.spec().clone();
    }
    saved.absolute_paths();
    Ok(saved)
}

/// Appends each epoch's metrics to `metrics.jsonl` as it ends, and passes everything on.
struct MetricsLog<'a> {
    file: std::fs::File,
    inner: &'a mut dyn Observer,
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

    fn stop_requested(&self) -> bool {
        self.inner.stop_requested()
    }
}
