//! The error type of this crate.

/// What can go wrong while building or evaluating a baseline. Each variant carries the values
/// it is about.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// A setting out of range.
    #[error("invalid baseline settings: {name} = {value}: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is allowed.
        reason: String,
    },
    /// A name that is not one of the allowed ones.
    #[error("unknown {what} `{value}`; valid: {valid}")]
    UnknownName {
        /// What kind of name (`deep CCA norm`, `MMVAE estimator`, `method`).
        what: &'static str,
        /// The name as written.
        value: String,
        /// The allowed names.
        valid: String,
    },
    /// A method defined for a number of modalities the data does not have.
    #[error("{method} needs {needed} modalities, the data has {got}")]
    Modalities {
        /// The method or loss.
        method: &'static str,
        /// How many it needs (`2`, `at least 1`).
        needed: &'static str,
        /// How many the data has.
        got: usize,
    },
    /// A method that is not trained by the loop.
    #[error("{method} is fitted in closed form ({how}), not trained")]
    NotTrainable {
        /// The method.
        method: &'static str,
        /// How to fit it.
        how: &'static str,
    },
    /// Items of a shape no decoder takes.
    #[error(
        "no decoder for items of shape {shape:?}: images must be [C, 32, 32] and volumes [C, 64, 64, 64]"
    )]
    UnsupportedShape {
        /// The item shape.
        shape: Vec<usize>,
    },
    /// Two arrays that should agree in shape do not.
    #[error("shape mismatch: {what}: {left:?} against {right:?}")]
    ShapeMismatch {
        /// What is compared.
        what: &'static str,
        /// The first shape.
        left: Vec<usize>,
        /// The second shape.
        right: Vec<usize>,
    },
    /// Fewer samples or features than the computation needs.
    #[error("{what} needs at least {needed}, got {got}")]
    TooFew {
        /// What is counted (`deep CCA samples`).
        what: &'static str,
        /// The minimum.
        needed: usize,
        /// The count.
        got: usize,
    },
    /// A NaN or infinite input value.
    #[error("non-finite input: {what} has {value} at row {row}, column {column}")]
    NonFinite {
        /// The input.
        what: String,
        /// The value.
        value: f64,
        /// Its row.
        row: usize,
        /// Its column.
        column: usize,
    },
    /// A label outside the classes of a supervised model.
    #[error("label {label} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// The label.
        label: usize,
        /// Classes of the model.
        classes: usize,
    },
    /// A value could not be read back from the device.
    #[error("cannot read {what} back from the device: {reason}")]
    Readback {
        /// What was read.
        what: &'static str,
        /// The backend's message.
        reason: String,
    },
    /// The training loop or a model component failed.
    #[error(transparent)]
    Train(#[from] mmssl_train::TrainError),
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
    /// Component errors keep their own variants; a baseline's own error is carried as it is
    /// ([`TrainError::Method`](mmssl_train::TrainError::Method)), never flattened to text.
    fn from(e: BaselineError) -> Self {
        match e {
            BaselineError::Train(e) => e,
            BaselineError::Encoder(e) => mmssl_train::TrainError::Encoder(e),
            BaselineError::Objective(e) => mmssl_train::TrainError::Objective(e),
            other => mmssl_train::TrainError::method(other),
        }
    }
}

impl BaselineError {
    /// [`BaselineError::ShapeMismatch`] about `what` unless the sizes `left` and `right` are
    /// equal.
    pub(crate) fn check_same(what: &'static str, left: &[usize], right: &[usize]) -> Result<()> {
        if left != right {
            return Err(BaselineError::ShapeMismatch {
                what,
                left: left.to_vec(),
                right: right.to_vec(),
            });
        }
        Ok(())
    }

    /// [`BaselineError::Modalities`] for `method` unless `shapes` names at least one modality.
    pub(crate) fn check_some_modalities(shapes: &[Vec<usize>], method: &'static str) -> Result<()> {
        if shapes.is_empty() {
            return Err(BaselineError::Modalities {
                method,
                needed: "at least 1",
                got: 0,
            });
        }
        Ok(())
    }
}
