//! `mmssl run`: pretrain a contrastive objective or a baseline, evaluate each modality linearly
//! (and, for comparison, the same encoders at their random initialisation), and compare the
//! modalities' representations; everything goes to a run directory.

use crate::backend::{BackendKind, select_device};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use mmssl_baselines::{
    BaselineKind, BaselineOptions, CorrelationNorm, DEFAULT_CCA_DIM, DeepCcaConfig,
    LinearCcaConfig, MmvaeEstimator,
};
use mmssl_data::{
    ImageSet, LabelPaired, LabelPairedConfig, LoaderConfig, MnistSplit, PairedDataset, Subset,
    TwoViewConfig, TwoViewMnist, embedded_mnist_test, load_mnist_dir, stratified_k_fold,
};
use mmssl_objectives::{ObjectiveConfig, ObjectiveSpec};
use mmssl_similarity::{Similarity, SimilarityReport};
use mmssl_train::{
    Checkpoints, ContrastiveModel, EpochMetrics, Features, LinearEvalConfig, LinearEvalResult,
    Method, OneCycleConfig, Progress, TrainConfig, extract_features, fit, linear_eval,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
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
    /// MNIST paired by label with Fashion-MNIST (the stand-in for MNIST-SVHN when SVHN is
    /// absent): `--data-dir` holds MNIST, `--second-data-dir` Fashion-MNIST.
    MnistFashion,
    /// MNIST paired by label with SVHN (MMVAE's MNIST-SVHN): `--data-dir` holds MNIST,
    /// `--second-data-dir` SVHN's `train_32x32.mat` and `test_32x32.mat`.
    MnistSvhn,
    /// OASIS-3 (or any paired T1 + fALFF cohort) from a CSV manifest (`--manifest`):
    /// subject-level 5-fold split plus a hold-out set; pretraining on every session of the
    /// training subjects, linear evaluation (HC vs AD) on one labelled session per subject.
    Oasis3,
}

/// Arguments of `mmssl run`. A key missing from a `config.toml` (one written by an older
/// mmssl, say) takes the flag's default.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(default)]
pub struct RunArgs {
    /// The dataset.
    #[arg(long, value_enum, default_value = "two-view-mnist")]
    pub dataset: DatasetKind,
    /// The objective, e.g. `CR-XX-CC`, `RR`, `CR:1,XX:0.5`.
    #[arg(long, default_value = DEFAULT_OBJECTIVE)]
    pub objective: String,
    /// A baseline instead of an objective: supervised, ae, dccae, cr-cca, rr-ae, mmvae or
    /// lcca.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
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
    /// The second modality's folder for the label-paired datasets (Fashion-MNIST IDX files
    /// or SVHN .mat files); default: `fashion-mnist` or `svhn` beside `--data-dir`.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_data_dir: Option<PathBuf>,
    /// The cohort manifest for `--dataset oasis3` (CSV: subject, session, t1, falff, label).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// Use only N training pairs: the first N for Two-View MNIST, a seeded random N for the
    /// label-paired datasets (whose pairs are ordered by class).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Compute backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Which fold of the stratified 12-fold split of the training data validates (with the
    /// embedded MNIST subset: which of its nine 1,000-image blocks).
    #[arg(long, default_value_t = 0)]
    pub fold: usize,
    /// Pretraining batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// RAdam's learning rate when no schedule is used (`--schedule constant`), for
    /// pretraining and linear evaluation (the paper: 4e-4).
    #[arg(long, default_value_t = 4e-4)]
    pub lr: f64,
    /// The peak learning rate of the one-cycle schedule (the paper: 0.01; it starts at
    /// max/25 and ends at max/25/1e4, PyTorch's OneCycleLR defaults).
    #[arg(long, default_value_t = 0.01)]
    pub max_lr: f64,
    /// The learning-rate schedule, stepped per batch, for pretraining and linear evaluation.
    #[arg(long, value_enum, default_value = "one-cycle")]
    pub schedule: ScheduleKind,
    /// Importance samples per modality for `--method mmvae` (a step's cost grows linearly).
    #[arg(long, default_value_t = 10)]
    pub mmvae_k: usize,
    /// MMVAE's estimator: `dreg` (doubly reparameterised, the original's best), `iwae`
    /// (both loose: the average over modalities outside the log) or `elbo`.
    #[arg(long, default_value = "dreg")]
    pub mmvae_estimator: MmvaeEstimator,
    /// Learn MMVAE's prior scale instead of fixing it.
    #[arg(long)]
    pub mmvae_learn_prior: bool,
    /// Output size of the heads feeding the deep CCA loss of `dccae` and `cr-cca` (keep it
    /// below the batch size minus one, or every correlation is 1 from the start).
    #[arg(long, default_value_t = DEFAULT_CCA_DIM)]
    pub cca_dim: usize,
    /// Which norm of T the deep CCA loss maximises: `trace` (the sum of the canonical
    /// correlations, Andrew et al. 2013) or `frobenius` (sqrt(trace(TᵀT)), the authors' code).
    #[arg(long, default_value = "trace")]
    pub cca_norm: CorrelationNorm,
    /// Only the top K canonical correlations count in the deep CCA loss (default: all).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cca_top_k: Option<usize>,
    /// The ridge added to the deep CCA loss's auto-covariances.
    #[arg(long, default_value_t = 1e-3)]
    pub cca_reg: f64,
    /// Canonical components kept by `--method lcca` (the representation's size).
    #[arg(long, default_value_t = 64)]
    pub lcca_components: usize,
    /// Linear-evaluation epochs (default: 50 for images, 500 for volumes, the paper's).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_epochs: Option<usize>,
    /// Extract the linear-evaluation features with the encoders' BatchNorm in training mode
    /// (statistics of each batch of `--batch-size` items), as the authors' code does, instead
    /// of evaluation mode (running statistics, the default); see docs/training.md.
    #[arg(long)]
    pub bn_train_mode: bool,
    /// Loader threads preparing the next batches while a step trains (0: load in the training
    /// thread). Changes speed only, never results.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Continue the run in `--out` from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// A TOML file of settings (keys as the flags, e.g. `train_limit = 1000`, or a run's
    /// `config.toml`); flags given on the command line win.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
}

