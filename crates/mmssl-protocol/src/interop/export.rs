//! mmssl's encoders out to safetensors files the authors' PyTorch classes load strictly.

use super::authors::{self, AuthorsArch, Layout, Part, TensorPair};
use super::{hash_inputs, pack_f32, unpack_f32};
use crate::config::load_run_config;
use crate::error::{ProtocolError, Result};
use crate::folder::write_atomic;
use crate::observe::Observer;
use crate::registry::Registry;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use burn_store::ModuleSnapshot;
use mmssl_train::{AnyEncoder, model_options};
use rand::SeedableRng;
use safetensors::{Dtype, tensor::TensorView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One modality exported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportedModality {
    /// The modality.
    pub modality: usize,
    /// Its encoder's architecture, as the authors' `DcganEncoder` arguments describe it.
    pub architecture: AuthorsArch,
    /// The files written for it.
    pub files: Vec<PathBuf>,
}

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    /// The folder written.
    pub dir: PathBuf,
    /// The run exported.
    pub run: PathBuf,
    /// Per modality.
    pub modalities: Vec<ExportedModality>,
}

/// A tensor on its way into a safetensors file.
enum Out {
    F32(Vec<usize>, Vec<f32>),
    Counter(i64),
}

/// Exports the encoders of the run in `run_dir` (its best checkpoint) to `out`, per modality
/// `m`: `encoder_m.safetensors` (the names of the authors' `DcganEncoder`, loading with
/// `load_state_dict(strict=True)`), `encoder_m.json` (the `DcganEncoder` arguments and the file
/// names) and `check_m.safetensors` (fixed inputs `x` and what mmssl computes from them in
/// evaluation mode: `z` and the tapped map `conv`, to verify a load). With `heads`, also
/// `conv_head_m.safetensors` and `latent_head_m.safetensors` for the authors' `ConvHead` and
/// `LatentHead` (a contrastive run of `variant=authors`: mmssl's own conv head has a shortcut
/// bias the authors' has no place for).
///
/// `out` must not exist or be empty, unless `overwrite` (then files of the same names are
/// replaced). `dim.safetensors` holds the whole model in the names of the authors' `Dim`
/// (every encoder, and the heads where they load into the authors' classes); `mmssl import`
/// reads it back.
pub fn export_run(
    run_dir: &Path,
    out: &Path,
    heads: bool,
    overwrite: bool,
    registry: &Registry,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<ExportReport> {
    let config = load_run_config(run_dir)?;
    let method = registry.resolve(&config.method)?;
    let checkpoint = run_dir.join("checkpoints").join("best.bpk");
    if !checkpoint.is_file() {
        return Err(ProtocolError::NotPretrained {
            missing: checkpoint,
            dir: run_dir.to_path_buf(),
        });
    }
    mmssl_train::Checkpoints::open(run_dir.join("checkpoints")).verify()?;
    let found = crate::folder::entries(out)?;
    if !found.is_empty() && !overwrite {
        return Err(ProtocolError::file(
            out,
            format!(
                "not empty ({}): export into a new folder, or give --overwrite",
                found.join(", ")
            ),
        ));
    }
    let options = {
        let spec = method.spec();
        let o = mmssl_train::MethodOptions::new(spec.name(), spec.options());
        model_options(&o).unwrap_or_default()
    };
    let counters = Counters::of(run_dir);
    let (tensors, shapes) =
        crate::session::with_setup(&config, device, observer, false, |setup, _| {
            Ok((
                method.weights((setup, config.seed), &checkpoint)?,
                setup.shapes.to_vec(),
            ))
        })?;
    let mut by_path = BTreeMap::new();
    for t in &tensors {
        by_path.insert(t.name.clone(), (t.shape.to_vec(), unpack_f32(t)?));
    }
    std::fs::create_dir_all(out).map_err(|e| ProtocolError::write(out, e))?;
    let mut report = ExportReport {
        dir: out.to_path_buf(),
        run: run_dir.to_path_buf(),
        modalities: Vec::new(),
    };
    // The whole model in the names of the authors' `Dim`: every encoder, and the heads
    // where they load into the authors' classes.
    let mut dim = Vec::new();
    for (m, shape) in shapes.iter().enumerate() {
        let prefix = encoder_prefix(&by_path, m).ok_or_else(|| {
            ProtocolError::Config(format!(
                "the method `{}` has no DCGAN encoder for modality {m} to export",
                method.spec()
            ))
        })?;
        let arch = architecture(&by_path, &prefix, m, shape)?;
        let mut files = Vec::new();
        let table = arch.table(Part::Encoder, "", &prefix);
        let encoder_dim_prefix = authors::dim_prefix(Part::Encoder, m, &arch);
        let dim_encoder = arch.table(Part::Encoder, &encoder_dim_prefix, &prefix);
        dim.extend(gather(&by_path, &dim_encoder, &counters, "")?);
        let c_head = authors::mmssl_prefix(Part::ConvHead, m);
        let has_heads = by_path.contains_key(&format!("{c_head}conv1.linear.weight"));
        let shortcut_bias = by_path.contains_key(&format!("{c_head}shortcut.linear.bias"));
        if has_heads && !shortcut_bias {
            for part in [Part::ConvHead, Part::LatentHead] {
                let table = arch.table(
                    part,
                    &authors::dim_prefix(part, m, &arch),
                    &authors::mmssl_prefix(part, m),
                );
                dim.extend(gather(&by_path, &table, &counters, "")?);
            }
        }
        let name = format!("encoder_{m}.safetensors");
        write_safetensors(
            &out.join(&name),
            &gather(&by_path, &table, &counters, &encoder_dim_prefix)?,
        )?;
        files.push(out.join(&name));
        // The check batch: the exported tensors in a stand-alone encoder, in evaluation mode.
        let check = format!("check_{m}.safetensors");
        write_safetensors(
            &out.join(&check),
            &check_batch(&by_path, &table, shape, &arch, &options)?,
        )?;
        files.push(out.join(&check));
        let mut json = serde_json::json!({
            "modality": m,
            "dcgan_encoder": arch.dcgan_encoder_args(),
            "weights": name,
            "check": check,
            "mmssl": {
                "run": run_dir,
                "method": method.spec().to_string(),
                "variant": options.variant.name(),
                "checkpoint": "checkpoints/best.bpk",
            },
        });
        if heads {
            if !has_heads {
                return Err(ProtocolError::Config(format!(
                    "the method `{}` has no conv and latent heads to export (--heads is for \
                     contrastive runs)",
                    method.spec()
                )));
            }
            if shortcut_bias {
                return Err(ProtocolError::Config(format!(
                    "the run's conv heads have a shortcut bias (mmssl's variant): the authors' \
                     ConvHead has no place for it, so it cannot load strictly. Export the \
                     encoders only, or train with the method option variant=authors \
                     (`{};variant=authors`)",
                    method.spec()
                )));
            }
            for (part, file, key) in [
                (
                    Part::ConvHead,
                    format!("conv_head_{m}.safetensors"),
                    "conv_head",
                ),
                (
                    Part::LatentHead,
                    format!("latent_head_{m}.safetensors"),
                    "latent_head",
                ),
            ] {
                let table = arch.table(part, "", &authors::mmssl_prefix(part, m));
                let dim_prefix = authors::dim_prefix(part, m, &arch);
                write_safetensors(
                    &out.join(&file),
                    &gather(&by_path, &table, &counters, &dim_prefix)?,
                )?;
                files.push(out.join(&file));
                json[key] = serde_json::json!({ "weights": file, "args": head_args(&arch, part) });
            }
        }
        let json_path = out.join(format!("encoder_{m}.json"));
        write_atomic(
            &json_path,
            &serde_json::to_string_pretty(&json).unwrap_or_default(),
        )?;
        files.push(json_path);
        report.modalities.push(ExportedModality {
            modality: m,
            architecture: arch,
            files,
        });
    }
    let dim_path = out.join("dim.safetensors");
    write_safetensors(&dim_path, &dim)?;
    if let Some(first) = report.modalities.first_mut() {
        first.files.push(dim_path);
    }
    Ok(report)
}

/// The path prefix of modality `m`'s encoder (`backbone.encoders.0.`) among `paths`.
fn encoder_prefix<V>(paths: &BTreeMap<String, V>, m: usize) -> Option<String> {
    let suffix = format!("encoders.{m}.convs.0.weight");
    paths
        .keys()
        .find(|k| {
            k.ends_with(&suffix)
                && (k.len() == suffix.len() || k[..k.len() - suffix.len()].ends_with('.'))
        })
        .map(|k| k[..k.len() - "convs.0.weight".len()].to_string())
}

/// The authors' description of the encoder under `prefix`.
fn architecture(
    paths: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    prefix: &str,
    m: usize,
    shape: &[usize],
) -> Result<AuthorsArch> {
    let conv = |i: usize| paths.get(&format!("{prefix}convs.{i}.weight"));
    let layers = (0..).take_while(|i| conv(*i).is_some()).count();
    let first = &conv(0).expect("found by encoder_prefix").0;
    let last = &conv(layers - 1).expect("counted").0;
    let embedding = paths
        .get(&format!(
            "{}fc2.weight",
            authors::mmssl_prefix(Part::LatentHead, m)
        ))
        .map(|(s, _)| s[1])
        .unwrap_or(64);
    Ok(AuthorsArch {
        dims: shape.len() - 1,
        in_channels: first[1],
        width: first[0],
        latent_dim: last[0],
        embedding_dim: embedding,
    })
}

/// The tensors of `table` in the authors' names and layout; `dim_prefix` turns a name of the
/// table into the authors' `Dim` name (for the counters).
fn gather(
    paths: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    table: &[TensorPair],
    counters: &Counters,
    dim_prefix: &str,
) -> Result<Vec<(String, Out)>> {
    table
        .iter()
        .map(|pair| {
            if pair.layout == Layout::Counter {
                let dim_name = format!("{dim_prefix}{}", pair.authors);
                return Ok((pair.authors.clone(), Out::Counter(counters.get(&dim_name))));
            }
            let (_, values) = paths.get(&pair.mmssl).ok_or_else(|| {
                ProtocolError::Config(format!(
                    "the model has no `{}` (for the authors' `{}`)",
                    pair.mmssl, pair.authors
                ))
            })?;
            Ok((
                pair.authors.clone(),
                Out::F32(
                    pair.shape.clone(),
                    authors::to_authors(values, &pair.shape, pair.layout),
                ),
            ))
        })
        .collect()
}

/// The authors' arguments of a head.
fn head_args(arch: &AuthorsArch, part: Part) -> serde_json::Value {
    let e = arch.embedding_dim;
    match part {
        Part::ConvHead => serde_json::json!({
            "dim_in": arch.channels(arch.tap()),
            "dim_l": e,
            "dim_h": e,
            "input_dim": arch.dims,
            "conv_layer_class": if arch.dims == 2 { "Conv2d" } else { "Conv3d" },
            "norm_layer_class": if arch.dims == 2 { "BatchNorm2d" } else { "BatchNorm3d" },
        }),
        _ => serde_json::json!({
            "dim_in": arch.latent_dim,
            "dim_l": e,
            "dim_h": e,
            "num_h_layers": 1,
            "use_linear": true,
        }),
    }
}

/// Fixed inputs and what a stand-alone encoder holding the exported tensors computes from
/// them in evaluation mode.
fn check_batch(
    paths: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    table: &[TensorPair],
    shape: &[usize],
    arch: &AuthorsArch,
    options: &mmssl_encoders::EncoderOptions,
) -> Result<Vec<(String, Out)>> {
    let device = Device::flex();
    let mut encoder = AnyEncoder::for_shape_with(
        shape,
        arch.latent_dim,
        options,
        &device,
        &mut rand::rngs::StdRng::seed_from_u64(0),
    )?;
    let prefix_len = table
        .iter()
        .find(|p| p.layout != Layout::Counter)
        .map(|p| p.mmssl.len() - "convs.0.weight".len())
        .unwrap_or(0);
    let tensors = table
        .iter()
        .filter(|p| p.layout != Layout::Counter)
        .map(|p| {
            let (s, v) = &paths[&p.mmssl];
            pack_f32(p.mmssl[prefix_len..].to_string(), s.clone(), v.clone())
        })
        .collect();
    let result = encoder.apply(tensors, None, None, true);
    if !result.missing.is_empty() || !result.errors.is_empty() || !result.unused.is_empty() {
        return Err(ProtocolError::Config(format!(
            "the exported encoder does not rebuild: {result:?}"
        )));
    }
    let batch = if arch.dims == 2 { 4 } else { 2 };
    let mut dims = vec![batch];
    dims.extend_from_slice(shape);
    let n: usize = dims.iter().product();
    let x_values = hash_inputs(n);
    let encoder = encoder.no_grad();
    let out = match (&encoder, arch.dims) {
        (AnyEncoder::Images(e), 2) => {
            let x =
                Tensor::<4>::from_data(TensorData::new(x_values.clone(), dims.clone()), &device);
            e.forward(x)
        }
        (AnyEncoder::Volumes(e), 3) => {
            let x =
                Tensor::<5>::from_data(TensorData::new(x_values.clone(), dims.clone()), &device);
            e.forward(x)
        }
        _ => unreachable!("the encoder was built for this shape"),
    };
    let read = |t: burn::tensor::TensorData| {
        t.convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| ProtocolError::Config(format!("{e:?}")))
    };
    let [b, c, _] = out.conv.dims();
    let mut conv_shape = vec![b, c];
    conv_shape.extend(std::iter::repeat_n(8, arch.dims));
    Ok(vec![
        ("x".to_string(), Out::F32(dims, x_values)),
        (
            "z".to_string(),
            Out::F32(vec![b, arch.latent_dim], read(out.z.into_data())?),
        ),
        (
            "conv".to_string(),
            Out::F32(conv_shape, read(out.conv.into_data())?),
        ),
    ])
}

