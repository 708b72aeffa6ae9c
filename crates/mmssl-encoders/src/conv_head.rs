//! The projection head for convolutional feature maps (AMDIM style; Bachman et al., NeurIPS
//! 2019): a 1x1 residual block with BatchNorm on the sum.

use crate::init::{eye_with_noise, near_identity, uniform_param, xavier_param};
use crate::{EncoderError, Variant};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use mmssl_kernels::nn::{NormAct, NormActConfig, Pointwise};
use mmssl_kernels::norm::Activation;
use rand::Rng;

/// Configuration of [`ConvHead`].
#[derive(Config, Debug)]
pub struct ConvHeadConfig {
    /// Channels of the feature map (64 for the 2D encoder, 128 for the 3D one).
    pub in_channels: usize,
    /// Embedding size.
    #[config(default = 64)]
    pub out_channels: usize,
    /// mmssl's definition or the authors' (see [`Variant`]).
    #[config(default = "Variant::Mmssl")]
    pub variant: Variant,
}

/// 1x1 residual block on a feature map `[B, C, L]` (every location independently):
/// `BN(conv2(ReLU(BN(conv1(x)))) + shortcut(x))`, with `conv1: C -> 64`, `conv2: 64 -> 64`
/// (no bias) and `shortcut: C -> 64` (with a bias in [`Variant::Mmssl`], without in
/// [`Variant::Authors`]). When `C == 64` the shortcut starts near the identity
/// (`I + U(-0.01, 0.01)`), so the head starts close to a normalised copy of its input.
/// A 1x1 convolution is a linear map over channels ([`Pointwise`](mmssl_kernels::nn::Pointwise)).
#[derive(Module, Debug)]
pub struct ConvHead {
    pub(crate) conv1: Pointwise,
    pub(crate) bn1: NormAct,
    pub(crate) conv2: Pointwise,
    pub(crate) shortcut: Pointwise,
    pub(crate) bn_out: NormAct,
}

pub(crate) fn linear<R: Rng + ?Sized>(
    d_in: usize,
    d_out: usize,
    bias: bool,
    gain: f64,
    rng: &mut R,
    device: &Device,
) -> Linear {
    let mut layer = LinearConfig::new(d_in, d_out)
        .with_bias(bias)
        .with_initializer(Initializer::Zeros)
        .init(device);
    layer.weight = xavier_param([d_in, d_out], d_in, d_out, gain, rng, device);
    layer
}

impl ConvHeadConfig {
    /// Builds the head on `device`, drawing weights from `rng`.
    pub fn init<R: Rng + ?Sized>(
        &self,
        device: &Device,
        rng: &mut R,
    ) -> Result<ConvHead, EncoderError> {
        EncoderError::check_positive("in_channels", self.in_channels)?;
        EncoderError::check_positive("out_channels", self.out_channels)?;
        let (c, o) = (self.in_channels, self.out_channels);
        let variant = self.variant;
        let mut shortcut = linear(c, o, variant.shortcut_bias(), 1.0, rng, device);
        match variant {
            Variant::Mmssl if c == o => shortcut.weight = near_identity(c, 0.01, rng, device),
            Variant::Mmssl => {}
            // The authors follow AMDIM: identity on the first channels where it fits, else
            // PyTorch's default initialisation of a 1x1 convolution.
            Variant::Authors if o >= c => {
                shortcut.weight = eye_with_noise(c, o, 0.01, true, rng, device)
            }
            Variant::Authors => {
                shortcut.weight = uniform_param([c, o], 1.0 / (c as f64).sqrt(), rng, device)
            }
        }
        let gain2 = match variant {
            Variant::Mmssl => 1.0,
            Variant::Authors => 2f64.sqrt(),
        };
        let running = variant.running_variance();
        Ok(ConvHead {
            conv1: Pointwise::new(linear(c, o, false, 2f64.sqrt(), rng, device)),
            bn1: NormActConfig::new(o, Activation::Relu)
                .with_running(running)
                .init(device),
            conv2: Pointwise::new(linear(o, o, false, gain2, rng, device)),
            shortcut: Pointwise::new(shortcut),
            bn_out: NormActConfig::new(o, Activation::Identity)
                .with_running(running)
                .init(device),
        })
    }
}

impl ConvHead {
    /// Channels of the feature map it embeds.
    pub fn in_channels(&self) -> usize {
        self.conv1.linear.weight.dims()[0]
    }

    /// Embedding size.
    pub fn out_channels(&self) -> usize {
        self.conv1.linear.weight.dims()[1]
    }

    /// Embeds every location of a feature map.
    ///
    /// # Shapes
    /// - `x`: `[B, in_channels, L]`
    /// - output: `[B, out_channels, L]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.bn1.forward(self.conv1.forward(x.clone()));
        self.bn_out
            .forward(self.conv2.forward(h) + self.shortcut.forward(x))
    }
}
