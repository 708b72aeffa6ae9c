//! Critics: how an anchor embedding and a target embedding are scored.
//!
//! Every critic here is *separable*, `f(u, v) = s * <g(u), h(v)>`, so all scores of a batch
//! come from one matrix product.

use crate::error::{ObjectiveError, Result};
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

/// Which critic an objective uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CriticKind {
    /// `f(u, v) = u . v / sqrt(d)` (AMDIM; the paper's default).
    #[default]
    ScaledDot,
    /// `f(u, v) = cos(u, v) / temperature` (SimCLR-style).
    Cosine {
        /// The temperature, > 0 (0.1 is common).
        temperature: f64,
    },
    /// `f(u, v) = u^T W v / sqrt(d)` with a learnable `d x d` matrix `W`, initialised at the
    /// identity (so it starts as the scaled dot product).
    Bilinear,
}

/// The cosine critic's temperature when `cosine` is written without one.
pub const DEFAULT_COSINE_TEMPERATURE: f64 = 0.1;

impl CriticKind {
    /// The cosine critic with `temperature`.
    pub fn cosine(temperature: f64) -> Self {
        CriticKind::Cosine { temperature }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        if let CriticKind::Cosine { temperature } = *self
            && !(temperature > 0.0 && temperature.is_finite())
        {
            return Err(ObjectiveError::InvalidParameter {
                name: "temperature",
                value: temperature,
                reason: "the cosine critic's temperature must be finite and > 0",
            });
        }
        Ok(())
    }
}

/// The learnable matrix of the bilinear critic.
#[derive(Module, Debug)]
pub struct BilinearCritic {
    /// `W`, `[d, d]`.
    pub weight: Param<Tensor<2>>,
}

/// The settings of a [`BilinearCritic`]: the size `d` of its square matrix `W`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BilinearCriticConfig {
    /// The embedding size `d` (`W` is `[d, d]`).
    pub dim: usize,
}

impl BilinearCriticConfig {
    /// A critic over `dim`-dimensional embeddings.
    pub fn new(dim: usize) -> Self {
        BilinearCriticConfig { dim }
    }

    /// `W = I + U(-0.01, 0.01)`, drawn from `rng`.
    pub fn init<R: Rng + ?Sized>(&self, device: &Device, rng: &mut R) -> BilinearCritic {
        let d = self.dim;
        let values: Vec<f32> = (0..d * d)
            .map(|k| {
                let eye = if k / d == k % d { 1.0 } else { 0.0 };
                eye + rng.random_range(-0.01f32..0.01)
            })
            .collect();
        BilinearCritic {
            weight: Param::from_data(TensorData::new(values, [d, d]), device),
        }
    }
}

impl BilinearCritic {
    /// `W = I + U(-0.01, 0.01)` of size `d`.
    #[deprecated(
        since = "0.1.0",
        note = "use BilinearCriticConfig::new(d).init(device, rng)"
    )]
    pub fn init<R: Rng + ?Sized>(d: usize, device: &Device, rng: &mut R) -> Self {
        BilinearCriticConfig::new(d).init(device, rng)
    }
}

/// A critic ready to score: the kind plus, for the bilinear one, its matrix.
#[derive(Debug, Clone, Copy)]
pub struct Critic<'a> {
    /// The kind.
    pub kind: CriticKind,
    /// The bilinear matrix, required when `kind` is `Bilinear`.
    pub bilinear: Option<&'a BilinearCritic>,
}

impl Critic<'static> {
    /// The scaled dot product `u . v / sqrt(d)` (the paper's critic).
    pub fn scaled_dot() -> Self {
        Critic {
            kind: CriticKind::ScaledDot,
            bilinear: None,
        }
    }

    /// `cos(u, v) / temperature`; the temperature is checked where the critic is used.
    pub fn cosine(temperature: f64) -> Self {
        Critic {
            kind: CriticKind::Cosine { temperature },
            bilinear: None,
        }
    }
}

impl<'a> Critic<'a> {
    /// `u^T W v / sqrt(d)` with the matrix `W` of `weight`.
    pub fn bilinear(weight: &'a BilinearCritic) -> Self {
        Critic {
            kind: CriticKind::Bilinear,
            bilinear: Some(weight),
        }
    }
}

