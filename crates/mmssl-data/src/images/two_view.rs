//! Two-View MNIST (Fedorov et al., arXiv:2012.13623): two views of each digit.
//!
//! Every image is min-max scaled and resized bilinearly from 28x28 to 32x32. View 1 is that
//! image rotated by an angle drawn uniformly from `[-45, 45]` degrees (bilinear, zeros outside);
//! view 2 is the image plus `U[0, 1)` noise, brought back into `[0, 1]` by clamping (as the
//! authors' code does) or, as an option, by min-max rescaling (as the paper describes). Draws
//! differ per epoch and are reproduced by the seed. The variant of Wang et al. (ICML 2015,
//! "noisy MNIST") takes view 2 from a different image of the same class.

use crate::error::{DataError, Result};
use crate::images::{Image, ImageSet};
use crate::loading::dataset::{PairedDataset, PairedItem, item_rng};
use rand::RngExt;
use serde::{Deserialize, Serialize};

/// How view 2 is brought back into `[0, 1]` after adding noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NoiseRange {
    /// `min(max(x, 0), 1)` (the authors' code).
    #[default]
    Clamp,
    /// Per-image min-max rescaling (the paper's description).
    Rescale,
}

/// Where view 2 comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SecondView {
    /// The same image as view 1.
    #[default]
    SameImage,
    /// Another image of the same class, drawn per item and epoch (noisy-MNIST protocol).
    SameClass,
}

/// Settings of [`TwoViewMnist`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwoViewConfig {
    /// Largest rotation of view 1, in degrees (45).
    pub max_rotation: f32,
    /// How the noisy view is mapped back into `[0, 1]`.
    pub noise_range: NoiseRange,
    /// Source of view 2.
    pub second_view: SecondView,
    /// Output side (32).
    pub size: usize,
    /// Seed of every random draw.
    pub seed: u64,
}

impl Default for TwoViewConfig {
    fn default() -> Self {
        TwoViewConfig {
            max_rotation: 45.0,
            noise_range: NoiseRange::Clamp,
            second_view: SecondView::SameImage,
            size: 32,
            seed: 0,
        }
    }
}

/// Two-View MNIST over any single-channel [`ImageSet`] (MNIST, Fashion-MNIST, ...).
#[derive(Debug, Clone)]
pub struct TwoViewMnist {
    images: ImageSet,
    config: TwoViewConfig,
    by_class: Vec<Vec<usize>>,
}

impl TwoViewMnist {
    /// Wraps `images` (grey-level) with `config`.
    pub fn new(images: ImageSet, config: TwoViewConfig) -> Result<Self> {
        if images.channels() != 1 {
            return Err(DataError::InvalidParameter {
                name: "channels",
                value: images.channels().to_string(),
                reason: format!(
                    "Two-View MNIST needs grey-level images; {} has more channels",
                    images.source()
                ),
            });
        }
        if !(config.max_rotation >= 0.0 && config.max_rotation.is_finite()) || config.size == 0 {
            return Err(DataError::InvalidParameter {
                name: "two-view config",
                value: format!("max_rotation {} size {}", config.max_rotation, config.size),
                reason: "the rotation must be finite and >= 0 and the size >= 1".into(),
            });
        }
        let mut by_class = vec![Vec::new(); images.class_counts().len()];
        for (i, &l) in images.labels().iter().enumerate() {
            by_class[l as usize].push(i);
        }
        Ok(TwoViewMnist {
            images,
            config,
            by_class,
        })
    }

    /// The settings.
    pub fn config(&self) -> &TwoViewConfig {
        &self.config
    }

    fn base(&self, i: usize) -> Image {
        let s = &self.images;
        Image::from_u8(s.image(i), 1, s.height(), s.width())
            .min_max()
            .resize(self.config.size, self.config.size)
    }
}

impl PairedDataset for TwoViewMnist {
    fn len(&self) -> usize {
        self.images.len()
    }

    fn modalities(&self) -> usize {
        2
    }

    fn shape(&self, _modality: usize) -> Vec<usize> {
        vec![1, self.config.size, self.config.size]
    }

    fn classes(&self) -> usize {
        self.by_class.len()
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.images.labels().get(index).map(|&l| l as usize)
    }

    fn get(&self, index: usize, epoch: u64) -> Result<PairedItem> {
        if index >= self.len() {
            return Err(DataError::OutOfRange {
                index,
                len: self.len(),
            });
        }
        let mut rng = item_rng(self.config.seed, epoch, index as u64);
        let label = self.images.labels()[index] as usize;
        let image = self.base(index);
        let r = self.config.max_rotation;
        let angle = if r > 0.0 {
            rng.random_range(-r..=r)
        } else {
            0.0
        };
        let view1 = image.rotate(angle);
        let source2 = match self.config.second_view {
            SecondView::SameImage => image,
            SecondView::SameClass => {
                let peers = &self.by_class[label];
                let pick = if peers.len() > 1 {
                    // Uniform over the other images of the class.
                    let k = rng.random_range(0..peers.len() - 1);
                    let own = peers.binary_search(&index).unwrap_or(0);
                    peers[if k >= own { k + 1 } else { k }]
                } else {
                    index
                };
                self.base(pick)
            }
        };
        let mut noisy = source2;
        for x in &mut noisy.data {
            *x += rng.random_range(0.0f32..1.0);
        }
        let noisy = match self.config.noise_range {
            NoiseRange::Clamp => {
                for x in &mut noisy.data {
                    *x = x.clamp(0.0, 1.0);
                }
                noisy
            }
            NoiseRange::Rescale => noisy.min_max(),
        };
        Ok(PairedItem {
            views: vec![view1.data, noisy.data],
            label: Some(label),
        })
    }
}
