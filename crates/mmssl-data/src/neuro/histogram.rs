//! Histogram standardisation of MR intensities (Nyul & Udupa, "On standardizing the MR image
//! intensity scale", Magn. Reson. Med. 42:1072-1081, 1999; Nyul, Udupa & Zhang, "New
//! variants of a method of MRI scale standardization", IEEE TMI 19(2):143-150, 2000).
//!
//! Training: for each training volume, the landmarks `mu_k` are the percentiles `p_k` of the
//! intensities inside its brain mask (default `p = 1, 10, 20, ..., 90, 99`); the range
//! `[mu_first, mu_last]` is mapped linearly onto the standard scale `[s1, s2]` (default
//! `[0, 100]`) and the standard landmarks are the means of the mapped landmarks over the
//! training volumes. Only training volumes may be used, so that no information leaks from
//! validation or test data.
//!
//! Application: a volume's own landmarks are mapped piecewise-linearly onto the standard
//! landmarks; intensities below the first or above the last landmark are extrapolated with
//! the slope of the first or last segment. Voxels outside the mask are left at zero.
//!
//! Percentiles interpolate linearly between order statistics (position `p/100 * (n - 1)`).

use crate::error::{DataError, Result};
use crate::neuro::preprocess::Mask;
use crate::neuro::volume::Volume;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Settings of the standardisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramConfig {
    /// The percentiles used as landmarks, strictly increasing in `[0, 100]` (at least 2).
    pub percentiles: Vec<f64>,
    /// The standard scale `[s1, s2]` onto which the first and last landmarks are mapped.
    pub scale: [f64; 2],
}

impl Default for HistogramConfig {
    fn default() -> Self {
        let mut percentiles = vec![1.0];
        percentiles.extend((1..10).map(|k| 10.0 * k as f64));
        percentiles.push(99.0);
        HistogramConfig {
            percentiles,
            scale: [0.0, 100.0],
        }
    }
}

impl HistogramConfig {
    fn validate(&self) -> Result<()> {
        let p = &self.percentiles;
        let ok = p.len() >= 2
            && p.iter().all(|v| (0.0..=100.0).contains(v))
            && p.windows(2).all(|w| w[0] < w[1])
            && self.scale[0].is_finite()
            && self.scale[1].is_finite()
            && self.scale[0] < self.scale[1];
        if ok {
            Ok(())
        } else {
            Err(DataError::InvalidParameter {
                name: "histogram standardisation",
                value: format!("percentiles {p:?}, scale {:?}", self.scale),
                reason: "at least 2 strictly increasing percentiles in [0, 100] and a scale \
                         s1 < s2"
                    .into(),
            })
        }
    }
}

/// Percentile `p` (0-100) of sorted values, interpolating linearly between order statistics.
fn percentile_sorted(sorted: &[f32], p: f64) -> f64 {
    let pos = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let f = pos - lo as f64;
    sorted[lo] as f64 * (1.0 - f) + sorted[hi] as f64 * f
}

/// The landmarks (percentiles `percentiles`) of the values of `volume` inside `mask`.
pub fn landmarks(volume: &Volume, mask: &Mask, percentiles: &[f64]) -> Result<Vec<f64>> {
    if volume.shape() != mask.shape() {
        return Err(DataError::Mismatch {
            what: format!(
                "{}: volume of shape {:?} but mask of shape {:?}",
                volume.source(),
                volume.shape(),
                mask.shape()
            ),
        });
    }
    let mut vals = mask.values(&volume.data()[..volume.frame_len()]);
    if vals.is_empty() {
        return Err(DataError::format(
            volume.source(),
            "the brain mask is empty: no intensity to standardise",
        ));
    }
    vals.sort_unstable_by(f32::total_cmp);
    Ok(percentiles
        .iter()
        .map(|&p| percentile_sorted(&vals, p))
        .collect())
}

/// Learns standard landmarks from training volumes one at a time (so that a large training
/// set need not be held in memory).
#[derive(Debug, Clone)]
pub struct HistogramFitter {
    config: HistogramConfig,
    sums: Vec<f64>,
    count: usize,
}

impl HistogramFitter {
    /// A fitter with `config`.
    pub fn new(config: HistogramConfig) -> Result<Self> {
        config.validate()?;
        let k = config.percentiles.len();
        Ok(HistogramFitter {
            config,
            sums: vec![0.0; k],
            count: 0,
        })
    }

    /// Adds one training volume (intensities inside `mask`).
    pub fn add(&mut self, volume: &Volume, mask: &Mask) -> Result<()> {
        let mu = landmarks(volume, mask, &self.config.percentiles)?;
        let (first, last) = (mu[0], mu[mu.len() - 1]);
        if last.partial_cmp(&first) != Some(std::cmp::Ordering::Greater) {
            return Err(DataError::format(
                volume.source(),
                format!(
                    "intensities inside the mask are constant between the {}th and {}th \
                     percentiles ({first}): cannot learn histogram landmarks from it",
                    self.config.percentiles[0],
                    self.config.percentiles[mu.len() - 1]
                ),
            ));
        }
        let [s1, s2] = self.config.scale;
        for (s, m) in self.sums.iter_mut().zip(&mu) {
            *s += s1 + (m - first) / (last - first) * (s2 - s1);
        }
        self.count += 1;
        Ok(())
    }

