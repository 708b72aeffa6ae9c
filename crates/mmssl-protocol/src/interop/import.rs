//! The authors' checkpoints into an mmssl run folder.

use super::authors::{self, AuthorsArch, Layout, Part};
use super::state_dict::StateDict;
use super::{Applied, pack_f32};
use crate::config::RunConfig;
use crate::error::{ProtocolError, Result};
use crate::folder::{FolderLock, prepare_fresh};
use crate::observe::Observer;
use crate::registry::Registry;
use burn::tensor::Device;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct ImportSettings {
    /// State dicts of the authors' `Dim` model (`.pt`, `.pth` or `.safetensors`): one holding
    /// every modality's source, or one per modality (the authors' unimodal runs, source 0 and
    /// source 1).
    pub files: Vec<PathBuf>,
    /// Import the encoders only; the heads keep their seeded initialisation (for state dicts
    /// without heads, e.g. an encoder saved on its own).
    pub encoders_only: bool,
}

/// One source of a file, imported as a modality.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportedSource {
    /// The file.
    pub file: PathBuf,
    /// The checkpoint key the state dict was under, if any (`model_state_dict`).
    pub key: Option<String>,
    /// The authors' source id.
    pub source: usize,
    /// The mmssl modality it became (the same index: the authors number their sources as
    /// the datasets order their modalities).
    pub modality: usize,
    /// Its architecture.
    pub architecture: AuthorsArch,
}

/// What an import did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    /// The run folder written.
    pub dir: PathBuf,
    /// The method of the run, with the options the weights need (`variant=authors`, ...).
    pub method: String,
    /// The sources imported.
    pub sources: Vec<ImportedSource>,
    /// Tensors applied to the model.
    pub tensors: usize,
    /// Parameters left at their seeded initialisation (`encoders_only`).
    pub kept: Vec<String>,
    /// Every batch norm's `num_batches_tracked`, by the authors' name.
    pub num_batches_tracked: BTreeMap<String, i64>,
    /// What the user should know (tensors converted to f32, a prefix removed, ...).
    pub notes: Vec<String>,
}

/// A file's state dict with a DataParallel `module.` prefix removed.
fn read(path: &Path, notes: &mut Vec<String>) -> Result<StateDict> {
    let mut dict = StateDict::read(path)?;
    if !dict.tensors.is_empty() && dict.tensors.keys().all(|k| k.starts_with("module.")) {
        dict.tensors = std::mem::take(&mut dict.tensors)
            .into_iter()
            .map(|(k, v)| (k["module.".len()..].to_string(), v))
            .collect();
        notes.push(format!(
            "{}: the prefix `module.` (DataParallel) was removed from every name",
            path.display()
        ));
    }
    for (stored, count) in dict.converted() {
        notes.push(format!(
            "{}: {count} {} tensor(s) converted to float32 (mmssl computes in float32)",
            path.display(),
            stored.name()
        ));
    }
    Ok(dict)
}

/// `config`'s method with the options the imported weights need.
fn method_for(config: &RunConfig, arch: &AuthorsArch, registry: &Registry) -> Result<RunConfig> {
    let mut config = config.clone();
    let spec = &mut config.method;
    let takes_variant = registry
        .options_of(spec)?
        .iter()
        .any(|o| o.name == "variant");
    if !takes_variant {
        return Err(ProtocolError::Config(format!(
            "the authors' model is imported as a contrastive model (an objective such as \
             CR-XX-CC, the one it was trained with); `{spec}` is not one"
        )));
    }
    for (option, value, default) in [
        ("variant", "authors".to_string(), "authors".to_string()),
        ("width", arch.width.to_string(), "32".to_string()),
        ("latent_dim", arch.latent_dim.to_string(), "64".to_string()),
        (
            "embedding_dim",
            arch.embedding_dim.to_string(),
            "64".to_string(),
        ),
    ] {
        match spec.option(option) {
            Some(given) if given.trim() != value => {
                return Err(ProtocolError::Config(format!(
                    "the method option {option}={given} contradicts the weights, which need \
                     {option}={value}"
                )));
            }
            Some(_) => {}
            None if value != default || option == "variant" => spec.set_option(option, &value),
            None => {}
        }
    }
    Ok(config)
}

