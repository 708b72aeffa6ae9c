//! The error type of this crate.

use std::path::PathBuf;

/// What can go wrong while training or evaluating. Each variant carries the values it is
/// about.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Data loading failed.
    #[error(transparent)]
    Data(#[from] mmssl_data::DataError),
    /// The objective could not be built or evaluated.
    #[error(transparent)]
    Objective(#[from] mmssl_objectives::ObjectiveError),
    /// A model component could not be built.
    #[error(transparent)]
    Encoder(#[from] mmssl_encoders::EncoderError),
    /// The schedule could not be built.
    #[error(transparent)]
    Schedule(#[from] crate::onecycle::ScheduleError),
    /// A method's own error (a baseline's, or a downstream method's), kept as it is.
    #[error(transparent)]
    Method(Box<dyn std::error::Error + Send + Sync>),
    /// A method option whose value cannot be used.
    #[error("method `{method}`: option `{option}` = `{value}`: {reason}")]
    BadOption {
        /// The method.
        method: String,
        /// The option.
        option: String,
        /// The value as written.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// A NaN or infinite loss: training stops, earlier checkpoints are kept.
    #[error(
        "non-finite loss {value} at epoch {epoch}, step {step}: {culprit}; the checkpoints of the last good epoch are kept"
    )]
    NonFinite {
        /// The epoch's number (from 1).
        epoch: usize,
        /// The step's number within the epoch (from 1).
        step: usize,
        /// The total loss.
        value: f64,
        /// The first non-finite term, in words.
        culprit: String,
    },
    /// Training was asked to stop ([`crate::Progress::stop_requested`], e.g. on SIGTERM) and
    /// did, after a step; with checkpoints it saved one there, from which a resumed run
    /// continues to the same numbers as an uninterrupted one.
    #[error(
        "training stopped on request after step {step} of epoch {epoch}{}",
        match checkpoint {
            Some(dir) => format!("; checkpoint saved in {}, resume to continue", dir.display()),
            None => "; no checkpoint (none was asked for)".to_string(),
        }
    )]
    Interrupted {
        /// Number (from 1) of the epoch of the last step done.
        epoch: usize,
        /// Steps of that epoch done (from 1).
        step: usize,
        /// The checkpoint folder, if checkpoints were kept.
        checkpoint: Option<PathBuf>,
    },
    /// Writing or reading a checkpoint file failed.
    #[error("checkpoint error: {}: {reason}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A committed checkpoint whose state or files do not match their checksums (edited,
    /// truncated or damaged on disk), with no intact earlier checkpoint to fall back to.
    #[error(
        "the checkpoint {} is damaged ({reason}); {fallback}", state.display()
    )]
    DamagedCheckpoint {
        /// The checkpoint state file.
        state: PathBuf,
        /// What does not match.
        reason: String,
        /// What follows: why no earlier checkpoint takes its place, and what to do.
        fallback: String,
    },
    /// A checkpoint made with another training configuration.
    #[error("cannot resume from {}: it was started with another configuration", state.display())]
    ResumeMismatch {
        /// The checkpoint state file.
        state: PathBuf,
    },
    /// A setting out of range.
    #[error("invalid training settings: {name} = {value}: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
    /// A set with fewer items than one batch.
    #[error(
        "invalid training settings: the {set} set has {items} items, fewer than one batch of {batch}"
    )]
    TooFewItems {
        /// Which set (`training`, `validation`).
        set: &'static str,
        /// Its items.
        items: usize,
        /// The batch size.
        batch: usize,
    },
    /// Linear evaluation of an empty set of features.
    #[error(
        "linear evaluation needs non-empty training, validation and test features (got {train}, {valid} and {test})"
    )]
    EmptyFeatures {
        /// Training rows.
        train: usize,
        /// Validation rows.
        valid: usize,
        /// Test rows.
        test: usize,
    },
    /// An item without the label an evaluation or a supervised method needs.
    #[error("item {item} has no label; {needed_by} needs labels")]
    MissingLabel {
        /// The item's index in its set.
        item: usize,
        /// What needs it.
        needed_by: &'static str,
    },
    /// A model with no modality.
    #[error("a model needs at least one modality")]
    NoModalities,
    /// A batch whose modalities do not match the model's.
    #[error(
        "batch does not fit the model: the model has {model} modalities but the batch has {batch}"
    )]
    ModalityCount {
        /// The model's modalities.
        model: usize,
        /// The batch's.
        batch: usize,
    },
    /// A modality index out of range.
    #[error("batch does not fit the model: no modality {modality} in a batch of {available}")]
    NoModality {
        /// The index asked for.
        modality: usize,
        /// Modalities present.
        available: usize,
    },
    /// Items of a shape no encoder takes.
    #[error(
        "no encoder for items of shape {shape:?}: images must be [C, 32, 32] and volumes [C, 64, 64, 64]"
    )]
    UnsupportedShape {
        /// The item shape.
        shape: Vec<usize>,
    },
    /// A view of the wrong kind for its encoder.
    #[error("batch does not fit the model: a {encoder} encoder got {got}")]
    ViewKind {
        /// `image` or `volume`.
        encoder: &'static str,
        /// `vectors`, `volumes` or `images`.
        got: &'static str,
    },
    /// A value could not be read back from the device.
    #[error("cannot read {what} back from the device: {reason}")]
    Readback {
        /// What was read.
        what: &'static str,
        /// The backend's message.
        reason: String,
    },
    /// A batch the loader did not deliver.
    #[error("batch {step} was not loaded")]
    BatchNotLoaded {
        /// The step.
        step: usize,
    },
}

impl TrainError {
    /// A method's own error, kept as its type (see [`TrainError::Method`]).
    pub fn method(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        TrainError::Method(Box::new(e))
    }

    /// The values of `t` read back from its device as `f32`; a failure is a
    /// [`TrainError::Readback`] of `what`.
    pub fn read_back<const D: usize>(
        t: burn::tensor::Tensor<D>,
        what: &'static str,
    ) -> Result<Vec<f32>> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| TrainError::Readback {
                what,
                reason: format!("{e:?}"),
            })
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;
