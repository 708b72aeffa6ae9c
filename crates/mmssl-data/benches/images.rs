//! Loading throughput of image pairs (pairs per second): Two-View MNIST (rotated view + noisy
//! view, and the same-class variant), label-paired MNIST-style datasets, collation into a
//! `flex` tensor batch, and whole passes through the prefetching loader with 0, 1 and 2
//! worker threads.
//!
//! Inputs: the real MNIST test split shipped inside `mmssl-data` (10,000 images), so the
//! benchmark runs on a fresh clone. The label-paired benchmark pairs it with itself (the
//! pairing and resizing work is the same as MNIST + Fashion-MNIST or MNIST + SVHN at 32x32).
//!
//! A CR-XX-CC training step on 64 pairs takes ~0.1-0.2 s on 2 CPU cores (`benches/objectives`),
//! i.e. it consumes a few hundred pairs per second; compare with the figures printed here.
//!
//! Run: `cargo bench -p mmssl-data --bench images`.

use burn::tensor::Device;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mmssl_data::{
    BatchPlan, LabelPaired, LabelPairedConfig, LoaderConfig, PairedDataset, SecondView,
    TwoViewConfig, TwoViewMnist, collate, embedded_mnist_test, load_items, prefetch,
};
use std::hint::black_box;

const BATCH: usize = 64;

fn bench(c: &mut Criterion) {
    let mnist = embedded_mnist_test().expect("the embedded MNIST test split");
    let two_view = TwoViewMnist::new(mnist.clone(), TwoViewConfig::default()).unwrap();
    let same_class = TwoViewMnist::new(
        mnist.clone(),
        TwoViewConfig {
            second_view: SecondView::SameClass,
            ..Default::default()
        },
    )
    .unwrap();
    let paired = LabelPaired::new(mnist.clone(), mnist, LabelPairedConfig::default()).unwrap();
    let indices: Vec<usize> = (0..BATCH).map(|i| i * 97 % two_view.len()).collect();

    let mut g = c.benchmark_group("load_pairs");
    g.throughput(Throughput::Elements(BATCH as u64));
    let datasets: [(&str, &dyn PairedDataset); 3] = [
        ("two_view_mnist", &two_view),
        ("two_view_same_class", &same_class),
        ("label_paired", &paired),
    ];
    for (name, data) in datasets {
        g.bench_function(BenchmarkId::new(name, BATCH), |b| {
            let mut epoch = 0;
            b.iter(|| {
                epoch += 1;
                black_box(load_items(data, &indices, epoch).unwrap())
            })
        });
    }
    let items = load_items(&two_view, &indices, 0).unwrap();
    let shapes = vec![vec![1, 32, 32], vec![1, 32, 32]];
    let device = Device::flex();
    g.bench_function(BenchmarkId::new("collate_flex", BATCH), |b| {
        b.iter(|| black_box(collate(&items, &shapes, &device).unwrap()))
    });
    g.finish();

    // A pass of 40 batches through the loader, consumed as fast as it comes: the loader's
    // own ceiling with each number of workers.
    let order: Vec<usize> = (0..40 * BATCH).collect();
    let plan = BatchPlan::full(&order, BATCH);
    let mut g = c.benchmark_group("prefetch_pass");
    g.throughput(Throughput::Elements(order.len() as u64));
    g.sample_size(10);
    for workers in [0, 1, 2] {
        let config = LoaderConfig {
            workers,
            prefetch: 2,
        };
        g.bench_function(BenchmarkId::new("two_view_mnist_workers", workers), |b| {
            b.iter(|| {
                prefetch(&two_view, plan, 0, config, |batches| {
                    batches.map(|b| b.unwrap().len()).sum::<usize>()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
