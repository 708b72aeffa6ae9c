//! Convolutions of the DCGAN encoders as one operation on the CPU backend (`flex`).
//!
//! The input of each sample is unfolded into columns (`im2col`: `[C_in k^n, P]` for `P` output
//! locations) and the output is a matrix product with the weights `W [C_out, C_in k^n]`.
//! Consecutive samples are multiplied together in groups whose columns sit side by side
//! (`[K, g P]`, about 256 columns per group): one product per group packs the weights once,
//! where one product per sample spent more time packing than multiplying for the deeper layers
//! (16 locations per sample in the third 2D layer). A kernel that covers its whole unpadded
//! input (the last layer, `P = 1`) needs no unfolding: the inputs are the columns. Groups are
//! spread over threads, each product on one thread; with fewer groups than threads the
//! products themselves run in parallel.
//!
//! Backward: `dW = sum_g dY_g cols_g^T` and, when the input needs a gradient,
//! `dcols = W^T dY_g` folded back onto the input (`col2im`), instead of burn's
//! transposed-convolution loop. The columns are kept from the forward up to 32 MiB per layer
//! and recomputed beyond (3D). The unfolding of one input channel is computed once per group
//! and replayed for every channel and sample.
//!
//! Used for convolutions without bias, groups or dilation, with symmetric explicit (or no)
//! padding, on `f32`: the encoders' case. Anything else, and other backends, go to burn's
//! `Conv2d::forward` / `Conv3d::forward` unchanged. Values and gradients are tested against
//! burn's.

use crate::cpu::{
    AdFlex, AdTensor, HostTensor, Operand, Recycled, autodiff_primitive, matmul, matmul_strided,
    plain_primitive, sum_in_order, zeros,
};
use burn::nn::conv::{Conv2d, Conv3d};
use burn::nn::{PaddingConfig2d, PaddingConfig3d};
use burn::tensor::Tensor;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::Flex;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// `conv.forward(x)`, through the fused CPU convolution where it applies.
pub fn conv2d_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match try_conv2d(conv, &x) {
        Some(y) => y,
        None => conv.forward(x),
    }
}

/// `conv.forward(x)`, through the fused CPU convolution where it applies.
pub fn conv3d_forward(conv: &Conv3d, x: Tensor<5>) -> Tensor<5> {
    match try_conv3d(conv, &x) {
        Some(y) => y,
        None => conv.forward(x),
    }
}

fn try_conv2d(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(t, l, b, r) if t == b && l == r => Some([t, l]),
        _ => None,
    };
    let plain = conv.bias.is_none() && conv.groups == 1 && conv.dilation == [1, 1];
    if let (true, Some(p)) = (plain, padding) {
        let geometry = Geometry {
            kernel: [1, conv.kernel_size[0], conv.kernel_size[1]],
            stride: [1, conv.stride[0], conv.stride[1]],
            padding: [0, p[0], p[1]],
        };
        let [b, c, h, w] = x.dims();
        return apply(x, &conv.weight.val(), [b, c, 1, h, w], geometry);
    }
    None
}

fn try_conv3d(conv: &Conv3d, x: &Tensor<5>) -> Option<Tensor<5>> {
    let padding = match conv.padding {
        PaddingConfig3d::Valid => Some([0, 0, 0]),
        PaddingConfig3d::Explicit(d, h, w) => Some([d, h, w]),
        _ => None,
    };
    let plain = conv.bias.is_none() && conv.groups == 1 && conv.dilation == [1, 1, 1];
    if let (true, Some(padding)) = (plain, padding) {
        let geometry = Geometry {
            kernel: conv.kernel_size,
            stride: conv.stride,
            padding,
        };
        let [b, c, d, h, w] = x.dims();
        return apply(x, &conv.weight.val(), [b, c, d, h, w], geometry);
    }
    None
}

/// Kernel, stride and symmetric padding along (depth, height, width); 2D has depth 1.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
}

/// Sizes of one convolution: input `[B, C, D, H, W]`, output `[B, O, D', H', W']`.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    c_in: usize,
    input: [usize; 3],
    c_out: usize,
    output: [usize; 3],
    g: Geometry,
}

