//! An encoder for either kind of modality, chosen from the data's shape.

use crate::error::{Result, TrainError};
use burn::module::Module;
use burn::tensor::Device;
use mmssl_data::ViewBatch;
use mmssl_encoders::{
    DcganEncoder2d, DcganEncoder2dConfig, DcganEncoder3d, DcganEncoder3dConfig, EncoderOutput,
};
use rand::Rng;

/// A DCGAN encoder for 32x32 images or 64^3 volumes.
// Built once per modality and moved around rarely: boxing a variant is not worth it.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AnyEncoder {
    /// For `[B, C, 32, 32]` images.
    Images(DcganEncoder2d),
    /// For `[B, C, 64, 64, 64]` volumes.
    Volumes(DcganEncoder3d),
}

impl AnyEncoder {
    /// The encoder for items of `shape` (`[C, 32, 32]` or `[C, 64, 64, 64]`).
    pub fn for_shape<R: Rng + ?Sized>(
        shape: &[usize],
        latent_dim: usize,
        device: &Device,
        rng: &mut R,
    ) -> Result<Self> {
        match shape {
            [c, 32, 32] => Ok(AnyEncoder::Images(
                DcganEncoder2dConfig::new()
                    .with_in_channels(*c)
                    .with_latent_dim(latent_dim)
                    .init(device, rng)?,
            )),
            [c, 64, 64, 64] => Ok(AnyEncoder::Volumes(
                DcganEncoder3dConfig::new()
                    .with_in_channels(*c)
                    .with_latent_dim(latent_dim)
                    .init(device, rng)?,
            )),
            other => Err(TrainError::UnsupportedShape {
                shape: other.to_vec(),
            }),
        }
    }

    /// Channels of the tapped feature map (64 for images, 128 for volumes).
    pub fn tapped_channels(&self) -> usize {
        match self {
            AnyEncoder::Images(_) => 64,
            AnyEncoder::Volumes(_) => 128,
        }
    }

    /// Encodes one modality of a batch.
    pub fn forward(&self, view: &ViewBatch) -> Result<EncoderOutput> {
        match (self, view) {
            (AnyEncoder::Images(e), ViewBatch::Images(x)) => Ok(e.forward(x.clone())),
            (AnyEncoder::Volumes(e), ViewBatch::Volumes(x)) => Ok(e.forward(x.clone())),
            (AnyEncoder::Images(_), _) => Err(TrainError::ViewKind {
                encoder: "image",
                got: "volumes",
            }),
            (AnyEncoder::Volumes(_), _) => Err(TrainError::ViewKind {
                encoder: "volume",
                got: "images",
            }),
        }
    }
}
