//! The sections of a [`RunConfig`](super::RunConfig) and the kinds they name.

use crate::error::{ProtocolError, Result};
pub use mmssl_similarity::{Knn, Metric, Voting};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The datasets of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Two-View MNIST: a rotated view and a noisy view of each digit.
    #[default]
    TwoViewMnist,
    /// MNIST paired by label with Fashion-MNIST (the stand-in for MNIST-SVHN when SVHN is
    /// absent): `data_dir` holds MNIST, `second_data_dir` Fashion-MNIST.
    MnistFashion,
    /// MNIST paired by label with SVHN (MMVAE's MNIST-SVHN): `data_dir` holds MNIST,
    /// `second_data_dir` SVHN's `train_32x32.mat` and `test_32x32.mat`.
    MnistSvhn,
    /// OASIS-3 (or any paired T1 + fALFF cohort) from a CSV manifest (`manifest`).
    Oasis3,
}

impl DatasetKind {
    /// Every dataset.
    pub const ALL: [DatasetKind; 4] = [
        DatasetKind::TwoViewMnist,
        DatasetKind::MnistFashion,
        DatasetKind::MnistSvhn,
        DatasetKind::Oasis3,
    ];

    /// Whether the dataset reads the data setting `key`: `data_dir`, `second_data_dir` or
    /// `manifest`.
    pub fn reads(self, key: &str) -> bool {
        match self {
            DatasetKind::TwoViewMnist => key == "data_dir",
            DatasetKind::MnistFashion | DatasetKind::MnistSvhn => {
                key == "data_dir" || key == "second_data_dir"
            }
            DatasetKind::Oasis3 => key == "manifest",
        }
    }

    /// The name as configs and flags spell it.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::TwoViewMnist => "two-view-mnist",
            DatasetKind::MnistFashion => "mnist-fashion",
            DatasetKind::MnistSvhn => "mnist-svhn",
            DatasetKind::Oasis3 => "oasis3",
        }
    }

    /// Classes of the dataset's labelled task (digits or garments: 10; HC vs AD: 2).
    pub fn classes(self) -> usize {
        match self {
            DatasetKind::Oasis3 => 2,
            _ => 10,
        }
    }

    /// The names of the modalities, for folders, figures and messages.
    pub fn modality_names(self) -> [&'static str; 2] {
        match self {
            DatasetKind::Oasis3 => ["t1", "falff"],
            DatasetKind::TwoViewMnist => ["rotated", "noisy"],
            DatasetKind::MnistFashion => ["mnist", "fashion"],
            DatasetKind::MnistSvhn => ["mnist", "svhn"],
        }
    }

    /// The names of `classes` classes (OASIS-3: HC, AD; else the class number).
    pub fn class_names(self, classes: usize) -> Vec<String> {
        match self {
            DatasetKind::Oasis3 => vec!["HC".into(), "AD".into()],
            _ => (0..classes).map(|c| c.to_string()).collect(),
        }
    }

    /// Whether items are volumes (the paper's defaults differ: 500 evaluation epochs).
    pub fn is_volumetric(self) -> bool {
        self == DatasetKind::Oasis3
    }
}

/// The compute backends a run can ask for. The library takes a `Device`; this is the name a
/// configuration records and the `mmssl` binary turns into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's `flex` CPU backend.
    #[default]
    Cpu,
    /// burn's `wgpu` backend (Vulkan, Metal, DX12).
    Wgpu,
    /// burn's CUDA backend.
    Cuda,
}

impl BackendKind {
    /// Every backend.
    pub const ALL: [BackendKind; 3] = [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda];

    /// The name as configs and flags spell it.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }
}

/// The learning-rate schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// One cycle per run (PyTorch OneCycleLR semantics: 30% cosine warm-up from max/25 to
    /// `max_lr`, cosine annealing to max/25/1e4, RAdam's beta1 cycled 0.95 -> 0.85 -> 0.95).
    #[default]
    OneCycle,
    /// The constant `lr` with RAdam's default beta1 (0.9).
    Constant,
}

impl ScheduleKind {
    /// Every schedule.
    pub const ALL: [ScheduleKind; 2] = [ScheduleKind::OneCycle, ScheduleKind::Constant];

    /// The name as configs and flags spell it.
    pub fn name(self) -> &'static str {
        match self {
            ScheduleKind::OneCycle => "one-cycle",
            ScheduleKind::Constant => "constant",
        }
    }
}

