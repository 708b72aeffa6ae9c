//! `mmssl similarity`: compare two representation matrices stored as `.npy` files.

use clap::Args;
use mmssl_similarity::linalg::LinalgBackend;
use mmssl_similarity::{Similarity, SimilarityReport, read_matrix};
use std::path::PathBuf;

/// Arguments of `mmssl similarity`.
#[derive(Debug, Args)]
pub struct SimilarityArgs {
    /// First representation: a 2-D .npy file (rows = samples, columns = features), f32 or f64.
    #[arg(long, value_name = "A.npy")]
    pub a: PathBuf,
    /// Second representation, with the same rows (samples) as A.
    #[arg(long, value_name = "B.npy")]
    pub b: PathBuf,
    /// Fraction of variance SVCCA keeps of each representation, in (0, 1].
    #[arg(long, default_value_t = 0.99)]
    pub svcca_threshold: f64,
    /// Linear-algebra backend for the decompositions.
    #[arg(long, value_enum)]
    pub linalg: Option<LinalgArg>,
    /// Print the JSON on one line instead of indented.
    #[arg(long)]
    pub compact: bool,
}

/// `--linalg` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LinalgArg {
    /// Pure-Rust faer (always available).
    Faer,
    /// LAPACK through OpenBLAS (needs the `lapack` cargo feature).
    Lapack,
}

/// A failure of `mmssl similarity`, printed as `error: ...` with exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum SimilarityCmdError {
    /// Reading or comparing failed.
    #[error(transparent)]
    Similarity(#[from] mmssl_similarity::SimilarityError),
    /// `--linalg lapack` without the feature.
    #[error(
        "this mmssl was built without LAPACK; rebuild with `--features lapack` or use `--linalg faer`"
    )]
    NoLapack,
    /// JSON encoding failed.
    #[error("cannot encode the result as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs the command and returns the JSON text it prints.
pub fn run(args: &SimilarityArgs) -> Result<String, SimilarityCmdError> {
    let backend = match args.linalg {
        None => LinalgBackend::default(),
        Some(LinalgArg::Faer) => LinalgBackend::Faer,
        #[cfg(feature = "lapack")]
        Some(LinalgArg::Lapack) => LinalgBackend::Lapack,
        #[cfg(not(feature = "lapack"))]
        Some(LinalgArg::Lapack) => return Err(SimilarityCmdError::NoLapack),
    };
    let a = read_matrix(&args.a)?;
    let b = read_matrix(&args.b)?;
    let report: SimilarityReport = Similarity::new()
        .backend(backend)
        .svcca_threshold(args.svcca_threshold)?
        .report(a.view(), b.view())?;
    Ok(if args.compact {
        serde_json::to_string(&report)?
    } else {
        serde_json::to_string_pretty(&report)?
    })
}
