//! `mmssl run`: pretrain a contrastive objective, evaluate each modality linearly (and, for
//! comparison, the same encoders at their random initialisation), and compare the modalities'
//! representations; everything goes to a run directory.

use crate::backend::{BackendKind, select_device};
use burn::module::Module;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mmssl_data::{
    ImageSet, MnistSplit, PairedDataset, Subset, TwoViewConfig, TwoViewMnist, embedded_mnist_test,
    load_mnist_dir, stratified_k_fold,
};
use mmssl_objectives::{ObjectiveConfig, ObjectiveSpec};
use mmssl_similarity::{Similarity, SimilarityReport};
use mmssl_train::{
    Checkpoints, ContrastiveModel, EpochMetrics, LinearEvalConfig, LinearEvalResult, Progress,
    TrainConfig, extract_features, fit, linear_eval,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Datasets `mmssl run` can train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Two-View MNIST: a rotated view and a noisy view of each digit.
    TwoViewMnist,
}

/// Arguments of `mmssl run`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct RunArgs {
    /// The dataset.
    #[arg(long, value_enum, default_value = "two-view-mnist")]
    pub dataset: DatasetKind,
    /// The objective, e.g. `CR-XX-CC`, `RR`, `CR:1,XX:0.5`.
    #[arg(long, default_value = "CR-XX-CC")]
    pub objective: String,
    /// Folder with the MNIST IDX files (train and t10k). Without it, the MNIST test split
    /// shipped with mmssl is split into 8,000 training, 1,000 validation and 1,000 test images.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The run directory.
    #[arg(long, default_value = "runs/latest")]
    pub out: PathBuf,
    /// Pretraining epochs.
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    /// Use only the first N training pairs.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Pretraining batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Linear-evaluation epochs.
    #[arg(long, default_value_t = 50)]
    pub eval_epochs: usize,
    /// Continue the run in `--out` from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl RunArgs {
    /// The quick main job of `cargo run --release`: CR-XX-CC on the embedded MNIST test split
    /// as Two-View MNIST, 2 epochs, a few minutes on 2 CPU cores.
    pub fn quick_demo() -> Self {
        RunArgs {
            dataset: DatasetKind::TwoViewMnist,
            objective: "CR-XX-CC".into(),
            data_dir: None,
            out: PathBuf::from("runs/demo"),
            epochs: 2,
            train_limit: None,
            backend: BackendKind::Cpu,
            seed: 0,
            batch_size: 64,
            eval_epochs: 10,
            resume: false,
            quiet: false,
        }
    }
}

