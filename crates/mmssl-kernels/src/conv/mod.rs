//! Convolutions of the DCGAN encoders as one operation on the CPU backend (`flex`).
//!
//! The input of each sample is unfolded into columns (`im2col`: `[C_in k^n, P]` for `P` output
//! locations) and the output is a matrix product with the weights `W [C_out, C_in k^n]`.
//! Consecutive samples are multiplied together in groups whose columns sit side by side
//! (`[K, g P]`, about 256 columns per group): one product per group packs the weights once,
//! where one product per sample spent more time packing than multiplying for the deeper layers
//! (16 locations per sample in the third 2D layer). A kernel that covers its whole unpadded
//! input (the last layer, `P = 1`) needs no unfolding: the inputs are the columns. A sample
//! with enough locations to form a group alone (every 3D layer; the first 2D one) is unfolded
//! and multiplied a block of output lines (about 1 MiB of columns) at a time, `Y^T = cols^T
//! W^T` per block, so that its columns (8-32 MiB per 3D sample) are multiplied while in cache
//! instead of being written whole and read back to be packed. Groups are spread over threads,
//! each product on one thread; with fewer groups than threads the products themselves run in
//! parallel.
//!
//! Backward: `dW = sum_g dY_g cols_g^T` and, when the input needs a gradient,
//! `dcols = W^T dY_g` folded back onto the input (`col2im`), instead of burn's
//! transposed-convolution loop; per block of a lone sample as in the forward. The columns are kept from the forward up to 32 MiB per layer
//! and recomputed beyond (3D). The unfolding of one input channel is computed once per group
//! and replayed for every channel and sample.
//!
//! Used for convolutions without bias, groups or dilation, with symmetric explicit (or no)
//! padding, on `f32`: the encoders' case. Anything else, and other backends, go to burn's
//! `Conv2d::forward` / `Conv3d::forward` unchanged. Values and gradients are tested against
//! burn's.

use crate::host::{AdFlex, AdTensor, HostTensor, Recycled, autodiff_primitive, plain_primitive};
use burn::nn::conv::{Conv2d, Conv3d};
use burn::nn::{PaddingConfig2d, PaddingConfig3d};
use burn::tensor::Tensor;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::Flex;

mod products;
#[cfg(test)]
mod tests;
mod unfold;

use products::{backward, forward};

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
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(t, l, b, r) if t == b && l == r => [t, l],
        _ => return None,
    };
    let plain = conv.bias.is_none() && conv.groups == 1 && conv.dilation == [1, 1];
    plain.then(|| try_conv(x, &conv.weight.val(), &conv.stride, &padding))?
}

fn try_conv3d(conv: &Conv3d, x: &Tensor<5>) -> Option<Tensor<5>> {
    let padding = match conv.padding {
        PaddingConfig3d::Valid => [0, 0, 0],
        PaddingConfig3d::Explicit(d, h, w) => [d, h, w],
        _ => return None,
    };
    let plain = conv.bias.is_none() && conv.groups == 1 && conv.dilation == [1, 1, 1];
    plain.then(|| try_conv(x, &conv.weight.val(), &conv.stride, &padding))?
}

/// The convolution of `x` `[B, C, spatial...]` with `weight` `[O, C, kernel...]` (no bias,
/// groups or dilation; symmetric zero `padding` and `stride` per spatial axis) as one fused
/// operation, for 2D (`D = 4`) and 3D (`D = 5`) `f32` tensors on the CPU backend, with or
/// without autodiff. `None` where it does not apply (another backend or dtype, another rank,
/// sizes that do not fit): the caller then takes burn's generic convolution.
pub fn try_conv<const D: usize>(
    x: &Tensor<D>,
    weight: &Tensor<D>,
    stride: &[usize],
    padding: &[usize],
) -> Option<Tensor<D>> {
    if !(D == 4 || D == 5) || stride.len() != D - 2 || padding.len() != D - 2 {
        return None;
    }
    let (xd, wd) = (x.dims(), weight.dims());
    if wd[1] != xd[1] {
        return None; // burn's path reports the mismatch
    }
    // 2D runs as 3D with a depth of one.
    let lift = |v: &[usize], depth: usize| -> [usize; 3] {
        let mut out = [depth; 3];
        out[3 - v.len()..].copy_from_slice(v);
        out
    };
    let geometry = Geometry {
        kernel: lift(&wd[2..], 1),
        stride: lift(stride, 1),
        padding: lift(padding, 0),
    };
    let spatial = lift(&xd[2..], 1);
    let input = [xd[0], xd[1], spatial[0], spatial[1], spatial[2]];
    apply(x, weight, input, geometry)
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
