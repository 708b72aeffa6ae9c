//! InfoNCE fused into one operation on the CPU backend (`flex`), for the objectives of
//! `mmssl-objectives`.
//!
//! The generic path (`mmssl_objectives::Scores` + `Estimator::loss`)
//! builds the loss from about fifteen tensor operations over the `[B L_a, B L_t]` score matrix,
//! each a pass over memory forward and again backward (and burn's autodiff recomputes `tanh` in
//! its backward). On the CPU that elementwise traffic, not the score matrix product, dominated
//! the objective. Here the forward is one matrix product and one pass per row that computes
//! the clipped scores, the log-sum-exp over the negatives, the softplus over the positives and
//! the penalty, and, when gradients are needed, the derivative of the loss with respect to every
//! raw score; the backward is two matrix products. Terms that contrast several anchor sets
//! against the same targets run as one operation, the sets stacked along the score rows.
//!
//! With `P = B L_a L_t` positives, raw scores `r = s a t^T`, clipped scores
//! `S = c tanh(r / c)`, `lse_i = log sum_{j in neg(i)} e^{S_ij}` and
//! `w_i = (1/P) sum_{j in pos(i)} sigmoid(lse_i - S_ij)`:
//!
//! - loss `= (1/P) sum_i sum_{j in pos(i)} softplus(lse_i - S_ij)`,
//!   penalty `= lambda mean(r^2)`;
//! - `dloss/dS_ij = w_i e^{S_ij - lse_i}` for a negative and
//!   `-(1/P) sigmoid(lse_i - S_ij)` for a positive; `dS/dr = 1 - (S/c)^2`;
//!   `dpenalty/dr = 2 lambda r / (M N)`;
//! - with `D = g_loss dloss/dr + g_penalty dpenalty/dr`: `da = s D t`, `dt = s D^T a`.
//!
//! Values agree with the generic path to float rounding (tested); other backends (wgpu, CUDA)
//! keep the generic path, whose operations their compilers fuse.

use crate::host::{
    AdFlex, AdTensor, HostTensor, Operand, Recycled, Store, autodiff_primitive, matmul,
    plain_primitive, sum_in_order, zeros,
};
use burn::tensor::Tensor;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;
use std::sync::Arc;

mod rows;

use rows::{RowConsts, row};

/// The shape and constants of one InfoNCE term.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Embedding dimension `d` (columns of the anchors and targets).
    pub dim: usize,
    /// Anchor locations per sample.
    pub anchor_locations: usize,
    /// Target locations per sample.
    pub target_locations: usize,
    /// Critic scale `s` (raw score = `s a . t`).
    pub scale: f32,
    /// Clipping constant `c`, if any.
    pub clip: Option<f32>,
    /// Penalty coefficient `lambda` on the mean squared raw score.
    pub penalty: f32,
    /// Anchor sets stacked along the rows (terms sharing the targets, each `[B L_a, d]`):
    /// each has its own loss and penalty.
    pub sets: usize,
}

/// InfoNCE losses and penalties of `layout.sets` anchor sets stacked in `a`
/// `[sets B L_a, d]` against targets `t` `[B, d, L_t]` (the feature maps' own layout: each
/// sample's targets are a `[d, L_t]` block) as a `[2 sets]` tensor
/// `[loss_0, penalty_0, loss_1, ...]`, when both live on the CPU backend (with or without
/// autodiff); `None` otherwise (the caller takes the generic path). The sets share one score
/// product (and one transpose of the targets) forward and two backward.
pub fn infonce(a: &Tensor<2>, t: &Tensor<3>, layout: Layout) -> Option<Tensor<1>> {
    if let (Some(pa), Some(pt)) = (autodiff_primitive(a), autodiff_primitive(t)) {
        return Some(Tensor::from_primitive::<AdFlex>(tracked(pa, pt, layout)?));
    }
    let a = HostTensor::new(&plain_primitive(a)?)?;
    let t = HostTensor::new(&plain_primitive(t)?)?;
    let t_rows = target_rows(t.values(), layout.dim, layout.target_locations);
    let (out, _) = forward(a.values(), &t_rows, layout, false);
    Some(Tensor::from_primitive::<Flex>(out))
}

/// Targets `[B, d, L_t]` as rows `[B L_t, d]` (a transpose per sample, samples in parallel),
/// for the score products.
fn target_rows(t: &[f32], dim: usize, lt: usize) -> Recycled {
    // Overwritten whole: a recycled buffer needs no zeroing.
    let mut rows = Recycled::take(t.len());
    rows.par_chunks_mut(lt * dim)
        .zip(t.par_chunks(dim * lt))
        .for_each(|(rows, block)| {
            for (k, channel) in block.chunks(lt).enumerate() {
                for (l, &v) in channel.iter().enumerate() {
                    rows[l * dim + k] = v;
                }
            }
        });
    rows
}

