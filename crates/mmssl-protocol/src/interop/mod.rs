//! Weights across the border with PyTorch: the authors' checkpoints into mmssl run folders
//! ([`import_authors`]), mmssl's encoders out to safetensors files that the authors'
//! `DcganEncoder` loads with `load_state_dict(strict=True)` ([`export_run`]), and a model's
//! weights as the start of a new run (`training.init_from`).
//!
//! Files are read with burn's own storage crate (`burn-store`: PyTorch `.pt`/`.pth` through
//! its pickle reader, which executes nothing, and safetensors). Names are mapped by the table
//! in [`authors`], never guessed: every tensor of a file must be used and every parameter of
//! the model filled, or the import fails naming what is missing, unexpected or mis-shaped.
//! docs/interop.md is the user's guide.

pub mod authors;
mod export;
mod import;
pub mod state_dict;

pub use authors::{AuthorsArch, Layout, Part, TensorPair};
pub use export::{ExportReport, ExportedModality, export_run};
pub use import::{ImportReport, ImportSettings, ImportedSource, import_authors};
pub use state_dict::{STATE_DICT_KEYS, StateDict, StateTensor, StoredType};

/// The storage crate the weights go through, for callers that apply tensors themselves.
pub use burn_store;

pub use crate::weights::{Applied, hash_inputs, init_checkpoint, pack_f32, unpack_f32};

#[cfg(test)]
mod tests;
