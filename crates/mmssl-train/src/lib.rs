//! # mmssl-train
//!
//! The one training loop of mmssl and what surrounds it:
//!
//! - [`Method`]: the interface every method implements (batch in, loss and named terms out;
//!   representations for evaluation). [`ContrastiveModel`] implements it for any objective of
//!   the taxonomy over image or volume encoders ([`AnyEncoder`]).
//! - [`MethodFactory`]: how a method's model is built from the options of its spec
//!   ([`MethodOptions`]); [`ContrastiveFactory`] builds every objective.
//! - [`fit`]: seeded epoch order, [`RAdam`] with the [`OneCycle`] schedule stepped per batch
//!   (the momentum cycled through [`RAdamHandle`]), validation loss per epoch, best and last
//!   checkpoints written atomically, exact resumption, a NaN/Inf guard.
//! - [`linear_eval`] on [`extract_features`]: the paper's linear evaluation (frozen encoder,
//!   raw `z`, linear classifier, epoch chosen by validation loss, test accuracy / balanced
//!   accuracy / ROC-AUC), with the encoder's BatchNorm in evaluation mode by default.
//! - [`metrics`]: accuracy, balanced accuracy, ROC-AUC.
//!
//! burn's `Learner` (burn-train) is not used: it cannot cycle Adam's momentum per batch, its
//! checkpointing does not restore a run to bit-identical weights after a kill, and its
//! progress rendering assumes one loss; the loop here is small and does exactly that.
#![deny(missing_docs)]

pub mod attribution;
mod contrastive;
mod encoder;
mod error;
mod factory;
mod fit;
mod linear_eval;
mod method;
pub mod metrics;
mod onecycle;
mod radam;

pub use attribution::{Attribution, attribute};
pub use contrastive::{
    ContrastiveConfig, ContrastiveFactory, ContrastiveModel, ContrastiveStep, ExtendedFactory,
    ExtendedModel, ExtraTerm, MODEL_OPTIONS, model_options,
};
pub use encoder::{AnyEncoder, Backbone};
pub use error::{Result, TrainError};
pub use factory::{
    BuildSetup, LATENT_DIM, MethodFactory, MethodOption, MethodOptions, OBJECTIVE_OPTIONS,
    objective_options,
};
#[allow(deprecated)]
pub use fit::TrainConfig;
pub use fit::{
    Checkpoints, EpochMetrics, FitConfig, FitData, FitOutcome, FitRun, Progress, Quiet, StepReport,
    epoch_order, evaluate_loss, evaluate_terms, fit, on_pool,
};
pub use linear_eval::{
    Features, LinearEvalConfig, LinearEvalResult, LinearProbe, LinearProbeConfig, Represent,
    cross_entropy, extract_features, linear_eval, linear_eval_probe,
};
pub use method::{Method, StepOutput};
/// Loader settings of [`FitConfig::loader`] (from `mmssl-data`).
pub use mmssl_data::LoaderConfig;
pub use onecycle::{LrDriver, OneCycle, OneCycleConfig, ScheduleError};
pub use radam::{RAdam, RAdamConfig, RAdamHandle, RAdamState};
