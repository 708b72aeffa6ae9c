use super::*;
use burn::tensor::activation::leaky_relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use rand::{SeedableRng, rngs::StdRng};

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The default 2D encoder drawn with `seed`.
fn encoder_2d(device: &Device, seed: u64) -> DcganEncoder2d {
    DcganEncoder2dConfig::new()
        .init(device, &mut rng(seed))
        .unwrap()
}

/// The default 3D encoder drawn with `seed`.
fn encoder_3d(device: &Device, seed: u64) -> DcganEncoder3d {
    DcganEncoder3dConfig::new()
        .init(device, &mut rng(seed))
        .unwrap()
}

/// The default 3D decoder drawn with `seed`.
fn decoder_3d(device: &Device, seed: u64) -> DcganDecoder3d {
    DcganDecoder3dConfig::new()
        .init(device, &mut rng(seed))
        .unwrap()
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
    let enc = encoder_2d(&device, 2);
    let x = images(3, 1, &device);
    let out = enc.forward(x.clone());
    // burn's own convolution on the encoder's weights, not the layers under test.
    let conv = |x: Tensor<4>, layer: usize, stride: usize, pad: usize| {
        conv2d(
            x,
            enc.convs[layer].weight.val(),
            None,
            ConvOptions::new([stride; 2], [pad; 2], [1; 2], 1),
        )
    };
    let manual = conv(leaky_relu(conv(x, 0, 2, 1), 0.2), 1, 2, 1).reshape([3, 64, 64]);
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
        let enc = encoder_2d(&device, seed);
        values(enc.forward(x.clone()).z)
    };
    assert_eq!(z(7), z(7));
    assert_ne!(z(7), z(8));
}

#[test]
fn encoder_3d_shapes() {
    let device = Device::flex();
    let enc = encoder_3d(&device, 3);
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
    let dec3 = decoder_3d(&device, 5);
    let vol = dec3.forward(z.slice([0..1, 0..64]));
    assert_eq!(vol.dims(), [1, 1, 64, 64, 64]);
    assert!(values(vol).iter().all(|v| *v >= 0.0 && *v <= 1.0));
}

#[test]
fn conv_head_shortcut_starts_near_identity() {
    let device = Device::flex();
    let head = ConvHeadConfig::new(64).init(&device, &mut rng(6)).unwrap();
    let w = values(head.shortcut.linear.weight.val());
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
        ("conv1", enc.convs[0].weight.grad(&grads).map(values)),
        ("conv4", enc.convs[3].weight.grad(&grads).map(values)),
        ("head", ch.conv1.linear.weight.grad(&grads).map(values)),
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

/// The weights the models had before 2D and 3D came from one table (each layer its own field,
/// drawn in layer order): Xavier-uniform `U(-b, b)` with `b = gain sqrt(6 / ((in + out) k))`,
/// `k` the kernel's volume, drawn value by value in row-major order of `[out, in, k...]`
/// (`[in, out, k...]` for the decoders' transposed convolutions), LeakyReLU(0.2)'s gain for
/// every layer but a decoder's last (gain 1).
fn reference_weights(seed: u64, layers: &[(usize, usize, f64)], k: usize) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    layers
        .iter()
        .map(|&(a, b, gain)| {
            let bound = gain * (6.0 / ((a + b) * k) as f64).sqrt();
            (0..a * b * k)
                .map(|_| rand::RngExt::random_range(&mut r, -bound..bound) as f32)
                .collect()
        })
        .collect()
}

/// Every value of `weights`, in order.
fn concat<const D: usize>(weights: impl Iterator<Item = Tensor<D>>) -> Vec<f32> {
    weights.flat_map(values).collect()
}

