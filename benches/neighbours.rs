//! The evaluations beyond the linear probe at the sizes of a Two-View MNIST run: k-NN of
//! 10,000 test rows among 50,000 training rows of 64 features (the full MNIST protocol),
//! retrieval among 10,000 test pairs, and a t-SNE map of 1,000 points with its trustworthiness.
//!
//! Run: `cargo bench --bench neighbours`.

use criterion::{Criterion, criterion_group, criterion_main};
use mmssl::similarity::{Knn, Metric, Retrieval, Tsne, trustworthiness};
use ndarray::Array2;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::hint::black_box;

/// `n` rows of 64 features around 10 class centres, and their labels.
fn features(n: usize, seed: u64) -> (Array2<f64>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres = Array2::from_shape_fn((10, 64), |_| rng.random_range(-1.0..1.0));
    let labels: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let x = Array2::from_shape_fn((n, 64), |(i, j)| {
        centres[[labels[i], j]] + rng.random_range(-1.5..1.5)
    });
    (x, labels)
}

fn bench(c: &mut Criterion) {
    let (train, train_labels) = features(50_000, 1);
    let (test, test_labels) = features(10_000, 2);
    let mut group = c.benchmark_group("neighbours");
    group.sample_size(10);
    for metric in [Metric::Cosine, Metric::Euclidean] {
        group.bench_function(format!("knn_20_{metric}_10000x50000x64"), |b| {
            let knn = Knn::new(20).metric(metric);
            b.iter(|| {
                black_box(
                    knn.evaluate(train.view(), &train_labels, test.view(), &test_labels, 10)
                        .unwrap()
                        .accuracy,
                )
            })
        });
    }
    let (other, _) = features(10_000, 3);
    group.bench_function("retrieval_10000x64", |b| {
        let r = Retrieval::new();
        b.iter(|| {
            black_box(
                r.evaluate(test.view(), other.view())
                    .unwrap()
                    .mean_reciprocal_rank,
            )
        })
    });
    let (small, _) = features(1_000, 4);
    group.bench_function("tsne_1000x64", |b| {
        b.iter(|| black_box(Tsne::new().embed(small.view()).unwrap().kl_divergence))
    });
    let map = Tsne::new().embed(small.view()).unwrap();
    group.bench_function("trustworthiness_1000", |b| {
        b.iter(|| black_box(trustworthiness(small.view(), map.coords.view(), 10).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
