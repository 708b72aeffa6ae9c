//! Similarity metrics at the sizes representation analyses use: 10,000 samples x 64 features
//! (latents of a test set) and 1,000 x 512 (wide layers), per linear-algebra backend.
//!
//! Run: `cargo bench --bench similarity` (add `--features lapack` to include LAPACK).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mmssl::similarity::linalg::LinalgBackend;
use mmssl::similarity::{Cca, Pwcca, Svcca, linear_cka, linear_cka_debiased};
use ndarray::Array2;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::hint::black_box;

fn views(n: usize, d: usize) -> (Array2<f64>, Array2<f64>) {
    let mut rng = StdRng::seed_from_u64(7);
    let z = Array2::from_shape_fn((n, 16), |_| rng.random_range(-1.0..1.0));
    let wa = Array2::from_shape_fn((16, d), |_| rng.random_range(-1.0..1.0));
    let wb = Array2::from_shape_fn((16, d), |_| rng.random_range(-1.0..1.0));
    let a = z.dot(&wa) + Array2::from_shape_fn((n, d), |_| rng.random_range(-0.5..0.5));
    let b = z.dot(&wb) + Array2::from_shape_fn((n, d), |_| rng.random_range(-0.5..0.5));
    (a, b)
}

fn bench(c: &mut Criterion) {
    for (n, d) in [(10_000, 64), (1_000, 512)] {
        let (a, b) = views(n, d);
        let mut group = c.benchmark_group(format!("similarity_{n}x{d}"));
        group.sample_size(10);
        for backend in LinalgBackend::available() {
            let tag = format!("{backend:?}").to_lowercase();
            group.bench_function(BenchmarkId::new("cca", &tag), |bench| {
                let cca = Cca::new().backend(backend);
                bench.iter(|| black_box(cca.fit(a.view(), b.view()).unwrap().mean))
            });
            group.bench_function(BenchmarkId::new("svcca", &tag), |bench| {
                let svcca = Svcca::new().backend(backend);
                bench.iter(|| black_box(svcca.fit(a.view(), b.view()).unwrap().mean))
            });
            group.bench_function(BenchmarkId::new("pwcca", &tag), |bench| {
                let pwcca = Pwcca::new().backend(backend);
                bench.iter(|| black_box(pwcca.fit(a.view(), b.view()).unwrap().value))
            });
        }
        group.bench_function("cka", |bench| {
            bench.iter(|| black_box(linear_cka(a.view(), b.view()).unwrap()))
        });
        group.bench_function("cka_debiased", |bench| {
            bench.iter(|| black_box(linear_cka_debiased(a.view(), b.view()).unwrap()))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
