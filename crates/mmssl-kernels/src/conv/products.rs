//! The products of the fused convolution: samples in groups, one product per group, forward
//! and backward.

use super::unfold::Unfold;
use super::{Dims, with_scratch};
use crate::host::{Operand, Recycled, matmul, matmul_strided, sum_in_order, zeros};
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Columns of all samples are kept from the forward for the backward up to this many values
/// (32 MiB per layer: every 2D layer); beyond, the backward recomputes them.
pub(super) const KEEP_COLUMNS: usize = 8 << 20;

/// [`KEEP_COLUMNS`], lowered by a test to cover the recomputing backward (either path gives the
/// same numbers, so other threads reading it meanwhile are unaffected).
pub(super) static KEEP_LIMIT: AtomicUsize = AtomicUsize::new(KEEP_COLUMNS);

/// Output locations one product aims to cover. Samples with fewer locations are multiplied
/// together in groups: the product's cost of packing the weights is then paid once per group
/// instead of once per sample, which dominated the thin per-sample products of the deeper
/// layers (16 locations in the third 2D layer, 1 in the last). 128 and 512 measured the same.
pub(super) const GROUP_COLUMNS: usize = 256;

/// How a batch is cut into groups of consecutive samples, one product per group.
#[derive(Debug, Clone, Copy)]
pub(super) struct Groups {
    /// Samples per group (the last group may have fewer).
    size: usize,
    /// Number of groups.
    count: usize,
    /// Groups are spread over threads, each product on one thread; otherwise (fewer groups
    /// than threads) the groups run in turn and each product uses every thread.
    spread: bool,
    /// Groups per thread when spread (contiguous runs, so sums have a fixed order).
    per_thread: usize,
}

impl Groups {
    pub(super) fn new(d: &Dims) -> Groups {
        let threads = rayon::current_num_threads().max(1);
        let size = GROUP_COLUMNS
            .div_ceil(d.p().max(1))
            .min(d.batch.div_ceil(threads))
            .max(1);
        let count = d.batch.div_ceil(size);
        let spread = count >= threads;
        let per_thread = if spread {
            count.div_ceil(threads)
        } else {
            count
        }
        .max(1);
        Groups {
            size,
            count,
            spread,
            per_thread,
        }
    }

    /// First sample and number of samples of group `i`.
    pub(super) fn range(&self, i: usize, batch: usize) -> (usize, usize) {
        let first = i * self.size;
        (first, self.size.min(batch - first))
    }
}

/// The output `[B, O, P]` of `x` `[B, C, D, H, W]` with weights `w` `[O, K]`, and with `keep`
/// (and at most [`KEEP_LIMIT`] values) the columns of every group (`[K, size P]` each, one
/// after the other).
pub(super) fn forward(x: &[f32], w: &[f32], d: &Dims, keep: bool) -> (Vec<f32>, Option<Recycled>) {
    let (k, p, o) = (d.k(), d.p(), d.c_out);
    let g = Groups::new(d);
    let mut y = zeros(d.batch * o * p);
    let keep = keep && !d.direct() && d.batch * k * p <= KEEP_LIMIT.load(Relaxed);
    // Recycled: the unfolding writes every value, so stale contents do not matter.
    let mut cols = keep.then(|| Recycled::take(d.batch * k * p));
    let unfold = Unfold::new(d);
    let ctx = Ctx {
        x,
        w,
        d,
        unfold: &unfold,
        parallel: !g.spread,
    };
    let work = |(i, (yg, cols)): (usize, (&mut [f32], Option<&mut [f32]>))| {
        let (first, n) = g.range(i, d.batch);
        forward_group(&ctx, first, n, cols, yg);
    };
    let y_parts = y.chunks_mut(g.size * o * p);
    let col_parts: Vec<Option<&mut [f32]>> = match cols.as_mut() {
        Some(c) => c.chunks_mut(g.size * k * p).map(Some).collect(),
        None => (0..g.count).map(|_| None).collect(),
    };
    let parts: Vec<_> = y_parts.zip(col_parts).enumerate().collect();
    if g.spread {
        parts.into_par_iter().for_each(work);
    } else {
        parts.into_iter().for_each(work);
    }
    (y, cols)
}

