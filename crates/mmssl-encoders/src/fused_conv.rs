//! Convolutions of the DCGAN encoders as one operation on the CPU backend (`flex`).
//!
//! Per sample, the input is unfolded into columns (`im2col`: `[C_in k^n, P]` for `P` output
//! locations) and the output is one matrix product `W [C_out, C_in k^n] x cols`. Backward:
//! `dW = sum_b dY_b cols_b^T` and, when the input needs a gradient, `dcols = W^T dY_b` folded back
//! onto the input (`col2im`), instead of burn's transposed-convolution loop. The columns are
//! recomputed in the backward rather than kept (in 3D they would be hundreds of MB per step).
//! Samples are spread over threads, each with single-threaded products; with fewer samples than
//! threads the products themselves run in parallel.
//!
//! Used for convolutions without bias, groups or dilation, with symmetric explicit (or no)
//! padding, on `f32`: the encoders' case. Anything else, and other backends, go to burn's
//! `Conv2d::forward` / `Conv3d::forward` unchanged. Values and gradients are tested against
//! burn's.

use crate::cpu::{
    AdFlex, AdTensor, HostTensor, Operand, autodiff_primitive, matmul, plain_primitive,
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
    /// Columns of every sample `[B, K, P]`, when small enough to keep.
    cols: Option<std::sync::Arc<Vec<f32>>>,
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
        let (x, w, dy) = (s.x.values(), s.w.values(), dy.values());
        let [px, pw] = ops.parents;
        let (k, p, o, n) = (d.k(), d.p(), d.c_out, d.in_len());
        let threads = rayon::current_num_threads().max(1);
        let (per_sample, parallel_products) = split(d.batch);
        if let Some(node) = pw {
            // dW = sum_b dY_b [O, P] x cols_b^T [P, K], one partial sum per chunk of samples.
            let chunk = d.batch.div_ceil(if per_sample { threads } else { 1 });
            let partials: Vec<Vec<f32>> = (0..d.batch)
                .collect::<Vec<_>>()
                .par_chunks(chunk)
                .map(|samples| {
                    let mut dw = vec![0.0f32; o * k];
                    with_scratch(k * p, |scratch| {
                        for &b in samples {
                            let cols: &[f32] = match &s.cols {
                                Some(all) => &all[b * k * p..(b + 1) * k * p],
                                None => {
                                    im2col(&x[b * n..(b + 1) * n], &d, scratch);
                                    scratch
                                }
                            };
                            let dyb = Operand::rows(&dy[b * o * p..(b + 1) * o * p], p);
                            let colst = Operand::transposed(cols, p);
                            matmul(&mut dw, (o, k, p), dyb, colst, 1.0, true, parallel_products);
                        }
                    });
                    dw
                })
                .collect();
            let mut dw = vec![0.0f32; o * k];
            for part in &partials {
                for (a, v) in dw.iter_mut().zip(part) {
                    *a += v;
                }
            }
            let dw = HostTensor::from_vec(dw, s.w.shape().clone());
            grads.register::<Flex>(node.id, dw.into_flex());
        }
        if let Some(node) = px {
            // dcols_b = W^T [K, O] x dY_b [O, P], folded back onto the input.
            let mut dx = vec![0.0f32; d.batch * n];
            let work = |(b, dxb): (usize, &mut [f32])| {
                with_scratch(k * p, |dcols| {
                    let wt = Operand::transposed(w, k);
                    let dyb = Operand::rows(&dy[b * o * p..(b + 1) * o * p], p);
                    matmul(dcols, (k, p, o), wt, dyb, 1.0, false, parallel_products);
                    col2im(dcols, &d, dxb);
                })
            };
            if per_sample {
                dx.par_chunks_mut(n).enumerate().for_each(work);
            } else {
                dx.chunks_mut(n).enumerate().for_each(work);
            }
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
static KEEP_LIMIT: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(KEEP_COLUMNS);

/// Whether samples go to threads (at least as many samples as threads, each product on one
/// thread) or, with fewer samples, each product runs on all threads.
fn split(batch: usize) -> (bool, bool) {
    let per_sample = batch >= rayon::current_num_threads().max(1);
    (per_sample, !per_sample)
}

/// The output `[B, O, P]` of `x` `[B, C, D, H, W]` with weights `w` `[O, K]`, and with `keep`
/// (and at most [`KEEP_LIMIT`] values) the columns of every sample `[B, K, P]`.
fn forward(x: &[f32], w: &[f32], d: &Dims, keep: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let (k, p, o, n) = (d.k(), d.p(), d.c_out, d.in_len());
    let mut y = vec![0.0f32; d.batch * o * p];
    let (per_sample, parallel_products) = split(d.batch);
    let sample = |b: usize, cols: &mut [f32], yb: &mut [f32]| {
        im2col(&x[b * n..(b + 1) * n], d, cols);
        let (wm, c) = (Operand::rows(w, k), Operand::rows(cols, p));
        matmul(yb, (o, p, k), wm, c, 1.0, false, parallel_products);
    };
    if keep && d.batch * k * p <= KEEP_LIMIT.load(std::sync::atomic::Ordering::Relaxed) {
        let mut cols = vec![0.0f32; d.batch * k * p];
        let work = |(b, (c, yb)): (usize, (&mut [f32], &mut [f32]))| sample(b, c, yb);
        if per_sample {
            cols.par_chunks_mut(k * p)
                .zip(y.par_chunks_mut(o * p))
                .enumerate()
                .for_each(work);
        } else {
            cols.chunks_mut(k * p)
                .zip(y.chunks_mut(o * p))
                .enumerate()
                .for_each(work);
        }
        return (y, Some(cols));
    }
    let work = |(b, yb): (usize, &mut [f32])| with_scratch(k * p, |cols| sample(b, cols, yb));
    if per_sample {
        y.par_chunks_mut(o * p).enumerate().for_each(work);
    } else {
        y.chunks_mut(o * p).enumerate().for_each(work);
    }
    (y, None)
}

/// One stretch of a column row along the output width: output locations `out..out + count` of
/// the row read input values `input, input + stride, ...`.
struct Run {
    out: usize,
    input: usize,
    count: usize,
    stride: usize,
}

/// A piece of the `[K, P]` columns: a [`Run`] that reads the input, or a range of column
/// locations that read padding.
enum Piece {
    Inside(Run),
    Padding(std::ops::Range<usize>),
}

/// Calls `f` with every [`Piece`] of every column row `(c, kz, ky, kx)` and output `(z, y)`;
/// together the pieces cover the `[K, P]` columns exactly once.
#[inline(always)]
fn walk(d: &Dims, mut f: impl FnMut(Piece)) {
    let [kd, kh, kw] = d.g.kernel;
    let [sd, sh, sw] = d.g.stride;
    let [pd, ph, pw] = d.g.padding;
    let [id, ih, iw] = d.input;
    let [od, oh, ow] = d.output;
    let mut seg = 0;
    for c in 0..d.c_in {
        for kz in 0..kd {
            for ky in 0..kh {
                for kx in 0..kw {
                    // Output x range whose input x = ox*sw + kx - pw lies in [0, iw).
                    let lo = (pw.saturating_sub(kx)).div_ceil(sw).min(ow);
                    let hi = if iw + pw > kx {
                        ((iw + pw - kx - 1) / sw + 1).min(ow)
                    } else {
                        0
                    }
                    .max(lo);
                    for oz in 0..od {
                        let iz = (oz * sd + kz).checked_sub(pd).filter(|&z| z < id);
                        for oy in 0..oh {
                            let start = seg * ow;
                            seg += 1;
                            let iy = (oy * sh + ky).checked_sub(ph).filter(|&y| y < ih);
                            let (Some(iz), Some(iy)) = (iz, iy) else {
                                f(Piece::Padding(start..start + ow));
                                continue;
                            };
                            f(Piece::Padding(start..start + lo));
                            f(Piece::Padding(start + hi..start + ow));
                            if hi > lo {
                                f(Piece::Inside(Run {
                                    out: start + lo,
                                    input: ((c * id + iz) * ih + iy) * iw + lo * sw + kx - pw,
                                    count: hi - lo,
                                    stride: sw,
                                }));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Unfolds one sample `[C, D, H, W]` into `cols` `[K, P]`; every value is written once (zero
/// where the kernel overlaps the padding), so a reused buffer needs no clearing.
fn im2col(x: &[f32], d: &Dims, cols: &mut [f32]) {
    walk(d, |piece| match piece {
        Piece::Padding(range) => cols[range].fill(0.0),
        Piece::Inside(r) => {
            let dst = &mut cols[r.out..r.out + r.count];
            if r.stride == 1 {
                dst.copy_from_slice(&x[r.input..r.input + r.count]);
            } else {
                for (o, v) in dst.iter_mut().zip(x[r.input..].iter().step_by(r.stride)) {
                    *o = *v;
                }
            }
        }
    });
}

/// Adds the columns' gradient `dcols` `[K, P]` back onto one sample's input gradient.
fn col2im(dcols: &[f32], d: &Dims, dx: &mut [f32]) {
    walk(d, |piece| {
        if let Piece::Inside(r) = piece {
            for (i, g) in dcols[r.out..r.out + r.count].iter().enumerate() {
                dx[r.input + i * r.stride] += g;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::conv::{Conv2dConfig, Conv3dConfig};
    use burn::tensor::{Device, Distribution};

    fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * scale,
                "{what}[{i}]: {x} vs {y} (scale {scale})"
            );
        }
    }

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
        close(&results[0].0, &results[1].0, &format!("{what} output"));
        close(&results[0].1, &results[1].1, &format!("{what} dx"));
        close(&results[0].2, &results[1].2, &format!("{what} dw"));
    }

    #[test]
    fn fused_conv2d_equals_burns_in_value_and_gradients() {
        let device = Device::flex().autodiff();
        // (batch, c_in, c_out, h, w, kernel, stride, pad): the encoder's layers, odd sizes,
        // a 1x1 kernel, batch 1 (products in parallel) and more samples than threads.
        let cases = [
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
        KEEP_LIMIT.store(0, std::sync::atomic::Ordering::Relaxed);
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
        KEEP_LIMIT.store(KEEP_COLUMNS, std::sync::atomic::Ordering::Relaxed);
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