impl Default for Critic<'static> {
    /// The scaled dot product.
    fn default() -> Self {
        Critic::scaled_dot()
    }
}

impl Critic<'_> {
    /// Maps anchors and targets (`[N, d]` rows) to the factors of the score matrix:
    /// scores = `scale * g(anchors) h(targets)^T`. Returns `(g, h, scale)`.
    pub fn factors(
        &self,
        anchors: Tensor<2>,
        targets: Tensor<2>,
    ) -> Result<(Tensor<2>, Tensor<2>, f64)> {
        let d = anchors.dims()[1];
        Ok((
            self.anchor_factor(anchors)?,
            self.target_factor(targets, 1),
            self.scale(d),
        ))
    }

    /// `g(anchors)` for anchors `[N, d]`.
    pub(crate) fn anchor_factor(&self, anchors: Tensor<2>) -> Result<Tensor<2>> {
        let d = anchors.dims()[1];
        match self.kind {
            CriticKind::ScaledDot => Ok(anchors),
            CriticKind::Cosine { .. } => Ok(l2_normalise(anchors, 1)),
            CriticKind::Bilinear => {
                let w = self.bilinear.ok_or_else(|| {
                    ObjectiveError::Shape("the bilinear critic has no weight matrix".into())
                })?;
                let wd = w.weight.dims();
                if wd != [d, d] {
                    return Err(ObjectiveError::Shape(format!(
                        "bilinear critic matrix is {wd:?} but embeddings have d = {d}"
                    )));
                }
                Ok(anchors.matmul(w.weight.val()))
            }
        }
    }

    /// `h(targets)` for targets whose embedding dimension is `dim` (1 for `[N, d]` rows and
    /// for `[B, d, L]` maps).
    pub(crate) fn target_factor<const D: usize>(
        &self,
        targets: Tensor<D>,
        dim: usize,
    ) -> Tensor<D> {
        match self.kind {
            CriticKind::Cosine { .. } => l2_normalise(targets, dim),
            CriticKind::ScaledDot | CriticKind::Bilinear => targets,
        }
    }

    /// The scale `s` of the scores for embeddings of size `d`.
    pub(crate) fn scale(&self, d: usize) -> f64 {
        match self.kind {
            CriticKind::Cosine { temperature } => 1.0 / temperature,
            CriticKind::ScaledDot | CriticKind::Bilinear => 1.0 / (d as f64).sqrt(),
        }
    }
}

/// `x` scaled to unit norm along `dim` (norms floored at 1e-8, as PyTorch's
/// `cosine_similarity`).
fn l2_normalise<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let norm = x.clone().powi_scalar(2).sum_dim(dim).sqrt().clamp_min(1e-8);
    x / norm
}

impl std::fmt::Display for CriticKind {
    /// `scaled_dot`, `cosine(0.1)`, `bilinear`: the form `CriticKind::from_str` (`FromStr`) reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CriticKind::ScaledDot => f.write_str("scaled_dot"),
            CriticKind::Cosine { temperature } => write!(f, "cosine({temperature})"),
            CriticKind::Bilinear => f.write_str("bilinear"),
        }
    }
}

impl std::str::FromStr for CriticKind {
    type Err = ObjectiveError;

    /// `scaled_dot` (or `dot`), `bilinear`, `cosine(T)` with a temperature `T > 0`, or
    /// `cosine` for `cosine(0.1)`; case-insensitive, `-` for `_`.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        // `-` for `_` in names only: `cosine(-1)` keeps its minus sign (and is refused as a
        // temperature below, not as an unknown critic).
        let norm = lower.replace('-', "_");
        let kind = match norm.as_str() {
            "scaled_dot" | "dot" | "scaleddot" => CriticKind::ScaledDot,
            "bilinear" => CriticKind::Bilinear,
            "cosine" | "cos" => CriticKind::cosine(DEFAULT_COSINE_TEMPERATURE),
            _ => {
                let t = lower
                    .strip_prefix("cosine(")
                    .or_else(|| lower.strip_prefix("cos("))
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .ok_or_else(|| ObjectiveError::UnknownCritic(s.to_string()))?;
                CriticKind::cosine(t)
            }
        };
        kind.validate()?;
        Ok(kind)
    }
}
