//! Batch normalisation fused with the activation after it, on the CPU backend (`flex`).
//!
//! burn computes training-mode batch normalisation from generic operations (transposes to
//! `[C, B L]`, means, a variance, the affine map) and the activation after it as a masked select,
//! each a pass over memory forward and backward. On the CPU those passes cost as much as the
//! convolutions around them. Here the forward is two passes over the input (statistics, then
//! normalise + affine + activation) and the backward two passes (per-channel sums, then the input
//! gradient), with the standard batch-norm gradient (Ioffe and Szegedy, 2015):
//!
//! `dx = gamma / sigma (dz - mean(dz) - x_hat mean(dz x_hat))`, `dgamma = sum(dz x_hat)`,
//! `dbeta = sum(dz)`, where `dz = dy act'(z)` and `act'(z)` is 1 for `z > 0` and the slope
//! otherwise (0 for ReLU).
//!
//! The running statistics are updated exactly as burn's `BatchNorm` updates them (momentum,
//! biased batch variance), or, with [`RunningVariance::Unbiased`], as PyTorch's `BatchNorm`
//! does (the batch variance times `n / (n - 1)`, `n` values per channel). Other backends,
//! inference mode and non-`f32` tensors use burn's `BatchNorm::forward` (or, for the unbiased
//! update in training mode, burn's `batch_norm_train` and the same update) and the activation
//! functions unchanged.

use crate::host::{AdTensor, HostTensor, autodiff_primitive, filled};
use burn::nn::BatchNorm;
use burn::tensor::activation::{leaky_relu, relu};
use burn::tensor::{Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::Flex;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Fewest values a thread takes in the elementwise passes (smaller pieces cost more in
/// scheduling than they save).
const GRAIN: usize = 1 << 14;

/// The activation applied after a batch normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// None.
    Identity,
    /// `max(z, 0)`.
    Relu,
    /// `z` for `z > 0`, `slope z` otherwise.
    LeakyRelu(f64),
}

impl Activation {
    /// Slope below zero, or `None` for the identity.
    fn slope(self) -> Option<f32> {
        match self {
            Activation::Identity => None,
            Activation::Relu => Some(0.0),
            Activation::LeakyRelu(s) => Some(s as f32),
        }
    }

    fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Identity => x,
            Activation::Relu => relu(x),
            Activation::LeakyRelu(s) => leaky_relu(x, s),
        }
    }
}

/// Which batch variance the running variance of a batch normalisation follows in training mode.
///
/// Normalisation itself always divides by the biased batch variance (both libraries do); only
/// the running estimate, used in evaluation mode, differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunningVariance {
    /// The biased batch variance (mean squared deviation), as burn's `BatchNorm` updates it.
    #[default]
    Biased,
    /// The unbiased batch variance (`n / (n - 1)` times the biased one, `n` values per
    /// channel), as PyTorch's `BatchNorm` updates it.
    Unbiased,
}

impl RunningVariance {
    /// The factor the biased batch variance of `n` values per channel is multiplied by.
    pub fn factor(self, n: usize) -> f64 {
        match self {
            RunningVariance::Unbiased if n > 1 => n as f64 / (n - 1) as f64,
            _ => 1.0,
        }
    }
}

/// `value` for `reference > 0`, `slope value` otherwise: the activation (`reference` = `value`)
/// and its backward (`reference` = input or output, `value` = gradient).
#[inline(always)]
fn leaky(value: f32, reference: f32, slope: f32) -> f32 {
    // A product with a selected factor rather than a branch: the compiler vectorises it, and
    // the signs are random (a branch would mispredict half the time). `value * 1.0` is exact.
    value * if reference > 0.0 { 1.0 } else { slope }
}

/// `leaky(value[i], reference[i], slope)` for every `i`, in parallel pieces of [`GRAIN`] values
/// written as plain loops the compiler vectorises.
fn leaky_map(value: &[f32], reference: &[f32], slope: f32) -> Vec<f32> {
    assert_eq!(value.len(), reference.len());
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(GRAIN)
            .zip(value.par_chunks(GRAIN).zip(reference.par_chunks(GRAIN)))
            .for_each(|(o, (v, r))| {
                for ((o, &v), &r) in o.iter_mut().zip(v).zip(r) {
                    o.write(leaky(v, r, slope));
                }
            })
    };
    // SAFETY: the pieces of the output cover it and are zipped with pieces of the same
    // lengths (the three slices have `value.len()` values); every value of each is written.
    unsafe { filled(value.len(), fill) }
}

