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
//! # augment = "paired"          # oasis3 only: paired, separate or none
//!
//! [training]
//! epochs = 50
//! batch_size = 64
//! lr = 0.0004
//! max_lr = 0.01
//! schedule = "one-cycle"
//! workers = 2
//! # init_from = "runs/imported" # start from these weights (a run folder or a .bpk)
//!
//! [evaluation]
//! bn_train_mode = false          # epochs: 50 for images, 500 for volumes when absent
//! # knn_k = 20                   # absent: 20 (fewer on a smaller set); 0: no k-NN
//! knn_metric = "cosine"          # or "euclidean"
//! knn_voting = "majority"        # or "distance", "temperature"
//! knn_temperature = 0.07
//! retrieval = true               # cross-modal retrieval, in z and the canonical subspace
//! retrieval_cca_dims = 10
//! online_every = 0               # online evaluation every N epochs while pretraining (0: off)
//! online_items = 1000
//! online_probe_epochs = 10
//!
//! [analysis]
//! enabled = true
//! svcca_threshold = 0.99
//! maps = false                   # t-SNE maps of the test representations, maps/
//! map_points = 1000
//! map_perplexity = 30.0
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
use std::path::Path;

mod flat;
mod sections;
mod setting;
#[cfg(test)]
mod tests;

