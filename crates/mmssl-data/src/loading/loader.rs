//! A multi-threaded prefetching loader: worker threads load the items of upcoming batches while
//! the caller trains on the current one.
//!
//! Batches come back in their order whatever the number of workers, and every item is drawn
//! from [`item_rng`](crate::item_rng)`(seed, epoch, index)`, so the stream is identical to
//! loading on the calling thread: the number of workers changes speed, never numbers.

use crate::error::{DataError, Result};
use crate::loading::dataset::{PairedDataset, PairedItem};
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// Settings of the prefetching loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderConfig {
    /// Worker threads; 0 loads every batch on the calling thread when it is needed.
    pub workers: usize,
    /// Batches each worker may have ready ahead of the consumer (at least 1).
    pub prefetch: usize,
}

impl Default for LoaderConfig {
    /// Two workers, two batches ahead each: one worker already loads image pairs two orders of
    /// magnitude faster than a CPU training step consumes them (see `docs/data.md`); the second
    /// overlaps the slower first epoch of a volume cohort, which reads and resamples files.
    fn default() -> Self {
        LoaderConfig {
            workers: 2,
            prefetch: 2,
        }
    }
}

impl LoaderConfig {
    /// Loading on the calling thread only.
    pub fn synchronous() -> Self {
        LoaderConfig {
            workers: 0,
            prefetch: 1,
        }
    }
}

/// The batches of one pass: consecutive chunks of `batch_size` indices of `order`. An
/// incomplete last chunk is a batch only with `partial`.
#[derive(Debug, Clone, Copy)]
pub struct BatchPlan<'a> {
    /// Item indices in the order they are consumed.
    pub order: &'a [usize],
    /// Items per batch.
    pub batch_size: usize,
    /// Whether an incomplete last chunk is a batch too (a linear probe uses every item;
    /// contrastive estimation and BatchNorm want full batches).
    pub partial: bool,
}

impl<'a> BatchPlan<'a> {
    /// Complete batches of `batch_size` consecutive indices of `order` (an incomplete last
    /// chunk is not a batch).
    pub fn full(order: &'a [usize], batch_size: usize) -> Self {
        BatchPlan {
            order,
            batch_size,
            partial: false,
        }
    }

    /// Number of batches: complete ones, and the incomplete last one with `partial`.
    pub fn len(&self) -> usize {
        if self.batch_size == 0 {
            0
        } else if self.partial {
            self.order.len().div_ceil(self.batch_size)
        } else {
            self.order.len() / self.batch_size
        }
    }

    /// Whether there is no batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Indices of batch `b`.
    pub fn batch(&self, b: usize) -> &[usize] {
        let end = ((b + 1) * self.batch_size).min(self.order.len());
        &self.order[b * self.batch_size..end]
    }
}

/// The loaded items of one batch, in the order of the plan.
pub type LoadedBatch = Result<Vec<PairedItem>>;

/// Iterator over the loaded batches of a [`BatchPlan`], handed to the body of [`prefetch`].
pub struct Prefetch<'a> {
    source: Source<'a>,
    next: usize,
    total: usize,
    waited: Duration,
}

enum Source<'a> {
    /// No workers: load on demand.
    Inline {
        dataset: &'a dyn PairedDataset,
        plan: BatchPlan<'a>,
        epoch: u64,
    },
    /// Batch `b` arrives on channel `b % workers`.
    Workers(Vec<Receiver<LoadedBatch>>),
}

impl Prefetch<'_> {
    /// Time the consumer has spent waiting for data so far: blocked on the workers, or loading
    /// itself without workers. Near zero means loading keeps up with the consumer.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Batches not yet handed out.
    pub fn remaining(&self) -> usize {
        self.total - self.next
    }
}