/// Independent partial sums per lane, so that the sums below vectorise (a single running sum
/// is a chain of dependent additions); each row is at most a few thousand values, and the rows
/// are added in `f64`.
const LANES: usize = 8;

/// `sum(f(x_i))`.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `(sum(g), sum(g (x - mean)))`.
fn lane_sum_and_dot(g: &[f32], x: &[f32], mean: f32) -> (f32, f32) {
    let (mut sg, mut sd) = ([0.0f32; LANES], [0.0f32; LANES]);
    let (gc, xc) = (g.chunks_exact(LANES), x.chunks_exact(LANES));
    let (gt, xt) = (gc.remainder(), xc.remainder());
    for (gc, xc) in gc.zip(xc) {
        for j in 0..LANES {
            sg[j] += gc[j];
            sd[j] += gc[j] * (xc[j] - mean);
        }
    }
    let tail_g: f32 = gt.iter().sum();
    let tail_d: f32 = gt.iter().zip(xt).map(|(g, x)| g * (x - mean)).sum();
    (
        sg.iter().sum::<f32>() + tail_g,
        sd.iter().sum::<f32>() + tail_d,
    )
}

/// `activation(bn(x))` for `x` `[B, C, ...]`: identical in value, gradient and running-statistics
/// update to `activation(bn.forward(x))`, fused into one operation in training mode on the CPU
/// backend.
pub fn batch_norm<const D: usize>(
    bn: &BatchNorm,
    x: Tensor<D>,
    activation: Activation,
) -> Tensor<D> {
    batch_norm_with(bn, x, activation, RunningVariance::Biased)
}

/// [`batch_norm`] with the running variance following `running` in training mode.
pub fn batch_norm_with<const D: usize>(
    bn: &BatchNorm,
    x: Tensor<D>,
    activation: Activation,
    running: RunningVariance,
) -> Tensor<D> {
    match fused(bn, &x, activation, running) {
        Some(y) => y,
        None => generic(bn, x, activation, running),
    }
}

/// [`batch_norm_with`] through burn's operations.
fn generic<const D: usize>(
    bn: &BatchNorm,
    x: Tensor<D>,
    activation: Activation,
    running: RunningVariance,
) -> Tensor<D> {
    let training = x.device().is_autodiff() && bn.training.is_enabled();
    if running == RunningVariance::Biased || !training {
        return activation.apply(bn.forward(x));
    }
    // burn's training-mode batch norm, its running variance from the unbiased batch variance.
    let dims = x.dims();
    let n: usize = dims[0] * dims[2..].iter().product::<usize>();
    let device = x.device();
    let result =
        burn::tensor::module::batch_norm_train(x, bn.gamma.val(), bn.beta.val(), bn.epsilon);
    let blend = |running: Tensor<1>, batch: Tensor<1>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - bn.momentum)
            .add(batch.detach().mul_scalar(bn.momentum))
            .detach()
    };
    bn.running_mean
        .update(blend(bn.running_mean.value_sync(), result.mean));
    let unbiased = result.variance.mul_scalar(running.factor(n));
    bn.running_var
        .update(blend(bn.running_var.value_sync(), unbiased));
    activation.apply(result.output)
}

/// The fused path, when it applies (training mode, autodiff CPU backend, `f32`).
fn fused<const D: usize>(
    bn: &BatchNorm,
    x: &Tensor<D>,
    activation: Activation,
    running: RunningVariance,
) -> Option<Tensor<D>> {
    let device = x.device();
    if D < 2 || !device.is_autodiff() || !bn.training.is_enabled() {
        return None;
    }
    let px = autodiff_primitive(x)?;
    let pg = autodiff_primitive(&bn.gamma.val())?;
    let pb = autodiff_primitive(&bn.beta.val())?;
    let dims = x.dims();
    let (out, mean, mut var) =
        tracked(px, pg, pb, dims[0], dims[1], bn.epsilon, activation.slope())?;
    let n = dims[0] * dims[2..].iter().product::<usize>();
    let factor = running.factor(n);
    if factor != 1.0 {
        var.iter_mut()
            .for_each(|v| *v = (*v as f64 * factor) as f32);
    }
    // The running statistics, with burn's own expression (`BatchNorm::forward_train`).
    let blend = |running: Tensor<1>, batch: Vec<f32>| {
        let n = batch.len();
        let batch = Tensor::<1>::from_data(TensorData::new(batch, [n]), &device);
        running
            .to_device(&device)
            .mul_scalar(1.0 - bn.momentum)
            .add(batch.mul_scalar(bn.momentum))
            .detach()
    };
    bn.running_mean
        .update(blend(bn.running_mean.value_sync(), mean));
    bn.running_var
        .update(blend(bn.running_var.value_sync(), var));
    Some(Tensor::from_primitive::<crate::host::AdFlex>(out))
}

