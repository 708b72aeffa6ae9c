//! Tests of `norm`.

use super::*;
use crate::test_util::{close, normal_values, read};
use burn::module::Param;
use burn::nn::BatchNormConfig;
use burn::tensor::{Device, Distribution};

/// Output, input/gamma/beta gradients and running statistics after two steps.
fn run<const D: usize>(
    x: &Tensor<D>,
    upstream: &Tensor<D>,
    act: Activation,
    fused: bool,
    running: RunningVariance,
) -> Vec<Vec<f32>> {
    let device = x.device();
    let c = x.dims()[1];
    let mut bn = BatchNormConfig::new(c).with_momentum(0.3).init(&device);
    // Fixed, non-trivial affine parameters (no global random state: tests run in parallel).
    let gamma: Vec<f32> = (0..c).map(|i| 1.0 + 0.4 * (i as f32 * 1.3).sin()).collect();
    let beta: Vec<f32> = (0..c).map(|i| 0.3 * (i as f32 * 0.7).cos()).collect();
    bn.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(gamma, [c]), &device));
    bn.beta = Param::from_tensor(Tensor::from_data(TensorData::new(beta, [c]), &device));
    let mut out = Vec::new();
    for step in 0..2 {
        let xi = x.clone().mul_scalar(1.0 + step as f64).require_grad();
        let y = if fused {
            super::fused(&bn, &xi, act, running).expect("the fused path applies")
        } else {
            generic(&bn, xi.clone(), act, running)
        };
        let grads = (y.clone() * upstream.clone()).sum().backward();
        if step == 1 {
            out.push(read(y));
            out.push(read(xi.grad(&grads).unwrap()));
            out.push(read(bn.gamma.val().grad(&grads).unwrap()));
            out.push(read(bn.beta.val().grad(&grads).unwrap()));
        }
    }
    out.push(read(bn.running_mean.value_sync()));
    out.push(read(bn.running_var.value_sync()));
    out
}

fn check<const D: usize>(x: Tensor<D>, what: &str) {
    // A fixed upstream gradient: the same numbers on every run.
    let dims = x.dims();
    let len = dims.iter().product::<usize>();
    let values = TensorData::new(normal_values(len, 7, 0.0, 1.0), [len]);
    let upstream = Tensor::<1>::from_data(values, &x.device()).reshape(dims);
    for act in [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu(0.2),
    ] {
        for running in [RunningVariance::Biased, RunningVariance::Unbiased] {
            let fused = run(&x, &upstream, act, true, running);
            let plain = run(&x, &upstream, act, false, running);
            let names = [
                "output",
                "dx",
                "dgamma",
                "dbeta",
                "running mean",
                "running var",
            ];
            for ((f, p), name) in fused.iter().zip(&plain).zip(names) {
                close(f, p, 2e-5, &format!("{what} {act:?} {running:?} {name}"));
            }
        }
    }
}

#[test]
fn the_unbiased_running_variance_is_n_over_n_minus_1_of_the_biased_one() {
    // Two channels of 2 x 3 values: var_biased = mean squared deviation; PyTorch's running
    // variance follows var_biased * 6 / 5.
    let device = Device::flex().autodiff();
    let x: Vec<f32> = vec![1., 2., 4., 0., 0., 3., 7., 1., 1., 2., 5., 2.];
    let x = Tensor::<3>::from_data(TensorData::new(x, [2, 2, 3]), &device);
    let expected_mean = [
        (1. + 2. + 4. + 7. + 1. + 1.) / 6.,
        (0. + 0. + 3. + 2. + 5. + 2.) / 6.,
    ];
    let biased = |vals: [f32; 6], m: f32| vals.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / 6.0;
    let var = [
        biased([1., 2., 4., 7., 1., 1.], expected_mean[0]),
        biased([0., 0., 3., 2., 5., 2.], expected_mean[1]),
    ];
    for running in [RunningVariance::Biased, RunningVariance::Unbiased] {
        let factor = if running == RunningVariance::Unbiased {
            1.2
        } else {
            1.0
        };
        for fused in [true, false] {
            let bn = BatchNormConfig::new(2).init(&device);
            let _ = if fused {
                super::fused(&bn, &x, Activation::Identity, running).unwrap()
            } else {
                generic(&bn, x.clone(), Activation::Identity, running)
            };
            let rv = read(bn.running_var.value_sync());
            let rm = read(bn.running_mean.value_sync());
            for c in 0..2 {
                let want = 0.9 + 0.1 * var[c] * factor;
                assert!(
                    (rv[c] - want).abs() < 1e-6,
                    "{running:?} fused={fused}: {rv:?}"
                );
                assert!((rm[c] - 0.1 * expected_mean[c]).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn fused_batch_norm_equals_burns_in_value_gradient_and_running_statistics() {
    let device = Device::flex().autodiff();
    // Fixed draws (a seed per shape): the same numbers on every run.
    let n = |shape: Vec<usize>| {
        let len = shape.iter().product::<usize>();
        let values = normal_values(len, len as u64, 0.5, 2.0);
        Tensor::<1>::from_data(TensorData::new(values, [len]), &device)
    };
    check(n(vec![6, 5]).reshape([6, 5]), "[6, 5]");
    check(n(vec![4, 3, 7]).reshape([4, 3, 7]), "[4, 3, 7]");
    check(n(vec![2, 3, 4, 5]).reshape([2, 3, 4, 5]), "[2, 3, 4, 5]");
    check(
        n(vec![2, 2, 3, 2, 2]).reshape([2, 2, 3, 2, 2]),
        "[2, 2, 3, 2, 2]",
    );
    // A transposed (non-contiguous) input, as the conv head passes it.
    check(
        n(vec![3, 4, 5]).reshape([3, 4, 5]).swap_dims(1, 2),
        "[3, 5, 4]^T",
    );
}

#[test]
fn fused_activations_equal_burns() {
    let device = Device::flex().autodiff();
    let x = Tensor::<1>::random([2 * 3 * 4 * 5], Distribution::Normal(0.0, 1.0), &device)
        .reshape([2, 3, 4, 5])
        .swap_dims(1, 3);
    let w = Tensor::random(x.dims(), Distribution::Normal(0.0, 1.0), &device);
    for act in [
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Identity,
    ] {
        let run = |fused: bool| {
            let xi = x.clone().require_grad();
            let y = if fused {
                activate(xi.clone(), act)
            } else {
                act.apply(xi.clone())
            };
            let g = (y.clone() * w.clone()).sum().backward();
            (read(y), read(xi.grad(&g).unwrap()))
        };
        let (a, b) = (run(true), run(false));
        assert_eq!(a.0, b.0, "{act:?} value");
        close(&a.1, &b.1, 1e-6, &format!("{act:?} gradient"));
    }
}

#[test]
fn inference_and_plain_devices_use_burns_path() {
    let device = Device::flex();
    let bn = BatchNormConfig::new(3).init(&device);
    let x = Tensor::<3>::random([2, 3, 4], Distribution::Default, &device);
    assert!(super::fused(&bn, &x, Activation::Relu, RunningVariance::Biased).is_none());
    let a = read(batch_norm(&bn, x.clone(), Activation::Relu));
    let b = read(relu(bn.forward(x)));
    assert_eq!(a, b);
}