/// The learning-rate schedules of `--schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// One cycle per run (PyTorch OneCycleLR semantics: 30% cosine warm-up from max/25 to
    /// `--max-lr`, cosine annealing to max/25/1e4, RAdam's beta1 cycled 0.95 -> 0.85 -> 0.95).
    #[default]
    OneCycle,
    /// The constant `--lr` with RAdam's default beta1 (0.9).
    Constant,
}

/// The default objective (`--objective`), which `--method` replaces.
const DEFAULT_OBJECTIVE: &str = "CR-XX-CC";

impl Default for RunArgs {
    /// The flags' defaults, as `mmssl run` without flags has them (one source: the `#[arg]`
    /// attributes).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            run: RunArgs,
        }
        <Flags as clap::Parser>::try_parse_from(["mmssl-run"])
            .expect("every flag of `mmssl run` has a default")
            .run
    }
}

impl RunArgs {
    /// The quick main job of `cargo run --release`: CR-XX-CC on the embedded MNIST test split
    /// as Two-View MNIST, 2 epochs, a few minutes on 2 CPU cores.
    pub fn quick_demo() -> Self {
        RunArgs {
            out: PathBuf::from("runs/demo"),
            epochs: 2,
            eval_epochs: Some(10),
            ..Default::default()
        }
    }
}

/// Which parts of a run a command does: `mmssl run` all three, `mmssl pretrain`,
/// `mmssl linear-eval` and `mmssl analyze` one each.
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
    /// All three phases.
    pub const ALL: Phases = Phases {
        pretrain: true,
        evaluate: true,
        analyze: true,
    };
    /// Pretraining only.
    pub const PRETRAIN: Phases = Phases {
        pretrain: true,
        evaluate: false,
        analyze: false,
    };
    /// Linear evaluation of a pretrained run.
    pub const EVALUATE: Phases = Phases {
        pretrain: false,
        evaluate: true,
        analyze: false,
    };
    /// Similarity analysis of a pretrained run.
    pub const ANALYZE: Phases = Phases {
        pretrain: false,
        evaluate: false,
        analyze: true,
    };
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
    /// Baseline problem.
    #[error(transparent)]
    Baseline(#[from] mmssl_baselines::BaselineError),
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
    /// The same architecture at its random initialisation (`None` for linear CCA, which has
    /// no random initialisation).
    pub random_init: Option<LinearEvalResult>,
}

/// Everything `eval.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The method: an objective spec (`CR-XX-CC`) or a baseline name (`dccae`).
    pub method: String,
    /// The dataset.
    pub dataset: DatasetKind,
    /// Items in the training, validation and test sets.
    pub sizes: [usize; 3],
    /// Per-modality linear evaluation.
    pub linear_eval: Vec<ModalityEval>,
    /// Similarity of the two modalities' representations on the test set (when analysed).
    pub similarity: Option<SimilarityReport>,
    /// Seconds spent pretraining, evaluating and comparing (0 for a phase not run).
    pub seconds: [f64; 3],
    /// Linear-evaluation epochs used.
    pub eval_epochs: usize,
}

