//! `mmssl data`: look inside dataset files (`info`), write a synthetic OASIS-3-style cohort
//! (`synth-cohort`), download MNIST, Fashion-MNIST or SVHN with checksum verification
//! (`download`), and turn a BIDS dataset into fALFF derivatives and a cohort manifest
//! (`bids`).

use clap::{Args, Subcommand, ValueEnum};
use mmssl_data::{DataError, SynthConfig, SynthReport};
use std::path::{Path, PathBuf};

mod bids;
mod download;

pub use bids::{BidsArgs, Runs};

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

/// Arguments of `mmssl data download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The dataset.
    #[arg(value_enum)]
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

/// The datasets `mmssl data download` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DatasetName {
    /// MNIST (4 IDX files, about 11 MB).
    Mnist,
    /// Fashion-MNIST (4 IDX files, about 30 MB).
    FashionMnist,
    /// SVHN cropped digits, train and test (`train_32x32.mat`, `test_32x32.mat`, about 240 MB).
    Svhn,
}

/// Where a dataset's files are and what their MD5 checksums must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The dataset's name, for messages.
    pub name: String,
    /// The address the file names are appended to.
    pub base_url: String,
    /// `(file name, MD5 as lowercase hex)`.
    pub files: Vec<(String, String)>,
}

impl Source {
    /// A source from a base URL and `(file name, md5)` pairs.
    pub fn new(name: &str, base_url: &str, files: &[(&str, &str)]) -> Self {
        Source {
            name: name.into(),
            base_url: base_url.into(),
            files: files
                .iter()
                .map(|(f, m)| (f.to_string(), m.to_ascii_lowercase()))
                .collect(),
        }
    }

    /// The official source of a dataset (checksums as torchvision publishes them).
    pub fn official(dataset: DatasetName) -> Self {
        const IDX: [&str; 4] = [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ];
        let idx = |md5: [&'static str; 4]| -> Vec<(&'static str, &'static str)> {
            IDX.into_iter().zip(md5).collect()
        };
        match dataset {
            DatasetName::Mnist => Source::new(
                "MNIST",
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                &idx([
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ]),
            ),
            DatasetName::FashionMnist => Source::new(
                "Fashion-MNIST",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                &idx([
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ]),
            ),
            DatasetName::Svhn => Source::new(
                "SVHN",
                "http://ufldl.stanford.edu/housenumbers/",
                &[
                    ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
                    ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
                ],
            ),
        }
    }

    /// The same files and checksums from another base URL.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    fn url(&self, file: &str) -> String {
        if self.base_url.ends_with('/') {
            format!("{}{file}", self.base_url)
        } else {
            format!("{}/{file}", self.base_url)
        }
    }
}

/// What [`download`] did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The file's final path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// `false` when the file was already there with the right checksum (nothing downloaded).
    pub downloaded: bool,
}

