use super::*;
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Distribution, Tensor};
use rand::{SeedableRng, rngs::StdRng};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn images(b: usize, c: usize, device: &Device) -> Tensor<4> {
    let v: Vec<f32> = (0..b * c * 32 * 32)
        .map(|i| ((i * 37) % 101) as f32 / 101.0)
        .collect();
    Tensor::<1>::from_floats(v.as_slice(), device).reshape([b, c, 32, 32])
}

#[test]
fn encoder_2d_shapes_for_grey_and_colour() {
    let device = Device::flex();
    for c in [1, 3] {
        let enc = DcganEncoder2dConfig::new()
            .with_in_channels(c)
            .init(&device, &mut rng(1))
            .unwrap();
        let out = enc.forward(images(5, c, &device));
        assert_eq!(out.conv.dims(), [5, 64, 64]);
        assert_eq!(out.z.dims(), [5, 64]);
        let enc = DcganEncoder2dConfig::new()
            .with_in_channels(c)
            .with_latent_dim(16)
            .init(&device, &mut rng(1))
            .unwrap();
        assert_eq!(enc.forward(images(2, c, &device)).z.dims(), [2, 16]);
    }
}

#[test]
fn tapped_map_is_the_raw_second_convolution() {
    let device = Device::flex();
    let enc = DcganEncoder2dConfig::new()
        .init(&device, &mut rng(2))
        .unwrap();
    let x = images(3, 1, &device);
    let out = enc.forward(x.clone());
    let manual = enc
        .conv2
        .forward(leaky_relu(enc.conv1.forward(x), 0.2))
        .reshape([3, 64, 64]);
    let (a, b) = (values(out.conv), values(manual));
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6));
    // Raw conv output: not normalised, so not every channel is zero-mean / unit-variance.
    assert!(a.iter().any(|v| v.abs() > 1e-3));
}

#[test]
fn same_seed_same_model_different_seed_different_model() {
    let device = Device::flex();
    let x = images(2, 1, &device);
    let z = |seed| {
        let enc = DcganEncoder2dConfig::new()
            .init(&device, &mut rng(seed))
            .unwrap();
        values(enc.forward(x.clone()).z)
    };
    assert_eq!(z(7), z(7));
    assert_ne!(z(7), z(8));
}

#[test]
fn encoder_3d_shapes() {
    let device = Device::flex();
    let enc = DcganEncoder3dConfig::new()
        .init(&device, &mut rng(3))
        .unwrap();
    let x = Tensor::<5>::random([1, 1, 64, 64, 64], Distribution::Uniform(0.0, 1.0), &device);
    let out = enc.forward(x);
    assert_eq!(out.conv.dims(), [1, 128, 512]);
    assert_eq!(out.z.dims(), [1, 64]);
    assert!(values(out.z).iter().all(|v| v.is_finite()));
}

#[test]
fn decoders_produce_images_in_the_unit_interval() {
    let device = Device::flex();
    let z = Tensor::<2>::random([3, 64], Distribution::Normal(0.0, 3.0), &device);
    let dec = DcganDecoder2dConfig::new()
        .with_out_channels(3)
        .init(&device, &mut rng(4))
        .unwrap();
    let img = dec.forward(z.clone());
    assert_eq!(img.dims(), [3, 3, 32, 32]);
    assert!(values(img).iter().all(|v| *v >= 0.0 && *v <= 1.0));
    let dec3 = DcganDecoder3dConfig::new()
        .init(&device, &mut rng(5))
        .unwrap();
    let vol = dec3.forward(z.slice([0..1, 0..64]));
    assert_eq!(vol.dims(), [1, 1, 64, 64, 64]);
    assert!(values(vol).iter().all(|v| *v >= 0.0 && *v <= 1.0));
}

#[test]
fn conv_head_shortcut_starts_near_identity() {
    let device = Device::flex();
    let head = ConvHeadConfig::new(64).init(&device, &mut rng(6)).unwrap();
    let w = values(head.shortcut.weight.val());
    for i in 0..64 {
        for j in 0..64 {
            let expected = if i == j { 1.0 } else { 0.0 };
            assert!((w[i * 64 + j] - expected).abs() <= 0.01);
        }
    }
    let x = Tensor::<3>::random([4, 64, 9], Distribution::Normal(0.0, 1.0), &device);
    assert_eq!(head.forward(x).dims(), [4, 64, 9]);
    // Wider input (the 3D encoder's 128 channels): a plain Xavier shortcut.
    let head = ConvHeadConfig::new(128).init(&device, &mut rng(6)).unwrap();
    let x = Tensor::<3>::random([2, 128, 5], Distribution::Normal(0.0, 1.0), &device);
    assert_eq!(head.forward(x).dims(), [2, 64, 5]);
}

#[test]
fn heads_and_encoder_train_end_to_end() {
    let device = Device::flex().autodiff();
    let mut r = rng(9);
    let enc = DcganEncoder2dConfig::new().init(&device, &mut r).unwrap();
    let ch = ConvHeadConfig::new(64).init(&device, &mut r).unwrap();
    let lh = LatentHeadConfig::new().init(&device, &mut r).unwrap();
    let out = enc.forward(images(4, 1, &device));
    let loss = ch.forward(out.conv).powi_scalar(2).mean() + lh.forward(out.z).powi_scalar(2).mean();
    let grads = loss.backward();
    let flat =
        |g: Option<Vec<f32>>, name: &str| g.unwrap_or_else(|| panic!("no gradient for {name}"));
    let grads_of = [
        ("conv1", enc.conv1.weight.grad(&grads).map(values)),
        ("conv4", enc.conv4.weight.grad(&grads).map(values)),
        ("head", ch.conv1.weight.grad(&grads).map(values)),
        ("latent", lh.fc1.weight.grad(&grads).map(values)),
    ];
    for (name, g) in grads_of {
        let g = flat(g, name);
        assert!(g.iter().all(|v| v.is_finite()), "{name}");
        assert!(g.iter().any(|v| *v != 0.0), "{name} gradient is all zero");
    }
}

#[test]
fn zero_sizes_are_errors() {
    let device = Device::flex();
    let e = DcganEncoder2dConfig::new()
        .with_in_channels(0)
        .init(&device, &mut rng(0))
        .unwrap_err();
    assert!(e.to_string().contains("in_channels"));
    assert!(
        LatentHeadConfig::new()
            .with_out_features(0)
            .init(&device, &mut rng(0))
            .is_err()
    );
    assert!(ConvHeadConfig::new(0).init(&device, &mut rng(0)).is_err());
    assert!(
        DcganDecoder3dConfig::new()
            .with_latent_dim(0)
            .init(&device, &mut rng(0))
            .is_err()
    );
}