/// What the batch norms' `num_batches_tracked` are exported as: the counters an imported
/// run's file held (by the authors' `Dim` names), else the steps the run trained
/// (`state.json`), else 0.
struct Counters {
    imported: BTreeMap<String, i64>,
    steps: i64,
}

impl Counters {
    fn of(run_dir: &Path) -> Counters {
        let json = |path: PathBuf| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        };
        let steps = json(run_dir.join("checkpoints").join("state.json"))
            .and_then(|v| v["steps_done"].as_i64())
            .unwrap_or(0);
        let imported = json(run_dir.join("run.json"))
            .and_then(|v| serde_json::from_value(v["imported"]["num_batches_tracked"].clone()).ok())
            .unwrap_or_default();
        Counters { imported, steps }
    }

    /// The counter of the batch norm the authors' `Dim` calls `name`.
    fn get(&self, name: &str) -> i64 {
        self.imported.get(name).copied().unwrap_or(self.steps)
    }
}

/// Writes `tensors` as a safetensors file (through a temporary file and a rename).
fn write_safetensors(path: &Path, tensors: &[(String, Out)]) -> Result<()> {
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, t)| match t {
            Out::F32(shape, values) => (
                name.clone(),
                Dtype::F32,
                shape.clone(),
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            Out::Counter(n) => (name.clone(), Dtype::I64, vec![], n.to_le_bytes().to_vec()),
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| ProtocolError::write(path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert(
        "writer".to_string(),
        format!("mmssl {}", env!("CARGO_PKG_VERSION")),
    );
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, Some(metadata), &tmp)
        .map_err(|e| ProtocolError::write(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ProtocolError::write(path, e))
}
