//! The attribution maps behind `mmssl explain` (see [`crate::explain`], the public entry):
//! targets, attributions per item, group maps, figures and the report.

use crate::config::DatasetKind;
use crate::error::{ProtocolError, Result};
use burn::tensor::Device;
use mmssl_data::Cluster;
use mmssl_train::Attribution;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

mod compute;
mod figures;
mod maps;
mod output;
#[cfg(test)]
mod tests;

pub(crate) use compute::{Encoders, Explainer};

/// What is attributed to the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ExplainTarget {
    /// The leading `components` canonical components between the modalities' representations
    /// (fitted on the labelled training set): one set of maps per component.
    Shared {
        /// How many components (1 to 16).
        components: usize,
    },
    /// One unit of the representation.
    Unit {
        /// Its index.
        unit: usize,
    },
    /// The linear classifier's decision (see the module documentation).
    Decision,
}

impl ExplainTarget {
    /// The names of the targets' maps: `shared-1`, ..., `unit-5`, `decision`.
    pub fn names(&self) -> Vec<String> {
        match *self {
            ExplainTarget::Shared { components } => {
                (1..=components).map(|c| format!("shared-{c}")).collect()
            }
            ExplainTarget::Unit { unit } => vec![format!("unit-{unit}")],
            ExplainTarget::Decision => vec!["decision".into()],
        }
    }
}

/// Which items are explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExplainSet {
    /// The test set (OASIS-3: one labelled session per hold-out subject).
    #[default]
    Test,
    /// The linear evaluation's validation set.
    Valid,
    /// The linear evaluation's training set (each item once, also where it is repeated for
    /// class balance).
    Train,
    /// All three (each item once).
    All,
}

impl std::str::FromStr for ExplainSet {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "test" => Ok(ExplainSet::Test),
            "valid" | "validation" => Ok(ExplainSet::Valid),
            "train" => Ok(ExplainSet::Train),
            "all" => Ok(ExplainSet::All),
            other => Err(ProtocolError::InvalidSetting {
                field: "explain.set".into(),
                value: other.into(),
                reason: "one of test, valid, train, all".into(),
            }),
        }
    }
}

/// Settings of [`explain`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainConfig {
    /// What is attributed (default: the first shared component).
    pub target: ExplainTarget,
    /// How (default: integrated gradients with 32 steps).
    pub attribution: Attribution,
    /// Which items (default: the test set).
    pub set: ExplainSet,
    /// Take each item's map in absolute value before averaging and comparing (where the input
    /// matters, whichever the direction); default false (signed maps).
    pub magnitude: bool,
    /// Volumes: the full width at half maximum (mm) of the Gaussian each item's map is
    /// smoothed with on the common grid before the class means and the tests, as voxel-based
    /// group analyses do (default 8; 0: none). Item maps are written unsmoothed; images are
    /// never smoothed.
    pub smoothing_mm: f64,
    /// Also explain the same model at its random initialisation (same seed), into
    /// `random-init/`: the reference that shows what training added.
    pub reference: bool,
    /// Write each item's map (volumes: `items/<name>.nii.gz`; default true).
    pub per_item: bool,
    /// Explain only the first `limit` items of the set (default: all).
    pub limit: Option<usize>,
    /// Items per attribution batch (default 4).
    pub batch_size: usize,
    /// A volume to draw the figures over (resampled onto the common grid); default: the mean
    /// of the explained items' first modality.
    pub template: Option<PathBuf>,
    /// `|t|` from which voxels form clusters (default 3).
    pub cluster_threshold: f32,
    /// Clusters of fewer voxels are left out (default 5).
    pub cluster_min_voxels: usize,
    /// Clusters listed per map, strongest first (default 10).
    pub max_clusters: usize,
    /// The output folder (default `RUN/explain`).
    pub out: Option<PathBuf>,
    /// Replace an earlier explanation in the output folder.
    pub overwrite: bool,
    /// The atlas that names each cluster's region (volumes in MNI space).
    #[serde(default)]
    pub atlas: AtlasSetting,
}

