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
    /// A name for item `index` that is stable across runs and safe in a file name (volume
    /// cohorts: `sub-<subject>_ses-<session>`), for outputs written per item; `None` (the
    /// default) when the dataset has none.
    fn item_name(&self, _index: usize) -> Option<String> {
        None
    }
    /// Where the voxels of item `index` lie in world space (volume cohorts: the grid every
    /// modality was resampled onto), so that maps computed on the input can be written back
    /// with the input's affine; `None` (the default) for data without a spatial frame.
    fn item_grid(&self, _index: usize) -> Result<Option<crate::neuro::preprocess::VoxelGrid>> {
        Ok(None)
    }
    /// The grid of the file item `index` of `modality` was read from, before any resampling
    /// (volume cohorts: the template grid the study's images are on, e.g. MNI at 3 mm), so
    /// that maps can be written voxel-aligned with it; `None` (the default) for data without
    /// one.
    fn source_grid(
        &self,
        _index: usize,
        _modality: usize,
    ) -> Result<Option<crate::neuro::preprocess::VoxelGrid>> {
        Ok(None)
    }
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

/// The `modalities`, `shape` and `classes` of a [`PairedDataset`] implementation, taken from
/// its field `inner` (a dataset that passes another's items on, changed or selected).
macro_rules! inner_layout {
    () => {
        fn modalities(&self) -> usize {
            self.inner.modalities()
        }
        fn shape(&self, modality: usize) -> Vec<usize> {
            self.inner.shape(modality)
        }
        fn classes(&self) -> usize {
            self.inner.classes()
        }
    };
}
pub(crate) use inner_layout;

/// A dataset whose items come from another through `get(inner, index, epoch)`; its length,
/// modalities, shapes, classes and labels are the inner dataset's. For a variation of a
/// dataset without writing a wrapper type: a fixed draw in every epoch, corrupted items for a
/// test, an extra transform.
///
/// ```
/// use mmssl_data::{ImageSet, MapItems, PairedDataset, TwoViewConfig, TwoViewMnist};
///
/// let pixels: Vec<u8> = (0..4 * 28 * 28).map(|i| (i % 251) as u8).collect();
/// let images = ImageSet::new(pixels, vec![0, 1, 0, 1], 1, 28, 28, "example").unwrap();
/// let data = TwoViewMnist::new(images, TwoViewConfig::default()).unwrap();
/// // The epoch-0 draw in every epoch.
/// let fixed = MapItems::new(data, |d: &TwoViewMnist, i, _epoch| d.get(i, 0));
/// assert_eq!(fixed.get(1, 7).unwrap(), fixed.get(1, 0).unwrap());
/// assert_eq!(fixed.len(), 4);
/// ```
pub struct MapItems<D, F> {
    inner: D,
    get: F,
}

impl<D, F> MapItems<D, F>
where
    D: PairedDataset,
    F: Fn(&D, usize, u64) -> Result<PairedItem> + Send + Sync,
{
    /// `inner` with its items given by `get(&inner, index, epoch)`.
    pub fn new(inner: D, get: F) -> Self {
        MapItems { inner, get }
    }

    /// The inner dataset.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D, F> PairedDataset for MapItems<D, F>
where
    D: PairedDataset,
    F: Fn(&D, usize, u64) -> Result<PairedItem> + Send + Sync,
{
    inner_layout!();
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn label(&self, index: usize) -> Option<usize> {
        self.inner.label(index)
    }
    fn get(&self, index: usize, epoch: u64) -> Result<PairedItem> {
        (self.get)(&self.inner, index, epoch)
    }
    fn item_name(&self, index: usize) -> Option<String> {
        self.inner.item_name(index)
    }
    fn item_grid(&self, index: usize) -> Result<Option<crate::neuro::preprocess::VoxelGrid>> {
        self.inner.item_grid(index)
    }
    fn source_grid(
        &self,
        index: usize,
        modality: usize,
    ) -> Result<Option<crate::neuro::preprocess::VoxelGrid>> {
        self.inner.source_grid(index, modality)
    }
}