/// The layers `(a, b, gain)` along `channels` as the separate models drew them: `[out, in]`
/// weights for an encoder; `[in, out]` (transposed convolutions) for a decoder, whose last
/// layer has gain 1.
fn chain(channels: &[usize], decoder: bool) -> Vec<(usize, usize, f64)> {
    let g = (2.0f64 / 1.04).sqrt();
    let last = channels.len() - 2;
    channels
        .windows(2)
        .enumerate()
        .map(|(i, w)| match decoder {
            false => (w[1], w[0], g),
            true => (w[0], w[1], if i == last { 1.0 } else { g }),
        })
        .collect()
}

#[test]
fn the_tables_draw_the_same_weights_as_the_separate_models_did() {
    let device = Device::flex();
    let e2 = DcganEncoder2dConfig::new()
        .with_in_channels(3)
        .with_latent_dim(16);
    let e2 = e2.init(&device, &mut rng(21)).unwrap();
    let e3 = encoder_3d(&device, 22);
    let d2 = DcganDecoder2dConfig::new().with_out_channels(3);
    let d2 = d2.init(&device, &mut rng(23)).unwrap();
    let d3 = decoder_3d(&device, 24);
    let got = [
        concat(e2.convs.iter().map(|c| c.weight.val())),
        concat(e3.convs.iter().map(|c| c.weight.val())),
        concat(d2.deconvs.iter().map(|c| c.weight.val())),
        concat(d3.deconvs.iter().map(|c| c.weight.val())),
    ];
    let layers = [
        chain(&[3, 32, 64, 128, 16], false),
        chain(&[1, 32, 64, 128, 256, 64], false),
        chain(&[64, 128, 64, 32, 3], true),
        chain(&[64, 256, 128, 64, 32, 1], true),
    ];
    for (i, (got, layers)) in got.iter().zip(&layers).enumerate() {
        let kernel_volume = if i % 2 == 0 { 16 } else { 64 };
        let want = reference_weights(21 + i as u64, layers, kernel_volume).concat();
        assert_eq!(*got, want, "case {i}");
    }
    assert_eq!(e3.convs[1].weight.dims(), [64, 32, 4, 4, 4]);
    assert_eq!(e3.tapped_channels(), 128);
    assert_eq!(d2.deconvs[0].weight.dims(), [64, 128, 4, 4]);
}

#[test]
fn the_2d_and_3d_models_follow_their_tables() {
    use crate::dcgan::{DECODER_2D, DECODER_3D, ENCODER_2D, ENCODER_3D, TAP_2D, TAP_3D};
    let device = Device::flex();
    let e2 = encoder_2d(&device, 1);
    let e3 = encoder_3d(&device, 1);
    assert_eq!((e2.convs.len(), e2.tap), (ENCODER_2D.len(), TAP_2D));
    assert_eq!((e3.convs.len(), e3.tap), (ENCODER_3D.len(), TAP_3D));
    assert_eq!(e2.tapped_channels(), 64);
    // Batch norm where the table says, and nowhere else.
    let norms =
        |posts: &[crate::dcgan::Post]| posts.iter().map(|p| p.has_norm()).collect::<Vec<_>>();
    assert_eq!(
        norms(&e2.posts),
        ENCODER_2D.iter().map(|l| l.norm).collect::<Vec<_>>()
    );
    assert_eq!(
        norms(&e3.posts),
        ENCODER_3D.iter().map(|l| l.norm).collect::<Vec<_>>()
    );
    let d2 = DcganDecoder2dConfig::new()
        .init(&device, &mut rng(1))
        .unwrap();
    let d3 = decoder_3d(&device, 1);
    assert_eq!(d2.deconvs.len(), DECODER_2D.len());
    assert_eq!(
        norms(&d3.posts),
        DECODER_3D.iter().map(|l| l.norm).collect::<Vec<_>>()
    );
}

