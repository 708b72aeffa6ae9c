//! A linear layer applied at every location of a feature map `[B, C, L]` (a 1x1 convolution),
//! as one operation on the CPU backend (`flex`).
//!
//! burn's `Linear` wants the features last: the conv head transposed `[B, C, L]` to
//! `[B, L, C]` and back around each layer, forward and backward, and the products ran as
//! `B` small batched products. Here each sample is one product in the map's own layout,
//! `Y_b [O, L] = W^T [O, C] x X_b [C, L] (+ bias)`, samples spread over threads; backward
//! `dX_b = W dY_b`, `dW = sum_b X_b dY_b^T` (partial sums per run of samples, added in a fixed
//! order) and `dbias = sum_b sum_l dY_b`. Other backends and non-`f32` tensors use
//! `Linear::forward` on the transposed map; values and gradients are tested against it.

use crate::host::{
    AdFlex, AdTensor, HostTensor, Operand, Store, autodiff_primitive, matmul, plain_primitive,
    sum_in_order, zeros,
};
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::Flex;
use rayon::prelude::*;

/// `linear` applied to every location of `x` `[B, C, L]`, giving `[B, O, L]`: equal to
/// `linear.forward(x.swap_dims(1, 2)).swap_dims(1, 2)`, through one fused operation on the CPU
/// backend.
pub fn pointwise(linear: &Linear, x: Tensor<3>) -> Tensor<3> {
    match fused(linear, &x) {
        Some(y) => y,
        None => linear.forward(x.swap_dims(1, 2)).swap_dims(1, 2),
    }
}

/// Sizes: `batch` samples of `c` channels at `l` locations, `o` outputs.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    c: usize,
    l: usize,
    o: usize,
}

fn fused(linear: &Linear, x: &Tensor<3>) -> Option<Tensor<3>> {
    let [batch, c, l] = x.dims();
    let [wc, o] = linear.weight.dims();
    if wc != c {
        return None; // burn's path reports the mismatch
    }
    let d = Dims { batch, c, l, o };
    let w = linear.weight.val();
    let bias = linear.bias.as_ref().map(|b| b.val());
    if x.device().is_autodiff() {
        let px = autodiff_primitive(x)?;
        let pw = autodiff_primitive(&w)?;
        let out = match bias {
            Some(b) => tracked([px, pw, autodiff_primitive(&b)?], d)?,
            None => tracked([px, pw], d)?,
        };
        return Some(Tensor::from_primitive::<AdFlex>(out));
    }
    let xs = HostTensor::new(&plain_primitive(x)?)?;
    let ws = HostTensor::new(&plain_primitive(&w)?)?;
    let bs = match bias {
        Some(b) => Some(HostTensor::new(&plain_primitive(&b)?)?),
        None => None,
    };
    let y = forward(
        xs.values(),
        ws.values(),
        bs.as_ref().map(HostTensor::values),
        d,
    );
    Some(Tensor::from_primitive::<Flex>(
        HostTensor::from_vec(y, [batch, o, l]).into_flex(),
    ))
}

/// Samples per parallel piece: enough work per piece to outweigh its scheduling.
fn samples_per_piece(d: Dims) -> usize {
    (1usize << 16).div_ceil((d.c * d.o * d.l).max(1)).max(1)
}

/// The output `[B, O, L]`.
fn forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, d: Dims) -> Vec<f32> {
    let Dims { c, l, o, .. } = d;
    let mut y = zeros(d.batch * o * l);
    y.par_chunks_mut(o * l)
        .zip(x.par_chunks(c * l))
        .with_min_len(samples_per_piece(d))
        .for_each(|(yb, xb)| {
            let accumulate = match bias {
                Some(bias) => {
                    for (row, b) in yb.chunks_mut(l).zip(bias) {
                        row.fill(*b);
                    }
                    true
                }
                None => false,
            };
            let (wt, xm) = (Operand::transposed(w, o), Operand::rows(xb, l));
            let store = if accumulate { Store::ADD } else { Store::SET };
            matmul(yb, (o, l, c), wt, xm, store);
        });
    y
}

#[derive(Debug)]
struct FusedPointwise;

#[derive(Debug, Clone)]
struct Saved {
    x: HostTensor,
    w: HostTensor,
    d: Dims,
}