/// A failure of `mmssl data`, printed as `error: ...` with exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum DataCmdError {
    /// A reader of `mmssl-data` failed (the message names the file).
    #[error(transparent)]
    Data(#[from] DataError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The template shipped with the sources is not where it was at build time.
    #[error(
        "the bundled MNI152 template is missing ({path} not found: this mmssl binary was \
         moved away from its source tree); pass --t1 FILE [--gm FILE] with an MNI-space T1 \
         template"
    )]
    NoTemplate {
        /// The file looked for.
        path: PathBuf,
    },
    /// An HTTP request failed (connection, status code such as 404, broken transfer).
    #[error("cannot download {file} from {url}: {message}")]
    Http {
        /// The file's final path.
        file: PathBuf,
        /// The address.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A downloaded file does not have the expected checksum; it was deleted.
    #[error(
        "{path}: checksum mismatch: expected MD5 {expected}, got {actual} (the download was \
         deleted; the server sent a different file than the official one)"
    )]
    Checksum {
        /// The file's final path (never written).
        path: PathBuf,
        /// The expected MD5.
        expected: String,
        /// The MD5 of what arrived.
        actual: String,
    },
    /// JSON encoding failed.
    #[error("cannot encode the result as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataCmdError + '_ {
    move |source| DataCmdError::Io {
        path: path.to_path_buf(),
        source,
    }
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
        DataCommand::SynthCohort(a) => {
            let report = synth(a)?;
            Ok(synth_text(&report))
        }
        DataCommand::SynthFmriprep(a) => {
            let (t1, gm) = bundled_template()?;
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
            let r = mmssl_data::synth_fmriprep(&config, &a.out)?;
            Ok(format!(
                "synthetic fMRIPrep study: {} series of {} subjects in {}\n\
                 derivatives: {}\n\
                 next: mmssl data bids {} --derivatives {} --out MAPS",
                r.series.len(),
                a.subjects,
                r.bids.display(),
                r.derivatives.display(),
                r.bids.display(),
                r.derivatives.display()
            ))
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

// ---------------------------------------------------------------------------------------------
// synth-cohort

/// The MNI ICBM152 T1 template and grey-matter map shipped in `mmssl-data/data/mni152`, found
/// through the source path fixed at build time; an error telling to pass `--t1` when they
/// are not there (a binary moved away from its source tree).
pub fn bundled_template() -> Result<(PathBuf, PathBuf), DataCmdError> {
    let t1 = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mmssl-data/data/mni152/mni152_t1_1mm.nii.gz"
    ));
    let gm = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../mmssl-data/data/mni152/mni152_gm_1mm.nii.gz"
    ));
    for p in [&t1, &gm] {
        if !p.is_file() {
            return Err(DataCmdError::NoTemplate { path: p.clone() });
        }
    }
    Ok((t1, gm))
}

/// The fewest subjects a synthetic cohort can have for `--dataset oasis3`: per diagnosis one
/// held out (a fifth, rounded) and five for the five folds.
pub const MIN_SYNTH_SUBJECTS: usize = 12;

/// The batch size the printed `next:` command uses: a validation fold of the smallest cohort
/// holds 2 subjects, so at least 2 sessions, and a set must fill at least one batch.
const SYNTH_BATCH: usize = 2;

/// Writes the synthetic cohort `mmssl data synth-cohort` describes.
pub fn synth(args: &SynthArgs) -> Result<SynthReport, DataCmdError> {
    let (t1, gm) = match &args.t1 {
        Some(t1) => (t1.clone(), args.gm.clone()),
        None => {
            let (t1, gm) = bundled_template()?;
            (t1, Some(args.gm.clone().unwrap_or(gm)))
        }
    };
    let mut config = SynthConfig::new(t1, gm);
    if args.subjects < MIN_SYNTH_SUBJECTS {
        return Err(DataCmdError::Data(DataError::InvalidParameter {
            name: "--subjects",
            value: args.subjects.to_string(),
            reason: format!(
                "at least {MIN_SYNTH_SUBJECTS}: the protocol holds out a fifth of each diagnosis \
                 and deals the rest into 5 folds that each need both diagnoses"
            ),
        }));
    }
    config.subjects = args.subjects;
    config.seed = args.seed;
    config.atrophy = args.atrophy;
    config.falff_drop = args.falff_drop;
    config.deformation_mm = args.deformation_mm;
    config.stage = args.stage;
    config.hc_stage = args.hc_stage;
    Ok(mmssl_data::synth_cohort(&config, &args.out)?)
}

fn synth_text(r: &SynthReport) -> String {
    format!(
        "synthetic cohort: {} subjects ({} HC, {} AD), {} sessions, volumes {}\n\
         manifest: {}\n\
         next: mmssl run --dataset oasis3 --manifest {} --objective CR-XX --epochs 2 \
         --batch-size {SYNTH_BATCH} --out RUN",
        r.subjects,
        r.hc,
        r.ad,
        r.sessions,
        r.shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" x "),
        r.manifest.display(),
        r.manifest.display()
    )
}

pub use download::{DownloadOptions, download, download_with, file_md5};
