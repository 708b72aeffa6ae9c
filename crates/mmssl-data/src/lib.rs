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
//!   into [`Volume`]; [`resample`] onto a [`Grid`] (standard: 64^3 at 3 mm), [`Mask`],
//!   [`HistogramStandardizer`] (Nyul-Udupa), [`z_normalise`], [`augment_volumes`] (one crop and
//!   flip for every modality); [`falff`] (ALFF / fALFF from 4D BOLD).
//! - Cohorts: [`Manifest`] (CSV of T1/fALFF pairs), [`split_subjects`] (stratified subject
//!   folds + hold-out), [`VolumeCohort`] (cached, augmented [`PairedDataset`] of pairs) and
//!   [`synth_cohort`] (a synthetic cohort from the MNI template). See `docs/data.md`.
//! - Splits: [`stratified_k_fold`] (any fold), [`Subset`].
//! - Batching: [`collate`] / [`load_batch`] into per-modality tensors on any device;
//!   [`prefetch`] loads upcoming batches on worker threads while the caller trains.
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

#[cfg(feature = "burn")]
mod batch;
mod cohort;
mod dataset;
mod describe;
mod error;
mod falff;
mod histogram;
mod idx;
mod images;
mod loader;
mod mat;
mod nifti_io;
mod paired;
mod preprocess;
mod split;
mod synth;
mod two_view;
mod volume;

#[cfg(feature = "burn")]
pub use batch::{Batch, ViewBatch, collate, load_batch};
pub use cohort::{
    CohortItem, CohortSplit, CohortVolumes, Diagnosis, Manifest, ManifestRow, PreparedPair,
    Subject, VolumeCohort, VolumePipeline, balanced_upsample, evaluation_items, pretraining_items,
    split_subjects,
};
pub use dataset::{PairedDataset, PairedItem, item_rng};
pub use describe::{Description, describe};
pub use error::{DataError, Result};
pub use falff::{AlffReduction, FalffConfig, FalffMaps, falff};
pub use histogram::{HistogramConfig, HistogramFitter, HistogramStandardizer, landmarks};
pub use idx::{
    IdxArray, MnistSplit, embedded_mnist_test, load_mnist_dir, read_idx, read_idx_bytes,
    read_idx_images,
};
pub use images::{Image, ImageSet};
pub use loader::{BatchPlan, LoadedBatch, LoaderConfig, Prefetch, load_items, prefetch};
pub use mat::{MatArray, MatData, load_svhn_mat, read_mat, read_mat_bytes};
pub use nifti_io::{
    NiftiHeaderInfo, VoxelType, parse_nifti_header, read_nifti, read_nifti_bytes,
    read_nifti_header, write_nifti,
};
pub use paired::{LabelPaired, LabelPairedConfig};
pub use preprocess::{
    AugmentConfig, AugmentDraw, Grid, Mask, STANDARD_SIDE, STANDARD_SPACING, apply_mask,
    augment_volumes, brain_centre, crop_or_pad, resample, resample_to_standard, z_normalise,
};
pub use split::{Subset, stratified_k_fold};
pub use synth::{
    HIPPOCAMPAL_SIGMA_MM, HIPPOCAMPI_MNI, POSTERIOR_MNI, POSTERIOR_SIGMA_MM, SynthConfig,
    SynthReport, TEMPORAL_MNI, TEMPORAL_SIGMA_MM, synth_cohort,
};
pub use two_view::{NoiseRange, SecondView, TwoViewConfig, TwoViewMnist};
pub use volume::{Affine, Volume};

#[cfg(test)]
mod cohort_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod volume_tests;
