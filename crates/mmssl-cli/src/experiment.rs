//! `mmssl experiment`: a grid of runs (methods x datasets x folds x seeds) from a TOML file,
//! resumable (finished runs are skipped, interrupted ones resume from their last checkpoint),
//! aggregated into `results.csv`, `results.md` and figures (SVG and PNG).
//!
//! A grid file:
//!
//! ```toml
//! methods = ["CR", "CR-XX-CC", "XX-CC", "RR", "dccae", "lcca"]   # objective specs or baselines
//! datasets = ["two-view-mnist"]
//! seeds = [0, 1, 2]
//! folds = [0]
//!
//! [settings]            # any flag of `mmssl run`, for every run
//! epochs = 2
//! train_limit = 10000
//! data_dir = "../shared/data/mnist"
//! ```

use crate::plots;
use crate::run::{RunArgs, RunError, run};
use clap::Args;
use mmssl_baselines::BaselineKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Arguments of `mmssl experiment`.
#[derive(Debug, Clone, Args)]
pub struct ExperimentArgs {
    /// The grid file (TOML).
    #[arg(long)]
    pub grid: PathBuf,
    /// Where the runs and the aggregated results go (default: the grid's `out`, else
    /// `experiments/<grid file name>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only aggregate the finished runs (no training).
    #[arg(long)]
    pub aggregate_only: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// A grid of runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Objective specs (`CR-XX-CC`) or baseline names (`dccae`).
    pub methods: Vec<String>,
    /// Dataset names as `--dataset` takes them (default: two-view-mnist).
    #[serde(default = "default_datasets")]
    pub datasets: Vec<String>,
    /// Seeds (default: 0).
    #[serde(default = "default_zero")]
    pub seeds: Vec<u64>,
    /// Validation folds (default: 0).
    #[serde(default = "default_zero_usize")]
    pub folds: Vec<usize>,
    /// The output folder.
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Flags of `mmssl run` applied to every run.
    #[serde(default)]
    pub settings: toml::Table,
}

fn default_datasets() -> Vec<String> {
    vec!["two-view-mnist".into()]
}
fn default_zero() -> Vec<u64> {
    vec![0]
}
fn default_zero_usize() -> Vec<usize> {
    vec![0]
}

/// One row of `results.csv`: one modality of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// Dataset name.
    pub dataset: String,
    /// Method (objective spec or baseline).
    pub method: String,
    /// Validation fold.
    pub fold: usize,
    /// Seed.
    pub seed: u64,
    /// Modality.
    pub modality: usize,
    /// Test accuracy of the pretrained representation.
    pub accuracy: f64,
    /// Test balanced accuracy.
    pub balanced_accuracy: f64,
    /// Test ROC-AUC (binary, or macro one-vs-rest).
    pub roc_auc: Option<f64>,
    /// Test accuracy of the same encoder at random initialisation.
    pub random_init_accuracy: Option<f64>,
    /// Mean CCA between the modalities (per run, repeated on each modality's row).
    pub cca: Option<f64>,
    /// SVCCA.
    pub svcca: Option<f64>,
    /// PWCCA.
    pub pwcca: Option<f64>,
    /// Linear CKA.
    pub cka: Option<f64>,
}

/// A folder name for a method (`CR:1,XX:0.5` -> `CR_1_XX_0.5`).
fn slug(method: &str) -> String {
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

/// Reads and checks a grid file.
pub fn read_grid(path: &Path) -> Result<Grid, RunError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Args(format!("cannot read {}: {e}", path.display())))?;
    let grid: Grid =
        toml::from_str(&text).map_err(|e| RunError::Args(format!("{}: {e}", path.display())))?;
    if grid.methods.is_empty() || grid.datasets.is_empty() || grid.seeds.is_empty() {
        return Err(RunError::Args(format!(
            "{}: methods, datasets and seeds must not be empty",
            path.display()
        )));
    }
    for m in &grid.methods {
        if m.parse::<BaselineKind>().is_err() {
            m.parse::<mmssl_objectives::ObjectiveSpec>().map_err(|e| {
                RunError::Args(format!(
                    "{}: method {m:?} is neither a baseline nor an objective: {e}",
                    path.display()
                ))
            })?;
        }
    }
    Ok(grid)
}