/// Target rows per piece of the anchor gradient's inner dimension (a fixed size, so the
/// partial products are added in the same order whatever the number of threads).
const K_PIECE: usize = 1024;

/// `dpenalty/dr = kappa r` for the penalty `lambda mean(r^2)` over an `[M, N]` score matrix.
fn penalty_slope(penalty: f32, m: usize, n: usize) -> f32 {
    2.0 * penalty / (m * n) as f32
}

#[derive(Debug)]
struct FusedInfoNce;

/// What the backward needs: the inputs and the two `[M, N]` derivative matrices.
#[derive(Debug, Clone)]
struct Saved {
    /// Anchors, row-major `[M, d]`.
    a: HostTensor,
    /// Targets as rows `[N, d]` (`N = B L_t`).
    t_rows: Arc<Recycled>,
    /// The targets' shape `[B, d, L_t]`.
    t_shape: burn::tensor::Shape,
    /// `dloss/dr + dpenalty/dr`, row-major `[M, N]`.
    dloss: Arc<Recycled>,
    /// `r`, row-major `[M, N]` (`dpenalty/dr` is `2 lambda r / (M N)`).
    raw: Arc<Recycled>,
    layout: Layout,
}

impl Backward<Flex, 2> for FusedInfoNce {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        let Some(g) = HostTensor::new(&grads.consume::<Flex>(&ops.node)) else {
            return;
        };
        let (a, t, g) = (s.a.values(), &s.t_rows[..], g.values());
        let (m, n) = (a.len() / s.layout.dim, t.len() / s.layout.dim);
        let per_set = m / s.layout.sets;
        // D = g_loss dloss/dr + g_penalty dpenalty/dr, per set. The forward stored
        // E = dloss/dr + dpenalty/dr, so D = g_loss E for a set whose two outputs have the same
        // gradient (the objectives sum them): then g_loss scales the set's rows of the small
        // factors (the anchors, the anchor gradient) instead of D. Otherwise that set's rows of
        // D become g_loss E + (g_penalty - g_loss) dpenalty/dr, in place, with factor 1.
        let mut d = Arc::try_unwrap(s.dloss).unwrap_or_else(|shared| {
            let mut copy = Recycled::take(shared.len());
            copy.copy_from_slice(&shared);
            copy
        });
        let kappa = penalty_slope(s.layout.penalty, per_set, n);
        let factors: Vec<f32> = g
            .chunks_exact(2)
            .map(|g| if g[0] == g[1] { g[0] } else { 1.0 })
            .collect();
        for (set, g) in g.chunks_exact(2).enumerate() {
            let (g_loss, g_pen) = (g[0], g[1]);
            if g_loss == g_pen {
                continue;
            }
            let rows = set * per_set * n..(set + 1) * per_set * n;
            let shift = (g_pen - g_loss) * kappa;
            const PIECE: usize = 1 << 14;
            d[rows.clone()]
                .par_chunks_mut(PIECE)
                .zip(s.raw[rows].par_chunks(PIECE))
                .for_each(|(d, r)| {
                    for (d, r) in d.iter_mut().zip(r) {
                        *d = g_loss * *d + shift * r;
                    }
                });
        }
        let (scale, dim, lt) = (s.layout.scale, s.layout.dim, s.layout.target_locations);
        // The factor of element i of an [M, d] matrix (its row's set).
        let row_factor = |i: usize| factors[i / (per_set * dim)];
        let [pa, pt] = ops.parents;
        if let Some(node) = pa {
            // da = s D t: [M, N] x [N, d], the long inner dimension cut into fixed pieces
            // multiplied in parallel (an [M, d] product is one block for gemm's own
            // threading) and added in order.
            let pieces = n.div_ceil(K_PIECE);
            let partials: Vec<Vec<f32>> = (0..pieces)
                .into_par_iter()
                .map(|p| {
                    let (k0, k1) = (p * K_PIECE, ((p + 1) * K_PIECE).min(n));
                    let mut part = vec![0.0f32; m * dim];
                    let dm = Operand::rows(&d[k0..], n);
                    let tm = Operand::rows(&t[k0 * dim..], dim);
                    matmul(
                        &mut part,
                        (m, dim, k1 - k0),
                        dm,
                        tm,
                        Store::SET.scaled(scale),
                    );
                    part
                })
                .collect();
            let mut da = sum_in_order(partials, m * dim);
            for (i, v) in da.iter_mut().enumerate() {
                *v *= row_factor(i);
            }
            grads.register::<Flex>(node.id, HostTensor::from_vec(da, [m, dim]).into_flex());
        }
        if let Some(node) = pt {
            // dT_b [d, L_t] = s a'^T [d, M] x D[:, block b] [M, L_t], one block per sample,
            // with a' the anchors scaled by their set's factor.
            let scaled: Vec<f32> = a
                .iter()
                .enumerate()
                .map(|(i, &v)| v * row_factor(i))
                .collect();
            let a = &scaled[..];
            let mut dt = zeros(n * dim);
            dt.par_chunks_mut(dim * lt)
                .enumerate()
                .for_each(|(b, dtb)| {
                    let (at, db) = (Operand::transposed(a, dim), Operand::rows(&d[b * lt..], n));
                    matmul(dtb, (dim, lt, m), at, db, Store::SET.scaled(scale));
                });
            let dt = HostTensor::from_vec(dt, s.t_shape.clone()).into_flex();
            grads.register::<Flex>(node.id, dt);
        }
    }
}

