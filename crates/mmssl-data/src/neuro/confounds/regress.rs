//! The least-squares fit of the confounds on the kept frames, and the filling of censored
//! frames (see the module documentation of [`super`]).

use super::ConfoundDesign;
use crate::error::{DataError, Result};
use crate::neuro::volume::Volume;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// What [`regress_confounds`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    /// Columns of the fit (intercept and trend included) that were used.
    pub used: Vec<String>,
    /// Confound columns dropped as linear combinations of earlier ones.
    pub dropped: Vec<String>,
    /// Frames kept, of all.
    pub kept: usize,
    /// Frames in the series.
    pub frames: usize,
}

/// Orthonormal columns spanning `[1, t, confounds]` over the kept frames (modified
/// Gram-Schmidt, twice); columns that add nothing are dropped.
fn basis(design: &ConfoundDesign, frames: usize) -> (Vec<Vec<f64>>, Vec<String>, Vec<String>) {
    let rows: Vec<usize> = (0..frames).filter(|&t| design.keep[t]).collect();
    let centre = (frames as f64 - 1.0) / 2.0;
    let mut candidates: Vec<(String, Vec<f64>)> = vec![
        ("intercept".into(), vec![1.0; rows.len()]),
        (
            "linear trend".into(),
            rows.iter().map(|&t| t as f64 - centre).collect(),
        ),
    ];
    for (n, v) in design.names.iter().zip(&design.values) {
        candidates.push((n.clone(), rows.iter().map(|&t| v[t]).collect()));
    }
    let (mut q, mut used, mut dropped) = (Vec::<Vec<f64>>::new(), Vec::new(), Vec::new());
    for (name, mut v) in candidates {
        let norm0 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        for _ in 0..2 {
            for b in &q {
                let d: f64 = b.iter().zip(&v).map(|(a, c)| a * c).sum();
                v.iter_mut().zip(b).for_each(|(x, a)| *x -= d * a);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm0 == 0.0 || norm <= 1e-9 * norm0 || q.len() >= rows.len() {
            dropped.push(name);
            continue;
        }
        v.iter_mut().for_each(|x| *x /= norm);
        q.push(v);
        used.push(name);
    }
    (q, used, dropped)
}

/// Regresses the confounds out of every voxel of the 4D series `bold` (inside `mask` where
/// given; zero outside), then fills censored frames by interpolation (see the module
/// documentation), in place. The result is on the series' grid with its TR.
pub fn regress_confounds(
    bold: Volume,
    mask: Option<&[bool]>,
    design: &ConfoundDesign,
) -> Result<(Volume, Regression)> {
    let (n, frames) = (bold.frame_len(), bold.frames());
    if design.keep.len() != frames {
        return Err(DataError::Mismatch {
            what: format!(
                "{}: {frames} frames, but the confound design has {}",
                bold.source(),
                design.keep.len()
            ),
        });
    }
    if let Some(m) = mask
        && m.len() != n
    {
        return Err(DataError::Mismatch {
            what: format!(
                "{}: {n} voxels per frame, but the mask has {}",
                bold.source(),
                m.len()
            ),
        });
    }
    let (q, used, dropped) = basis(design, frames);
    let rows: Vec<usize> = (0..frames).filter(|&t| design.keep[t]).collect();
    // For each censored frame: the kept neighbours and the weight of the later one.
    let fill: Vec<(usize, usize, usize, f64)> = (0..frames)
        .filter(|&t| !design.keep[t])
        .map(|t| {
            let after = rows.partition_point(|&r| r < t);
            match (after.checked_sub(1), rows.get(after)) {
                (Some(b), Some(&a)) => {
                    let before = rows[b];
                    (t, b, after, (t - before) as f64 / (a - before) as f64)
                }
                (Some(b), None) => (t, b, b, 0.0),
                (None, _) => (t, 0, 0, 0.0),
            }
        })
        .collect();
    // In place, a block of voxels at a time: one copy of the series in memory (a 2 mm MNI
    // series of 300 frames is 1.3 GB), the block's series gathered voxel by voxel.
    let (dims, affine, tr, sizes) = (bold.dims(), *bold.affine(), bold.tr(), bold.voxel_size());
    let source = bold.source().to_string();
    let mut data = bold.into_data();
    const BLOCK: usize = 8192;
    for start in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - start);
        let mut block = vec![0f32; len * frames];
        for t in 0..frames {
            for (k, &x) in data[t * n + start..t * n + start + len].iter().enumerate() {
                block[k * frames + t] = x;
            }
        }
        block
            .par_chunks_mut(frames)
            .enumerate()
            .for_each(|(k, series)| {
                if mask.is_some_and(|m| !m[start + k]) {
                    series.fill(0.0);
                    return;
                }
                let mut y: Vec<f64> = rows.iter().map(|&t| series[t] as f64).collect();
                for b in &q {
                    let d: f64 = b.iter().zip(&y).map(|(a, c)| a * c).sum();
                    y.iter_mut().zip(b).for_each(|(x, a)| *x -= d * a);
                }
                for (k, &t) in rows.iter().enumerate() {
                    series[t] = y[k] as f32;
                }
                for &(t, b, a, w) in &fill {
                    series[t] = ((1.0 - w) * y[b] + w * y[a]) as f32;
                }
            });
        for t in 0..frames {
            for (k, x) in data[t * n + start..t * n + start + len]
                .iter_mut()
                .enumerate()
            {
                *x = block[k * frames + t];
            }
        }
    }
    let volume = Volume::new_4d(data, dims, affine, tr, source)?.with_voxel_size(sizes)?;
    Ok((
        volume,
        Regression {
            used,
            dropped,
            kept: rows.len(),
            frames,
        },
    ))
}