/// Writes `text` to `path` through a temporary file and a rename: a reader (or `mmssl
/// experiment`, which takes an existing `eval.json` for a finished run) never sees a partial
/// file.
fn write_file(path: &Path, text: &str) -> Result<(), RunError> {
    let err = |e: std::io::Error| RunError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

struct Datasets {
    train: Subset,
    valid: Subset,
    test: Subset,
    /// Labelled training and validation sets for linear evaluation when they differ from the
    /// pretraining sets (OASIS-3: one labelled session per subject, class-balanced training).
    eval: Option<(Subset, Subset)>,
}

impl Datasets {
    fn eval_train(&self) -> &Subset {
        self.eval.as_ref().map_or(&self.train, |e| &e.0)
    }
    fn eval_valid(&self) -> &Subset {
        self.eval.as_ref().map_or(&self.valid, |e| &e.1)
    }
}

fn datasets(args: &RunArgs) -> Result<Datasets, RunError> {
    match args.dataset {
        DatasetKind::TwoViewMnist => two_view_datasets(args),
        DatasetKind::MnistFashion | DatasetKind::MnistSvhn => label_paired_datasets(args),
        DatasetKind::Oasis3 => cohort_datasets(args),
    }
}

/// A paired-volume cohort: subjects split into 5 stratified folds (`--fold` validates) and a
/// hold-out fifth (the test set, saved as `split.json` in the run directory); histogram
/// landmarks learnt on the training subjects only (saved as `landmarks.json`); pretraining on
/// every session of the training subjects with paired crop/flip augmentation; linear
/// evaluation on one labelled (HC or AD) session per subject, class-balanced for training.
fn cohort_datasets(args: &RunArgs) -> Result<Datasets, RunError> {
    use mmssl_data::{
        AugmentConfig, CohortSplit, CohortVolumes, Manifest, VolumeCohort, VolumePipeline,
        pretraining_items, split_subjects,
    };
    let path = args.manifest.clone().ok_or_else(|| {
        RunError::Args(
            "--dataset oasis3 needs --manifest FILE: a CSV with columns subject, session, t1, \
             falff, label (HC, AD, other or empty); `mmssl data synth-cohort --out DIR` writes \
             a synthetic cohort and its manifest"
                .into(),
        )
    })?;
    let manifest = Manifest::read(&path)?;
    let split_path = args.out.join("split.json");
    let split = if split_path.exists() {
        CohortSplit::load(&split_path)?
    } else {
        let s = split_subjects(&manifest, 5, 0.2, args.seed)?;
        s.save(&split_path)?;
        s
    };
    let train_subjects = split.train(args.fold)?;
    let valid_subjects = split.validation(args.fold)?;
    let volumes = CohortVolumes::new(manifest, VolumePipeline::default())?;
    let rows: Vec<usize> = pretraining_items(volumes.manifest(), &train_subjects)?
        .iter()
        .map(|i| i.row)
        .collect();
    let standardizers = volumes.fit_standardizers(&rows)?;
    let landmarks = args.out.join("landmarks.json");
    write_file(
        &landmarks,
        &serde_json::to_string_pretty(&standardizers).unwrap_or_default(),
    )?;
    let volumes = Arc::new(volumes.with_standardizers(standardizers));
    let whole = |c: VolumeCohort| -> Result<Subset, RunError> {
        let n = c.len();
        Ok(Subset::new(Arc::new(c), (0..n).collect())?)
    };
    let seed = args.seed;
    let mut train = whole(VolumeCohort::pretraining(
        volumes.clone(),
        &train_subjects,
        Some(AugmentConfig::default()),
        seed,
    )?)?;
    if let Some(n) = args.train_limit {
        train = Subset::first(Arc::new(train), n);
    }
    let valid = whole(VolumeCohort::pretraining(
        volumes.clone(),
        &valid_subjects,
        None,
        seed,
    )?)?;
    let test = whole(VolumeCohort::labelled(
        volumes.clone(),
        &split.holdout,
        false,
        None,
        seed,
    )?)?;
    let eval_train = whole(VolumeCohort::labelled(
        volumes.clone(),
        &train_subjects,
        true,
        None,
        seed,
    )?)?;
    let eval_valid = whole(VolumeCohort::labelled(
        volumes,
        &valid_subjects,
        false,
        None,
        seed,
    )?)?;
    Ok(Datasets {
        train,
        valid,
        test,
        eval: Some((eval_train, eval_valid)),
    })
}

/// One split of the MNIST-layout folder `dir` holding `dataset` (`mnist` or `fashion-mnist`):
/// a missing file names the exact command that fetches that dataset (the loader's own hint
/// cannot know which of the two the folder was meant to hold).
fn load_idx(dir: &Path, split: MnistSplit, dataset: &str) -> Result<ImageSet, RunError> {
    load_mnist_dir(dir, split).map_err(|e| match e {
        mmssl_data::DataError::Missing { path, .. } => {
            RunError::Data(mmssl_data::DataError::Missing {
                path,
                hint: format!(
                    "{} should hold the four IDX files of {dataset} (train and t10k images and \
                     labels, .gz or raw); fetch them with `mmssl data download {dataset} --dir {}`",
                    dir.display(),
                    dir.display()
                ),
            })
        }
        other => RunError::Data(other),
    })
}

fn two_view_datasets(args: &RunArgs) -> Result<Datasets, RunError> {
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
            if args.fold >= 9 {
                return Err(RunError::Args(format!(
                    "--fold {} is out of range: the embedded MNIST subset has 9 validation blocks (0-8)",
                    args.fold
                )));
            }
            let all = two_view(embedded_mnist_test()?, args.seed)?;
            // Fold 0 validates on images 8,000-8,999, fold f on block (8 + f) mod 9.
            let block = (8 + args.fold) % 9;
            let valid: Vec<usize> = (block * 1000..(block + 1) * 1000).collect();
            let train: Vec<usize> = (0..9000).filter(|i| i / 1000 != block).collect();
            (
                Subset::new(all.clone(), train)?,
                Subset::new(all.clone(), valid)?,
                Subset::new(all, (9000..10_000).collect())?,
            )
        }
        Some(dir) => {
            let train_images = load_idx(dir, MnistSplit::Train, "mnist")?;
            let labels: Vec<usize> = train_images.labels().iter().map(|&l| l as usize).collect();
            // A stratified twelfth of the training split (5,000 images) validates.
            let (tr, va) = stratified_k_fold(&labels, 12, args.fold, args.seed)?;
            let all = two_view(train_images, args.seed)?;
            let test = two_view(
                load_idx(dir, MnistSplit::Test, "mnist")?,
                args.seed ^ 0x7e57,
            )?;
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
    Ok(Datasets {
        train,
        valid,
        test,
        eval: None,
    })
}

/// MNIST paired by label with Fashion-MNIST or SVHN. Each side's training split is divided
/// (stratified, a twelfth validates) before pairing, so no image is in both the training and
/// the validation pairs. Training pairs use 30 random pairings per class (MMVAE's protocol);
/// validation and test pairs one, so each image is evaluated once.
fn label_paired_datasets(args: &RunArgs) -> Result<Datasets, RunError> {
    let svhn = args.dataset == DatasetKind::MnistSvhn;
    let second_name = if svhn { "svhn" } else { "fashion-mnist" };
    let mnist_dir = args.data_dir.clone().ok_or_else(|| {
        RunError::Args(format!(
            "--dataset {} needs --data-dir with the MNIST IDX files (train and t10k) and \
             --second-data-dir with the {} files",
            if svhn { "mnist-svhn" } else { "mnist-fashion" },
            if svhn {
                "SVHN train_32x32.mat and test_32x32.mat"
            } else {
                "Fashion-MNIST IDX"
            }
        ))
    })?;
    let second_dir = match &args.second_data_dir {
        Some(d) => d.clone(),
        None => mnist_dir
            .parent()
            .map(|p| p.join(second_name))
            .unwrap_or_else(|| PathBuf::from(second_name)),
    };
    let load_second = |train: bool| -> Result<ImageSet, RunError> {
        if svhn {
            let file = if train {
                "train_32x32.mat"
            } else {
                "test_32x32.mat"
            };
            let path = second_dir.join(file);
            if !path.exists() {
                return Err(RunError::Data(mmssl_data::DataError::Missing {
                    path,
                    hint: format!(
                        "fetch SVHN with `mmssl data download svhn --dir {}` or pass \
                         --second-data-dir",
                        second_dir.display()
                    ),
                }));
            }
            Ok(mmssl_data::load_svhn_mat(path)?)
        } else {
            let split = if train {
                MnistSplit::Train
            } else {
                MnistSplit::Test
            };
            load_idx(&second_dir, split, "fashion-mnist")
        }
    };
    let split = |set: &ImageSet| -> Result<(ImageSet, ImageSet), RunError> {
        let labels: Vec<usize> = set.labels().iter().map(|&l| l as usize).collect();
        let (tr, va) = stratified_k_fold(&labels, 12, args.fold, args.seed)?;
        Ok((set.select(&tr)?, set.select(&va)?))
    };
    let (a_train, a_valid) = split(&load_idx(&mnist_dir, MnistSplit::Train, "mnist")?)?;
    let (b_train, b_valid) = split(&load_second(true)?)?;
    let a_test = load_idx(&mnist_dir, MnistSplit::Test, "mnist")?;
    let b_test = load_second(false)?;
    let pair = |a: ImageSet, b: ImageSet, repeats: usize, seed: u64| -> Result<Subset, RunError> {
        let paired: Arc<dyn PairedDataset> = Arc::new(LabelPaired::new(
            a,
            b,
            LabelPairedConfig {
                repeats,
                seed,
                ..Default::default()
            },
        )?);
        let n = paired.len();
        Ok(Subset::new(paired, (0..n).collect())?)
    };
    let train = pair(a_train, b_train, 30, args.seed)?;
    let valid = pair(a_valid, b_valid, 1, args.seed ^ 0x7a11d)?;
    let test = pair(a_test, b_test, 1, args.seed ^ 0x7e57)?;
    let train = match args.train_limit {
        Some(n) if n < train.len() => {
            let mut idx: Vec<usize> = (0..train.len()).collect();
            idx.shuffle(&mut StdRng::seed_from_u64(args.seed ^ 0x1173));
            idx.truncate(n);
            idx.sort_unstable();
            Subset::new(Arc::new(train), idx)?
        }
        _ => train,
    };
    Ok(Datasets {
        train,
        valid,
        test,
        eval: None,
    })
}

struct Bars {
    bar: Option<ProgressBar>,
    metrics: std::fs::File,
    batch_size: usize,
    epoch_start: Instant,
}

impl Progress for Bars {
    fn step_terms(
        &mut self,
        epoch: usize,
        step: usize,
        steps: usize,
        loss: f64,
        terms: &[(String, f64)],
    ) {
        if let Some(bar) = &self.bar {
            if step == 0 {
                self.epoch_start = Instant::now();
                bar.set_length(steps as u64);
                bar.set_position(0);
                bar.set_prefix(format!("epoch {}", epoch + 1));
            }
            bar.set_position(step as u64 + 1);
            let pairs = ((step + 1) * self.batch_size) as f64;
            let rate = pairs / self.epoch_start.elapsed().as_secs_f64().max(1e-9);
            let mut msg = format!("loss {loss:.4}");
            for (name, v) in terms.iter().take(8) {
                msg += &format!(" {name} {v:.3}");
            }
            msg += &format!(" | {rate:.0} pairs/s");
            bar.set_message(msg);
        }
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        if let Ok(line) = serde_json::to_string(m) {
            let _ = writeln!(self.metrics, "{line}");
        }
        if let Some(bar) = &self.bar {
            let terms: Vec<String> = m.terms.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
            bar.println(format!(
                "epoch {:>3}: train loss {:.4} ({}), valid loss {}, {:.0} pairs/s, {:.1} s waiting for data",
                m.epoch + 1,
                m.train_loss,
                terms.join(", "),
                m.valid_loss.map_or("-".into(), |v| format!("{v:.4}")),
                m.pairs_per_second,
                m.data_wait_seconds
            ));
        }
    }
}

/// The settings that decide what pretraining computes: all but where and how verbosely it
/// runs, the loader threads, the backend, and the evaluation's settings.
fn pretraining_settings(a: &RunArgs) -> Result<toml::Table, RunError> {
    let mut t = toml::Table::try_from(a).map_err(|e| RunError::Args(e.to_string()))?;
    for key in [
        "out",
        "quiet",
        "workers",
        "resume",
        "config",
        "backend",
        "eval_epochs",
        "bn_train_mode",
    ] {
        t.remove(key);
    }
    Ok(t)
}

/// Refuses `--resume` with settings other than those the run in `args.out` started with.
fn check_resume(args: &RunArgs) -> Result<(), RunError> {
    if !args.out.join("config.toml").exists() {
        return Ok(());
    }
    let saved = pretraining_settings(&load_run_config(&args.out)?)?;
    let now = pretraining_settings(args)?;
    let mut differ: Vec<String> = saved
        .iter()
        .filter(|(k, v)| now.get(*k) != Some(*v))
        .map(|(k, v)| {
            let given = now.get(k).map_or("unset".to_string(), |n| n.to_string());
            format!("{k}: {v} then, {given} now")
        })
        .collect();
    differ.extend(
        now.iter()
            .filter(|(k, _)| !saved.contains_key(*k))
            .map(|(k, v)| format!("{k}: unset then, {v} now")),
    );
    if differ.is_empty() {
        return Ok(());
    }
    Err(RunError::Args(format!(
        "cannot resume {}: it was started with other settings ({}); resume with the same \
         settings (`--config {}` gives them) or start a new run",
        args.out.display(),
        differ.join("; "),
        args.out.join("config.toml").display()
    )))
}

/// Runs pretraining, linear evaluation and the similarity analysis; writes the run directory
/// and returns the report.
pub fn run(args: &RunArgs) -> Result<RunReport, RunError> {
    run_phases(args, Phases::ALL)
}

/// The settings a run directory was made with (`RUN/config.toml`).
pub fn load_run_config(run_dir: &Path) -> Result<RunArgs, RunError> {
    let path = run_dir.join("config.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        RunError::Args(format!(
            "cannot read {}: {e}; is {} a run directory made by `mmssl pretrain` or `mmssl run`?",
            path.display(),
            run_dir.display()
        ))
    })?;
    let mut args: RunArgs =
        toml::from_str(&text).map_err(|e| RunError::Args(format!("{}: {e}", path.display())))?;
    args.out = run_dir.to_path_buf();
    Ok(args)
}