fn tracked(a: AdTensor, t: AdTensor, layout: Layout) -> Option<AdTensor> {
    let (ah, th) = (
        HostTensor::new(a.primitive())?,
        HostTensor::new(t.primitive())?,
    );
    let kind = FusedInfoNce
        .prepare::<NoCheckpointing>([a.node(), t.node()])
        .compute_bound()
        .stateful();
    let t_rows = target_rows(th.values(), layout.dim, layout.target_locations);
    Some(match kind {
        OpsKind::Tracked(prep) => {
            let (out, saved) = forward(ah.values(), &t_rows, layout, true);
            let (dloss, raw) = saved.expect("derivatives were requested");
            let state = Saved {
                a: ah,
                t_rows: Arc::new(t_rows),
                t_shape: th.shape().clone(),
                dloss: Arc::new(dloss),
                raw: Arc::new(raw),
                layout,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(ah.values(), &t_rows, layout, false).0),
    })
}

/// `dloss/dr + dpenalty/dr` and `r`, row-major `[M, N]`.
type Derivatives = (Recycled, Recycled);

/// Losses and penalties `[2 sets]` of the anchor sets stacked in `a` `[M, d]` against target
/// rows `t` `[N, d]`, and with `derivatives` the matrices `dloss/dr + dpenalty/dr` and `r`.
fn forward(
    a: &[f32],
    t: &[f32],
    layout: Layout,
    derivatives: bool,
) -> (FlexTensor, Option<Derivatives>) {
    let dim = layout.dim;
    let (m, n) = (a.len() / dim, t.len() / dim);
    // r = s a t^T: [M, d] x [d, N].
    // Both matrices are overwritten whole: recycled buffers need no zeroing.
    let mut raw = Recycled::take(m * n);
    let (lhs, rhs) = (Operand::rows(a, dim), Operand::transposed(t, dim));
    matmul(
        &mut raw,
        (m, n, dim),
        lhs,
        rhs,
        Store::SET.scaled(layout.scale).threads(true),
    );
    let Layout {
        anchor_locations: la,
        target_locations: lt,
        clip,
        ..
    } = layout;
    // Each set is B L_a rows; its row i belongs to sample (i mod B L_a) / L_a.
    let per_set = m / layout.sets;
    let positives = (per_set * lt) as f32;
    let kappa = penalty_slope(layout.penalty, per_set, n);
    let sample = |i: usize| (i % per_set) / la;
    let consts = RowConsts {
        lt,
        clip,
        positives,
        kappa,
    };
    let mut dloss = Recycled::take(if derivatives { m * n } else { 0 });
    let rows: Vec<(f64, f64)> = if derivatives {
        raw.par_chunks(n)
            .zip(dloss.par_chunks_mut(n))
            .enumerate()
            .map_init(Vec::new, |scratch, (i, (r, d))| {
                row(r, Some(d), scratch, sample(i), consts)
            })
            .collect()
    } else {
        raw.par_chunks(n)
            .enumerate()
            .map_init(Vec::new, |scratch, (i, r)| {
                row(r, None, scratch, sample(i), consts)
            })
            .collect()
    };
    let mut out = Vec::with_capacity(2 * layout.sets);
    for set in rows.chunks(per_set.max(1)) {
        let (loss, square): (f64, f64) = set
            .iter()
            .fold((0.0, 0.0), |(l, q), (rl, rq)| (l + rl, q + rq));
        out.push((loss / positives as f64) as f32);
        out.push((layout.penalty as f64 * square / (per_set * n) as f64) as f32);
    }
    let out = HostTensor::from_vec(out, [2 * layout.sets]).into_flex();
    (out, derivatives.then_some((dloss, raw)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn flex_tensors_take_the_fused_path() {
        let layout = Layout {
            dim: 8,
            anchor_locations: 1,
            target_locations: 3,
            scale: 0.5,
            clip: Some(20.0),
            penalty: 0.04,
            sets: 1,
        };
        for device in [Device::flex(), Device::flex().autodiff()] {
            let a = Tensor::<2>::random([4, 8], Distribution::Default, &device);
            let t = Tensor::<3>::random([4, 8, 3], Distribution::Default, &device);
            let out = infonce(&a, &t, layout).expect("flex is fused");
            assert_eq!(out.dims(), [2]);
        }
    }
}
