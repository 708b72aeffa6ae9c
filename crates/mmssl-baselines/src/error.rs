//! The error type of this crate.

/// What can go wrong while building or evaluating a baseline.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// Settings that cannot work.
    #[error("invalid baseline settings: {0}")]
    Config(String),
    /// Inputs whose shapes do not fit.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A NaN or infinite input.
    #[error("non-finite input: {0}")]
    NonFinite(String),
    /// The linear algebra failed.
    #[error(transparent)]
    Linalg(#[from] mmssl_similarity::SimilarityError),
    /// A model component could not be built.
    #[error(transparent)]
    Encoder(#[from] mmssl_encoders::EncoderError),
    /// The objective could not be built or evaluated.
    #[error(transparent)]
    Objective(#[from] mmssl_objectives::ObjectiveError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, BaselineError>;

impl From<BaselineError> for mmssl_train::TrainError {
    fn from(e: BaselineError) -> Self {
        match e {
            BaselineError::Encoder(e) => mmssl_train::TrainError::Encoder(e),
            BaselineError::Objective(e) => mmssl_train::TrainError::Objective(e),
            BaselineError::NonFinite(m) => {
                mmssl_train::TrainError::Batch(format!("non-finite input: {m}"))
            }
            BaselineError::Shape(m) => mmssl_train::TrainError::Batch(m),
            other => mmssl_train::TrainError::Config(other.to_string()),
        }
    }
}
