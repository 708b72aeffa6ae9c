//! The projection head for latents: `Linear -> BN -> ReLU -> Linear`.

use crate::conv_head::linear;
use crate::{EncoderError, Variant};
use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use mmssl_kernels::nn::{NormAct, NormActConfig};
use mmssl_kernels::norm::Activation;
use rand::Rng;

/// Configuration of [`LatentHead`].
#[derive(Config, Debug)]
pub struct LatentHeadConfig {
    /// Size of the latent `z`.
    #[config(default = 64)]
    pub in_features: usize,
    /// Embedding size.
    #[config(default = 64)]
    pub out_features: usize,
    /// mmssl's definition or the authors' (see [`Variant`]).
    #[config(default = "Variant::Mmssl")]
    pub variant: Variant,
}

/// `Linear(in -> out, no bias) -> BN -> ReLU -> Linear(out -> out, no bias)` on `[B, in]`.
#[derive(Module, Debug)]
pub struct LatentHead {
    pub(crate) fc1: Linear,
    pub(crate) bn: NormAct,
    pub(crate) fc2: Linear,
}

impl LatentHeadConfig {
    /// Builds the head on `device`, drawing weights from `rng`.
    pub fn init<R: Rng + ?Sized>(
        &self,
        device: &Device,
        rng: &mut R,
    ) -> Result<LatentHead, EncoderError> {
        EncoderError::check_positive("in_features", self.in_features)?;
        EncoderError::check_positive("out_features", self.out_features)?;
        let (i, o) = (self.in_features, self.out_features);
        let gain2 = match self.variant {
            Variant::Mmssl => 1.0,
            Variant::Authors => 2f64.sqrt(),
        };
        let running = self.variant.running_variance();
        Ok(LatentHead {
            fc1: linear(i, o, false, 2f64.sqrt(), rng, device),
            bn: NormActConfig::new(o, Activation::Relu)
                .with_running(running)
                .init(device),
            fc2: linear(o, o, false, gain2, rng, device),
        })
    }
}

impl LatentHead {
    /// Embeds latents.
    ///
    /// # Shapes
    /// - `z`: `[B, in_features]`
    /// - output: `[B, out_features]`
    pub fn forward(&self, z: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(self.bn.forward(self.fc1.forward(z)))
    }
}
