//! Model weights as tensors by path (burn-store): applying a set to a model and saving it,
//! reading one back, the checkpoint a run starts from, and fixed test inputs. Below the
//! registry and the session, for both; `interop` builds the PyTorch border on it.

use crate::error::{ProtocolError, Result};
use burn::module::Module;
use burn_store::ModuleSnapshot;
use burn_store::burn_pack::{Bytes, DType, Tensor as PackTensor};
use std::path::{Path, PathBuf};

/// What applying a set of tensors to a model did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Tensors applied.
    pub applied: usize,
    /// Parameters of the model no tensor filled (outside the allowed prefixes).
    pub missing: Vec<String>,
    /// Parameters left at their initialisation, as allowed.
    pub kept: Vec<String>,
    /// Tensors the model has no parameter for.
    pub unused: Vec<String>,
    /// Tensors of the wrong shape or type, each with what was expected.
    pub errors: Vec<String>,
    /// Whether the model was saved (everything applied).
    pub saved: bool,
}

impl Applied {
    /// Whether every tensor was used and every parameter filled.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty() && self.unused.is_empty() && self.errors.is_empty()
    }
}

/// Tensors to apply to a model and what to do with the result.
pub(crate) struct WeightsLoad<'a> {
    /// The tensors, by burn-store path.
    pub tensors: Vec<PackTensor>,
    /// Path prefixes of the parameters that may keep their initialisation.
    pub partial: &'a [String],
    /// Where the model is saved when every other parameter was filled and every tensor used.
    pub save: &'a [PathBuf],
}

/// Applies `load.tensors` to `model`; when complete (every parameter outside the
/// `load.partial` prefixes filled, every tensor used, no mismatch), saves it to each of
/// `load.save`.
pub(crate) fn apply_and_save<M: Module>(mut model: M, load: WeightsLoad<'_>) -> Result<Applied> {
    let WeightsLoad {
        tensors,
        partial,
        save,
    } = load;
    let result = model.apply(tensors, None, None, true);
    let (kept, missing): (Vec<String>, Vec<String>) = result
        .missing
        .iter()
        .map(|(p, _)| p.clone())
        .partition(|p| partial.iter().any(|prefix| p.starts_with(prefix.as_str())));
    let mut applied = Applied {
        applied: result.applied.len(),
        missing,
        kept,
        unused: result.unused.clone(),
        errors: result.errors.iter().map(|e| e.to_string()).collect(),
        saved: false,
    };
    if applied.is_complete() {
        for path in save {
            model
                .clone()
                .save_file(path)
                .map_err(|e| ProtocolError::write(path, format!("{e:?}")))?;
        }
        applied.saved = !save.is_empty();
    }
    Ok(applied)
}

/// An `f32` tensor for burn-store, named by its model path.
pub fn pack_f32(name: impl Into<String>, shape: Vec<usize>, values: Vec<f32>) -> PackTensor {
    PackTensor::new(
        name.into(),
        DType::F32,
        shape,
        None,
        Bytes::from_elems(values),
    )
}

/// The values of an `f32` tensor of burn-store.
pub fn unpack_f32(tensor: &PackTensor) -> Result<Vec<f32>> {
    if tensor.dtype != DType::F32 {
        return Err(ProtocolError::Config(format!(
            "the parameter `{}` is of type {:?}, not f32",
            tensor.name, tensor.dtype
        )));
    }
    let bytes = tensor
        .to_bytes()
        .map_err(|e| ProtocolError::Config(format!("`{}`: {e}", tensor.name)))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The checkpoint `training.init_from` names: a `.bpk` file, or a run folder's
/// `checkpoints/best.bpk`.
pub fn init_checkpoint(from: &Path) -> Result<PathBuf> {
    let file = if from.is_dir() {
        from.join("checkpoints").join("best.bpk")
    } else {
        from.to_path_buf()
    };
    if !file.is_file() {
        return Err(ProtocolError::File {
            path: file,
            reason: format!(
                "missing: --init-from takes a run folder with checkpoints/best.bpk (a \
                 pretrained or imported run) or a .bpk checkpoint ({} is neither)",
                from.display()
            ),
        });
    }
    if from.is_dir() {
        mmssl_train::Checkpoints::open(from.join("checkpoints")).verify()?;
    }
    Ok(file)
}

/// `shape`'s fixed inputs: element `i` is the top 24 bits of a 32-bit integer hash of `i`, over
/// 2^24 (in `[0, 1)`, exact in `f32`). The fixtures' script computes the same values
/// (`hash_inputs` in `tests/fixtures/authors/make_fixtures.py`), so no input file is needed.
pub fn hash_inputs(n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let mut h = i.wrapping_mul(2_654_435_761).wrapping_add(0x9E37_79B9) & 0xFFFF_FFFF;
            h ^= h >> 15;
            h = h.wrapping_mul(2_246_822_519) & 0xFFFF_FFFF;
            h ^= h >> 13;
            (h >> 8) as f32 / (1u32 << 24) as f32
        })
        .collect()
}
