//! Volume preprocessing: resampling onto a target grid, brain masks, z-normalisation and the
//! paired random crop + flip augmentation.
//!
//! Resampling maps every target voxel through world space into the source,
//! `source voxel = A_source^-1 * A_target * target voxel`, and samples trilinearly; the source
//! is taken as zero outside its grid (so the brain's edge fades over one voxel instead of being
//! cut). The standard grid of mmssl's OASIS-3 pipeline is [`VoxelGrid::standard`]: 64^3 voxels of
//! 3 mm, axis-aligned in world space (x, y, z increasing with the world axes), centred on the
//! brain's centre.

use crate::error::{DataError, Result};
use crate::neuro::volume::{Affine, Volume};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

/// The side of the standard grid (64 voxels).
pub const STANDARD_SIDE: usize = 64;
/// The voxel size of the standard grid in millimetres (3 mm).
pub const STANDARD_SPACING: f64 = 3.0;

/// The former name of [`VoxelGrid`] (renamed so as not to share a name with the protocol's grid
/// of runs, `mmssl_protocol::Grid`).
#[deprecated(since = "0.1.0", note = "renamed VoxelGrid")]
pub type Grid = VoxelGrid;

/// A target grid: its shape and voxel-to-world affine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VoxelGrid {
    /// `[x, y, z]` voxels.
    pub shape: [usize; 3],
    /// Voxel-to-world affine (millimetres).
    pub affine: Affine,
}

impl VoxelGrid {
    /// A grid of `shape` with an invertible `affine`.
    pub fn new(shape: [usize; 3], affine: Affine) -> Result<Self> {
        if shape.contains(&0) {
            return Err(DataError::InvalidParameter {
                name: "grid shape",
                value: format!("{shape:?}"),
                reason: "every side must be at least 1".into(),
            });
        }
        if affine.inverse().is_none() {
            return Err(DataError::InvalidParameter {
                name: "grid affine",
                value: format!("{:?}", affine.rows),
                reason: "the affine must be finite and invertible".into(),
            });
        }
        Ok(VoxelGrid { shape, affine })
    }

    /// An axis-aligned grid of `shape` with isotropic `spacing` (mm) whose centre (voxel
    /// `(shape - 1) / 2`) lies at world position `centre`.
    pub fn centred(shape: [usize; 3], spacing: f64, centre: [f64; 3]) -> Result<Self> {
        if !(spacing.is_finite() && spacing > 0.0) || centre.iter().any(|c| !c.is_finite()) {
            return Err(DataError::InvalidParameter {
                name: "grid spacing / centre",
                value: format!("{spacing} / {centre:?}"),
                reason: "the spacing must be positive and the centre finite".into(),
            });
        }
        let mut origin = [0.0; 3];
        for a in 0..3 {
            origin[a] = centre[a] - spacing * (shape[a] as f64 - 1.0) / 2.0;
        }
        VoxelGrid::new(shape, Affine::scaling([spacing; 3], origin))
    }

    /// The standard grid: 64^3 voxels of 3 mm centred at `centre` (world mm).
    pub fn standard(centre: [f64; 3]) -> Result<Self> {
        VoxelGrid::centred([STANDARD_SIDE; 3], STANDARD_SPACING, centre)
    }

    /// The grid of a volume.
    pub fn of(volume: &Volume) -> Self {
        VoxelGrid {
            shape: volume.shape(),
            affine: *volume.affine(),
        }
    }

