//! The authors' model (github:Entodi/fusion: `Dim` with `DcganEncoder`, `ConvHead` and
//! `LatentHead`) and mmssl's, tensor by tensor: the documented table of names, and the
//! architecture read off a state dict.
//!
//! | the authors' tensor (source `s`, layer `i`) | mmssl's (modality `m = s`) | layout |
//! | --- | --- | --- |
//! | `_encoder.s._layers.i._layer.0.weight` | `backbone.encoders.m.convs.i.weight` | same `[O, C, 4, 4(, 4)]` |
//! | `_encoder.s._layers.i._layer.1.{weight, bias, running_mean, running_var}` | `backbone.encoders.m.posts.i.norm.norm.{gamma, beta, running_mean, running_var}` | same |
//! | `_conv_heads.s.K._convolutional_path.0._layer.0.weight` | `conv_heads.m.conv1.linear.weight` | `[E, C, 1, 1(, 1)]` -> `[C, E]` |
//! | `_conv_heads.s.K._convolutional_path.0._layer.1.*` | `conv_heads.m.bn1.norm.*` | same |
//! | `_conv_heads.s.K._convolutional_path.1._layer.0.weight` | `conv_heads.m.conv2.linear.weight` | `[E, E, 1, 1(, 1)]` -> `[E, E]` transposed |
//! | `_conv_heads.s.K._identity_shortcut._layer.0.weight` | `conv_heads.m.shortcut.linear.weight` | `[E, C, 1, 1(, 1)]` -> `[C, E]` |
//! | `_conv_heads.s.K._bn_embedding.*` | `conv_heads.m.bn_out.norm.*` | same |
//! | `_latent_heads.s._head.1.weight` | `latent_heads.m.fc1.weight` | `[E, L]` -> `[L, E]` |
//! | `_latent_heads.s._head.2.*` | `latent_heads.m.bn.norm.*` | same |
//! | `_latent_heads.s._head.4.weight` | `latent_heads.m.fc2.weight` | `[E, E]` transposed |
//!
//! `K` is the tapped layer's key, `8_1` in 2D and `8_2` in 3D (the map of side 8). Batch-norm
//! layers sit after every encoder convolution but the first and the last. Every batch norm's
//! `num_batches_tracked` is read and recorded, not mapped: PyTorch uses it only when a batch
//! norm's momentum is `None` (a cumulative average), which the authors' model never sets.

use std::collections::BTreeMap;

use super::state_dict::StateDict;
use crate::error::{ProtocolError, Result};

/// The architecture of one source (modality) of the authors' `Dim` model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AuthorsArch {
    /// 2 (`Conv2d`, 32x32 images) or 3 (`Conv3d`, 64^3 volumes).
    pub dims: usize,
    /// Input channels (`dim_in`).
    pub in_channels: usize,
    /// Channels of the first convolution (`dim_h`).
    pub width: usize,
    /// Size of `z` (`dim_l`).
    pub latent_dim: usize,
    /// Output size of the conv and latent heads.
    pub embedding_dim: usize,
}

/// How a tensor's values are laid out on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The same shape and order.
    Same,
    /// A 1x1(x1) convolution `[O, C, 1, ...]` in PyTorch, a linear map `[C, O]` in mmssl.
    Pointwise,
    /// A linear layer: `[O, I]` in PyTorch, `[I, O]` in mmssl.
    Linear,
    /// A batch norm's `num_batches_tracked` (int64, PyTorch only).
    Counter,
}

/// One tensor: its name on each side, its layout and its shape in PyTorch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorPair {
    /// The authors' name.
    pub authors: String,
    /// mmssl's path (empty for a [`Layout::Counter`]).
    pub mmssl: String,
    /// How the values map.
    pub layout: Layout,
    /// The shape in PyTorch.
    pub shape: Vec<usize>,
}

/// The parts of the authors' model of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The `DcganEncoder`.
    Encoder,
    /// The `ConvHead` on the tapped map.
    ConvHead,
    /// The `LatentHead` on `z`.
    LatentHead,
}

impl AuthorsArch {
    /// Convolutions of the encoder: 4 for 32x32 images, 5 for 64^3 volumes.
    pub fn layers(&self) -> usize {
        if self.dims == 2 { 4 } else { 5 }
    }

    /// Input side: 32 or 64.
    pub fn input_size(&self) -> usize {
        if self.dims == 2 { 32 } else { 64 }
    }

    /// Index of the tapped layer (side 8): 1 in 2D, 2 in 3D.
    pub fn tap(&self) -> usize {
        self.dims - 1
    }

    /// The authors' key of the tapped layer (`dim_cls`): `8_1` or `8_2`.
    pub fn tap_key(&self) -> String {
        format!("8_{}", self.tap())
    }

    /// Output channels of encoder layer `i`.
    pub fn channels(&self, i: usize) -> usize {
        if i + 1 == self.layers() {
            self.latent_dim
        } else {
            self.width << i
        }
    }

