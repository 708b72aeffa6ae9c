//! # mmssl-cli
//!
//! The `mmssl` command-line tool: the one place where a compute backend is chosen
//! ([`backend::select_device`]) and where user-facing commands live. The binary is a thin
//! wrapper over [`Cli`] and [`run`], so the commands can be driven (and tested) from Rust too.
//!
//! Commands: `mmssl run` (pretrain an objective or a baseline, linear evaluation per modality
//! against the random-init encoder, similarity of the modalities), its phases alone
//! (`mmssl pretrain`, `mmssl linear-eval --run RUN`, `mmssl analyze --run RUN`),
//! `mmssl similarity` (CCA, SVCCA, PWCCA, CKA between two `.npy` representations),
//! `mmssl data info|synth-cohort|download` (describe a dataset file, write a synthetic
//! OASIS-3-style cohort from the bundled MNI152 template, download MNIST, Fashion-MNIST or SVHN
//! with MD5 verification) and `mmssl info` (what this build can run on). Without a command, `mmssl` runs the quick
//! demonstration. `--config FILE` (a TOML file of flag values) works with every command that
//! trains; flags on the command line win.
#![deny(missing_docs)]

pub mod backend;
pub mod data;
pub mod experiment;
pub mod plots;
pub mod run;
pub mod similarity;

use backend::{BackendKind, select_device};
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Multimodal self-supervised representation learning.
#[derive(Debug, Parser)]
#[command(name = "mmssl", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// The command to run; without one, the quick demonstration run (`RunArgs::quick_demo`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `mmssl` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pretrain an objective or baseline, evaluate each modality linearly, compare the
    /// modalities.
    Run(Box<run::RunArgs>),
    /// Pretrain only (the first phase of `run`); evaluate later with `linear-eval`.
    Pretrain(Box<run::RunArgs>),
    /// Linear evaluation of a pretrained run directory (its best checkpoint).
    LinearEval(PhaseArgs),
    /// Similarity (CCA, SVCCA, PWCCA, CKA) of a pretrained run's modalities on the test set.
    Analyze(PhaseArgs),
    /// A grid of runs from a TOML file (methods x datasets x folds x seeds), resumable,
    /// aggregated into results.csv, results.md and figures.
    Experiment(experiment::ExperimentArgs),
    /// Compare two representations (.npy, rows = samples): CCA, SVCCA, PWCCA, linear CKA.
    Similarity(similarity::SimilarityArgs),
    /// Dataset files: describe one (`info`), write a synthetic cohort (`synth-cohort`),
    /// download MNIST, Fashion-MNIST or SVHN with checksums (`download`).
    Data(data::DataArgs),
    /// Show the backends this build supports and check that one works.
    Info {
        /// Also run a test computation on this backend.
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
    },
}

