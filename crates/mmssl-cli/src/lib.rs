//! # mmssl-cli
//!
//! The `mmssl` command-line tool: the one place where a compute backend is chosen
//! ([`backend::select_device`]). It maps flags to a run configuration of `mmssl-protocol` and
//! prints; the protocol (runs, grids, results) is that library's. The binary is a thin
//! wrapper over [`Cli`] and [`run()`], so the commands can be driven (and tested) from Rust too.
//!
//! Commands: `mmssl run` (pretrain an objective or a baseline, linear evaluation per modality
//! against the random-init encoder, similarity of the modalities), its phases alone
//! (`mmssl pretrain`, `mmssl linear-eval --run RUN`, `mmssl analyze --run RUN`), grids
//! (`mmssl experiment`, locally or on Slurm, and `mmssl experiment status EXP`),
//! `mmssl similarity` (CCA, SVCCA, PWCCA, CKA between two `.npy` representations),
//! `mmssl data info|synth-cohort|download` (describe a dataset file, write a synthetic
//! OASIS-3-style cohort from the bundled MNI152 template, download MNIST, Fashion-MNIST or SVHN
//! with MD5 verification), `mmssl methods` (every method and its options) and `mmssl info`
//! (what this build can run on). Without a command, `mmssl` runs the quick demonstration.
//! `--config FILE` (a run configuration) works with `run` and `pretrain`; flags on the
//! command line win.
#![deny(missing_docs)]

pub mod backend;
pub mod data;
pub mod experiment;
pub mod explain;
pub mod interop;
pub mod run;
pub mod signals;
pub mod similarity;