/// Where cluster reports take region names from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AtlasSetting {
    /// The AAL atlas of Debian's `mricron-data` where it is installed
    /// ([`mmssl_data::DEBIAN_AAL`]), else coordinates only.
    #[default]
    Auto,
    /// Coordinates only.
    None,
    /// A label volume in the maps' template space and its names file
    /// ([`mmssl_data::Atlas::read`]).
    File {
        /// The label volume.
        image: PathBuf,
        /// The names, `index name` per line.
        labels: PathBuf,
    },
}

impl Default for ExplainConfig {
    fn default() -> Self {
        ExplainConfig {
            target: ExplainTarget::Shared { components: 1 },
            attribution: Attribution::IntegratedGradients { steps: 32 },
            set: ExplainSet::Test,
            magnitude: false,
            smoothing_mm: 8.0,
            reference: false,
            per_item: true,
            limit: None,
            batch_size: 4,
            template: None,
            cluster_threshold: 3.0,
            cluster_min_voxels: 5,
            max_clusters: 10,
            out: None,
            overwrite: false,
            atlas: AtlasSetting::Auto,
        }
    }
}

impl ExplainConfig {
    /// Refuses settings out of range, naming them.
    pub fn check(&self) -> Result<()> {
        let bad = |field: &str, value: String, reason: &str| {
            Err(ProtocolError::InvalidSetting {
                field: format!("explain.{field}"),
                value,
                reason: reason.into(),
            })
        };
        if let ExplainTarget::Shared { components } = self.target
            && !(1..=16).contains(&components)
        {
            return bad(
                "components",
                components.to_string(),
                "between 1 and 16 canonical components",
            );
        }
        if !(self.smoothing_mm.is_finite() && self.smoothing_mm >= 0.0) {
            return bad(
                "smoothing_mm",
                self.smoothing_mm.to_string(),
                "a non-negative FWHM in millimetres",
            );
        }
        if self.limit == Some(0) {
            return bad("limit", "0".into(), "at least one item");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0".into(), "at least one item per batch");
        }
        if !(self.cluster_threshold.is_finite() && self.cluster_threshold > 0.0) {
            return bad(
                "cluster_threshold",
                self.cluster_threshold.to_string(),
                "a positive |t|",
            );
        }
        self.attribution.check()?;
        Ok(())
    }
}

/// One map of a class contrast: its file and its strongest clusters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contrast {
    /// `AD-vs-HC` (two classes: the second against the first), `3-vs-rest` (more classes).
    pub name: String,
    /// Items in the first and in the second group.
    pub sizes: [usize; 2],
    /// Welch's t map (NIfTI for volumes, PNG for images). Per voxel, t does not change when
    /// the attributions are scaled, so for a model that is nearly linear at a voxel it shows
    /// where the inputs differ between the groups more than how much the model uses them.
    pub file: PathBuf,
    /// The difference of the group means (first minus second; NIfTI for volumes), in the
    /// attributions' units: weighted by how much the model uses each voxel.
    pub difference_file: PathBuf,
    /// The largest `|t|` inside the mask.
    pub max_abs_t: f32,
    /// The strongest clusters beyond the threshold (volumes: peaks in millimetres; images:
    /// `[column, row, 0]` in pixels).
    pub clusters: Vec<Cluster>,
}

/// The maps of one target and modality.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetMaps {
    /// The target's name (`shared-1`, `unit-5`, `decision`).
    pub target: String,
    /// The modality.
    pub modality: usize,
    /// Its name (`t1`, `falff`, `view-0`).
    pub modality_name: String,
    /// The folder of its files.
    pub folder: PathBuf,
    /// Class-mean maps, per class with at least one item.
    pub class_means: Vec<(String, PathBuf)>,
    /// The contrasts between classes.
    pub contrasts: Vec<Contrast>,
    /// The figure.
    pub figure: Option<PathBuf>,
    /// Contrasts not computed, and why (a group of fewer than two items).
    pub skipped: Vec<String>,
}