/// What every group of one convolution shares.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    /// Input `[B, C, D, H, W]`.
    x: &'a [f32],
    /// Weights `[O, K]`.
    w: &'a [f32],
    d: &'a Dims,
    unfold: &'a Unfold,
    /// Whether each product uses every thread (fewer groups than threads).
    parallel: bool,
}

/// One group's output: `yg` `[n, O, P]` for samples `first..first + n`; the group's columns go
/// to `cols` when given (kept for the backward), else to scratch.
pub(super) fn forward_group(
    ctx: &Ctx<'_>,
    first: usize,
    n: usize,
    cols: Option<&mut [f32]>,
    yg: &mut [f32],
) {
    let Ctx {
        x,
        w,
        d,
        unfold,
        parallel,
    } = *ctx;
    let (k, p, o, len) = (d.k(), d.p(), d.c_out, d.in_len());
    let xs = &x[first * len..(first + n) * len];
    let wm = Operand::rows(w, k);
    if d.direct() {
        // The columns are the inputs themselves: Y^T [O, n] = W x X^T, written transposed.
        let xt = Operand::transposed(xs, k);
        matmul_strided(yg, (1, o), (o, n, k), wm, xt, 1.0, false, parallel);
        return;
    }
    let np = n * p;
    let out_len = if n == 1 { 0 } else { o * np };
    let scratch_cols = if cols.is_some() { 0 } else { k * np };
    with_scratch(scratch_cols + out_len, |scratch| {
        let (scratch_cols, out) = scratch.split_at_mut(scratch_cols);
        let cols = match cols {
            Some(c) => c,
            None => scratch_cols,
        };
        for b in 0..n {
            unfold.im2col(&xs[b * len..(b + 1) * len], cols, np, b * p);
        }
        // One sample: the product is its output; several: the product goes to scratch and
        // its [O, n P] rows are moved to [n, O, P].
        let dst: &mut [f32] = if n == 1 { &mut *yg } else { &mut *out };
        let cm = Operand::rows(cols, np);
        matmul(dst, (o, np, k), wm, cm, 1.0, false, parallel);
        if n > 1 {
            for (sample, group) in regrouped_rows(n, o, p) {
                yg[sample..sample + p].copy_from_slice(&out[group..group + p]);
            }
        }
    });
}

/// The `(offset in [n, O, P], offset in [O, n P])` of every `P`-long row of `n` samples'
/// `[O, P]` blocks, between the per-sample layout and a group's side-by-side layout.
pub(super) fn regrouped_rows(n: usize, o: usize, p: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).flat_map(move |b| (0..o).map(move |c| ((b * o + c) * p, c * n * p + b * p)))
}

/// Gradients `(dx, dw)` (each when asked) from the upstream gradient `dy` `[B, O, P]`.
pub(super) fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    d: &Dims,
    kept: Option<&[f32]>,
    want_dx: bool,
    want_dw: bool,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (k, p, o, len) = (d.k(), d.p(), d.c_out, d.in_len());
    let g = Groups::new(d);
    let mut dx = want_dx.then(|| zeros(d.batch * len));
    let mut slots: Vec<Option<&mut [f32]>> = match dx.as_mut() {
        Some(dx) => dx.chunks_mut(g.size * len).map(Some).collect(),
        None => (0..g.count).map(|_| None).collect(),
    };
    let unfold = Unfold::new(d);
    let ctx = Ctx {
        x,
        w,
        d,
        unfold: &unfold,
        parallel: !g.spread,
    };
    // dW partial sums, one per run of groups, added in a fixed order (deterministic).
    let run = |(r, slots): (usize, &mut [Option<&mut [f32]>])| -> Vec<f32> {
        let mut dw = vec![0.0f32; if want_dw { o * k } else { 0 }];
        for (j, slot) in slots.iter_mut().enumerate() {
            let i = r * g.per_thread + j;
            let (first, n) = g.range(i, d.batch);
            let cols = kept.map(|c| &c[first * k * p..(first + n) * k * p]);
            let dw = want_dw.then_some(&mut dw[..]);
            backward_group(&ctx, dy, first, n, cols, dw, slot.as_deref_mut());
        }
        dw
    };
    let partials: Vec<Vec<f32>> = if g.spread {
        slots
            .par_chunks_mut(g.per_thread)
            .enumerate()
            .map(run)
            .collect()
    } else {
        slots
            .chunks_mut(g.per_thread)
            .enumerate()
            .map(run)
            .collect()
    };
    let dw = want_dw.then(|| sum_in_order(partials, o * k));
    (dx, dw)
}

