//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong when comparing two representation matrices.
///
/// Matrices are named `"A"` and `"B"` in messages, in the order they were passed.
#[derive(Debug, thiserror::Error)]
pub enum SimilarityError {
    /// Fewer samples (rows) than a metric needs.
    #[error("{metric} needs at least {needed} samples (rows), got n = {n}")]
    TooFewSamples {
        /// The metric that was asked for.
        metric: &'static str,
        /// How many rows it needs.
        needed: usize,
        /// How many rows were given.
        n: usize,
    },
    /// The two matrices do not describe the same samples.
    #[error(
        "A and B must have the same number of rows (the same samples): A has {n_a} rows, B has {n_b}"
    )]
    SampleMismatch {
        /// Rows of A.
        n_a: usize,
        /// Rows of B.
        n_b: usize,
    },
    /// A matrix has no columns.
    #[error("{matrix} has no columns (features)")]
    NoFeatures {
        /// `"A"` or `"B"`.
        matrix: &'static str,
    },
    /// A NaN or infinite entry.
    #[error("{matrix} has a non-finite entry {value} at row {row}, column {col}")]
    NonFinite {
        /// `"A"` or `"B"`.
        matrix: &'static str,
        /// Row of the first offending entry.
        row: usize,
        /// Column of the first offending entry.
        col: usize,
        /// The entry itself (NaN or +-inf).
        value: f64,
    },
    /// Every column of a matrix is constant, so it carries no signal to compare.
    #[error("{matrix} has zero variance: every column is constant over the samples")]
    ZeroVariance {
        /// `"A"` or `"B"`.
        matrix: &'static str,
    },
    /// CCA (and PWCCA) with at least as many features as samples: every direction can be
    /// matched perfectly, so the canonical correlations are all 1 and meaningless.
    #[error(
        "{metric} is underdetermined: {matrix} has n = {n} samples and d = {d} features, \
         but CCA needs n > d; use SVCCA (which first reduces the dimension) or CKA instead, \
         or give more samples"
    )]
    Underdetermined {
        /// The metric that was asked for.
        metric: &'static str,
        /// `"A"` or `"B"`.
        matrix: &'static str,
        /// Number of samples.
        n: usize,
        /// Number of features.
        d: usize,
    },
    /// SVCCA whose kept directions, together, reach the number of samples: the column spaces
    /// of the reduced views then intersect, so some canonical correlations are exactly 1
    /// whatever the data (independent noise gives SVCCA 1.0 at n = 20).
    #[error(
        "SVCCA is underdetermined: it keeps {kept_a} + {kept_b} directions from n = {n} samples \
         (it needs kept_a + kept_b < n), so canonical correlations of 1 come from the sample size, \
         not the data; use CKA, more samples, or a lower SVCCA threshold"
    )]
    SvccaUnderdetermined {
        /// Samples.
        n: usize,
        /// Directions kept of A.
        kept_a: usize,
        /// Directions kept of B.
        kept_b: usize,
    },
    /// A parameter out of its range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What the valid range is.
        reason: &'static str,
    },
    /// The debiased HSIC of a matrix with itself came out non-positive (tiny n, or a
    /// representation dominated by a few samples), so debiased CKA has no defined value.
    #[error(
        "debiased CKA is undefined here: the unbiased HSIC estimate of {matrix} with itself is \
         {value:e} (not positive) with n = {n} samples"
    )]
    DebiasedUndefined {
        /// `"A"` or `"B"`.
        matrix: &'static str,
        /// The estimate.
        value: f64,
        /// Number of samples.
        n: usize,
    },
    /// A neighbourhood size larger than the set it is taken from.
    #[error("k = {k} is too large: {what} has only {n} samples{hint}")]
    NeighboursTooMany {
        /// The set the neighbours are taken from (`"the training set"`).
        what: &'static str,
        /// The neighbourhood size asked for.
        k: usize,
        /// Samples available.
        n: usize,
        /// What to do instead, in words (may be empty).
        hint: &'static str,
    },
    /// Labels that do not describe the rows they go with.
    #[error("{set} has {rows} rows but {labels} labels")]
    LabelCount {
        /// `"train"` or `"test"`.
        set: &'static str,
        /// Rows of the features.
        rows: usize,
        /// Labels given.
        labels: usize,
    },
    /// A label not below the number of classes.
    #[error("{set} has label {label} at row {row}, but there are {classes} classes (0..{classes})")]
    LabelOutOfRange {
        /// `"train"` or `"test"`.
        set: &'static str,
        /// The row.
        row: usize,
        /// The label.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
    /// Two sets of features that must live in one space have different widths.
    #[error("{a} has {d_a} columns but {b} has {d_b}: they are not in one space")]
    WidthMismatch {
        /// First set.
        a: &'static str,
        /// Its columns.
        d_a: usize,
        /// Second set.
        b: &'static str,
        /// Its columns.
        d_b: usize,
    },
    /// Cross-modal retrieval with fewer than two modalities.
    #[error(
        "cross-modal retrieval needs at least two modalities, got {given} (there is no other \
         modality to retrieve from)"
    )]
    TooFewModalities {
        /// Modalities given.
        given: usize,
    },
    /// A decomposition failed (did not converge).
    #[error("linear algebra failure in {operation}: {reason}")]
    Linalg {
        /// The decomposition.
        operation: &'static str,
        /// The backend's message.
        reason: String,
    },
    /// A `.npy` file could not be read as a 2-D f32/f64 matrix.
    #[error("cannot read {path}: {reason}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, SimilarityError>;
