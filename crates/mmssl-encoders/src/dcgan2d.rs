//! The DCGAN encoder for 32x32 images (Radford et al., ICLR 2016), as used by Fedorov et al.
//! (ISBI 2021).

use crate::init::{leaky_relu_gain, xavier_conv};
use crate::{
    Activation, EncoderError, EncoderOutput, LEAKY_SLOPE, activate, batch_norm, conv2d_forward,
};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use rand::Rng;

/// Configuration of [`DcganEncoder2d`].
#[derive(Config, Debug)]
pub struct DcganEncoder2dConfig {
    /// Input channels: 1 (MNIST) or 3 (SVHN).
    #[config(default = 1)]
    pub in_channels: usize,
    /// Size of the latent `z`.
    #[config(default = 64)]
    pub latent_dim: usize,
}

/// DCGAN encoder for `[B, C, 32, 32]` images. Convolutions have 4x4 kernels and no bias and
/// are followed by LeakyReLU(0.2):
///
/// | layer | output | notes |
/// | --- | --- | --- |
/// | conv(C -> 32, stride 2, pad 1) | 32 x 16^2 | |
/// | conv(32 -> 64, stride 2, pad 1) + BN | 64 x 8^2 | **tapped**: the raw conv output |
/// | conv(64 -> 128, stride 2, pad 1) + BN | 128 x 4^2 | |
/// | conv(128 -> latent, stride 1, pad 0) | latent x 1^2 | `z`, no activation |
///
/// Weights are Xavier-uniform with the LeakyReLU(0.2) gain.
#[derive(Module, Debug)]
pub struct DcganEncoder2d {
    pub(crate) conv1: Conv2d,
    pub(crate) conv2: Conv2d,
    pub(crate) bn2: BatchNorm,
    pub(crate) conv3: Conv2d,
    pub(crate) bn3: BatchNorm,
    pub(crate) conv4: Conv2d,
}

/// A bias-free 4x4 convolution with seeded Xavier weights.
pub(crate) fn conv2d<R: Rng + ?Sized>(
    c_in: usize,
    c_out: usize,
    stride: usize,
    pad: usize,
    gain: f64,
    rng: &mut R,
    device: &Device,
) -> Conv2d {
    let mut conv = Conv2dConfig::new([c_in, c_out], [4, 4])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(Initializer::Zeros)
        .init(device);
    conv.weight = xavier_conv([c_out, c_in, 4, 4], gain, rng, device);
    conv
}

impl DcganEncoder2dConfig {
    /// Builds the encoder on `device`, drawing weights from `rng`.
    pub fn init<R: Rng + ?Sized>(
        &self,
        device: &Device,
        rng: &mut R,
    ) -> Result<DcganEncoder2d, EncoderError> {
        EncoderError::check_positive("in_channels", self.in_channels)?;
        EncoderError::check_positive("latent_dim", self.latent_dim)?;
        let g = leaky_relu_gain(LEAKY_SLOPE);
        Ok(DcganEncoder2d {
            conv1: conv2d(self.in_channels, 32, 2, 1, g, rng, device),
            conv2: conv2d(32, 64, 2, 1, g, rng, device),
            bn2: BatchNormConfig::new(64).init(device),
            conv3: conv2d(64, 128, 2, 1, g, rng, device),
            bn3: BatchNormConfig::new(128).init(device),
            conv4: conv2d(128, self.latent_dim, 1, 0, g, rng, device),
        })
    }
}

impl DcganEncoder2d {
    /// Encodes a batch of images.
    ///
    /// # Shapes
    /// - `x`: `[B, in_channels, 32, 32]`
    /// - output `conv`: `[B, 64, 64]`, output `z`: `[B, latent_dim]`
    pub fn forward(&self, x: Tensor<4>) -> EncoderOutput {
        let h = activate(
            conv2d_forward(&self.conv1, x),
            Activation::LeakyRelu(LEAKY_SLOPE),
        );
        let tapped = conv2d_forward(&self.conv2, h);
        let h = batch_norm(
            &self.bn2,
            tapped.clone(),
            Activation::LeakyRelu(LEAKY_SLOPE),
        );
        let h = batch_norm(
            &self.bn3,
            conv2d_forward(&self.conv3, h),
            Activation::LeakyRelu(LEAKY_SLOPE),
        );
        let z = conv2d_forward(&self.conv4, h);
        let [b, c, hh, ww] = tapped.dims();
        EncoderOutput {
            conv: tapped.reshape([b, c, hh * ww]),
            z: z.flatten(1, 3),
        }
    }
}
