//! The error type of this crate.

use std::path::PathBuf;

/// What can go wrong while configuring or running the protocol. Every variant carries the
/// values it is about, so a message names the setting, the file or the method.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A setting of a [`RunConfig`](crate::RunConfig) out of range.
    #[error("invalid setting `{field}` = {value}: {reason}")]
    InvalidSetting {
        /// The setting, as a dotted path (`training.lr`).
        field: String,
        /// Its value, as written.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// A setting the dataset needs is missing.
    #[error("dataset `{dataset}` needs `{field}`: {hint}")]
    MissingSetting {
        /// The dataset.
        dataset: String,
        /// The missing setting (`data.manifest`).
        field: String,
        /// What it should hold.
        hint: String,
    },
    /// A method name that is neither registered nor an objective spec.
    #[error(
        "unknown method `{name}`: the registered methods are {known}, and an objective is any set of \
         the edges CR, XX, CC, RR (`CR-XX-CC`, `CR:1,XX:0.5`) ({objective})"
    )]
    UnknownMethod {
        /// The name as written.
        name: String,
        /// The registered names, comma-separated.
        known: String,
        /// Why it is not an objective spec either.
        objective: mmssl_objectives::ObjectiveError,
    },
    /// Every problem with a method's option: one it does not take, or a value it cannot use
    /// (the methods' own [`mmssl_train::TrainError::BadOption`] arrives as this variant too).
    #[error("method `{method}`: option `{option}` = `{value}`: {reason}")]
    BadOption {
        /// The method.
        method: String,
        /// The option as written.
        option: String,
        /// The value as written.
        value: String,
        /// What is wrong, and what is allowed (for an unknown option: the options the method
        /// takes).
        reason: String,
    },
    /// A method spec that does not parse.
    #[error(
        "cannot parse method spec `{spec}`: {reason} (write `NAME` or `NAME;option=value;...`, \
         e.g. `XX;estimator=jsd;critic=cosine(0.1)` or `dccae;cca_dim=10`)"
    )]
    SpecSyntax {
        /// The spec as written.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// A method that cannot be registered under that name.
    #[error("cannot register method `{name}`: {reason}")]
    Registration {
        /// The name.
        name: String,
        /// Why not.
        reason: String,
    },
    /// A configuration or grid file that cannot be read or does not parse.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the position where the parser knows it.
        reason: String,
    },
    /// A configuration that does not parse (not from a file).
    #[error("run configuration: {0}")]
    Config(String),
    /// `output.resume` on a run folder made with other settings.
    #[error(
        "cannot resume {dir}: it was started with other settings ({}); resume with the same \
         settings (its config.toml holds them) or start a new run", differences.join("; ")
    )]
    ResumeMismatch {
        /// The run folder.
        dir: PathBuf,
        /// `field: then, now` for each setting that differs.
        differences: Vec<String>,
    },
    /// `output.resume` on a run folder whose checkpoint was made with other settings than the
    /// folder's `config.toml` (or the resume) now gives: the configuration was changed after
    /// the run started.
    #[error(
        "cannot resume {dir}: its checkpoint was made with other settings ({}) than its \
         config.toml and this resume give; the configuration was changed after the run \
         started: restore those settings, or start a new run", differences.join("; ")
    )]
    CheckpointMismatch {
        /// The run folder.
        dir: PathBuf,
        /// `field: then, now` for each setting that differs (then: the checkpoint's record).
        differences: Vec<String>,
    },
    /// A folder another run (or grid) is writing.
    #[error(
        "{} is locked by another mmssl run{}; wait for it to finish or choose another folder",
        dir.display(), holder.map(|p| format!(" (process {p})")).unwrap_or_default()
    )]
    Locked {
        /// The folder.
        dir: PathBuf,
        /// The holder's process id, when it wrote one.
        holder: Option<u32>,
    },
    /// A new run into a folder that holds an earlier one (or other files).
    #[error(
        "{} is not empty ({}): {}", dir.display(), entries.join(", "),
        if *foreign {
            "it holds files a run does not write; choose another output folder"
        } else {
            "it holds an earlier run; resume it (--resume), choose another output folder, or \
             pass --overwrite to delete its results first"
        }
    )]
    NotEmpty {
        /// The folder.
        dir: PathBuf,
        /// What is in it.
        entries: Vec<String>,
        /// Whether some of it is not a run's (never removed).
        foreign: bool,
    },
    /// A grid into a folder that is not an experiment folder of mmssl (it has no grid record,
    /// `cells.json`) but holds files a grid would replace or mix with its own.
    #[error(
        "{} is not an experiment folder of mmssl (it has no cells.json) and holds {}: a grid \
         would replace them or mix its results with them; give --out an empty or new folder",
        dir.display(),
        files.join(", ")
    )]
    NotAnExperiment {
        /// The folder.
        dir: PathBuf,
        /// The files a grid would replace or mix with.
        files: Vec<String>,
    },
    /// `explain` into a folder holding an earlier explanation, without `overwrite`.
    #[error(
        "{} is not empty: it holds an earlier explanation (explain.json); pass --overwrite to \
         replace it, or --out to write the new one elsewhere", dir.display()
    )]
    ExplanationExists {
        /// The folder.
        dir: PathBuf,
    },
    /// `resume` on a folder without a run.
    #[error(
        "nothing to resume in {}: it has no config.toml (a typo in the folder name? without \
         --resume a new run starts)", dir.display()
    )]
    NothingToResume {
        /// The folder.
        dir: PathBuf,
    },
    /// Grid cells whose folders hold runs made with other settings.
    #[error(
        "{} cells of the grid were run with other settings; rerun with --rerun-changed to move \
         them aside and run them again, or use another --out:\n  {}",
        cells.len(), cells.join("\n  ")
    )]
    GridConflicts {
        /// One line per cell: its folder and the differences.
        cells: Vec<String>,
    },
    /// A labelled set the linear evaluation cannot use.
    #[error("the labelled {set} set of the linear evaluation cannot be used: {reason}")]
    Labels {
        /// Which set.
        set: &'static str,
        /// Why.
        reason: String,
    },
    /// Evaluation or analysis of a folder without a pretrained model.
    #[error("{missing} does not exist: pretrain first (`mmssl pretrain --out {}`)", dir.display())]
    NotPretrained {
        /// The file that should be there.
        missing: PathBuf,
        /// The run folder.
        dir: PathBuf,
    },
    /// Reading a file the protocol made failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why: the underlying error (an I/O or parse error, or a message).
        #[source]
        source: Cause,
    },
    /// Writing results failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why: the underlying error (an I/O or serialisation error, or a message).
        #[source]
        source: Cause,
    },
    /// Several settings of a run configuration are wrong: every one, in order (a single one
    /// is reported as itself).
    #[error(
        "{} problems with the run configuration:\n  {}",
        problems.len(),
        problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  ")
    )]
    Settings {
        /// Each problem.
        problems: Vec<ProtocolError>,
    },
    /// A grid whose cells failed; the others finished and were aggregated.
    #[error(
        "{} of {total} runs failed (the others are aggregated in {}; rerun to retry):\n  {}",
        failures.len(), out.display(), failures.join("\n  ")
    )]
    GridFailures {
        /// One line per failed cell: which cell and its error.
        failures: Vec<String>,
        /// Cells in the grid.
        total: usize,
        /// The experiment folder.
        out: PathBuf,
    },
    /// A grid has no cell of this index.
    #[error("cell {index} does not exist: the grid has {total} cells (0 to {})", total.saturating_sub(1))]
    NoCell {
        /// The index asked for.
        index: usize,
        /// The grid's cells.
        total: usize,
    },
    /// A Slurm command failed or could not be run.
    #[error("`{command}` failed: {reason}")]
    Slurm {
        /// The command line.
        command: String,
        /// Its error output, or why it could not start.
        reason: String,
    },
    /// The run's method has nothing `explain` can attribute.
    #[error("cannot explain {run}: {reason}")]
    NotExplainable {
        /// The run, as the message names it (`an lcca run`).
        run: String,
        /// Why.
        reason: String,
    },
    /// The run was asked to stop ([`mmssl_train::Progress::stop_requested`], e.g. on SIGTERM)
    /// between two phases; what is finished is saved, and running it again continues.
    #[error("stopped on request {during}; run it again to continue")]
    Interrupted {
        /// Where (`before the linear evaluation of modality 1`).
        during: String,
    },
    /// Data problem.
    #[error(transparent)]
    Data(#[from] mmssl_data::DataError),
    /// Objective problem.
    #[error(transparent)]
    Objective(#[from] mmssl_objectives::ObjectiveError),
    /// Training problem (an option's value a method refuses is
    /// [`ProtocolError::BadOption`] instead).
    #[error(transparent)]
    Train(mmssl_train::TrainError),
    /// Baseline problem.
    #[error(transparent)]
    Baseline(#[from] mmssl_baselines::BaselineError),
    /// Similarity problem.
    #[error(transparent)]
    Similarity(#[from] mmssl_similarity::SimilarityError),
}

impl From<mmssl_train::TrainError> for ProtocolError {
    fn from(e: mmssl_train::TrainError) -> Self {
        match e {
            mmssl_train::TrainError::BadOption {
                method,
                option,
                value,
                reason,
            } => ProtocolError::BadOption {
                method,
                option,
                value,
                reason,
            },
            other => ProtocolError::Train(other),
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ProtocolError>;

/// The underlying error of a [`ProtocolError::Read`] or [`ProtocolError::Write`], kept as an
/// error (`std::error::Error::source` reaches it; downcast to `std::io::Error` to see an I/O
/// error's kind).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

impl ProtocolError {
    /// An [`InvalidSetting`](ProtocolError::InvalidSetting) error.
    pub fn setting(field: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        ProtocolError::InvalidSetting {
            field: field.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Whether the run stopped because it was asked to ([`ProtocolError::Interrupted`] or
    /// [`mmssl_train::TrainError::Interrupted`]), not because something failed: running it
    /// again continues from where it stopped.
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self,
            ProtocolError::Interrupted { .. }
                | ProtocolError::Train(mmssl_train::TrainError::Interrupted { .. })
        )
    }

    /// A [`ProtocolError::File`]: `path` was read but its content is wrong, for `reason`.
    pub(crate) fn file(path: &std::path::Path, reason: impl Into<String>) -> Self {
        ProtocolError::File {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// A [`ProtocolError::Write`] of `path`, caused by `e` (an error, kept as the source, or
    /// a message).
    pub(crate) fn write(path: &std::path::Path, e: impl Into<Cause>) -> Self {
        ProtocolError::Write {
            path: path.to_path_buf(),
            source: e.into(),
        }
    }

    /// A [`ProtocolError::Read`] of `path`, caused by `e` (an error, kept as the source, or a
    /// message).
    pub(crate) fn read(path: &std::path::Path, e: impl Into<Cause>) -> Self {
        ProtocolError::Read {
            path: path.to_path_buf(),
            source: e.into(),
        }
    }
}
