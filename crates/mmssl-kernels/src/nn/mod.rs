//! Layers that run through the fused CPU kernels where they apply and through burn's generic
//! operations everywhere else (wgpu, CUDA, other dtypes, inference on another backend), so that
//! model code reads like plain burn: `self.conv.forward(x)`.
//!
//! Each layer's parameters are plain burn [`Param`](burn::module::Param)s with the names burn's
//! own layers give them (`weight`, `bias`, `gamma`, ...), so a model built from these layers
//! saves and loads like any burn module. Spatial layers are generic over the tensor rank `D`:
//! `D = 4` is 2D (`[B, C, H, W]`), `D = 5` is 3D (`[B, C, D, H, W]`); one model definition
//! serves both.

mod conv;
mod norm;
mod pointwise;

pub use conv::{Conv, ConvTranspose};
pub use norm::{Act, NormAct, NormActConfig};
pub use pointwise::Pointwise;

/// The spatial dimensionality of a rank-`D` tensor `[B, C, spatial...]`: 2 for `D = 4`, 3 for
/// `D = 5`. Panics for another rank (a programming error: the layers here exist for those two).
pub const fn spatial_dims(rank: usize) -> usize {
    assert!(
        rank == 4 || rank == 5,
        "spatial layers take rank 4 (2D) or 5 (3D) tensors"
    );
    rank - 2
}

#[cfg(test)]
mod tests;
