//! `mmssl run` and `mmssl pretrain`: flags (and `--config FILE`) to a
//! [`RunConfig`], progress on the terminal. The protocol itself is
//! `mmssl_protocol::run_with`.

use crate::backend::{BackendKind, select_device};
use clap::Args;
use mmssl_protocol::{
    AugmentKind, DatasetKind, MethodSpec, ProtocolError, RunConfig, ScheduleKind, Terminal,
};
use std::path::PathBuf;

/// `YYYYMMDD-HHMMSS` in UTC, for default run folders.
pub fn timestamp() -> String {
    mmssl_protocol::utc_stamp(std::time::SystemTime::now())
}

/// Arguments of `mmssl run` and `mmssl pretrain`. Flags not given keep the value of
/// `--config FILE` (a run configuration, nested or with the flags' keys), else the default.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// The dataset: two-view-mnist (default), mnist-fashion, mnist-svhn or oasis3.
    #[arg(long)]
    pub dataset: Option<DatasetKind>,
    /// The objective, e.g. `CR-XX-CC` (default), `RR`, `CR:1,XX:0.5`, with options:
    /// `XX;estimator=jsd;critic=cosine(0.1);clip=none;penalty=0;latent_dim=32`.
    #[arg(long)]
    pub objective: Option<String>,
    /// The method: any objective spec, or a baseline (supervised, ae, dccae, cr-cca, rr-ae,
    /// mmvae, lcca), with options: `dccae;cca_dim=10;cca_norm=frobenius`,
    /// `mmvae;k=10;estimator=dreg`. `mmssl methods` lists every option.
    #[arg(long)]
    pub method: Option<String>,
    /// Folder with the MNIST IDX files (train and t10k). Without it, the MNIST test split
    /// shipped with mmssl is split into 8,000 training, 1,000 validation and 1,000 test images.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The run directory (default: a new folder `runs/<method>-<date>-<time>`). A folder
    /// holding an earlier run is refused unless `--resume` or `--overwrite`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Pretraining epochs (default 50).
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// The second modality's folder for the label-paired datasets (Fashion-MNIST IDX files
    /// or SVHN .mat files); default: `fashion-mnist` or `svhn` beside `--data-dir`.
    #[arg(long)]
    pub second_data_dir: Option<PathBuf>,
    /// The cohort manifest for `--dataset oasis3` (CSV: subject, session, t1, falff, label).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// How `oasis3` pretraining pairs are augmented (random crop of the padded volume and
    /// flips): paired (default, one draw for T1 and fALFF, the authors' pipeline), separate
    /// (one draw per modality, so the draw cannot be matched instead of the anatomy) or none.
    #[arg(long)]
    pub augment: Option<AugmentKind>,
    /// Use only N training pairs: the first N for Two-View MNIST, a seeded random N for the
    /// label-paired datasets (whose pairs are ordered by class).
    #[arg(long, allow_negative_numbers = true)]
    pub train_limit: Option<usize>,
    /// Compute backend: cpu (default), wgpu or cuda.
    #[arg(long)]
    pub backend: Option<BackendKind>,
    /// Seed of every random choice (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    /// Which fold validates: of the stratified 12-fold split of the training data (with the
    /// embedded MNIST subset: which of its nine 1,000-image blocks; cohorts: of 5). Default 0.
    #[arg(long, allow_negative_numbers = true)]
    pub fold: Option<usize>,
    /// Pretraining batch size (default 64).
    #[arg(long, allow_negative_numbers = true)]
    pub batch_size: Option<usize>,
    /// RAdam's learning rate when no schedule is used (`--schedule constant`), for
    /// pretraining and linear evaluation (default 4e-4, the paper's).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// The peak learning rate of the one-cycle schedule (default 0.01, the paper's; it starts
    /// at max/25 and ends at max/25/1e4, PyTorch's OneCycleLR defaults).
    #[arg(long, allow_negative_numbers = true)]
    pub max_lr: Option<f64>,
    /// The learning-rate schedule, stepped per batch: one-cycle (default) or constant.
    #[arg(long)]
    pub schedule: Option<ScheduleKind>,
    /// MMVAE's importance samples per modality: the option `k` of `--method mmvae`.
    #[arg(long, allow_negative_numbers = true)]
    pub mmvae_k: Option<usize>,
    /// MMVAE's estimator, dreg, iwae or elbo: the option `estimator` of `--method mmvae`.
    #[arg(long)]
    pub mmvae_estimator: Option<String>,
    /// Learn MMVAE's prior scale: the option `learn_prior` of `--method mmvae`.
    #[arg(long)]
    pub mmvae_learn_prior: bool,
    /// Output size of the deep CCA heads of `dccae` and `cr-cca` (their option `cca_dim`).
    #[arg(long, allow_negative_numbers = true)]
    pub cca_dim: Option<usize>,
    /// The deep CCA norm, trace or frobenius (option `cca_norm` of `dccae`, `cr-cca`).
    #[arg(long)]
    pub cca_norm: Option<String>,
    /// Only the top K canonical correlations count (option `cca_top_k` of `dccae`, `cr-cca`).
    #[arg(long, allow_negative_numbers = true)]
    pub cca_top_k: Option<usize>,
    /// The deep CCA ridge (option `cca_reg` of `dccae`, `cr-cca`).
    #[arg(long, allow_negative_numbers = true)]
    pub cca_reg: Option<f64>,
    /// Canonical components of `--method lcca` (its option `components`).
    #[arg(long, allow_negative_numbers = true)]
    pub lcca_components: Option<usize>,
    /// Linear-evaluation epochs (default: 50 for images, 500 for volumes, the paper's).
    #[arg(long, allow_negative_numbers = true)]
    pub eval_epochs: Option<usize>,
    /// Extract the linear-evaluation features with the encoders' BatchNorm in training mode
    /// (statistics of each batch of `--batch-size` items), as the authors' code does, instead
    /// of evaluation mode (running statistics, the default); see docs/training.md.
    #[arg(long)]
    pub bn_train_mode: bool,
    /// Loader threads preparing the next batches while a step trains (0: load in the training
    /// thread; default 2). Changes speed only, never results.
    #[arg(long, allow_negative_numbers = true)]
    pub workers: Option<usize>,
    /// Start pretraining from these weights instead of the seeded initialisation: a run
    /// folder (e.g. one `mmssl import` made; its method is taken when --method is not given)
    /// or a `.bpk` checkpoint of a model of the same method and options.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// Continue the run in `--out` from its last checkpoint, with the settings in its
    /// config.toml (flags given must agree with them).
    #[arg(long)]
    pub resume: bool,
    /// Delete the results of the earlier run in `--out` first (a folder holding one is
    /// refused otherwise).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// A run configuration file (TOML or JSON; nested as a run's `config.toml`, or with the
    /// flags' keys, e.g. `train_limit = 1000`); flags given on the command line win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Any setting, `KEY=VALUE` (repeatable), after the flags: `knn_k=10`,
    /// `evaluation.retrieval=false`, `map_points=500` (docs/protocol.md lists them).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
}