    fn kernel(&self, out: usize, inp: usize, k: usize) -> Vec<usize> {
        let mut shape = vec![out, inp];
        shape.extend(std::iter::repeat_n(k, self.dims));
        shape
    }

    /// The tensors of `part`, the authors' names under `authors` (`_encoder.0.`, or `` for a
    /// stand-alone `DcganEncoder`) and mmssl's under `mmssl` (`backbone.encoders.0.`).
    pub fn table(&self, part: Part, authors: &str, mmssl: &str) -> Vec<TensorPair> {
        let mut out = Vec::new();
        let mut push = |a: String, m: String, layout: Layout, shape: Vec<usize>| {
            out.push(TensorPair {
                authors: format!("{authors}{a}"),
                mmssl: if layout == Layout::Counter {
                    String::new()
                } else {
                    format!("{mmssl}{m}")
                },
                layout,
                shape,
            })
        };
        let norm = |push: &mut dyn FnMut(String, String, Layout, Vec<usize>),
                    a: &str,
                    m: &str,
                    c: usize| {
            for (an, mn) in [
                ("weight", "gamma"),
                ("bias", "beta"),
                ("running_mean", "running_mean"),
                ("running_var", "running_var"),
            ] {
                push(
                    format!("{a}{an}"),
                    format!("{m}{mn}"),
                    Layout::Same,
                    vec![c],
                );
            }
            push(
                format!("{a}num_batches_tracked"),
                String::new(),
                Layout::Counter,
                vec![],
            );
        };
        let e = self.embedding_dim;
        match part {
            Part::Encoder => {
                let mut c_in = self.in_channels;
                for i in 0..self.layers() {
                    let c = self.channels(i);
                    push(
                        format!("_layers.{i}._layer.0.weight"),
                        format!("convs.{i}.weight"),
                        Layout::Same,
                        self.kernel(c, c_in, 4),
                    );
                    if i > 0 && i + 1 < self.layers() {
                        norm(
                            &mut push,
                            &format!("_layers.{i}._layer.1."),
                            &format!("posts.{i}.norm.norm."),
                            c,
                        );
                    }
                    c_in = c;
                }
            }
            Part::ConvHead => {
                let c = self.channels(self.tap());
                let p = "_convolutional_path.";
                push(
                    format!("{p}0._layer.0.weight"),
                    "conv1.linear.weight".into(),
                    Layout::Pointwise,
                    self.kernel(e, c, 1),
                );
                norm(&mut push, &format!("{p}0._layer.1."), "bn1.norm.", e);
                push(
                    format!("{p}1._layer.0.weight"),
                    "conv2.linear.weight".into(),
                    Layout::Pointwise,
                    self.kernel(e, e, 1),
                );
                push(
                    "_identity_shortcut._layer.0.weight".into(),
                    "shortcut.linear.weight".into(),
                    Layout::Pointwise,
                    self.kernel(e, c, 1),
                );
                norm(&mut push, "_bn_embedding.", "bn_out.norm.", e);
            }
            Part::LatentHead => {
                push(
                    "_head.1.weight".into(),
                    "fc1.weight".into(),
                    Layout::Linear,
                    vec![e, self.latent_dim],
                );
                norm(&mut push, "_head.2.", "bn.norm.", e);
                push(
                    "_head.4.weight".into(),
                    "fc2.weight".into(),
                    Layout::Linear,
                    vec![e, e],
                );
            }
        }
        out
    }

    /// The keyword arguments of the authors' `DcganEncoder` for this architecture, as JSON.
    pub fn dcgan_encoder_args(&self) -> serde_json::Value {
        let (conv, norm) = if self.dims == 2 {
            ("Conv2d", "BatchNorm2d")
        } else {
            ("Conv3d", "BatchNorm3d")
        };
        serde_json::json!({
            "dim_in": self.in_channels,
            "dim_h": self.width,
            "dim_l": self.latent_dim,
            "dim_cls": [self.tap_key()],
            "input_size": self.input_size(),
            "input_dim": self.dims,
            "conv_layer_class": conv,
            "norm_layer_class": norm,
            "weights_initialization_type": "xavier_uniform",
        })
    }
}

/// The authors' prefixes of source `s`'s parts in a `Dim` state dict.
pub fn dim_prefix(part: Part, source: usize, arch: &AuthorsArch) -> String {
    match part {
        Part::Encoder => format!("_encoder.{source}."),
        Part::ConvHead => format!("_conv_heads.{source}.{}.", arch.tap_key()),
        Part::LatentHead => format!("_latent_heads.{source}."),
    }
}

/// mmssl's prefix of modality `m`'s part in a contrastive model.
pub fn mmssl_prefix(part: Part, m: usize) -> String {
    match part {
        Part::Encoder => format!("backbone.encoders.{m}."),
        Part::ConvHead => format!("conv_heads.{m}."),
        Part::LatentHead => format!("latent_heads.{m}."),
    }
}

