//! What an encoder returns.

use burn::tensor::Tensor;

/// The two things an mmssl encoder exposes: the tapped convolutional feature map and the
/// latent representation.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// The raw output of the tapped convolution (before its BatchNorm and activation), with
    /// the spatial grid flattened into locations: `[batch, channels, locations]`
    /// (`[B, 64, 64]` for the 2D encoder, `[B, 128, 512]` for the 3D one).
    pub conv: Tensor<3>,
    /// The latent representation `z`: `[batch, latent_dim]` (64 by default). Downstream tasks
    /// (linear evaluation, similarity) use this.
    pub z: Tensor<2>,
}
