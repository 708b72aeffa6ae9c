//! The encoder + heads + CR-XX-CC objective on wgpu agrees with the CPU backend: the same
//! weights (forked from the CPU model), the same batch, loss and gradients within 1e-4
//! relative. Needs a Vulkan driver (on CI: Mesa lavapipe); run with
//! `cargo test -p mmssl-objectives --features wgpu --test wgpu_equivalence`.
#![cfg(feature = "wgpu")]

use burn::module::Module;
use burn::tensor::{Device, DeviceKind, Tensor};
use mmssl_encoders::{
    ConvHead, ConvHeadConfig, DcganEncoder2d, DcganEncoder2dConfig, LatentHead, LatentHeadConfig,
};
use mmssl_objectives::{ModalityEmbeddings, ObjectiveConfig};
use rand::{SeedableRng, rngs::StdRng};

#[derive(Module, Debug)]
struct TwoModalities {
    encoders: Vec<DcganEncoder2d>,
    conv_heads: Vec<ConvHead>,
    latent_heads: Vec<LatentHead>,
}

fn model(device: &Device) -> TwoModalities {
    let mut rng = StdRng::seed_from_u64(17);
    let mut m = TwoModalities {
        encoders: Vec::new(),
        conv_heads: Vec::new(),
        latent_heads: Vec::new(),
    };
    for _ in 0..2 {
        m.encoders
            .push(DcganEncoder2dConfig::new().init(device, &mut rng).unwrap());
        m.conv_heads
            .push(ConvHeadConfig::new(64).init(device, &mut rng).unwrap());
        m.latent_heads
            .push(LatentHeadConfig::new().init(device, &mut rng).unwrap());
    }
    m
}

fn batch(modality: usize, device: &Device) -> Tensor<4> {
    let b = 4;
    let v: Vec<f32> = (0..b * 32 * 32)
        .map(|i| (((i * (7 + modality) + 3 * modality) % 97) as f32) / 97.0)
        .collect();
    Tensor::<1>::from_floats(v.as_slice(), device).reshape([b, 1, 32, 32])
}

/// Total loss and the gradients of a few parameters, read back to the host.
fn step(m: &TwoModalities, device: &Device) -> (f32, Vec<Vec<f32>>) {
    let objective = ObjectiveConfig::new("CR-XX-CC".parse().unwrap())
        .init(device, &mut StdRng::seed_from_u64(0))
        .unwrap();
    let views: Vec<ModalityEmbeddings> = (0..2)
        .map(|i| {
            let out = m.encoders[i].forward(batch(i, device));
            ModalityEmbeddings {
                conv: m.conv_heads[i].forward(out.conv),
                latent: m.latent_heads[i].forward(out.z),
            }
        })
        .collect();
    let out = objective
        .forward(&views, &mut StdRng::seed_from_u64(5))
        .unwrap();
    let loss = out.total.clone().into_scalar::<f32>();
    let grads = out.total.backward();
    let mut read = Vec::new();
    m.visit(&mut Collector {
        grads: &grads,
        out: &mut read,
    });
    (loss, read)
}

struct Collector<'a> {
    grads: &'a burn::tensor::Gradients,
    out: &'a mut Vec<Vec<f32>>,
}

impl burn::module::ModuleVisitor for Collector<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            self.out.push(g.into_data().try_to_vec::<f32>().unwrap());
        }
    }
}

#[test]
fn wgpu_matches_cpu_on_encoders_heads_and_cr_xx_cc() {
    let cpu = Device::flex().autodiff();
    let gpu = Device::wgpu(DeviceKind::DefaultDevice).autodiff();
    let m_cpu = model(&cpu);
    let m_gpu = m_cpu.clone().fork(&gpu);
    let (l_cpu, g_cpu) = step(&m_cpu, &cpu);
    let (l_gpu, g_gpu) = step(&m_gpu, &gpu);
    println!("loss: cpu {l_cpu}, wgpu {l_gpu}");
    assert!(
        (l_cpu - l_gpu).abs() <= 1e-4 * l_cpu.abs(),
        "loss: cpu {l_cpu} vs wgpu {l_gpu}"
    );
    assert_eq!(g_cpu.len(), g_gpu.len());
    assert!(
        g_cpu.len() >= 20,
        "only {} parameters had gradients",
        g_cpu.len()
    );
    // Parameters whose gradient vanishes analytically (a bias feeding a BatchNorm) carry only
    // rounding noise; they are compared against a floor of 1e-2 of the largest gradient.
    let max_abs = |g: &[f32]| g.iter().fold(0f32, |m, x| m.max(x.abs()));
    let global = g_cpu.iter().map(|g| max_abs(g)).fold(0f32, f32::max);
    for (i, (a, b)) in g_cpu.iter().zip(&g_gpu).enumerate() {
        let scale = max_abs(a).max(1e-2 * global);
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff <= 1e-4 * scale,
            "parameter {i}: max gradient difference {diff} vs gradient scale {scale}"
        );
    }
    println!(
        "{} parameter gradients agree (largest gradient {global})",
        g_cpu.len()
    );
}