/// Runs the chosen `phases` of a run in `args.out`; evaluation and analysis use the best
/// checkpoint there. Writes `eval.json` (evaluation, with the similarity when analysed too) or
/// `similarity.json` (analysis alone).
pub fn run_phases(args: &RunArgs, phases: Phases) -> Result<RunReport, RunError> {
    if args.method.is_some() && args.objective != DEFAULT_OBJECTIVE {
        return Err(RunError::Args(format!(
            "both --objective {} and --method {} given: a run trains one of them",
            args.objective,
            args.method.as_deref().unwrap_or_default()
        )));
    }
    let method = match &args.method {
        Some(name) => MethodChoice::Baseline(name.parse()?),
        None => MethodChoice::Objective(args.objective.parse()?),
    };
    for (flag, v) in [("--lr", args.lr), ("--max-lr", args.max_lr)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(RunError::Args(format!(
                "{flag} {v}: a learning rate must be a positive number"
            )));
        }
    }
    let eval_epochs = args.eval_epochs.unwrap_or(match args.dataset {
        DatasetKind::Oasis3 => 500,
        _ => 50,
    });
    let schedule = match args.schedule {
        ScheduleKind::OneCycle => Some(OneCycleConfig {
            max_lr: args.max_lr,
            ..Default::default()
        }),
        ScheduleKind::Constant => None,
    };
    let eval_config = LinearEvalConfig {
        epochs: eval_epochs,
        seed: args.seed,
        lr: args.lr,
        schedule,
        batchnorm_train_mode: args.bn_train_mode,
        ..Default::default()
    };
    let train_config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        seed: args.seed,
        lr: args.lr,
        schedule,
        loader: LoaderConfig {
            workers: args.workers,
            ..Default::default()
        },
        ..Default::default()
    };
    if phases.pretrain && args.resume {
        check_resume(args)?;
    }
    let device = select_device(args.backend)?.autodiff();
    std::fs::create_dir_all(&args.out).map_err(|e| RunError::Write {
        path: args.out.clone(),
        reason: e.to_string(),
    })?;
    let data = datasets(args)?;
    let sizes = [data.train.len(), data.valid.len(), data.test.len()];
    if phases.pretrain {
        let mut saved = args.clone();
        saved.config = None;
        saved.resume = false;
        saved.eval_epochs = Some(eval_epochs);
        let config = toml::to_string_pretty(&saved).map_err(|e| RunError::Args(e.to_string()))?;
        write_file(&args.out.join("config.toml"), &config)?;
        let run_info = serde_json::json!({
            "mmssl_version": env!("CARGO_PKG_VERSION"),
            "git_revision": option_env!("MMSSL_GIT_REVISION"),
            "backend": args.backend,
            "device": format!("{device:?}"),
            "seed": args.seed,
            "sizes": sizes,
            "train": train_config,
            "linear_eval": eval_config,
        });
        write_file(
            &args.out.join("run.json"),
            &serde_json::to_string_pretty(&run_info).unwrap_or_default(),
        )?;
    }

    let shapes: Vec<Vec<usize>> = (0..data.train.modalities())
        .map(|m| data.train.shape(m))
        .collect();
    let classes = data.eval_train().classes();
    let ctx = Context {
        args,
        data: &data,
        device: &device,
        train_config: &train_config,
        eval_config: &eval_config,
        classes,
        phases,
    };
    let (linear, test_z, pretrain_seconds, eval_seconds) = match &method {
        MethodChoice::Objective(spec) => {
            let objective = ObjectiveConfig::new(spec.clone());
            ctx.pretrain_and_evaluate(false, || {
                ContrastiveModel::new(
                    &shapes,
                    64,
                    &objective,
                    &device,
                    &mut StdRng::seed_from_u64(args.seed),
                )
                .map_err(RunError::from)
            })?
        }
        MethodChoice::Baseline(BaselineKind::Lcca) => ctx.linear_cca()?,
        MethodChoice::Baseline(kind) => {
            let options = BaselineOptions {
                mmvae_k: args.mmvae_k,
                mmvae_estimator: args.mmvae_estimator,
                mmvae_learn_prior: args.mmvae_learn_prior,
                cca: DeepCcaConfig {
                    reg: args.cca_reg,
                    norm: args.cca_norm,
                    top_k: args.cca_top_k,
                },
                cca_dim: args.cca_dim,
            };
            if matches!(kind, BaselineKind::Dccae | BaselineKind::CrCca)
                && args.cca_dim + 1 >= args.batch_size
            {
                eprintln!(
                    "warning: --cca-dim {} with --batch-size {}: a batch's cross-covariance has \
                     rank at most {}, so every canonical correlation can be 1 whatever the \
                     encoders learn and the deep CCA term carries no signal; use a CCA \
                     dimension below the batch size minus one",
                    args.cca_dim,
                    args.batch_size,
                    args.batch_size - 1
                );
            }
            // The supervised baseline trains on labelled items: those of the linear
            // evaluation (the same as the pretraining sets except for OASIS-3).
            ctx.pretrain_and_evaluate(kind.needs_labels(), || {
                kind.build(
                    &shapes,
                    64,
                    classes,
                    &options,
                    &device,
                    &mut StdRng::seed_from_u64(args.seed),
                )
                .map_err(RunError::from)
            })?
        }
    };
    let t2 = Instant::now();
    let to_nd = |f: &mmssl_train::Features| {
        ndarray::Array2::from_shape_fn((f.len(), f.dim), |(i, j)| f.values[i * f.dim + j] as f64)
    };
    let similarity = if phases.analyze && test_z.len() >= 2 {
        Some(Similarity::new().report(to_nd(&test_z[0]).view(), to_nd(&test_z[1]).view())?)
    } else {
        None
    };
    let report = RunReport {
        method: method.to_string(),
        dataset: args.dataset,
        sizes,
        linear_eval: linear,
        similarity,
        seconds: [pretrain_seconds, eval_seconds, t2.elapsed().as_secs_f64()],
        eval_epochs,
    };
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    if phases.evaluate {
        write_file(&args.out.join("eval.json"), &json)?;
    } else if phases.analyze {
        write_file(&args.out.join("similarity.json"), &json)?;
    }
    Ok(report)
}

