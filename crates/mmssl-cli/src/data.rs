//! `mmssl data`: look inside dataset files (`info`), write a synthetic OASIS-3-style cohort
//! (`synth-cohort`), download MNIST, Fashion-MNIST or SVHN with checksum verification
//! (`download`), and turn a BIDS dataset into fALFF derivatives and a cohort manifest
//! (`bids`).

use clap::{Args, Subcommand};
use mmssl_data::{DataError, SynthConfig, SynthReport};
use std::path::PathBuf;

mod bids;

pub use bids::{BidsArgs, Runs};
pub use mmssl_data::download::{
    DatasetName, DownloadOptions, Fetched, Source, download, download_with, file_md5,
};

/// Arguments of `mmssl data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DataCommand,
}

/// `mmssl data` subcommands.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Describe a dataset file: IDX (raw or .gz), MATLAB .mat, NIfTI (.nii, .nii.gz, .hdr) or
    /// a cohort manifest (.csv).
    Info(InfoArgs),
    /// Write a synthetic OASIS-3-style cohort (T1 + fALFF pairs, HC and AD) and its manifest.
    SynthCohort(SynthArgs),
    /// Write a synthetic resting-state study as fMRIPrep leaves it (raw BIDS root plus
    /// derivatives/fmriprep: preprocessed BOLD in MNI space, brain masks, confounds with
    /// motion, T1w and grey matter), whose true fALFF is known: input for `data bids
    /// --derivatives`.
    SynthFmriprep(SynthFmriprepArgs),
    /// Download MNIST, Fashion-MNIST or SVHN and verify every file's MD5 checksum.
    Download(DownloadArgs),
    /// Compute ALFF and fALFF for every session of a BIDS dataset (T1w + resting-state BOLD),
    /// raw or preprocessed by fMRIPrep (--derivatives), into a BIDS derivative folder, with
    /// the cohort manifest `--dataset oasis3` reads.
    Bids(Box<BidsArgs>),
}

/// Arguments of `mmssl data info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The file to describe.
    pub path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mmssl data synth-cohort`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// The output folder (volumes and `manifest.csv`).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of subjects (half HC, half AD). At least 12: the protocol holds out a fifth of
    /// each diagnosis and deals the rest into 5 folds, each of which needs a subject of both
    /// diagnoses.
    #[arg(long, default_value_t = 20)]
    pub subjects: usize,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// AD's grey-matter loss at the centre of the hippocampal regions (0 to 0.9).
    #[arg(long, default_value_t = 0.35)]
    pub atrophy: f64,
    /// AD's relative fALFF reduction at the centre of the posterior region (0 to 0.9).
    #[arg(long, default_value_t = 0.3)]
    pub falff_drop: f64,
    /// Largest displacement of each subject's random deformation, in mm (0 to 30).
    #[arg(long, default_value_t = 4.0)]
    pub deformation_mm: f64,
    /// A disease stage shared by T1 and fALFF, `LO,HI`: each AD subject draws one stage in
    /// [LO, HI] (HC: in [0, 0.15 LO]) that scales both `--atrophy` and `--falff-drop`. Without
    /// it the two effects' strengths are drawn independently and the modalities share only the
    /// diagnosis.
    #[arg(long, value_name = "LO,HI", value_parser = parse_stage)]
    pub stage: Option<[f64; 2]>,
    /// The HC subjects' stage range with `--stage`, `LO,HI` (default: [0, 0.15 LO] of the AD
    /// range). A range reaching AD's, e.g. `--stage 0.5,1.5 --hc-stage 0,0.5`, models a
    /// preclinical continuum: every subject then has a graded effect, shared by T1 and fALFF,
    /// in the planted regions.
    #[arg(long, value_name = "LO,HI", value_parser = parse_stage, requires = "stage")]
    pub hc_stage: Option<[f64; 2]>,
    /// T1 template in MNI space (default: the bundled MNI ICBM152 2009a T1).
    #[arg(long)]
    pub t1: Option<PathBuf>,
    /// Grey-matter probability map of the template (default: the bundled one when `--t1` is
    /// not given; without a map one is derived from the T1 intensities).
    #[arg(long)]
    pub gm: Option<PathBuf>,
}

/// Arguments of `mmssl data synth-fmriprep`.
#[derive(Debug, Args)]
pub struct SynthFmriprepArgs {
    /// The study's folder (new or empty): the raw BIDS root, with `derivatives/fmriprep/`.
    #[arg(long)]
    pub out: PathBuf,
    /// Subjects (HC and AD in turn).
    #[arg(long, default_value_t = 12)]
    pub subjects: usize,
    /// Sessions per subject (the T1w is subject-level, as fMRIPrep writes it).
    #[arg(long, default_value_t = 1)]
    pub sessions: usize,
    /// Frames per BOLD series.
    #[arg(long, default_value_t = 120)]
    pub frames: usize,
    /// Repetition time in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub tr: f64,
    /// BOLD voxel size in mm.
    #[arg(long, default_value_t = 4.0)]
    pub bold_spacing: f64,
    /// Anatomical voxel size in mm.
    #[arg(long, default_value_t = 2.0)]
    pub anat_spacing: f64,
    /// Motion's share of each voxel's signal (standard deviation relative to the neural
    /// part; 0: none).
    #[arg(long, default_value_t = 2.0)]
    pub motion: f64,
    /// One-frame motion jumps per series (each gives two frames of high displacement).
    #[arg(long, default_value_t = 2)]
    pub spikes: usize,
    /// AD's relative fALFF drop at the posterior cingulate (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    pub falff_drop: f64,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `LO,HI` as two numbers.
fn parse_stage(text: &str) -> std::result::Result<[f64; 2], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [lo, hi] = parts.as_slice() else {
        return Err(format!(
            "`{text}`: expected LO,HI (two numbers), e.g. 0.25,1.5"
        ));
    };
    let num = |t: &str| {
        t.parse::<f64>()
            .map_err(|_| format!("`{t}` in `{text}` is not a number"))
    };
    Ok([num(lo)?, num(hi)?])
}

/// A dataset name of `mmssl data download`.
fn dataset_name(text: &str) -> Result<DatasetName, String> {
    text.parse().map_err(|e: DataError| e.to_string())
}

/// Arguments of `mmssl data download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The dataset: mnist, fashion-mnist or svhn.
    #[arg(value_parser = dataset_name)]
    pub dataset: DatasetName,
    /// The folder to write the files to (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Download from this address instead of the official one (a mirror holding the same
    /// file names; the official checksums still apply).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Seconds to wait for a connection, and then for the server's answer, before giving up
    /// on an attempt.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Further attempts after a failed transfer (a timeout, a broken connection, a server
    /// error), each announced, a few seconds apart.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
}

