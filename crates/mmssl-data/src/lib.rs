//! # mmssl-data
//!
//! Everything between files on disk and batches of tensors for mmssl.
//!
//! - Readers: [`read_idx`] / [`load_mnist_dir`] (MNIST, Fashion-MNIST; raw or `.gz`),
//!   [`read_mat`] / [`load_svhn_mat`] (MATLAB v5 `.mat` as SVHN ships it).
//! - Paired datasets ([`PairedDataset`]): [`TwoViewMnist`] (rotated view + noisy view, or the
//!   noisy-MNIST variant with view 2 from another image of the class) and [`LabelPaired`]
//!   (MNIST-SVHN style pairing of any two labelled image sets).
//! - Volumes: [`read_nifti`] / [`write_nifti`] (NIfTI-1 and NIfTI-2, `.nii[.gz]`, `.hdr/.img`)
//!   into [`Volume`]; [`resample`] onto a [`VoxelGrid`] (standard: 64^3 at 3 mm), [`Mask`],
//!   [`HistogramStandardizer`] (Nyul-Udupa), [`z_normalise`], [`augment_volumes`] (one crop and
//!   flip for every modality); [`falff`] (ALFF / fALFF from 4D BOLD).
//! - Cohorts: [`Manifest`] (CSV of T1/fALFF pairs), [`split_subjects`] (stratified subject
//!   folds + hold-out), [`VolumeCohort`] (cached, augmented [`PairedDataset`] of pairs) and
//!   [`synth_cohort`] (a synthetic cohort from the MNI template). See `docs/data.md`.
//! - Splits: [`stratified_k_fold`] (any fold), [`Subset`].
//! - Downloads: [`download`] (MNIST, Fashion-MNIST, SVHN or any files, MD5-verified; the
//!   `download` feature, on by default).
//! - Batching: [`collate`] / [`load_batch`] into per-modality tensors on any device;
//!   [`prefetch`] loads upcoming batches on worker threads while the caller trains.
//!
//! The crate is in four sections, each a public module whose items are also re-exported here:
//! [`formats`] (file readers and writers), [`images`] (image datasets), [`neuro`] (volumes,
//! preprocessing, fALFF, cohorts) and [`loading`] (datasets, splits, loading, batches).
//!
//! Every random choice draws from [`item_rng`]`(seed, epoch, index)`: reproducible, different
//! per epoch, and independent of loading order.
//!
//! # Example
//!
//! ```
//! use mmssl_data::{ImageSet, PairedDataset, TwoViewConfig, TwoViewMnist};
//!
//! // Four 28x28 "digits" (real data comes from `load_mnist_dir`).
//! let pixels: Vec<u8> = (0..4 * 28 * 28).map(|i| (i % 251) as u8).collect();
//! let images = ImageSet::new(pixels, vec![0, 1, 0, 1], 1, 28, 28, "example").unwrap();
//! let data = TwoViewMnist::new(images, TwoViewConfig::default()).unwrap();
//! let item = data.get(2, 0).unwrap();
//! assert_eq!(item.views.len(), 2);
//! assert_eq!(item.views[0].len(), 32 * 32);
//! assert_eq!(item.label, Some(0));
//! assert_eq!(item, data.get(2, 0).unwrap()); // same seed, epoch and index: same draw
//! assert_ne!(item, data.get(2, 1).unwrap()); // another epoch: another draw
//! ```
#![deny(missing_docs)]

#[cfg(feature = "download")]
pub mod download;
mod error;
pub mod files;
pub mod formats;
pub mod images;
pub mod loading;
pub mod neuro;

pub use error::{DataError, Result};
pub use formats::*;
pub use images::*;
pub use loading::*;
pub use neuro::*;

#[cfg(test)]
mod cohort_tests;
#[cfg(test)]
mod falff_tests;
#[cfg(test)]
mod loading_tests;
#[cfg(test)]
mod preprocess_tests;
#[cfg(test)]
mod synth_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod volume_tests;
