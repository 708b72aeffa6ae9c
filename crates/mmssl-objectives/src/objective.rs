//! A whole objective: the weighted sum of its edge terms over the modalities.

use crate::critic::{BilinearCritic, BilinearCriticConfig, Critic, CriticKind};
use crate::edge::{EdgeTerm, EmbeddingKind, edge_terms};
use crate::error::{ObjectiveError, Result};
use crate::estimator::Estimator;
use crate::scores::Scores;
use crate::spec::ObjectiveSpec;
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

/// Configuration of an [`Objective`]: the spec plus the estimator settings shared by its terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveConfig {
    /// Which edges, with which weights.
    pub spec: ObjectiveSpec,
    /// The mutual-information estimator (default InfoNCE).
    #[serde(default)]
    pub estimator: Estimator,
    /// The critic (default scaled dot product).
    #[serde(default)]
    pub critic: CriticKind,
    /// Scores are clipped to `clip * tanh(f / clip)` (AMDIM); `None` disables clipping.
    #[serde(default = "default_clip")]
    pub clip: Option<f64>,
    /// The score penalty `lambda` in `lambda * mean(f^2)`, computed before clipping.
    #[serde(default = "default_penalty")]
    pub penalty: f64,
    /// Whether the penalty of a term is multiplied by the edge's weight. Default `false`: each
    /// term adds `weight * loss + penalty`, so the penalty regularises every score matrix
    /// equally whatever the weights.
    #[serde(default)]
    pub penalty_weighted: bool,
    /// Embedding size (needed only to build the bilinear critic's matrix).
    #[serde(default = "default_dim")]
    pub embedding_dim: usize,
}

/// The paper's clipping constant `c` in `c * tanh(f / c)` (AMDIM, Bachman et al. 2019).
pub const DEFAULT_CLIP: f64 = 20.0;
/// The paper's score penalty `lambda` in `lambda * mean(f^2)` (AMDIM).
pub const DEFAULT_PENALTY: f64 = 4e-2;
/// The paper's embedding size of the projection heads.
pub const DEFAULT_EMBEDDING_DIM: usize = 64;

fn default_clip() -> Option<f64> {
    Some(DEFAULT_CLIP)
}
fn default_penalty() -> f64 {
    DEFAULT_PENALTY
}
fn default_dim() -> usize {
    DEFAULT_EMBEDDING_DIM
}

impl ObjectiveConfig {
    /// The paper's settings for `spec`: InfoNCE, scaled dot critic, clip 20, penalty 4e-2.
    pub fn new(spec: ObjectiveSpec) -> Self {
        ObjectiveConfig {
            spec,
            estimator: Estimator::default(),
            critic: CriticKind::default(),
            clip: default_clip(),
            penalty: default_penalty(),
            penalty_weighted: false,
            embedding_dim: default_dim(),
        }
    }

    crate::setters! {
        /// Sets the estimator.
        with_estimator => estimator: Estimator;
        /// Sets the critic.
        with_critic => critic: CriticKind;
        /// Sets the clipping constant (`None`: no clipping).
        with_clip => clip: Option<f64>;
        /// Sets the penalty coefficient.
        with_penalty => penalty: f64;
        /// Whether the penalty is weighted with its edge.
        with_penalty_weighted => penalty_weighted: bool;
        /// Sets the embedding size.
        with_embedding_dim => embedding_dim: usize;
    }

    /// Checks the settings and builds the objective (and the bilinear critic's matrix, if any).
    pub fn init<R: Rng + ?Sized>(&self, device: &Device, rng: &mut R) -> Result<Objective> {
        self.validate()?;
        let bilinear = (self.critic == CriticKind::Bilinear)
            .then(|| BilinearCriticConfig::new(self.embedding_dim).init(device, rng));
        Ok(Objective {
            bilinear,
            config: self.clone(),
        })
    }