pub(crate) use flat::take_flat_method_options;
use flat::{FLAT_IGNORED, FLAT_KEYS, FLAT_METHOD_OPTIONS, field_error, scalar_text};
pub use sections::*;

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

    /// A configuration from JSON text, nested (as [`RunConfig::to_json_string`] writes) or
    /// flat: the same keys and rules as TOML ([`RunConfig::from_table`]; a `null` is an absent
    /// value).
    pub fn from_json_str(text: &str) -> Result<Self> {
        fn without_nulls(v: serde_json::Value) -> serde_json::Value {
            match v {
                serde_json::Value::Object(map) => serde_json::Value::Object(
                    map.into_iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k, without_nulls(v)))
                        .collect(),
                ),
                serde_json::Value::Array(items) => {
                    serde_json::Value::Array(items.into_iter().map(without_nulls).collect())
                }
                other => other,
            }
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ProtocolError::Config(e.to_string()))?;
        if !value.is_object() {
            return Err(ProtocolError::Config(
                "a configuration is a JSON object (`{...}`)".into(),
            ));
        }
        let table: toml::Table = serde::Deserialize::deserialize(without_nulls(value))
            .map_err(|e: serde_json::Error| ProtocolError::Config(e.to_string()))?;
        Self::from_table(table)
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
        let text = mmssl_data::files::read_text(path).map_err(|e| ProtocolError::File {
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
        crate::folder::write_atomic(path, &text)
    }

    /// Checks every setting (and the method against `registry`), with an error naming the
    /// setting and its value; several wrong settings are reported at once
    /// ([`ProtocolError::Settings`]).
    pub fn validate(&self, registry: &crate::Registry) -> Result<()> {
        let mut problems = Vec::new();
        let t = &self.training;
        for (field, v) in [("training.lr", t.lr), ("training.max_lr", t.max_lr)] {
            if !(v.is_finite() && v > 0.0) {
                problems.push(ProtocolError::setting(
                    field,
                    v,
                    "a learning rate must be a positive number",
                ));
            }
        }
        if t.epochs == 0 {
            problems.push(ProtocolError::setting(
                "training.epochs",
                0,
                "at least 1 epoch (every run also evaluates the random initialisation, as its \
                 reference)",
            ));
        }
        if t.batch_size < 2 {
            problems.push(ProtocolError::setting(
                "training.batch_size",
                t.batch_size,
                "contrastive and CCA losses need at least 2 items in a batch",
            ));
        }
        if self.evaluation.epochs == Some(0) {
            problems.push(ProtocolError::setting(
                "evaluation.epochs",
                0,
                "linear evaluation needs at least 1 epoch",
            ));
        }
        let e = &self.evaluation;
        let t = e.knn_temperature;
        if e.knn_k != Some(0) && e.knn_voting == Voting::Temperature && !(t.is_finite() && t > 0.0)
        {
            problems.push(ProtocolError::setting(
                "evaluation.knn_temperature",
                t,
                "the temperature of weighted voting must be a positive number",
            ));
        }
        if e.online_every > 0 && (e.online_items < 2 || e.online_probe_epochs == 0) {
            problems.push(ProtocolError::setting(
                "evaluation.online_items",
                e.online_items,
                "the online evaluation needs at least 2 items and 1 probe epoch \
                 (online_probe_epochs)",
            ));
        }
        if e.retrieval && e.retrieval_cca_dims == 0 {
            problems.push(ProtocolError::setting(
                "evaluation.retrieval_cca_dims",
                0,
                "the canonical subspace needs at least 1 dimension",
            ));
        }
        let a = &self.analysis;
        if a.maps && a.map_points < 25 {
            problems.push(ProtocolError::setting(
                "analysis.map_points",
                a.map_points,
                "a map needs at least 25 points (its trustworthiness takes 10 neighbours of \
                 each, fewer than half the points)",
            ));
        }
        if a.maps && !(a.map_perplexity.is_finite() && a.map_perplexity > 0.0) {
            problems.push(ProtocolError::setting(
                "analysis.map_perplexity",
                a.map_perplexity,
                "a positive number",
            ));
        }
        let s = self.analysis.svcca_threshold;
        if !(s > 0.0 && s <= 1.0) {
            problems.push(ProtocolError::setting(
                "analysis.svcca_threshold",
                s,
                "a fraction of variance in (0, 1]",
            ));
        }
        if self.data.augment != AugmentKind::Paired && self.data.dataset != DatasetKind::Oasis3 {
            problems.push(ProtocolError::setting(
                "data.augment",
                self.data.augment,
                format!(
                    "only cohort (oasis3) pretraining is augmented; {} has no augmentation to \
                     change",
                    self.data.dataset
                ),
            ));
        }
        if self.data.train_limit == Some(0) {
            problems.push(ProtocolError::setting(
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
            problems.push(ProtocolError::setting(
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
                problems.push(missing(
                    "data.data_dir",
                    &format!(
                        "(--data-dir DIR) the folder with the MNIST IDX files (train and t10k); \
                         {second} come from data.second_data_dir (--second-data-dir)"
                    ),
                ));
            }
            DatasetKind::Oasis3 if self.data.manifest.is_none() => {
                problems.push(missing(
                    "data.manifest",
                    "(--manifest FILE) a CSV with columns subject, session, t1, falff, label \
                     (HC, AD, other or empty); `mmssl data synth-cohort --out DIR` writes a \
                     synthetic cohort and its manifest",
                ));
            }
            _ => {}
        }
        if let Err(e) = registry.resolve(&self.method) {
            problems.push(e);
        }
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ProtocolError::Settings { problems }),
        }
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

    /// What a run's checkpoints keep of the configuration that started it (its pretraining
    /// identity, as JSON; [`mmssl_train::Checkpoints::with_record`]).
    pub fn checkpoint_record(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self.pretraining_identity()?)
            .map_err(|e| ProtocolError::Config(e.to_string()))
    }

    /// The settings of the pretraining identity that differ between a checkpoint's `record`
    /// ([`RunConfig::checkpoint_record`], then) and `self` (now).
    pub fn checkpoint_differences(&self, record: serde_json::Value) -> Result<Vec<String>> {
        let then: toml::Table =
            serde_json::from_value(record).map_err(|e| ProtocolError::Config(e.to_string()))?;
        differences(then, self.pretraining_identity()?)
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
        let init = self.training.init_from.as_mut();
        for p in self.data.paths_mut().chain(init) {
            if let Ok(abs) = std::fs::canonicalize(&*p) {
                *p = abs;
            }
        }
    }

    /// Relative data paths taken relative to `base` (a grid or configuration file's folder).
    pub fn paths_relative_to(&mut self, base: &Path) {
        let init = self.training.init_from.as_mut();
        for p in self.data.paths_mut().chain(init) {
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