macro_rules! named_enum {
    ($t:ty, $what:literal) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $t {
            type Err = ProtocolError;
            /// The name (case-insensitive, `_` for `-`).
            fn from_str(s: &str) -> Result<Self> {
                let norm = s.trim().to_ascii_lowercase().replace('_', "-");
                <$t>::ALL
                    .into_iter()
                    .find(|k| k.name() == norm)
                    .ok_or_else(|| {
                        let names: Vec<&str> = <$t>::ALL.iter().map(|k| k.name()).collect();
                        ProtocolError::setting($what, s, format!("one of {}", names.join(", ")))
                    })
            }
        }
    };
}
named_enum!(DatasetKind, "data.dataset");
named_enum!(BackendKind, "backend");
named_enum!(ScheduleKind, "training.schedule");
named_enum!(AugmentKind, "data.augment");

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// The dataset.
    pub dataset: DatasetKind,
    /// Folder with the MNIST IDX files (train and t10k). Without it, Two-View MNIST uses the
    /// MNIST test split shipped with mmssl (8,000 training, 1,000 validation, 1,000 test).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// The second modality's folder for the label-paired datasets (Fashion-MNIST IDX files or
    /// SVHN .mat files); default: `fashion-mnist` or `svhn` beside `data_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_data_dir: Option<PathBuf>,
    /// The cohort manifest of `oasis3` (CSV: subject, session, t1, falff, label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// Only N training pairs: the first N for Two-View MNIST and cohorts, a seeded random N
    /// for the label-paired datasets (whose pairs are ordered by class).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_limit: Option<usize>,
    /// Which validation fold: of the stratified 12-fold split of the training data for images
    /// (with the embedded MNIST subset, which of its nine 1,000-image blocks), of the 5
    /// subject-level folds for cohorts.
    pub fold: usize,
    /// How cohort (`oasis3`) pretraining pairs are augmented (crop of the 8-voxel padded
    /// volume and flips): `paired` (one draw for T1 and fALFF, the authors' pipeline),
    /// `separate` (one draw per modality) or `none`. The image datasets are not augmented.
    pub augment: AugmentKind,
}

/// How cohort pretraining pairs are augmented (see [`mmssl_data::AugmentPairing`] for why
/// `separate` matters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AugmentKind {
    /// One random crop and flip for both modalities of a pair (the authors' pipeline).
    #[default]
    Paired,
    /// An independent crop and flip per modality.
    Separate,
    /// No augmentation.
    None,
}

impl AugmentKind {
    /// Every kind.
    pub const ALL: [AugmentKind; 3] = [
        AugmentKind::Paired,
        AugmentKind::Separate,
        AugmentKind::None,
    ];

    /// The name as configs and flags spell it.
    pub fn name(self) -> &'static str {
        match self {
            AugmentKind::Paired => "paired",
            AugmentKind::Separate => "separate",
            AugmentKind::None => "none",
        }
    }

    /// The data crate's augmentation for this kind (`None` for none).
    pub fn config(self) -> Option<mmssl_data::AugmentConfig> {
        let pairing = match self {
            AugmentKind::Paired => mmssl_data::AugmentPairing::Paired,
            AugmentKind::Separate => mmssl_data::AugmentPairing::Separate,
            AugmentKind::None => return None,
        };
        Some(mmssl_data::AugmentConfig {
            pairing,
            ..Default::default()
        })
    }
}

impl DataConfig {
    /// The paths that are set: `data_dir`, `second_data_dir`, `manifest`.
    pub(crate) fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        [
            &mut self.data_dir,
            &mut self.second_data_dir,
            &mut self.manifest,
        ]
        .into_iter()
        .flatten()
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: DatasetKind::TwoViewMnist,
            data_dir: None,
            second_data_dir: None,
            manifest: None,
            train_limit: None,
            fold: 0,
            augment: AugmentKind::Paired,
        }
    }
}

/// Pretraining settings (the paper's by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Pretraining epochs (the paper: 50 on images, 200 on volumes).
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// RAdam's learning rate without a schedule (`constant`), for pretraining and linear
    /// evaluation (the paper: 4e-4).
    pub lr: f64,
    /// The one-cycle schedule's peak learning rate (the paper: 0.01).
    pub max_lr: f64,
    /// The learning-rate schedule, stepped per batch, for pretraining and linear evaluation.
    pub schedule: ScheduleKind,
    /// Loader threads preparing the next batches (0: load in the training thread). Changes
    /// speed only, never results.
    pub workers: usize,
    /// Start pretraining from these weights instead of the seeded initialisation: a run
    /// folder (its `checkpoints/best.bpk`, e.g. one `mmssl import` made) or a `.bpk` file of
    /// a model of the same method and options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: 50,
            batch_size: 64,
            lr: 4e-4,
            max_lr: 0.01,
            schedule: ScheduleKind::OneCycle,
            workers: 2,
            init_from: None,
        }
    }
}