/// The sources (modalities) whose encoder a `Dim` state dict holds, in order.
pub fn sources(dict: &StateDict) -> Vec<usize> {
    let mut found: Vec<usize> = dict
        .tensors
        .keys()
        .filter_map(|k| k.strip_prefix("_encoder.")?.split('.').next()?.parse().ok())
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// The architecture of source `s` of the `Dim` state dict `dict`, read off its tensors' shapes;
/// `heads`: whether the heads must be there too.
pub fn detect(dict: &StateDict, s: usize, heads: bool) -> Result<AuthorsArch> {
    let bad = |reason: String| ProtocolError::file(&dict.path, reason);
    let t = &dict.tensors;
    let first_name = format!("_encoder.{s}._layers.0._layer.0.weight");
    let first = t.get(&first_name).ok_or_else(|| {
        bad(format!(
            "source {s} has no `{first_name}`: not the authors' DcganEncoder"
        ))
    })?;
    let dims = first.shape.len().saturating_sub(2);
    if !(dims == 2 || dims == 3) || first.shape[2..].iter().any(|&k| k != 4) {
        return Err(bad(format!(
            "`{first_name}` has the shape {:?}: the authors' DcganEncoder has 4x4 (2D) or 4x4x4 (3D) kernels",
            first.shape
        )));
    }
    let layers = (0..)
        .take_while(|i| t.contains_key(&format!("_encoder.{s}._layers.{i}._layer.0.weight")))
        .count();
    let expected = if dims == 2 { 4 } else { 5 };
    if layers != expected {
        return Err(bad(format!(
            "source {s}'s encoder has {layers} {dims}D convolutions; mmssl's DCGAN encoders have \
             {expected} in {dims}D ({} inputs): a DcganEncoder for another input size (the \
             authors' 128 or {}) is not one of them",
            if dims == 2 { "32x32" } else { "64^3" },
            if dims == 2 { "64x64" } else { "32^3" }
        )));
    }
    let last = &t[&format!("_encoder.{s}._layers.{}._layer.0.weight", layers - 1)];
    let mut arch = AuthorsArch {
        dims,
        in_channels: first.shape[1],
        width: first.shape[0],
        latent_dim: last.shape[0],
        embedding_dim: 64,
    };
    let embedding = format!("_latent_heads.{s}._head.4.weight");
    match t.get(&embedding) {
        Some(e) if !e.shape.is_empty() => arch.embedding_dim = e.shape[0],
        _ if heads => {
            return Err(bad(format!(
                "source {s} has no latent head (`{embedding}`): the state dict holds the \
                 encoder only; import it with --encoders-only (heads at their seeded \
                 initialisation), or give the whole `Dim` model's state dict"
            )));
        }
        _ => {}
    }
    if heads {
        let key = arch.tap_key();
        let conv_heads: Vec<String> = t
            .keys()
            .filter_map(|k| {
                let rest = k.strip_prefix(&format!("_conv_heads.{s}."))?;
                Some(rest.split('.').next()?.to_string())
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if conv_heads != [key.clone()] {
            return Err(bad(format!(
                "source {s} has conv heads on {conv_heads:?}; mmssl's model has one, on the \
                 tapped map `{key}` (the map of side 8{})",
                if conv_heads.is_empty() {
                    ": the state dict has none; import with --encoders-only"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(arch)
}

/// `values` of a tensor in `layout`, from PyTorch's order (`shape`) to mmssl's.
pub fn to_mmssl(values: &[f32], shape: &[usize], layout: Layout) -> (Vec<f32>, Vec<usize>) {
    match layout {
        Layout::Same | Layout::Counter => (values.to_vec(), shape.to_vec()),
        Layout::Pointwise | Layout::Linear => {
            let (o, i) = (shape[0], shape[1]);
            (transpose(values, o, i), vec![i, o])
        }
    }
}

/// `values` of a tensor in `layout`, from mmssl's order to PyTorch's `shape`.
pub fn to_authors(values: &[f32], shape: &[usize], layout: Layout) -> Vec<f32> {
    match layout {
        Layout::Same | Layout::Counter => values.to_vec(),
        Layout::Pointwise | Layout::Linear => transpose(values, shape[1], shape[0]),
    }
}

/// The transpose of a row-major `rows x cols` matrix.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// `N WHAT: ` then the [`listing`] of `names`, `N` their number (`3 tensor(s) without a place:
/// ...`), for a message.
pub fn counted(what: &str, names: &[String]) -> String {
    format!("{} {what}: {}", names.len(), listing(names))
}

/// Names of a state dict grouped for a message: the first few, then how many more.
pub fn listing(names: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text += &format!(" and {} more", names.len() - SHOWN);
    }
    text
}

/// Counters (`num_batches_tracked`) of a state dict, by name.
pub fn counters(dict: &StateDict) -> BTreeMap<String, i64> {
    dict.tensors
        .iter()
        .filter(|(k, _)| k.ends_with("num_batches_tracked"))
        .map(|(k, t)| (k.clone(), t.values.first().copied().unwrap_or(0.0) as i64))
        .collect()
}
