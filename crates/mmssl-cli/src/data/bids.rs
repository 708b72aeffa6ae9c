//! `mmssl data bids`: a BIDS dataset to ALFF/fALFF derivatives and the cohort manifest
//! ([`mmssl_data::bids_to_manifest`]).

use super::DataCmdError;
use clap::{Args, ValueEnum};
use mmssl_data::{BidsConfig, BidsReport, DataError, FalffConfig, RunChoice, parse_label_map};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Arguments of `mmssl data bids`.
#[derive(Debug, Args)]
pub struct BidsArgs {
    /// The BIDS dataset's root folder (with `sub-*/`, `participants.tsv`).
    pub bids_dir: PathBuf,
    /// The derivative dataset to write: maps, `manifest.csv`, `bids_report.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// The task of the resting-state series (`*_task-<TASK>_bold.nii.gz`).
    #[arg(long, default_value = "rest")]
    pub task: String,
    /// Only T1w images with this acquisition label (`acq-<LABEL>`).
    #[arg(long)]
    pub t1_acq: Option<String>,
    /// Only BOLD series with this acquisition label.
    #[arg(long)]
    pub bold_acq: Option<String>,
    /// Several runs (or acquisitions) in a session: take the first, the last, average the
    /// BOLD runs' maps (`mean`; the T1w is the first), or skip the session (`refuse`).
    #[arg(long, value_enum, default_value_t = Runs::First)]
    pub runs: Runs,
    /// The column of participants.tsv (or sessions.tsv, which wins) holding the diagnosis
    /// (default: `diagnosis`, `group` or `dx`, whichever exists; none: all unlabelled).
    #[arg(long)]
    pub label_column: Option<String>,
    /// What the column's values mean: `VALUE=CLASS,...` with classes HC, AD, other or empty
    /// (no label), e.g. `--label-map "Cognitively normal=HC,AD Dementia=AD"`. Values HC, AD,
    /// other, empty and n/a need no mapping; any other value is an error.
    #[arg(long)]
    pub label_map: Option<String>,
    /// A column of participants.tsv or sessions.tsv to copy into the manifest (repeat).
    #[arg(long = "covariate", value_name = "COLUMN")]
    pub covariates: Vec<String>,
    /// The low-frequency band in Hz.
    #[arg(long, num_args = 2, value_names = ["LOW", "HIGH"], default_values_t = [0.01, 0.1])]
    pub band: Vec<f64>,
    /// Remove only the mean of each voxel's series, not its linear trend.
    #[arg(long)]
    pub no_detrend: bool,
    /// Compute every map again, even where one with the same settings exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Fail on the first session that cannot be used instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `--runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runs {
    /// The first run (lowest acquisition, then run number).
    First,
    /// The last run.
    Last,
    /// The mean of the BOLD runs' maps.
    Mean,
    /// Skip sessions with several runs.
    Refuse,
}

impl BidsArgs {
    /// The library settings of these flags.
    pub fn config(&self) -> Result<BidsConfig, DataCmdError> {
        let label_map = match &self.label_map {
            Some(text) => parse_label_map(text).map_err(|reason| {
                DataCmdError::Data(DataError::InvalidParameter {
                    name: "--label-map",
                    value: text.clone(),
                    reason,
                })
            })?,
            None => Default::default(),
        };
        Ok(BidsConfig {
            task: self.task.clone(),
            t1_acq: self.t1_acq.clone(),
            bold_acq: self.bold_acq.clone(),
            runs: match self.runs {
                Runs::First => RunChoice::First,
                Runs::Last => RunChoice::Last,
                Runs::Mean => RunChoice::Mean,
                Runs::Refuse => RunChoice::Refuse,
            },
            label_column: self.label_column.clone(),
            label_map,
            covariates: self.covariates.clone(),
            falff: FalffConfig {
                band: [self.band[0], self.band[1]],
                detrend: !self.no_detrend,
                ..Default::default()
            },
            overwrite: self.overwrite,
            strict: self.strict,
        })
    }
}

/// Runs the conversion; returns what to print.
pub fn bids(args: &BidsArgs) -> Result<String, DataCmdError> {
    let config = args.config()?;
    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "fALFF [{bar:25}] {pos}/{len} sessions, eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let report =
        mmssl_data::bids_to_manifest(&args.bids_dir, &args.out, &config, &|done, total| {
            if let Some(bar) = &bar {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
        })?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    Ok(text(&report))
}

/// The summary: counts, every skipped session with its reason, the next command.
pub fn text(report: &BidsReport) -> String {
    let count = |l: &str| report.used.iter().filter(|u| u.label == l).count();
    let (computed, reused) = report.computed_reused();
    let mut out = format!(
        "{} sessions of {} subjects in {} (HC {}, AD {}, other {}, unlabelled {}; label column: {})\n\
         maps computed for {computed} sessions, reused for {reused}\n",
        report.used.len(),
        report
            .used
            .iter()
            .map(|u| &u.subject)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        report.manifest.display(),
        count("HC"),
        count("AD"),
        count("other"),
        count(""),
        report.label_column.as_deref().unwrap_or("none"),
    );
    if !report.skipped.is_empty() {
        out += &format!("{} sessions skipped:\n", report.skipped.len());
        for s in &report.skipped {
            let ses = if s.session.is_empty() {
                String::new()
            } else {
                format!(" ses-{}", s.session)
            };
            out += &format!("  sub-{}{ses}: {}\n", s.subject, s.reason);
        }
    }
    out += &format!(
        "next: mmssl run --dataset oasis3 --manifest {}",
        report.manifest.display()
    );
    out
}
