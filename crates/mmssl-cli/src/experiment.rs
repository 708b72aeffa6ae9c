//! `mmssl experiment`: a grid file to [`mmssl_protocol::Grid::run`], and the results table.
//! The grid format is documented on [`mmssl_protocol::Grid`].

use crate::backend::select_device;
use clap::Args;
use mmssl_protocol::Terminal;
use mmssl_protocol::{Grid, GridOptions, ProtocolError, Registry, SlurmOptions, SlurmResources};
use std::path::PathBuf;

/// Arguments of `mmssl experiment`.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ExperimentArgs {
    /// `status EXP`: where each cell of an experiment stands (instead of running a grid).
    #[command(subcommand)]
    pub command: Option<ExperimentCommand>,
    /// The grid file (TOML).
    #[arg(long, required = true)]
    pub grid: Option<PathBuf>,
    /// Where the runs and the aggregated results go (default: the grid's `out`, else
    /// `experiments/<grid file name>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only aggregate the finished runs (no training).
    #[arg(long)]
    pub aggregate_only: bool,
    /// Move aside (to `NAME.replaced-<time>`) and run again the cells whose folders hold runs
    /// made with other settings; without it such a grid is refused, naming the differences.
    #[arg(long)]
    pub rerun_changed: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Run only cell K of the grid (in the order datasets, methods, folds, seeds; from 0):
    /// what each task of a Slurm job array runs. No aggregation.
    #[arg(long, value_name = "K", conflicts_with_all = ["aggregate_only", "executor"])]
    pub cell: Option<usize>,
    /// Where the cells run: on this machine, one after another (`local`), or as a Slurm job
    /// array with an aggregation job after it (`slurm`, see docs/cluster.md). The resources
    /// come from the grid file's `[slurm]` section; the flags below override it key by key.
    #[arg(long, value_enum, default_value_t = Executor::Local)]
    pub executor: Executor,
    /// With `--executor slurm`: write the scripts and print them, submit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Slurm partition.
    #[arg(long, help_heading = "Slurm")]
    pub partition: Option<String>,
    /// GPUs per cell (`--gres=gpu:N`).
    #[arg(long, help_heading = "Slurm")]
    pub gpus: Option<u32>,
    /// CPUs per cell.
    #[arg(long, help_heading = "Slurm")]
    pub cpus: Option<u32>,
    /// Memory per cell (e.g. `16G`).
    #[arg(long, help_heading = "Slurm")]
    pub mem: Option<String>,
    /// Time limit per cell (e.g. `12:00:00`).
    #[arg(long, help_heading = "Slurm")]
    pub time: Option<String>,
    /// Slurm account.
    #[arg(long, help_heading = "Slurm")]
    pub account: Option<String>,
    /// At most this many cells at once.
    #[arg(long, help_heading = "Slurm")]
    pub max_parallel: Option<usize>,
    /// A further `sbatch` argument for the array (repeat for several), e.g. `--sbatch-arg=--qos=long`.
    #[arg(long, help_heading = "Slurm", allow_hyphen_values = true)]
    pub sbatch_arg: Vec<String>,
}

/// What `mmssl experiment` does besides running a grid.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ExperimentCommand {
    /// Per cell: finished, running, pending, failed, stopped (a checkpoint, nothing running
    /// it) or not started; from the run folders and, for a grid submitted to Slurm, from
    /// squeue and sacct. A failed cell shows its error's first lines and its log file.
    Status {
        /// The experiment folder (`--out` of the grid).
        exp: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Where `mmssl experiment` runs the cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Executor {
    /// On this machine, one cell after another.
    Local,
    /// As a Slurm job array (`sbatch`), with an aggregation job after it.
    Slurm,
}

/// Runs the grid's unfinished cells and aggregates (or runs one cell, or submits the grid to
/// Slurm); returns what to print.
pub fn experiment(args: &ExperimentArgs) -> Result<String, crate::CliError> {
    if let Some(ExperimentCommand::Status { exp, json }) = &args.command {
        let status = mmssl_protocol::grid_status(exp)?;
        return Ok(if *json {
            serde_json::to_string_pretty(&status).unwrap_or_default()
        } else {
            status.table()
        });
    }
    let Some(grid_file) = &args.grid else {
        return Err(ProtocolError::Config("--grid is required".into()).into());
    };
    let registry = Registry::builtin();
    let grid = Grid::load(grid_file, &registry)?;
    let out = args
        .out
        .clone()
        .or_else(|| grid.out.clone())
        .unwrap_or_else(|| {
            let stem = grid_file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "grid".into());
            PathBuf::from("experiments").join(stem)
        });
    let mut bars = Terminal::new(args.quiet, grid.base.training.batch_size);
    let options = GridOptions {
        aggregate_only: args.aggregate_only,
        rerun_changed: args.rerun_changed,
    };
    let slurm_flags = [
        ("--dry-run", args.dry_run),
        ("--partition", args.partition.is_some()),
        ("--gpus", args.gpus.is_some()),
        ("--cpus", args.cpus.is_some()),
        ("--mem", args.mem.is_some()),
        ("--time", args.time.is_some()),
        ("--account", args.account.is_some()),
        ("--max-parallel", args.max_parallel.is_some()),
        ("--sbatch-arg", !args.sbatch_arg.is_empty()),
    ];
    if args.executor == Executor::Local
        && let Some((flag, _)) = slurm_flags.iter().find(|(_, given)| *given)
    {
        return Err(ProtocolError::InvalidSetting {
            field: flag.trim_start_matches('-').into(),
            value: "given".into(),
            reason: "it applies to --executor slurm only".into(),
        }
        .into());
    }
    if args.executor == Executor::Slurm {
        let slurm = SlurmOptions {
            resources: SlurmResources {
                partition: args.partition.clone(),
                gpus: args.gpus,
                cpus: args.cpus,
                mem: args.mem.clone(),
                time: args.time.clone(),
                account: args.account.clone(),
                max_parallel: args.max_parallel,
                extra: args.sbatch_arg.clone(),
                ..Default::default()
            },
            dry_run: args.dry_run,
            ..Default::default()
        };
        let s = grid.submit_slurm(grid_file, &out, &registry, &slurm, options, &mut bars)?;
        return Ok(s.summary(args.dry_run));
    }
    let device = select_device(grid.base.backend)?;
    let again = || {
        let command = format!(
            "the same `mmssl experiment` command again (--out {})",
            out.display()
        );
        match std::env::var("SLURM_ARRAY_JOB_ID") {
            // In a task of a submitted job array, its script does it.
            Ok(_) => format!("{command}; this Slurm task requeues itself to do so"),
            Err(_) => command,
        }
    };
    if let Some(k) = args.cell {
        grid.run_cell(&out, k, &registry, &device, &mut bars)
            .map_err(|e| crate::CliError::resumable(e, again))?;
        return Ok(format!("cell {k} of {} finished", out.display()));
    }
    let rows = grid
        .run(&out, &registry, &device, options, &mut bars)
        .map_err(|e| crate::CliError::resumable(e, again))?;
    let summaries = mmssl_protocol::aggregate::summarise(&rows);
    Ok(format!(
        "{}\n{} result rows; tables and figures in {}",
        mmssl_protocol::aggregate::markdown(&summaries),
        rows.len(),
        out.display()
    ))
}
