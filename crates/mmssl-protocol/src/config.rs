//! [`RunConfig`]: everything a run is, in one nested, serde-serialisable value.
//!
//! A run folder's `config.toml` is its `RunConfig`, complete: loading it and running it again
//! (into another folder) reproduces the run. The sections:
//!
//! ```toml
//! seed = 0
//! backend = "cpu"
//! method = "CR-XX-CC"            # or "XX;estimator=jsd", "dccae;cca_dim=10", ...
//!
//! [data]
//! dataset = "two-view-mnist"     # mnist-fashion, mnist-svhn, oasis3
//! fold = 0
//! # data_dir, second_data_dir, manifest, train_limit
//!
//! [training]
//! epochs = 50
//! batch_size = 64
//! lr = 0.0004
//! max_lr = 0.01
//! schedule = "one-cycle"
//! workers = 2
//!
//! [evaluation]
//! bn_train_mode = false          # epochs: 50 for images, 500 for volumes when absent
//!
//! [analysis]
//! enabled = true
//! svcca_threshold = 0.99
//!
//! [output]
//! dir = "runs/latest"
//! resume = false
//! ```
//!
//! Files may also use the flat keys of the `mmssl run` flags (`epochs = 2`,
//! `train_limit = 1000`, `objective = "RR"`, `cca_dim = 12`, as `config.toml` files of earlier
//! mmssl versions and grid `[settings]` do); [`RunConfig::from_toml_str`] moves each to its
//! section.

use crate::error::{ProtocolError, Result};
use crate::spec::MethodSpec;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
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
}

impl DataConfig {
    /// The paths that are set: `data_dir`, `second_data_dir`, `manifest`.
    fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
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
        }
    }
}

/// Linear-evaluation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluationConfig {
    /// Linear-evaluation epochs (absent: 50 for images, 500 for volumes, the paper's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Extract the features with the encoders' BatchNorm in training mode (statistics of each
    /// batch of `training.batch_size` items), as the authors' code does, instead of evaluation
    /// mode (running statistics, the default).
    pub bn_train_mode: bool,
}

impl EvaluationConfig {
    /// The epochs used for `dataset`: the configured ones, else the paper's default.
    pub fn epochs_for(&self, dataset: DatasetKind) -> usize {
        self.epochs
            .unwrap_or(if dataset.is_volumetric() { 500 } else { 50 })
    }
}

/// Similarity analysis of the modalities' test-set representations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Whether `run` computes CCA, SVCCA, PWCCA and CKA after the evaluation.
    pub enabled: bool,
    /// SVCCA keeps the singular directions that explain this fraction of the variance.
    pub svcca_threshold: f64,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            enabled: true,
            svcca_threshold: 0.99,
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

/// One run of the protocol: data, method, training, evaluation, analysis and output.
///
/// ```
/// use mmssl_protocol::{RunConfig, Registry};
/// let mut config = RunConfig::default();
/// config.method = "XX;estimator=jsd".parse().unwrap();
/// config.training.epochs = 2;
/// config.validate(&Registry::builtin()).unwrap();
/// let text = config.to_toml_string().unwrap();
/// assert_eq!(RunConfig::from_toml_str(&text).unwrap(), config);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// The backend the run asks for (recorded; the caller supplies the device).
    pub backend: BackendKind,
    /// The method and its options.
    pub method: MethodSpec,
    /// The data.
    pub data: DataConfig,
    /// Pretraining.
    pub training: TrainingConfig,
    /// Linear evaluation.
    pub evaluation: EvaluationConfig,
    /// Similarity analysis.
    pub analysis: AnalysisConfig,
    /// The run folder.
    pub output: OutputConfig,
}

