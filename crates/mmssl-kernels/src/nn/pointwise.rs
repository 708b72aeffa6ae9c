//! A linear layer at every location of a feature map.

use crate::pointwise::pointwise;
use crate::runtime;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Tensor;

/// burn's [`Linear`] applied at every location of a feature map `[B, C, L]` (a 1x1
/// convolution), giving `[B, O, L]`: one fused operation per batch on the CPU backend,
/// `linear.forward` on the transposed map elsewhere, with the same values and gradients.
#[derive(Module, Debug)]
pub struct Pointwise {
    /// The linear map (`weight` `[C, O]`, optional `bias` `[O]`).
    pub linear: Linear,
}

impl Pointwise {
    /// The layer applying `linear` at every location.
    pub fn new(linear: Linear) -> Self {
        Pointwise { linear }
    }

    /// `x` `[B, C, L]` mapped to `[B, O, L]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        runtime::configure();
        pointwise(&self.linear, x)
    }
}
