//! `mmssl run` and `mmssl pretrain`: flags (and `--config FILE`) to a
//! [`RunConfig`], progress on the terminal. The protocol itself is
//! `mmssl_protocol::run_with`.

use crate::backend::{BackendKind, select_device};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mmssl_protocol::{
    AugmentKind, DatasetKind, MethodSpec, Observer, Phase, ProtocolError, RunConfig, ScheduleKind,
};
use mmssl_train::{EpochMetrics, Progress, StepReport};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

/// `YYYYMMDD-HHMMSS` in UTC, for default run folders.
pub fn timestamp() -> String {
    mmssl_protocol::utc_stamp(std::time::SystemTime::now())
}

/// [`mmssl_protocol::utc_stamp`] of `secs` seconds after 1970-01-01 UTC.
#[cfg(test)]
fn civil_time(secs: u64) -> String {
    mmssl_protocol::utc_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
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
    /// The quick main job of `cargo run --release`: CR-XX-CC on the embedded MNIST test split
    /// as Two-View MNIST, 2 epochs, 10 evaluation epochs.
    pub fn quick_demo() -> Self {
        RunArgs {
            out: Some(PathBuf::from("runs/demo")),
            // The demo is a throwaway: each replaces the last.
            overwrite: true,
            epochs: Some(2),
            eval_epochs: Some(10),
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
        c.output.resume |= self.resume;
        c.output.overwrite |= self.overwrite;
        if default_out {
            // A new folder per run: the default never lands on an earlier run.
            c.output.dir = PathBuf::from("runs").join(format!(
                "{}-{}",
                mmssl_protocol::slug(&c.method.to_string()),
                timestamp()
            ));
        }
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
        let uses = |flag: &str| match c.data.dataset {
            DatasetKind::TwoViewMnist => flag == "--data-dir",
            DatasetKind::MnistFashion | DatasetKind::MnistSvhn => {
                flag == "--data-dir" || flag == "--second-data-dir"
            }
            DatasetKind::Oasis3 => flag == "--manifest",
        };
        for (flag, given) in [
            ("--data-dir", self.data_dir.is_some()),
            ("--second-data-dir", self.second_data_dir.is_some()),
            ("--manifest", self.manifest.is_some()),
        ] {
            if given && !uses(flag) {
                warnings.push(format!(
                    "{flag} is not read by the dataset {}: ignored",
                    c.data.dataset
                ));
            }
        }
        let registry = mmssl_protocol::Registry::builtin();
        let takes = |method: &MethodSpec, option: &str| {
            registry
                .options_of(method)
                .is_ok_and(|o| o.iter().any(|x| x.name == option))
        };
        for ((flag, option), value) in METHOD_FLAGS.iter().zip(values) {
            let Some(value) = value else { continue };
            if takes(&c.method, option) {
                c.method.set_option(option, value);
            } else {
                let takers: Vec<&str> = registry
                    .names()
                    .into_iter()
                    .filter(|n| takes(&MethodSpec::new(*n), option))
                    .collect();
                warnings.push(format!(
                    "{flag} sets the option `{option}` of {}, not of the method `{}`: ignored",
                    takers.join(" and "),
                    c.method
                ));
            }
        }
        Ok((c, warnings))
    }
}

/// Progress bars (or nothing with `--quiet`) and messages on stderr.
pub struct Bars {
    bar: Option<ProgressBar>,
    quiet: bool,
    batch_size: usize,
    epoch_start: Instant,
    /// Whether the stop request was announced.
    told: std::sync::atomic::AtomicBool,
}

impl Bars {
    /// Bars for a run with batches of `batch_size`; none when `quiet`.
    pub fn new(quiet: bool, batch_size: usize) -> Self {
        // A bar only on a terminal: elsewhere (nohup, a cluster job, CI) plain lines.
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:25}] {pos}/{len} steps, eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Bars {
            bar,
            quiet,
            batch_size,
            epoch_start: Instant::now(),
            told: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn print(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Bars {
    fn step(&mut self, r: &StepReport<'_>) {
        let StepReport {
            epoch,
            step,
            steps,
            loss,
            terms,
        } = *r;
        if let Some(bar) = &self.bar {
            if step == 0 {
                self.epoch_start = Instant::now();
                bar.set_length(steps as u64);
                bar.set_position(0);
                bar.set_prefix(format!("epoch {}", epoch + 1));
            }
            bar.set_position(step as u64 + 1);
            let pairs = ((step + 1) * self.batch_size) as f64;
            let rate = pairs / self.epoch_start.elapsed().as_secs_f64().max(1e-9);
            let mut msg = format!("loss {loss:.4}");
            for (name, v) in terms.iter().take(8) {
                msg += &format!(" {name} {v:.3}");
            }
            msg += &format!(" | {rate:.0} pairs/s");
            bar.set_message(msg);
        }
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        if self.quiet {
            return;
        }
        let terms: Vec<String> = m.terms.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        self.print(format!(
            "epoch {:>3}: train loss {:.4} ({}), valid loss {}, {:.0} pairs/s, {:.1} s waiting for data",
            m.epoch + 1,
            m.train_loss,
            terms.join(", "),
            m.valid_loss.map_or("-".into(), |v| format!("{v:.4}")),
            m.pairs_per_second,
            m.data_wait_seconds
        ));
    }

    /// A SIGTERM or Ctrl-C was received ([`crate::signals`]); said once, even when quiet.
    fn stop_requested(&self) -> bool {
        let stop = crate::signals::requested();
        if stop && !self.told.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.print(
                "stop requested: finishing the current step and saving a checkpoint (Ctrl-C \
                 again quits at once)"
                    .to_string(),
            );
        }
        stop
    }
}

impl Observer for Bars {
    fn phase(&mut self, phase: Phase) {
        if let (Some(bar), Phase::Evaluating { .. } | Phase::Analysing) = (&self.bar, phase) {
            bar.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let line = match phase {
            Phase::Loading => "loading the data".to_string(),
            Phase::Pretraining => "pretraining".to_string(),
            Phase::Evaluating {
                modality,
                random_init,
            } => format!(
                "linear evaluation of modality {modality} ({})",
                if random_init {
                    "random initialisation"
                } else {
                    "pretrained"
                }
            ),
            Phase::Analysing => "similarity of the modalities".to_string(),
            Phase::Explaining { random_init } => format!(
                "attribution maps of the {} model",
                if random_init {
                    "randomly initialised"
                } else {
                    "pretrained"
                }
            ),
        };
        self.print(line);
    }

    fn warning(&mut self, message: &str) {
        self.print(format!("warning: {message}"));
    }

    fn note(&mut self, message: &str) {
        if !self.quiet {
            self.print(message.to_string());
        }
    }
}

/// Runs `phases` of the configuration `args` describe, with progress on stderr.
pub fn run_phases(
    args: &RunArgs,
    phases: mmssl_protocol::Phases,
) -> Result<(mmssl_protocol::RunReport, PathBuf), crate::CliError> {
    let (config, warnings) = args.to_config()?;
    for w in &warnings {
        eprintln!("warning: {w}");
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
    let mut bars = Bars::new(quiet, config.training.batch_size);
    let registry = mmssl_protocol::Registry::builtin();
    let dir = &config.output.dir;
    let report =
        mmssl_protocol::run_with(config, &registry, phases, &device, &mut bars).map_err(|e| {
            crate::CliError::resumable(e, || match (phases.pretrain, phases.evaluate) {
                (true, true) => format!("mmssl run --resume --out {}", dir.display()),
                (true, false) => format!("mmssl pretrain --resume --out {}", dir.display()),
                (false, _) => format!("mmssl linear-eval --run {}", dir.display()),
            })
        })?;
    Ok((report, dir.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(flags: &[&str]) -> RunArgs {
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            run: RunArgs,
        }
        let mut argv = vec!["mmssl-run"];
        argv.extend(flags);
        Flags::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn civil_times_of_known_instants() {
        assert_eq!(civil_time(0), "19700101-000000");
        // 2000-02-29 12:34:56 UTC, a leap day.
        assert_eq!(civil_time(951_827_696), "20000229-123456");
        // 2026-12-04 18:07:51 UTC.
        assert_eq!(civil_time(1_796_407_671), "20261204-180751");
    }

    #[test]
    fn flags_override_the_config_file_and_the_defaults() {
        let (c, w) = parse(&[]).to_config().unwrap();
        assert_eq!(w.len(), 0);
        // The default folder is a new one per run.
        assert!(c.output.dir.starts_with("runs"));
        assert!(
            c.output.dir.to_string_lossy().contains("CR-XX-CC-"),
            "{:?}",
            c.output.dir
        );
        let mut d = c.clone();
        d.output.dir = RunConfig::default().output.dir;
        assert_eq!(d, RunConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "epochs = 3\ntrain_limit = 100\n[training]\nbatch_size = 32\n",
        )
        .unwrap();
        let (c, _) = parse(&[
            "--config",
            file.to_str().unwrap(),
            "--epochs",
            "5",
            "--method",
            "dccae;cca_norm=frobenius",
            "--cca-dim",
            "12",
            "--lr",
            "0.001",
            "--bn-train-mode",
        ])
        .to_config()
        .unwrap();
        assert_eq!((c.training.epochs, c.training.batch_size), (5, 32));
        assert_eq!((c.data.train_limit, c.training.lr), (Some(100), 0.001));
        assert_eq!(c.method.to_string(), "dccae;cca_norm=frobenius;cca_dim=12");
        assert!(c.evaluation.bn_train_mode);
        let (c, w) = parse(&["--objective", "CR", "--mmvae-k", "3"])
            .to_config()
            .unwrap();
        assert_eq!(c.method.to_string(), "CR");
        assert!(
            w[0].contains("--mmvae-k") && w[0].contains("mmvae"),
            "{w:?}"
        );
        let e = parse(&["--objective", "CR", "--method", "dccae"])
            .to_config()
            .unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
        let demo = RunArgs::quick_demo().to_config().unwrap().0;
        assert_eq!(
            (demo.training.epochs, demo.evaluation.epochs),
            (2, Some(10))
        );
        assert_eq!(demo.output.dir, PathBuf::from("runs/demo"));
    }
}