/// The result table printed at the end of a run.
pub fn table(r: &RunReport) -> String {
    let mut s = format!(
        "{} on {:?}: {} train / {} valid / {} test pairs\n\n",
        r.method, r.dataset, r.sizes[0], r.sizes[1], r.sizes[2]
    );
    if !r.linear_eval.is_empty() {
        s += "modality | test accuracy (pretrained) | test accuracy (random init) | ROC-AUC (pretrained)\n";
        s += "---------+----------------------------+-----------------------------+---------------------\n";
    }
    for m in &r.linear_eval {
        s += &format!(
            "{:>8} | {:>26.4} | {:>27} | {:>20}\n",
            m.modality,
            m.pretrained.accuracy,
            m.random_init
                .as_ref()
                .map_or("-".into(), |r| format!("{:.4}", r.accuracy)),
            m.pretrained
                .roc_auc
                .map_or("-".into(), |v| format!("{v:.4}"))
        );
    }
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    if let Some(sim) = &r.similarity {
        s += &format!(
            "\nsimilarity of the two modalities' z on the test set: CCA {}, SVCCA {}, PWCCA {}, CKA {}\n",
            f(sim.cca),
            f(sim.svcca),
            f(sim.pwcca),
            f(sim.cka)
        );
    }
    s += &format!(
        "time: pretraining {:.0} s, linear evaluation {:.0} s, similarity {:.1} s\n",
        r.seconds[0], r.seconds[1], r.seconds[2]
    );
    s
}

