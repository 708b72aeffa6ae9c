//! # mmssl-encoders
//!
//! Model components for mmssl on any burn device: DCGAN encoders (2D for 32x32 images, 3D for
//! 64^3 volumes) that expose both the tapped convolutional feature map and the 64-d latent,
//! matching DCGAN decoders for the autoencoder baselines, and the AMDIM-style projection heads
//! (conv head and latent head).
//!
//! This crate is being built up (see the project's issue on encoders and objectives); it
//! exposes no items yet.
#![deny(missing_docs)]
