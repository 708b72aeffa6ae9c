//! `mmssl experiment`: a grid file to [`mmssl_protocol::Grid::run`], and the results table.
//! The grid format is documented on [`mmssl_protocol::Grid`].

use crate::backend::select_device;
use crate::run::Bars;
use clap::Args;
use mmssl_protocol::aggregate::ResultRow;
use mmssl_protocol::{Grid, GridOptions, Registry};
use std::path::PathBuf;

/// Arguments of `mmssl experiment`.
#[derive(Debug, Clone, Args)]
pub struct ExperimentArgs {
    /// The grid file (TOML).
    #[arg(long)]
    pub grid: PathBuf,
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
}

/// Runs the grid's unfinished cells and aggregates; returns the rows and the output folder.
pub fn experiment(args: &ExperimentArgs) -> Result<(Vec<ResultRow>, PathBuf), crate::CliError> {
    let registry = Registry::builtin();
    let grid = Grid::load(&args.grid, &registry)?;
    let out = args
        .out
        .clone()
        .or_else(|| grid.out.clone())
        .unwrap_or_else(|| {
            let stem = args
                .grid
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "grid".into());
            PathBuf::from("experiments").join(stem)
        });
    let device = select_device(grid.base.backend)?;
    let mut bars = Bars::new(args.quiet, grid.base.training.batch_size);
    let options = GridOptions {
        aggregate_only: args.aggregate_only,
        rerun_changed: args.rerun_changed,
    };
    let rows = grid.run(&out, &registry, &device, options, &mut bars)?;
    Ok((rows, out))
}
