//! # mmssl-kernels
//!
//! The CPU specialisations of mmssl and the plumbing they share, below every model and
//! objective crate:
//!
//! - [`nn`]: layers ([`nn::Conv`], [`nn::ConvTranspose`], [`nn::NormAct`], [`nn::Act`],
//!   [`nn::Pointwise`]) that run through a fused kernel on burn's CPU backend (`flex`) and through
//!   burn's generic operations on every other backend, with the same values and gradients
//!   (tested against burn's). Model code calls `layer.forward(x)` and never chooses a path.
//! - The kernels themselves: the fused convolution ([`conv`]), batch norm with its activation
//!   ([`norm`]), the pointwise linear map ([`pointwise()`]) and InfoNCE ([`infonce`]), each a
//!   function that returns `None` (or falls back) where it does not apply; [`optim`]: an
//!   Adam-family optimiser step as one parallel pass.
//! - [`host`]: reading burn's CPU tensors in place, the matrix products, pooled buffers: what a
//!   new fused operation needs.
//! - [`runtime`]: the process-wide settings (allocator) applied once by the library itself, and
//!   [`runtime::on_pool`] for training loops.
//!
//! # Example
//!
//! ```
//! use burn::module::Param;
//! use burn::tensor::{Device, Distribution, Tensor};
//! use mmssl_kernels::nn::{Conv, NormActConfig};
//! use mmssl_kernels::norm::Activation;
//!
//! let device = Device::flex().autodiff();
//! let w = Tensor::<4>::random([8, 1, 4, 4], Distribution::Normal(0.0, 0.1), &device);
//! let conv = Conv::new(Param::from_tensor(w), 2, 1);
//! let norm = NormActConfig::new(8, Activation::LeakyRelu(0.2)).init(&device);
//! let x = Tensor::<4>::random([2, 1, 32, 32], Distribution::Default, &device);
//! let y = norm.forward(conv.forward(x)); // fused on flex, generic on wgpu or CUDA
//! assert_eq!(y.dims(), [2, 8, 16, 16]);
//! ```
#![deny(missing_docs)]

pub mod conv;
pub mod host;
pub mod infonce;
pub mod nn;
pub mod norm;
pub mod optim;
mod pointwise;
pub mod runtime;

pub use conv::{conv2d_forward, conv3d_forward, try_conv};
pub use norm::{Activation, RunningVariance, activate, batch_norm, batch_norm_with};
pub use pointwise::pointwise;
#[allow(deprecated)]
pub use runtime::init;
pub use runtime::{configure, on_pool};

#[cfg(test)]
mod test_util;
