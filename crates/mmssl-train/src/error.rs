//! The error type of this crate.

/// What can go wrong while training or evaluating.
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
    /// A NaN or infinite loss: training stops, earlier checkpoints are kept.
    #[error(
        "non-finite loss {value} at epoch {epoch}, step {step}: {culprit}; the checkpoints of the last good epoch are kept"
    )]
    NonFinite {
        /// Epoch (from 0).
        epoch: usize,
        /// Step within the epoch (from 0).
        step: usize,
        /// The total loss.
        value: f64,
        /// The first non-finite term, in words.
        culprit: String,
    },
    /// Writing or reading a checkpoint failed.
    #[error("checkpoint error: {0}")]
    Checkpoint(String),
    /// Settings that cannot work.
    #[error("invalid training settings: {0}")]
    Config(String),
    /// The batch does not fit the model.
    #[error("batch does not fit the model: {0}")]
    Batch(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;
