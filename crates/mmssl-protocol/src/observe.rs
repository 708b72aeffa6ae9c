//! What a run does and how it tells: the phases to run ([`Phases`]), the phase under way
//! ([`Phase`]) and the [`Observer`] that hears of them.

use mmssl_train::Progress;

/// Which parts of a run to do: `run` all three; `pretrain`, `linear-eval` and `analyze` one
/// each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    /// Train the method (or fit linear CCA) and write the checkpoints.
    pub pretrain: bool,
    /// Linear evaluation of each modality (pretrained and at random initialisation).
    pub evaluate: bool,
    /// Similarity of the modalities' test-set representations.
    pub analyze: bool,
}

impl Phases {
    /// The phases to run: pretraining, linear evaluation, similarity analysis.
    pub const fn new(pretrain: bool, evaluate: bool, analyze: bool) -> Self {
        Phases {
            pretrain,
            evaluate,
            analyze,
        }
    }

    /// All three phases.
    pub const ALL: Phases = Phases::new(true, true, true);
    /// Pretraining only.
    pub const PRETRAIN: Phases = Phases::new(true, false, false);
    /// Linear evaluation of a pretrained run.
    pub const EVALUATE: Phases = Phases::new(false, true, false);
    /// Similarity analysis of a pretrained run.
    pub const ANALYZE: Phases = Phases::new(false, false, true);
}

/// Where a run is, for an [`Observer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Loading and preparing the data.
    Loading,
    /// Pretraining (steps and epochs follow through [`Progress`]).
    Pretraining,
    /// Linear evaluation of one modality (`random_init`: of the reference model).
    Evaluating {
        /// The modality.
        modality: usize,
        /// Whether it is the randomly initialised reference.
        random_init: bool,
    },
    /// k-NN evaluation and cross-modal retrieval of the evaluated features.
    Neighbours,
    /// Similarity of the modalities.
    Analysing,
    /// The embedding maps of the test representations.
    Mapping,
    /// Attribution maps (`random_init`: of the reference model); items follow as steps.
    Explaining {
        /// Whether it is the randomly initialised reference.
        random_init: bool,
    },
}

/// Receives a run's progress: the training loop's steps and epochs ([`Progress`]), the phases,
/// and warnings. Every method has a default that ignores it.
pub trait Observer: Progress {
    /// A phase starts.
    fn phase(&mut self, _phase: Phase) {}
    /// Something that runs but is probably not what was meant.
    fn warning(&mut self, _message: &str) {}
    /// A line of information (grids: which cell starts, which failed).
    fn note(&mut self, _message: &str) {}
}

impl Observer for mmssl_train::Quiet {}
