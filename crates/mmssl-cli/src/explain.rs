//! `mmssl explain RUN`: attribution maps of a pretrained run (see
//! [`mmssl_protocol::explain`]).

use crate::backend::{BackendKind, select_device};
use clap::{Args, ValueEnum};
use mmssl_protocol::Terminal;
use mmssl_protocol::{
    AtlasSetting, ExplainConfig, ExplainReport, ExplainSet, ExplainTarget, ProtocolError,
    load_run_config,
};
use mmssl_train::Attribution;
use std::path::PathBuf;

/// What to attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// The leading canonical components between the modalities' representations.
    Shared,
    /// One unit of the representation (`--unit`).
    Unit,
    /// The linear classifier's decision (AD against HC).
    Decision,
}

/// How to attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Plain gradients.
    Gradient,
    /// SmoothGrad (`--samples`, `--noise`, `--seed`).
    Smoothgrad,
    /// Integrated gradients from the zero input (`--steps`).
    IntegratedGradients,
}

/// Arguments of `mmssl explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The run folder (made by `mmssl pretrain` or `mmssl run`).
    pub run: PathBuf,
    /// What to attribute.
    #[arg(long, value_enum, default_value = "shared")]
    pub target: TargetArg,
    /// Canonical components of the shared target (one set of maps each).
    #[arg(long, default_value_t = 1)]
    pub components: usize,
    /// The unit of the unit target.
    #[arg(long)]
    pub unit: Option<usize>,
    /// How to attribute.
    #[arg(long, value_enum, default_value = "integrated-gradients")]
    pub method: MethodArg,
    /// Path points of integrated gradients.
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// Noisy copies of SmoothGrad.
    #[arg(long, default_value_t = 25)]
    pub samples: usize,
    /// SmoothGrad's noise, a fraction of each item's value range.
    #[arg(long, default_value_t = 0.15)]
    pub noise: f64,
    /// SmoothGrad's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Which items to explain: test, valid (the linear evaluation's validation set), train
    /// (its training set, each item once) or all.
    #[arg(long, default_value = "test")]
    pub set: ExplainSet,
    /// Explain only the first N items of the set.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Maps of |attribution| (where the input matters, whichever the direction).
    #[arg(long)]
    pub magnitude: bool,
    /// FWHM (mm) of the Gaussian smoothing of each volume map before the group maps (0: none).
    #[arg(long, default_value_t = 8.0)]
    pub smooth: f64,
    /// Also explain the model at its random initialisation (same seed), for reference.
    #[arg(long)]
    pub reference: bool,
    /// Do not write each item's map.
    #[arg(long)]
    pub no_item_maps: bool,
    /// Items per attribution batch.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// A NIfTI volume to draw the figures over (default: the mean input T1).
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// |t| from which voxels form clusters.
    #[arg(long, default_value_t = 3.0)]
    pub threshold: f32,
    /// Smallest cluster, in voxels.
    #[arg(long, default_value_t = 5)]
    pub min_voxels: usize,
    /// The atlas naming each cluster's region: `auto` (AAL from Debian's mricron-data where
    /// installed), `none`, or a label volume in the maps' template space.
    #[arg(long, default_value = "auto", value_name = "auto|none|PATH")]
    pub atlas: String,
    /// The region names of `--atlas PATH` (`index name` per line; default: beside it,
    /// `<stem>.nii.txt`, `<stem>.txt` or `<stem>.tsv`).
    #[arg(long, value_name = "PATH")]
    pub atlas_labels: Option<PathBuf>,
    /// Output folder (default RUN/explain).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an earlier explanation in the output folder.
    #[arg(long)]
    pub overwrite: bool,
    /// Compute backend, cpu, wgpu or cuda (default: the run's).
    #[arg(long)]
    pub backend: Option<BackendKind>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

impl ExplainArgs {
    /// The library settings these flags give.
    pub fn config(&self) -> Result<ExplainConfig, ProtocolError> {
        let target = match self.target {
            TargetArg::Shared => ExplainTarget::Shared {
                components: self.components,
            },
            TargetArg::Unit => ExplainTarget::Unit {
                unit: self
                    .unit
                    .ok_or_else(|| ProtocolError::Config("--target unit needs --unit N".into()))?,
            },
            TargetArg::Decision => ExplainTarget::Decision,
        };
        if self.unit.is_some() && self.target != TargetArg::Unit {
            return Err(ProtocolError::Config(
                "--unit applies to --target unit".into(),
            ));
        }
        let attribution = match self.method {
            MethodArg::Gradient => Attribution::Gradient,
            MethodArg::Smoothgrad => Attribution::SmoothGrad {
                samples: self.samples,
                noise: self.noise,
                seed: self.seed,
            },
            MethodArg::IntegratedGradients => {
                Attribution::IntegratedGradients { steps: self.steps }
            }
        };
        let config = ExplainConfig {
            target,
            attribution,
            set: self.set,
            magnitude: self.magnitude,
            smoothing_mm: self.smooth,
            reference: self.reference,
            per_item: !self.no_item_maps,
            limit: self.limit,
            batch_size: self.batch_size,
            template: self.template.clone(),
            cluster_threshold: self.threshold,
            cluster_min_voxels: self.min_voxels,
            out: self.out.clone(),
            overwrite: self.overwrite,
            atlas: AtlasSetting::parse(&self.atlas, self.atlas_labels.as_deref())?,
            ..ExplainConfig::default()
        };
        config.check()?;
        Ok(config)
    }
}

/// Runs `mmssl explain`.
pub fn run(args: &ExplainArgs) -> Result<ExplainReport, crate::CliError> {
    let config = args.config()?;
    let run = load_run_config(&args.run)?;
    let device = select_device(args.backend.unwrap_or(run.backend))?;
    let mut bars = Terminal::new(args.quiet, run.training.batch_size);
    Ok(mmssl_protocol::explain(
        &args.run, &config, &device, &mut bars,
    )?)
}
