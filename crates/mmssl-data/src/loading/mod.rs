//! From datasets to batches: the [`PairedDataset`] trait and its seeded draws, subsets and
//! stratified folds, background loading ([`prefetch`]) and batches of tensors ([`collate`]).

#[cfg(feature = "burn")]
pub(crate) mod batch;
pub(crate) mod dataset;
pub(crate) mod loader;
pub(crate) mod split;

#[cfg(feature = "burn")]
pub use batch::{Batch, ViewBatch, collate, load_batch};
pub use dataset::{MapItems, PairedDataset, PairedItem, item_rng};
pub use loader::{BatchPlan, LoadedBatch, LoaderConfig, Prefetch, load_items, prefetch};
pub use split::{Subset, stratified_k_fold};
