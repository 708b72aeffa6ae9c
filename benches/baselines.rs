//! The baselines' costly pieces on the default CPU backend (`flex`): the deep CCA loss
//! (float64 host eigensolver + analytic gradient) forward and forward+backward at the paper's
//! shapes (batch 64, 64-dimensional heads), and one training step's loss + backward of the AE,
//! DCCAE and MMVAE (K = 1 and K = 10) on batch 64 of 1x32x32 pairs.
//!
//! Run: `cargo bench --bench baselines`.

use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use mmssl::baselines::{DeepCca, DeepCcaConfig, HybridConfig, MmvaeConfig};
use mmssl::burn;
use mmssl::data::{Batch, ViewBatch};
use mmssl::train::Method;
use rand::{SeedableRng, rngs::StdRng};
use std::hint::black_box;

fn deep_cca(c: &mut Criterion) {
    let mut group = c.benchmark_group("deep_cca");
    group.sample_size(30);
    let cca = DeepCca::new(DeepCcaConfig::default());
    for (m, o) in [(64, 64), (256, 64), (64, 128)] {
        let device = Device::flex();
        let h1 = Tensor::<2>::random([m, o], Distribution::Normal(0.0, 1.0), &device);
        let h2 = h1.clone() + Tensor::<2>::random([m, o], Distribution::Normal(0.0, 1.0), &device);
        group.bench_function(format!("forward/B{m}_o{o}"), |b| {
            b.iter(|| black_box(cca.forward(h1.clone(), h2.clone()).unwrap().correlation))
        });
        let ad = Device::flex().autodiff();
        let a = Tensor::<2>::random([m, o], Distribution::Normal(0.0, 1.0), &ad).require_grad();
        let t = Tensor::<2>::random([m, o], Distribution::Normal(0.0, 1.0), &ad).require_grad();
        group.bench_function(format!("forward_backward/B{m}_o{o}"), |b| {
            b.iter(|| {
                let out = cca.forward(a.clone(), t.clone()).unwrap();
                black_box(out.loss.backward())
            })
        });
    }
    group.finish();
}

fn batch(device: &Device) -> Batch {
    let view = || {
        ViewBatch::Images(Tensor::random(
            [64, 1, 32, 32],
            Distribution::Uniform(0.0, 1.0),
            device,
        ))
    };
    Batch {
        views: vec![view(), view()],
        labels: vec![Some(0); 64],
    }
}

fn steps(c: &mut Criterion) {
    let mut group = c.benchmark_group("baseline_step");
    group.sample_size(10);
    let device = Device::flex().autodiff();
    let shapes = vec![vec![1, 32, 32], vec![1, 32, 32]];
    let b = batch(&device);
    let mut rng = StdRng::seed_from_u64(0);
    for (name, cfg) in [
        ("ae", HybridConfig::ae(64)),
        ("dccae", HybridConfig::dccae(64)),
    ] {
        let model = cfg.init(&shapes, &device, &mut rng).unwrap();
        group.bench_function(format!("{name}/B64"), |bch| {
            bch.iter(|| black_box(model.loss(&b, &mut rng).unwrap().loss.backward()))
        });
    }
    for k in [1, 10] {
        let model = MmvaeConfig {
            k,
            ..Default::default()
        }
        .init(&shapes, &device, &mut rng)
        .unwrap();
        group.bench_function(format!("mmvae_dreg/B64_K{k}"), |bch| {
            bch.iter(|| black_box(model.loss(&b, &mut rng).unwrap().loss.backward()))
        });
    }
    group.finish();
}

criterion_group!(benches, deep_cca, steps);
criterion_main!(benches);
