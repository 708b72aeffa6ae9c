//! The DCGAN decoder for 32x32 images, mirror of [`crate::DcganEncoder2d`], for the
//! autoencoder baselines (AE, DCCAE, RR-AE) and MMVAE.

use crate::init::{leaky_relu_gain, xavier_conv};
use crate::{Activation, EncoderError, LEAKY_SLOPE, batch_norm};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use rand::Rng;

/// Configuration of [`DcganDecoder2d`].
#[derive(Config, Debug)]
pub struct DcganDecoder2dConfig {
    /// Output channels: 1 (MNIST) or 3 (SVHN).
    #[config(default = 1)]
    pub out_channels: usize,
    /// Size of the latent input.
    #[config(default = 64)]
    pub latent_dim: usize,
}

/// DCGAN decoder from a latent to `[B, C, 32, 32]` images in `(0, 1)`: transposed 4x4
/// convolutions without bias, BatchNorm and LeakyReLU(0.2), sigmoid output:
/// latent x 1^2 -> 128 x 4^2 -> 64 x 8^2 -> 32 x 16^2 -> C x 32^2.
#[derive(Module, Debug)]
pub struct DcganDecoder2d {
    pub(crate) deconv1: ConvTranspose2d,
    pub(crate) bn1: BatchNorm,
    pub(crate) deconv2: ConvTranspose2d,
    pub(crate) bn2: BatchNorm,
    pub(crate) deconv3: ConvTranspose2d,
    pub(crate) bn3: BatchNorm,
    pub(crate) deconv4: ConvTranspose2d,
}

fn deconv2d<R: Rng + ?Sized>(
    c_in: usize,
    c_out: usize,
    stride: usize,
    pad: usize,
    gain: f64,
    rng: &mut R,
    device: &Device,
) -> ConvTranspose2d {
    let mut layer = ConvTranspose2dConfig::new([c_in, c_out], [4, 4])
        .with_stride([stride, stride])
        .with_padding([pad, pad])
        .with_bias(false)
        .with_initializer(Initializer::Zeros)
        .init(device);
    // burn 0.22 passes no fan_out to the initializer of transposed convolutions, so Xavier
    // cannot go through the config; the weight is set directly.
    layer.weight = xavier_conv([c_in, c_out, 4, 4], gain, rng, device);
    layer
}

impl DcganDecoder2dConfig {
    /// Builds the decoder on `device`, drawing weights from `rng`.
    pub fn init<R: Rng + ?Sized>(
        &self,
        device: &Device,
        rng: &mut R,
    ) -> Result<DcganDecoder2d, EncoderError> {
        EncoderError::check_positive("out_channels", self.out_channels)?;
        EncoderError::check_positive("latent_dim", self.latent_dim)?;
        let g = leaky_relu_gain(LEAKY_SLOPE);
        Ok(DcganDecoder2d {
            deconv1: deconv2d(self.latent_dim, 128, 1, 0, g, rng, device),
            bn1: BatchNormConfig::new(128).init(device),
            deconv2: deconv2d(128, 64, 2, 1, g, rng, device),
            bn2: BatchNormConfig::new(64).init(device),
            deconv3: deconv2d(64, 32, 2, 1, g, rng, device),
            bn3: BatchNormConfig::new(32).init(device),
            deconv4: deconv2d(32, self.out_channels, 2, 1, 1.0, rng, device),
        })
    }
}

impl DcganDecoder2d {
    /// Decodes latents into images.
    ///
    /// # Shapes
    /// - `z`: `[B, latent_dim]`
    /// - output: `[B, out_channels, 32, 32]`, values in `(0, 1)`
    pub fn forward(&self, z: Tensor<2>) -> Tensor<4> {
        let [b, d] = z.dims();
        let h = z.reshape([b, d, 1, 1]);
        let h = batch_norm(
            &self.bn1,
            self.deconv1.forward(h),
            Activation::LeakyRelu(LEAKY_SLOPE),
        );
        let h = batch_norm(
            &self.bn2,
            self.deconv2.forward(h),
            Activation::LeakyRelu(LEAKY_SLOPE),
        );
        let h = batch_norm(
            &self.bn3,
            self.deconv3.forward(h),
            Activation::LeakyRelu(LEAKY_SLOPE),
        );
        sigmoid(self.deconv4.forward(h))
    }
}