/// A failure of `mmssl data`, printed as `error: ...` with exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum DataCmdError {
    /// `mmssl-data` failed (the message names the file, the address or the setting).
    #[error(transparent)]
    Data(#[from] DataError),
    /// JSON encoding failed.
    #[error("cannot encode the result as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs `mmssl data ...` and returns the text it prints on stdout.
pub fn run(args: &DataArgs) -> Result<String, DataCmdError> {
    match &args.command {
        DataCommand::Info(a) => {
            let d = mmssl_data::describe(&a.path)?;
            Ok(if a.json {
                serde_json::to_string_pretty(&d.json())?
            } else {
                d.text()
            })
        }
        DataCommand::Bids(a) => bids::bids(a),
        DataCommand::SynthCohort(a) => Ok(synth(a)?.summary()),
        DataCommand::SynthFmriprep(a) => {
            let (t1, gm) = mmssl_data::bundled_template()?;
            let config = mmssl_data::FmriprepSynthConfig {
                subjects: a.subjects,
                sessions: a.sessions,
                frames: a.frames,
                tr: a.tr,
                bold_spacing: a.bold_spacing,
                anat_spacing: a.anat_spacing,
                motion: a.motion,
                spikes: a.spikes,
                falff_drop: a.falff_drop,
                seed: a.seed,
                ..mmssl_data::FmriprepSynthConfig::new(t1, gm)
            };
            Ok(mmssl_data::synth_fmriprep(&config, &a.out)?.summary())
        }
        DataCommand::Download(a) => {
            let mut source = Source::official(a.dataset);
            if let Some(url) = &a.base_url {
                source = source.with_base_url(url.clone());
            }
            let options = DownloadOptions {
                quiet: a.quiet,
                timeout: std::time::Duration::from_secs(a.timeout.max(1)),
                retries: a.retries,
                retry_pause: std::time::Duration::from_secs(3),
            };
            let fetched = download_with(&source, &a.dir, &options)?;
            let mut out = String::new();
            for f in &fetched {
                let what = if f.downloaded {
                    "downloaded"
                } else {
                    "already present"
                };
                out.push_str(&format!(
                    "{}: {} bytes, MD5 verified ({what})\n",
                    f.path.display(),
                    f.bytes
                ));
            }
            out.push_str(&format!("{} is ready in {}", source.name, a.dir.display()));
            Ok(out)
        }
    }
}

/// Writes the synthetic cohort `mmssl data synth-cohort` describes.
pub fn synth(args: &SynthArgs) -> Result<SynthReport, DataCmdError> {
    let (t1, gm) = match &args.t1 {
        Some(t1) => (t1.clone(), args.gm.clone()),
        None => {
            let (t1, gm) = mmssl_data::bundled_template()?;
            (t1, Some(args.gm.clone().unwrap_or(gm)))
        }
    };
    let config = SynthConfig {
        subjects: args.subjects,
        seed: args.seed,
        atrophy: args.atrophy,
        falff_drop: args.falff_drop,
        deformation_mm: args.deformation_mm,
        stage: args.stage,
        hc_stage: args.hc_stage,
        ..SynthConfig::new(t1, gm)
    };
    config.check_protocol_size()?;
    Ok(mmssl_data::synth_cohort(&config, &args.out)?)
}