/// Imports the authors' `Dim` state dicts `settings.files` into the run folder
/// `config.output.dir` (refused when it holds an earlier run, unless `config.output.overwrite`)
/// as a run of `config.method` (an objective; the options `variant=authors`, `width`,
/// `latent_dim` and `embedding_dim` the weights need are added) on `config.data`. The folder
/// then works like a pretrained run's: `linear-eval`, `analyze`, `explain`, `export` and
/// `run --init-from`.
///
/// Every tensor of the files must be used and every parameter filled (the heads may keep
/// their initialisation with `encoders_only`); otherwise the import fails naming what is
/// missing, unexpected or mis-shaped, and nothing is written.
pub fn import_authors(
    config: &RunConfig,
    settings: &ImportSettings,
    registry: &Registry,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<ImportReport> {
    if settings.files.is_empty() {
        return Err(ProtocolError::Config(
            "no file to import: give the authors' state dict (.pt/.pth/.safetensors)".into(),
        ));
    }
    let heads = !settings.encoders_only;
    let mut notes = Vec::new();
    let mut dicts = Vec::new();
    let mut sources: BTreeMap<usize, (usize, AuthorsArch)> = BTreeMap::new();
    for path in &settings.files {
        let dict = read(path, &mut notes)?;
        let found = authors::sources(&dict);
        if found.is_empty() {
            return Err(ProtocolError::file(
                path,
                format!(
                    "no tensor named `_encoder.<source>...`: not a state dict of the authors' \
                     Dim model (its first names: {})",
                    authors::listing(&dict.tensors.keys().cloned().collect::<Vec<_>>())
                ),
            ));
        }
        for s in found {
            let arch = authors::detect(&dict, s, heads)?;
            if let Some((other, _)) = sources.insert(s, (dicts.len(), arch)) {
                return Err(ProtocolError::file(
                    path,
                    format!(
                        "source {s} is also in {}: give each modality's weights once",
                        settings.files[other].display()
                    ),
                ));
            }
        }
        dicts.push(dict);
    }
    let first = sources.values().next().map(|(_, a)| *a).expect("a source");
    for (s, (_, a)) in &sources {
        if (a.width, a.latent_dim, a.embedding_dim)
            != (first.width, first.latent_dim, first.embedding_dim)
        {
            return Err(ProtocolError::Config(format!(
                "source {s} has width {}, latent {} and embedding {}, another source {}, {} and \
                 {}: an mmssl model has one of each",
                a.width,
                a.latent_dim,
                a.embedding_dim,
                first.width,
                first.latent_dim,
                first.embedding_dim
            )));
        }
    }
    let mut config = method_for(config, &first, registry)?;
    config.validate(registry)?;
    let method = registry.resolve(&config.method)?;
    config.method = method.spec().clone();
    config.absolute_paths();
    let out = config.output.dir.clone();
    // Built and checked in a scratch folder beside the run folder: nothing lands in the run
    // folder unless the whole import succeeds.
    let scratch = out.with_file_name(format!(
        ".{}.import.tmp",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("run")
    ));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| ProtocolError::write(&scratch, e))?;
    let staged = scratch.join("best.bpk");
    // A cohort writes its split and landmarks beside the run: into the scratch folder first.
    let mut staged_config = config.clone();
    staged_config.output.dir = scratch.clone();
    let result = crate::session::with_setup(&staged_config, device, observer, false, |setup, _| {
        let modalities = setup.shapes.len();
        let mut tensors = Vec::new();
        let mut partial = Vec::new();
        for m in 0..modalities {
            let Some((file, arch)) = sources.get(&m) else {
                return Err(ProtocolError::Config(format!(
                    "the run's data has {modalities} modalities; no file holds source {m} \
                     (the authors number sources as the data's modalities: give the other \
                     modality's state dict too)"
                )));
            };
            check_shape(&dicts[*file].path, m, arch, &setup.shapes[m])?;
            let mut parts = vec![Part::Encoder];
            if heads {
                parts.extend([Part::ConvHead, Part::LatentHead]);
            } else {
                partial.push(authors::mmssl_prefix(Part::ConvHead, m));
                partial.push(authors::mmssl_prefix(Part::LatentHead, m));
            }
            for part in parts {
                let table = arch.table(
                    part,
                    &authors::dim_prefix(part, m, arch),
                    &authors::mmssl_prefix(part, m),
                );
                tensors.extend(take(&dicts[*file], &table)?);
            }
        }
        if let Some(extra) = sources.keys().find(|s| **s >= modalities) {
            return Err(ProtocolError::Config(format!(
                "source {extra} has no modality in the run's data ({modalities} modalities)"
            )));
        }
        // Whatever is left in a file was not mapped: refuse it.
        for dict in &dicts {
            let unexpected: Vec<String> = dict
                .tensors
                .keys()
                .filter(|k| !used(k, &sources, heads))
                .cloned()
                .collect();
            if !unexpected.is_empty() {
                return Err(ProtocolError::file(
                    &dict.path,
                    authors::counted("tensor(s) that mmssl's model has no place for", &unexpected),
                ));
            }
        }
        let load = crate::weights::WeightsLoad {
            tensors,
            partial: &partial,
            save: std::slice::from_ref(&staged),
        };
        method.load_weights((setup, config.seed), load)
    });
    let applied = match result {
        Ok(a) => a,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
    };
    if !applied.is_complete() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(incomplete(&settings.files, &applied));
    }
    let report = ImportReport {
        dir: out.clone(),
        method: config.method.to_string(),
        sources: sources
            .iter()
            .map(|(s, (file, arch))| ImportedSource {
                file: dicts[*file].path.clone(),
                key: dicts[*file].key.clone(),
                source: *s,
                modality: *s,
                architecture: *arch,
            })
            .collect(),
        tensors: applied.applied,
        kept: applied.kept.clone(),
        num_batches_tracked: dicts.iter().flat_map(authors::counters).collect(),
        notes,
    };
    let written = publish(&config, &report, &scratch, device);
    let _ = std::fs::remove_dir_all(&scratch);
    written?;
    for n in &report.notes {
        observer.note(n);
    }
    Ok(report)
}

