//! The products of the fused convolution: samples in groups, one product per group, forward
//! and backward.

use super::unfold::Unfold;
use super::{Dims, with_scratch};
use crate::host::{Operand, Recycled, Store, matmul, matmul_strided, zeros};
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

/// Values of the column block that a single-sample product unfolds and multiplies at a time
/// (1 MiB): a sample's columns in 3D are 8-32 MiB, and unfolding them whole, then reading them
/// back to pack and multiply, ran at memory speed; a block is multiplied while it is in cache.
pub(super) const BLOCK_VALUES: usize = 1 << 18;

/// [`BLOCK_VALUES`], lowered by a test to cover several blocks per sample (any block size
/// gives the same numbers up to rounding, so other threads reading it meanwhile are unaffected).
pub(super) static BLOCK_LIMIT: AtomicUsize = AtomicUsize::new(BLOCK_VALUES);

/// The column blocks of one sample with `k` rows: runs of whole output lines of about
/// [`BLOCK_LIMIT`] values each.
#[derive(Debug, Clone, Copy)]
struct Blocks {
    /// Columns per output line, output lines per sample, lines per block.
    line: usize,
    lines: usize,
    per_block: usize,
}

impl Blocks {
    fn new(unfold: &Unfold, k: usize) -> Blocks {
        let (line, lines) = (unfold.line_len(), unfold.lines());
        let per_block = (BLOCK_LIMIT.load(Relaxed) / (k * line).max(1)).clamp(1, lines.max(1));
        Blocks {
            line,
            lines,
            per_block,
        }
    }

    /// Columns of the largest block.
    fn max_columns(&self) -> usize {
        self.per_block * self.line
    }

    /// Every block: its output lines, its first column and its number of columns.
    fn iter(self) -> impl Iterator<Item = (std::ops::Range<usize>, usize, usize)> {
        (0..self.lines).step_by(self.per_block).map(move |l0| {
            let l1 = (l0 + self.per_block).min(self.lines);
            (l0..l1, l0 * self.line, (l1 - l0) * self.line)
        })
    }
}

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
        wt: &std::sync::OnceLock::new(),
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
    /// The weights transposed, `[K, O]`, made by the first single-sample backward that needs
    /// them (grouped samples and the forward do not).
    wt: &'a std::sync::OnceLock<Vec<f32>>,
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
        ..
    } = *ctx;
    let (k, p, o, len) = (d.k(), d.p(), d.c_out, d.in_len());
    let xs = &x[first * len..(first + n) * len];
    let wm = Operand::rows(w, k);
    if d.direct() {
        // The columns are the inputs themselves: Y^T [O, n] = W x X^T, written transposed.
        let xt = Operand::transposed(xs, k);
        matmul_strided(yg, (1, o), (o, n, k), wm, xt, Store::SET.threads(parallel));
        return;
    }
    if n == 1 {
        forward_sample(ctx, xs, cols, yg);
        return;
    }
    // Several samples: their columns side by side, the product to scratch, its [O, n P] rows
    // moved to [n, O, P].
    let np = n * p;
    let out_len = o * np;
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
        let cm = Operand::rows(cols, np);
        matmul(out, (o, np, k), wm, cm, Store::SET.threads(parallel));
        for (sample, group) in regrouped_rows(n, o, p) {
            yg[sample..sample + p].copy_from_slice(&out[group..group + p]);
        }
    });
}

/// One sample's output `yg` `[O, P]`, unfolded and multiplied a block of output lines at a
/// time: `Y^T [b, O] = cols_b^T [b, K] x W^T [K, O]` for each block of `b` columns, written
/// transposed into its columns of `yg`. In this orientation the product reads the weights as
/// they are and the block (in cache) as its left operand, so neither the weights nor the
/// sample's whole columns are packed once per block. With `kept`, the columns are unfolded
/// into it (`[K, P]`, for the backward) instead of a scratch block.
fn forward_sample(ctx: &Ctx<'_>, x: &[f32], mut kept: Option<&mut [f32]>, yg: &mut [f32]) {
    let (d, unfold) = (ctx.d, ctx.unfold);
    let (k, p, o) = (d.k(), d.p(), d.c_out);
    let blocks = Blocks::new(unfold, k);
    let scratch = if kept.is_some() {
        0
    } else {
        k * blocks.max_columns()
    };
    let w_t = Operand::transposed(ctx.w, k);
    unfold.with_sample(x, |xp| {
        with_scratch(scratch, |scratch| {
            for (lines, c0, b) in blocks.iter() {
                let (block, ld): (&mut [f32], usize) = match kept.as_deref_mut() {
                    Some(all) => (&mut all[c0..], p),
                    None => (&mut scratch[..k * b], b),
                };
                unfold.gather_lines(xp, block, ld, 0, lines);
                let lhs = Operand::transposed(block, ld);
                matmul_strided(
                    &mut yg[c0..],
                    (1, p),
                    (b, o, k),
                    lhs,
                    w_t,
                    Store::SET.threads(ctx.parallel),
                );
            }
        });
    });
}

