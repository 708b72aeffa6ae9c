//! The fused convolution against burn's, in value and gradients.

use super::products::{KEEP_COLUMNS, KEEP_LIMIT};
use super::*;
use crate::test_util::{close, read};
use std::sync::atomic::Ordering::Relaxed;

/// Relative tolerance of the fused convolution against burn's.
const TOL: f32 = 1e-4;
use burn::module::Param;
use burn::nn::conv::{Conv2dConfig, Conv3dConfig};
use burn::tensor::{Device, Distribution};

/// (output, dx, dw) of the fused path and of burn's, with a random upstream gradient.
fn compare<const D: usize>(
    x: Tensor<D>,
    fused_path: impl Fn(Tensor<D>) -> Tensor<D>,
    generic: impl Fn(Tensor<D>) -> Tensor<D>,
    weight: impl Fn() -> Tensor<D>,
    what: &str,
) {
    let mut results = Vec::new();
    for fused in [true, false] {
        let xi = x.clone().require_grad();
        let y = if fused {
            fused_path(xi.clone())
        } else {
            generic(xi.clone())
        };
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
        let (fused, generic) = (|x| conv2d_forward(&conv, x), |x| conv.forward(x));
        compare(x, fused, generic, || conv.weight.val(), &what);
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
        let (fused, generic) = (|x| conv3d_forward(&conv, x), |x| conv.forward(x));
        compare(x, fused, generic, || conv.weight.val(), &what);
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
