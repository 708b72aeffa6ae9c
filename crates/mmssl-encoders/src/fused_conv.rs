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

use burn::nn::conv::{Conv2d, Conv3d};
use burn::nn::{PaddingConfig2d, PaddingConfig3d};
use burn::tensor::{Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::BackendTypes;
use burn_flex::{Flex, FlexTensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::sync::Arc;

type AdFlex = burn_autodiff::Autodiff<Flex, NoCheckpointing>;
type AdTensor = <AdFlex as BackendTypes>::FloatTensorPrimitive;

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
    let out_shape: Vec<usize> = if D == 4 {
        vec![dims.batch, c_out, dims.output[1], dims.output[2]]
    } else {
        vec![
            dims.batch,
            c_out,
            dims.output[0],
            dims.output[1],
            dims.output[2],
        ]
    };
    if x.device().is_autodiff() {
        let px = x.clone().try_into_primitive::<AdFlex>().ok()?;
        let pw = weight.clone().try_into_primitive::<AdFlex>().ok()?;
        if px.primitive().dtype() != burn::tensor::DType::F32
            || pw.primitive().dtype() != burn::tensor::DType::F32
        {
            return None;
        }
        return Some(Tensor::from_primitive::<AdFlex>(tracked(
            px, pw, dims, out_shape,
        )));
    }
    let px = x.clone().try_into_primitive::<Flex>().ok()?;
    let pw = weight.clone().try_into_primitive::<Flex>().ok()?;
    if px.dtype() != burn::tensor::DType::F32 || pw.dtype() != burn::tensor::DType::F32 {
        return None;
    }
    let (y, _) = forward(&contiguous(&px), &contiguous(&pw), &dims, false);
    Some(Tensor::from_primitive::<Flex>(FlexTensor::from_data(
        TensorData::new(y, out_shape),
    )))
}

fn contiguous(t: &FlexTensor) -> Vec<f32> {
    let c = t.to_contiguous();
    match c.as_slice::<f32>() {
        Some(s) => s.to_vec(),
        None => c
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default(),
    }
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
    x: Arc<Vec<f32>>,
    w: Arc<Vec<f32>>,
    /// Columns of every sample `[B, K, P]`, when small enough to keep.
    cols: Option<Arc<Vec<f32>>>,
    dims: Dims,
    in_shape: burn::tensor::Shape,
    w_shape: burn::tensor::Shape,
}

fn tracked(x: AdTensor, w: AdTensor, dims: Dims, out_shape: Vec<usize>) -> AdTensor {
    let in_shape = x.primitive().layout().shape().clone();
    let w_shape = w.primitive().layout().shape().clone();
    let xs = Arc::new(contiguous(x.primitive()));
    let ws = Arc::new(contiguous(w.primitive()));
    let kind = FusedConv
        .prepare::<NoCheckpointing>([x.node(), w.node()])
        .compute_bound()
        .stateful();
    let output = |y: Vec<f32>| FlexTensor::from_data(TensorData::new(y, out_shape));
    match kind {
        OpsKind::Tracked(prep) => {
            let (y, cols) = forward(&xs, &ws, &dims, true);
            let saved = Saved {
                x: xs,
                w: ws,
                cols: cols.map(Arc::new),
                dims,
                in_shape,
                w_shape,
            };
            prep.finish(saved, output(y))
        }
        OpsKind::UnTracked(prep) => prep.finish(output(forward(&xs, &ws, &dims, false).0)),
    }
}

impl Backward<Flex, 2> for FusedConv {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        let d = s.dims;
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let [px, pw] = ops.parents;
        let (k, p, o) = (d.k(), d.p(), d.c_out);
        let threads = rayon::current_num_threads().max(1);
        let (per_sample, inner) = split(d.batch);
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
                                    im2col(&s.x[b * d.in_len()..(b + 1) * d.in_len()], &d, scratch);
                                    scratch
                                }
                            };
                            let dyb = &dy[b * o * p..(b + 1) * o * p];
                            // SAFETY: dims and strides describe the slices' row-major layouts.
                            unsafe {
                                gemm::gemm(
                                    o,
                                    k,
                                    p,
                                    dw.as_mut_ptr(),
                                    1,
                                    k as isize,
                                    true,
                                    dyb.as_ptr(),
                                    1,
                                    p as isize,
                                    cols.as_ptr(),
                                    p as isize,
                                    1,
                                    1.0,
                                    1.0,
                                    false,
                                    false,
                                    false,
                                    inner,
                                );
                            }
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
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(dw, s.w_shape.clone())),
            );
        }
        if let Some(node) = px {
            // dcols_b = W^T [K, O] x dY_b [O, P], folded back onto the input.
            let mut dx = vec![0.0f32; d.batch * d.in_len()];
            let work = |(b, dxb): (usize, &mut [f32])| {
                with_scratch(k * p, |dcols| {
                    let dyb = &dy[b * o * p..(b + 1) * o * p];
                    // SAFETY: as above; W^T is read through swapped strides.
                    unsafe {
                        gemm::gemm(
                            k,
                            p,
                            o,
                            dcols.as_mut_ptr(),
                            1,
                            p as isize,
                            false,
                            s.w.as_ptr(),
                            k as isize,
                            1,
                            dyb.as_ptr(),
                            1,
                            p as isize,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            inner,
                        );
                    }
                    col2im(dcols, &d, dxb);
                })
            };
            if per_sample {
                dx.par_chunks_mut(d.in_len()).enumerate().for_each(work);
            } else {
                dx.chunks_mut(d.in_len()).enumerate().for_each(work);
            }
            grads.register::<Flex>(
                node.id,
                FlexTensor::from_data(TensorData::new(dx, s.in_shape.clone())),
            );
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

/// One sample: unfold `xb` into `cols`, then `yb [O, P] = w [O, K] x cols [K, P]`.
fn sample(xb: &[f32], w: &[f32], d: &Dims, cols: &mut [f32], yb: &mut [f32], inner: Parallelism) {
    let (k, p, o) = (d.k(), d.p(), d.c_out);
    im2col(xb, d, cols);
    // SAFETY: dims and strides describe the slices' row-major layouts.
    unsafe {
        gemm::gemm(
            o,
            p,
            k,
            yb.as_mut_ptr(),
            1,
            p as isize,
            false,
            w.as_ptr(),
            1,
            k as isize,
            cols.as_ptr(),
            1,
            p as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            inner,
        );
    }
}

/// Samples go to threads when there are at least as many as threads; otherwise each product
/// runs in parallel.
fn split(batch: usize) -> (bool, Parallelism) {
    let threads = rayon::current_num_threads().max(1);
    if batch >= threads {
        (true, Parallelism::None)
    } else {
        (false, Parallelism::Rayon(0))
    }
}

/// The output `[B, O, P]` of `x` `[B, C, D, H, W]` with weights `w` `[O, K]`, and with `keep`
/// (and at most [`KEEP_COLUMNS`] values) the columns of every sample `[B, K, P]`.
fn forward(x: &[f32], w: &[f32], d: &Dims, keep: bool) -> (Vec<f32>, Option<Vec<f32>>) {
    let (k, p, o, n) = (d.k(), d.p(), d.c_out, d.in_len());
    let mut y = vec![0.0f32; d.batch * o * p];
    let (per_sample, inner) = split(d.batch);
    if keep && d.batch * k * p <= KEEP_LIMIT.load(std::sync::atomic::Ordering::Relaxed) {
        let mut cols = vec![0.0f32; d.batch * k * p];
        let work = |(b, (c, yb)): (usize, (&mut [f32], &mut [f32]))| {
            sample(&x[b * n..(b + 1) * n], w, d, c, yb, inner)
        };
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
    let work = |(b, yb): (usize, &mut [f32])| {
        with_scratch(k * p, |cols| {
            sample(&x[b * n..(b + 1) * n], w, d, cols, yb, inner)
        })
    };
    if per_sample {
        y.par_chunks_mut(o * p).enumerate().for_each(work);
    } else {
        y.chunks_mut(o * p).enumerate().for_each(work);
    }
    (y, None)
}

/// Calls `f(row, input offset, output offset, count)` for every run of output locations along
/// the width whose input positions are inside the (unpadded) input, for every row
/// `(c, kz, ky, kx)` of the columns and every output `(z, y)`; locations outside stay as they
/// are (zero).
#[inline(always)]
fn runs(d: &Dims, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let [kd, kh, kw] = d.g.kernel;
    let [sd, sh, sw] = d.g.stride;
    let [pd, ph, pw] = d.g.padding;
    let [id, ih, iw] = d.input;
    let [od, oh, ow] = d.output;
    let p = d.p();
    let mut row = 0;
    for c in 0..d.c_in {
        for kz in 0..kd {
            for ky in 0..kh {
                for kx in 0..kw {
                    // Output x range whose input x = ox*sw + kx - pw lies in [0, iw).
                    let lo = (pw.saturating_sub(kx)).div_ceil(sw);
                    let hi = if iw + pw > kx {
                        ((iw + pw - kx - 1) / sw + 1).min(ow)
                    } else {
                        0
                    };
                    for oz in 0..od {
                        let iz = (oz * sd + kz) as isize - pd as isize;
                        if iz < 0 || iz >= id as isize {
                            continue;
                        }
                        for oy in 0..oh {
                            let iy = (oy * sh + ky) as isize - ph as isize;
                            if iy < 0 || iy >= ih as isize || lo >= hi {
                                continue;
                            }
                            let ix0 = lo * sw + kx - pw;
                            let input = ((c * id + iz as usize) * ih + iy as usize) * iw + ix0;
                            let out = row * p + (oz * oh + oy) * ow + lo;
                            f(row, input, out, hi - lo, sw);
                        }
                    }
                    row += 1;
                }
            }
        }
    }
}

/// Unfolds one sample `[C, D, H, W]` into `cols` `[K, P]` (zero where the kernel overlaps the
/// padding). Every value of `cols` is written once, so a reused buffer needs no clearing.
fn im2col(x: &[f32], d: &Dims, cols: &mut [f32]) {
    let [kd, kh, kw] = d.g.kernel;
    let [sd, sh, sw] = d.g.stride;
    let [pd, ph, pw] = d.g.padding;
    let [id, ih, iw] = d.input;
    let [od, oh, ow] = d.output;
    let mut segments = cols.chunks_exact_mut(ow);
    for c in 0..d.c_in {
        for kz in 0..kd {
            for ky in 0..kh {
                for kx in 0..kw {
                    let lo = (pw.saturating_sub(kx)).div_ceil(sw).min(ow);
                    let hi = if iw + pw > kx {
                        ((iw + pw - kx - 1) / sw + 1).min(ow)
                    } else {
                        0
                    }
                    .max(lo);
                    for oz in 0..od {
                        let iz = (oz * sd + kz) as isize - pd as isize;
                        for oy in 0..oh {
                            let seg = segments.next().expect("cols has K x P values");
                            let iy = (oy * sh + ky) as isize - ph as isize;
                            if iz < 0 || iz >= id as isize || iy < 0 || iy >= ih as isize {
                                seg.fill(0.0);
                                continue;
                            }
                            seg[..lo].fill(0.0);
                            seg[hi..].fill(0.0);
                            if hi > lo {
                                let start =
                                    ((c * id + iz as usize) * ih + iy as usize) * iw + lo * sw + kx
                                        - pw;
                                if sw == 1 {
                                    seg[lo..hi].copy_from_slice(&x[start..start + hi - lo]);
                                } else {
                                    for (o, v) in
                                        seg[lo..hi].iter_mut().zip(x[start..].iter().step_by(sw))
                                    {
                                        *o = *v;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds the columns' gradient `dcols` `[K, P]` back onto one sample's input gradient.
fn col2im(dcols: &[f32], d: &Dims, dx: &mut [f32]) {
    runs(d, |_, input, out, n, stride| {
        for (i, g) in dcols[out..out + n].iter().enumerate() {
            dx[input + i * stride] += g;
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
