//! [`Contrast`]: one (anchors, targets) term with the paper's settings by default, for
//! downstream code that builds its own objectives.
//!
//! # The penalty and the authors' calls
//!
//! [`Contrast::forward`] returns `(loss, penalty)`: the estimator's loss and the score penalty
//! `lambda * mean(f^2)` over every score *before* clipping (AMDIM, Bachman et al. 2019). The
//! two are separate so the caller chooses how to weigh them; the paper's objectives add
//! `weight * loss + penalty` per term.
//!
//! The authors' estimators (github:Entodi/fusion, `fusion/criterion/mi_estimator`) are called
//! `estimator(x, y)` and score the rows of `y` against `x`: the anchors are `y`. Their
//! `estimator(x, y)` is `Contrast::new().forward(y, x)` here.
//!
//! # Negatives with several anchor locations
//!
//! With one anchor location per sample (every term of the paper: CR, XX and RR anchor on a
//! latent, CC on one sampled location), both choices of [`Negatives`] are the same loss. With
//! several (`L_a > 1`), InfoNCE differs:
//!
//! - [`Negatives::PerLocation`] (the default): each anchor row `(b, l_a)` is contrasted with
//!   the targets of every other sample, `-log(e^{f+} / (e^{f+} + sum_{b' != b, l_t}
//!   e^{f(a_{b,l_a}, t_{b',l_t})}))`.
//! - [`Negatives::PerSample`] (the authors' `InfoNceEstimator`): the negatives of all anchor
//!   locations of a sample are pooled, so every positive of sample `b` is contrasted with
//!   `sum_{l_a', b' != b, l_t} e^{f(a_{b,l_a'}, t_{b',l_t})}`.
//!
//! The other estimators average over all negative pairs, where the two are the same.

use crate::critic::Critic;
use crate::error::{ObjectiveError, Result};
use crate::estimator::Estimator;
use crate::objective::{DEFAULT_CLIP, DEFAULT_PENALTY, contrast};
use crate::scores::{Scores, softplus};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Which negatives an InfoNCE anchor is contrasted with when anchors have several locations
/// (see [`Contrast`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Negatives {
    /// Per anchor location: the targets of every other sample (mmssl's default).
    #[default]
    PerLocation,
    /// Pooled over all anchor locations of the anchor's sample (the authors' estimator).
    PerSample,
}

impl std::fmt::Display for Negatives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Negatives::PerLocation => "per_location",
            Negatives::PerSample => "per_sample",
        })
    }
}

impl FromStr for Negatives {
    type Err = ObjectiveError;

    /// `per_location` or `per_sample` (`-` for `_`).
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "per_location" | "location" => Ok(Negatives::PerLocation),
            "per_sample" | "sample" | "pooled" => Ok(Negatives::PerSample),
            _ => Err(ObjectiveError::Syntax {
                spec: s.to_string(),
                rest: "negatives: per_location or per_sample".into(),
            }),
        }
    }
}

/// One contrastive term with its settings; [`Contrast::new`] has the paper's (InfoNCE, scaled
/// dot critic, clip 20, penalty 4e-2, negatives per location).
///
/// ```
/// use burn::tensor::{Device, Distribution, Tensor};
/// use mmssl_objectives::{Contrast, Critic, Estimator, Negatives};
///
/// let device = Device::flex();
/// let anchors = Tensor::<3>::random([8, 16, 4], Distribution::Normal(0.0, 1.0), &device);
/// let targets = Tensor::<3>::random([8, 16, 4], Distribution::Normal(0.0, 1.0), &device);
/// let (loss, penalty) = Contrast::new()
///     .with_critic(Critic::cosine(0.1))
///     .with_negatives(Negatives::PerSample)
///     .forward(anchors, targets)
///     .unwrap();
/// assert!(loss.into_scalar::<f32>() > 0.0 && penalty.into_scalar::<f32>() >= 0.0);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Contrast<'a> {
    /// The critic.
    pub critic: Critic<'a>,
    /// The estimator.
    pub estimator: Estimator,
    /// The clipping constant (`None`: no clipping).
    pub clip: Option<f64>,
    /// The penalty coefficient.
    pub penalty: f64,
    /// The InfoNCE negatives with several anchor locations.
    pub negatives: Negatives,
}

