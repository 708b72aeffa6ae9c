//! Grids of runs: methods x datasets x folds x seeds from a TOML file, run cell by cell
//! (finished cells skipped, interrupted ones resumed), aggregated into `results.csv`,
//! `results.md` and figures.
//!
//! A grid file:
//!
//! ```toml
//! methods = ["CR", "CR-XX-CC", "XX;estimator=jsd", "dccae;cca_dim=12", "lcca"]
//! datasets = ["two-view-mnist"]
//! seeds = [0, 1, 2]
//! folds = [0]
//!
//! [settings]            # a run configuration for every cell: flat flag keys or sections
//! epochs = 2
//! train_limit = 10000
//! data_dir = "../shared/data/mnist"
//! ```

use crate::aggregate::{ResultRow, aggregate};
use crate::config::{DatasetKind, RunConfig};
use crate::error::{ProtocolError, Result};
use crate::registry::Registry;
use crate::run::{Observer, Phases, run_with};
use crate::spec::MethodSpec;
use burn::tensor::Device;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A grid of runs.
#[derive(Debug, Clone)]
pub struct Grid {
    /// The methods, with their options.
    pub methods: Vec<MethodSpec>,
    /// The datasets.
    pub datasets: Vec<DatasetKind>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Validation folds.
    pub folds: Vec<usize>,
    /// The output folder, if the file names one.
    pub out: Option<PathBuf>,
    /// The configuration every cell starts from (its method, dataset, seed, fold and output
    /// folder are the cell's).
    pub base: RunConfig,
    /// The baselines' former flat keys in `[settings]` (`cca_dim = 12`): options of each
    /// cell's method where they apply.
    method_settings: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GridFile {
    methods: Vec<MethodSpec>,
    #[serde(default = "default_datasets")]
    datasets: Vec<DatasetKind>,
    #[serde(default = "default_zero")]
    seeds: Vec<u64>,
    #[serde(default = "default_zero_usize")]
    folds: Vec<usize>,
    #[serde(default)]
    out: Option<PathBuf>,
    #[serde(default)]
    settings: toml::Table,
}

fn default_datasets() -> Vec<DatasetKind> {
    vec![DatasetKind::TwoViewMnist]
}
fn default_zero() -> Vec<u64> {
    vec![0]
}
fn default_zero_usize() -> Vec<usize> {
    vec![0]
}

/// One cell of a grid.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The dataset.
    pub dataset: DatasetKind,
    /// The method as the grid file writes it.
    pub method: MethodSpec,
    /// The fold.
    pub fold: usize,
    /// The seed.
    pub seed: u64,
    /// The cell's complete run configuration (its output folder included).
    pub config: RunConfig,
}

impl Cell {
    /// `dataset method fold F seed S`, for messages.
    pub fn label(&self) -> String {
        format!(
            "{} {} fold {} seed {}",
            self.dataset, self.method, self.fold, self.seed
        )
    }
}