/// One group's share of the gradients: adds `dY_g cols_g^T` to `dw` and writes the group's
/// input gradient `dxg` `[n, C, D, H, W]`.
pub(super) fn backward_group(
    ctx: &Ctx<'_>,
    dy: &[f32],
    first: usize,
    n: usize,
    kept: Option<&[f32]>,
    dw: Option<&mut [f32]>,
    dxg: Option<&mut [f32]>,
) {
    let Ctx {
        x,
        w,
        d,
        unfold,
        parallel,
    } = *ctx;
    let (k, p, o, len) = (d.k(), d.p(), d.c_out, d.in_len());
    let dys = &dy[first * o * p..(first + n) * o * p];
    let xs = &x[first * len..(first + n) * len];
    if d.direct() {
        // dW += dY_g^T [O, n] x X_g [n, K]; dX_g [n, K] = dY_g [n, O] x W [O, K].
        if let Some(dw) = dw {
            let dyt = Operand::transposed(dys, o);
            matmul(
                dw,
                (o, k, n),
                dyt,
                Operand::rows(xs, k),
                1.0,
                true,
                parallel,
            );
        }
        if let Some(dxg) = dxg {
            let (dym, wm) = (Operand::rows(dys, o), Operand::rows(w, k));
            matmul(dxg, (n, k, o), dym, wm, 1.0, false, parallel);
        }
        return;
    }
    let np = n * p;
    let gather = if n == 1 { 0 } else { o * np };
    let recompute = if dw.is_some() && kept.is_none() {
        k * np
    } else {
        0
    };
    let dcols = if dxg.is_some() { k * np } else { 0 };
    with_scratch(gather + recompute + dcols, |scratch| {
        let (dyg, rest) = scratch.split_at_mut(gather);
        let (cols_buf, dcols) = rest.split_at_mut(recompute);
        // dY_g as [O, n P]: the samples' [O, P] blocks side by side.
        let dyg: &[f32] = if n == 1 {
            dys
        } else {
            for (sample, group) in regrouped_rows(n, o, p) {
                dyg[group..group + p].copy_from_slice(&dys[sample..sample + p]);
            }
            dyg
        };
        let dym = Operand::rows(dyg, np);
        if let Some(dw) = dw {
            let cols: &[f32] = match kept {
                Some(c) => c,
                None => {
                    for b in 0..n {
                        unfold.im2col(&xs[b * len..(b + 1) * len], cols_buf, np, b * p);
                    }
                    cols_buf
                }
            };
            let colst = Operand::transposed(cols, np);
            matmul(dw, (o, k, np), dym, colst, 1.0, true, parallel);
        }
        if let Some(dxg) = dxg {
            // dcols [K, n P] = W^T [K, O] x dY_g, folded back onto each sample's input.
            let wt = Operand::transposed(w, k);
            matmul(dcols, (k, np, o), wt, dym, 1.0, false, parallel);
            for b in 0..n {
                unfold.col2im(dcols, np, b * p, &mut dxg[b * len..(b + 1) * len]);
            }
        }
    });
}
