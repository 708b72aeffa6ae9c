//! The one interface every method (each objective, each baseline) implements for the loop.

use crate::error::{Result, TrainError};
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

impl StepOutput {
    /// This output with `term` added to the loss and logged as `name` (a method that extends
    /// another adds its own terms this way).
    pub fn with_term(mut self, name: impl Into<String>, term: Tensor<1>) -> Self {
        self.loss = self.loss + term.clone();
        self.terms.push((name.into(), term));
        self
    }

    /// The loss and every term as host numbers, in one read-back (each read is a device sync).
    /// `what` names the read in a [`TrainError::Readback`].
    pub fn values(&self, what: &'static str) -> Result<(f64, Vec<(String, f64)>)> {
        let mut parts = vec![self.loss.clone().detach()];
        parts.extend(self.terms.iter().map(|(_, t)| t.clone().detach()));
        let read = Tensor::cat(parts, 0)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| TrainError::Readback {
                what,
                reason: format!("{e:?}"),
            })?;
        let terms = self
            .terms
            .iter()
            .zip(&read[1..])
            .map(|((name, _), v)| (name.clone(), *v as f64))
            .collect();
        Ok((read[0] as f64, terms))
    }
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
