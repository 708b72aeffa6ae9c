//! Label-paired datasets: two labelled image sets paired by class, as MNIST-SVHN in MMVAE
//! (Shi et al., NeurIPS 2019).
//!
//! For each class `l`, `n_l = min(count_A(l), count_B(l), max_per_class)`; the first `n_l`
//! images of `l` on each side are kept, and `repeats` independent random permutations of each
//! side are appended, pairing `A[perm_a[i]]` with `B[perm_b[i]]`. The pair's label is `l`.
//! With `max_per_class = 10,000` and `repeats = 30` this is MMVAE's MNIST-SVHN (Shi et al.
//! use 30 pairings per digit, as the paper here does).

use crate::error::{DataError, Result};
use crate::images::{Image, ImageSet};
use crate::loading::dataset::{PairedDataset, PairedItem, item_rng};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Settings of [`LabelPaired`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelPairedConfig {
    /// Most images of one class taken from each side (10,000).
    pub max_per_class: usize,
    /// Random pairings per class (30).
    pub repeats: usize,
    /// Output side of both modalities (32).
    pub size: usize,
    /// Seed of the permutations.
    pub seed: u64,
}

impl Default for LabelPairedConfig {
    fn default() -> Self {
        LabelPairedConfig {
            max_per_class: 10_000,
            repeats: 30,
            size: 32,
            seed: 0,
        }
    }
}

/// Two image sets paired by label.
#[derive(Debug, Clone)]
pub struct LabelPaired {
    a: ImageSet,
    b: ImageSet,
    pairs: Vec<(u32, u32, u8)>,
    classes: usize,
    config: LabelPairedConfig,
}

impl LabelPaired {
    /// Pairs `a` with `b` by label.
    pub fn new(a: ImageSet, b: ImageSet, config: LabelPairedConfig) -> Result<Self> {
        if config.repeats == 0 || config.max_per_class == 0 || config.size == 0 {
            return Err(DataError::InvalidParameter {
                name: "label pairing",
                value: format!(
                    "repeats {} max_per_class {} size {}",
                    config.repeats, config.max_per_class, config.size
                ),
                reason: "all must be at least 1".into(),
            });
        }
        let classes = a.class_counts().len().max(b.class_counts().len());
        let mut pairs = Vec::new();
        for l in 0..classes {
            let of = |s: &ImageSet| -> Vec<u32> {
                s.labels()
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x as usize == l)
                    .map(|(i, _)| i as u32)
                    .collect()
            };
            let (ia, ib) = (of(&a), of(&b));
            let n = ia.len().min(ib.len()).min(config.max_per_class);
            let (ia, ib) = (&ia[..n], &ib[..n]);
            for k in 0..config.repeats {
                let mut rng = item_rng(config.seed, l as u64, k as u64);
                let mut pa = ia.to_vec();
                let mut pb = ib.to_vec();
                pa.shuffle(&mut rng);
                pb.shuffle(&mut rng);
                pairs.extend(pa.into_iter().zip(pb).map(|(x, y)| (x, y, l as u8)));
            }
        }
        if pairs.is_empty() {
            return Err(DataError::Mismatch {
                what: format!(
                    "{} and {} share no label, so no pair can be formed",
                    a.source(),
                    b.source()
                ),
            });
        }
        Ok(LabelPaired {
            a,
            b,
            pairs,
            classes,
            config,
        })
    }

    /// The `(index in A, index in B)` of pair `i`.
    pub fn pair(&self, i: usize) -> Option<(usize, usize)> {
        self.pairs.get(i).map(|&(x, y, _)| (x as usize, y as usize))
    }

    fn view(&self, set: &ImageSet, i: usize) -> Vec<f32> {
        let img = Image::from_u8(set.image(i), set.channels(), set.height(), set.width()).min_max();
        if img.height == self.config.size && img.width == self.config.size {
            img.data
        } else {
            img.resize(self.config.size, self.config.size).data
        }
    }
}

impl PairedDataset for LabelPaired {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn modalities(&self) -> usize {
        2
    }

    fn shape(&self, modality: usize) -> Vec<usize> {
        let c = if modality == 0 {
            self.a.channels()
        } else {
            self.b.channels()
        };
        vec![c, self.config.size, self.config.size]
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.pairs.get(index).map(|p| p.2 as usize)
    }

    fn get(&self, index: usize, _epoch: u64) -> Result<PairedItem> {
        let &(ia, ib, l) = self.pairs.get(index).ok_or(DataError::OutOfRange {
            index,
            len: self.pairs.len(),
        })?;
        Ok(PairedItem {
            views: vec![
                self.view(&self.a, ia as usize),
                self.view(&self.b, ib as usize),
            ],
            label: Some(l as usize),
        })
    }
}
