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

impl ImportReport {
    /// What `mmssl import` prints: each source and what it became, the run folder, the next
    /// commands and every note.
    pub fn summary(&self) -> String {
        let r = self;
        let mut text = String::new();
        for s in &r.sources {
            let a = &s.architecture;
            text += &format!(
                "source {} of {} -> modality {}: {}D DcganEncoder ({} input channel(s), width {}, z {}), {}\n",
                s.source,
                s.file.display(),
                s.modality,
                a.dims,
                a.in_channels,
                a.width,
                a.latent_dim,
                if r.kept.is_empty() {
                    format!(
                        "conv head on {} and latent head (embedding {})",
                        a.tap_key(),
                        a.embedding_dim
                    )
                } else {
                    "encoder only (heads at their seeded initialisation)".into()
                }
            );
        }
        let dir = r.dir.display();
        text += &format!(
            "{} tensors imported; method {}\nrun folder: {dir}\nnext: mmssl linear-eval --run {dir} \
         (or analyze, explain), mmssl export {dir} --out DIR, mmssl run --init-from {dir}",
            r.tensors, r.method
        );
        for n in &r.notes {
            text += &format!("\nnote: {n}");
        }
        text
    }
}

impl ExportReport {
    /// What `mmssl export` prints: the files of each modality and the Python that loads them.
    pub fn summary(&self) -> String {
        let r = self;
        let mut text = String::new();
        for m in &r.modalities {
            text += &format!("modality {}:", m.modality);
            for f in &m.files {
                text += &format!(" {}", f.file_name().unwrap_or_default().to_string_lossy());
            }
            text.push('\n');
        }
        text += &format!(
            "written to {}; load in PyTorch (docs/interop.md):\n  \
         enc = DcganEncoder(**json.load(open('encoder_0.json'))['dcgan_encoder'])\n  \
         enc.load_state_dict(safetensors.torch.load_file('encoder_0.safetensors'), strict=True)",
            r.dir.display()
        );
        text
    }
}

#[cfg(test)]
mod tests;
