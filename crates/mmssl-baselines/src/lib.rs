//! # mmssl-baselines
//!
//! The methods the contrastive taxonomy is compared against: supervised training, the
//! autoencoder, the deep CCA family (DCCAE, CR-CCA), RR-AE, the mixture-of-experts multimodal
//! VAE (MMVAE) and linear CCA, each behind the same method interface as the objectives.
//!
//! This crate is being built up (see the project's issue on baselines); it exposes no items
//! yet.
#![deny(missing_docs)]
