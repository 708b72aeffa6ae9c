//! Turning items into batches of tensors on any device.

use crate::error::{DataError, Result};
use crate::loading::dataset::{PairedDataset, PairedItem};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// One modality of a batch: feature vectors `[B, D]`, images `[B, C, H, W]` or volumes
/// `[B, C, D, H, W]`.
#[derive(Debug, Clone)]
pub enum ViewBatch {
    /// Feature vectors (e.g. the cached representations a linear probe trains on).
    Vectors(Tensor<2>),
    /// 2D images.
    Images(Tensor<4>),
    /// 3D volumes.
    Volumes(Tensor<5>),
}

impl ViewBatch {
    /// The batch size.
    pub fn batch_size(&self) -> usize {
        match self {
            ViewBatch::Vectors(t) => t.dims()[0],
            ViewBatch::Images(t) => t.dims()[0],
            ViewBatch::Volumes(t) => t.dims()[0],
        }
    }

    /// `vectors`, `images` or `volumes`, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            ViewBatch::Vectors(_) => "vectors",
            ViewBatch::Images(_) => "images",
            ViewBatch::Volumes(_) => "volumes",
        }
    }
}

/// A batch: one tensor per modality and the labels (`None` where an item has no label).
#[derive(Debug, Clone)]
pub struct Batch {
    /// One entry per modality.
    pub views: Vec<ViewBatch>,
    /// Labels as given by the items.
    pub labels: Vec<Option<usize>>,
}

impl Batch {
    /// The labels as an `Int` tensor `[B]`, if every item has one.
    pub fn label_tensor(&self, device: &Device) -> Option<Tensor<1, Int>> {
        let labels: Option<Vec<i64>> = self.labels.iter().map(|l| l.map(|v| v as i64)).collect();
        let labels = labels?;
        let n = labels.len();
        Some(Tensor::from_data(TensorData::new(labels, [n]), device))
    }
}

/// Stacks items of a dataset with per-modality `shapes` (`[D]`, `[C, H, W]` or
/// `[C, D, H, W]`) into a [`Batch`] on `device`.
pub fn collate(items: &[PairedItem], shapes: &[Vec<usize>], device: &Device) -> Result<Batch> {
    if items.is_empty() {
        return Err(DataError::InvalidParameter {
            name: "batch",
            value: "0 items".into(),
            reason: "a batch needs at least one item".into(),
        });
    }
    let b = items.len();
    let mut views = Vec::with_capacity(shapes.len());
    for (m, shape) in shapes.iter().enumerate() {
        let per: usize = shape.iter().product();
        let mut data = Vec::with_capacity(b * per);
        for (i, item) in items.iter().enumerate() {
            let v = item.views.get(m).ok_or_else(|| DataError::Mismatch {
                what: format!(
                    "item {i} of the batch has {} modalities, expected {}",
                    item.views.len(),
                    shapes.len()
                ),
            })?;
            let got = v.len();
            if got != per {
                let what = format!(
                    "item {i}, modality {m}: {got} values, expected {per} for shape {shape:?}"
                );
                return Err(DataError::Mismatch { what });
            }
            data.extend_from_slice(v);
        }
        let view = match shape.len() {
            1 => ViewBatch::Vectors(Tensor::from_data(
                TensorData::new(data, [b, shape[0]]),
                device,
            )),
            3 => ViewBatch::Images(Tensor::from_data(
                TensorData::new(data, [b, shape[0], shape[1], shape[2]]),
                device,
            )),
            4 => ViewBatch::Volumes(Tensor::from_data(
                TensorData::new(data, [b, shape[0], shape[1], shape[2], shape[3]]),
                device,
            )),
            _ => {
                return Err(DataError::InvalidParameter {
                    name: "shape",
                    value: format!("{shape:?}"),
                    reason: "modalities are [D] vectors, [C, H, W] images or [C, D, H, W] volumes"
                        .into(),
                });
            }
        };
        views.push(view);
    }
    Ok(Batch {
        views,
        labels: items.iter().map(|i| i.label).collect(),
    })
}

/// Loads items `indices` of `dataset` for `epoch` and collates them.
pub fn load_batch(
    dataset: &dyn PairedDataset,
    indices: &[usize],
    epoch: u64,
    device: &Device,
) -> Result<Batch> {
    let items = indices
        .iter()
        .map(|&i| dataset.get(i, epoch))
        .collect::<Result<Vec<_>>>()?;
    let shapes: Vec<Vec<usize>> = (0..dataset.modalities())
        .map(|m| dataset.shape(m))
        .collect();
    collate(&items, &shapes, device)
}