    /// The learned standardiser (at least one volume must have been added).
    pub fn finish(self) -> Result<HistogramStandardizer> {
        if self.count == 0 {
            return Err(DataError::InvalidParameter {
                name: "training volumes",
                value: "0".into(),
                reason: "histogram landmarks are learned from at least one volume".into(),
            });
        }
        let n = self.count as f64;
        Ok(HistogramStandardizer {
            percentiles: self.config.percentiles,
            scale: self.config.scale,
            landmarks: self.sums.iter().map(|s| s / n).collect(),
            training_volumes: self.count,
        })
    }
}

/// Learned standard landmarks: serialise them (JSON) with the model so that the same mapping
/// is applied at evaluation time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramStandardizer {
    /// The percentiles of the landmarks.
    pub percentiles: Vec<f64>,
    /// The standard scale `[s1, s2]`.
    pub scale: [f64; 2],
    /// The standard landmarks (one per percentile, non-decreasing, from `s1` to `s2`).
    pub landmarks: Vec<f64>,
    /// How many training volumes they were learned from.
    pub training_volumes: usize,
}

impl HistogramStandardizer {
    /// Learns the landmarks from `(volume, mask)` pairs of the training set.
    pub fn fit<'a>(
        training: impl IntoIterator<Item = (&'a Volume, &'a Mask)>,
        config: HistogramConfig,
    ) -> Result<Self> {
        let mut f = HistogramFitter::new(config)?;
        for (v, m) in training {
            f.add(v, m)?;
        }
        f.finish()
    }

    fn validate(&self, what: &str) -> Result<()> {
        HistogramConfig {
            percentiles: self.percentiles.clone(),
            scale: self.scale,
        }
        .validate()?;
        let ok = self.landmarks.len() == self.percentiles.len()
            && self.landmarks.iter().all(|v| v.is_finite())
            && self.landmarks.windows(2).all(|w| w[0] <= w[1]);
        if ok {
            Ok(())
        } else {
            Err(DataError::format(
                what,
                "histogram landmarks must be finite, non-decreasing and one per percentile",
            ))
        }
    }

    /// Maps the intensities of `volume` inside `mask` onto the standard scale (zero outside).
    pub fn apply(&self, volume: &Volume, mask: &Mask) -> Result<Volume> {
        self.validate("histogram standardiser")?;
        let mu = landmarks(volume, mask, &self.percentiles)?;
        // Keep strictly increasing input landmarks (ties: the first of a run).
        let mut xs: Vec<f64> = Vec::with_capacity(mu.len());
        let mut ys: Vec<f64> = Vec::with_capacity(mu.len());
        for (&x, &y) in mu.iter().zip(&self.landmarks) {
            if xs.last().is_none_or(|&l| x > l) {
                xs.push(x);
                ys.push(y);
            }
        }
        if xs.len() < 2 {
            return Err(DataError::format(
                volume.source(),
                format!(
                    "intensities inside the mask are constant ({}): cannot standardise",
                    mu[0]
                ),
            ));
        }
        let map = |v: f64| -> f64 {
            // Segment k: [xs[k], xs[k + 1]]; clamp to the end segments for extrapolation.
            let k = xs.partition_point(|&x| x <= v).clamp(1, xs.len() - 1) - 1;
            let (x0, x1, y0, y1) = (xs[k], xs[k + 1], ys[k], ys[k + 1]);
            y0 + (v - x0) * (y1 - y0) / (x1 - x0)
        };
        let n = volume.frame_len();
        let data: Vec<f32> = volume.data()[..n]
            .iter()
            .zip(mask.flags())
            .map(|(&v, &m)| if m { map(v as f64) as f32 } else { 0.0 })
            .collect();
        let [x, y, z] = volume.shape();
        volume.with_data(data, [x, y, z, 1])
    }

    /// The landmarks as JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| DataError::InvalidParameter {
            name: "histogram landmarks",
            value: format!("{:?}", self.landmarks),
            reason: format!("cannot serialise: {e}"),
        })
    }

    /// Landmarks from JSON (validated); `name` labels errors.
    pub fn from_json(name: impl AsRef<Path>, json: &str) -> Result<Self> {
        let path = name.as_ref();
        let s: HistogramStandardizer = serde_json::from_str(json)
            .map_err(|e| DataError::format(path, format!("bad histogram landmarks: {e}")))?;
        s.validate(&path.display().to_string())?;
        Ok(s)
    }

    /// Writes the landmarks to a JSON file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json()?).map_err(|e| DataError::io(path, e))
    }

    /// Reads landmarks written by [`HistogramStandardizer::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json = crate::files::read_text(path).map_err(|e| DataError::io(path, e))?;
        HistogramStandardizer::from_json(path, &json)
    }
}