/// `activation(x)`, one pass forward and one backward in training mode on the CPU backend
/// (burn's `leaky_relu` is a comparison and a masked select each way); identical in value and
/// gradient to [`Activation`]'s burn function, which other backends use.
pub fn activate<const D: usize>(x: Tensor<D>, activation: Activation) -> Tensor<D> {
    let Some(slope) = activation.slope() else {
        return x;
    };
    let fused = x
        .device()
        .is_autodiff()
        .then(|| autodiff_primitive(&x))
        .flatten()
        .and_then(|px| {
            let xs = HostTensor::new(px.primitive())?;
            let y = leaky_map(xs.values(), xs.values(), slope);
            let out = HostTensor::from_vec(y, xs.shape().clone()).into_flex();
            let kind = FusedActivation
                .prepare::<NoCheckpointing>([px.node()])
                .compute_bound()
                .stateful();
            Some(match kind {
                OpsKind::Tracked(prep) => prep.finish((xs, slope), out),
                OpsKind::UnTracked(prep) => prep.finish(out),
            })
        });
    match fused {
        Some(out) => Tensor::from_primitive::<crate::host::AdFlex>(out),
        None => activation.apply(x),
    }
}

#[derive(Debug)]
struct FusedActivation;

impl Backward<Flex, 1> for FusedActivation {
    /// The input and the slope below zero.
    type State = (HostTensor, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, slope) = ops.state;
        let dy = grads.consume::<Flex>(&ops.node);
        let [parent] = ops.parents;
        if let (Some(node), Some(dy)) = (parent, HostTensor::new(&dy)) {
            let dx = leaky_map(dy.values(), x.values(), slope);
            let dx = HostTensor::from_vec(dx, x.shape().clone());
            grads.register::<Flex>(node.id, dx.into_flex());
        }
    }
}

#[derive(Debug)]
struct FusedBatchNorm;

/// What the backward needs.
#[derive(Debug, Clone)]
struct Saved {
    /// The input, contiguous `[B, C, L]`.
    x: HostTensor,
    /// The output (its sign gives the activation's derivative).
    y: HostTensor,
    gamma: Vec<f32>,
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    batch: usize,
    slope: Option<f32>,
}

impl Backward<Flex, 3> for FusedBatchNorm {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        let Some(dy) = HostTensor::new(&grads.consume::<Flex>(&ops.node)) else {
            return;
        };
        let (x, dy) = (s.x.values(), dy.values());
        let channels = s.gamma.len();
        let l = x.len() / (s.batch * channels);
        let n = (s.batch * l) as f32;
        // dz = dy act'(z); act'(z) from the sign of y (same sign as z for slope > 0; y = 0
        // exactly where ReLU cut).
        let dz_owned;
        let dz: &[f32] = match s.slope {
            None => dy,
            Some(slope) => {
                dz_owned = leaky_map(dy, s.y.values(), slope);
                &dz_owned
            }
        };
        // Per channel: sum(dz) and sum(dz x_hat) = sum(dz (x - mean)) / sigma.
        let sums: Vec<(f32, f32)> = (0..channels)
            .into_par_iter()
            .map(|c| {
                let (mut sd, mut sdx) = (0.0f64, 0.0f64);
                for b in 0..s.batch {
                    let o = (b * channels + c) * l;
                    let (g, d) = lane_sum_and_dot(&dz[o..o + l], &x[o..o + l], s.mean[c]);
                    sd += g as f64;
                    sdx += d as f64;
                }
                (sd as f32, (sdx * s.inv_std[c] as f64) as f32)
            })
            .collect();
        let [px, pg, pb] = ops.parents;
        if let Some(node) = px {
            let fill = |dx: &mut [MaybeUninit<f32>]| {
                dx.par_chunks_mut(l)
                    .zip(dz.par_chunks(l))
                    .zip(x.par_chunks(l))
                    .with_min_len(GRAIN.div_ceil(l))
                    .enumerate()
                    .for_each(|(row, ((dx, dz), x))| {
                        let c = row % channels;
                        let (mean_dz, mean_dzx) = (sums[c].0 / n, sums[c].1 / n);
                        let (mu, is) = (s.mean[c], s.inv_std[c]);
                        let scale = s.gamma[c] * is;
                        for ((o, &g), &v) in dx.iter_mut().zip(dz).zip(x) {
                            let xh = (v - mu) * is;
                            o.write(scale * (g - mean_dz - xh * mean_dzx));
                        }
                    })
            };
            // SAFETY: rows of `l` values of the output, `dz` and `x` (all `x.len()` values, a
            // multiple of `l`), zipped: every value of every row is written.
            let dx = unsafe { filled(x.len(), fill) };
            let dx = HostTensor::from_vec(dx, s.x.shape().clone());
            grads.register::<Flex>(node.id, dx.into_flex());
        }
        let per_channel = |pick: fn(&(f32, f32)) -> f32| {
            HostTensor::from_vec(sums.iter().map(pick).collect(), [channels]).into_flex()
        };
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, per_channel(|p| p.1));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, per_channel(|p| p.0));
        }
    }
}