/// The arguments of one run of the grid.
fn run_args(
    grid: &Grid,
    dataset: &str,
    method: &str,
    fold: usize,
    seed: u64,
    out: &Path,
    quiet: bool,
) -> Result<RunArgs, RunError> {
    let mut table = grid.settings.clone();
    for forbidden in [
        "out",
        "objective",
        "method",
        "dataset",
        "seed",
        "fold",
        "config",
    ] {
        if table.contains_key(forbidden) {
            return Err(RunError::Args(format!(
                "grid settings may not set `{forbidden}`: the grid itself chooses it"
            )));
        }
    }
    table.insert("dataset".into(), toml::Value::String(dataset.into()));
    if method.parse::<BaselineKind>().is_ok() {
        table.insert("method".into(), toml::Value::String(method.into()));
    } else {
        table.insert("objective".into(), toml::Value::String(method.into()));
    }
    table.insert("seed".into(), toml::Value::Integer(seed as i64));
    table.insert("fold".into(), toml::Value::Integer(fold as i64));
    table.insert(
        "out".into(),
        toml::Value::String(out.to_string_lossy().into_owned()),
    );
    if quiet {
        table.insert("quiet".into(), toml::Value::Boolean(true));
    }
    // Go through the command line parser, so the grid accepts exactly the flags of `run`
    // with their defaults.
    let mut argv = vec!["mmssl".to_string(), "run".to_string()];
    argv.extend(crate::toml_flags(table).map_err(|e| RunError::Args(format!("grid setting {e}")))?);
    use clap::Parser;
    let cli = crate::Cli::try_parse_from(&argv)
        .map_err(|e| RunError::Args(format!("grid settings: {e}")))?;
    match cli.command {
        Some(crate::Command::Run(args)) => Ok(*args),
        _ => unreachable!("the argument vector names `run`"),
    }
}

/// Runs every unfinished run of the grid, then aggregates. Returns the rows and the output
/// folder.
///
/// A run that fails does not stop the grid: its error is printed and saved as `error.txt` in
/// its directory, the other runs go on, the finished ones are aggregated, and then the
/// failures are returned as one error naming each (rerunning the command retries them).
pub fn experiment(args: &ExperimentArgs) -> Result<(Vec<ResultRow>, PathBuf), RunError> {
    let grid = read_grid(&args.grid)?;
    let out = args
        .out
        .clone()
        .or_else(|| grid.out.clone())
        .unwrap_or_else(|| {
            let stem = args
                .grid
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "grid".into());
            PathBuf::from("experiments").join(stem)
        });
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    let total = grid.datasets.len() * grid.methods.len() * grid.folds.len() * grid.seeds.len();
    let mut k = 0;
    for dataset in &grid.datasets {
        for method in &grid.methods {
            for &fold in &grid.folds {
                for &seed in &grid.seeds {
                    k += 1;
                    let dir = out
                        .join(dataset)
                        .join(slug(method))
                        .join(format!("fold{fold}-seed{seed}"));
                    let finished = dir.join("eval.json");
                    if !finished.exists() {
                        if args.aggregate_only {
                            continue;
                        }
                        let mut run_args =
                            run_args(&grid, dataset, method, fold, seed, &dir, args.quiet)?;
                        run_args.resume = dir.join("checkpoints").join("state.json").exists();
                        if !args.quiet {
                            eprintln!(
                                "[{k}/{total}] {dataset} {method} fold {fold} seed {seed} -> {}",
                                dir.display()
                            );
                        }
                        if let Err(e) = run(&run_args) {
                            eprintln!(
                                "[{k}/{total}] {dataset} {method} fold {fold} seed {seed} failed: {e}"
                            );
                            let _ = std::fs::write(dir.join("error.txt"), format!("{e}\n"));
                            failed.push(format!("{dataset} {method} fold {fold} seed {seed}: {e}"));
                            continue;
                        }
                        let _ = std::fs::remove_file(dir.join("error.txt"));
                    }
                    // Always from the file, so a rerun aggregates exactly the same numbers.
                    let eval = read_json(&finished)?;
                    rows.extend(rows_of(&eval, dataset, method, fold, seed));
                }
            }
        }
    }
    aggregate(&rows, &out)?;
    if !failed.is_empty() {
        return Err(RunError::Args(format!(
            "{} of {total} runs failed (the others are aggregated in {}; rerun to retry):\n  {}",
            failed.len(),
            out.display(),
            failed.join("\n  ")
        )));
    }
    Ok((rows, out))
}