/// `w` `[rows, cols]` transposed, `[cols, rows]`.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    transpose_sum(&[w], rows, cols)
}

/// The element-wise sum of `parts` (each `[rows, cols]`, added in the order given, as
/// [`crate::host::sum_in_order`] adds them) transposed, `[cols, rows]`, in one pass: the weight gradient's
/// partial sums and its transpose at the end of a convolution's backward. Spread over rayon's
/// threads by runs of output rows above `PARALLEL_VALUES`; the values do not depend on it.
pub(super) fn transpose_sum(parts: &[&[f32]], rows: usize, cols: usize) -> Vec<f32> {
    // Sixteen source rows at a time: sixteen sequential reads per part, one contiguous run of
    // writes.
    const ROWS: usize = 16;
    const PARALLEL_VALUES: usize = 1 << 16;
    let len = rows * cols;
    let mut t: Vec<f32> = Vec::with_capacity(len);
    let run = |c0: usize, out: &mut [std::mem::MaybeUninit<f32>]| {
        for r0 in (0..rows).step_by(ROWS) {
            let r1 = (r0 + ROWS).min(rows);
            for (i, line) in out.chunks_mut(rows).enumerate() {
                let c = c0 + i;
                for (r, v) in (r0..r1).zip(&mut line[r0..r1]) {
                    let mut sum = parts[0][r * cols + c];
                    for part in &parts[1..] {
                        sum += part[r * cols + c];
                    }
                    v.write(sum);
                }
            }
        }
    };
    let out = &mut t.spare_capacity_mut()[..len];
    if parts.is_empty() {
        out.fill(std::mem::MaybeUninit::new(0.0));
    } else if len < PARALLEL_VALUES || rows == 0 {
        run(0, out);
    } else {
        // Sixteen output rows (source columns) a piece.
        out.par_chunks_mut(ROWS * rows)
            .enumerate()
            .for_each(|(i, piece)| run(i * ROWS, piece));
    }
    // SAFETY: every one of the `len` values was written above.
    unsafe { t.set_len(len) };
    t
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
    let wt = std::sync::OnceLock::new();
    if want_dx && g.size == 1 && !d.direct() {
        // Made here, on every thread, rather than by the first sample that needs it while the
        // other threads wait for it.
        let _ = wt.set(transpose(w, o, k));
    }
    let ctx = Ctx {
        x,
        w,
        d,
        unfold: &unfold,
        wt: &wt,
        parallel: !g.spread,
    };
    // dW partial sums, one per run of groups, added in a fixed order (deterministic), each
    // transposed ([K, O]): see `backward_group`.
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
    let parts: Vec<&[f32]> = partials.iter().map(|p| &p[..]).collect();
    let dw = want_dw.then(|| transpose_sum(&parts, k, o));
    (dx, dw)
}

/// One group's share of the gradients: adds `dY_g cols_g^T` to `dw`, which holds the weight
/// gradient transposed (`[K, O]`), and writes the group's input gradient `dxg`
/// `[n, C, D, H, W]`.
///
/// The weight gradient is written transposed so that its product runs with `O` as the rows
/// gemm vectorises over: gemm then packs `dY_g` (`O x n P` values, read across its rows) and
/// reads the columns as they are, instead of packing the columns (`K x n P` values, 8-32 times
/// more, also read across their rows). One transpose of `[K, O]` per convolution replaces it.
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
        ..
    } = *ctx;
    let (k, p, o, len) = (d.k(), d.p(), d.c_out, d.in_len());
    let dys = &dy[first * o * p..(first + n) * o * p];
    let xs = &x[first * len..(first + n) * len];
    if d.direct() {
        // dW += dY_g^T [O, n] x X_g [n, K]; dX_g [n, K] = dY_g [n, O] x W [O, K].
        if let Some(dw) = dw {
            let (dyt, xm) = (Operand::transposed(dys, o), Operand::rows(xs, k));
            add_weight_gradient(dw, (o, k, n), dyt, xm, parallel);
        }
        if let Some(dxg) = dxg {
            let (dym, wm) = (Operand::rows(dys, o), Operand::rows(w, k));
            matmul(dxg, (n, k, o), dym, wm, Store::SET.threads(parallel));
        }
        return;
    }
    if n == 1 {
        backward_sample(ctx, xs, dys, kept, dw, dxg);
        return;
    }
    let np = n * p;
    let gather = o * np;
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
        for (sample, group) in regrouped_rows(n, o, p) {
            dyg[group..group + p].copy_from_slice(&dys[sample..sample + p]);
        }
        let dyg: &[f32] = dyg;
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
            add_weight_gradient(dw, (o, k, np), dym, colst, parallel);
        }
        if let Some(dxg) = dxg {
            // dcols [K, n P] = W^T [K, O] x dY_g, folded back onto each sample's input.
            let wt = Operand::transposed(w, k);
            matmul(dcols, (k, np, o), wt, dym, Store::SET.threads(parallel));
            for b in 0..n {
                unfold.col2im(dcols, np, b * p, &mut dxg[b * len..(b + 1) * len]);
            }
        }
    });
}

