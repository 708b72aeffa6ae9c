//! # mmssl-encoders
//!
//! Model components for mmssl on any burn device: DCGAN encoders (2D for 32x32 images, 3D for
//! 64^3 volumes) that expose both the tapped convolutional feature map and the latent,
//! matching DCGAN decoders for the autoencoder baselines, and the AMDIM-style projection heads
//! ([`ConvHead`] for feature maps, [`LatentHead`] for latents).
//!
//! The 2D and 3D models come from one definition ([`dcgan`]): a table of layers and a model
//! generic over the tensor rank. The layers are `mmssl-kernels`' ([`mmssl_kernels::nn`]), which
//! take the fused CPU kernels on burn's CPU backend and burn's generic operations elsewhere.
//!
//! Every `init` takes the device and a random generator: weights are drawn on the host, so the
//! same seed gives the same model on every backend.
//!
//! # Example
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use mmssl_encoders::{ConvHeadConfig, DcganEncoder2dConfig, LatentHeadConfig};
//! use rand::{SeedableRng, rngs::StdRng};
//!
//! let device = Device::flex();
//! let mut rng = StdRng::seed_from_u64(0);
//! let encoder = DcganEncoder2dConfig::new().init(&device, &mut rng).unwrap();
//! let conv_head = ConvHeadConfig::new(64).init(&device, &mut rng).unwrap();
//! let latent_head = LatentHeadConfig::new().init(&device, &mut rng).unwrap();
//!
//! let images = Tensor::<4>::zeros([2, 1, 32, 32], &device);
//! let out = encoder.forward(images);
//! assert_eq!(out.conv.dims(), [2, 64, 64]); // 64 channels x 8x8 locations
//! assert_eq!(out.z.dims(), [2, 64]);
//! assert_eq!(conv_head.forward(out.conv).dims(), [2, 64, 64]);
//! assert_eq!(latent_head.forward(out.z).dims(), [2, 64]);
//! ```
#![deny(missing_docs)]

mod conv_head;
pub mod dcgan;
pub mod init;
mod latent_head;
mod output;
mod variant;

pub use conv_head::{ConvHead, ConvHeadConfig};
pub use dcgan::{
    DcganDecoder, DcganDecoder2d, DcganDecoder2dConfig, DcganDecoder3d, DcganDecoder3dConfig,
    DcganEncoder, DcganEncoder2d, DcganEncoder2dConfig, DcganEncoder3d, DcganEncoder3dConfig,
};
pub use latent_head::{LatentHead, LatentHeadConfig};
pub use output::EncoderOutput;
pub use variant::{BASE_WIDTH, EncoderOptions, Variant};

// The CPU kernels and their plumbing moved to `mmssl-kernels`; their former paths here still
// resolve.
#[doc(hidden)]
pub use mmssl_kernels::{
    Activation, activate, batch_norm, conv2d_forward, conv3d_forward, pointwise,
};

/// Former home of the CPU plumbing, now [`mmssl_kernels::host`] and [`mmssl_kernels::runtime`].
#[doc(hidden)]
pub mod cpu {
    pub use mmssl_kernels::host::*;
    pub use mmssl_kernels::runtime::tune_allocator;
}

/// Negative slope of the LeakyReLU used throughout the DCGAN encoders and decoders.
pub const LEAKY_SLOPE: f64 = 0.2;

/// Invalid model configuration.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// A size that must be positive is zero.
    #[error("{name} must be at least 1, got {value}")]
    ZeroSize {
        /// The configuration field.
        name: &'static str,
        /// Its value.
        value: usize,
    },
}

impl EncoderError {
    fn check_positive(name: &'static str, value: usize) -> Result<(), EncoderError> {
        if value == 0 {
            Err(EncoderError::ZeroSize { name, value })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