/// Flat keys (the `mmssl run` flags) and the section each belongs to.
const FLAT_KEYS: &[(&str, &str, &str)] = &[
    ("dataset", "data", "dataset"),
    ("data_dir", "data", "data_dir"),
    ("second_data_dir", "data", "second_data_dir"),
    ("manifest", "data", "manifest"),
    ("train_limit", "data", "train_limit"),
    ("fold", "data", "fold"),
    ("epochs", "training", "epochs"),
    ("batch_size", "training", "batch_size"),
    ("lr", "training", "lr"),
    ("max_lr", "training", "max_lr"),
    ("schedule", "training", "schedule"),
    ("workers", "training", "workers"),
    ("eval_epochs", "evaluation", "epochs"),
    ("bn_train_mode", "evaluation", "bn_train_mode"),
    ("out", "output", "dir"),
    ("resume", "output", "resume"),
];

/// Flat keys of the baselines' former flags: (key, the methods it applies to, the option, its
/// default, which a `config.toml` of an earlier version holds for every method).
const FLAT_METHOD_OPTIONS: &[(&str, &[&str], &str, &str)] = &[
    ("mmvae_k", &["mmvae"], "k", "10"),
    ("mmvae_estimator", &["mmvae"], "estimator", "dreg"),
    ("mmvae_learn_prior", &["mmvae"], "learn_prior", "false"),
    ("cca_dim", &["dccae", "cr-cca"], "cca_dim", "10"),
    ("cca_norm", &["dccae", "cr-cca"], "cca_norm", "trace"),
    ("cca_top_k", &["dccae", "cr-cca"], "cca_top_k", ""),
    ("cca_reg", &["dccae", "cr-cca"], "cca_reg", "0.001"),
    ("lcca_components", &["lcca"], "components", "64"),
];

/// Keys of the command line that are not settings of a run (`mmssl run --quiet`, `--config`).
const FLAT_IGNORED: &[&str] = &["quiet", "config"];

fn scalar_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Removes the baselines' former flat keys (`cca_dim`, `mmvae_k`, ...) from `table`: (key,
/// value as text).
pub(crate) fn take_flat_method_options(table: &mut toml::Table) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let flat = key.replace('-', "_");
        if FLAT_METHOD_OPTIONS.iter().any(|(k, ..)| *k == flat)
            && let Some(v) = table.remove(&key)
        {
            out.push((flat, scalar_text(&v)));
        }
    }
    out
}

/// `section.key: message` for a TOML error in `text` (the key and section found from the
/// error's position).
fn field_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    let Some(span) = e.span() else { return msg };
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[line_start..line_end].trim();
    let key = line.split('=').next().unwrap_or("").trim();
    if key.is_empty() || key.starts_with('[') {
        return msg;
    }
    let section = before
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('['))
        .map(|l| l.trim().trim_matches(['[', ']']).to_string());
    match section {
        Some(section) => format!("`{section}.{key}`: {msg}"),
        None => format!("`{key}`: {msg}"),
    }
}

impl RunConfig {
    /// Applies the baselines' former flat keys as options of the method when it is one they
    /// apply to and the value is not their default (which a `config.toml` of an earlier
    /// version holds for every method). Otherwise the key is ignored, or with `strict` a
    /// non-default value is an error.
    pub(crate) fn apply_flat_method_options(
        &mut self,
        options: &[(String, String)],
        strict: bool,
    ) -> Result<()> {
        let method = self
            .method
            .name()
            .trim()
            .to_ascii_lowercase()
            .replace('_', "-");
        for (key, text) in options {
            let (_, applies, option, default) = FLAT_METHOD_OPTIONS
                .iter()
                .find(|(k, ..)| k == key)
                .expect("taken from this list");
            let is_default = text == default
                || matches!((text.parse::<f64>(), default.parse::<f64>()), (Ok(a), Ok(b)) if a == b);
            if applies.contains(&method.as_str()) {
                if !is_default && self.method.option(option).is_none() {
                    self.method.set_option(option, text);
                }
            } else if strict && !is_default {
                return Err(ProtocolError::Config(format!(
                    "`{key}` = {text} applies to {}, not to the method `{}`",
                    applies.join(" and "),
                    self.method
                )));
            }
        }
        Ok(())
    }

