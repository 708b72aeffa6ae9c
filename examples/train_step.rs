//! Times mmssl's training step, the InfoNCE objective and an f32 GEMM, for the side-by-side
//! comparison with PyTorch in `benches/compare/` (see `docs/performance.md`).
//!
//! ```text
//! cargo run --release --example train_step -- step --objective CR-XX-CC --dims 2 --batch 64
//! cargo run --release --example train_step -- step --objective CR --modalities 1
//! cargo run --release --example train_step -- step --dims 3 --batch 4
//! cargo run --release --example train_step -- infonce --locations 64
//! cargo run --release --example train_step -- gemm --size 1024
//! cargo run --release --example train_step -- gemm --shape 64,4096,64
//! ```
//!
//! A step is what `mmssl_train::fit` does per batch: the encoders, conv and latent heads and
//! the objective forward, backward, and one RAdam update (lr 4e-4, no schedule), on a fixed
//! batch of uniform [0, 1) inputs. Prints one JSON line: every timed repetition in ms and
//! their median. `--backend wgpu` (with `--features wgpu`) times the GPU path.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use mmssl::burn;
use mmssl::data::{Batch, ViewBatch};
use mmssl::objectives::{Critic, CriticKind, Estimator, ObjectiveConfig, contrast};
use mmssl::train::{ContrastiveConfig, Method, RAdamConfig, on_pool};
use rand::{SeedableRng, rngs::StdRng};
use std::time::Instant;

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    /// One training step of a contrastive model.
    Step,
    /// One InfoNCE term, forward and backward.
    Infonce,
    /// One square f32 matrix product.
    Gemm,
}

/// Times mmssl's training step, the InfoNCE objective and an f32 GEMM (JSON line on stdout).
#[derive(Debug, clap::Parser)]
struct Args {
    /// What to time.
    #[arg(value_enum)]
    what: What,
    /// The objective of `step`.
    #[arg(long, default_value = "CR-XX-CC")]
    objective: String,
    /// Modalities of `step` (1 for the unimodal CR).
    #[arg(long, default_value_t = 2)]
    modalities: usize,
    /// 2 (1x32x32 images) or 3 (1x64^3 volumes).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    dims: u8,
    /// Batch size (B).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Target locations per sample of `infonce` (L_t).
    #[arg(long, default_value_t = 64)]
    locations: usize,
    /// Side of the square matrices of `gemm`.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// `M,N,K` of `gemm` instead of the square `--size`: `[M, K] x [K, N]`.
    #[arg(long, value_parser = parse_shape)]
    shape: Option<[usize; 3]>,
    /// Untimed repetitions first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed repetitions.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// cpu, or wgpu in a build with `--features wgpu`.
    #[arg(long, default_value = "cpu")]
    backend: String,
}

