//! A PyTorch state dict read from a file: `.pt`/`.pth` (`torch.save`, plain or a checkpoint
//! holding it under `model_state_dict` or `state_dict`) or `.safetensors`.
//!
//! `.pt` files are read by burn-store's PyTorch reader, which parses the pickle itself: nothing
//! in the file is executed. A file whose pickle names any Python class other than PyTorch's
//! tensor and container types is refused, naming the class and where it is.

use crate::error::{ProtocolError, Result};
use burn_store::pytorch_reader::{DType, PickleValue, PytorchReader};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The keys under which a checkpoint (Catalyst's, Lightning's, a hand-made dict) keeps the
/// model's state dict, tried in this order.
pub const STATE_DICT_KEYS: &[&str] = &["model_state_dict", "state_dict"];

/// Python types a state dict file may name: tensors and their storages, and the dict types.
const ALLOWED_TYPES: &[&str] = &[
    "torch.Tensor",
    "torch.TypedStorage",
    "torch.UntypedStorage",
    "collections.OrderedDict",
];

/// One tensor of a state dict, as `f32` (integer buffers as their values in `f32`).
#[derive(Debug, Clone, PartialEq)]
pub struct StateTensor {
    /// Shape (`[]` for a scalar).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
    /// The type the file stored it in.
    pub stored: StoredType,
}

/// The element type a tensor was stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredType {
    /// 32-bit float: read as is.
    F32,
    /// 64-bit float: rounded to `f32`.
    F64,
    /// 16-bit float (IEEE half): widened to `f32` exactly.
    F16,
    /// bfloat16: widened to `f32` exactly.
    Bf16,
    /// 64-bit integer (`num_batches_tracked`).
    I64,
}

impl StoredType {
    /// The name PyTorch gives it.
    pub fn name(self) -> &'static str {
        match self {
            StoredType::F32 => "float32",
            StoredType::F64 => "float64",
            StoredType::F16 => "float16",
            StoredType::Bf16 => "bfloat16",
            StoredType::I64 => "int64",
        }
    }
}

/// A state dict read from `path`: tensor names to tensors, and where the dict was found.
#[derive(Debug, Clone)]
pub struct StateDict {
    /// The file.
    pub path: PathBuf,
    /// The tensors, by name.
    pub tensors: BTreeMap<String, StateTensor>,
    /// The checkpoint key the state dict was under (`model_state_dict`), if any.
    pub key: Option<String>,
    /// The file's format: `pytorch` or `safetensors`.
    pub format: &'static str,
}

impl StateDict {
    /// Reads `path`: `.safetensors` by its extension, anything else as a PyTorch file.
    pub fn read(path: &Path) -> Result<StateDict> {
        if !path.is_file() {
            return Err(ProtocolError::file(path, "no such file"));
        }
        let is_safetensors = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        if is_safetensors {
            read_safetensors(path)
        } else {
            read_pytorch(path)
        }
    }

    /// Tensors stored in another type than `f32`, grouped: `(type, count)`.
    pub fn converted(&self) -> Vec<(StoredType, usize)> {
        let mut counts: BTreeMap<&'static str, (StoredType, usize)> = BTreeMap::new();
        for t in self.tensors.values() {
            if !matches!(t.stored, StoredType::F32 | StoredType::I64) {
                counts.entry(t.stored.name()).or_insert((t.stored, 0)).1 += 1;
            }
        }
        counts.into_values().collect()
    }
}