    /// Voxels in the grid.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the grid has no voxel (never true for a grid built by [`VoxelGrid::new`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The centroid, in world millimetres, of the voxels of frame 0 whose value exceeds
/// `threshold` (the "brain centre" of a skull-stripped image with `threshold = 0`).
pub fn brain_centre(volume: &Volume, threshold: f32) -> Result<[f64; 3]> {
    let [nx, ny, nz] = volume.shape();
    let data = &volume.data()[..volume.frame_len()];
    let (mut sum, mut n) = ([0.0f64; 3], 0usize);
    for z in 0..nz {
        for y in 0..ny {
            let row = &data[nx * (y + ny * z)..nx * (y + ny * z + 1)];
            for (x, &v) in row.iter().enumerate() {
                if v > threshold {
                    sum[0] += x as f64;
                    sum[1] += y as f64;
                    sum[2] += z as f64;
                    n += 1;
                }
            }
        }
    }
    if n == 0 {
        return Err(DataError::format(
            volume.source(),
            format!("no voxel exceeds {threshold}: cannot find the brain's centre"),
        ));
    }
    Ok(volume.affine().apply(sum.map(|s| s / n as f64)))
}

/// Resamples every frame of `volume` onto `grid` by trilinear interpolation in world space
/// (zero outside the source). The result has the grid's affine and the source's TR.
pub fn resample(volume: &Volume, grid: &VoxelGrid) -> Result<Volume> {
    let inv = volume.affine().inverse().ok_or_else(|| {
        DataError::format(volume.source(), "the volume's affine is not invertible")
    })?;
    // Target voxel -> world -> source voxel.
    let m = inv.compose(&grid.affine).rows;
    let [tx, ty, tz] = grid.shape;
    let src = volume.shape();
    let frames = volume.frames();
    let n = grid.len();
    let mut out = vec![0f32; n * frames];
    for t in 0..frames {
        let frame = volume.frame(t).unwrap_or(&[]);
        let dst = &mut out[t * n..(t + 1) * n];
        for k in 0..tz {
            for j in 0..ty {
                let (jf, kf) = (j as f64, k as f64);
                let base = [
                    m[0][1] * jf + m[0][2] * kf + m[0][3],
                    m[1][1] * jf + m[1][2] * kf + m[1][3],
                    m[2][1] * jf + m[2][2] * kf + m[2][3],
                ];
                let row = &mut dst[tx * (j + ty * k)..tx * (j + ty * k + 1)];
                for (i, o) in row.iter_mut().enumerate() {
                    let fi = i as f64;
                    let p = [
                        base[0] + m[0][0] * fi,
                        base[1] + m[1][0] * fi,
                        base[2] + m[2][0] * fi,
                    ];
                    *o = trilinear(frame, src, p);
                }
            }
        }
    }
    let dims = [tx, ty, tz, frames];
    Volume::new_4d(out, dims, grid.affine, volume.tr(), volume.source())
}

/// Trilinear sample of `data` (shape `s`, x fastest) at voxel coordinates `p`, zero outside.
pub(crate) fn trilinear(data: &[f32], s: [usize; 3], p: [f64; 3]) -> f32 {
    let mut idx = [[0usize; 2]; 3];
    let mut w = [[0f64; 2]; 3];
    for a in 0..3 {
        let f = p[a].floor();
        if !(f >= -1.0 && f < s[a] as f64) {
            return 0.0;
        }
        let frac = p[a] - f;
        let lo = f as i64;
        for (c, (ix, wt)) in idx[a].iter_mut().zip(w[a].iter_mut()).enumerate() {
            let q = lo + c as i64;
            let weight = if c == 0 { 1.0 - frac } else { frac };
            if q >= 0 && (q as usize) < s[a] {
                *ix = q as usize;
                *wt = weight;
            } else {
                *ix = 0;
                *wt = 0.0;
            }
        }
    }
    let mut acc = 0.0f64;
    for (zc, &wz) in w[2].iter().enumerate() {
        if wz == 0.0 {
            continue;
        }
        for (yc, &wy) in w[1].iter().enumerate() {
            if wy == 0.0 {
                continue;
            }
            let off = s[0] * (idx[1][yc] + s[1] * idx[2][zc]);
            for (xc, &wx) in w[0].iter().enumerate() {
                if wx != 0.0 {
                    acc += wx * wy * wz * data[off + idx[0][xc]] as f64;
                }
            }
        }
    }
    acc as f32
}

/// Resamples `volume` onto the standard grid (64^3, 3 mm) centred on its brain centre (the
/// centroid of voxels above `threshold`, see [`brain_centre`]).
pub fn resample_to_standard(volume: &Volume, threshold: f32) -> Result<Volume> {
    let grid = VoxelGrid::standard(brain_centre(volume, threshold)?)?;
    resample(volume, &grid)
}

/// Crops or zero-pads every frame of `volume` symmetrically to `shape` (extra voxels are
/// taken from or added to the high end when the difference is odd), keeping the world
/// position of every kept voxel: the affine's origin moves by the voxels removed or added.
pub fn crop_or_pad(volume: &Volume, shape: [usize; 3]) -> Result<Volume> {
    if shape.contains(&0) {
        return Err(DataError::InvalidParameter {
            name: "shape",
            value: format!("{shape:?}"),
            reason: "every side must be at least 1".into(),
        });
    }
    let src = volume.shape();
    // Offset of the output's voxel 0 in source voxels (negative when padding).
    let off: [i64; 3] = std::array::from_fn(|a| (src[a] as i64 - shape[a] as i64).div_euclid(2));
    let frames = volume.frames();
    let n = shape.iter().product::<usize>();
    let mut out = vec![0f32; n * frames];
    for t in 0..frames {
        let frame = volume.frame(t).unwrap_or(&[]);
        for k in 0..shape[2] {
            let sk = k as i64 + off[2];
            if sk < 0 || sk >= src[2] as i64 {
                continue;
            }
            for j in 0..shape[1] {
                let sj = j as i64 + off[1];
                if sj < 0 || sj >= src[1] as i64 {
                    continue;
                }
                for i in 0..shape[0] {
                    let si = i as i64 + off[0];
                    if si < 0 || si >= src[0] as i64 {
                        continue;
                    }
                    out[t * n + i + shape[0] * (j + shape[1] * k)] =
                        frame[si as usize + src[0] * (sj as usize + src[1] * sk as usize)];
                }
            }
        }
    }
    let shift = Affine::scaling([1.0; 3], off.map(|o| o as f64));
    let affine = volume.affine().compose(&shift);
    Volume::new_4d(
        out,
        [shape[0], shape[1], shape[2], frames],
        affine,
        volume.tr(),
        volume.source(),
    )
}

/// A brain mask on a grid: `true` inside.
#[derive(Debug, Clone, PartialEq)]
pub struct Mask {
    shape: [usize; 3],
    inside: Vec<bool>,
}

impl Mask {
    /// The voxels of frame 0 of `volume` whose value exceeds `threshold`.
    pub fn threshold(volume: &Volume, threshold: f32) -> Self {
        Mask {
            shape: volume.shape(),
            inside: volume.data()[..volume.frame_len()]
                .iter()
                .map(|&v| v > threshold)
                .collect(),
        }
    }

