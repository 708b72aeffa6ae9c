//! The training step's pieces at the paper's shapes, on the default CPU backend (`flex`):
//! critic + InfoNCE forward and forward+backward (2D: B=64, d=64, L_a=1, L_t=64; 3D: L_t=512),
//! the full CR-XX-CC objective on the outputs of two 2D encoders with heads, and encoder
//! forward+backward in 2D (batch 64) and 3D (batch 4 of 64^3).
//!
//! Run: `cargo bench --bench objectives`.

use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use mmssl::burn;
use mmssl::encoders::{
    ConvHeadConfig, DcganEncoder2dConfig, DcganEncoder3dConfig, LatentHeadConfig,
};
use mmssl::objectives::{
    Critic, CriticKind, Estimator, ModalityEmbeddings, ObjectiveConfig, contrast,
};
use mmssl::train::on_pool;
use rand::{SeedableRng, rngs::StdRng};
use std::hint::black_box;

/// One InfoNCE term (loss + penalty) at the paper's settings: scaled dot critic, clip 20,
/// penalty 4e-2.
fn term(a: &Tensor<3>, t: &Tensor<3>) -> Tensor<1> {
    let dot = Critic {
        kind: CriticKind::ScaledDot,
        bilinear: None,
    };
    let (l, p) = contrast(
        a.clone(),
        t.clone(),
        dot,
        Estimator::InfoNce,
        Some(20.0),
        0.04,
    )
    .unwrap();
    l + p
}

fn infonce(c: &mut Criterion) {
    let mut group = c.benchmark_group("infonce");
    group.sample_size(20);
    for (name, lt) in [("2d_B64_d64_La1_Lt64", 64), ("3d_B64_d64_La1_Lt512", 512)] {
        let device = Device::flex();
        let a = Tensor::<3>::random([64, 64, 1], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<3>::random([64, 64, lt], Distribution::Normal(0.0, 1.0), &device);
        group.bench_function(format!("forward/{name}"), |b| {
            b.iter(|| on_pool(|| _ = black_box(term(&a, &t).into_scalar::<f32>())))
        });
        let ad = Device::flex().autodiff();
        let a =
            Tensor::<3>::random([64, 64, 1], Distribution::Normal(0.0, 1.0), &ad).require_grad();
        let t =
            Tensor::<3>::random([64, 64, lt], Distribution::Normal(0.0, 1.0), &ad).require_grad();
        group.bench_function(format!("forward_backward/{name}"), |b| {
            b.iter(|| {
                on_pool(|| {
                    let grads = term(&a, &t).backward();
                    black_box(a.grad(&grads).unwrap().into_data());
                })
            })
        });
    }
    group.finish();
}

fn objective_and_encoders(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    let mut rng = StdRng::seed_from_u64(0);
    let enc: Vec<_> = (0..2)
        .map(|_| DcganEncoder2dConfig::new().init(&device, &mut rng).unwrap())
        .collect();
    let ch: Vec<_> = (0..2)
        .map(|_| ConvHeadConfig::new(64).init(&device, &mut rng).unwrap())
        .collect();
    let lh: Vec<_> = (0..2)
        .map(|_| LatentHeadConfig::new().init(&device, &mut rng).unwrap())
        .collect();
    let objective = ObjectiveConfig::new("CR-XX-CC".parse().unwrap())
        .init(&device, &mut rng)
        .unwrap();
    let x: Vec<Tensor<4>> = (0..2)
        .map(|_| Tensor::random([64, 1, 32, 32], Distribution::Uniform(0.0, 1.0), &device))
        .collect();
    let mut group = c.benchmark_group("step");
    group.sample_size(10);
    group.bench_function("cr_xx_cc_objective_forward_backward_B64", |b| {
        // The objective alone, on fixed (detached) encoder + head outputs.
        let views: Vec<ModalityEmbeddings> = (0..2)
            .map(|i| {
                let out = enc[i].forward(x[i].clone());
                ModalityEmbeddings {
                    conv: ch[i].forward(out.conv).detach().require_grad(),
                    latent: lh[i].forward(out.z).detach().require_grad(),
                }
            })
            .collect();
        b.iter(|| {
            on_pool(|| {
                let out = objective.forward(&views, &mut rng).unwrap();
                black_box(out.total.backward());
            })
        })
    });
    group.bench_function("two_encoders_heads_cr_xx_cc_forward_backward_B64", |b| {
        b.iter(|| {
            on_pool(|| {
                let views: Vec<ModalityEmbeddings> = (0..2)
                    .map(|i| {
                        let out = enc[i].forward(x[i].clone());
                        ModalityEmbeddings {
                            conv: ch[i].forward(out.conv),
                            latent: lh[i].forward(out.z),
                        }
                    })
                    .collect();
                let out = objective.forward(&views, &mut rng).unwrap();
                black_box(out.total.backward());
            })
        })
    });
    group.bench_function("encoder2d_forward_backward_B64", |b| {
        b.iter(|| {
            on_pool(|| {
                let out = enc[0].forward(x[0].clone());
                black_box((out.z.mean() + out.conv.mean()).backward());
            })
        })
    });
    let enc3 = DcganEncoder3dConfig::new().init(&device, &mut rng).unwrap();
    let vol = Tensor::<5>::random([4, 1, 64, 64, 64], Distribution::Uniform(0.0, 1.0), &device);
    group.bench_function("encoder3d_forward_backward_B4", |b| {
        b.iter(|| {
            on_pool(|| {
                let out = enc3.forward(vol.clone());
                black_box((out.z.mean() + out.conv.mean()).backward());
            })
        })
    });
    group.finish();
}

criterion_group!(benches, infonce, objective_and_encoders);
criterion_main!(benches);