/// `dwt [K, O] += (dY [O, n] x cols [n, K])^T`: the weight gradient's product, stored
/// transposed (see [`backward_group`]).
fn add_weight_gradient(
    dwt: &mut [f32],
    (o, k, n): (usize, usize, usize),
    dy: Operand<'_>,
    cols: Operand<'_>,
    parallel: bool,
) {
    matmul_strided(
        dwt,
        (1, o),
        (o, k, n),
        dy,
        cols,
        Store::ADD.threads(parallel),
    );
}

/// One sample's share of the gradients, a block of output lines at a time as in
/// [`forward_sample`]: `dW += dY_b cols_b^T` (the block's columns kept from the forward or
/// unfolded again) and `dcols_b = (dY_b^T W)^T`, written transposed into a scratch block and
/// folded onto the sample's input gradient `dxg` `[C, D, H, W]`.
fn backward_sample(
    ctx: &Ctx<'_>,
    x: &[f32],
    dy: &[f32],
    kept: Option<&[f32]>,
    mut dw: Option<&mut [f32]>,
    dxg: Option<&mut [f32]>,
) {
    let (d, unfold, parallel) = (ctx.d, ctx.unfold, ctx.parallel);
    let (k, p, o) = (d.k(), d.p(), d.c_out);
    let blocks = Blocks::new(unfold, k);
    let recompute = dw.is_some() && kept.is_none();
    let block_len = k * blocks.max_columns();
    let scratch = block_len * (usize::from(recompute) + usize::from(dxg.is_some()));
    // Every block: the weight gradient from its columns, then its column gradient onto `dxp`.
    let blocks = |xp: Option<&[f32]>, mut dxp: Option<&mut [f32]>, dw: &mut Option<&mut [f32]>| {
        with_scratch(scratch, |scratch| {
            let (cols_buf, dcols) = scratch.split_at_mut(if recompute { block_len } else { 0 });
            for (lines, c0, b) in blocks.iter() {
                let dyb = &dy[c0..];
                if let Some(dw) = dw.as_deref_mut() {
                    let (cols, ld): (&[f32], usize) = match (kept, xp) {
                        (Some(all), _) => (&all[c0..], p),
                        (None, Some(xp)) => {
                            unfold.gather_lines(xp, &mut cols_buf[..k * b], b, 0, lines.clone());
                            (&cols_buf[..k * b], b)
                        }
                        (None, None) => unreachable!("the sample is given when recomputing"),
                    };
                    // dW [O, K] += dY_b [O, b] x cols_b^T [b, K], stored as [K, O]
                    let (lhs, rhs) = (Operand::rows(dyb, p), Operand::transposed(cols, ld));
                    add_weight_gradient(dw, (o, k, b), lhs, rhs, parallel);
                }
                if let Some(dxp) = dxp.as_deref_mut() {
                    // dcols_b^T [b, K] = dY_b^T [b, O] x W [O, K], written as [K, b].
                    let dcols = &mut dcols[..k * b];
                    let wt = ctx.wt.get_or_init(|| transpose(ctx.w, o, k));
                    let (lhs, rhs) = (Operand::transposed(dyb, p), Operand::transposed(wt, o));
                    let store = Store::SET.threads(parallel);
                    matmul_strided(dcols, (1, b), (b, k, o), lhs, rhs, store);
                    unfold.scatter_lines(dcols, b, 0, lines, dxp);
                }
            }
        });
    };
    let with_dx = |xp: Option<&[f32]>, dw: &mut Option<&mut [f32]>| match dxg {
        Some(dxg) => unfold.fold_sample(dxg, |dxp| blocks(xp, Some(dxp), dw)),
        None => blocks(xp, None, dw),
    };
    if recompute {
        unfold.with_sample(x, |xp| with_dx(Some(xp), &mut dw));
    } else {
        with_dx(None, &mut dw);
    }
}