/// Evaluation settings: the linear probe, k-NN and cross-modal retrieval of the frozen
/// representations (each beside the same encoder at its random initialisation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluationConfig {
    /// Linear-evaluation epochs (absent: 50 for images, 500 for volumes, the paper's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Extract the features with the encoders' BatchNorm in training mode (statistics of each
    /// batch of `training.batch_size` items), as the authors' code does, instead of evaluation
    /// mode (running statistics, the default).
    pub bn_train_mode: bool,
    /// Neighbours of the k-NN evaluation: absent, 20 (or all the labelled training items when
    /// there are fewer); 0, no k-NN evaluation. A `k` given above the labelled training items
    /// is an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knn_k: Option<usize>,
    /// The k-NN metric: `cosine` or `euclidean`.
    pub knn_metric: Metric,
    /// The k-NN vote: `majority`, `distance` (weight `1/d`) or `temperature` (weight
    /// `exp(s / knn_temperature)`).
    pub knn_voting: Voting,
    /// The temperature of `knn_voting = "temperature"` (solo-learn's 0.07).
    pub knn_temperature: f64,
    /// Cross-modal retrieval on the test pairs, in `z` and in the shared canonical subspace.
    pub retrieval: bool,
    /// Dimensions of the shared canonical subspace (fitted on the training pairs) that
    /// retrieval ranks in.
    pub retrieval_cca_dims: usize,
    /// Online evaluation while pretraining, every this many epochs and after the last (0: off):
    /// a fresh linear probe and k-NN on frozen features of labelled training items, scored on
    /// labelled validation items, and retrieval between the validation pairs; into
    /// `metrics.jsonl` (`online`) and `online.png`/`.svg`. It never changes the pretraining.
    pub online_every: usize,
    /// Labelled training items (the probe's and k-NN's) and validation items (scored) of the
    /// online evaluation, each a seeded sample when the set is larger.
    pub online_items: usize,
    /// Epochs of the online linear probe.
    pub online_probe_epochs: usize,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            epochs: None,
            bn_train_mode: false,
            knn_k: None,
            knn_metric: Metric::Cosine,
            knn_voting: Voting::Majority,
            knn_temperature: 0.07,
            retrieval: true,
            retrieval_cca_dims: 10,
            online_every: 0,
            online_items: 1000,
            online_probe_epochs: 10,
        }
    }
}

impl EvaluationConfig {
    /// The epochs used for `dataset`: the configured ones, else the paper's default.
    pub fn epochs_for(&self, dataset: DatasetKind) -> usize {
        self.epochs
            .unwrap_or(if dataset.is_volumetric() { 500 } else { 50 })
    }

    /// The k-NN evaluation these settings ask for with `train_items` labelled training items
    /// (`None` when `knn_k` is 0): `knn_k`, or when absent 20 or `train_items` if fewer.
    pub fn knn(&self, train_items: usize) -> Option<Knn> {
        let k = match self.knn_k {
            Some(0) => return None,
            Some(k) => k,
            None => DEFAULT_KNN_K.min(train_items).max(1),
        };
        Some({
            Knn::new(k)
                .metric(self.knn_metric)
                .voting(self.knn_voting)
                .temperature(self.knn_temperature)
        })
    }
}

/// The k-NN evaluation's neighbours when `evaluation.knn_k` is absent.
pub const DEFAULT_KNN_K: usize = 20;

/// Similarity analysis of the modalities' test-set representations, and their maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Whether `run` computes CCA, SVCCA, PWCCA and CKA after the evaluation.
    pub enabled: bool,
    /// SVCCA keeps the singular directions that explain this fraction of the variance.
    pub svcca_threshold: f64,
    /// Whether the analysis draws t-SNE maps of the test representations (each modality and
    /// both together) into `maps/`, with their trustworthiness. Off by default (a map of 1000
    /// points takes seconds); on in the demo.
    pub maps: bool,
    /// Test items per map (a seeded sample of the test set when it has more; the same items
    /// for every modality).
    pub map_points: usize,
    /// The maps' t-SNE perplexity (lowered for small test sets).
    pub map_perplexity: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            enabled: true,
            svcca_threshold: 0.99,
            maps: false,
            map_points: 1000,
            map_perplexity: 30.0,
        }
    }
}

/// Where the run goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// The run folder.
    pub dir: PathBuf,
    /// Continue the run in `dir` from its last checkpoint (its settings must be the same).
    pub resume: bool,
    /// Delete the results of an earlier run in `dir` before starting (without it a non-empty
    /// folder is refused). Never saved as set.
    pub overwrite: bool,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: PathBuf::from("runs/latest"),
            resume: false,
            overwrite: false,
        }
    }
}