fn read_json(path: &Path) -> Result<serde_json::Value, RunError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Args(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| RunError::Args(format!("{}: {e}", path.display())))
}

fn rows_of(
    eval: &serde_json::Value,
    dataset: &str,
    method: &str,
    fold: usize,
    seed: u64,
) -> Vec<ResultRow> {
    let sim = &eval["similarity"];
    let get = |v: &serde_json::Value| v.as_f64();
    eval["linear_eval"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| ResultRow {
                    dataset: dataset.into(),
                    method: method.into(),
                    fold,
                    seed,
                    modality: m["modality"].as_u64().unwrap_or(0) as usize,
                    accuracy: get(&m["pretrained"]["accuracy"]).unwrap_or(f64::NAN),
                    balanced_accuracy: get(&m["pretrained"]["balanced_accuracy"])
                        .unwrap_or(f64::NAN),
                    roc_auc: get(&m["pretrained"]["roc_auc"]),
                    random_init_accuracy: get(&m["random_init"]["accuracy"]),
                    cca: get(&sim["cca"]),
                    svcca: get(&sim["svcca"]),
                    pwcca: get(&sim["pwcca"]),
                    cka: get(&sim["cka"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Mean and sample standard deviation (0 for one value) of the finite values.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((mean, var.sqrt()))
}

/// One bar of a summary: mean and standard deviation over folds and seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Dataset.
    pub dataset: String,
    /// Method.
    pub method: String,
    /// Per modality: (mean, std) of the test accuracy.
    pub accuracy: Vec<(f64, f64)>,
    /// Per modality: (mean, std) of the random-init accuracy, if known.
    pub random_init: Vec<Option<(f64, f64)>>,
    /// (name, mean, std) of CCA, SVCCA, PWCCA, CKA.
    pub similarity: Vec<(&'static str, f64, f64)>,
    /// Runs aggregated.
    pub runs: usize,
}

/// Summaries per (dataset, method), in the order methods first appear.
pub fn summarise(rows: &[ResultRow]) -> Vec<Summary> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<&ResultRow>> = BTreeMap::new();
    for r in rows {
        let key = (r.dataset.clone(), r.method.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    order
        .into_iter()
        .map(|key| {
            let g = &groups[&key];
            let modalities = g.iter().map(|r| r.modality + 1).max().unwrap_or(0);
            let of = |m: usize, f: &dyn Fn(&ResultRow) -> Option<f64>| -> Vec<f64> {
                g.iter()
                    .filter(|r| r.modality == m)
                    .filter_map(|r| f(r))
                    .collect()
            };
            let accuracy = (0..modalities)
                .map(|m| mean_std(&of(m, &|r| Some(r.accuracy))).unwrap_or((f64::NAN, 0.0)))
                .collect();
            let random_init = (0..modalities)
                .map(|m| mean_std(&of(m, &|r| r.random_init_accuracy)))
                .collect();
            let sim = |f: &dyn Fn(&ResultRow) -> Option<f64>| mean_std(&of(0, f));
            let similarity = [
                ("CCA", sim(&|r| r.cca)),
                ("SVCCA", sim(&|r| r.svcca)),
                ("PWCCA", sim(&|r| r.pwcca)),
                ("CKA", sim(&|r| r.cka)),
            ]
            .into_iter()
            .filter_map(|(n, v)| v.map(|(m, s)| (n, m, s)))
            .collect();
            Summary {
                dataset: key.0.clone(),
                method: key.1.clone(),
                accuracy,
                random_init,
                similarity,
                runs: g.iter().filter(|r| r.modality == 0).count(),
            }
        })
        .collect()
}

/// The Markdown table of the summaries.
pub fn markdown(summaries: &[Summary]) -> String {
    let modalities = summaries
        .iter()
        .map(|s| s.accuracy.len())
        .max()
        .unwrap_or(0);
    let mut s = String::from("| dataset | method | runs |");
    for m in 0..modalities {
        s += &format!(" accuracy m{m} | random init m{m} |");
    }
    s += " CCA | SVCCA | PWCCA | CKA |\n|---|---|---|";
    for _ in 0..modalities {
        s += "---|---|";
    }
    s += "---|---|---|---|\n";
    let pm = |v: (f64, f64)| format!("{:.4} ± {:.4}", v.0, v.1);
    for x in summaries {
        s += &format!("| {} | {} | {} |", x.dataset, x.method, x.runs);
        for m in 0..modalities {
            let acc = x.accuracy.get(m).map_or("-".into(), |&v| pm(v));
            let rnd = x
                .random_init
                .get(m)
                .copied()
                .flatten()
                .map_or("-".into(), pm);
            s += &format!(" {acc} | {rnd} |");
        }
        for name in ["CCA", "SVCCA", "PWCCA", "CKA"] {
            let v = x.similarity.iter().find(|(n, _, _)| *n == name);
            s += &format!(" {} |", v.map_or("-".into(), |&(_, m, sd)| pm((m, sd))));
        }
        s += "\n";
    }
    s
}

/// Writes `results.csv`, `results.md` and the figures into `out`.
pub fn aggregate(rows: &[ResultRow], out: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(out).map_err(|e| RunError::Write {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    let csv_path = out.join("results.csv");
    let mut w = csv::Writer::from_path(&csv_path).map_err(|e| RunError::Write {
        path: csv_path.clone(),
        reason: e.to_string(),
    })?;
    for r in rows {
        w.serialize(r).map_err(|e| RunError::Write {
            path: csv_path.clone(),
            reason: e.to_string(),
        })?;
    }
    w.flush().map_err(|e| RunError::Write {
        path: csv_path.clone(),
        reason: e.to_string(),
    })?;
    let summaries = summarise(rows);
    let md_path = out.join("results.md");
    std::fs::write(&md_path, markdown(&summaries)).map_err(|e| RunError::Write {
        path: md_path,
        reason: e.to_string(),
    })?;
    let datasets: Vec<String> = summaries.iter().fold(Vec::new(), |mut v, s| {
        if !v.contains(&s.dataset) {
            v.push(s.dataset.clone());
        }
        v
    });
    for d in datasets {
        let of: Vec<&Summary> = summaries.iter().filter(|s| s.dataset == d).collect();
        plots::accuracy_chart(&of, &out.join(format!("accuracy_{d}")))?;
        plots::similarity_chart(&of, &out.join(format!("similarity_{d}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, seed: u64, modality: usize, acc: f64) -> ResultRow {
        ResultRow {
            dataset: "two-view-mnist".into(),
            method: method.into(),
            fold: 0,
            seed,
            modality,
            accuracy: acc,
            balanced_accuracy: acc,
            roc_auc: Some(0.9),
            random_init_accuracy: Some(0.5),
            cca: Some(0.6 + seed as f64 * 0.1),
            svcca: Some(0.5),
            pwcca: None,
            cka: Some(0.7),
        }
    }

    #[test]
    fn summaries_are_means_and_sample_deviations() {
        let rows = vec![
            row("CR-XX", 0, 0, 0.8),
            row("CR-XX", 0, 1, 0.7),
            row("CR-XX", 1, 0, 0.9),
            row("CR-XX", 1, 1, 0.7),
            row("dccae", 0, 0, 0.6),
            row("dccae", 0, 1, 0.5),
        ];
        let s = summarise(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].method, "CR-XX");
        assert_eq!(s[0].runs, 2);
        assert!((s[0].accuracy[0].0 - 0.85).abs() < 1e-12);
        // sample std of {0.8, 0.9} = 0.0707...
        assert!((s[0].accuracy[0].1 - 0.05f64.sqrt() / 10f64.sqrt()).abs() < 1e-9);
        assert_eq!(s[0].accuracy[1], (0.7, 0.0));
        let cca = s[0].similarity.iter().find(|x| x.0 == "CCA").unwrap();
        assert!((cca.1 - 0.65).abs() < 1e-12);
        assert!(s[0].similarity.iter().all(|x| x.0 != "PWCCA"));
        let md = markdown(&s);
        assert!(
            md.contains("| two-view-mnist | CR-XX | 2 | 0.8500 ± 0.0707 |"),
            "{md}"
        );
        assert!(md.contains("| dccae | 1 |"), "{md}");
        assert_eq!(mean_std(&[f64::NAN]), None);
        assert_eq!(slug("CR:1,XX:0.5"), "CR_1_XX_0.5");
    }

    #[test]
    fn aggregate_writes_csv_markdown_and_figures() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            row("CR", 0, 0, 0.8),
            row("CR", 0, 1, 0.6),
            row("lcca", 0, 0, 0.7),
        ];
        aggregate(&rows, dir.path()).unwrap();
        let mut csv = csv::Reader::from_path(dir.path().join("results.csv")).unwrap();
        let back: Vec<ResultRow> = csv.deserialize().map(|r| r.unwrap()).collect();
        assert_eq!(back, rows);
        for f in [
            "results.md",
            "accuracy_two-view-mnist.svg",
            "accuracy_two-view-mnist.png",
            "similarity_two-view-mnist.svg",
            "similarity_two-view-mnist.png",
        ] {
            let p = dir.path().join(f);
            assert!(p.metadata().unwrap().len() > 100, "{f}");
        }
        let svg = std::fs::read_to_string(dir.path().join("accuracy_two-view-mnist.svg")).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("lcca"),
            "the method names label the bars"
        );
        let png = std::fs::read(dir.path().join("accuracy_two-view-mnist.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn grids_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.toml");
        std::fs::write(&p, "methods = [\"CR-XX\", \"nonsense\"]\n").unwrap();
        let e = read_grid(&p).unwrap_err().to_string();
        assert!(e.contains("nonsense") && e.contains("g.toml"), "{e}");
        std::fs::write(&p, "methods = []\n").unwrap();
        assert!(read_grid(&p).is_err());
        std::fs::write(&p, "methods = [\"CR\"]\nmodels = [1]\n").unwrap();
        assert!(read_grid(&p).unwrap_err().to_string().contains("models"));
        std::fs::write(
            &p,
            "methods = [\"CR\", \"mmvae\"]\n[settings]\nepochs = 3\n",
        )
        .unwrap();
        let g = read_grid(&p).unwrap();
        let a = run_args(&g, "two-view-mnist", "mmvae", 1, 7, dir.path(), true).unwrap();
        assert_eq!(
            (a.epochs, a.seed, a.fold, a.method.as_deref(), a.quiet),
            (3, 7, 1, Some("mmvae"), true)
        );
        let a = run_args(&g, "two-view-mnist", "CR", 0, 0, dir.path(), false).unwrap();
        assert_eq!((a.objective.as_str(), a.method.as_deref()), ("CR", None));
        std::fs::write(&p, "methods = [\"CR\"]\n[settings]\nseed = 3\n").unwrap();
        let g = read_grid(&p).unwrap();
        assert!(run_args(&g, "two-view-mnist", "CR", 0, 0, dir.path(), false).is_err());
        std::fs::write(&p, "methods = [\"CR\"]\n[settings]\nepochz = 3\n").unwrap();
        let g = read_grid(&p).unwrap();
        let e = run_args(&g, "two-view-mnist", "CR", 0, 0, dir.path(), false).unwrap_err();
        assert!(e.to_string().contains("epochz"), "{e}");
    }
}