    /// A configuration from a TOML table, nested (sections) or flat (the flags' keys, with `_`
    /// or `-`), or both. A key in both forms, or an unknown key, is an error naming it.
    pub fn from_table(mut table: toml::Table) -> Result<Self> {
        let mut sections: Vec<(&str, toml::Table)> = Vec::new();
        let mut method_name: Option<toml::Value> = None;
        let mut objective: Option<toml::Value> = None;
        let options = take_flat_method_options(&mut table);
        let keys: Vec<String> = table.keys().cloned().collect();
        for key in keys {
            let flat = key.replace('-', "_");
            if FLAT_IGNORED.contains(&flat.as_str()) {
                table.remove(&key);
                continue;
            }
            if flat == "objective" {
                objective = table.remove(&key);
                continue;
            }
            if flat == "method" && table[&key].is_str() {
                method_name = table.remove(&key);
                continue;
            }
            if let Some(&(_, section, field)) = FLAT_KEYS.iter().find(|(k, _, _)| *k == flat) {
                let v = table.remove(&key).unwrap_or(toml::Value::Boolean(false));
                match sections.iter_mut().find(|(s, _)| *s == section) {
                    Some((_, t)) => {
                        t.insert(field.to_string(), v);
                    }
                    None => {
                        let mut t = toml::Table::new();
                        t.insert(field.to_string(), v);
                        sections.push((section, t));
                    }
                }
                continue;
            }
        }
        for (section, flat) in sections {
            match table.get_mut(section) {
                Some(toml::Value::Table(nested)) => {
                    for (field, v) in flat {
                        if nested.contains_key(&field) {
                            return Err(ProtocolError::Config(format!(
                                "`{section}.{field}` is given twice (once as a flat key)"
                            )));
                        }
                        nested.insert(field, v);
                    }
                }
                Some(_) => {
                    return Err(ProtocolError::Config(format!(
                        "`{section}` must be a table"
                    )));
                }
                None => {
                    table.insert(section.to_string(), toml::Value::Table(flat));
                }
            }
        }
        // `objective` (an objective spec) and `method` (a baseline, earlier) are one setting
        // now; both given is an error unless the objective is the default one.
        if let (Some(o), Some(m)) = (&objective, &method_name)
            && o.as_str() != Some(crate::spec::DEFAULT_METHOD)
        {
            return Err(ProtocolError::Config(format!(
                "both `objective` ({}) and `method` ({}) given: a run trains one method",
                scalar_text(o),
                scalar_text(m)
            )));
        }
        if let Some(name) = method_name.or(objective) {
            if table.contains_key("method") {
                return Err(ProtocolError::Config(
                    "the method is given twice (`method` and `objective`)".into(),
                ));
            }
            table.insert("method".into(), name);
        }
        // Through text, so a value error can be traced to its key.
        let text = toml::to_string(&table).map_err(|e| ProtocolError::Config(e.to_string()))?;
        let mut config: RunConfig = toml::from_str(&text)
            .map_err(|e: toml::de::Error| ProtocolError::Config(field_error(&text, &e)))?;
        config.apply_flat_method_options(&options, true)?;
        Ok(config)
    }

