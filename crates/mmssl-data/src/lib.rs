//! # mmssl-data
//!
//! Everything between files on disk and batches of tensors for mmssl: readers for MNIST and
//! Fashion-MNIST (IDX), SVHN (MATLAB v5 `.mat`) and NIfTI volumes; the paired-modality
//! datasets of the paper (Two-View MNIST, label-paired MNIST-SVHN, OASIS-3 T1 + fALFF);
//! stratified folds, samplers and batching.
//!
//! This crate is being built up (see the project's issue on data loading); it exposes no
//! items yet.
#![deny(missing_docs)]
