//! A decoder for either kind of modality, and the pieces of reconstruction losses.

use crate::error::{BaselineError, Result};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mmssl_data::ViewBatch;
use mmssl_encoders::dcgan::{DECODER_2D, DECODER_3D};
use mmssl_encoders::{DcganDecoder, DcganDecoder2d, DcganDecoder3d};
use rand::Rng;

/// A DCGAN decoder to 32x32 images or 64^3 volumes (the mirror of `AnyEncoder`).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum AnyDecoder {
    /// To `[B, C, 32, 32]` images.
    Images(DcganDecoder2d),
    /// To `[B, C, 64, 64, 64]` volumes.
    Volumes(DcganDecoder3d),
}

impl AnyDecoder {
    /// The decoder producing items of `shape` (`[C, 32, 32]` or `[C, 64, 64, 64]`) from
    /// `latent_dim`-dimensional latents.
    pub fn for_shape<R: Rng + ?Sized>(
        shape: &[usize],
        latent_dim: usize,
        device: &Device,
        rng: &mut R,
    ) -> Result<Self> {
        let (table, c) = match shape {
            [c, 32, 32] => (DECODER_2D, *c),
            [c, 64, 64, 64] => (DECODER_3D, *c),
            other => {
                return Err(BaselineError::UnsupportedShape {
                    shape: other.to_vec(),
                });
            }
        };
        Ok(if shape.len() == 3 {
            AnyDecoder::Images(DcganDecoder::from_table(table, c, latent_dim, device, rng)?)
        } else {
            AnyDecoder::Volumes(DcganDecoder::from_table(table, c, latent_dim, device, rng)?)
        })
    }

    /// Decodes latents `[N, latent_dim]` into `N` items, values in `(0, 1)`.
    pub fn forward(&self, z: Tensor<2>) -> ViewBatch {
        match self {
            AnyDecoder::Images(d) => ViewBatch::Images(d.forward(z)),
            AnyDecoder::Volumes(d) => ViewBatch::Volumes(d.forward(z)),
        }
    }
}

/// A batch of one modality flattened to `[B, C * spatial]`.
pub fn flatten_view(view: &ViewBatch) -> Tensor<2> {
    match view {
        ViewBatch::Vectors(t) => t.clone(),
        ViewBatch::Images(t) => t.clone().flatten(1, 3),
        ViewBatch::Volumes(t) => t.clone().flatten(1, 4),
    }
}

/// Mean squared error between a reconstruction and its target (same kind and shape).
pub fn mse(reconstruction: &ViewBatch, target: &ViewBatch) -> Result<Tensor<1>> {
    let (a, b) = (flatten_view(reconstruction), flatten_view(target));
    BaselineError::check_same("a reconstruction and its target", &a.dims(), &b.dims())?;
    Ok((a - b).square().mean())
}
