//! Stratified k-fold splits and subsets of datasets.

use crate::error::{DataError, Result};
use crate::loading::dataset::{PairedDataset, PairedItem};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::sync::Arc;

/// Stratified k-fold: the indices of each class are shuffled with `seed` and dealt into `k`
/// folds of near-equal size; fold `fold` is the validation set, the rest the training set.
/// Every fold index works (the authors' code always took the first). Returns
/// `(train, validation)`, each sorted.
pub fn stratified_k_fold(
    labels: &[usize],
    k: usize,
    fold: usize,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if k < 2 {
        return Err(DataError::InvalidParameter {
            name: "folds",
            value: k.to_string(),
            reason: "k-fold needs k >= 2".into(),
        });
    }
    if fold >= k {
        return Err(DataError::InvalidParameter {
            name: "fold",
            value: fold.to_string(),
            reason: format!("must be in 0..{k}"),
        });
    }
    let classes = labels.iter().map(|&l| l + 1).max().unwrap_or(0);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    // Continue the deal across classes so small classes do not all land in fold 0.
    let mut offset = 0;
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        idx.shuffle(&mut rng);
        for (j, i) in idx.iter().enumerate() {
            if (j + offset) % k == fold {
                val.push(*i);
            } else {
                train.push(*i);
            }
        }
        offset += idx.len();
    }
    if val.is_empty() || train.is_empty() {
        return Err(DataError::InvalidParameter {
            name: "folds",
            value: k.to_string(),
            reason: format!(
                "{} items cannot fill {k} folds: fold {fold} would be empty",
                labels.len()
            ),
        });
    }
    train.sort_unstable();
    val.sort_unstable();
    Ok((train, val))
}

/// The items of a dataset at chosen indices.
#[derive(Clone)]
pub struct Subset {
    inner: Arc<dyn PairedDataset>,
    indices: Vec<usize>,
}

impl Subset {
    /// `indices` of `inner` (each must be in range).
    pub fn new(inner: Arc<dyn PairedDataset>, indices: Vec<usize>) -> Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= inner.len()) {
            return Err(DataError::OutOfRange {
                index: bad,
                len: inner.len(),
            });
        }
        Ok(Subset { inner, indices })
    }

    /// The first `n` items of `inner`.
    pub fn first(inner: Arc<dyn PairedDataset>, n: usize) -> Self {
        let n = n.min(inner.len());
        Subset {
            inner,
            indices: (0..n).collect(),
        }
    }
}

impl PairedDataset for Subset {
    crate::loading::dataset::inner_layout!();
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn label(&self, index: usize) -> Option<usize> {
        self.indices.get(index).and_then(|&i| self.inner.label(i))
    }
    fn get(&self, index: usize, epoch: u64) -> Result<PairedItem> {
        let &i = self.indices.get(index).ok_or(DataError::OutOfRange {
            index,
            len: self.indices.len(),
        })?;
        self.inner.get(i, epoch)
    }
    fn item_name(&self, index: usize) -> Option<String> {
        self.indices
            .get(index)
            .and_then(|&i| self.inner.item_name(i))
    }
    fn item_grid(&self, index: usize) -> Result<Option<crate::neuro::preprocess::VoxelGrid>> {
        match self.indices.get(index) {
            Some(&i) => self.inner.item_grid(i),
            None => Err(DataError::OutOfRange {
                index,
                len: self.indices.len(),
            }),
        }
    }
    fn source_grid(
        &self,
        index: usize,
        modality: usize,
    ) -> Result<Option<crate::neuro::preprocess::VoxelGrid>> {
        match self.indices.get(index) {
            Some(&i) => self.inner.source_grid(i, modality),
            None => Err(DataError::OutOfRange {
                index,
                len: self.indices.len(),
            }),
        }
    }
}
