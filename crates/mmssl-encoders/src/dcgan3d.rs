//! The 3D DCGAN encoder for 64^3 volumes (OASIS-3 T1 and fALFF), as in Fedorov et al.
//! (ISBI 2021).

use crate::init::{leaky_relu_gain, xavier_conv};
use crate::{
    Activation, EncoderError, EncoderOutput, LEAKY_SLOPE, activate, batch_norm, conv3d_forward,
};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig3d};
use burn::tensor::{Device, Tensor};
use rand::Rng;

/// Configuration of [`DcganEncoder3d`].
#[derive(Config, Debug)]
pub struct DcganEncoder3dConfig {
    /// Input channels (1 for a T1 or fALFF volume).
    #[config(default = 1)]
    pub in_channels: usize,
    /// Size of the latent `z`.
    #[config(default = 64)]
    pub latent_dim: usize,
}

/// DCGAN encoder for `[B, C, 64, 64, 64]` volumes; 4x4x4 kernels without bias, LeakyReLU(0.2):
///
/// | layer | output | notes |
/// | --- | --- | --- |
/// | conv(C -> 32, stride 2, pad 1) | 32 x 32^3 | |
/// | conv(32 -> 64, stride 2, pad 1) + BN | 64 x 16^3 | |
/// | conv(64 -> 128, stride 2, pad 1) + BN | 128 x 8^3 | **tapped**: the raw conv output |
/// | conv(128 -> 256, stride 2, pad 1) + BN | 256 x 4^3 | |
/// | conv(256 -> latent, stride 1, pad 0) | latent x 1^3 | `z`, no activation |
#[derive(Module, Debug)]
pub struct DcganEncoder3d {
    pub(crate) conv1: Conv3d,
    pub(crate) conv2: Conv3d,
    pub(crate) bn2: BatchNorm,
    pub(crate) conv3: Conv3d,
    pub(crate) bn3: BatchNorm,
    pub(crate) conv4: Conv3d,
    pub(crate) bn4: BatchNorm,
    pub(crate) conv5: Conv3d,
}

fn conv3d<R: Rng + ?Sized>(
    c_in: usize,
    c_out: usize,
    stride: usize,
    pad: usize,
    gain: f64,
    rng: &mut R,
    device: &Device,
) -> Conv3d {
    let mut conv = Conv3dConfig::new([c_in, c_out], [4, 4, 4])
        .with_stride([stride; 3])
        .with_padding(PaddingConfig3d::Explicit(pad, pad, pad))
        .with_bias(false)
        .with_initializer(Initializer::Zeros)
        .init(device);
    conv.weight = xavier_conv([c_out, c_in, 4, 4, 4], gain, rng, device);
    conv
}

impl DcganEncoder3dConfig {
    /// Builds the encoder on `device`, drawing weights from `rng`.
    pub fn init<R: Rng + ?Sized>(
        &self,
        device: &Device,
        rng: &mut R,
    ) -> Result<DcganEncoder3d, EncoderError> {
        EncoderError::check_positive("in_channels", self.in_channels)?;
        EncoderError::check_positive("latent_dim", self.latent_dim)?;
        let g = leaky_relu_gain(LEAKY_SLOPE);
        Ok(DcganEncoder3d {
            conv1: conv3d(self.in_channels, 32, 2, 1, g, rng, device),
            conv2: conv3d(32, 64, 2, 1, g, rng, device),
            bn2: BatchNormConfig::new(64).init(device),
            conv3: conv3d(64, 128, 2, 1, g, rng, device),
            bn3: BatchNormConfig::new(128).init(device),
            conv4: conv3d(128, 256, 2, 1, g, rng, device),
            bn4: BatchNormConfig::new(256).init(device),
            conv5: conv3d(256, self.latent_dim, 1, 0, g, rng, device),
        })
    }
}

impl DcganEncoder3d {
    /// Encodes a batch of volumes.
    ///
    /// # Shapes
    /// - `x`: `[B, in_channels, 64, 64, 64]`
    /// - output `conv`: `[B, 128, 512]`, output `z`: `[B, latent_dim]`
    pub fn forward(&self, x: Tensor<5>) -> EncoderOutput {
        let h = activate(
            conv3d_forward(&self.conv1, x),
            Activation::LeakyRelu(LEAKY_SLOPE),
        );
        let h = batch_norm(
            &self.bn2,
            conv3d_forward(&self.conv2, h),
            Activation::LeakyRelu(LEAKY_SLOPE),
        );
        let tapped = conv3d_forward(&self.conv3, h);
        let h = batch_norm(
            &self.bn3,
            tapped.clone(),
            Activation::LeakyRelu(LEAKY_SLOPE),
        );
        let h = batch_norm(
            &self.bn4,
            conv3d_forward(&self.conv4, h),
            Activation::LeakyRelu(LEAKY_SLOPE),
        );
        let z = conv3d_forward(&self.conv5, h);
        let [b, c, d, hh, ww] = tapped.dims();
        EncoderOutput {
            conv: tapped.reshape([b, c, d * hh * ww]),
            z: z.flatten(1, 4),
        }
    }
}