impl Iterator for Prefetch<'_> {
    type Item = LoadedBatch;

    fn next(&mut self) -> Option<LoadedBatch> {
        if self.next >= self.total {
            return None;
        }
        let b = self.next;
        self.next += 1;
        let started = Instant::now();
        let out = match &self.source {
            Source::Inline {
                dataset,
                plan,
                epoch,
            } => load_items(*dataset, plan.batch(b), *epoch),
            Source::Workers(rxs) => rxs[b % rxs.len()].recv().unwrap_or_else(|_| {
                Err(DataError::Mismatch {
                    what: format!("loader worker {} stopped before batch {b}", b % rxs.len()),
                })
            }),
        };
        self.waited += started.elapsed();
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining(), Some(self.remaining()))
    }
}

/// Loads the items `indices` of `dataset` as drawn in `epoch`.
pub fn load_items(dataset: &dyn PairedDataset, indices: &[usize], epoch: u64) -> LoadedBatch {
    indices.iter().map(|&i| dataset.get(i, epoch)).collect()
}

/// Runs `body` with an iterator over the batches of `plan`, loaded ahead by
/// `config.workers` threads (each at most `config.prefetch` batches ahead).
///
/// Worker `w` loads batches `w, w + workers, ...`; the iterator hands them out in plan order.
/// A loading error is returned in place of its batch (the worker that met it stops). When
/// `body` returns, even early, the workers stop at their next batch and are joined before
/// `prefetch` returns.
///
/// ```
/// use mmssl_data::{BatchPlan, ImageSet, LoaderConfig, TwoViewConfig, TwoViewMnist, prefetch};
///
/// let pixels: Vec<u8> = (0..8 * 28 * 28).map(|i| (i % 251) as u8).collect();
/// let images = ImageSet::new(pixels, vec![0, 1, 0, 1, 0, 1, 0, 1], 1, 28, 28, "x").unwrap();
/// let data = TwoViewMnist::new(images, TwoViewConfig::default()).unwrap();
/// let order = [7, 6, 5, 4, 3, 2, 1, 0];
/// let plan = BatchPlan::full(&order, 4);
/// let labels: Vec<Vec<Option<usize>>> = prefetch(&data, plan, 0, LoaderConfig::default(), |batches| {
///     batches.map(|b| b.unwrap().iter().map(|i| i.label).collect()).collect()
/// });
/// assert_eq!(labels, vec![vec![Some(1), Some(0), Some(1), Some(0)]; 2]);
/// ```
pub fn prefetch<R>(
    dataset: &dyn PairedDataset,
    plan: BatchPlan<'_>,
    epoch: u64,
    config: LoaderConfig,
    body: impl FnOnce(&mut Prefetch<'_>) -> R,
) -> R {
    let total = plan.len();
    if config.workers == 0 || total == 0 {
        let mut it = Prefetch {
            source: Source::Inline {
                dataset,
                plan,
                epoch,
            },
            next: 0,
            total,
            waited: Duration::ZERO,
        };
        return body(&mut it);
    }
    let workers = config.workers.min(total);
    std::thread::scope(|scope| {
        let mut rxs = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel::<LoadedBatch>(config.prefetch.max(1));
            rxs.push(rx);
            std::thread::Builder::new()
                .name(format!("mmssl-loader-{w}"))
                .spawn_scoped(scope, move || work(dataset, plan, epoch, w, workers, tx))
                .expect("spawning a loader thread");
        }
        let mut it = Prefetch {
            source: Source::Workers(rxs),
            next: 0,
            total,
            waited: Duration::ZERO,
        };
        let out = body(&mut it);
        // Dropping the receivers makes the workers' next send fail, so they stop; the scope
        // then joins them.
        drop(it);
        out
    })
}

fn work(
    dataset: &dyn PairedDataset,
    plan: BatchPlan<'_>,
    epoch: u64,
    first: usize,
    stride: usize,
    tx: SyncSender<LoadedBatch>,
) {
    for b in (first..plan.len()).step_by(stride) {
        let loaded = load_items(dataset, plan.batch(b), epoch);
        let failed = loaded.is_err();
        if tx.send(loaded).is_err() || failed {
            return;
        }
    }
}