    /// A configuration from TOML text (nested or flat, see [`RunConfig::from_table`]).
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e: toml::de::Error| ProtocolError::Config(e.to_string()))?;
        Self::from_table(table)
    }

    /// A configuration from JSON text (nested, as [`RunConfig::to_json_string`] writes).
    pub fn from_json_str(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| ProtocolError::Config(e.to_string()))
    }

    /// The configuration as TOML (nested; the form of a run folder's `config.toml`).
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| ProtocolError::Config(e.to_string()))
    }

    /// The configuration as JSON.
    pub fn to_json_string(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| ProtocolError::Config(e.to_string()))
    }

    /// Reads a configuration file: JSON when its name ends in `.json`, TOML otherwise. Errors
    /// name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ProtocolError::File {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        };
        parsed.map_err(|e| ProtocolError::File {
            path: path.to_path_buf(),
            reason: match e {
                ProtocolError::Config(m) => m,
                other => other.to_string(),
            },
        })
    }

    /// Writes the configuration: JSON when the name ends in `.json`, TOML otherwise.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = if path.extension().is_some_and(|e| e == "json") {
            self.to_json_string()?
        } else {
            self.to_toml_string()?
        };
        crate::run::write_atomic(path, &text)
    }

    /// Checks every setting (and the method against `registry`), with an error naming the
    /// setting and its value.
    pub fn validate(&self, registry: &crate::Registry) -> Result<()> {
        let t = &self.training;
        for (field, v) in [("training.lr", t.lr), ("training.max_lr", t.max_lr)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(ProtocolError::setting(
                    field,
                    v,
                    "a learning rate must be a positive number",
                ));
            }
        }
        if t.epochs == 0 {
            return Err(ProtocolError::setting(
                "training.epochs",
                0,
                "at least 1 epoch (every run also evaluates the random initialisation, as its \
                 reference)",
            ));
        }
        if t.batch_size < 2 {
            return Err(ProtocolError::setting(
                "training.batch_size",
                t.batch_size,
                "contrastive and CCA losses need at least 2 items in a batch",
            ));
        }
        if self.evaluation.epochs == Some(0) {
            return Err(ProtocolError::setting(
                "evaluation.epochs",
                0,
                "linear evaluation needs at least 1 epoch",
            ));
        }
        let s = self.analysis.svcca_threshold;
        if !(s > 0.0 && s <= 1.0) {
            return Err(ProtocolError::setting(
                "analysis.svcca_threshold",
                s,
                "a fraction of variance in (0, 1]",
            ));
        }
        if self.data.train_limit == Some(0) {
            return Err(ProtocolError::setting(
                "data.train_limit",
                0,
                "at least one training pair (or no limit)",
            ));
        }
        let folds = match (self.data.dataset, &self.data.data_dir) {
            (DatasetKind::TwoViewMnist, None) => 9,
            (DatasetKind::Oasis3, _) => 5,
            _ => 12,
        };
        if self.data.fold >= folds {
            return Err(ProtocolError::setting(
                "data.fold",
                self.data.fold,
                format!(
                    "{} has {folds} validation folds (0-{})",
                    if folds == 9 {
                        "the embedded MNIST subset"
                    } else {
                        self.data.dataset.name()
                    },
                    folds - 1
                ),
            ));
        }
        let missing = |field: &str, hint: &str| ProtocolError::MissingSetting {
            dataset: self.data.dataset.name().into(),
            field: field.into(),
            hint: hint.into(),
        };
        match self.data.dataset {
            DatasetKind::MnistFashion | DatasetKind::MnistSvhn if self.data.data_dir.is_none() => {
                let second = if self.data.dataset == DatasetKind::MnistSvhn {
                    "SVHN's train_32x32.mat and test_32x32.mat"
                } else {
                    "the Fashion-MNIST IDX files"
                };
                return Err(missing(
                    "data.data_dir",
                    &format!(
                        "(--data-dir DIR) the folder with the MNIST IDX files (train and t10k); \
                         {second} come from data.second_data_dir (--second-data-dir)"
                    ),
                ));
            }
            DatasetKind::Oasis3 if self.data.manifest.is_none() => {
                return Err(missing(
                    "data.manifest",
                    "(--manifest FILE) a CSV with columns subject, session, t1, falff, label \
                     (HC, AD, other or empty); `mmssl data synth-cohort --out DIR` writes a \
                     synthetic cohort and its manifest",
                ));
            }
            _ => {}
        }
        registry.resolve(&self.method)?;
        Ok(())
    }

    /// The settings that decide what pretraining computes, as a flat table of dotted keys: all
    /// but the output, the backend, the loader threads, the evaluation and the analysis. A run
    /// resumes only with the same identity.
    pub fn pretraining_identity(&self) -> Result<toml::Table> {
        self.identity(&["output", "backend", "evaluation", "analysis"])
    }

    /// The settings that decide a run's results (`eval.json`): the pretraining identity plus
    /// the evaluation and the analysis.
    pub fn results_identity(&self) -> Result<toml::Table> {
        self.identity(&["output", "backend"])
    }

    fn identity(&self, skip: &[&str]) -> Result<toml::Table> {
        let full = toml::Table::try_from(self).map_err(|e| ProtocolError::Config(e.to_string()))?;
        let mut flat = toml::Table::new();
        for (k, v) in full {
            match (k.as_str(), v) {
                (key, _) if skip.contains(&key) => {}
                (section, toml::Value::Table(t)) => {
                    for (f, v) in t {
                        if !(section == "training" && f == "workers") {
                            flat.insert(format!("{section}.{f}"), v);
                        }
                    }
                }
                (key, v) => {
                    flat.insert(key.to_string(), v);
                }
            }
        }
        Ok(flat)
    }

    /// The settings of the pretraining identity that differ between `self` (then) and `now`,
    /// as `field: then, now` lines.
    pub fn identity_differences(&self, now: &RunConfig) -> Result<Vec<String>> {
        differences(self.pretraining_identity()?, now.pretraining_identity()?)
    }

    /// The settings of the results identity ([`RunConfig::results_identity`]) that differ
    /// between `self` (then) and `now`.
    pub fn results_differences(&self, now: &RunConfig) -> Result<Vec<String>> {
        differences(self.results_identity()?, now.results_identity()?)
    }

    /// The data paths (`data_dir`, `second_data_dir`, `manifest`) made absolute, so that the
    /// configuration means the same from any working directory. Paths that do not exist are
    /// left as they are (loading them reports the problem).
    pub fn absolute_paths(&mut self) {
        for p in self.data.paths_mut() {
            if let Ok(abs) = std::fs::canonicalize(&*p) {
                *p = abs;
            }
        }
    }

    /// Relative data paths taken relative to `base` (a grid or configuration file's folder).
    pub fn paths_relative_to(&mut self, base: &Path) {
        for p in self.data.paths_mut() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// `field: then, now` lines for the keys whose values differ between `a` (then) and `b` (now).
fn differences(a: toml::Table, b: toml::Table) -> Result<Vec<String>> {
    let mut out: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| {
            let now = b.get(k).map_or("unset".to_string(), |n| n.to_string());
            format!("{k}: {v} then, {now} now")
        })
        .collect();
    out.extend(
        b.iter()
            .filter(|(k, _)| !a.contains_key(*k))
            .map(|(k, v)| format!("{k}: unset then, {v} now")),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    #[test]
    fn defaults_are_the_papers() {
        let c = RunConfig::default();
        assert_eq!(c.method.to_string(), "CR-XX-CC");
        assert_eq!((c.training.epochs, c.training.batch_size), (50, 64));
        assert_eq!((c.training.lr, c.training.max_lr), (4e-4, 0.01));
        assert_eq!(c.evaluation.epochs_for(DatasetKind::TwoViewMnist), 50);
        assert_eq!(c.evaluation.epochs_for(DatasetKind::Oasis3), 500);
        assert_eq!(c.analysis.svcca_threshold, 0.99);
        c.validate(&Registry::builtin()).unwrap();
    }

    #[test]
    fn toml_and_json_round_trips_are_exact() {
        let mut c = RunConfig::default();
        c.seed = 7;
        c.method = "dccae;cca_dim=12;cca_norm=frobenius".parse().unwrap();
        c.data.train_limit = Some(1000);
        c.data.data_dir = Some(PathBuf::from("../data/mnist"));
        c.training.schedule = ScheduleKind::Constant;
        c.evaluation.epochs = Some(3);
        c.output.dir = PathBuf::from("runs/x");
        let toml = c.to_toml_string().unwrap();
        assert_eq!(RunConfig::from_toml_str(&toml).unwrap(), c, "{toml}");
        let json = c.to_json_string().unwrap();
        assert_eq!(RunConfig::from_json_str(&json).unwrap(), c, "{json}");
        let dir = tempfile::tempdir().unwrap();
        for name in ["c.toml", "c.json"] {
            let p = dir.path().join(name);
            c.save(&p).unwrap();
            assert_eq!(RunConfig::load(&p).unwrap(), c);
        }
    }

    #[test]
    fn flat_keys_of_the_flags_go_to_their_sections() {
        let c = RunConfig::from_toml_str(
            "objective = \"RR\"\nepochs = 3\ntrain-limit = 100\nseed = 7\neval_epochs = 5\n\
             out = \"r\"\nquiet = true\nbackend = \"cpu\"\n[analysis]\nenabled = false\n",
        )
        .unwrap();
        assert_eq!(c.method.to_string(), "RR");
        assert_eq!((c.training.epochs, c.seed), (3, 7));
        assert_eq!(c.data.train_limit, Some(100));
        assert_eq!(c.evaluation.epochs, Some(5));
        assert_eq!(c.output.dir, PathBuf::from("r"));
        assert!(!c.analysis.enabled);
        // A config.toml of an earlier mmssl: every baseline flag at its default, for any
        // method; non-default ones become options of the method they apply to.
        let old = RunConfig::from_toml_str(
            "dataset = \"two-view-mnist\"\nobjective = \"CR-XX-CC\"\nmethod = \"dccae\"\n\
             mmvae_k = 10\nmmvae_estimator = \"dreg\"\ncca_dim = 12\ncca_reg = 0.001\n\
             lcca_components = 64\n",
        )
        .unwrap();
        assert_eq!(old.method.to_string(), "dccae;cca_dim=12");
        let e = RunConfig::from_toml_str("objective = \"CR\"\nmmvae_k = 3\n").unwrap_err();
        assert!(
            e.to_string().contains("mmvae_k") && e.to_string().contains("mmvae"),
            "{e}"
        );
    }

    #[test]
    fn bad_files_and_values_name_the_problem() {
        for (text, needle) in [
            ("epochz = 3\n", "epochz"),
            ("[training]\nepochs = -3\n", "`training.epochs`"),
            ("[training]\nepochs = \"x\"\n", "epochs"),
            ("epochs = 2\n[training]\nepochs = 3\n", "training.epochs"),
            ("[data]\ndataset = \"imagenet\"\n", "imagenet"),
            ("method = \"XX;k\"\n", "XX;k"),
        ] {
            let e = RunConfig::from_toml_str(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[training]\nlr = true\n").unwrap();
        let e = RunConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("lr"), "{e}");
        let r = Registry::builtin();
        let check = |f: &dyn Fn(&mut RunConfig)| {
            let mut c = RunConfig::default();
            f(&mut c);
            c.validate(&r).unwrap_err().to_string()
        };
        assert!(check(&|c| c.training.lr = -1.0).contains("training.lr"));
        assert!(check(&|c| c.training.max_lr = f64::NAN).contains("training.max_lr"));
        assert!(check(&|c| c.training.batch_size = 1).contains("training.batch_size"));
        assert!(check(&|c| c.training.epochs = 0).contains("training.epochs"));
        assert!(check(&|c| c.evaluation.epochs = Some(0)).contains("evaluation.epochs"));
        assert!(check(&|c| c.analysis.svcca_threshold = 1.5).contains("svcca_threshold"));
        assert!(check(&|c| c.data.fold = 9).contains("0-8"));
        assert!(check(&|c| c.data.dataset = DatasetKind::Oasis3).contains("data.manifest"));
        assert!(check(&|c| c.data.dataset = DatasetKind::MnistSvhn).contains("data.data_dir"));
        assert!(check(&|c| c.method = "nonsense".parse().unwrap()).contains("nonsense"));
    }

    #[test]
    fn the_identity_ignores_output_backend_workers_and_evaluation() {
        let a = RunConfig::default();
        let mut b = a.clone();
        b.output.dir = PathBuf::from("elsewhere");
        b.training.workers = 0;
        b.backend = BackendKind::Wgpu;
        b.evaluation.epochs = Some(1);
        assert!(a.identity_differences(&b).unwrap().is_empty());
        b.data.train_limit = Some(672);
        b.seed = 3;
        let d = a.identity_differences(&b).unwrap();
        assert!(d.contains(&"seed: 0 then, 3 now".to_string()), "{d:?}");
        assert!(
            d.contains(&"data.train_limit: unset then, 672 now".to_string()),
            "{d:?}"
        );
    }
}