use backend::{BackendKind, compiled, select_device};
use clap::{Args, Parser, Subcommand};
use mmssl_protocol::{Phases, ProtocolError, load_run_config};
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
    /// Import the authors' PyTorch model (their `Dim` state dict, plain or in a Catalyst
    /// checkpoint) as a run folder: linear-eval, analyze, explain and `run --init-from` work on
    /// it (docs/interop.md).
    Import(Box<interop::ImportArgs>),
    /// Export a run's encoders as safetensors files that the authors' `DcganEncoder` loads
    /// with `load_state_dict(strict=True)`, with their arguments and a check batch.
    Export(interop::ExportArgs),
    /// Attribution maps of a pretrained run: which parts of each modality's input carry the
    /// shared representation, a latent unit or the classifier's decision; class means and
    /// Welch's t between classes, as NIfTI volumes (or image grids) with figures and peaks.
    Explain(Box<explain::ExplainArgs>),
    /// A grid of runs from a TOML file (methods x datasets x folds x seeds), resumable,
    /// aggregated into results.csv, results.md and figures.
    Experiment(experiment::ExperimentArgs),
    /// Compare two representations (.npy, rows = samples): CCA, SVCCA, PWCCA, linear CKA.
    Similarity(similarity::SimilarityArgs),
    /// Dataset files: describe one (`info`), write a synthetic cohort (`synth-cohort`),
    /// download MNIST, Fashion-MNIST or SVHN with checksums (`download`).
    Data(data::DataArgs),
    /// List the methods (objectives and baselines) and the options each takes.
    Methods,
    /// Show the backends this build supports and check that one works.
    Info {
        /// Also run a test computation on this backend (cpu, wgpu or cuda).
        #[arg(long)]
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
    #[arg(long, allow_negative_numbers = true)]
    pub eval_epochs: Option<usize>,
    /// Extract the features with the encoders' BatchNorm in training mode, as the authors'
    /// code does (default: the run's setting, normally evaluation mode; `linear-eval` only).
    #[arg(long)]
    pub bn_train_mode: bool,
    /// Compute backend, cpu, wgpu or cuda (default: the run's).
    #[arg(long)]
    pub backend: Option<BackendKind>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl PhaseArgs {
    fn run(&self, phases: Phases) -> Result<(mmssl_protocol::RunReport, PathBuf), CliError> {
        if !phases.evaluate && (self.eval_epochs.is_some() || self.bn_train_mode) {
            return Err(ProtocolError::Config(
                "--eval-epochs and --bn-train-mode apply to `linear-eval`, not to `analyze`".into(),
            )
            .into());
        }
        let mut config = load_run_config(&self.run)?;
        if let Some(e) = self.eval_epochs {
            config.evaluation.epochs = Some(e);
        }
        config.evaluation.bn_train_mode |= self.bn_train_mode;
        if let Some(b) = self.backend {
            config.backend = b;
        }
        config.output.resume = true;
        run::run_config(&config, phases, self.quiet)
    }
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The protocol failed (settings, data, training, results).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The backend is unavailable.
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    /// The run stopped on a signal after saving where it was ([`signals`]); `mmssl` exits with
    /// [`signals::EXIT_INTERRUPTED`].
    #[error("{error}\nto continue: {next}")]
    Interrupted {
        /// What stopped, and where its checkpoint is.
        error: Box<ProtocolError>,
        /// The command that continues it.
        next: String,
    },
}

impl CliError {
    /// `error` as [`CliError::Interrupted`] with the command that continues it, when it is an
    /// interruption ([`ProtocolError::is_interrupted`]); unchanged otherwise.
    pub fn resumable(error: impl Into<CliError>, next: impl FnOnce() -> String) -> CliError {
        match error.into() {
            CliError::Protocol(e) if e.is_interrupted() => CliError::Interrupted {
                error: Box::new(e),
                next: next(),
            },
            other => other,
        }
    }
}

/// Runs a parsed command line: prints results to stdout, errors to stderr, and returns the
/// process exit code (0 on success, 2 on bad input or an unusable backend,
/// [`signals::EXIT_INTERRUPTED`] (75) for a run stopped by SIGTERM or Ctrl-C after saving a
/// checkpoint).
pub fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or_else(|| {
        eprintln!(
            "mmssl: no command given; running the quick demonstration (CR-XX-CC on the embedded \
             MNIST test split as Two-View MNIST, 2 epochs). `mmssl --help` lists the commands."
        );
        Command::Run(Box::new(run::RunArgs::quick_demo()))
    });
    if matches!(
        command,
        Command::Run(_) | Command::Pretrain(_) | Command::LinearEval(_) | Command::Experiment(_)
    ) {
        signals::install();
    }
    let command_kind = match &command {
        Command::LinearEval(_) => Kind::LinearEval,
        _ => Kind::Other,
    };
    match command {
        Command::Run(args) => match run::run_phases(&args, Phases::ALL) {
            Ok((report, out)) => {
                println!("{}", report.summary());
                println!("results: {}", out.join("eval.json").display());
                ExitCode::SUCCESS
            }
            Err(e) => fail_cli(&e),
        },
        Command::Pretrain(args) => match run::run_phases(&args, Phases::PRETRAIN) {
            Ok((report, out)) => {
                println!("{}", report.summary());
                println!(
                    "checkpoints: {}; next: mmssl linear-eval --run {}",
                    out.join("checkpoints").display(),
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail_cli(&e),
        },
        Command::LinearEval(p) | Command::Analyze(p) => {
            let (phases, file) = if matches!(command_kind, Kind::LinearEval) {
                (Phases::EVALUATE, "eval.json")
            } else {
                (Phases::ANALYZE, "similarity.json")
            };
            match p.run(phases) {
                Ok((report, _)) => {
                    println!("{}", report.summary());
                    println!("results: {}", p.run.join(file).display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail_cli(&e),
            }
        }
        Command::Import(args) => match interop::import(&args) {
            Ok(report) => {
                println!("{}", interop::import_summary(&report));
                ExitCode::SUCCESS
            }
            Err(e) => fail_cli(&e),
        },
        Command::Export(args) => match interop::export(&args) {
            Ok(report) => {
                println!("{}", interop::export_summary(&report));
                ExitCode::SUCCESS
            }
            Err(e) => fail_cli(&e),
        },
        Command::Explain(args) => match explain::run(&args) {
            Ok(report) => {
                print!("{}", report.summary());
                println!("report: {}", report.out.join("explain.json").display());
                ExitCode::SUCCESS
            }
            Err(e) => fail_cli(&e),
        },
        Command::Experiment(args) => match experiment::experiment(&args) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail_cli(&e),
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
        Command::Methods => {
            print!("{}", mmssl_protocol::Registry::builtin().describe());
            ExitCode::SUCCESS
        }
        Command::Info { backend } => {
            println!("mmssl {}", env!("CARGO_PKG_VERSION"));
            for kind in BackendKind::ALL {
                let state = if compiled(kind) {
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

/// Exit code 2 for an error, [`signals::EXIT_INTERRUPTED`] for a run stopped on a signal.
fn fail_cli(e: &CliError) -> ExitCode {
    if let CliError::Interrupted { .. } = e {
        eprintln!("stopped: {e}");
        return ExitCode::from(signals::EXIT_INTERRUPTED);
    }
    fail(e)
}
