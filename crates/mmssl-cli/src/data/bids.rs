//! `mmssl data bids`: a BIDS dataset to ALFF/fALFF derivatives and the cohort manifest
//! ([`mmssl_data::bids_to_manifest`]).

use super::DataCmdError;
use clap::{Args, ValueEnum};
use mmssl_data::{
    AnatImage, BidsConfig, ConfoundsConfig, DataError, FalffConfig, RunChoice, Standardise,
    TrSource, parse_label_map,
};
use std::io::IsTerminal;
use std::path::PathBuf;

/// Arguments of `mmssl data bids`.
#[derive(Debug, Args)]
pub struct BidsArgs {
    /// The BIDS dataset's root folder (with `sub-*/`, `participants.tsv`).
    pub bids_dir: PathBuf,
    /// A derivative dataset of it to take the images from: fMRIPrep's output folder (or
    /// C-PAC's, any BIDS-Derivatives layout): preprocessed BOLD, brain masks, confounds, T1w.
    #[arg(long, value_name = "DIR")]
    pub derivatives: Option<PathBuf>,
    /// The space of the derivative images (`space-<SPACE>`; `T1w` for the subject's own).
    #[arg(long, default_value = "MNI152NLin2009cAsym", requires = "derivatives")]
    pub space: String,
    /// The description of the derivative BOLD series (`desc-<DESC>_bold`).
    #[arg(long, default_value = "preproc", requires = "derivatives")]
    pub desc: String,
    /// The anatomical modality: the preprocessed T1w inside its brain mask, or the grey-matter
    /// probability map (`label-GM_probseg`).
    #[arg(long, value_enum, default_value_t = Anat::T1w, requires = "derivatives")]
    pub anat: Anat,
    /// Confounds regressed from each derivative series: presets `6p`, `24p`, `9p`, `36p`,
    /// `none`, terms `motion6`, `motion24`, `wm-csf`, `wm-csf8`, `gs`, `gs4`, or column names
    /// of the confounds table, joined by `+` (default with --derivatives: `24p+wm-csf`).
    #[arg(long, value_name = "MODEL", requires = "derivatives")]
    pub confounds: Option<String>,
    /// Scrub (censor) frames whose framewise displacement exceeds this many mm; censored frames
    /// are left out of the regression and interpolated for the spectrum.
    #[arg(long, value_name = "MM", requires = "derivatives")]
    pub fd_threshold: Option<f64>,
    /// With --fd-threshold: also censor runs of kept frames shorter than this (nilearn's 5).
    #[arg(
        long,
        value_name = "FRAMES",
        default_value_t = 0,
        requires = "fd_threshold"
    )]
    pub min_segment: usize,
    /// Skip a series whose censoring keeps fewer than this fraction of its frames.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.5)]
    pub min_kept: f64,
    /// Smooth the maps inside the brain mask with a Gaussian of this FWHM in mm (0: none).
    #[arg(long, value_name = "MM", default_value_t = 0.0)]
    pub smooth_fwhm: f64,
    /// The fALFF map the manifest names: as computed, z-scored inside the brain mask, or
    /// divided by its mean there (all three are written; default: z with --derivatives, none
    /// without).
    #[arg(long, value_enum)]
    pub standardise: Option<Standardisation>,
    /// The repetition time to use when the JSON sidecar and the NIfTI header disagree (the
    /// disagreement is reported either way).
    #[arg(long, value_enum, default_value_t = TrFrom::Sidecar)]
    pub tr_from: TrFrom,
    /// Skip a session unless at least this fraction of the T1w brain lies inside the BOLD
    /// field of view.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.8)]
    pub min_overlap: f64,
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

/// `--anat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Anat {
    /// The preprocessed T1w image, masked by its brain mask.
    T1w,
    /// The grey-matter probability map.
    Gm,
}

/// `--standardise`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Standardisation {
    /// As computed.
    None,
    /// z-scored inside the brain mask.
    Z,
    /// Divided by its mean inside the brain mask.
    Mean,
}

/// `--tr-from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrFrom {
    /// The sidecar's RepetitionTime.
    Sidecar,
    /// The header's pixdim[4].
    Header,
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
            Some(text) => parse_label_map(text)
                .map_err(|reason| DataError::invalid("--label-map", text, reason))?,
            None => Default::default(),
        };
        let mut base = match &self.derivatives {
            Some(d) => BidsConfig::fmriprep(d),
            None => BidsConfig::default(),
        };
        if let Some(text) = &self.confounds {
            base.confounds.terms = ConfoundsConfig::parse_terms(text)
                .map_err(|reason| DataError::invalid("--confounds", text, reason))?;
        }
        base.confounds.fd_threshold = self.fd_threshold;
        base.confounds.min_segment = self.min_segment;
        base.confounds.min_kept = self.min_kept;
        if let Some(s) = self.standardise {
            base.standardise = match s {
                Standardisation::None => Standardise::None,
                Standardisation::Z => Standardise::Z,
                Standardisation::Mean => Standardise::Mean,
            };
        }
        Ok(BidsConfig {
            space: self.space.clone(),
            desc: self.desc.clone(),
            anat: match self.anat {
                Anat::T1w => AnatImage::T1w,
                Anat::Gm => AnatImage::GreyMatter,
            },
            smooth_fwhm: self.smooth_fwhm,
            tr_from: match self.tr_from {
                TrFrom::Sidecar => TrSource::Sidecar,
                TrFrom::Header => TrSource::Header,
            },
            min_overlap: self.min_overlap,
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
            ..base
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
    Ok(format!("{}\n{}", config.describe(), report.summary()))
}