#[test]
fn the_authors_variant_builds_their_heads_and_running_variance() {
    use mmssl_kernels::RunningVariance;
    let device = Device::flex();
    let bound = |w: &[f32]| w.iter().fold(0f32, |m, v| m.max(v.abs()));
    // 2D (64 -> 64): no shortcut bias, the identity exactly on the diagonal, noise elsewhere.
    let head = ConvHeadConfig::new(64)
        .with_variant(Variant::Authors)
        .init(&device, &mut rng(3))
        .unwrap();
    assert!(head.shortcut.linear.bias.is_none());
    let w = values(head.shortcut.linear.weight.val());
    for (k, v) in w.iter().enumerate() {
        if k / 64 == k % 64 {
            assert_eq!(*v, 1.0);
        } else {
            assert!(v.abs() < 0.01);
        }
    }
    assert_eq!(head.bn1.running, RunningVariance::Unbiased);
    assert_eq!(head.bn_out.running, RunningVariance::Unbiased);
    // 3D (128 -> 64): PyTorch's default U(-1/sqrt(128), 1/sqrt(128)).
    let head = ConvHeadConfig::new(128)
        .with_variant(Variant::Authors)
        .init(&device, &mut rng(3))
        .unwrap();
    let b = bound(&values(head.shortcut.linear.weight.val()));
    assert!(b <= 1.0 / 128f32.sqrt() && b > 0.8 / 128f32.sqrt(), "{b}");
    // The second layers' Xavier gain is ReLU's: the bound sqrt(2) * sqrt(6 / 128).
    let xavier = 2f32.sqrt() * (6.0f32 / 128.0).sqrt();
    let b = bound(&values(head.conv2.linear.weight.val()));
    assert!(b <= xavier && b > 0.9 * xavier, "{b}");
    let latent = LatentHeadConfig::new()
        .with_variant(Variant::Authors)
        .init(&device, &mut rng(3))
        .unwrap();
    let b = bound(&values(latent.fc2.weight.val()));
    assert!(b <= xavier && b > 0.9 * xavier, "{b}");
    assert_eq!(latent.bn.running, RunningVariance::Unbiased);
    // mmssl's own: a shortcut bias, gain 1, burn's biased running variance.
    let own = ConvHeadConfig::new(64).init(&device, &mut rng(3)).unwrap();
    assert!(own.shortcut.linear.bias.is_some());
    assert!(bound(&values(own.conv2.linear.weight.val())) <= (6.0f32 / 128.0).sqrt());
    assert_eq!(own.bn1.running, RunningVariance::Biased);
}

#[test]
fn the_width_scales_every_layer_and_the_variant_reaches_the_encoders_batch_norms() {
    use mmssl_kernels::RunningVariance;
    let device = Device::flex();
    let (table, tap) = (dcgan::ENCODER_3D, dcgan::TAP_3D);
    let options = EncoderOptions {
        width: 4,
        variant: Variant::Authors,
    };
    let e = DcganEncoder3d::from_table_with(table, tap, 1, 16, &options, &device, &mut rng(0));
    let e = e.unwrap();
    let channels: Vec<usize> = e.convs.iter().map(|c| c.weight.dims()[0]).collect();
    assert_eq!(channels, vec![4, 8, 16, 32, 16]);
    assert_eq!((e.width(), e.in_channels(), e.latent_dim()), (4, 1, 16));
    assert_eq!(e.tapped_channels(), 16);
    let norms: Vec<RunningVariance> = e
        .posts
        .iter()
        .filter_map(|p| p.norm.as_ref().map(|n| n.running))
        .collect();
    assert_eq!(norms, vec![RunningVariance::Unbiased; 3]);
    let out = e.forward(Tensor::zeros([1, 1, 64, 64, 64], &device));
    assert_eq!(out.conv.dims(), [1, 16, 512]);
    assert_eq!(out.z.dims(), [1, 16]);
    let (table, tap) = (dcgan::ENCODER_2D, dcgan::TAP_2D);
    let zero = EncoderOptions {
        width: 0,
        ..EncoderOptions::default()
    };
    let r = DcganEncoder2d::from_table_with(table, tap, 1, 64, &zero, &device, &mut rng(0));
    assert!(r.is_err());
    assert_eq!("Authors".parse::<Variant>().unwrap(), Variant::Authors);
    assert!("pytorch".parse::<Variant>().is_err());
}