    /// A mask given as a volume (non-zero = inside; probabilities are thresholded at 0.5),
    /// resampled onto `grid` when it is on another grid.
    pub fn from_volume(mask: &Volume, grid: &VoxelGrid) -> Result<Self> {
        if VoxelGrid::of(mask) == *grid {
            let binary = mask.data()[..mask.frame_len()]
                .iter()
                .all(|&v| v == 0.0 || v == 1.0);
            let cut = if binary { 0.0 } else { 0.5 };
            return Ok(Mask::threshold(mask, cut));
        }
        let first = if mask.frames() > 1 {
            mask.with_data(mask.data()[..mask.frame_len()].to_vec(), {
                let [x, y, z] = mask.shape();
                [x, y, z, 1]
            })?
        } else {
            mask.clone()
        };
        let r = resample(&first, grid)?;
        Ok(Mask::threshold(&r, 0.5))
    }

    /// From a vector of flags (x fastest).
    pub fn from_flags(shape: [usize; 3], inside: Vec<bool>) -> Result<Self> {
        if shape.iter().product::<usize>() != inside.len() {
            return Err(DataError::Mismatch {
                what: format!(
                    "a mask of shape {shape:?} needs {} flags, got {}",
                    shape.iter().product::<usize>(),
                    inside.len()
                ),
            });
        }
        Ok(Mask { shape, inside })
    }

    /// The grid shape.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The flags, x fastest.
    pub fn flags(&self) -> &[bool] {
        &self.inside
    }

    /// Voxels inside.
    pub fn count(&self) -> usize {
        self.inside.iter().filter(|&&b| b).count()
    }

    /// The values of `data` (one frame on the mask's grid) inside the mask.
    pub fn values(&self, data: &[f32]) -> Vec<f32> {
        data.iter()
            .zip(&self.inside)
            .filter(|(_, m)| **m)
            .map(|(v, _)| *v)
            .collect()
    }

    fn check(&self, volume: &Volume) -> Result<()> {
        if volume.shape() != self.shape {
            return Err(DataError::Mismatch {
                what: format!(
                    "{}: volume of shape {:?} but mask of shape {:?}",
                    volume.source(),
                    volume.shape(),
                    self.shape
                ),
            });
        }
        Ok(())
    }
}

/// Sets every voxel outside `mask` to zero (in every frame).
pub fn apply_mask(volume: &Volume, mask: &Mask) -> Result<Volume> {
    mask.check(volume)?;
    let n = volume.frame_len();
    let mut data = volume.data().to_vec();
    for frame in data.chunks_mut(n) {
        for (v, &m) in frame.iter_mut().zip(&mask.inside) {
            if !m {
                *v = 0.0;
            }
        }
    }
    volume.with_data(data, volume.dims())
}

/// z-normalisation inside the mask: `(v - mean) / std` over the masked voxels of the (3D)
/// volume, zero outside. An empty mask or constant intensity inside it is an error.
pub fn z_normalise(volume: &Volume, mask: &Mask) -> Result<Volume> {
    mask.check(volume)?;
    if volume.frames() != 1 {
        return Err(DataError::format(
            volume.source(),
            format!(
                "z-normalisation takes a 3D volume, this one has {} frames",
                volume.frames()
            ),
        ));
    }
    let vals = mask.values(volume.data());
    if vals.is_empty() {
        return Err(DataError::format(
            volume.source(),
            "the brain mask is empty: nothing to normalise",
        ));
    }
    let n = vals.len() as f64;
    let mean = vals.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = vals.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    if std.is_nan() || std <= 1e-12 * mean.abs().max(1.0) {
        return Err(DataError::format(
            volume.source(),
            "constant intensity inside the brain mask: cannot z-normalise",
        ));
    }
    let data = volume
        .data()
        .iter()
        .zip(&mask.inside)
        .map(|(&v, &m)| {
            if m {
                ((v as f64 - mean) / std) as f32
            } else {
                0.0
            }
        })
        .collect();
    volume.with_data(data, volume.dims())
}

/// Settings of the volume augmentation: zero-pad by `pad` voxels on every side, take a random
/// `crop` window, and flip along each axis with probability 1/2 where `flip` allows; one draw
/// for all modalities of an item, or one each ([`AugmentPairing`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Zero padding on each side (8).
    pub pad: usize,
    /// The crop window (64^3).
    pub crop: [usize; 3],
    /// Which axes may be flipped (all three).
    pub flip: [bool; 3],
    /// One draw for the whole item (paired, the default) or one per modality (separate).
    #[serde(default)]
    pub pairing: AugmentPairing,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            pad: 8,
            crop: [STANDARD_SIDE; 3],
            flip: [true; 3],
            pairing: AugmentPairing::Paired,
        }
    }
}

