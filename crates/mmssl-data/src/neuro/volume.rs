//! Volumes on a grid in world space: [`Affine`] (voxel index to millimetres) and [`Volume`]
//! (3D or 4D `f32` data, `x` fastest).

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};

/// A 4x4 affine map from voxel indices `(i, j, k)` to world coordinates in millimetres, as the
/// NIfTI `sform`/`qform` store it: `world = M[0..3][0..3] * (i, j, k) + M[0..3][3]`, last row
/// `(0, 0, 0, 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    /// The matrix, row by row.
    pub rows: [[f64; 4]; 4],
}

impl Affine {
    /// The identity (1 mm voxels, origin at voxel 0).
    pub fn identity() -> Self {
        Affine::scaling([1.0; 3], [0.0; 3])
    }

    /// From the three top rows (the NIfTI `srow_x`, `srow_y`, `srow_z`).
    pub fn from_rows(top: [[f64; 4]; 3]) -> Self {
        Affine {
            rows: [top[0], top[1], top[2], [0.0, 0.0, 0.0, 1.0]],
        }
    }

    /// An axis-aligned grid: voxel `(i, j, k)` is at `origin + (s0 i, s1 j, s2 k)`.
    pub fn scaling(spacing: [f64; 3], origin: [f64; 3]) -> Self {
        let mut top = [[0.0; 4]; 3];
        for a in 0..3 {
            top[a][a] = spacing[a];
            top[a][3] = origin[a];
        }
        Affine::from_rows(top)
    }

    /// The world position of voxel coordinates `p` (which may be fractional).
    pub fn apply(&self, p: [f64; 3]) -> [f64; 3] {
        let m = &self.rows;
        let mut out = [0.0; 3];
        for (r, o) in out.iter_mut().enumerate() {
            *o = m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3];
        }
        out
    }

    /// `self * other`: first `other`, then `self`.
    pub fn compose(&self, other: &Affine) -> Affine {
        let (a, b) = (&self.rows, &other.rows);
        let mut rows = [[0.0; 4]; 4];
        for (r, row) in rows.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = (0..4).map(|k| a[r][k] * b[k][c]).sum();
            }
        }
        Affine { rows }
    }

    /// The determinant of the linear (3x3) part.
    pub fn determinant(&self) -> f64 {
        let m = &self.rows;
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    }

    /// The inverse map (world to voxel), or `None` when the linear part is singular or a value
    /// is not finite.
    pub fn inverse(&self) -> Option<Affine> {
        let m = &self.rows;
        if !self.is_finite() {
            return None;
        }
        let det = self.determinant();
        let scale = (0..3)
            .map(|c| (0..3).map(|r| m[r][c].abs()).fold(0.0, f64::max))
            .product::<f64>();
        if det == 0.0 || !det.is_finite() || det.abs() <= 1e-12 * scale {
            return None;
        }
        // Adjugate / determinant.
        let c = |r0: usize, r1: usize, c0: usize, c1: usize| {
            m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0]
        };
        let inv3 = [
            [c(1, 2, 1, 2), -c(0, 2, 1, 2), c(0, 1, 1, 2)],
            [-c(1, 2, 0, 2), c(0, 2, 0, 2), -c(0, 1, 0, 2)],
            [c(1, 2, 0, 1), -c(0, 2, 0, 1), c(0, 1, 0, 1)],
        ];
        let mut top = [[0.0; 4]; 3];
        for r in 0..3 {
            for k in 0..3 {
                top[r][k] = inv3[r][k] / det;
            }
            top[r][3] = -(0..3).map(|k| top[r][k] * m[k][3]).sum::<f64>();
        }
        Some(Affine::from_rows(top))
    }

    /// Lengths of the three columns of the linear part: the voxel sizes in millimetres.
    pub fn voxel_sizes(&self) -> [f64; 3] {
        let m = &self.rows;
        let mut out = [0.0; 3];
        for (c, o) in out.iter_mut().enumerate() {
            *o = (0..3).map(|r| m[r][c] * m[r][c]).sum::<f64>().sqrt();
        }
        out
    }

    /// Whether every entry is finite.
    pub fn is_finite(&self) -> bool {
        self.rows.iter().flatten().all(|v| v.is_finite())
    }
}

/// A 3D or 4D volume: `dims = [x, y, z, t]` (`t = 1` for 3D), data as `f32` with `x` fastest,
/// then `y`, `z`, `t`; an [`Affine`] from voxel indices to world millimetres; voxel sizes in
/// millimetres; the repetition time in seconds for 4D series; and `source`, the file (or a
/// description) that errors name.
///
/// Every value is finite: constructors reject NaN and infinities.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    dims: [usize; 4],
    voxel_size: [f64; 3],
    affine: Affine,
    tr: Option<f64>,
    data: Vec<f32>,
    source: String,
}