    /// Checks the settings: the critic's temperature, the clip, the penalty, the embedding
    /// size.
    pub fn validate(&self) -> Result<()> {
        check_scores(self.critic, self.clip, self.penalty)?;
        if self.embedding_dim == 0 {
            return Err(ObjectiveError::InvalidParameter {
                name: "embedding_dim",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// Checks the settings every term's scores use: the critic's parameters, the clipping
/// constant (finite and > 0, or absent) and the penalty coefficient (finite and >= 0).
pub(crate) fn check_scores(critic: CriticKind, clip: Option<f64>, penalty: f64) -> Result<()> {
    critic.validate()?;
    if let Some(c) = clip
        && !(c > 0.0 && c.is_finite())
    {
        return Err(ObjectiveError::InvalidParameter {
            name: "clip",
            value: c,
            reason: "the clipping constant must be finite and > 0 (or absent)",
        });
    }
    if !(penalty >= 0.0 && penalty.is_finite()) {
        return Err(ObjectiveError::InvalidParameter {
            name: "penalty",
            value: penalty,
            reason: "the penalty coefficient must be finite and >= 0",
        });
    }
    Ok(())
}

/// The embeddings of one modality that the edges use.
#[derive(Debug, Clone)]
pub struct ModalityEmbeddings {
    /// The conv head's output: `[B, d, L]`.
    pub conv: Tensor<3>,
    /// The latent head's output: `[B, d]`.
    pub latent: Tensor<2>,
}

/// One evaluated term.
#[derive(Debug, Clone)]
pub struct TermOutput {
    /// Which edge between which modalities.
    pub term: EdgeTerm,
    /// The edge's weight.
    pub weight: f64,
    /// The estimator's loss: `[1]`.
    pub loss: Tensor<1>,
    /// The score penalty `lambda * mean(f^2)`: `[1]`.
    pub penalty: Tensor<1>,
}

/// The value of an objective on a batch.
#[derive(Debug, Clone)]
pub struct ObjectiveOutput {
    /// `sum over terms of weight * loss + (weight if penalty_weighted else 1) * penalty`: `[1]`.
    pub total: Tensor<1>,
    /// Every term, in spec order then modality order.
    pub terms: Vec<TermOutput>,
}

impl ObjectiveOutput {
    /// Named scalars for logging: `XX[0->1]` (loss) and `XX[0->1].penalty` per term, and
    /// `total`. Reads the values back from the device.
    pub fn scalars(&self) -> Vec<(String, f64)> {
        let read = |t: &Tensor<1>| t.clone().into_scalar::<f32>() as f64;
        let mut out = Vec::with_capacity(2 * self.terms.len() + 1);
        for t in &self.terms {
            out.push((t.term.to_string(), read(&t.loss)));
            out.push((format!("{}.penalty", t.term), read(&t.penalty)));
        }
        out.push(("total".into(), read(&self.total)));
        out
    }
}

/// A contrastive objective over `n` modalities: the edges of its spec, evaluated with one
/// estimator and critic. Holds the bilinear critic's matrix when that critic is chosen (its
/// only parameters); otherwise it has none.
#[derive(Module, Debug)]
pub struct Objective {
    bilinear: Option<BilinearCritic>,
    #[module(skip)]
    config: ObjectiveConfig,
}

impl Objective {
    /// The configuration.
    pub fn config(&self) -> &ObjectiveConfig {
        &self.config
    }

    /// The terms for `modalities` modalities; an error if a cross-modal edge has fewer than 2.
    pub fn terms(&self, modalities: usize) -> Result<Vec<(EdgeTerm, f64)>> {
        let mut out = Vec::new();
        for &(edge, weight) in self.config.spec.edges() {
            if edge.is_cross_modal() && modalities < 2 {
                return Err(ObjectiveError::TooFewModalities {
                    edge: edge.to_string(),
                    modalities,
                });
            }
            out.extend(
                edge_terms(edge, modalities)
                    .into_iter()
                    .map(|t| (t, weight)),
            );
        }
        Ok(out)
    }

    /// Evaluates the objective. `rng` draws the anchor locations of CC edges.
    pub fn forward<R: Rng + ?Sized>(
        &self,
        views: &[ModalityEmbeddings],
        rng: &mut R,
    ) -> Result<ObjectiveOutput> {
        if views.is_empty() {
            return Err(ObjectiveError::TooFewModalities {
                edge: self.config.spec.to_string(),
                modalities: 0,
            });
        }
        let critic = Critic {
            kind: self.config.critic,
            bilinear: self.bilinear.as_ref(),
        };
        // Embeddings in term order (the order of the CC edges' location draws), then the terms
        // that contrast against the same deterministic target (a view's conv map or latent)
        // evaluated together.
        let specs = self.terms(views.len())?;
        let mut pairs = Vec::with_capacity(specs.len());
        for (term, _) in &specs {
            let anchors = embedding(&views[term.anchor], term.anchor_kind(), rng)?;
            let targets = embedding(&views[term.target], term.target_kind(), rng)?;
            pairs.push((anchors, targets));
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, (term, _)) in specs.iter().enumerate() {
            let shared = term.target_kind() != EmbeddingKind::SampledLocation;
            let key = |j: usize| (specs[j].0.target, specs[j].0.target_kind());
            match groups.iter_mut().find(|g| shared && key(g[0]) == key(i)) {
                Some(group) => group.push(i),
                None => groups.push(vec![i]),
            }
        }
        let mut results: Vec<Option<(Tensor<1>, Tensor<1>)>> = vec![None; specs.len()];
        for group in groups {
            let anchors: Vec<Tensor<3>> = group.iter().map(|&i| pairs[i].0.clone()).collect();
            let targets = pairs[group[0]].1.clone();
            let outs = contrast_shared_targets(
                &anchors,
                targets,
                critic,
                self.config.estimator,
                self.config.clip,
                self.config.penalty,
            )?;
            for (&i, out) in group.iter().zip(outs) {
                results[i] = Some(out);
            }
        }
        let mut terms = Vec::new();
        let mut total: Option<Tensor<1>> = None;
        for ((term, weight), result) in specs.into_iter().zip(results) {
            let (loss, penalty) = result.expect("every term belongs to a group");
            let pw = if self.config.penalty_weighted {
                weight
            } else {
                1.0
            };
            let contribution = loss.clone().mul_scalar(weight) + penalty.clone().mul_scalar(pw);
            total = Some(match total {
                Some(t) => t + contribution,
                None => contribution,
            });
            terms.push(TermOutput {
                term,
                weight,
                loss,
                penalty,
            });
        }
        let total = total.ok_or(ObjectiveError::EmptySpec)?;
        Ok(ObjectiveOutput { total, terms })
    }
}

/// The estimator's loss and the score penalty for one (anchors, targets) pair: the building
/// block of every edge, usable on any embeddings. [`Contrast`](crate::Contrast) is the same
/// with named settings and the paper's defaults.
///
/// Returns `(loss, penalty)`. The penalty is `penalty * mean(f^2)` over every score `f`
/// *before* clipping (AMDIM); it is not added to the loss: the paper's objectives add
/// `weight * loss + penalty` per term. The anchors are the score rows: the authors'
/// `estimator(x, y)` (github:Entodi/fusion) is `contrast(y, x, ...)`.
///
/// InfoNCE on the CPU backend takes a fused kernel (one matrix product and one pass over the
/// scores forward, two matrix products backward; see `docs/performance.md`); every other
/// estimator and backend takes [`contrast_unfused`]. Both give the same values to float
/// rounding.
///
/// # Shapes
/// - `anchors`: `[B, d, L_a]`; `targets`: `[B, d, L_t]`; outputs: `[1]` each
pub fn contrast(
    anchors: Tensor<3>,
    targets: Tensor<3>,
    critic: Critic<'_>,
    estimator: Estimator,
    clip: Option<f64>,
    penalty: f64,
) -> Result<(Tensor<1>, Tensor<1>)> {
    let sets = std::slice::from_ref(&anchors);
    if let Some(mut out) = fused_infonce(sets, &targets, critic, estimator, clip, penalty)? {
        return Ok(out.remove(0));
    }
    contrast_unfused(anchors, targets, critic, estimator, clip, penalty)
}

/// [`contrast`] of several anchor sets against the same targets: one `(loss, penalty)` per
/// anchor set, in order, equal to calling [`contrast`] for each.
///
/// On the CPU backend, InfoNCE terms whose anchors have the same shape run as one fused
/// operation: the anchor sets are stacked into one score product against the targets (one
/// transpose and one packing of the targets instead of one per term, larger products), each
/// keeping its own loss, penalty and gradients. Objectives whose edges share a target map
/// (CR, XX and CC all contrast against the conv maps) go through here.
///
/// # Shapes
/// - `anchors`: each `[B, d, L_a]`; `targets`: `[B, d, L_t]`; outputs: `[1]` each
pub fn contrast_shared_targets(
    anchors: &[Tensor<3>],
    targets: Tensor<3>,
    critic: Critic<'_>,
    estimator: Estimator,
    clip: Option<f64>,
    penalty: f64,
) -> Result<Vec<(Tensor<1>, Tensor<1>)>> {
    if let Some(out) = fused_infonce(anchors, &targets, critic, estimator, clip, penalty)? {
        return Ok(out);
    }
    anchors
        .iter()
        .map(|a| contrast(a.clone(), targets.clone(), critic, estimator, clip, penalty))
        .collect()
}

/// The fused CPU InfoNCE of `anchors` (one or more sets of the same shape) against `targets`,
/// or `None` where it does not apply (another estimator or backend, mismatched shapes, no
/// sets, a batch of one): the caller then takes the generic path.
fn fused_infonce(
    anchors: &[Tensor<3>],
    targets: &Tensor<3>,
    critic: Critic<'_>,
    estimator: Estimator,
    clip: Option<f64>,
    penalty: f64,
) -> Result<Option<Vec<(Tensor<1>, Tensor<1>)>>> {
    let Some(first) = anchors.first() else {
        return Ok(None);
    };
    let [b, d, la] = first.dims();
    let [bt, dt, lt] = targets.dims();
    let same = anchors.iter().all(|a| a.dims() == [b, d, la]);
    if estimator != Estimator::InfoNce || !same || b != bt || d != dt || b < 2 {
        return Ok(None);
    }
    // Anchors as rows (a reshape when L_a = 1), the sets stacked; targets stay [B, d, L_t].
    let mut factors = anchors
        .iter()
        .map(|a| critic.anchor_factor(a.clone().swap_dims(1, 2).reshape([b * la, d])))
        .collect::<Result<Vec<_>>>()?;
    let g = if factors.len() == 1 {
        factors.remove(0)
    } else {
        Tensor::cat(factors, 0)
    };
    let h = critic.target_factor(targets.clone(), 1);
    let layout = mmssl_kernels::infonce::Layout {
        dim: g.dims()[1],
        anchor_locations: la,
        target_locations: lt,
        scale: critic.scale(d) as f32,
        clip: clip.map(|c| c as f32),
        penalty: penalty as f32,
        sets: anchors.len(),
    };
    Ok(mmssl_kernels::infonce::infonce(&g, &h, layout).map(|out| {
        (0..anchors.len())
            .map(|k| {
                let loss = out.clone().narrow(0, 2 * k, 1);
                (loss, out.clone().narrow(0, 2 * k + 1, 1))
            })
            .collect()
    }))
}

/// [`contrast`] through the generic tensor operations on every backend (the reference the
/// fused CPU kernel is tested against).
pub fn contrast_unfused(
    anchors: Tensor<3>,
    targets: Tensor<3>,
    critic: Critic<'_>,
    estimator: Estimator,
    clip: Option<f64>,
    penalty: f64,
) -> Result<(Tensor<1>, Tensor<1>)> {
    let scores = Scores::new(anchors, targets, critic, clip)?;
    let loss = estimator.loss(&scores);
    Ok((loss, scores.raw_square_mean.clone().mul_scalar(penalty)))
}

fn embedding<R: Rng + ?Sized>(
    view: &ModalityEmbeddings,
    kind: EmbeddingKind,
    rng: &mut R,
) -> Result<Tensor<3>> {
    match kind {
        EmbeddingKind::Latent => Ok(view.latent.clone().unsqueeze_dim(2)),
        EmbeddingKind::ConvMap => Ok(view.conv.clone()),
        EmbeddingKind::SampledLocation => {
            let [b, d, l] = view.conv.dims();
            if l == 0 {
                return Err(ObjectiveError::Shape(
                    "a feature map has no locations".into(),
                ));
            }
            let index: Vec<i64> = (0..b)
                .flat_map(|_| {
                    let loc = rng.random_range(0..l) as i64;
                    std::iter::repeat_n(loc, d)
                })
                .collect();
            let device = view.conv.device();
            let index = Tensor::<3, Int>::from_data(TensorData::new(index, [b, d, 1]), &device);
            Ok(view.conv.clone().gather(2, index))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// The CC anchor sampler, for tests.
    pub fn sampled<R: Rng + ?Sized>(view: &ModalityEmbeddings, rng: &mut R) -> Tensor<3> {
        embedding(view, EmbeddingKind::SampledLocation, rng).unwrap()
    }
}