/// Whether the modalities of one item share one augmentation draw.
///
/// With a shared draw (`Paired`, as the authors' OASIS-3 pipeline does: one crop corner for
/// T1 and fALFF) the two views stay voxel-aligned, but the draw itself becomes information the
/// views share: a contrastive objective can match a pair by where the brain sits in the crop
/// window and which axes are flipped, without looking at the anatomy. On small cohorts that
/// shortcut is what the model learns, and its validation loss (on unaugmented volumes) stays at
/// chance. `Separate` draws crop and flips for each modality independently, so only what the
/// volumes themselves share can match a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AugmentPairing {
    /// One draw for every modality of an item.
    #[default]
    Paired,
    /// An independent draw per modality.
    Separate,
}

/// One draw of the augmentation: the crop's corner in the padded volume and the flips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AugmentDraw {
    /// Corner of the crop window in padded coordinates.
    pub offset: [usize; 3],
    /// Whether each axis is flipped.
    pub flip: [bool; 3],
}

impl AugmentConfig {
    /// Draws a crop corner (uniform over all windows of the padded volume) and the flips.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R, shape: [usize; 3]) -> Result<AugmentDraw> {
        let mut offset = [0; 3];
        let mut flip = [false; 3];
        for a in 0..3 {
            let padded = shape[a] + 2 * self.pad;
            if self.crop[a] == 0 || self.crop[a] > padded {
                return Err(DataError::InvalidParameter {
                    name: "crop",
                    value: format!("{:?}", self.crop),
                    reason: format!(
                        "the crop must fit the padded volume {:?} + 2 x {}",
                        shape, self.pad
                    ),
                });
            }
            offset[a] = rng.random_range(0..=padded - self.crop[a]);
        }
        for (f, &allowed) in flip.iter_mut().zip(&self.flip) {
            *f = allowed && rng.random_bool(0.5);
        }
        Ok(AugmentDraw { offset, flip })
    }

    /// Applies one draw to one volume (`shape`, x fastest).
    pub fn apply(&self, draw: &AugmentDraw, shape: [usize; 3], data: &[f32]) -> Result<Vec<f32>> {
        if data.len() != shape.iter().product::<usize>() {
            return Err(DataError::Mismatch {
                what: format!("augmentation: {} values for shape {shape:?}", data.len()),
            });
        }
        let c = self.crop;
        let pad = self.pad as i64;
        let mut out = vec![0f32; c.iter().product()];
        // Source index of output index `o` along axis `a`, or None in the padding.
        let src = |a: usize, o: usize| -> Option<usize> {
            let o = if draw.flip[a] { c[a] - 1 - o } else { o };
            let q = (draw.offset[a] + o) as i64 - pad;
            (q >= 0 && (q as usize) < shape[a]).then_some(q as usize)
        };
        for k in 0..c[2] {
            let Some(sk) = src(2, k) else { continue };
            for j in 0..c[1] {
                let Some(sj) = src(1, j) else { continue };
                let row = shape[0] * (sj + shape[1] * sk);
                let orow = c[0] * (j + c[1] * k);
                for i in 0..c[0] {
                    if let Some(si) = src(0, i) {
                        out[orow + i] = data[row + si];
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Applies ONE random draw (crop corner and flips, from `rng`) to every volume of a pair or
/// tuple, so that all modalities stay aligned. All volumes must have `shape`.
pub fn augment_volumes<R: Rng + ?Sized>(
    rng: &mut R,
    shape: [usize; 3],
    volumes: &[&[f32]],
    config: &AugmentConfig,
) -> Result<Vec<Vec<f32>>> {
    let draw = config.draw(rng, shape)?;
    volumes
        .iter()
        .map(|v| config.apply(&draw, shape, v))
        .collect()
}
