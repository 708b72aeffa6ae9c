//! `mmssl import` and `mmssl export`: weights across the border with PyTorch.

use crate::run::RunArgs;
use crate::select_device;
use clap::{Args, ValueEnum};
use mmssl_protocol::ProtocolError;
use mmssl_protocol::Terminal;
use mmssl_protocol::interop::{ExportReport, ImportReport, ImportSettings};
use std::path::PathBuf;

/// Arguments of `mmssl import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The authors' state dict: a `.pt`/`.pth` file (`torch.save(model.state_dict())`, or a
    /// Catalyst checkpoint holding it under `model_state_dict`) or a `.safetensors` file, of
    /// their `Dim` model. Give two files for the authors' unimodal runs (one source each).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Import the encoders only: the heads keep their seeded initialisation (for a state dict
    /// without heads).
    #[arg(long)]
    pub encoders_only: bool,
    /// The run the weights become: `--out` (required), the data (`--dataset`, `--data-dir`,
    /// ...) and `--method` (the objective the model was trained with, default CR-XX-CC).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Arguments of `mmssl export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The run folder whose best checkpoint is exported.
    pub run: PathBuf,
    /// The folder to write (new or empty unless --overwrite).
    #[arg(long)]
    pub out: PathBuf,
    /// The file format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Safetensors)]
    pub format: ExportFormat,
    /// Also export each modality's conv and latent heads (runs of `variant=authors`).
    #[arg(long)]
    pub heads: bool,
    /// Replace files in a folder that is not empty.
    #[arg(long)]
    pub overwrite: bool,
    /// Compute backend for reading the run (default: the run's).
    #[arg(long)]
    pub backend: Option<mmssl_protocol::BackendKind>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// safetensors files with the authors' PyTorch names (`load_state_dict(strict=True)`).
    Safetensors,
}

/// Runs `mmssl import`.
pub fn import(args: &ImportArgs) -> Result<ImportReport, crate::CliError> {
    if args.run.out.is_none() && args.run.config.is_none() {
        return Err(ProtocolError::Config(
            "--out RUN is required: the run folder the imported weights become".into(),
        )
        .into());
    }
    if args.run.resume {
        return Err(ProtocolError::Config(
            "--resume does not apply to `import`, which makes a new run folder".into(),
        )
        .into());
    }
    let (config, warnings) = args.run.to_config()?;
    for w in &warnings {
        let _ = mmssl_protocol::print_line(&format!("warning: {w}"), true);
    }
    let device = select_device(config.backend)?;
    let mut bars = Terminal::new(args.run.quiet, config.training.batch_size);
    let settings = ImportSettings {
        files: args.files.clone(),
        encoders_only: args.encoders_only,
    };
    Ok(mmssl_protocol::interop::import_authors(
        &config,
        &settings,
        &mmssl_protocol::Registry::builtin(),
        &device,
        &mut bars,
    )?)
}

/// Runs `mmssl export`.
pub fn export(args: &ExportArgs) -> Result<ExportReport, crate::CliError> {
    let mut config = mmssl_protocol::load_run_config(&args.run)?;
    if let Some(b) = args.backend {
        config.backend = b;
    }
    let device = select_device(config.backend)?;
    let mut bars = Terminal::new(true, config.training.batch_size);
    Ok(mmssl_protocol::interop::export_run(
        &args.run,
        &args.out,
        args.heads,
        args.overwrite,
        &mmssl_protocol::Registry::builtin(),
        &device,
        &mut bars,
    )?)
}