fn read_pytorch(path: &Path) -> Result<StateDict> {
    let not_pytorch = |e: &dyn std::fmt::Display| {
        ProtocolError::file(
            path,
            format!("not a readable PyTorch file (torch.save) or a truncated one: {e}"),
        )
    };
    let root = PytorchReader::read_pickle_data(path, None).map_err(|e| not_pytorch(&e))?;
    check_types(path, &root, "")?;
    let PickleValue::Dict(dict) = &root else {
        return Err(ProtocolError::file(
            path,
            "holds no dict of tensors (a state dict, or a checkpoint with `model_state_dict`)",
        ));
    };
    let key = STATE_DICT_KEYS
        .iter()
        .find(|k| matches!(dict.get(**k), Some(PickleValue::Dict(_))))
        .map(|k| k.to_string());
    let level = match &key {
        Some(k) => &dict[k],
        None => &root,
    };
    if let PickleValue::Dict(entries) = level {
        let mut names: Vec<&String> = entries.keys().collect();
        names.sort();
        for name in names {
            // `state_dict()` keeps each module's version under `_metadata` (a dict).
            if name == "_metadata" && matches!(&entries[name], PickleValue::Dict(_)) {
                continue;
            }
            if !matches!(&entries[name], PickleValue::Unsupported(t) if t == "torch.Tensor") {
                let at = key.as_ref().map(|k| format!("{k}.")).unwrap_or_default();
                return Err(ProtocolError::file(
                    path,
                    format!(
                        "`{at}{name}` is not a tensor: the file is not a state dict{}",
                        match key {
                            Some(_) => "",
                            None => " (nor a checkpoint with `model_state_dict` or `state_dict`)",
                        }
                    ),
                ));
            }
        }
    }
    let reader = match &key {
        Some(k) => PytorchReader::with_top_level_key(path, k),
        None => PytorchReader::new(path),
    }
    .map_err(|e| not_pytorch(&e))?;
    let mut tensors = BTreeMap::new();
    for (name, t) in reader.into_tensors() {
        let bytes = t.read().map_err(|e| not_pytorch(&e))?;
        let stored = match t.dtype() {
            DType::F32 => StoredType::F32,
            DType::F64 => StoredType::F64,
            DType::F16 => StoredType::F16,
            DType::BF16 => StoredType::Bf16,
            DType::I64 => StoredType::I64,
            other => {
                return Err(ProtocolError::file(
                    path,
                    format!(
                        "`{name}` is a tensor of {other:?}: only floating-point weights (and int64 counters) are read"
                    ),
                ));
            }
        };
        let values = decode(&bytes, stored);
        if values.len() != t.num_elements() {
            return Err(not_pytorch(&format!(
                "`{name}` holds fewer values than its shape"
            )));
        }
        let shape = t.shape().to_vec();
        tensors.insert(
            name,
            StateTensor {
                shape,
                values,
                stored,
            },
        );
    }
    Ok(StateDict {
        path: path.to_path_buf(),
        tensors,
        key,
        format: "pytorch",
    })
}

/// Refuses any Python type outside [`ALLOWED_TYPES`] anywhere in the pickle.
fn check_types(path: &Path, value: &PickleValue, at: &str) -> Result<()> {
    match value {
        PickleValue::Unsupported(t) if !ALLOWED_TYPES.contains(&t.as_str()) => {
            Err(ProtocolError::file(
                path,
                format!(
                    "refused: the pickle names the Python type `{t}`{}; a state dict holds only \
                 tensors (mmssl never runs code from a file: save `model.state_dict()`, not \
                 the model or other objects)",
                    if at.is_empty() {
                        String::new()
                    } else {
                        format!(" at `{at}`")
                    }
                ),
            ))
        }
        PickleValue::Dict(d) => {
            let mut keys: Vec<&String> = d.keys().collect();
            keys.sort();
            for k in keys {
                let sub = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                check_types(path, &d[k], &sub)?;
            }
            Ok(())
        }
        PickleValue::List(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_types(path, v, &format!("{at}[{i}]"))),
        _ => Ok(()),
    }
}

fn read_safetensors(path: &Path) -> Result<StateDict> {
    let bytes = mmssl_data::files::read_bytes(path).map_err(|e| ProtocolError::read(path, e))?;
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        ProtocolError::file(
            path,
            format!("not a valid safetensors file (truncated, or tensors overlapping or out of place): {e}"),
        )
    })?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        use safetensors::Dtype;
        let stored = match view.dtype() {
            Dtype::F32 => StoredType::F32,
            Dtype::F64 => StoredType::F64,
            Dtype::F16 => StoredType::F16,
            Dtype::BF16 => StoredType::Bf16,
            Dtype::I64 => StoredType::I64,
            other => {
                return Err(ProtocolError::file(
                    path,
                    format!(
                        "`{name}` is a tensor of {other:?}: only floating-point weights (and int64 counters) are read"
                    ),
                ));
            }
        };
        tensors.insert(
            name,
            StateTensor {
                shape: view.shape().to_vec(),
                values: decode(view.data(), stored),
                stored,
            },
        );
    }
    Ok(StateDict {
        path: path.to_path_buf(),
        tensors,
        key: None,
        format: "safetensors",
    })
}

/// Little-endian values of `stored` as `f32`.
fn decode(bytes: &[u8], stored: StoredType) -> Vec<f32> {
    match stored {
        StoredType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        StoredType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        StoredType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        StoredType::Bf16 => bytes
            .chunks_exact(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
            .collect(),
        StoredType::I64 => bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
    }
}

/// An IEEE 754 half-precision value as `f32` (exact).
fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: f * 2^-24.
            let v = f as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | (((e - 15 + 127) as u32) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values_widen_exactly() {
        // 1.0, -2.0, 0.5, the largest half (65504), the smallest subnormal (2^-24), -0.0, inf.
        let cases = [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x3800, 0.5),
            (0x7bff, 65504.0),
            (0x0001, 2f32.powi(-24)),
            (0x8001, -(2f32.powi(-24))),
            (0x8000, -0.0),
            (0x7c00, f32::INFINITY),
        ];
        for (h, f) in cases {
            assert_eq!(half_to_f32(h).to_bits(), f.to_bits(), "{h:#06x}");
        }
        assert!(half_to_f32(0x7e00).is_nan());
    }
}
