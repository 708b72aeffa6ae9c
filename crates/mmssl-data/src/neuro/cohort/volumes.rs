//! Prepared volume pairs and the cohort as a dataset.

use super::*;
use crate::error::{DataError, Result};
use crate::formats::nifti::read_nifti;
use crate::loading::dataset::{PairedDataset, PairedItem, item_rng};
use crate::neuro::histogram::{HistogramConfig, HistogramFitter, HistogramStandardizer};
use crate::neuro::preprocess::{
    AugmentConfig, AugmentPairing, Mask, VoxelGrid, apply_mask, brain_centre, resample, z_normalise,
};
use crate::neuro::volume::Volume;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Settings of the per-pair preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumePipeline {
    /// Side of the cubic target grid (64).
    pub side: usize,
    /// Voxel size of the target grid in mm (3).
    pub spacing: f64,
    /// T1 intensity above which a voxel is brain (0, for skull-stripped T1s), used for the
    /// grid's centre and, without `mask`, for the brain mask.
    pub mask_threshold: f32,
    /// A brain mask volume (world-aligned with the T1s, e.g. an MNI-space mask) used instead of
    /// thresholding.
    pub mask: Option<PathBuf>,
    /// Landmark percentiles and scale of the histogram standardisation.
    pub histogram: HistogramConfig,
    /// Keep preprocessed pairs in memory (true).
    pub cache: bool,
}

impl Default for VolumePipeline {
    fn default() -> Self {
        VolumePipeline {
            side: 64,
            spacing: 3.0,
            mask_threshold: 0.0,
            mask: None,
            histogram: HistogramConfig::default(),
            cache: true,
        }
    }
}

/// A preprocessed pair: both modalities on the same grid, masked, standardised and
/// z-normalised (x fastest).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedPair {
    /// The T1 values.
    pub t1: Vec<f32>,
    /// The fALFF values.
    pub falff: Vec<f32>,
    /// The common grid.
    pub grid: VoxelGrid,
}

/// The volumes of a manifest with their preprocessing and cache; shared (through `Arc`) by
/// every [`VolumeCohort`] drawn from the manifest.
#[derive(Debug)]
pub struct CohortVolumes {
    manifest: Manifest,
    pipeline: VolumePipeline,
    standardizers: Option<[HistogramStandardizer; 2]>,
    mask: Option<Volume>,
    cache: Vec<OnceLock<Arc<PreparedPair>>>,
}

impl CohortVolumes {
    /// The volumes of `manifest` under `pipeline`, without histogram standardisation until
    /// [`CohortVolumes::with_standardizers`] gives landmarks.
    pub fn new(manifest: Manifest, pipeline: VolumePipeline) -> Result<Self> {
        if pipeline.side == 0 || !(pipeline.spacing.is_finite() && pipeline.spacing > 0.0) {
            return Err(DataError::InvalidParameter {
                name: "pipeline grid",
                value: format!("side {} spacing {}", pipeline.side, pipeline.spacing),
                reason: "a positive side and spacing".into(),
            });
        }
        let mask = pipeline.mask.as_ref().map(read_nifti).transpose()?;
        let cache = (0..manifest.rows.len()).map(|_| OnceLock::new()).collect();
        Ok(CohortVolumes {
            manifest,
            pipeline,
            standardizers: None,
            mask,
            cache,
        })
    }