impl Default for Contrast<'static> {
    fn default() -> Self {
        Contrast::new()
    }
}

impl Contrast<'static> {
    /// The paper's settings.
    pub fn new() -> Self {
        Contrast {
            critic: Critic::scaled_dot(),
            estimator: Estimator::InfoNce,
            clip: Some(DEFAULT_CLIP),
            penalty: DEFAULT_PENALTY,
            negatives: Negatives::PerLocation,
        }
    }
}

impl<'a> Contrast<'a> {
    /// Sets the critic.
    pub fn with_critic<'b>(self, critic: Critic<'b>) -> Contrast<'b> {
        Contrast {
            critic,
            estimator: self.estimator,
            clip: self.clip,
            penalty: self.penalty,
            negatives: self.negatives,
        }
    }

    crate::setters! {
        /// Sets the estimator.
        with_estimator => estimator: Estimator;
        /// Sets the clipping constant (`None`: no clipping).
        with_clip => clip: Option<f64>;
        /// Sets the penalty coefficient.
        with_penalty => penalty: f64;
        /// Sets the InfoNCE negatives.
        with_negatives => negatives: Negatives;
    }

    /// The estimator's loss and the score penalty of `anchors` against `targets`.
    ///
    /// # Shapes
    /// - `anchors`: `[B, d, L_a]`; `targets`: `[B, d, L_t]`; outputs: `[1]` each
    pub fn forward(
        &self,
        anchors: Tensor<3>,
        targets: Tensor<3>,
    ) -> Result<(Tensor<1>, Tensor<1>)> {
        crate::objective::check_scores(self.critic.kind, self.clip, self.penalty)?;
        let pooled = self.negatives == Negatives::PerSample
            && self.estimator == Estimator::InfoNce
            && anchors.dims()[2] > 1;
        if !pooled {
            return contrast(
                anchors,
                targets,
                self.critic,
                self.estimator,
                self.clip,
                self.penalty,
            );
        }
        let scores = Scores::new(anchors, targets, self.critic, self.clip)?;
        let (b, la) = (scores.batch, scores.anchor_locations);
        // Per-row log-sum-exp of the negatives, then pooled over the sample's anchor rows.
        let per_row = scores.negative_log_sum_exp().reshape([b, la]);
        let top = per_row.clone().max_dim(1).detach();
        let pooled = top.clone() + (per_row - top).exp().sum_dim(1).log(); // [B, 1]
        let pooled = pooled.expand([b, la]).reshape([b * la, 1]);
        let loss = softplus(pooled - scores.positives.clone()).mean();
        Ok((
            loss,
            scores.raw_square_mean.clone().mul_scalar(self.penalty),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// The authors' InfoNCE written as plain loops over (sample, location) in f64: scores
    /// `f = c tanh(u.v / sqrt(d) / c)`, the negatives of sample `i` pooled over all of its
    /// anchor locations; returns (loss, penalty).
    fn authors_loop(
        a: &[f64],
        t: &[f64],
        b: usize,
        d: usize,
        la: usize,
        lt: usize,
        pooled: bool,
    ) -> (f64, f64) {
        let at = |x: &[f64], i: usize, k: usize, l: usize, ls: usize| x[(i * d + k) * ls + l];
        let mut raw_sq = 0.0;
        let f = |i: usize, p: usize, j: usize, q: usize| {
            let dot: f64 = (0..d)
                .map(|k| at(a, i, k, p, la) * at(t, j, k, q, lt))
                .sum();
            dot / (d as f64).sqrt()
        };
        for i in 0..b {
            for p in 0..la {
                for j in 0..b {
                    for q in 0..lt {
                        raw_sq += f(i, p, j, q).powi(2);
                    }
                }
            }
        }
        let clip = |x: f64| 20.0 * (x / 20.0).tanh();
        let mut total = 0.0;
        for i in 0..b {
            for p in 0..la {
                let neg_rows: Vec<usize> = if pooled { (0..la).collect() } else { vec![p] };
                let mut neg = 0.0;
                for &pp in &neg_rows {
                    for j in (0..b).filter(|&j| j != i) {
                        for q in 0..lt {
                            neg += clip(f(i, pp, j, q)).exp();
                        }
                    }
                }
                for q in 0..lt {
                    let pos = clip(f(i, p, i, q));
                    total += -(pos - (pos.exp() + neg).ln());
                }
            }
        }
        (
            total / (b * la * lt) as f64,
            0.04 * raw_sq / (b * la * b * lt) as f64,
        )
    }

    #[test]
    fn per_sample_negatives_match_the_authors_estimator_with_several_anchor_locations() {
        let device = Device::flex();
        let (b, d, la, lt) = (5, 6, 3, 4);
        let val = |n: usize, s: u64| -> Vec<f64> {
            (0..n)
                .map(|k| ((k as u64 * 2654435761 + s) % 1000) as f64 / 250.0 - 2.0)
                .collect()
        };
        let (a, t) = (val(b * d * la, 1), val(b * d * lt, 7));
        let tensor = |x: &[f64], l: usize| {
            let v: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            Tensor::<3>::from_data(TensorData::new(v, [b, d, l]), &device)
        };
        let a32: Vec<f64> = a.iter().map(|&v| v as f32 as f64).collect();
        let t32: Vec<f64> = t.iter().map(|&v| v as f32 as f64).collect();
        for (negatives, pooled) in [
            (Negatives::PerSample, true),
            (Negatives::PerLocation, false),
        ] {
            let (loss, penalty) = Contrast::new()
                .with_negatives(negatives)
                .forward(tensor(&a, la), tensor(&t, lt))
                .unwrap();
            let (want, want_pen) = authors_loop(&a32, &t32, b, d, la, lt, pooled);
            let got = loss.into_scalar::<f32>() as f64;
            assert!(
                (got - want).abs() < 1e-4 * want.abs().max(1.0),
                "{negatives}: {got} vs {want}"
            );
            let got_pen = penalty.into_scalar::<f32>() as f64;
            assert!((got_pen - want_pen).abs() < 1e-4 * want_pen.max(1.0));
        }
        // The two differ with several anchor locations, and agree with one.
        let pooled = authors_loop(&a32, &t32, b, d, la, lt, true).0;
        let per_loc = authors_loop(&a32, &t32, b, d, la, lt, false).0;
        assert!((pooled - per_loc).abs() > 1e-3);
        let one = |n| {
            Contrast::new()
                .with_negatives(n)
                .forward(tensor(&a, la).narrow(2, 0, 1), tensor(&t, lt))
                .unwrap()
                .0
                .into_scalar::<f32>()
        };
        assert_eq!(one(Negatives::PerSample), one(Negatives::PerLocation));
    }

    #[test]
    fn builder_checks_and_parses() {
        let device = Device::flex();
        let x = Tensor::<3>::ones([4, 2, 2], &device);
        assert!(
            Contrast::new()
                .with_clip(Some(0.0))
                .forward(x.clone(), x.clone())
                .is_err()
        );
        assert!(
            Contrast::new()
                .with_penalty(-1.0)
                .forward(x.clone(), x.clone())
                .is_err()
        );
        assert!(
            Contrast::new()
                .with_critic(Critic::cosine(0.0))
                .forward(x.clone(), x)
                .is_err()
        );
        assert_eq!(
            "per-sample".parse::<Negatives>().unwrap(),
            Negatives::PerSample
        );
        assert!("sideways".parse::<Negatives>().is_err());
        assert_eq!(Negatives::PerLocation.to_string(), "per_location");
    }
}
