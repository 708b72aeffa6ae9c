//! The one interface every method (each objective, each baseline) implements for the loop.

use crate::error::Result;
use burn::module::Module;
use burn::tensor::Tensor;
use mmssl_data::Batch;
use rand::rngs::StdRng;

/// What a method returns for a batch: the loss to minimise and named terms for logging.
#[derive(Debug, Clone)]
pub struct StepOutput {
    /// The total loss: `[1]`.
    pub loss: Tensor<1>,
    /// Named components (e.g. `XX[0->1]`), each `[1]`.
    pub terms: Vec<(String, Tensor<1>)>,
}

/// A trainable method: a module that turns a batch into a loss, and each modality of a batch
/// into the representation used downstream (linear evaluation, similarity).
pub trait Method: Module + 'static {
    /// The loss on `batch`. `rng` serves the method's own random draws (e.g. the CC anchor
    /// locations); the loop seeds it per step.
    fn loss(&self, batch: &Batch, rng: &mut StdRng) -> Result<StepOutput>;

    /// The representation of `modality` for every item of `batch`: `[B, dim]`.
    fn represent(&self, batch: &Batch, modality: usize) -> Result<Tensor<2>>;

    /// Number of modalities the method expects in a batch.
    fn modalities(&self) -> usize;
}