impl Volume {
    /// A 3D volume of shape `dims` (voxel sizes are the affine's column lengths).
    pub fn new(
        data: Vec<f32>,
        dims: [usize; 3],
        affine: Affine,
        source: impl Into<String>,
    ) -> Result<Self> {
        Volume::new_4d(data, [dims[0], dims[1], dims[2], 1], affine, None, source)
    }

    /// A 3D (`dims[3] = 1`) or 4D volume with repetition time `tr` in seconds.
    pub fn new_4d(
        data: Vec<f32>,
        dims: [usize; 4],
        affine: Affine,
        tr: Option<f64>,
        source: impl Into<String>,
    ) -> Result<Self> {
        let source = source.into();
        let n = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                DataError::format(&source, format!("invalid volume dimensions {dims:?}"))
            })?;
        let got = data.len();
        if got != n {
            let what = format!("{source}: {got} values for dimensions {dims:?} ({n} voxels)");
            return Err(DataError::Mismatch { what });
        }
        if affine.inverse().is_none() {
            return Err(DataError::format(
                &source,
                format!("the affine {:?} is singular or not finite", affine.rows),
            ));
        }
        if let Some(tr) = tr
            && !(tr.is_finite() && tr > 0.0)
        {
            return Err(DataError::InvalidParameter {
                name: "tr",
                value: tr.to_string(),
                reason: "the repetition time must be a positive number of seconds".into(),
            });
        }
        check_finite(&data, dims, &source)?;
        Ok(Volume {
            dims,
            voxel_size: affine.voxel_sizes(),
            affine,
            tr,
            data,
            source,
        })
    }

    /// Overrides the voxel sizes (the NIfTI `pixdim`, which may differ from the affine's column
    /// lengths in files with shears). Sizes must be positive and finite.
    pub fn with_voxel_size(mut self, voxel_size: [f64; 3]) -> Result<Self> {
        if voxel_size.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(DataError::InvalidParameter {
                name: "voxel size",
                value: format!("{voxel_size:?}"),
                reason: "voxel sizes must be positive millimetres".into(),
            });
        }
        self.voxel_size = voxel_size;
        Ok(self)
    }

    /// A volume on the same grid (same affine, voxel sizes and TR) with other data.
    pub fn with_data(&self, data: Vec<f32>, dims: [usize; 4]) -> Result<Self> {
        let v = Volume::new_4d(data, dims, self.affine, self.tr, self.source.clone())?;
        Ok(Volume {
            voxel_size: self.voxel_size,
            ..v
        })
    }

    /// `[x, y, z, t]`.
    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }

    /// `[x, y, z]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.dims[0], self.dims[1], self.dims[2]]
    }

    /// Number of frames (1 for a 3D volume).
    pub fn frames(&self) -> usize {
        self.dims[3]
    }

    /// Voxels in one frame.
    pub fn frame_len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// Voxel sizes in millimetres.
    pub fn voxel_size(&self) -> [f64; 3] {
        self.voxel_size
    }

    /// The voxel-to-world affine.
    pub fn affine(&self) -> &Affine {
        &self.affine
    }

    /// The repetition time in seconds (4D series whose header gives it).
    pub fn tr(&self) -> Option<f64> {
        self.tr
    }

    /// All values, `x` fastest.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, consuming the volume.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// The file or description that errors name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Frame `t` (`None` past the end).
    pub fn frame(&self, t: usize) -> Option<&[f32]> {
        let n = self.frame_len();
        self.data.get(t * n..(t + 1) * n)
    }

    /// The value at `(x, y, z)` of frame 0 (`None` outside the grid).
    pub fn get(&self, x: usize, y: usize, z: usize) -> Option<f32> {
        let [nx, ny, nz, _] = self.dims;
        (x < nx && y < ny && z < nz).then(|| self.data[x + nx * (y + ny * z)])
    }

    /// The world position of the centre of voxel `(x, y, z)`.
    pub fn world(&self, x: f64, y: f64, z: f64) -> [f64; 3] {
        self.affine.apply([x, y, z])
    }
}

/// The first non-finite value of `data` (laid out as `dims`) as a [`DataError::NonFinite`].
pub(crate) fn check_finite(data: &[f32], dims: [usize; 4], source: &str) -> Result<()> {
    match data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(non_finite(source, i, dims, data[i] as f64)),
    }
}

pub(crate) fn non_finite(source: &str, i: usize, dims: [usize; 4], value: f64) -> DataError {
    let (x, y, z, t) = (
        i % dims[0],
        (i / dims[0]) % dims[1],
        (i / (dims[0] * dims[1])) % dims[2],
        i / (dims[0] * dims[1] * dims[2]),
    );
    let voxel = if dims[3] > 1 {
        vec![x, y, z, t]
    } else {
        vec![x, y, z]
    };
    DataError::NonFinite {
        path: source.into(),
        voxel,
        value,
    }
}