/// The flags of the baselines' options: (flag, the option it sets). Which methods take an
/// option is the method registry's to say.
const METHOD_FLAGS: &[(&str, &str)] = &[
    ("--mmvae-k", "k"),
    ("--mmvae-estimator", "estimator"),
    ("--mmvae-learn-prior", "learn_prior"),
    ("--cca-dim", "cca_dim"),
    ("--cca-norm", "cca_norm"),
    ("--cca-top-k", "cca_top_k"),
    ("--cca-reg", "cca_reg"),
    ("--lcca-components", "components"),
];

impl RunArgs {
    /// The quick main job of `cargo run --release`: CR-XX-CC on the embedded MNIST test split as
    /// Two-View MNIST, 2 epochs, 10 evaluation epochs, embedding maps, online evaluation.
    pub fn quick_demo() -> Self {
        RunArgs {
            out: Some(PathBuf::from("runs/demo")),
            // The demo is a throwaway: each replaces the last.
            overwrite: true,
            epochs: Some(2),
            eval_epochs: Some(10),
            settings: vec!["maps=true".into(), "online_every=1".into()],
            ..Default::default()
        }
    }

    /// The run configuration: `--config` (with `--resume`: the run folder's own), else the
    /// defaults, then every flag given. Returns it with warnings about flags that do not apply.
    pub fn to_config(&self) -> Result<(RunConfig, Vec<String>), ProtocolError> {
        let mut c = match (&self.config, self.resume, &self.out) {
            (Some(path), _, _) => RunConfig::load(path)?,
            (None, true, Some(dir)) => {
                if !dir.join("config.toml").exists() {
                    return Err(ProtocolError::NothingToResume { dir: dir.clone() });
                }
                mmssl_protocol::load_run_config(dir)?
            }
            (None, true, None) => {
                return Err(ProtocolError::Config(
                    "--resume needs --out RUN, the folder of the run to continue".into(),
                ));
            }
            (None, false, _) => RunConfig::default(),
        };
        let default_out = self.out.is_none() && self.config.is_none();
        if let (Some(o), Some(m)) = (&self.objective, &self.method) {
            return Err(ProtocolError::Config(format!(
                "both --objective {o} and --method {m} given: a run trains one method"
            )));
        }
        if let Some(m) = self.method.as_ref().or(self.objective.as_ref()) {
            c.method = m.parse::<MethodSpec>()?;
        } else if let Some(from) = self.init_from.as_ref().filter(|_| self.config.is_none()) {
            // Fine-tuning a run: its model, so its method and options.
            if from.join("config.toml").is_file() {
                c.method = mmssl_protocol::load_run_config(from)?.method;
            }
        }
        if let Some(from) = &self.init_from {
            c.training.init_from = Some(from.clone());
        }
        macro_rules! set {
            ($($flag:ident => $field:expr),* $(,)?) => {
                $(if let Some(v) = &self.$flag { $field = v.clone().into(); })*
            };
        }
        set!(
            dataset => c.data.dataset,
            data_dir => c.data.data_dir,
            second_data_dir => c.data.second_data_dir,
            manifest => c.data.manifest,
            train_limit => c.data.train_limit,
            fold => c.data.fold,
            augment => c.data.augment,
            out => c.output.dir,
            epochs => c.training.epochs,
            batch_size => c.training.batch_size,
            lr => c.training.lr,
            max_lr => c.training.max_lr,
            schedule => c.training.schedule,
            workers => c.training.workers,
            backend => c.backend,
            seed => c.seed,
            eval_epochs => c.evaluation.epochs,
        );
        c.evaluation.bn_train_mode |= self.bn_train_mode;
        c.set_all(&self.settings, None)?;
        c.output.resume |= self.resume;
        c.output.overwrite |= self.overwrite;
        let values: [Option<String>; 8] = [
            self.mmvae_k.map(|v| v.to_string()),
            self.mmvae_estimator.clone(),
            self.mmvae_learn_prior.then(|| "true".to_string()),
            self.cca_dim.map(|v| v.to_string()),
            self.cca_norm.clone(),
            self.cca_top_k.map(|v| v.to_string()),
            self.cca_reg.map(|v| v.to_string()),
            self.lcca_components.map(|v| v.to_string()),
        ];
        let mut warnings = Vec::new();
        // Data flags the dataset does not read.
        for (flag, key, given) in [
            ("--data-dir", "data_dir", self.data_dir.is_some()),
            (
                "--second-data-dir",
                "second_data_dir",
                self.second_data_dir.is_some(),
            ),
            ("--manifest", "manifest", self.manifest.is_some()),
        ] {
            if given && !c.data.dataset.reads(key) {
                warnings.push(format!(
                    "{flag} is not read by the dataset {}: ignored",
                    c.data.dataset
                ));
            }
        }
        let registry = mmssl_protocol::Registry::builtin();
        for ((flag, option), value) in METHOD_FLAGS.iter().zip(values) {
            let Some(value) = value else { continue };
            if registry.takes(&c.method, option) {
                c.method.set_option(option, value);
            } else {
                warnings.push(format!(
                    "{flag} sets the option `{option}` of {}, not of the method `{}`: ignored",
                    registry.taking(option).join(" and "),
                    c.method
                ));
            }
        }
        if default_out {
            // A new folder per run, made at once (once the settings are known to be valid):
            // the default never lands on an earlier run, nor on one started in the same second.
            c.validate(&registry)?;
            let stem = format!(
                "{}-{}",
                mmssl_protocol::slug(&c.method.to_string()),
                timestamp()
            );
            c.output.dir = mmssl_protocol::claim_new(&PathBuf::from("runs").join(stem))?;
        }
        Ok((c, warnings))
    }
}