/// `M,N,K`, three positive integers.
fn parse_shape(text: &str) -> Result<[usize; 3], String> {
    let parts: Vec<usize> = text
        .split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{text}`: {e}; expected M,N,K, e.g. 64,4096,64"))?;
    match parts[..] {
        [m, n, k] if m > 0 && n > 0 && k > 0 => Ok([m, n, k]),
        _ => Err(format!(
            "`{text}`: expected M,N,K (three positive integers), e.g. 64,4096,64"
        )),
    }
}

/// `[M, N, K]` of the `gemm` product.
fn gemm_shape(a: &Args) -> [usize; 3] {
    a.shape.unwrap_or([a.size; 3])
}

fn device(backend: &str) -> Result<Device, String> {
    match backend {
        "cpu" => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        other => Err(format!(
            "--backend {other}: this build has cpu{}",
            if cfg!(feature = "wgpu") { ", wgpu" } else { "" }
        )),
    }
}

/// Runs `f` `warmup` times untimed, then `reps` times timed; returns the times in ms.
fn time(warmup: usize, reps: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn step(a: &Args, device: &Device) -> Result<Vec<f64>, String> {
    let ad = device.clone().autodiff();
    let shape: Vec<usize> = if a.dims == 2 {
        vec![1, 32, 32]
    } else {
        vec![1, 64, 64, 64]
    };
    let shapes = vec![shape.clone(); a.modalities];
    let spec = a.objective.parse().map_err(|e| format!("{e}"))?;
    let objective = ObjectiveConfig::new(spec);
    let mut rng = StdRng::seed_from_u64(0);
    // In an `Option` so that each step can hand the model to the optimiser by value, as `fit`
    // does (a clone would keep a second reference to every parameter).
    let mut model = Some(
        ContrastiveConfig::new(objective)
            .init(&shapes, &ad, &mut rng)
            .map_err(|e| e.to_string())?,
    );
    let views = (0..a.modalities)
        .map(|_| {
            let dist = Distribution::Uniform(0.0, 1.0);
            if a.dims == 2 {
                ViewBatch::Images(Tensor::random([a.batch, 1, 32, 32], dist, &ad))
            } else {
                ViewBatch::Volumes(Tensor::random([a.batch, 1, 64, 64, 64], dist, &ad))
            }
        })
        .collect();
    let batch = Batch {
        views,
        labels: vec![None; a.batch],
    };
    let (mut optim, _) = RAdamConfig::default().init();
    let mut error = None;
    let mut body = || {
        let m = model
            .take()
            .expect("the model is put back after every step");
        let out = match m.loss(&batch, &mut StdRng::seed_from_u64(1)) {
            Ok(o) => o,
            Err(e) => {
                error = Some(e.to_string());
                model = Some(m);
                return;
            }
        };
        let grads = GradientsParams::from_grads(out.loss.backward(), &m);
        model = Some(optim.step(4e-4, m, grads));
        // Wait for the device (a no-op on the CPU, a sync on a GPU).
        let _ = device.sync();
    };
    // On a worker of rayon's pool, as `fit` runs its steps: the fused operations' parallel
    // loops then start without waking a pool thread and putting this one to sleep.
    let times = time(a.warmup, a.reps, || on_pool(&mut body));
    match error {
        Some(e) => Err(e),
        None => Ok(times),
    }
}

fn infonce(a: &Args, device: &Device) -> Vec<f64> {
    let ad = device.clone().autodiff();
    let dot = Critic {
        kind: CriticKind::ScaledDot,
        bilinear: None,
    };
    let dist = Distribution::Normal(0.0, 1.0);
    let anchors = Tensor::<3>::random([a.batch, 64, 1], dist, &ad).require_grad();
    let targets = Tensor::<3>::random([a.batch, 64, a.locations], dist, &ad).require_grad();
    // On rayon's pool, as the step (and `fit`) runs.
    time(a.warmup, a.reps, || {
        on_pool(|| infonce_once(&anchors, &targets, dot));
    })
}

/// One InfoNCE term forward and backward; reads one value of the target gradient back (as the
/// PyTorch side reads the sum of its gradient).
fn infonce_once(anchors: &Tensor<3>, targets: &Tensor<3>, dot: Critic<'_>) {
    let (l, p) = contrast(
        anchors.clone(),
        targets.clone(),
        dot,
        Estimator::InfoNce,
        Some(20.0),
        0.04,
    )
    .expect("valid shapes");
    let grads = (l + p).backward();
    let _ = targets
        .grad(&grads)
        .map(|g| g.slice([0..1, 0..1, 0..1]).into_data());
}

/// The product through `mmssl_kernels::host::matmul` (the `gemm` crate with its own threads on
/// rayon's pool), which the fused convolutions and InfoNCE terms call, on the CPU; through
/// burn's `matmul` on other backends.
fn gemm(a: &Args, device: &Device) -> Vec<f64> {
    let [m, n, k] = gemm_shape(a);
    if a.backend == "cpu" {
        use mmssl::kernels::host::{Operand, Store, matmul};
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i % 97) as f32 - 48.0) / 48.0)
            .collect();
        let y: Vec<f32> = (0..k * n)
            .map(|i| ((i % 89) as f32 - 44.0) / 44.0)
            .collect();
        let mut out = vec![0.0f32; m * n];
        return time(a.warmup, a.reps, || {
            on_pool(|| {
                let (lhs, rhs) = (Operand::rows(&x, k), Operand::rows(&y, n));
                matmul(&mut out, (m, n, k), lhs, rhs, Store::SET.threads(true));
            });
            std::hint::black_box(&out);
        });
    }
    let dist = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<2>::random([m, k], dist, device);
    let y = Tensor::<2>::random([k, n], dist, device);
    time(a.warmup, a.reps, || {
        on_pool(|| {
            let _ = x.clone().matmul(y.clone()).slice([0..1, 0..1]).into_data();
        })
    })
}

fn main() {
    let a = <Args as clap::Parser>::parse();
    let result = device(&a.backend).and_then(|d| match a.what {
        What::Step => step(&a, &d),
        What::Infonce => Ok(infonce(&a, &d)),
        What::Gemm => Ok(gemm(&a, &d)),
    });
    let times = match result {
        Ok(t) => t,
        Err(e) => {
            eprintln!("train_step: {e}");
            std::process::exit(1);
        }
    };
    // FLOPs of the one matrix product that dominates, for throughput figures.
    let flops = match a.what {
        What::Gemm => {
            let [m, n, k] = gemm_shape(&a);
            2.0 * (m * n * k) as f64
        }
        // Score matrix [B, B L] with d = 64: forward plus the two backward products.
        What::Infonce => 3.0 * 2.0 * (a.batch * a.batch * a.locations * 64) as f64,
        What::Step => 0.0,
    };
    let m = median(&times);
    let gflops = if flops > 0.0 { flops / (m * 1e6) } else { 0.0 };
    println!(
        "{{\"impl\":\"mmssl\",\"what\":\"{}\",\"objective\":\"{}\",\"modalities\":{},\"dims\":{},\"batch\":{},\"locations\":{},\"size\":{},\"shape\":{:?},\"backend\":\"{}\",\"median_ms\":{m:.3},\"gflops\":{gflops:.2},\"times_ms\":{:?}}}",
        format!("{:?}", a.what).to_lowercase(),
        a.objective,
        a.modalities,
        a.dims,
        a.batch,
        a.locations,
        a.size,
        gemm_shape(&a),
        a.backend,
        times
            .iter()
            .map(|t| (t * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    );
}
