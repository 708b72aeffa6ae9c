//! An encoder for either kind of modality, chosen from the data's shape, and the backbone of
//! one encoder per modality that every method encodes and represents its batches with.

use crate::error::{Result, TrainError};
use burn::module::Module;
use burn::tensor::Device;
use burn::tensor::Tensor;
use mmssl_data::{Batch, ViewBatch};
use mmssl_encoders::dcgan::{ENCODER_2D, ENCODER_3D, TAP_2D, TAP_3D};
use mmssl_encoders::{DcganEncoder, DcganEncoder2d, DcganEncoder3d, EncoderOptions, EncoderOutput};
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
        Self::for_shape_with(shape, latent_dim, &EncoderOptions::default(), device, rng)
    }

    /// [`AnyEncoder::for_shape`] at the width and in the variant of `options`.
    pub fn for_shape_with<R: Rng + ?Sized>(
        shape: &[usize],
        latent_dim: usize,
        options: &EncoderOptions,
        device: &Device,
        rng: &mut R,
    ) -> Result<Self> {
        let (z, o, d, r) = (latent_dim, options, device, rng);
        match shape {
            [c, 32, 32] => Ok(Self::Images(DcganEncoder::from_table_with(
                ENCODER_2D, TAP_2D, *c, z, o, d, r,
            )?)),
            [c, 64, 64, 64] => Ok(Self::Volumes(DcganEncoder::from_table_with(
                ENCODER_3D, TAP_3D, *c, z, o, d, r,
            )?)),
            other => Err(TrainError::UnsupportedShape {
                shape: other.to_vec(),
            }),
        }
    }

    /// Channels of the tapped feature map (64 for images, 128 for volumes).
    pub fn tapped_channels(&self) -> usize {
        match self {
            AnyEncoder::Images(e) => e.tapped_channels(),
            AnyEncoder::Volumes(e) => e.tapped_channels(),
        }
    }

    /// Encodes one modality of a batch.
    pub fn forward(&self, view: &ViewBatch) -> Result<EncoderOutput> {
        match (self, view) {
            (AnyEncoder::Images(e), ViewBatch::Images(x)) => Ok(e.forward(x.clone())),
            (AnyEncoder::Volumes(e), ViewBatch::Volumes(x)) => Ok(e.forward(x.clone())),
            (AnyEncoder::Images(_), other) => Err(TrainError::ViewKind {
                encoder: "image",
                got: other.kind(),
            }),
            (AnyEncoder::Volumes(_), other) => Err(TrainError::ViewKind {
                encoder: "volume",
                got: other.kind(),
            }),
        }
    }
}

/// One encoder per modality: the part of a model every method shares. It checks that a batch
/// has the model's modalities, encodes them, and gives the representation each method's
/// [`Method::represent`](crate::Method::represent) returns (the latent `z`, or a part of it).
#[derive(Module, Debug)]
pub struct Backbone {
    encoders: Vec<AnyEncoder>,
}

impl Backbone {
    /// A backbone of `encoders`, modality `m` encoded by `encoders[m]`.
    pub fn new(encoders: Vec<AnyEncoder>) -> Result<Self> {
        if encoders.is_empty() {
            return Err(TrainError::NoModalities);
        }
        Ok(Backbone { encoders })
    }

    /// Number of modalities.
    pub fn modalities(&self) -> usize {
        self.encoders.len()
    }

    /// The encoder of `modality`.
    pub fn encoder(&self, modality: usize) -> Option<&AnyEncoder> {
        self.encoders.get(modality)
    }

    /// An error unless `batch` has exactly one view per modality.
    pub fn check(&self, batch: &Batch) -> Result<()> {
        if batch.views.len() != self.encoders.len() {
            return Err(TrainError::ModalityCount {
                model: self.encoders.len(),
                batch: batch.views.len(),
            });
        }
        Ok(())
    }

    /// The view of `modality` in `batch`, after [`Backbone::check`].
    pub fn view<'a>(&self, batch: &'a Batch, modality: usize) -> Result<&'a ViewBatch> {
        self.check(batch)?;
        batch.views.get(modality).ok_or(TrainError::NoModality {
            modality,
            available: batch.views.len(),
        })
    }

    /// Modality `modality` of `batch` encoded.
    pub fn encode(&self, batch: &Batch, modality: usize) -> Result<EncoderOutput> {
        let view = self.view(batch, modality)?;
        self.encoders[modality].forward(view)
    }

    /// Every modality of `batch` encoded, in order.
    pub fn encode_all(&self, batch: &Batch) -> Result<Vec<EncoderOutput>> {
        self.check(batch)?;
        (0..self.encoders.len())
            .map(|m| self.encoders[m].forward(&batch.views[m]))
            .collect()
    }

    /// The latent `z` `[B, latent]` of `modality`: the representation of contrastive and most
    /// baseline methods.
    pub fn represent(&self, batch: &Batch, modality: usize) -> Result<Tensor<2>> {
        Ok(self.encode(batch, modality)?.z)
    }
}
