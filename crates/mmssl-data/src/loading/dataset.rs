//! The interface every paired-modality dataset implements, and seeded per-item randomness.

use crate::error::Result;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// One training example: one tensor per modality (flattened, channel-major) and a label.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedItem {
    /// One `Vec` per modality, in the layout given by [`PairedDataset::shape`].
    pub views: Vec<Vec<f32>>,
    /// The class, when known.
    pub label: Option<usize>,
}

/// A dataset of paired modalities.
///
/// Random transforms draw from [`item_rng`]`(seed, epoch, index)`, so an item is the same
/// whichever thread loads it and in whatever order, differs between epochs, and the whole
/// stream is reproduced by the seed.
pub trait PairedDataset: Send + Sync {
    /// Number of items.
    fn len(&self) -> usize;
    /// Whether there is no item.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Number of modalities.
    fn modalities(&self) -> usize;
    /// Shape of one item of `modality` without the batch dimension (`[C, H, W]` or
    /// `[C, D, H, W]`).
    fn shape(&self, modality: usize) -> Vec<usize>;
    /// Number of classes of the labels.
    fn classes(&self) -> usize;
    /// The label of item `index` without loading it.
    fn label(&self, index: usize) -> Option<usize>;
    /// Item `index` as drawn in `epoch`.
    fn get(&self, index: usize, epoch: u64) -> Result<PairedItem>;
}

/// A generator determined by `(seed, epoch, index)` alone (SplitMix64 mixing of the three).
pub fn item_rng(seed: u64, epoch: u64, index: u64) -> StdRng {
    let mut z = seed;
    for v in [epoch, index] {
        z = splitmix(z ^ splitmix(v.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    }
    StdRng::seed_from_u64(z)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
