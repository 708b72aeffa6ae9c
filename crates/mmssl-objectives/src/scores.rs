//! The score matrix of one edge term, laid out for the estimators.
//!
//! Anchors `[B, d, L_a]` and targets `[B, d, L_t]`: every (sample, location) anchor is scored
//! against every (sample, location) target with one matrix product, `[B L_a, B L_t]`, viewed as
//! `[B L_a, B, L_t]`. The positives of anchor `(b, l_a)` are the targets `(b, l_t)` of the same
//! sample (one gather); its negatives are all targets of every other sample, selected by a
//! `[B L_a, B]` sample mask. No `B x B x L x L` mask is ever built.

use crate::critic::Critic;
use crate::error::{ObjectiveError, Result};
use burn::tensor::{Int, Tensor, TensorData};

/// Scores of one (anchors, targets) pair.
#[derive(Debug, Clone)]
pub struct Scores {
    /// All scores after clipping: `[B L_a, B, L_t]`.
    pub all: Tensor<3>,
    /// Positive scores after clipping: `[B L_a, L_t]` (anchor row, target location).
    pub positives: Tensor<2>,
    /// `1` where the column sample differs from the anchor's sample: `[B L_a, B]`.
    pub negative_mask: Tensor<2>,
    /// `mean(f^2)` over all scores before clipping: `[1]`.
    pub raw_square_mean: Tensor<1>,
    /// Batch size `B`.
    pub batch: usize,
    /// Anchor locations `L_a`.
    pub anchor_locations: usize,
    /// Target locations `L_t`.
    pub target_locations: usize,
}

impl Scores {
    /// Number of positive pairs, `B L_a L_t`.
    pub fn positive_count(&self) -> usize {
        self.batch * self.anchor_locations * self.target_locations
    }

    /// Number of negative pairs, `B L_a (B - 1) L_t`.
    pub fn negative_count(&self) -> usize {
        self.batch * self.anchor_locations * (self.batch - 1) * self.target_locations
    }

    /// Computes the scores with `critic`, clipping them to `clip * tanh(f / clip)` when `clip`
    /// is given.
    ///
    /// # Shapes
    /// - `anchors`: `[B, d, L_a]`; `targets`: `[B, d, L_t]`
    pub fn new(
        anchors: Tensor<3>,
        targets: Tensor<3>,
        critic: Critic<'_>,
        clip: Option<f64>,
    ) -> Result<Self> {
        let [b, d, la] = anchors.dims();
        let [bt, dt, lt] = targets.dims();
        if b != bt || d != dt {
            return Err(ObjectiveError::Shape(format!(
                "anchors [B={b}, d={d}, L={la}] and targets [B={bt}, d={dt}, L={lt}] must share B and d"
            )));
        }
        if b < 2 {
            return Err(ObjectiveError::BatchTooSmall(b));
        }
        let device = anchors.device();
        let a = anchors.swap_dims(1, 2).reshape([b * la, d]);
        let t = targets.swap_dims(1, 2).reshape([b * lt, d]);
        let (g, h, scale) = critic.factors(a, t)?;
        let raw = g.matmul(h.transpose()).mul_scalar(scale); // [B La, B Lt]
        let raw_square_mean = raw.clone().powi_scalar(2).mean();
        let clipped = match clip {
            Some(c) => raw.div_scalar(c).tanh().mul_scalar(c),
            None => raw,
        };
        let all = clipped.reshape([b * la, b, lt]);
        // Positives: for row (b, l_a), column block b.
        let index: Vec<i64> = (0..b * la * lt).map(|k| (k / (la * lt)) as i64).collect();
        let index = Tensor::<4, Int>::from_data(TensorData::new(index, [b, la, 1, lt]), &device);
        let positives = all
            .clone()
            .reshape([b, la, b, lt])
            .gather(2, index)
            .reshape([b * la, lt]);
        let mask: Vec<f32> = (0..b * la * b)
            .map(|k| if (k / b) / la == k % b { 0.0 } else { 1.0 })
            .collect();
        let negative_mask = Tensor::<2>::from_data(TensorData::new(mask, [b * la, b]), &device);
        Ok(Scores {
            all,
            positives,
            negative_mask,
            raw_square_mean,
            batch: b,
            anchor_locations: la,
            target_locations: lt,
        })
    }

    /// Per anchor row, `log sum_{negatives} exp(score)`: `[B L_a, 1]`, computed stably (the
    /// shift is the largest negative score; the anchor's own block is masked after a clamp
    /// that keeps it from overflowing).
    pub fn negative_log_sum_exp(&self) -> Tensor<2> {
        let rows = self.batch * self.anchor_locations;
        let block_max = self.all.clone().max_dim(2).reshape([rows, self.batch]);
        let shift = (block_max + (self.negative_mask.clone() - 1.0) * 1e30)
            .max_dim(1)
            .detach(); // [rows, 1]
        let centred = (self.all.clone() - shift.clone().reshape([rows, 1, 1])).clamp_max(1.0);
        let sums = (centred.exp().sum_dim(2).reshape([rows, self.batch])
            * self.negative_mask.clone())
        .sum_dim(1);
        shift + sums.log()
    }

    /// Mean over all negative pairs of `phi(score)`.
    ///
    /// The anchor's own block is moved to `-1e4` before `phi` (and masked out after), so a
    /// `phi` that overflows on large positive scores (`exp`) cannot turn it into NaN.
    pub fn negative_mean(&self, phi: impl FnOnce(Tensor<3>) -> Tensor<3>) -> Tensor<1> {
        let rows = self.batch * self.anchor_locations;
        let mask = self.negative_mask.clone().reshape([rows, self.batch, 1]);
        let only_negatives = self.all.clone() * mask.clone() + (mask - 1.0) * 1e4;
        (phi(only_negatives).sum_dim(2).reshape([rows, self.batch]) * self.negative_mask.clone())
            .sum()
            .div_scalar(self.negative_count() as f64)
    }
}

/// `log(1 + exp(x))`, stable for any `x`.
pub fn softplus<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clone().clamp_min(0.0) + x.abs().neg().exp().log1p()
}
