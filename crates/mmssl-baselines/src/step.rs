//! The loss of a training step, assembled from named terms.

use burn::tensor::Tensor;
use mmssl_train::StepOutput;

/// A step's loss built term by term: each term is logged under its name and added to the
/// total (with its weight, for [`LossTerms::add_weighted`]).
#[derive(Default)]
pub(crate) struct LossTerms {
    total: Option<Tensor<1>>,
    terms: Vec<(String, Tensor<1>)>,
}

impl LossTerms {
    /// Logs `loss` as `name` without adding it to the total (a part of a total that is added
    /// with [`LossTerms::add_to_total`]).
    pub(crate) fn log(&mut self, name: impl Into<String>, loss: Tensor<1>) {
        self.terms.push((name.into(), loss));
    }

    /// Adds `t` to the total without logging it.
    pub(crate) fn add_to_total(&mut self, t: Tensor<1>) {
        self.total = Some(match self.total.take() {
            Some(sum) => sum + t,
            None => t,
        });
    }

    /// Logs `loss` as `name` and adds it to the total.
    pub(crate) fn add(&mut self, name: impl Into<String>, loss: Tensor<1>) {
        self.log(name, loss.clone());
        self.add_to_total(loss);
    }

    /// Logs `loss` as `name` and adds `weight * loss` to the total.
    pub(crate) fn add_weighted(&mut self, name: impl Into<String>, loss: Tensor<1>, weight: f64) {
        self.log(name, loss.clone());
        self.add_to_total(loss.mul_scalar(weight));
    }

    /// The step's output: the total and every logged term.
    ///
    /// # Panics
    /// If nothing was added to the total.
    pub(crate) fn into_output(self) -> StepOutput {
        StepOutput {
            loss: self.total.expect("a step has at least one loss term"),
            terms: self.terms,
        }
    }
}