/// Why `mmssl run` failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad argument.
    #[error("{0}")]
    Args(String),
    /// Backend unavailable.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// Data problem.
    #[error(transparent)]
    Data(#[from] mmssl_data::DataError),
    /// Objective problem.
    #[error(transparent)]
    Objective(#[from] mmssl_objectives::ObjectiveError),
    /// Training problem.
    #[error(transparent)]
    Train(#[from] mmssl_train::TrainError),
    /// Similarity problem.
    #[error(transparent)]
    Similarity(#[from] mmssl_similarity::SimilarityError),
    /// Writing results.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Linear evaluation of one modality, trained and at random initialisation.
#[derive(Debug, Clone, Serialize)]
pub struct ModalityEval {
    /// The modality (0 = rotated view, 1 = noisy view).
    pub modality: usize,
    /// The pretrained encoder.
    pub pretrained: LinearEvalResult,
    /// The same architecture at its random initialisation.
    pub random_init: LinearEvalResult,
}

/// Everything `eval.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The objective.
    pub objective: String,
    /// The dataset.
    pub dataset: DatasetKind,
    /// Items in the training, validation and test sets.
    pub sizes: [usize; 3],
    /// Per-modality linear evaluation.
    pub linear_eval: Vec<ModalityEval>,
    /// Similarity of the two modalities' representations on the test set.
    pub similarity: SimilarityReport,
    /// Seconds spent pretraining, evaluating and comparing.
    pub seconds: [f64; 3],
}

fn write_file(path: &Path, text: &str) -> Result<(), RunError> {
    std::fs::write(path, text).map_err(|e| RunError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

struct Datasets {
    train: Subset,
    valid: Subset,
    test: Subset,
}

fn datasets(args: &RunArgs) -> Result<Datasets, RunError> {
    let two_view = |images: ImageSet, seed: u64| -> Result<Arc<dyn PairedDataset>, RunError> {
        Ok(Arc::new(TwoViewMnist::new(
            images,
            TwoViewConfig {
                seed,
                ..Default::default()
            },
        )?))
    };
    let (train, valid, test) = match &args.data_dir {
        None => {
            let all = two_view(embedded_mnist_test()?, args.seed)?;
            let sub = |r: std::ops::Range<usize>| Subset::new(all.clone(), r.collect());
            (sub(0..8000)?, sub(8000..9000)?, sub(9000..10_000)?)
        }
        Some(dir) => {
            let train_images = load_mnist_dir(dir, MnistSplit::Train)?;
            let labels: Vec<usize> = train_images.labels().iter().map(|&l| l as usize).collect();
            // A stratified twelfth of the training split (5,000 images) validates.
            let (tr, va) = stratified_k_fold(&labels, 12, 0, args.seed)?;
            let all = two_view(train_images, args.seed)?;
            let test = two_view(load_mnist_dir(dir, MnistSplit::Test)?, args.seed ^ 0x7e57)?;
            let n_test = test.len();
            (
                Subset::new(all.clone(), tr)?,
                Subset::new(all, va)?,
                Subset::new(test, (0..n_test).collect())?,
            )
        }
    };
    let train = match args.train_limit {
        Some(n) => Subset::first(Arc::new(train), n),
        None => train,
    };
    Ok(Datasets { train, valid, test })
}

struct Bars {
    bar: Option<ProgressBar>,
    metrics: std::fs::File,
}

impl Progress for Bars {
    fn step(&mut self, epoch: usize, step: usize, steps: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            if step == 0 {
                bar.set_length(steps as u64);
                bar.set_position(0);
                bar.set_prefix(format!("epoch {}", epoch + 1));
            }
            bar.set_position(step as u64 + 1);
            bar.set_message(format!("loss {loss:.4}"));
        }
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        if let Ok(line) = serde_json::to_string(m) {
            let _ = writeln!(self.metrics, "{line}");
        }
        if let Some(bar) = &self.bar {
            bar.println(format!(
                "epoch {:>3}: train loss {:.4}, valid loss {}, {:.0} pairs/s",
                m.epoch + 1,
                m.train_loss,
                m.valid_loss.map_or("-".into(), |v| format!("{v:.4}")),
                m.pairs_per_second
            ));
        }
    }
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs pretraining, linear evaluation and the similarity analysis; writes the run directory
/// and returns the report.
pub fn run(args: &RunArgs) -> Result<RunReport, RunError> {
    let spec: ObjectiveSpec = args.objective.parse()?;
    let device = select_device(args.backend)?.autodiff();
    std::fs::create_dir_all(&args.out).map_err(|e| RunError::Write {
        path: args.out.clone(),
        reason: e.to_string(),
    })?;
    let data = datasets(args)?;
    let sizes = [data.train.len(), data.valid.len(), data.test.len()];
    let config = toml::to_string_pretty(args).map_err(|e| RunError::Args(e.to_string()))?;
    write_file(&args.out.join("config.toml"), &config)?;
    let run_info = serde_json::json!({
        "mmssl_version": env!("CARGO_PKG_VERSION"),
        "git_revision": git_revision(),
        "backend": args.backend,
        "device": format!("{device:?}"),
        "seed": args.seed,
        "sizes": sizes,
    });
    write_file(
        &args.out.join("run.json"),
        &serde_json::to_string_pretty(&run_info).unwrap_or_default(),
    )?;

    let shapes: Vec<Vec<usize>> = (0..data.train.modalities())
        .map(|m| data.train.shape(m))
        .collect();
    let objective = ObjectiveConfig::new(spec.clone());
    let build = || {
        ContrastiveModel::new(
            &shapes,
            64,
            &objective,
            &device,
            &mut StdRng::seed_from_u64(args.seed),
        )
    };
    let train_config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        seed: args.seed,
        ..Default::default()
    };
    let checkpoints = Checkpoints::new(args.out.join("checkpoints"))?.resume(args.resume);
    let metrics_path = args.out.join("metrics.jsonl");
    let metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(args.resume)
        .write(true)
        .truncate(!args.resume)
        .open(&metrics_path)
        .map_err(|e| RunError::Write {
            path: metrics_path.clone(),
            reason: e.to_string(),
        })?;
    let bar = (!args.quiet).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let mut progress = Bars { bar, metrics };
    let t0 = Instant::now();
    let outcome = fit(
        build()?,
        &data.train,
        Some(&data.valid),
        &train_config,
        Some(&checkpoints),
        &device,
        &mut progress,
    )?;
    if let Some(bar) = &progress.bar {
        bar.finish_and_clear();
    }
    let pretrain_seconds = t0.elapsed().as_secs_f64();
    // Evaluate the model of the best validation loss.
    let best = build()?
        .try_load_file(checkpoints.best())
        .map_err(|e| RunError::Write {
            path: checkpoints.best(),
            reason: format!("{e:?}"),
        })?;
    let random = build()?;
    let t1 = Instant::now();
    let eval_config = LinearEvalConfig {
        epochs: args.eval_epochs,
        seed: args.seed,
        ..Default::default()
    };
    let classes = data.train.classes();
    let mut linear = Vec::new();
    let mut test_z = Vec::new();
    for m in 0..shapes.len() {
        let mut results = Vec::new();
        for model in [&best, &random] {
            let f = |d: &Subset| extract_features(model, d, m, 256, false, &device);
            let (tr, va, te) = (f(&data.train)?, f(&data.valid)?, f(&data.test)?);
            results.push(linear_eval(&tr, &va, &te, classes, &eval_config, &device)?);
            if std::ptr::eq(model, &best) {
                test_z.push(te);
            }
        }
        let random_init = results.pop().expect("two results");
        let pretrained = results.pop().expect("two results");
        linear.push(ModalityEval {
            modality: m,
            pretrained,
            random_init,
        });
    }
    let eval_seconds = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let to_nd = |f: &mmssl_train::Features| {
        ndarray::Array2::from_shape_fn((f.len(), f.dim), |(i, j)| f.values[i * f.dim + j] as f64)
    };
    let similarity =
        Similarity::new().report(to_nd(&test_z[0]).view(), to_nd(&test_z[1]).view())?;
    let report = RunReport {
        objective: spec.to_string(),
        dataset: args.dataset,
        sizes,
        linear_eval: linear,
        similarity,
        seconds: [pretrain_seconds, eval_seconds, t2.elapsed().as_secs_f64()],
    };
    let _ = outcome.best_epoch;
    write_file(
        &args.out.join("eval.json"),
        &serde_json::to_string_pretty(&report).unwrap_or_default(),
    )?;
    Ok(report)
}

/// The result table printed at the end of a run.
pub fn table(r: &RunReport) -> String {
    let mut s = format!(
        "{} on {:?}: {} train / {} valid / {} test pairs\n\n",
        r.objective, r.dataset, r.sizes[0], r.sizes[1], r.sizes[2]
    );
    s += "modality | test accuracy (pretrained) | test accuracy (random init) | ROC-AUC (pretrained)\n";
    s += "---------+----------------------------+-----------------------------+---------------------\n";
    for m in &r.linear_eval {
        s += &format!(
            "{:>8} | {:>26.4} | {:>27.4} | {:>20}\n",
            m.modality,
            m.pretrained.accuracy,
            m.random_init.accuracy,
            m.pretrained
                .roc_auc
                .map_or("-".into(), |v| format!("{v:.4}"))
        );
    }
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    s += &format!(
        "\nsimilarity of the two modalities' z on the test set: CCA {}, SVCCA {}, PWCCA {}, CKA {}\n",
        f(r.similarity.cca),
        f(r.similarity.svcca),
        f(r.similarity.pwcca),
        f(r.similarity.cka)
    );
    s += &format!(
        "time: pretraining {:.0} s, linear evaluation {:.0} s, similarity {:.1} s\n",
        r.seconds[0], r.seconds[1], r.seconds[2]
    );
    s
}