    /// Uses learned landmarks `[T1, fALFF]` (clears the cache).
    pub fn with_standardizers(mut self, standardizers: [HistogramStandardizer; 2]) -> Self {
        self.standardizers = Some(standardizers);
        self.cache = (0..self.manifest.rows.len())
            .map(|_| OnceLock::new())
            .collect();
        self
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The landmarks in use.
    pub fn standardizers(&self) -> Option<&[HistogramStandardizer; 2]> {
        self.standardizers.as_ref()
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &VolumePipeline {
        &self.pipeline
    }

    /// Loads row `row`, resamples both modalities onto the T1-centred grid and masks them.
    fn resampled(&self, row: usize) -> Result<(Volume, Volume, Mask)> {
        let r = self.manifest.rows.get(row).ok_or(DataError::OutOfRange {
            index: row,
            len: self.manifest.rows.len(),
        })?;
        let load3 = |p: &Path| -> Result<Volume> {
            let v = read_nifti(p)?;
            if v.frames() != 1 {
                return Err(DataError::format(
                    p,
                    format!(
                        "expected a 3D volume, found {} frames (compute fALFF maps first)",
                        v.frames()
                    ),
                ));
            }
            Ok(v)
        };
        let t1 = load3(&r.t1)?;
        let falff = load3(&r.falff)?;
        let p = &self.pipeline;
        let grid =
            VoxelGrid::centred([p.side; 3], p.spacing, brain_centre(&t1, p.mask_threshold)?)?;
        let t1 = resample(&t1, &grid)?;
        let falff = resample(&falff, &grid)?;
        let mask = match &self.mask {
            Some(m) => Mask::from_volume(m, &grid)?,
            None => Mask::threshold(&t1, p.mask_threshold),
        };
        if mask.count() == 0 {
            return Err(DataError::format(
                &r.t1,
                "the brain mask is empty on the target grid",
            ));
        }
        Ok((apply_mask(&t1, &mask)?, apply_mask(&falff, &mask)?, mask))
    }

    /// Learns `[T1, fALFF]` histogram landmarks from manifest rows `rows` (training data only).
    pub fn fit_standardizers(&self, rows: &[usize]) -> Result<[HistogramStandardizer; 2]> {
        let mut t1 = HistogramFitter::new(self.pipeline.histogram.clone())?;
        let mut falff = HistogramFitter::new(self.pipeline.histogram.clone())?;
        for &row in rows {
            let (a, b, m) = self.resampled(row)?;
            t1.add(&a, &m)?;
            falff.add(&b, &m)?;
        }
        Ok([t1.finish()?, falff.finish()?])
    }

    /// The preprocessed pair of row `row` (from the cache when enabled).
    pub fn prepared(&self, row: usize) -> Result<Arc<PreparedPair>> {
        let slot = self.cache.get(row).ok_or(DataError::OutOfRange {
            index: row,
            len: self.cache.len(),
        })?;
        if let Some(p) = slot.get() {
            return Ok(p.clone());
        }
        let (t1, falff, mask) = self.resampled(row)?;
        let (t1, falff) = match &self.standardizers {
            Some([s1, s2]) => (s1.apply(&t1, &mask)?, s2.apply(&falff, &mask)?),
            None => (t1, falff),
        };
        let grid = VoxelGrid::of(&t1);
        let pair = Arc::new(PreparedPair {
            t1: z_normalise(&t1, &mask)?.into_data(),
            falff: z_normalise(&falff, &mask)?.into_data(),
            grid,
        });
        if self.pipeline.cache {
            // Another thread may have filled the slot meanwhile: keep whichever came first.
            let _ = slot.set(pair.clone());
        }
        Ok(pair)
    }
}

/// A [`PairedDataset`] of (T1, fALFF) pairs from [`CohortVolumes`]: items of shape
/// `[1, D, H, W]` = `[1, 64, 64, 64]` per modality (the volume's z, y, x axes; x fastest),
/// labels HC = 0 / AD = 1, optional augmentation drawn from `item_rng(seed, epoch, index)`.
#[derive(Debug, Clone)]
pub struct VolumeCohort {
    volumes: Arc<CohortVolumes>,
    items: Vec<CohortItem>,
    augment: Option<AugmentConfig>,
    seed: u64,
}

impl VolumeCohort {
    /// A cohort of `items` (rows of the manifest of `volumes`).
    pub fn new(
        volumes: Arc<CohortVolumes>,
        items: Vec<CohortItem>,
        augment: Option<AugmentConfig>,
        seed: u64,
    ) -> Result<Self> {
        let n = volumes.manifest.rows.len();
        if let Some(bad) = items.iter().find(|i| i.row >= n) {
            return Err(DataError::OutOfRange {
                index: bad.row,
                len: n,
            });
        }
        if let Some(a) = &augment {
            let side = volumes.pipeline.side;
            if a.crop[0] != a.crop[1] || a.crop[1] != a.crop[2] || a.crop[0] > side + 2 * a.pad {
                return Err(DataError::InvalidParameter {
                    name: "augmentation crop",
                    value: format!("{:?}", a.crop),
                    reason: format!(
                        "a cube no larger than the padded grid ({side} + 2 x {})",
                        a.pad
                    ),
                });
            }
        }
        Ok(VolumeCohort {
            volumes,
            items,
            augment,
            seed,
        })
    }

    /// Every session of `subjects`, for self-supervised pretraining.
    pub fn pretraining(
        volumes: Arc<CohortVolumes>,
        subjects: &[String],
        augment: Option<AugmentConfig>,
        seed: u64,
    ) -> Result<Self> {
        let items = pretraining_items(&volumes.manifest, subjects)?;
        VolumeCohort::new(volumes, items, augment, seed)
    }

    /// One labelled (HC/AD) session per subject, optionally class-balanced by upsampling
    /// (for training a classifier; leave `balanced` off for evaluation).
    pub fn labelled(
        volumes: Arc<CohortVolumes>,
        subjects: &[String],
        balanced: bool,
        augment: Option<AugmentConfig>,
        seed: u64,
    ) -> Result<Self> {
        let mut items = evaluation_items(&volumes.manifest, subjects)?;
        if balanced {
            items = balanced_upsample(&items, seed);
        }
        VolumeCohort::new(volumes, items, augment, seed)
    }

    /// The items.
    pub fn items(&self) -> &[CohortItem] {
        &self.items
    }

    /// The shared volumes.
    pub fn volumes(&self) -> &Arc<CohortVolumes> {
        &self.volumes
    }

    fn side(&self) -> usize {
        match &self.augment {
            Some(a) => a.crop[0],
            None => self.volumes.pipeline.side,
        }
    }
}

impl PairedDataset for VolumeCohort {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn modalities(&self) -> usize {
        2
    }

    fn shape(&self, _modality: usize) -> Vec<usize> {
        let s = self.side();
        vec![1, s, s, s]
    }

    fn classes(&self) -> usize {
        2
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.items.get(index).and_then(|i| i.label)
    }

    fn get(&self, index: usize, epoch: u64) -> Result<PairedItem> {
        let item = self.items.get(index).ok_or(DataError::OutOfRange {
            index,
            len: self.items.len(),
        })?;
        let pair = self.volumes.prepared(item.row)?;
        let views = match &self.augment {
            None => vec![pair.t1.clone(), pair.falff.clone()],
            Some(a) => {
                let mut rng = item_rng(self.seed, epoch, index as u64);
                let shape = pair.grid.shape;
                let first = a.draw(&mut rng, shape)?;
                let second = match a.pairing {
                    AugmentPairing::Paired => first,
                    AugmentPairing::Separate => a.draw(&mut rng, shape)?,
                };
                vec![
                    a.apply(&first, shape, &pair.t1)?,
                    a.apply(&second, shape, &pair.falff)?,
                ]
            }
        };
        Ok(PairedItem {
            views,
            label: item.label,
        })
    }

    fn item_name(&self, index: usize) -> Option<String> {
        let row = self.volumes.manifest.rows.get(self.items.get(index)?.row)?;
        let part = |prefix: &str, id: &str| {
            let id: String = id
                .chars()
                .map(|c| match c {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' => c,
                    _ => '_',
                })
                .collect();
            if id.starts_with(prefix) {
                id
            } else {
                format!("{prefix}{id}")
            }
        };
        Some(format!(
            "{}_{}",
            part("sub-", &row.subject),
            part("ses-", &row.session)
        ))
    }

    /// The grid of the prepared pair (the whole grid: an augmented cohort's crops have no
    /// fixed place on it, so it answers `None`).
    fn item_grid(&self, index: usize) -> Result<Option<VoxelGrid>> {
        if self.augment.is_some() {
            return Ok(None);
        }
        let item = self.items.get(index).ok_or(DataError::OutOfRange {
            index,
            len: self.items.len(),
        })?;
        Ok(Some(self.volumes.prepared(item.row)?.grid))
    }

    /// The grid of the manifest row's T1 (modality 0) or fALFF (1) file, from its header.
    fn source_grid(&self, index: usize, modality: usize) -> Result<Option<VoxelGrid>> {
        let item = self.items.get(index).ok_or(DataError::OutOfRange {
            index,
            len: self.items.len(),
        })?;
        let row = self
            .volumes
            .manifest()
            .rows
            .get(item.row)
            .ok_or(DataError::OutOfRange {
                index: item.row,
                len: self.volumes.manifest().rows.len(),
            })?;
        let path = match modality {
            0 => &row.t1,
            1 => &row.falff,
            _ => return Ok(None),
        };
        let header = crate::formats::nifti::read_nifti_header(path)?;
        let [x, y, z, _] = header.dims4();
        Ok(Some(VoxelGrid::new([x, y, z], header.affine)?))
    }
}