/// The output, and the batch mean and (biased) variance per channel.
fn tracked(
    x: AdTensor,
    gamma: AdTensor,
    beta: AdTensor,
    batch: usize,
    channels: usize,
    epsilon: f64,
    slope: Option<f32>,
) -> Option<(AdTensor, Vec<f32>, Vec<f32>)> {
    let host = HostTensor::new(x.primitive())?;
    let gs = HostTensor::new(gamma.primitive())?.values().to_vec();
    let bs = HostTensor::new(beta.primitive())?;
    let (xs, bs) = (host.values(), bs.values());
    let l = xs.len() / (batch * channels).max(1);
    let n = (batch * l) as f64;
    // Two passes per channel (mean, then centred squares) for accuracy.
    let stats: Vec<(f32, f32)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let rows = (0..batch).map(|b| &xs[(b * channels + c) * l..][..l]);
            let sum: f64 = rows.clone().map(|r| lane_sum(r, |v| v) as f64).sum();
            let mean = (sum / n) as f32;
            let squares = |v: f32| (v - mean) * (v - mean);
            let sq: f64 = rows.map(|r| lane_sum(r, squares) as f64).sum();
            (mean, (sq / n) as f32)
        })
        .collect();
    let mean: Vec<f32> = stats.iter().map(|s| s.0).collect();
    let var: Vec<f32> = stats.iter().map(|s| s.1).collect();
    let inv_std: Vec<f32> = var
        .iter()
        .map(|v| (1.0 / (*v as f64 + epsilon).sqrt()) as f32)
        .collect();
    let fill = |y: &mut [MaybeUninit<f32>]| {
        y.par_chunks_mut(l)
            .zip(xs.par_chunks(l))
            .with_min_len(GRAIN.div_ceil(l.max(1)))
            .enumerate()
            .for_each(|(row, (y, x))| {
                let c = row % channels;
                let a = gs[c] * inv_std[c];
                let b = bs[c] - mean[c] * a;
                match slope {
                    None => {
                        for (o, &v) in y.iter_mut().zip(x) {
                            o.write(v * a + b);
                        }
                    }
                    Some(s) => {
                        for (o, &v) in y.iter_mut().zip(x) {
                            let z = v * a + b;
                            o.write(leaky(z, z, s));
                        }
                    }
                }
            });
    };
    // SAFETY: rows of `l` values of the output and of `xs` (the same length), zipped: every
    // value of every row is written, in either branch.
    let y = unsafe { filled(xs.len(), fill) };
    let y = HostTensor::from_vec(y, host.shape().clone());
    let kind = FusedBatchNorm
        .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful();
    let out = match kind {
        OpsKind::Tracked(prep) => {
            let state = Saved {
                x: host,
                y: y.clone(),
                gamma: gs,
                mean: mean.clone(),
                inv_std,
                batch,
                slope,
            };
            prep.finish(state, y.into_flex())
        }
        OpsKind::UnTracked(prep) => prep.finish(y.into_flex()),
    };
    Some((out, mean, var))
}

#[cfg(test)]
#[path = "norm_tests.rs"]
mod tests;