fn tracked<const N: usize>(parents: [AdTensor; N], d: Dims) -> Option<AdTensor> {
    let xs = HostTensor::new(parents[0].primitive())?;
    let ws = HostTensor::new(parents[1].primitive())?;
    let bs = match parents.get(2) {
        Some(b) => Some(HostTensor::new(b.primitive())?),
        None => None,
    };
    let y = forward(
        xs.values(),
        ws.values(),
        bs.as_ref().map(HostTensor::values),
        d,
    );
    let y = HostTensor::from_vec(y, [d.batch, d.o, d.l]).into_flex();
    let nodes = parents.map(|p| p.node());
    Some(
        match FusedPointwise
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(Saved { x: xs, w: ws, d }, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
    )
}

impl<const N: usize> Backward<Flex, N> for FusedPointwise {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved { x, w, d } = ops.state;
        let Some(dy) = HostTensor::new(&grads.consume::<Flex>(&ops.node)) else {
            return;
        };
        let (xv, wv, dyv) = (x.values(), w.values(), dy.values());
        let Dims { c, l, o, .. } = d;
        let parents = ops.parents;
        let (px, pw) = (parents[0].clone(), parents[1].clone());
        let pb = parents.get(2).cloned().flatten();
        if let Some(node) = px {
            // dX_b [C, L] = W [C, O] x dY_b [O, L].
            let mut dx = zeros(d.batch * c * l);
            dx.par_chunks_mut(c * l)
                .zip(dyv.par_chunks(o * l))
                .with_min_len(samples_per_piece(d))
                .for_each(|(dxb, dyb)| {
                    let (wm, dym) = (Operand::rows(wv, o), Operand::rows(dyb, l));
                    matmul(dxb, (c, l, o), wm, dym, Store::SET);
                });
            let dx = HostTensor::from_vec(dx, x.shape().clone());
            grads.register::<Flex>(node.id, dx.into_flex());
        }
        if pw.is_none() && pb.is_none() {
            return;
        }
        // Partial sums of dW [C, O] and dbias [O] per run of samples, added in order.
        let threads = rayon::current_num_threads().max(1);
        let run = d.batch.div_ceil(threads).max(1);
        let want_w = pw.is_some();
        let partials: Vec<(Vec<f32>, Vec<f64>)> = xv
            .par_chunks(run * c * l)
            .zip(dyv.par_chunks(run * o * l))
            .map(|(xs, dys)| {
                let mut dw = vec![0.0f32; if want_w { c * o } else { 0 }];
                let mut db = vec![0.0f64; o];
                for (xb, dyb) in xs.chunks(c * l).zip(dys.chunks(o * l)) {
                    if want_w {
                        let (xm, dyt) = (Operand::rows(xb, l), Operand::transposed(dyb, l));
                        matmul(&mut dw, (c, o, l), xm, dyt, Store::ADD);
                    }
                    for (acc, row) in db.iter_mut().zip(dyb.chunks(l)) {
                        *acc += row.iter().sum::<f32>() as f64;
                    }
                }
                (dw, db)
            })
            .collect();
        let (dw_parts, db_parts): (Vec<_>, Vec<_>) = partials.into_iter().unzip();
        let dw = sum_in_order(dw_parts, if want_w { c * o } else { 0 });
        let db = sum_in_order(db_parts, o);
        if let Some(node) = pw {
            let dw = HostTensor::from_vec(dw, w.shape().clone());
            grads.register::<Flex>(node.id, dw.into_flex());
        }
        if let Some(node) = pb {
            let db: Vec<f32> = db.into_iter().map(|v| v as f32).collect();
            grads.register::<Flex>(node.id, HostTensor::from_vec(db, [o]).into_flex());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{close, read};
    use burn::module::Param;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, Distribution};

    #[test]
    fn fused_pointwise_equals_burns_linear_in_value_and_gradients() {
        let device = Device::flex().autodiff();
        // (batch, c, l, o, bias): the conv head's shapes, odd sizes, batch 1, one location.
        for (b, c, l, o, bias) in [
            (6, 5, 7, 4, true),
            (3, 8, 16, 8, false),
            (1, 3, 5, 2, true),
            (9, 4, 1, 3, true),
        ] {
            let linear = LinearConfig::new(c, o).with_bias(bias).init(&device);
            let linear = Linear {
                weight: Param::from_tensor(linear.weight.val().require_grad()),
                bias: linear
                    .bias
                    .map(|p| Param::from_tensor(p.val().add_scalar(0.3).detach().require_grad())),
            };
            let x = Tensor::<3>::random([b, c, l], Distribution::Normal(0.0, 1.0), &device);
            assert!(fused(&linear, &x).is_some(), "the fused path applies");
            let mut results = Vec::new();
            for use_fused in [true, false] {
                let xi = x.clone().require_grad();
                let y = if use_fused {
                    pointwise(&linear, xi.clone())
                } else {
                    linear.forward(xi.clone().swap_dims(1, 2)).swap_dims(1, 2)
                };
                let up = y.clone().detach().sin(); // a fixed, non-uniform upstream gradient
                let g = (y.clone() * up).sum().backward();
                let mut r = vec![
                    read(y),
                    read(xi.grad(&g).unwrap()),
                    read(linear.weight.val().grad(&g).unwrap()),
                ];
                if let Some(bp) = &linear.bias {
                    r.push(read(bp.val().grad(&g).unwrap()));
                }
                results.push(r);
            }
            let what = format!("b{b} c{c} l{l} o{o} bias {bias}");
            for (i, name) in ["output", "dx", "dw", "dbias"]
                .iter()
                .enumerate()
                .take(results[0].len())
            {
                close(
                    &results[0][i],
                    &results[1][i],
                    1e-5,
                    &format!("{what} {name}"),
                );
            }
        }
    }

    #[test]
    fn inference_on_the_plain_device_matches_and_mismatched_sizes_fall_back() {
        let device = Device::flex();
        let linear = LinearConfig::new(4, 3).init(&device);
        let x = Tensor::<3>::random([2, 4, 5], Distribution::Default, &device);
        close(
            &read(pointwise(&linear, x.clone())),
            &read(linear.forward(x.swap_dims(1, 2)).swap_dims(1, 2)),
            1e-5,
            "plain",
        );
        let other = Tensor::<3>::random([2, 5, 5], Distribution::Default, &device);
        assert!(fused(&linear, &other).is_none());
    }
}