impl Dims {
    fn new(input: [usize; 5], c_out: usize, g: Geometry) -> Option<Dims> {
        let mut output = [0; 3];
        for a in 0..3 {
            let span = input[2 + a] + 2 * g.padding[a];
            if g.kernel[a] == 0 || g.stride[a] == 0 || span < g.kernel[a] {
                return None;
            }
            output[a] = (span - g.kernel[a]) / g.stride[a] + 1;
        }
        Some(Dims {
            batch: input[0],
            c_in: input[1],
            input: [input[2], input[3], input[4]],
            c_out,
            output,
            g,
        })
    }
    /// Rows of the columns: `C_in kd kh kw`.
    fn k(&self) -> usize {
        self.c_in * self.g.kernel.iter().product::<usize>()
    }
    /// Output locations per sample.
    fn p(&self) -> usize {
        self.output.iter().product()
    }
    /// Whether the kernel covers the whole unpadded input (one output location): a sample's
    /// columns are then its input values in order, and no unfolding is needed.
    fn direct(&self) -> bool {
        self.g.padding == [0, 0, 0] && self.g.kernel == self.input
    }
    /// Input values per sample.
    fn in_len(&self) -> usize {
        self.c_in * self.input.iter().product::<usize>()
    }
}

fn apply<const D: usize>(
    x: &Tensor<D>,
    weight: &Tensor<D>,
    input: [usize; 5],
    g: Geometry,
) -> Option<Tensor<D>> {
    let c_out = weight.dims()[0];
    let dims = Dims::new(input, c_out, g)?;
    let mut out_shape = vec![dims.batch, c_out];
    out_shape.extend_from_slice(&dims.output[3 - (D - 2)..]);
    if x.device().is_autodiff() {
        let (px, pw) = (autodiff_primitive(x)?, autodiff_primitive(weight)?);
        return Some(Tensor::from_primitive::<AdFlex>(tracked(
            px, pw, dims, out_shape,
        )?));
    }
    let px = HostTensor::new(&plain_primitive(x)?)?;
    let pw = HostTensor::new(&plain_primitive(weight)?)?;
    let (y, _) = forward(px.values(), pw.values(), &dims, false);
    Some(Tensor::from_primitive::<Flex>(
        HostTensor::from_vec(y, out_shape).into_flex(),
    ))
}

thread_local! {
    /// Per-thread column buffer, reused across samples, layers and steps (the columns of one
    /// 3D sample are tens of MB: allocating them each time cost page faults and zeroing).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer of `len` values (contents unspecified).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

#[derive(Debug)]
struct FusedConv;

#[derive(Debug, Clone)]
struct Saved {
    x: HostTensor,
    w: HostTensor,
    /// The columns of every group (`[K, size P]` each, one after the other), when small enough
    /// to keep.
    cols: Option<std::sync::Arc<Recycled>>,
    dims: Dims,
}

fn tracked(x: AdTensor, w: AdTensor, dims: Dims, out_shape: Vec<usize>) -> Option<AdTensor> {
    let xs = HostTensor::new(x.primitive())?;
    let ws = HostTensor::new(w.primitive())?;
    let kind = FusedConv
        .prepare::<NoCheckpointing>([x.node(), w.node()])
        .compute_bound()
        .stateful();
    let output = |y: Vec<f32>| HostTensor::from_vec(y, out_shape).into_flex();
    Some(match kind {
        OpsKind::Tracked(prep) => {
            let (y, cols) = forward(xs.values(), ws.values(), &dims, true);
            let saved = Saved {
                x: xs,
                w: ws,
                cols: cols.map(std::sync::Arc::new),
                dims,
            };
            prep.finish(saved, output(y))
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(output(forward(xs.values(), ws.values(), &dims, false).0))
        }
    })
}

impl Backward<Flex, 2> for FusedConv {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        let d = s.dims;
        let Some(dy) = HostTensor::new(&grads.consume::<Flex>(&ops.node)) else {
            return;
        };
        let [px, pw] = ops.parents;
        let kept = s.cols.as_deref().map(|c| &c[..]);
        let (dx, dw) = backward(
            s.x.values(),
            s.w.values(),
            dy.values(),
            &d,
            kept,
            px.is_some(),
            pw.is_some(),
        );
        if let (Some(node), Some(dw)) = (pw, dw) {
            let dw = HostTensor::from_vec(dw, s.w.shape().clone());
            grads.register::<Flex>(node.id, dw.into_flex());
        }
        if let (Some(node), Some(dx)) = (px, dx) {
            let dx = HostTensor::from_vec(dx, s.x.shape().clone());
            grads.register::<Flex>(node.id, dx.into_flex());
        }
    }
}

/// Columns of all samples are kept from the forward for the backward up to this many values
/// (32 MiB per layer: every 2D layer); beyond, the backward recomputes them.
const KEEP_COLUMNS: usize = 8 << 20;

