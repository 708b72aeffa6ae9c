//! Loading: prefetching on worker threads, loading errors in place, early exit, waiting time,
//! labels refused on load, vector batches and partial batch plans.

use super::*;
use crate::tests::{idx_bytes, toy_images};

/// A dataset whose item `fail_at` is an error and whose loads take `delay` each.
struct Slow {
    inner: TwoViewMnist,
    fail_at: Option<usize>,
    delay: std::time::Duration,
    loads: std::sync::atomic::AtomicUsize,
}

impl PairedDataset for Slow {
    crate::loading::dataset::inner_layout!();
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn label(&self, i: usize) -> Option<usize> {
        self.inner.label(i)
    }
    fn get(&self, i: usize, epoch: u64) -> Result<PairedItem> {
        std::thread::sleep(self.delay);
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if Some(i) == self.fail_at {
            return Err(DataError::Mismatch {
                what: format!("item {i} is broken"),
            });
        }
        self.inner.get(i, epoch)
    }
}

fn slow(n: usize, fail_at: Option<usize>, delay_ms: u64) -> Slow {
    Slow {
        inner: TwoViewMnist::new(toy_images(n), TwoViewConfig::default()).unwrap(),
        fail_at,
        delay: std::time::Duration::from_millis(delay_ms),
        loads: Default::default(),
    }
}

#[test]
fn prefetching_yields_the_synchronous_stream_whatever_the_workers() {
    let data = slow(40, None, 0);
    let order: Vec<usize> = (0..40).rev().collect();
    // 40 items in batches of 6: 6 complete batches, the last 4 items are not a batch.
    let plan = BatchPlan::full(&order, 6);
    assert_eq!(plan.len(), 6);
    let reference: Vec<Vec<PairedItem>> = plan
        .order
        .chunks_exact(6)
        .map(|c| c.iter().map(|&i| data.get(i, 3).unwrap()).collect())
        .collect();
    for workers in [0, 1, 2, 5, 9] {
        for depth in [1, 3] {
            let config = LoaderConfig {
                workers,
                prefetch: depth,
            };
            let got: Vec<Vec<PairedItem>> = prefetch(&data, plan, 3, config, |it| {
                assert_eq!(it.remaining(), 6);
                it.map(|b| b.unwrap()).collect()
            });
            assert_eq!(got, reference, "workers {workers}, prefetch {depth}");
        }
    }
    // Another epoch draws other augmentations.
    let other: Vec<Vec<PairedItem>> = prefetch(&data, plan, 4, LoaderConfig::default(), |it| {
        it.map(|b| b.unwrap()).collect()
    });
    assert_ne!(other, reference);
}

#[test]
fn a_loading_error_arrives_in_place_of_its_batch() {
    // Item 13 sits in batch 3 (order 0..40, batches of 4).
    let data = slow(40, Some(13), 0);
    let order: Vec<usize> = (0..40).collect();
    let plan = BatchPlan::full(&order, 4);
    for workers in [0, 1, 3] {
        let config = LoaderConfig {
            workers,
            prefetch: 2,
        };
        let (ok, err) = prefetch(&data, plan, 0, config, |it| {
            let mut ok = 0;
            for b in it {
                match b {
                    Ok(items) => {
                        assert_eq!(items.len(), 4);
                        ok += 1;
                    }
                    Err(e) => return (ok, Some(e.to_string())),
                }
            }
            (ok, None)
        });
        assert_eq!(ok, 3, "workers {workers}");
        assert!(
            err.unwrap().contains("item 13 is broken"),
            "workers {workers}"
        );
    }
}

#[test]
fn leaving_early_stops_the_workers() {
    // 100 batches of 4; the body takes two and returns. prefetch must then return without
    // loading the rest: each of the 2 workers holds at most 1 batch in its channel and 1 in
    // hand beyond those taken, so at most (2 + 2 * 2) * 4 items are ever loaded.
    let data = slow(400, None, 2);
    let order: Vec<usize> = (0..400).collect();
    let plan = BatchPlan::full(&order, 4);
    let config = LoaderConfig {
        workers: 2,
        prefetch: 1,
    };
    let taken = prefetch(&data, plan, 0, config, |it| it.take(2).count());
    assert_eq!(taken, 2);
    let loads = data.loads.load(std::sync::atomic::Ordering::SeqCst);
    assert!((8..=24).contains(&loads), "{loads} items loaded");
}

#[test]
fn waiting_time_counts_synchronous_loading() {
    // Without workers the consumer loads itself: 3 batches x 2 items x 10 ms at least.
    let data = slow(6, None, 10);
    let order: Vec<usize> = (0..6).collect();
    let plan = BatchPlan::full(&order, 2);
    let waited = prefetch(&data, plan, 0, LoaderConfig::synchronous(), |it| {
        assert_eq!(it.by_ref().count(), 3);
        it.waited()
    });
    assert!(waited >= std::time::Duration::from_millis(60), "{waited:?}");
    // An empty plan (fewer items than a batch) yields nothing.
    let short = BatchPlan::full(&order[..1], 2);
    assert!(short.is_empty());
    assert_eq!(
        prefetch(&data, short, 0, LoaderConfig::default(), |it| it.count()),
        0
    );
}

#[test]
fn out_of_range_labels_in_an_mnist_folder_are_refused_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let images = idx_bytes(&[3, 2, 2], &[0; 12]);
    for (labels, bad) in [
        (vec![1u8, 9, 0], None),
        (vec![1u8, 200, 3], Some("label 200 of item 1")),
    ] {
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &images).unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte"),
            idx_bytes(&[3], &labels),
        )
        .unwrap();
        let got = load_mnist_dir(dir.path(), MnistSplit::Test);
        match bad {
            None => assert_eq!(got.unwrap().labels(), &labels[..]),
            Some(needle) => {
                let e = got.unwrap_err().to_string();
                assert!(
                    e.contains(needle) && e.contains("t10k-labels-idx1-ubyte"),
                    "{e}"
                );
            }
        }
    }
}

#[cfg(feature = "burn")]
#[test]
fn vector_items_collate_into_vector_batches() {
    let device = burn::tensor::Device::flex();
    let items: Vec<PairedItem> = (0..3)
        .map(|i| PairedItem {
            views: vec![vec![i as f32, 1.0, 2.0]],
            label: Some(i),
        })
        .collect();
    let batch = collate(&items, &[vec![3]], &device).unwrap();
    let ViewBatch::Vectors(t) = &batch.views[0] else {
        panic!("expected vectors, got {:?}", batch.views[0]);
    };
    assert_eq!(t.dims(), [3, 3]);
    assert_eq!(batch.views[0].kind(), "vectors");
    assert_eq!(batch.views[0].batch_size(), 3);
    assert_eq!(
        t.clone().into_data().try_to_vec::<f32>().unwrap(),
        vec![0.0, 1.0, 2.0, 1.0, 1.0, 2.0, 2.0, 1.0, 2.0]
    );
    // Two-axis shapes are none of the kinds.
    assert!(collate(&items, &[vec![1, 3]], &device).is_err());
}

#[test]
fn partial_plans_keep_the_incomplete_last_batch() {
    let order: Vec<usize> = (0..10).collect();
    let full = BatchPlan::full(&order, 4);
    let partial = BatchPlan {
        partial: true,
        ..full
    };
    assert_eq!((full.len(), partial.len()), (2, 3));
    assert_eq!(partial.batch(2), &[8, 9]);
    let none = BatchPlan {
        batch_size: 0,
        ..partial
    };
    assert!(none.is_empty());
}
