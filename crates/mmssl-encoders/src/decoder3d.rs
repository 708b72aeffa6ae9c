//! The 3D DCGAN decoder for 64^3 volumes, mirror of [`crate::DcganEncoder3d`].

use crate::init::{leaky_relu_gain, xavier_conv};
use crate::{Activation, EncoderError, LEAKY_SLOPE, batch_norm};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use rand::Rng;

/// Configuration of [`DcganDecoder3d`].
#[derive(Config, Debug)]
pub struct DcganDecoder3dConfig {
    /// Output channels.
    #[config(default = 1)]
    pub out_channels: usize,
    /// Size of the latent input.
    #[config(default = 64)]
    pub latent_dim: usize,
}

/// 3D DCGAN decoder from a latent to `[B, C, 64, 64, 64]` volumes in `(0, 1)`:
/// latent x 1^3 -> 256 x 4^3 -> 128 x 8^3 -> 64 x 16^3 -> 32 x 32^3 -> C x 64^3
/// (transposed 4x4x4 convolutions without bias, BatchNorm, LeakyReLU(0.2), sigmoid output).
#[derive(Module, Debug)]
pub struct DcganDecoder3d {
    pub(crate) deconv1: ConvTranspose3d,
    pub(crate) bn1: BatchNorm,
    pub(crate) deconv2: ConvTranspose3d,
    pub(crate) bn2: BatchNorm,
    pub(crate) deconv3: ConvTranspose3d,
    pub(crate) bn3: BatchNorm,
    pub(crate) deconv4: ConvTranspose3d,
    pub(crate) bn4: BatchNorm,
    pub(crate) deconv5: ConvTranspose3d,
}

fn deconv3d<R: Rng + ?Sized>(
    c_in: usize,
    c_out: usize,
    stride: usize,
    pad: usize,
    gain: f64,
    rng: &mut R,
    device: &Device,
) -> ConvTranspose3d {
    let mut layer = ConvTranspose3dConfig::new([c_in, c_out], [4, 4, 4])
        .with_stride([stride; 3])
        .with_padding([pad; 3])
        .with_bias(false)
        .with_initializer(Initializer::Zeros)
        .init(device);
    layer.weight = xavier_conv([c_in, c_out, 4, 4, 4], gain, rng, device);
    layer
}

impl DcganDecoder3dConfig {
    /// Builds the decoder on `device`, drawing weights from `rng`.
    pub fn init<R: Rng + ?Sized>(
        &self,
        device: &Device,
        rng: &mut R,
    ) -> Result<DcganDecoder3d, EncoderError> {
        EncoderError::check_positive("out_channels", self.out_channels)?;
        EncoderError::check_positive("latent_dim", self.latent_dim)?;
        let g = leaky_relu_gain(LEAKY_SLOPE);
        Ok(DcganDecoder3d {
            deconv1: deconv3d(self.latent_dim, 256, 1, 0, g, rng, device),
            bn1: BatchNormConfig::new(256).init(device),
            deconv2: deconv3d(256, 128, 2, 1, g, rng, device),
            bn2: BatchNormConfig::new(128).init(device),
            deconv3: deconv3d(128, 64, 2, 1, g, rng, device),
            bn3: BatchNormConfig::new(64).init(device),
            deconv4: deconv3d(64, 32, 2, 1, g, rng, device),
            bn4: BatchNormConfig::new(32).init(device),
            deconv5: deconv3d(32, self.out_channels, 2, 1, 1.0, rng, device),
        })
    }
}

impl DcganDecoder3d {
    /// Decodes latents into volumes.
    ///
    /// # Shapes
    /// - `z`: `[B, latent_dim]`
    /// - output: `[B, out_channels, 64, 64, 64]`, values in `(0, 1)`
    pub fn forward(&self, z: Tensor<2>) -> Tensor<5> {
        let [b, d] = z.dims();
        let h = z.reshape([b, d, 1, 1, 1]);
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
        let h = batch_norm(
            &self.bn4,
            self.deconv4.forward(h),
            Activation::LeakyRelu(LEAKY_SLOPE),
        );
        sigmoid(self.deconv5.forward(h))
    }
}
