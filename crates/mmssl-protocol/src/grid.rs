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
//!
//! [slurm]               # optional: what each cell asks a Slurm cluster for
//! partition = "gpu"
//! gpus = 1
//! time = "04:00:00"
//! ```

use crate::aggregate::{ResultRow, aggregate};
use crate::config::{DatasetKind, RunConfig};
use crate::error::{ProtocolError, Result};
use crate::folder::write_atomic;
use crate::folder::{FolderLock, aside_name};
use crate::records::{CELLS_FILE, CellRecord, SlurmResources};
use crate::registry::Registry;
use crate::run::{Observer, Phases, run_with, saved_config};
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
    /// What each cell asks a Slurm cluster for (the file's `[slurm]` section), used by
    /// [`Grid::submit_slurm`]; a local run ignores it.
    pub slurm: SlurmResources,
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
    #[serde(default)]
    slurm: SlurmResources,
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
    /// A grid of `methods` in code, each cell starting from `base`: one dataset, seed and fold
    /// (`base`'s) until [`Grid::with_datasets`], [`Grid::with_seeds`] or [`Grid::with_folds`]
    /// say more; the output folder is [`Grid::run`]'s. Methods are checked when the grid runs.
    pub fn new(methods: Vec<MethodSpec>, base: RunConfig) -> Grid {
        Grid {
            methods,
            datasets: vec![base.data.dataset],
            seeds: vec![base.seed],
            folds: vec![base.data.fold],
            out: None,
            base,
            slurm: SlurmResources::default(),
            method_settings: Vec::new(),
        }
    }

    /// The same grid over `datasets`.
    pub fn with_datasets(mut self, datasets: Vec<DatasetKind>) -> Grid {
        self.datasets = datasets;
        self
    }

    /// The same grid over `seeds`.
    pub fn with_seeds(mut self, seeds: Vec<u64>) -> Grid {
        self.seeds = seeds;
        self
    }

    /// The same grid over validation `folds`.
    pub fn with_folds(mut self, folds: Vec<usize>) -> Grid {
        self.folds = folds;
        self
    }

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
        // Each method in its canonical spelling, once: `XX`, `xx` and `XX:1` are one method.
        let mut methods: Vec<MethodSpec> = Vec::new();
        for m in &file.methods {
            let canonical = registry.resolve(m)?.spec().clone();
            if let Some(i) = methods.iter().position(|c| *c == canonical) {
                return Err(ProtocolError::Config(format!(
                    "methods `{}` and `{m}` are the same method ({canonical}): list it once",
                    file.methods[i]
                )));
            }
            methods.push(canonical);
        }
        fn once<T: PartialEq + std::fmt::Display>(what: &str, v: &[T]) -> Result<()> {
            for (i, x) in v.iter().enumerate() {
                if v[..i].contains(x) {
                    return Err(ProtocolError::Config(format!(
                        "{what} lists {x} twice: each cell would run and be counted twice"
                    )));
                }
            }
            Ok(())
        }
        once("seeds", &file.seeds)?;
        once("folds", &file.folds)?;
        once("datasets", &file.datasets)?;
        file.slurm.check()?;
        Ok(Grid {
            methods,
            datasets: file.datasets,
            seeds: file.seeds,
            folds: file.folds,
            out: file.out,
            base,
            slurm: file.slurm,
            method_settings,
        })
    }

    /// Reads and checks a grid file; errors name it.
    pub fn load(path: impl AsRef<Path>, registry: &Registry) -> Result<Self> {
        let path = path.as_ref();
        let text = mmssl_data::files::read_text(path).map_err(|e| ProtocolError::File {
            path: path.to_path_buf(),
            reason: format!("cannot read it: {e}"),
        })?;
        let mut grid = Self::from_toml_str(&text, registry).map_err(|e| ProtocolError::File {
            path: path.to_path_buf(),
            reason: match e {
                ProtocolError::Config(m) => m,
                other => other.to_string(),
            },
        })?;
        // Relative paths in a grid file are relative to the file, wherever it is run from.
        let base = path.parent().unwrap_or(Path::new("."));
        grid.base.paths_relative_to(base);
        if let Some(out) = grid.out.as_mut()
            && out.is_relative()
        {
            *out = base.join(&*out);
        }
        Ok(grid)
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

    /// Runs every unfinished cell into `out`, then aggregates every finished cell into `out`.
    /// Returns the result rows.
    ///
    /// - A cell with `eval.json` made with the same settings is finished and skipped (a note
    ///   says so); one with a checkpoint state resumes; one with neither (a failed attempt)
    ///   starts again.
    /// - A cell whose folder holds a run made with other settings is never reused: the grid is
    ///   refused before anything runs ([`ProtocolError::GridConflicts`], the differences named
    ///   per cell), or with [`GridOptions::rerun_changed`] such folders are moved aside
    ///   (`NAME.replaced-<time>`) and run again.
    /// - A cell that fails does not stop the grid: its error is saved as `error.txt` in its
    ///   folder, the other cells go on, the finished ones are aggregated, and then
    ///   [`ProtocolError::GridFailures`] names each failure (running again retries them).
    /// - A cell stopped on request ([`ProtocolError::is_interrupted`]: Ctrl-C, SIGTERM) stops
    ///   the grid with that error; running the grid again resumes the cell.
    /// - The experiment folder is locked while the grid runs.
    pub fn run(
        &self,
        out: &Path,
        registry: &Registry,
        device: &Device,
        options: GridOptions,
        observer: &mut dyn Observer,
    ) -> Result<Vec<ResultRow>> {
        let _lock = FolderLock::acquire(out)?;
        let cells = self.checked_cells(out, registry, options, observer)?;
        let total = cells.len();
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        let mut skipped = 0;
        for (k, cell) in cells.into_iter().enumerate() {
            let dir = cell.config.output.dir.clone();
            let finished = dir.join("eval.json");
            if finished.exists() {
                skipped += 1;
                observer.note(&format!(
                    "[{}/{total}] {}: finished, skipped ({})",
                    k + 1,
                    cell.label(),
                    dir.display()
                ));
            } else {
                if options.aggregate_only {
                    continue;
                }
                observer.note(&format!(
                    "[{}/{total}] {} -> {}",
                    k + 1,
                    cell.label(),
                    dir.display()
                ));
                if let Err(e) = run_cell_config(&cell, registry, device, observer) {
                    if e.is_interrupted() {
                        // Asked to stop (Ctrl-C, SIGTERM): not a failure, and no further cell.
                        return Err(e);
                    }
                    observer.note(&format!("[{}/{total}] {} failed: {e}", k + 1, cell.label()));
                    failures.push(format!("{}: {e}", cell.label()));
                    continue;
                }
            }
            // Always from the file, so a rerun aggregates exactly the same numbers.
            rows.extend(finished_rows(&cell)?);
        }
        if skipped > 0 {
            observer.note(&format!(
                "{skipped} of {total} cells were finished already and are reused"
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

    /// Runs cell `index` (in the order of [`Grid::cells`]) into its folder under `out`, as
    /// [`Grid::run`] runs each cell: resumed from its checkpoint if it has one, started again
    /// otherwise, skipped if finished; a failure is written to `error.txt` in its folder. The
    /// experiment folder is not locked (tasks of one grid run side by side: each run folder
    /// has its own lock). What a job-array task of [`Grid::submit_slurm`] runs.
    pub fn run_cell(
        &self,
        out: &Path,
        index: usize,
        registry: &Registry,
        device: &Device,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let cells = self.cells(out);
        let total = cells.len();
        let cell = cells
            .into_iter()
            .nth(index)
            .ok_or(ProtocolError::NoCell { index, total })?;
        if cell.config.output.dir.join("eval.json").exists() {
            observer.note(&format!("{}: finished, skipped", cell.label()));
            return Ok(());
        }
        run_cell_config(&cell, registry, device, observer)
    }

    /// The cells, after refusing folders made with other settings or, with
    /// [`GridOptions::rerun_changed`], moving them aside.
    pub(crate) fn checked_cells(
        &self,
        out: &Path,
        registry: &Registry,
        options: GridOptions,
        observer: &mut dyn Observer,
    ) -> Result<Vec<Cell>> {
        let cells = self.cells(out);
        check_experiment_folder(out)?;
        record_cells(out, &cells)?;
        // Folders made with other settings, found before anything runs.
        let mut conflicts = Vec::new();
        for cell in &cells {
            let dir = &cell.config.output.dir;
            if !dir.join("config.toml").exists() {
                continue;
            }
            let saved = saved_config(dir, registry)?;
            let mut now = cell.config.clone();
            now.absolute_paths();
            let differences = saved.results_differences(&now)?;
            if !differences.is_empty() {
                conflicts.push((dir.clone(), differences));
            }
        }
        if !conflicts.is_empty() {
            if !options.rerun_changed {
                return Err(ProtocolError::GridConflicts {
                    cells: conflicts
                        .iter()
                        .map(|(d, diff)| format!("{}: {}", d.display(), diff.join("; ")))
                        .collect(),
                });
            }
            if !options.aggregate_only {
                for (dir, _) in &conflicts {
                    let aside = aside_name(dir);
                    std::fs::rename(dir, &aside).map_err(|e| ProtocolError::write(dir, e))?;
                    observer.note(&format!(
                        "{} was run with other settings: moved to {}",
                        dir.display(),
                        aside.display()
                    ));
                }
            }
        }
        Ok(cells)
    }
}

/// Runs an unfinished cell: resumed from its checkpoint if it has one, started again
/// otherwise (a failed attempt without a checkpoint); a failure is also written to
/// `error.txt` in the cell's folder, and removed by a later success. A run stopped on request
/// ([`ProtocolError::is_interrupted`]) is not a failure and writes nothing.
fn run_cell_config(
    cell: &Cell,
    registry: &Registry,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<()> {
    let dir = &cell.config.output.dir;
    let mut config = cell.config.clone();
    config.output.resume = dir.join("checkpoints").join("state.json").exists();
    config.output.overwrite = !config.output.resume;
    match run_with(&config, registry, Phases::ALL, device, observer) {
        Ok(_) => {
            let _ = std::fs::remove_file(dir.join("error.txt"));
            Ok(())
        }
        Err(e) if e.is_interrupted() => Err(e),
        Err(e) => {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(dir.join("error.txt"), format!("{e}\n"));
            Err(e)
        }
    }
}

/// The result rows of a finished cell, read from its `eval.json`.
pub(crate) fn finished_rows(cell: &Cell) -> Result<Vec<ResultRow>> {
    let finished = cell.config.output.dir.join("eval.json");
    let text = std::fs::read_to_string(&finished).map_err(|e| ProtocolError::read(&finished, e))?;
    let eval: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ProtocolError::read(&finished, e))?;
    Ok(ResultRow::of_eval(
        &eval,
        cell.dataset.name(),
        &cell.method.to_string(),
        cell.fold,
        cell.seed,
    ))
}

/// How [`Grid::run`] treats the experiment folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GridOptions {
    /// Only aggregate the finished cells (no training).
    pub aggregate_only: bool,
    /// Move aside and run again the cells whose folders were made with other settings
    /// (without it the grid is refused, naming them).
    pub rerun_changed: bool,
}

/// The records of `cells`, in order (`cells.json`).
pub(crate) fn cell_records(cells: &[Cell]) -> Vec<CellRecord> {
    cells
        .iter()
        .enumerate()
        .map(|(k, c)| cell_record(k, c))
        .collect()
}

/// The record of `cell`, the grid's cell number `index`.
fn cell_record(index: usize, cell: &Cell) -> CellRecord {
    CellRecord {
        index,
        dataset: cell.dataset.name().to_string(),
        method: cell.method.to_string(),
        fold: cell.fold,
        seed: cell.seed,
        dir: std::path::absolute(&cell.config.output.dir)
            .unwrap_or_else(|_| cell.config.output.dir.clone()),
    }
}

/// An experiment folder holds what grids write only: one without a grid's record
/// (`cells.json`) that holds files an aggregation writes (`results.csv`, `results.md`, the
/// figures) or a single run's files is refused before anything is written, naming them.
fn check_experiment_folder(out: &Path) -> Result<()> {
    if out.join(CELLS_FILE).exists() {
        return Ok(());
    }
    let files: Vec<String> = crate::folder::entries(out)?
        .into_iter()
        .filter(|n| {
            let figure = (n.ends_with(".svg") || n.ends_with(".png"))
                && ["accuracy_", "similarity_", "neighbours_"]
                    .iter()
                    .any(|p| n.starts_with(p));
            figure
                || n == "results.csv"
                || n == "results.md"
                || crate::folder::RUN_ARTIFACTS.contains(&n.as_str())
        })
        .collect();
    match files.is_empty() {
        true => Ok(()),
        false => Err(ProtocolError::NotAnExperiment {
            dir: out.to_path_buf(),
            files,
        }),
    }
}

/// Writes `out/cells.json` for `cells`.
fn record_cells(out: &Path, cells: &[Cell]) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| ProtocolError::write(out, e))?;
    let records = cell_records(cells);
    let path = out.join(CELLS_FILE);
    let text =
        serde_json::to_string_pretty(&records).map_err(|e| ProtocolError::write(&path, e))?;
    write_atomic(&path, &text)
}

#[cfg(test)]
#[path = "grid_tests.rs"]
mod tests;
