//! # mmssl-objectives
//!
//! The contrastive objectives of the CR/XX/CC/RR taxonomy: critics (scaled dot product,
//! cosine, bilinear), estimators (AMDIM-style InfoNCE, Jensen-Shannon, Donsker-Varadhan,
//! NWJ), the four edges between convolutional maps and latents of n modalities, and parsed
//! objective specs such as `CR-XX-CC` or `CR:1,XX:0.5`.
//!
//! This crate is being built up (see the project's issue on encoders and objectives); it
//! exposes no items yet.
#![deny(missing_docs)]
