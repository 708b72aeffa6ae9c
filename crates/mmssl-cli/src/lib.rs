//! # mmssl-cli
//!
//! The `mmssl` command-line tool: the one place where a compute backend is chosen
//! ([`backend::select_device`]) and where user-facing commands live. The binary is a thin
//! wrapper over [`Cli`] and [`run`], so the commands can be driven (and tested) from Rust too.
//!
//! Commands so far: `mmssl run` (pretrain an objective, linear evaluation per modality against
//! the random-init encoder, similarity of the modalities), `mmssl similarity` (CCA, SVCCA,
//! PWCCA, CKA between two `.npy` representations) and `mmssl info` (what this build can run
//! on). Without a command, `mmssl` runs the quick demonstration.
#![deny(missing_docs)]

pub mod backend;
pub mod run;
pub mod similarity;

use backend::{BackendKind, select_device};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Multimodal self-supervised representation learning.
#[derive(Debug, Parser)]
#[command(name = "mmssl", version, about, long_about = None)]
pub struct Cli {
    /// The command to run; without one, the quick demonstration run (`RunArgs::quick_demo`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `mmssl` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pretrain an objective, evaluate each modality linearly, compare the modalities.
    Run(Box<run::RunArgs>),
    /// Compare two representations (.npy, rows = samples): CCA, SVCCA, PWCCA, linear CKA.
    Similarity(similarity::SimilarityArgs),
    /// Show the backends this build supports and check that one works.
    Info {
        /// Also run a test computation on this backend.
        #[arg(long, value_enum)]
        backend: Option<BackendKind>,
    },
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
    match command {
        Command::Run(args) => match run::run(&args) {
            Ok(report) => {
                println!("{}", run::table(&report));
                println!("results: {}", args.out.join("eval.json").display());
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

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}