/// A folder name for a method (`CR:1,XX:0.5` -> `CR_1_XX_0.5`).
pub fn slug(method: &str) -> String {
    method
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Grid {
    /// Parses a grid from TOML text; every method is checked against `registry`.
    pub fn from_toml_str(text: &str, registry: &Registry) -> Result<Self> {
        let file: GridFile =
            toml::from_str(text).map_err(|e| ProtocolError::Config(e.to_string()))?;
        if file.methods.is_empty() || file.datasets.is_empty() || file.seeds.is_empty() {
            return Err(ProtocolError::Config(
                "methods, datasets and seeds must not be empty".into(),
            ));
        }
        if file.folds.is_empty() {
            return Err(ProtocolError::Config("folds must not be empty".into()));
        }
        for forbidden in [
            "out",
            "objective",
            "method",
            "dataset",
            "seed",
            "fold",
            "config",
            "output",
        ] {
            if file.settings.contains_key(forbidden) {
                return Err(ProtocolError::Config(format!(
                    "grid settings may not set `{forbidden}`: the grid itself chooses it"
                )));
            }
        }
        let mut settings = file.settings;
        let method_settings = crate::config::take_flat_method_options(&mut settings);
        let base = RunConfig::from_table(settings)
            .map_err(|e| ProtocolError::Config(format!("[settings]: {e}")))?;
        for m in &file.methods {
            registry.resolve(m)?;
        }
        Ok(Grid {
            methods: file.methods,
            datasets: file.datasets,
            seeds: file.seeds,
            folds: file.folds,
            out: file.out,
            base,
            method_settings,
        })
    }

    /// Reads and checks a grid file; errors name it.
    pub fn load(path: impl AsRef<Path>, registry: &Registry) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ProtocolError::File {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::from_toml_str(&text, registry).map_err(|e| ProtocolError::File {
            path: path.to_path_buf(),
            reason: match e {
                ProtocolError::Config(m) => m,
                other => other.to_string(),
            },
        })
    }

    /// The cells, datasets outermost, then methods, folds and seeds; each runs into
    /// `out/<dataset>/<method>/fold<f>-seed<s>`.
    pub fn cells(&self, out: &Path) -> Vec<Cell> {
        let mut cells = Vec::new();
        for &dataset in &self.datasets {
            for method in &self.methods {
                for &fold in &self.folds {
                    for &seed in &self.seeds {
                        let mut config = self.base.clone();
                        config.data.dataset = dataset;
                        config.method = method.clone();
                        // Cannot fail when not strict.
                        let _ = config.apply_flat_method_options(&self.method_settings, false);
                        config.data.fold = fold;
                        config.seed = seed;
                        config.output.dir = out
                            .join(dataset.name())
                            .join(slug(&method.to_string()))
                            .join(format!("fold{fold}-seed{seed}"));
                        cells.push(Cell {
                            dataset,
                            method: method.clone(),
                            fold,
                            seed,
                            config,
                        });
                    }
                }
            }
        }
        cells
    }

    /// Runs every unfinished cell into `out` (a cell with `eval.json` is finished; one with a
    /// checkpoint state resumes), then aggregates every finished cell into `out`. Returns the
    /// result rows.
    ///
    /// A cell that fails does not stop the grid: its error is saved as `error.txt` in its
    /// folder, the other cells go on, the finished ones are aggregated, and then
    /// [`ProtocolError::GridFailures`] names each failure (running again retries them).
    pub fn run(
        &self,
        out: &Path,
        registry: &Registry,
        device: &Device,
        aggregate_only: bool,
        observer: &mut dyn Observer,
    ) -> Result<Vec<ResultRow>> {
        let cells = self.cells(out);
        let total = cells.len();
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        for (k, cell) in cells.into_iter().enumerate() {
            let dir = cell.config.output.dir.clone();
            let finished = dir.join("eval.json");
            if !finished.exists() {
                if aggregate_only {
                    continue;
                }
                let mut config = cell.config.clone();
                config.output.resume = dir.join("checkpoints").join("state.json").exists();
                observer.note(&format!(
                    "[{}/{total}] {} -> {}",
                    k + 1,
                    cell.label(),
                    dir.display()
                ));
                if let Err(e) = run_with(&config, registry, Phases::ALL, device, observer) {
                    observer.note(&format!("[{}/{total}] {} failed: {e}", k + 1, cell.label()));
                    let _ = std::fs::create_dir_all(&dir);
                    let _ = std::fs::write(dir.join("error.txt"), format!("{e}\n"));
                    failures.push(format!("{}: {e}", cell.label()));
                    continue;
                }
                let _ = std::fs::remove_file(dir.join("error.txt"));
            }
            // Always from the file, so a rerun aggregates exactly the same numbers.
            let text = std::fs::read_to_string(&finished)
                .map_err(|e| ProtocolError::read(&finished, e))?;
            let eval: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ProtocolError::read(&finished, e))?;
            rows.extend(ResultRow::of_eval(
                &eval,
                cell.dataset.name(),
                &cell.method.to_string(),
                cell.fold,
                cell.seed,
            ));
        }
        aggregate(&rows, out)?;
        if !failures.is_empty() {
            return Err(ProtocolError::GridFailures {
                failures,
                total,
                out: out.to_path_buf(),
            });
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_are_checked_and_expand_to_cells() {
        let r = Registry::builtin();
        let e = Grid::from_toml_str("methods = [\"CR-XX\", \"nonsense\"]\n", &r)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nonsense"), "{e}");
        assert!(Grid::from_toml_str("methods = []\n", &r).is_err());
        let e = Grid::from_toml_str("methods = [\"CR\"]\nmodels = [1]\n", &r).unwrap_err();
        assert!(e.to_string().contains("models"), "{e}");
        let e = Grid::from_toml_str("methods = [\"CR\"]\n[settings]\nseed = 3\n", &r).unwrap_err();
        assert!(e.to_string().contains("seed"), "{e}");
        let e =
            Grid::from_toml_str("methods = [\"CR\"]\n[settings]\nepochz = 3\n", &r).unwrap_err();
        assert!(e.to_string().contains("epochz"), "{e}");
        let e = Grid::from_toml_str("methods = [\"XX;temperature=2\"]\n", &r).unwrap_err();
        assert!(e.to_string().contains("temperature"), "{e}");
        let g = Grid::from_toml_str(
            "methods = [\"CR\", \"mmvae;k=2\", \"XX;critic=cosine(0.1)\"]\nseeds = [7, 8]\n\
             folds = [1]\n[settings]\nepochs = 3\n[settings.evaluation]\nepochs = 4\n",
            &r,
        )
        .unwrap();
        let cells = g.cells(Path::new("EXP"));
        assert_eq!(cells.len(), 6);
        let c = &cells[3];
        assert_eq!(c.config.method.to_string(), "mmvae;k=2");
        assert_eq!((c.config.seed, c.config.data.fold), (8, 1));
        assert_eq!(
            (c.config.training.epochs, c.config.evaluation.epochs),
            (3, Some(4))
        );
        assert_eq!(
            c.config.output.dir,
            Path::new("EXP/two-view-mnist/mmvae_k_2/fold1-seed8")
        );
        assert_eq!(
            cells[5].config.output.dir,
            Path::new("EXP/two-view-mnist/XX_critic_cosine_0.1_/fold1-seed8")
        );
        assert_eq!(slug("CR:1,XX:0.5"), "CR_1_XX_0.5");
    }
}