/// What `mmssl run` trains.
enum MethodChoice {
    Objective(ObjectiveSpec),
    Baseline(BaselineKind),
}

impl std::fmt::Display for MethodChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MethodChoice::Objective(spec) => write!(f, "{spec}"),
            MethodChoice::Baseline(kind) => write!(f, "{kind}"),
        }
    }
}

/// Per-modality evaluations, test-set features of each modality, pretraining and evaluation
/// seconds.
type Evaluated = (Vec<ModalityEval>, Vec<Features>, f64, f64);

struct Context<'a> {
    args: &'a RunArgs,
    data: &'a Datasets,
    device: &'a burn::tensor::Device,
    train_config: &'a TrainConfig,
    eval_config: &'a LinearEvalConfig,
    classes: usize,
    phases: Phases,
}

impl Context<'_> {
    fn progress(&self) -> Result<Bars, RunError> {
        let metrics_path = self.args.out.join("metrics.jsonl");
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(self.args.resume)
            .write(true)
            .truncate(!self.args.resume)
            .open(&metrics_path)
            .map_err(|e| RunError::Write {
                path: metrics_path.clone(),
                reason: e.to_string(),
            })?;
        let bar = (!self.args.quiet).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:25}] {pos}/{len} steps, eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Ok(Bars {
            bar,
            metrics,
            batch_size: self.train_config.batch_size,
            epoch_start: Instant::now(),
        })
    }

    /// Pretrains the model `build` makes, then evaluates the best checkpoint and a fresh
    /// (randomly initialised) model per modality.
    fn pretrain_and_evaluate<M: Method>(
        &self,
        labelled: bool,
        build: impl Fn() -> Result<M, RunError>,
    ) -> Result<Evaluated, RunError> {
        let (args, data, device) = (self.args, self.data, self.device);
        let checkpoints = Checkpoints::new(args.out.join("checkpoints"))?.resume(args.resume);
        let mut pretrain_seconds = 0.0;
        if self.phases.pretrain {
            let mut progress = self.progress()?;
            let t0 = Instant::now();
            let (train, valid) = if labelled {
                (data.eval_train(), data.eval_valid())
            } else {
                (&data.train, &data.valid)
            };
            let outcome = fit(
                build()?,
                train,
                Some(valid),
                self.train_config,
                Some(&checkpoints),
                device,
                &mut progress,
            )?;
            if let Some(bar) = &progress.bar {
                bar.finish_and_clear();
            }
            // One line per epoch, from the checkpointed history: a run killed between an
            // epoch's checkpoint and its log line, and resumed, still logs every epoch once.
            let mut lines = String::new();
            for m in &outcome.history {
                lines += &serde_json::to_string(m).unwrap_or_default();
                lines.push('\n');
            }
            drop(progress);
            write_file(&args.out.join("metrics.jsonl"), &lines)?;
            pretrain_seconds = t0.elapsed().as_secs_f64();
        }
        if !self.phases.evaluate && !self.phases.analyze {
            return Ok((Vec::new(), Vec::new(), pretrain_seconds, 0.0));
        }
        // Evaluate the model of the best validation loss.
        if !checkpoints.best().exists() {
            return Err(RunError::Args(format!(
                "{} does not exist: pretrain first (`mmssl pretrain --out {}`)",
                checkpoints.best().display(),
                args.out.display()
            )));
        }
        let best = build()?
            .try_load_file(checkpoints.best())
            .map_err(|e| RunError::Write {
                path: checkpoints.best(),
                reason: format!("{e:?}"),
            })?;
        let t1 = Instant::now();
        let mut linear = Vec::new();
        let mut test_z = Vec::new();
        // With BatchNorm in training mode the features depend on the batch: use the
        // pretraining batch size, as the authors' code does.
        let (bn_train, batch) = match self.eval_config.batchnorm_train_mode {
            true => (true, self.train_config.batch_size),
            false => (false, 256),
        };
        if !self.phases.evaluate {
            for m in 0..best.modalities() {
                test_z.push(extract_features(
                    &best, &data.test, m, batch, bn_train, device,
                )?);
            }
            return Ok((linear, test_z, pretrain_seconds, 0.0));
        }
        let random = build()?;
        for m in 0..best.modalities() {
            let mut results = Vec::new();
            for model in [&best, &random] {
                let f = |d: &Subset| extract_features(model, d, m, batch, bn_train, device);
                let (tr, va, te) = (f(data.eval_train())?, f(data.eval_valid())?, f(&data.test)?);
                results.push(linear_eval(
                    &tr,
                    &va,
                    &te,
                    self.classes,
                    self.eval_config,
                    device,
                )?);
                if std::ptr::eq(model, &best) {
                    test_z.push(te);
                }
            }
            let random_init = results.pop();
            let pretrained = results.pop().expect("two results");
            linear.push(ModalityEval {
                modality: m,
                pretrained,
                random_init,
            });
        }
        Ok((linear, test_z, pretrain_seconds, t1.elapsed().as_secs_f64()))
    }

    /// Fits linear CCA on the flattened training pairs and evaluates its canonical variates.
    fn linear_cca(&self) -> Result<Evaluated, RunError> {
        let data = self.data;
        let path = self.args.out.join("lcca.json");
        let mut fit_seconds = 0.0;
        let fitted = if self.phases.pretrain {
            let t0 = Instant::now();
            let config = LinearCcaConfig {
                components: self.args.lcca_components,
                ..Default::default()
            };
            let fitted = config.fit_dataset(&data.train)?;
            fit_seconds = t0.elapsed().as_secs_f64();
            write_file(
                &path,
                &serde_json::to_string(&serde_json::json!({
                    "config": config,
                    "canonical_correlations": fitted.correlations().to_vec(),
                    "model": fitted,
                }))
                .unwrap_or_default(),
            )?;
            fitted
        } else {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                RunError::Args(format!(
                    "cannot read {}: {e}; fit linear CCA first (`mmssl pretrain --method lcca`)",
                    path.display()
                ))
            })?;
            let mut v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| RunError::Args(format!("{}: {e}", path.display())))?;
            serde_json::from_value(v["model"].take())
                .map_err(|e| RunError::Args(format!("{}: {e}", path.display())))?
        };
        if !self.phases.evaluate {
            let mut test_z = Vec::new();
            if self.phases.analyze {
                for m in 0..2 {
                    test_z.push(fitted.features(&data.test, m)?);
                }
            }
            return Ok((Vec::new(), test_z, fit_seconds, 0.0));
        }
        let t1 = Instant::now();
        let mut linear = Vec::new();
        let mut test_z = Vec::new();
        for m in 0..2 {
            let f = |d: &Subset| fitted.features(d, m);
            let (tr, va, te) = (f(data.eval_train())?, f(data.eval_valid())?, f(&data.test)?);
            let pretrained =
                linear_eval(&tr, &va, &te, self.classes, self.eval_config, self.device)?;
            test_z.push(te);
            linear.push(ModalityEval {
                modality: m,
                pretrained,
                random_init: None,
            });
        }
        Ok((linear, test_z, fit_seconds, t1.elapsed().as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_flags_and_fill_an_older_config_file() {
        let d = RunArgs::default();
        assert_eq!(d.objective, DEFAULT_OBJECTIVE);
        assert_eq!(
            (d.epochs, d.batch_size, d.workers, d.mmvae_k),
            (50, 64, 2, 10)
        );
        assert_eq!((d.lr, d.max_lr, d.cca_reg), (4e-4, 0.01, 1e-3));
        assert_eq!((d.cca_dim, d.lcca_components), (DEFAULT_CCA_DIM, 64));
        assert_eq!(d.cca_norm, CorrelationNorm::TraceNorm);
        assert_eq!(d.mmvae_estimator, MmvaeEstimator::Dreg);
        assert_eq!(d.eval_epochs, None);
        // A config.toml written before the baseline and optimiser flags existed: the missing
        // keys take the flags' defaults.
        let old: RunArgs = toml::from_str(
            "dataset = \"two-view-mnist\"\nobjective = \"RR\"\nout = \"r\"\nepochs = 3\n\
             train_limit = 100\nbackend = \"cpu\"\nseed = 7\nbatch_size = 32\n\
             eval_epochs = 5\nresume = false\nquiet = true\n",
        )
        .unwrap();
        assert_eq!((old.epochs, old.seed, old.eval_epochs), (3, 7, Some(5)));
        assert_eq!(
            (old.lr, old.cca_dim, old.workers),
            (d.lr, d.cca_dim, d.workers)
        );
        let demo = RunArgs::quick_demo();
        assert_eq!((demo.epochs, demo.eval_epochs), (2, Some(10)));
        assert_eq!(demo.out, PathBuf::from("runs/demo"));
    }
}
