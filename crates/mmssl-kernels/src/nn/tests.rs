//! The layers against burn's own operations, on the fused path and the generic one.

use super::*;
use crate::norm::Activation;
use crate::test_util::{close, read};
use burn::module::Param;
use burn::nn::LinearConfig;
use burn::nn::conv::{ConvTranspose2dConfig, ConvTranspose3dConfig};
use burn::tensor::activation::leaky_relu;
use burn::tensor::module::{conv2d, conv3d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn conv_layers_equal_burns_convolutions_in_2d_and_3d() {
    // Fused (autodiff and plain CPU) and the generic route (an integer-valued f32 tensor
    // still fuses; the generic path is forced by a weight shape the fused one refuses: none
    // here, so both are compared to burn's own function).
    for device in [Device::flex(), Device::flex().autodiff()] {
        let x = random([3, 2, 8, 8], &device);
        let w = random([4, 2, 4, 4], &device);
        let layer = Conv::new(Param::from_tensor(w.clone()), 2, 1);
        let want = conv2d(
            x.clone(),
            w,
            None,
            ConvOptions::new([2, 2], [1, 1], [1, 1], 1),
        );
        let got = layer.forward(x);
        assert_eq!(got.dims(), [3, 4, 4, 4]);
        close(&read(got), &read(want), 1e-4, "conv 2D");

        let x = random([2, 2, 6, 6, 6], &device);
        let w = random([3, 2, 4, 4, 4], &device);
        let layer = Conv::new(Param::from_tensor(w.clone()), 2, 1);
        let want = conv3d(
            x.clone(),
            w,
            None,
            ConvOptions::new([2; 3], [1; 3], [1; 3], 1),
        );
        let got = layer.forward(x);
        assert_eq!(got.dims(), [2, 3, 3, 3, 3]);
        close(&read(got), &read(want), 1e-4, "conv 3D");
    }
}

#[test]
fn transposed_conv_layers_equal_burns_layers() {
    let device = Device::flex();
    let burn2 = ConvTranspose2dConfig::new([3, 2], [4, 4])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .with_bias(false)
        .init(&device);
    let ours = ConvTranspose::new(burn2.weight.clone(), 2, 1);
    let x = random([2, 3, 4, 4], &device);
    let got = ours.forward(x.clone());
    assert_eq!(got.dims(), [2, 2, 8, 8]);
    close(&read(got), &read(burn2.forward(x)), 1e-5, "deconv 2D");

    let burn3 = ConvTranspose3dConfig::new([2, 3], [4, 4, 4])
        .with_bias(false)
        .init(&device);
    let ours = ConvTranspose::new(burn3.weight.clone(), 1, 0);
    let x = random([2, 2, 1, 1, 1], &device);
    let got = ours.forward(x.clone());
    assert_eq!(got.dims(), [2, 3, 4, 4, 4]);
    close(&read(got), &read(burn3.forward(x)), 1e-5, "deconv 3D");
}

#[test]
fn norm_act_and_act_equal_burns_layers_and_update_the_running_statistics() {
    let device = Device::flex().autodiff();
    let layer = NormActConfig::new(3, Activation::LeakyRelu(0.2)).init(&device);
    let x = random([4, 3, 5, 5], &device);
    let want = leaky_relu(layer.norm.forward(x.clone()), 0.2);
    let before = read(layer.norm.running_mean.value());
    let got = layer.forward(x.clone());
    close(&read(got), &read(want), 1e-5, "norm + leaky relu");
    // burn's forward above and ours each moved the running mean by momentum 0.1.
    assert_ne!(read(layer.norm.running_mean.value()), before);

    let act = Act::new(Activation::Relu);
    let got = act.forward(x.clone());
    close(&read(got), &read(x.clone().clamp_min(0.0)), 0.0, "relu");
    let identity = Act::new(Activation::Identity);
    assert_eq!(read(identity.forward(x.clone())), read(x));
}

#[test]
fn pointwise_layer_equals_the_linear_map_at_every_location() {
    let device = Device::flex().autodiff();
    let layer = Pointwise::new(LinearConfig::new(4, 3).init(&device));
    let x = random([2, 4, 5], &device);
    let want = layer
        .linear
        .forward(x.clone().swap_dims(1, 2))
        .swap_dims(1, 2);
    close(&read(layer.forward(x)), &read(want), 1e-5, "pointwise");
}

#[test]
#[should_panic(expected = "rank 4 (2D) or 5 (3D)")]
fn spatial_layers_refuse_other_ranks() {
    let device = Device::flex();
    let _ = Conv::new(Param::from_tensor(random([2, 2, 3], &device)), 1, 0);
}