/// Arguments of `mmssl linear-eval` and `mmssl analyze`: a run directory and what may differ
/// from its `config.toml`.
#[derive(Debug, Clone, Args)]
pub struct PhaseArgs {
    /// The run directory (made by `mmssl pretrain` or `mmssl run`).
    #[arg(long)]
    pub run: PathBuf,
    /// Linear-evaluation epochs (default: the run's; `linear-eval` only).
    #[arg(long)]
    pub eval_epochs: Option<usize>,
    /// Extract the features with the encoders' BatchNorm in training mode, as the authors'
    /// code does (default: the run's setting, normally evaluation mode; `linear-eval` only).
    #[arg(long)]
    pub bn_train_mode: bool,
    /// Compute backend (default: the run's).
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl PhaseArgs {
    fn resolve(&self) -> Result<run::RunArgs, run::RunError> {
        let mut args = run::load_run_config(&self.run)?;
        if let Some(e) = self.eval_epochs {
            args.eval_epochs = Some(e);
        }
        args.bn_train_mode |= self.bn_train_mode;
        if let Some(b) = self.backend {
            args.backend = b;
        }
        args.quiet |= self.quiet;
        args.resume = true;
        Ok(args)
    }
}

/// Expands `--config FILE` in a command line: the TOML file's keys (as the flags, `_` or `-`)
/// become flags placed right after the subcommand, so flags given on the command line, which
/// come later, override them. Unknown keys are an error naming the file.
pub fn expand_config(argv: Vec<String>) -> Result<Vec<String>, String> {
    let Some(pos) = argv
        .iter()
        .position(|a| a == "--config" || a.starts_with("--config="))
    else {
        return Ok(argv);
    };
    let (path, remove) = match argv[pos].strip_prefix("--config=") {
        Some(p) => (p.to_string(), 1),
        None => (
            argv.get(pos + 1).cloned().ok_or("--config needs a file")?,
            2,
        ),
    };
    let sub_pos = 1;
    let sub = argv
        .get(sub_pos)
        .filter(|s| !s.starts_with('-'))
        .cloned()
        .ok_or("--config goes after a command, e.g. `mmssl run --config FILE`")?;
    let cmd = Cli::command();
    let known: Vec<String> = cmd
        .find_subcommand(&sub)
        .map(|c| {
            c.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    if let Some(key) = table
        .keys()
        .find(|k| *k == "config" || !known.contains(&k.replace('_', "-")))
    {
        return Err(format!(
            "{path}: `{key}` is not a setting of `mmssl {sub}` (see `mmssl {sub} --help`)"
        ));
    }
    let flags = toml_flags(table).map_err(|e| format!("{path}: {e}"))?;
    let mut out = argv;
    out.drain(pos..pos + remove);
    let rest = out.split_off(sub_pos + 1);
    out.extend(flags);
    out.extend(rest);
    Ok(out)
}

/// Command-line flags for a table of settings (keys as the flags, `_` or `-`): `true` becomes
/// `--key`, `false` nothing, strings and numbers `--key value`. Shared by `--config` files and
/// experiment grids, so both accept exactly what the command line does.
pub fn toml_flags(table: toml::Table) -> Result<Vec<String>, String> {
    let mut flags = Vec::new();
    for (key, value) in table {
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            toml::Value::Boolean(true) => flags.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::String(v) => flags.extend([flag, v]),
            toml::Value::Integer(v) => flags.extend([flag, v.to_string()]),
            toml::Value::Float(v) => flags.extend([flag, v.to_string()]),
            other => {
                return Err(format!(
                    "`{key}` must be a string, number or boolean, not {}",
                    other.type_str()
                ));
            }
        }
    }
    Ok(flags)
}

/// Runs a parsed command line: prints results to stdout, errors to stderr, and returns the
/// process exit code (0 on success, 2 on bad input or an unusable backend).
pub fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or_else(|| {
        eprintln!(
            "mmssl: no command given; running the quick demonstration (CR-XX-CC on the embedded \
             MNIST test split as Two-View MNIST, 2 epochs). `mmssl --help` lists the commands."
        );
        Command::Run(Box::new(run::RunArgs::quick_demo()))
    });
    let command_kind = match &command {
        Command::LinearEval(_) => Kind::LinearEval,
        _ => Kind::Other,
    };
    match command {
        Command::Run(args) => match run::run(&args) {
            Ok(report) => {
                println!("{}", run::table(&report));
                println!("results: {}", args.out.join("eval.json").display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Pretrain(args) => match run::run_phases(&args, run::Phases::PRETRAIN) {
            Ok(report) => {
                println!("{}", run::table(&report));
                println!(
                    "checkpoints: {}; next: mmssl linear-eval --run {}",
                    args.out.join("checkpoints").display(),
                    args.out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::LinearEval(p) | Command::Analyze(p) => {
            let (phases, file) = if matches!(command_kind, Kind::LinearEval) {
                (run::Phases::EVALUATE, "eval.json")
            } else {
                (run::Phases::ANALYZE, "similarity.json")
            };
            match p.resolve().and_then(|args| run::run_phases(&args, phases)) {
                Ok(report) => {
                    println!("{}", run::table(&report));
                    println!("results: {}", p.run.join(file).display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Experiment(args) => match experiment::experiment(&args) {
            Ok((rows, out)) => {
                let summaries = experiment::summarise(&rows);
                println!("{}", experiment::markdown(&summaries));
                println!(
                    "{} result rows; tables and figures in {}",
                    rows.len(),
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Similarity(args) => match similarity::run(&args) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Data(args) => match data::run(&args) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Info { backend } => {
            println!("mmssl {}", env!("CARGO_PKG_VERSION"));
            for kind in BackendKind::all() {
                let state = if kind.compiled() {
                    "compiled in"
                } else {
                    "not compiled in"
                };
                println!("backend {:<5} {state}", kind.name());
            }
            println!(
                "similarity linear algebra: {:?}",
                mmssl_similarity::linalg::LinalgBackend::default()
            );
            if let Some(kind) = backend {
                match select_device(kind) {
                    Ok(device) => println!("backend {} works: {device:?}", kind.name()),
                    Err(e) => return fail(&e),
                }
            }
            ExitCode::SUCCESS
        }
    }
}

enum Kind {
    LinearEval,
    Other,
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}