/// Whether the authors' tensor `name` is one the table maps (for the sources found).
fn used(name: &str, sources: &BTreeMap<usize, (usize, AuthorsArch)>, heads: bool) -> bool {
    sources.iter().any(|(s, (_, arch))| {
        let mut parts = vec![Part::Encoder];
        if heads {
            parts.extend([Part::ConvHead, Part::LatentHead]);
        }
        parts.into_iter().any(|part| {
            arch.table(part, &authors::dim_prefix(part, *s, arch), "")
                .iter()
                .any(|p| p.authors == name)
        })
    })
}

/// The tensors of `table` from `dict`, in mmssl's layout and names; a tensor missing or of
/// another shape is an error naming it.
fn take(
    dict: &StateDict,
    table: &[authors::TensorPair],
) -> Result<Vec<burn_store::burn_pack::Tensor>> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for pair in table {
        let Some(t) = dict.tensors.get(&pair.authors) else {
            // Counters are recorded when present, never needed.
            if pair.layout != Layout::Counter {
                missing.push(pair.authors.clone());
            }
            continue;
        };
        let counter_ok = pair.layout == Layout::Counter && t.values.len() == 1;
        if t.shape != pair.shape && !counter_ok {
            wrong.push(format!(
                "`{}` is {:?}, the architecture needs {:?}",
                pair.authors, t.shape, pair.shape
            ));
            continue;
        }
        if pair.layout == Layout::Counter {
            continue;
        }
        let (values, shape) = authors::to_mmssl(&t.values, &t.shape, pair.layout);
        out.push(pack_f32(pair.mmssl.clone(), shape, values));
    }
    if !missing.is_empty() {
        return Err(ProtocolError::file(
            &dict.path,
            authors::counted("tensor(s) of the authors' model are missing", &missing),
        ));
    }
    if !wrong.is_empty() {
        return Err(ProtocolError::file(
            &dict.path,
            format!("mis-shaped tensor(s): {}", wrong.join("; ")),
        ));
    }
    Ok(out)
}

/// An error unless modality `m`'s items (`shape`) are what `arch` encodes.
fn check_shape(path: &Path, m: usize, arch: &AuthorsArch, shape: &[usize]) -> Result<()> {
    let mut expected = vec![arch.in_channels];
    expected.extend(std::iter::repeat_n(arch.input_size(), arch.dims));
    if shape == expected.as_slice() {
        return Ok(());
    }
    Err(ProtocolError::file(
        path,
        format!(
            "source {m} is a {}D encoder of {} input channel(s), for items {expected:?}; the \
             run's modality {m} has items {shape:?} (wrong architecture: {})",
            arch.dims,
            arch.in_channels,
            if shape.len() != expected.len() {
                "2D weights for volumes or 3D weights for images"
            } else {
                "another number of channels"
            }
        ),
    ))
}

fn incomplete(files: &[PathBuf], a: &Applied) -> ProtocolError {
    let mut parts = Vec::new();
    if !a.missing.is_empty() {
        parts.push(authors::counted(
            "parameter(s) of mmssl's model not filled",
            &a.missing,
        ));
    }
    if !a.unused.is_empty() {
        parts.push(authors::counted("tensor(s) without a place", &a.unused));
    }
    if !a.errors.is_empty() {
        parts.push(a.errors.join("; "));
    }
    ProtocolError::file(
        &files[0],
        format!("the import is incomplete: {}", parts.join("; ")),
    )
}

/// Writes the run folder: the checkpoint staged in `scratch`, the data's split and landmarks
/// (cohorts), `config.toml`, `run.json`.
fn publish(
    config: &RunConfig,
    report: &ImportReport,
    scratch: &Path,
    device: &Device,
) -> Result<()> {
    let out = &config.output.dir;
    let staged = &scratch.join("best.bpk");
    prepare_fresh(out, config.output.overwrite)?;
    std::fs::create_dir_all(out.join("checkpoints"))
        .map_err(|e| ProtocolError::write(&out.join("checkpoints"), e))?;
    let _lock = FolderLock::acquire(out)?;
    let best = out.join("checkpoints").join("best.bpk");
    let last = out.join("checkpoints").join("last.bpk");
    std::fs::copy(staged, &best).map_err(|e| ProtocolError::write(&best, e))?;
    std::fs::copy(staged, &last).map_err(|e| ProtocolError::write(&last, e))?;
    for name in ["split.json", "landmarks.json"] {
        let (from, to) = (scratch.join(name), out.join(name));
        if from.is_file() {
            std::fs::copy(&from, &to).map_err(|e| ProtocolError::write(&to, e))?;
        }
    }
    crate::run::write_run_record(config, device, serde_json::json!({ "imported": report }))
}
