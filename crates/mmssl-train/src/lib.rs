//! # mmssl-train
//!
//! The one training loop of mmssl (every objective and baseline through one method trait),
//! RAdam with the one-cycle schedule, checkpoints and resumption, linear evaluation, the
//! similarity analysis of trained models, and the experiment runner with its reports.
//!
//! This crate is being built up (see the project's issue on training); it exposes no items
//! yet.
#![deny(missing_docs)]
