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
use mmssl_protocol::{Phases, ProtocolError, load_run_config, print_line};
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
    /// An evaluation or analysis setting, `KEY=VALUE` (repeatable): `knn_k=10`, `maps=false`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
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
        config.evaluation.epochs = self.eval_epochs.or(config.evaluation.epochs);
        config.evaluation.bn_train_mode |= self.bn_train_mode;
        config.set_all(&self.settings, Some(&["evaluation", "analysis"]))?;
        config.backend = self.backend.unwrap_or(config.backend);
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
    /// `mmssl data` failed.
    #[error(transparent)]
    Data(#[from] data::DataCmdError),
    /// `mmssl similarity` failed.
    #[error(transparent)]
    Similarity(#[from] similarity::SimilarityCmdError),
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
        let _ = print_line(
            "mmssl: no command given; running the quick demonstration (CR-XX-CC on the embedded \
             MNIST test split as Two-View MNIST, 2 epochs). `mmssl --help` lists the commands.",
            true,
        );
        Command::Run(Box::new(run::RunArgs::quick_demo()))
    });
    if matches!(
        command,
        Command::Run(_) | Command::Pretrain(_) | Command::LinearEval(_) | Command::Experiment(_)
    ) {
        signals::install();
    }
    // A closed output (`| head`) ends the command quietly (`print_line`).
    let (text, stderr, code) = match execute(command) {
        Ok(text) => (text, false, ExitCode::SUCCESS),
        Err(CliError::Interrupted { error, next }) => {
            let text = format!("stopped: {error}\nto continue: {next}");
            (text, true, ExitCode::from(signals::EXIT_INTERRUPTED))
        }
        Err(e) => (format!("error: {e}"), true, ExitCode::from(2)),
    };
    match print_line(&text, stderr) {
        Ok(()) => code,
        Err(e) => {
            let _ = print_line(&format!("error: cannot write the output: {e}"), true);
            ExitCode::from(2)
        }
    }
}

/// Runs one command and returns what it prints on stdout (progress and warnings go to
/// stderr as it runs).
pub fn execute(command: Command) -> Result<String, CliError> {
    let results = |report: &mmssl_protocol::RunReport, file: PathBuf| {
        format!("{}\nresults: {}", report.summary(), file.display())
    };
    Ok(match command {
        Command::Run(args) => {
            let (report, out) = run::run_phases(&args, Phases::ALL)?;
            results(&report, out.join("eval.json"))
        }
        Command::Pretrain(args) => {
            let (report, out) = run::run_phases(&args, Phases::PRETRAIN)?;
            format!(
                "{}\ncheckpoints: {}; next: mmssl linear-eval --run {}",
                report.summary(),
                out.join("checkpoints").display(),
                out.display()
            )
        }
        Command::LinearEval(p) => results(&p.run(Phases::EVALUATE)?.0, p.run.join("eval.json")),
        Command::Analyze(p) => results(&p.run(Phases::ANALYZE)?.0, p.run.join("similarity.json")),
        Command::Import(args) => interop::import(&args)?.summary(),
        Command::Export(args) => interop::export(&args)?.summary(),
        Command::Explain(args) => {
            let report = explain::run(&args)?;
            let json = report.out.join("explain.json");
            format!("{}report: {}", report.summary(), json.display())
        }
        Command::Experiment(args) => experiment::experiment(&args)?,
        Command::Similarity(args) => similarity::run(&args)?,
        Command::Data(args) => data::run(&args)?,
        Command::Methods => mmssl_protocol::Registry::builtin()
            .describe()
            .trim_end()
            .to_string(),
        Command::Info { backend } => {
            let mut lines = vec![format!("mmssl {}", env!("CARGO_PKG_VERSION"))];
            for kind in BackendKind::ALL {
                let state = ["not compiled in", "compiled in"][usize::from(compiled(kind))];
                lines.push(format!("backend {:<5} {state}", kind.name()));
            }
            lines.push(format!(
                "similarity linear algebra: {:?}",
                mmssl_similarity::linalg::LinalgBackend::default()
            ));
            if let Some(kind) = backend {
                match select_device(kind) {
                    Ok(device) => lines.push(format!("backend {} works: {device:?}", kind.name())),
                    Err(e) => {
                        // What this build has, then why the backend asked for does not work.
                        let _ = print_line(&lines.join("\n"), false);
                        return Err(e.into());
                    }
                }
            }
            lines.join("\n")
        }
    })
}