/// The maps of one model (the pretrained one, or its random initialisation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelMaps {
    /// `pretrained` or `random-init`.
    pub model: String,
    /// The canonical correlations of the shared target's components on the fitting set.
    pub canonical_correlations: Option<Vec<f64>>,
    /// The decision target's classifier accuracy on the test set, per modality (the same as
    /// the run's linear evaluation when the classifier is the same).
    pub classifier_accuracy: Option<Vec<f64>>,
    /// Per target and modality.
    pub maps: Vec<TargetMaps>,
    /// `items.csv`: per item its name, class, and per target and modality the target's
    /// value, its value at the all-zero input and the sum of the attributions (for integrated
    /// gradients the sum approximates the difference of the two: completeness).
    pub items_file: PathBuf,
}

/// What `explain.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExplainReport {
    /// The run folder.
    pub run: PathBuf,
    /// The output folder.
    pub out: PathBuf,
    /// The run's method.
    pub method: String,
    /// Its dataset.
    pub dataset: DatasetKind,
    /// The settings.
    pub config: ExplainConfig,
    /// Items explained.
    pub items: usize,
    /// Items per class.
    pub classes: Vec<(String, usize)>,
    /// The common grid's mask (volumes).
    pub mask: Option<PathBuf>,
    /// The figures' underlay (volumes).
    pub template: Option<PathBuf>,
    /// The atlas whose regions name the clusters, if one was used.
    #[serde(default)]
    pub atlas: Option<PathBuf>,
    /// Per model.
    pub models: Vec<ModelMaps>,
    /// What may not be what was meant.
    pub warnings: Vec<String>,
    /// Seconds it took.
    pub seconds: f64,
}

