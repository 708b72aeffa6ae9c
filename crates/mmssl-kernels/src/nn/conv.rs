//! Convolution and transposed convolution over 2D or 3D inputs.

use super::spatial_dims;
use crate::conv::try_conv;
use crate::runtime;
use burn::module::{Module, Param};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Tensor, module as ops};

/// A convolution without bias over `[B, C_in, spatial...]` (`D = 4`: 2D, `D = 5`: 3D) with the
/// same kernel size, stride and symmetric zero padding along every spatial axis. On the CPU
/// backend it runs as one fused operation (`crate::conv`); elsewhere as burn's `conv2d` /
/// `conv3d`, with the same values and gradients.
#[derive(Module, Debug)]
pub struct Conv<const D: usize> {
    /// Weights `[C_out, C_in, k, k(, k)]`.
    pub weight: Param<Tensor<D>>,
    /// Stride along every spatial axis.
    pub stride: usize,
    /// Zero padding on both sides of every spatial axis.
    pub padding: usize,
}

impl<const D: usize> Conv<D> {
    /// A convolution with weights `weight` `[C_out, C_in, k...]`.
    pub fn new(weight: Param<Tensor<D>>, stride: usize, padding: usize) -> Self {
        spatial_dims(D);
        Conv {
            weight,
            stride,
            padding,
        }
    }

    /// `x` `[B, C_in, spatial...]` convolved: `[B, C_out, spatial'...]` with
    /// `spatial' = (spatial + 2 padding - k) / stride + 1`.
    pub fn forward(&self, x: Tensor<D>) -> Tensor<D> {
        runtime::configure();
        let n = spatial_dims(D);
        let weight = self.weight.val();
        let (stride, padding) = ([self.stride; 3], [self.padding; 3]);
        if let Some(y) = try_conv(&x, &weight, &stride[..n], &padding[..n]) {
            return y;
        }
        if n == 2 {
            let options = ConvOptions::new([self.stride; 2], [self.padding; 2], [1; 2], 1);
            rank(ops::conv2d(rank(x), rank(weight), None, options))
        } else {
            let options = ConvOptions::new([self.stride; 3], [self.padding; 3], [1; 3], 1);
            rank(ops::conv3d(rank(x), rank(weight), None, options))
        }
    }
}

/// A transposed convolution without bias over `[B, C_in, spatial...]` (the decoders' upsampling
/// layer), with the same kernel size, stride and padding along every spatial axis; burn's
/// `conv_transpose2d` / `conv_transpose3d` on every backend.
#[derive(Module, Debug)]
pub struct ConvTranspose<const D: usize> {
    /// Weights `[C_in, C_out, k, k(, k)]` (burn's and PyTorch's layout for transposed
    /// convolutions).
    pub weight: Param<Tensor<D>>,
    /// Stride along every spatial axis.
    pub stride: usize,
    /// Padding removed from both sides of every spatial axis of the output.
    pub padding: usize,
}

impl<const D: usize> ConvTranspose<D> {
    /// A transposed convolution with weights `weight` `[C_in, C_out, k...]`.
    pub fn new(weight: Param<Tensor<D>>, stride: usize, padding: usize) -> Self {
        spatial_dims(D);
        ConvTranspose {
            weight,
            stride,
            padding,
        }
    }

    /// `x` `[B, C_in, spatial...]` upsampled: `[B, C_out, spatial'...]` with
    /// `spatial' = (spatial - 1) stride - 2 padding + k`.
    pub fn forward(&self, x: Tensor<D>) -> Tensor<D> {
        let n = spatial_dims(D);
        let weight = self.weight.val();
        if n == 2 {
            let options =
                ConvTransposeOptions::new([self.stride; 2], [self.padding; 2], [0; 2], [1; 2], 1);
            rank(ops::conv_transpose2d(rank(x), rank(weight), None, options))
        } else {
            let options =
                ConvTransposeOptions::new([self.stride; 3], [self.padding; 3], [0; 3], [1; 3], 1);
            rank(ops::conv_transpose3d(rank(x), rank(weight), None, options))
        }
    }
}

/// `t` typed with its actual rank `B` (equal to `A`, which the caller checked): the generic
/// layers name their rank `D`, burn's operations a fixed one. A reshape to the same shape, which
/// moves no data.
fn rank<const A: usize, const B: usize>(t: Tensor<A>) -> Tensor<B> {
    let mut shape = [0usize; B];
    shape.copy_from_slice(&t.dims());
    t.reshape(shape)
}