/// [`KEEP_COLUMNS`], lowered by a test to cover the recomputing backward (either path gives the
/// same numbers, so other threads reading it meanwhile are unaffected).
static KEEP_LIMIT: AtomicUsize = AtomicUsize::new(KEEP_COLUMNS);

/// Output locations one product aims to cover. Samples with fewer locations are multiplied
/// together in groups: the product's cost of packing the weights is then paid once per group
/// instead of once per sample, which dominated the thin per-sample products of the deeper
/// layers (16 locations in the third 2D layer, 1 in the last). 128 and 512 measured the same.
const GROUP_COLUMNS: usize = 256;

/// How a batch is cut into groups of consecutive samples, one product per group.
#[derive(Debug, Clone, Copy)]
struct Groups {
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
    fn new(d: &Dims) -> Groups {
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
    fn range(&self, i: usize, batch: usize) -> (usize, usize) {
        let first = i * self.size;
        (first, self.size.min(batch - first))
    }
}

/// The output `[B, O, P]` of `x` `[B, C, D, H, W]` with weights `w` `[O, K]`, and with `keep`
/// (and at most [`KEEP_LIMIT`] values) the columns of every group (`[K, size P]` each, one
/// after the other).
fn forward(x: &[f32], w: &[f32], d: &Dims, keep: bool) -> (Vec<f32>, Option<Recycled>) {
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
struct Ctx<'a> {
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
fn forward_group(ctx: &Ctx<'_>, first: usize, n: usize, cols: Option<&mut [f32]>, yg: &mut [f32]) {
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
fn regrouped_rows(n: usize, o: usize, p: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).flat_map(move |b| (0..o).map(move |c| ((b * o + c) * p, c * n * p + b * p)))
}

/// Gradients `(dx, dw)` (each when asked) from the upstream gradient `dy` `[B, O, P]`.
fn backward(
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
fn backward_group(
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

thread_local! {
    /// Per-thread buffer for one zero-padded sample (or its gradient).
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The unfolding of samples into columns `[K, P]` within a column matrix. Each sample is first
/// copied into a zero-padded buffer, so that every column row is a plain strided read (no
/// padding cases, which as many one-value fills cost more than the reads); the reads of one
/// input channel are computed once per operation and replayed for every channel and sample.
struct Unfold {
    /// Offset in a padded channel of the first value each kernel row `(kz, ky, kx)` reads.
    kernel_rows: Vec<usize>,
    /// Output sizes `(D', H', W')`.
    output: [usize; 3],
    /// Padded-input strides between consecutive outputs along `(D', H', W')`.
    steps: [usize; 3],
    c_in: usize,
    /// Input sizes `(D, H, W)` and padded ones.
    input: [usize; 3],
    padded: [usize; 3],
    pad: [usize; 3],
}

impl Unfold {
    fn new(d: &Dims) -> Unfold {
        let [kd, kh, kw] = d.g.kernel;
        let [sd, sh, sw] = d.g.stride;
        let pad = d.g.padding;
        let padded = [0, 1, 2].map(|a| d.input[a] + 2 * pad[a]);
        let [_, ph, pw] = padded;
        let mut kernel_rows = Vec::with_capacity(kd * kh * kw);
        for kz in 0..kd {
            for ky in 0..kh {
                for kx in 0..kw {
                    kernel_rows.push((kz * ph + ky) * pw + kx);
                }
            }
        }
        Unfold {
            kernel_rows,
            output: d.output,
            steps: [sd * ph * pw, sh * pw, sw],
            c_in: d.c_in,
            input: d.input,
            padded,
            pad,
        }
    }

    fn padded_len(&self) -> usize {
        self.c_in * self.padded.iter().product::<usize>()
    }

    /// Calls `f(source offset, padded offset, length)` for every input row of one sample.
    fn rows_of(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [id, ih, iw] = self.input;
        let [pd, ph, pw] = self.padded;
        let [zd, zh, zw] = self.pad;
        for c in 0..self.c_in {
            for z in 0..id {
                for y in 0..ih {
                    let src = ((c * id + z) * ih + y) * iw;
                    let dst = ((c * pd + z + zd) * ph + y + zh) * pw + zw;
                    f(src, dst, iw);
                }
            }
        }
    }

    /// Runs `f` on this thread's zero-padded sample buffer, zeroed and sized for one padded
    /// sample.
    fn with_padded(&self, f: impl FnOnce(&mut [f32])) {
        PADDED.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            buf.resize(self.padded_len(), 0.0);
            f(&mut buf);
        });
    }

    /// Unfolds one sample `x` `[C, D, H, W]` into `cols`, a matrix of `ld` values per row, at
    /// column `col0`; every slot is written, so a reused buffer needs no clearing.
    fn im2col(&self, x: &[f32], cols: &mut [f32], ld: usize, col0: usize) {
        if self.pad == [0, 0, 0] {
            self.gather(x, cols, ld, col0);
            return;
        }
        self.with_padded(|buf| {
            self.rows_of(|src, dst, n| buf[dst..dst + n].copy_from_slice(&x[src..src + n]));
            self.gather(buf, cols, ld, col0);
        });
    }

    /// Calls `f(slot, read)` for every column slot of one sample (index into a column matrix of
    /// `ld` values per row, at column `col0`) with the index, in the sample's padded values,
    /// of the value the slot reads; each kernel row's slots are visited in order.
    #[inline(always)]
    fn pairs(&self, ld: usize, col0: usize, mut f: impl FnMut(usize, usize)) {
        let channel = self.padded.iter().product::<usize>();
        let [od, oh, ow] = self.output;
        let [zs, ys, xs] = self.steps;
        let rows = self.kernel_rows.len();
        for c in 0..self.c_in {
            for (r, &base) in self.kernel_rows.iter().enumerate() {
                let mut slot = (c * rows + r) * ld + col0;
                for z in 0..od {
                    for y in 0..oh {
                        let read = c * channel + base + z * zs + y * ys;
                        for x in 0..ow {
                            f(slot, read + x * xs);
                            slot += 1;
                        }
                    }
                }
            }
        }
    }

    /// The strided reads of [`Unfold::im2col`] from the (padded) sample `xp`.
    fn gather(&self, xp: &[f32], cols: &mut [f32], ld: usize, col0: usize) {
        self.pairs(ld, col0, |slot, read| cols[slot] = xp[read]);
    }

    /// Writes one sample's input gradient `dx` `[C, D, H, W]` from its column gradient (laid
    /// out as in [`Unfold::im2col`]), overwriting `dx`.
    fn col2im(&self, dcols: &[f32], ld: usize, col0: usize, dx: &mut [f32]) {
        if self.pad == [0, 0, 0] {
            dx.fill(0.0);
            self.scatter(dcols, ld, col0, dx);
            return;
        }
        self.with_padded(|buf| {
            self.scatter(dcols, ld, col0, buf);
            self.rows_of(|src, dst, n| dx[src..src + n].copy_from_slice(&buf[dst..dst + n]));
        });
    }

    /// Adds the column gradient onto the (padded) sample gradient `dxp`.
    fn scatter(&self, dcols: &[f32], ld: usize, col0: usize, dxp: &mut [f32]) {
        self.pairs(ld, col0, |slot, read| dxp[read] += dcols[slot]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{close, read};

    /// Relative tolerance of the fused convolution against burn's.
    const TOL: f32 = 1e-4;
    use burn::module::Param;
    use burn::nn::conv::{Conv2dConfig, Conv3dConfig};
    use burn::tensor::{Device, Distribution};

    /// (output, dx, dw) of the fused path and of burn's, with a random upstream gradient.
    fn compare<const D: usize>(
        x: Tensor<D>,
        forward: impl Fn(Tensor<D>, bool) -> Tensor<D>,
        weight: impl Fn() -> Tensor<D>,
        what: &str,
    ) {
        let mut results = Vec::new();
        for fused in [true, false] {
            let xi = x.clone().require_grad();
            let y = forward(xi.clone(), fused);
            let up = Tensor::<D>::ones(y.dims(), &y.device()).mul(y.clone().detach().cos()); // a fixed, non-uniform upstream gradient
            let g = (y.clone() * up).sum().backward();
            results.push((
                read(y),
                read(xi.grad(&g).unwrap()),
                read(weight().grad(&g).unwrap()),
            ));
        }
        close(&results[0].0, &results[1].0, TOL, &format!("{what} output"));
        close(&results[0].1, &results[1].1, TOL, &format!("{what} dx"));
        close(&results[0].2, &results[1].2, TOL, &format!("{what} dw"));
    }

    #[test]
    fn fused_conv2d_equals_burns_in_value_and_gradients() {
        let device = Device::flex().autodiff();
        // (batch, c_in, c_out, h, w, kernel, stride, pad): the encoder's layers, odd sizes,
        // a 1x1 kernel, batch 1 (products in parallel), more samples than threads, samples
        // multiplied in groups of unequal size (9 samples of 3x3 outputs), and kernels that
        // cover the whole input (no unfolding) with an odd batch.
        let cases = [
            (9, 3, 4, 6, 6, 4, 2, 1),
            (7, 3, 5, 4, 4, 4, 1, 0),
            (3, 1, 4, 32, 32, 4, 2, 1),
            (5, 4, 6, 8, 8, 4, 2, 1),
            (2, 6, 3, 4, 4, 4, 1, 0),
            (1, 3, 5, 7, 9, 3, 2, 1),
            (4, 2, 3, 5, 6, 1, 1, 0),
            (3, 2, 2, 6, 5, 3, 1, 2),
        ];
        for (b, ci, co, h, w, k, s, p) in cases {
            let conv = Conv2dConfig::new([ci, co], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(&device);
            let conv = Conv2d {
                weight: Param::from_tensor(conv.weight.val().require_grad()),
                ..conv
            };
            let x = Tensor::<4>::random([b, ci, h, w], Distribution::Normal(0.0, 1.0), &device);
            assert!(try_conv2d(&conv, &x).is_some(), "the fused path applies");
            let what = format!("2D b{b} {ci}->{co} {h}x{w} k{k} s{s} p{p}");
            compare(
                x,
                |x, fused| {
                    if fused {
                        conv2d_forward(&conv, x)
                    } else {
                        conv.forward(x)
                    }
                },
                || conv.weight.val(),
                &what,
            );
        }
    }

    #[test]
    fn fused_conv3d_equals_burns_in_value_and_gradients() {
        let device = Device::flex().autodiff();
        // Recompute the columns in the backward here (the 2D test keeps them).
        KEEP_LIMIT.store(0, Relaxed);
        for (b, ci, co, n, k, s, p) in [
            (2, 1, 3, 8, 4, 2, 1),
            (1, 2, 4, 5, 3, 2, 1),
            (3, 2, 2, 4, 4, 1, 0),
        ] {
            let conv = Conv3dConfig::new([ci, co], [k, k, k])
                .with_stride([s, s, s])
                .with_padding(PaddingConfig3d::Explicit(p, p, p))
                .with_bias(false)
                .init(&device);
            let x = Tensor::<5>::random(
                [b, ci, n, n + 1, n + 2],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            assert!(try_conv3d(&conv, &x).is_some(), "the fused path applies");
            let what = format!("3D b{b} {ci}->{co} {n} k{k} s{s} p{p}");
            compare(
                x,
                |x, fused| {
                    if fused {
                        conv3d_forward(&conv, x)
                    } else {
                        conv.forward(x)
                    }
                },
                || conv.weight.val(),
                &what,
            );
        }
        KEEP_LIMIT.store(KEEP_COLUMNS, Relaxed);
    }

    #[test]
    fn kept_columns_are_recycled_and_stale_values_do_not_leak_into_results() {
        // A length no other test uses, so a parallel test cannot take the buffer.
        let len = 12_345;
        let mut first = Recycled::take(len);
        first.fill(7.0);
        let address = first.as_ptr();
        drop(first);
        let again = Recycled::take(len);
        assert_eq!(again.as_ptr(), address, "the dropped buffer is reused");
        assert_eq!(again.len(), len);
        drop(again);

        // Two identical steps: the second unfolds into the first one's recycled columns.
        let device = Device::flex().autodiff();
        let conv = Conv2dConfig::new([3, 4], [4, 4])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&device);
        let x = Tensor::<4>::random([5, 3, 10, 10], Distribution::Normal(0.0, 1.0), &device);
        let step = || {
            let xi = x.clone().require_grad();
            let y = conv2d_forward(&conv, xi.clone());
            let g = (y.clone() * y.clone()).sum().backward();
            (read(y), read(xi.grad(&g).unwrap()))
        };
        let (a, b) = (step(), step());
        assert_eq!(a, b);
    }

    #[test]
    fn inference_on_the_plain_device_matches_and_unsupported_layers_fall_back() {
        let device = Device::flex();
        let conv = Conv2dConfig::new([2, 3], [4, 4])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&device);
        let x = Tensor::<4>::random([2, 2, 8, 8], Distribution::Default, &device);
        close(
            &read(conv2d_forward(&conv, x.clone())),
            &read(conv.forward(x.clone())),
            TOL,
            "plain",
        );
        // With a bias the fused path does not apply; the result is still burn's.
        let biased = Conv2dConfig::new([2, 3], [3, 3]).init(&device);
        assert!(try_conv2d(&biased, &x).is_none());
        assert_eq!(
            read(conv2d_forward(&biased, x.clone())),
            read(biased.forward(x))
        );
    }
}