impl ExplainReport {
    /// Every path of the report, mutably.
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut out: Vec<&mut PathBuf> = vec![&mut self.out];
        out.extend(self.mask.as_mut());
        out.extend(self.template.as_mut());
        for m in &mut self.models {
            out.push(&mut m.items_file);
            for t in &mut m.maps {
                out.push(&mut t.folder);
                out.extend(t.figure.as_mut());
                out.extend(t.class_means.iter_mut().map(|(_, p)| p));
                for c in &mut t.contrasts {
                    out.push(&mut c.file);
                    out.push(&mut c.difference_file);
                }
            }
        }
        out
    }

    /// The report as `explain.json` stores it: `run` absolute, every other path relative to
    /// the run folder (absolute where it lies outside, with `--out` elsewhere), so the folder
    /// can be read from anywhere and moved whole.
    pub fn relative_to_run(&self) -> ExplainReport {
        let mut r = self.clone();
        let run = std::path::absolute(&self.run).unwrap_or_else(|_| self.run.clone());
        r.run = run.clone();
        for p in r.paths_mut() {
            let abs = std::path::absolute(&*p).unwrap_or_else(|_| p.clone());
            *p = match abs.strip_prefix(&run) {
                Ok(rel) => rel.to_path_buf(),
                Err(_) => abs,
            };
        }
        r
    }

    /// Reads an `explain.json`, its relative paths resolved against the run folder: the
    /// folder holding `explain.json` less the components of its `out` (so a run folder that
    /// was moved or copied still resolves), else its `run`.
    pub fn read(path: &Path) -> Result<ExplainReport> {
        let text = mmssl_data::files::read_text(path).map_err(|e| ProtocolError::read(path, e))?;
        let mut r: ExplainReport = serde_json::from_str(&text)
            .map_err(|e| ProtocolError::file(path, format!("not an explain.json: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let run = if r.out.is_relative() {
            let mut base = dir.clone();
            for _ in r.out.components() {
                base.pop();
            }
            if base.join(&r.out) == dir {
                base
            } else {
                r.run.clone()
            }
        } else {
            r.run.clone()
        };
        r.run = run.clone();
        for p in r.paths_mut() {
            if p.is_relative() {
                *p = run.join(&*p);
            }
        }
        Ok(r)
    }

    /// A few lines for the terminal: the files and the strongest peak of each contrast.
    pub fn summary(&self) -> String {
        let counts: Vec<String> = self
            .classes
            .iter()
            .map(|(c, n)| format!("{n} {c}"))
            .collect();
        let mut s = format!(
            "{} on {:?}: {} items explained ({}) in {:.0} s\n",
            self.method,
            self.dataset,
            self.items,
            counts.join(", "),
            self.seconds
        );
        for m in &self.models {
            if let Some(r) = &m.canonical_correlations {
                let r: Vec<String> = r.iter().map(|v| format!("{v:.3}")).collect();
                s += &format!("{}: canonical correlations {}\n", m.model, r.join(", "));
            }
            if let Some(a) = &m.classifier_accuracy {
                let a: Vec<String> = a.iter().map(|v| format!("{v:.4}")).collect();
                s += &format!("{}: classifier test accuracy {}\n", m.model, a.join(", "));
            }
            for t in &m.maps {
                for why in &t.skipped {
                    s += &format!(
                        "{} {} {}: not compared: {why}\n",
                        m.model, t.target, t.modality_name
                    );
                }
                for c in &t.contrasts {
                    let peak = c.clusters.first().map_or("no cluster".to_string(), |k| {
                        format!(
                            "peak t = {:.2} at [{:.0}, {:.0}, {:.0}]{} ({} voxels)",
                            k.peak,
                            k.peak_mm[0],
                            k.peak_mm[1],
                            k.peak_mm[2],
                            k.region
                                .as_ref()
                                .map(|r| format!(" {r}"))
                                .unwrap_or_default(),
                            k.voxels
                        )
                    });
                    s += &format!(
                        "{} {} {} {}: max |t| {:.2}, {} clusters; {peak}\n",
                        m.model,
                        t.target,
                        t.modality_name,
                        c.name,
                        c.max_abs_t,
                        c.clusters.len()
                    );
                }
            }
        }
        for w in &self.warnings {
            s += &format!("note: {w}\n");
        }
        s += &format!("maps in {}\n", self.out.display());
        s
    }
}

/// The modality names of a dataset, for folders and messages.
pub(crate) fn modality_names(kind: DatasetKind) -> [&'static str; 2] {
    match kind {
        DatasetKind::Oasis3 => ["t1", "falff"],
        DatasetKind::TwoViewMnist => ["rotated", "noisy"],
        DatasetKind::MnistFashion => ["mnist", "fashion"],
        DatasetKind::MnistSvhn => ["mnist", "svhn"],
    }
}

/// The class names of a dataset (OASIS-3: HC, AD; else the class number).
pub(crate) fn class_names(kind: DatasetKind, classes: usize) -> Vec<String> {
    match kind {
        DatasetKind::Oasis3 => vec!["HC".into(), "AD".into()],
        _ => (0..classes).map(|c| c.to_string()).collect(),
    }
}

/// An empty output folder: made when missing; an earlier explanation (it has `explain.json`)
/// is removed with `overwrite`; anything else is refused.
pub(crate) fn prepare_out(out: &Path, overwrite: bool) -> Result<()> {
    let entries: Vec<String> = match std::fs::read_dir(out) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ProtocolError::read(out, e)),
    };
    if !entries.is_empty() {
        let ours = entries.iter().any(|e| e == "explain.json");
        if !ours {
            return Err(ProtocolError::NotEmpty {
                dir: out.to_path_buf(),
                entries,
                foreign: true,
            });
        }
        if !overwrite {
            // `explain` has no `--resume`: the way on is to replace it, or to write elsewhere.
            return Err(ProtocolError::ExplanationExists {
                dir: out.to_path_buf(),
            });
        }
        std::fs::remove_dir_all(out).map_err(|e| ProtocolError::write(out, e))?;
    }
    std::fs::create_dir_all(out).map_err(|e| ProtocolError::write(out, e))
}
