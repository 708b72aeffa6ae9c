//! Paired-volume cohorts (OASIS-3 style T1 + fALFF) from a CSV manifest: subject-level
//! stratified folds with a hold-out set, pretraining / evaluation / class-balanced sets, and
//! [`VolumeCohort`], the [`PairedDataset`] that loads, preprocesses, caches and augments pairs.
//!
//! # Manifest
//!
//! A CSV file with a header row and the columns `subject`, `session`, `t1`, `falff`, `label`
//! (names case-insensitive, in any order), plus any extra covariate columns (kept as text).
//! `t1` and `falff` are paths to NIfTI files, relative to the manifest's folder unless
//! absolute; `label` is `HC`, `AD`, `other` or empty (unlabelled), case-insensitive. Every
//! problem (a missing column, a missing file, a duplicate `(subject, session)`, an unknown
//! label, a short row) is a [`DataError::Manifest`] naming the file and line.
//!
//! # Subjects and splits
//!
//! A subject's diagnosis is AD if any of its sessions is AD, else HC if any is HC, else other
//! if any is other, else unlabelled. [`split_subjects`] shuffles the subjects of each
//! diagnosis with a seed, puts a fraction of each in the hold-out set and deals the rest into
//! `k` folds (continuing the deal across diagnoses), so no subject is in two sets and every set
//! has the cohort's class proportions up to rounding.
//!
//! # Preprocessing of a pair ([`CohortVolumes`])
//!
//! Load both volumes -> resample both onto the standard grid (64^3, 3 mm) centred on the T1's
//! brain centre -> brain mask (T1 above a threshold, or a given mask volume) applied to both ->
//! Nyul-Udupa histogram standardisation with landmarks learned on training pairs only ->
//! z-normalisation inside the mask -> (per item and epoch) the same random crop and flips on
//! both modalities, drawn from [`item_rng`]`(seed, epoch, index)`. Everything up to the
//! augmentation is cached in memory per session (2 x 1 MiB for 64^3), so epochs after the
//! first only augment.

mod manifest;
mod split;
mod volumes;

pub use manifest::{Diagnosis, Manifest, ManifestRow, Subject};
pub use split::{
    CohortItem, CohortSplit, balanced_upsample, evaluation_items, pretraining_items, split_subjects,
};
pub use volumes::{CohortVolumes, PreparedPair, VolumeCohort, VolumePipeline};