/// The terminal display of the commands: [`mmssl_protocol::Terminal`].
#[deprecated(since = "0.1.0", note = "renamed mmssl_protocol::Terminal")]
pub type Bars = Terminal;

/// Runs `phases` of the configuration `args` describe, with progress on stderr.
pub fn run_phases(
    args: &RunArgs,
    phases: mmssl_protocol::Phases,
) -> Result<(mmssl_protocol::RunReport, PathBuf), crate::CliError> {
    let (config, warnings) = args.to_config()?;
    for w in &warnings {
        let _ = mmssl_protocol::print_line(&format!("warning: {w}"), true);
    }
    run_config(&config, phases, args.quiet)
}

/// Runs `phases` of `config` on the backend it names.
pub fn run_config(
    config: &RunConfig,
    phases: mmssl_protocol::Phases,
    quiet: bool,
) -> Result<(mmssl_protocol::RunReport, PathBuf), crate::CliError> {
    let device = select_device(config.backend)?;
    let mut bars = Terminal::new(quiet, config.training.batch_size);
    let registry = mmssl_protocol::Registry::builtin();
    let dir = &config.output.dir;
    let report =
        mmssl_protocol::run_with(config, &registry, phases, &device, &mut bars).map_err(|e| {
            crate::CliError::resumable(e, || mmssl_protocol::continue_command(config, phases))
        })?;
    Ok((report, dir.clone()))
}
