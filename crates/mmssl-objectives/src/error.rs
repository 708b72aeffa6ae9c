//! The error type of this crate.

/// What can go wrong when parsing or evaluating an objective.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObjectiveError {
    /// The spec has no edge.
    #[error("empty objective: name at least one edge of CR, XX, CC, RR (e.g. `CR-XX-CC`)")]
    EmptySpec,
    /// A token is not an edge name.
    #[error("unknown edge `{token}` in objective `{spec}`; valid edges are CR, XX, CC, RR")]
    UnknownEdge {
        /// The unrecognised token.
        token: String,
        /// The whole spec.
        spec: String,
    },
    /// An edge appears twice.
    #[error("edge {edge} appears more than once in objective `{spec}`")]
    DuplicateEdge {
        /// The repeated edge.
        edge: String,
        /// The whole spec.
        spec: String,
    },
    /// A weight that is not a finite positive number.
    #[error(
        "invalid weight `{weight}` for edge {edge} in objective `{spec}`: weights must be finite, > 0 and at most 1e6"
    )]
    BadWeight {
        /// The edge.
        edge: String,
        /// The weight as written.
        weight: String,
        /// The whole spec.
        spec: String,
    },
    /// The spec has a character it cannot parse.
    #[error("cannot parse objective `{spec}` at `{rest}`: write edges as `CR-XX` or `CR:1,XX:0.5`")]
    Syntax {
        /// The whole spec.
        spec: String,
        /// Where parsing stopped.
        rest: String,
    },
    /// An unknown estimator name.
    #[error("unknown estimator `{0}`; valid: infonce, jsd, dv, nwj")]
    UnknownEstimator(String),
    /// An unknown critic name.
    #[error(
        "unknown critic `{0}`; valid: scaled_dot, cosine(T) with a temperature T > 0 (cosine alone \
         is cosine(0.1)), bilinear"
    )]
    UnknownCritic(String),
    /// A cross-modal edge with fewer than two modalities.
    #[error("edge {edge} needs at least two modalities, got {modalities}")]
    TooFewModalities {
        /// The edge.
        edge: String,
        /// Modalities given.
        modalities: usize,
    },
    /// Contrastive estimation needs another sample in the batch for negatives.
    #[error("contrastive estimation needs a batch of at least 2 samples, got {0}")]
    BatchTooSmall(usize),
    /// Tensors that should agree do not.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A configuration value out of range.
    #[error("invalid {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: f64,
        /// The valid range.
        reason: &'static str,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ObjectiveError>;
