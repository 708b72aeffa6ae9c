//! Writing NIfTI-1 files.

use crate::error::{DataError, Result};
use crate::neuro::volume::{Affine, Volume};
use std::path::Path;

/// Writes `volume` as a NIfTI-1 file of `f32` voxels (`.nii`, or gzip-compressed `.nii.gz`),
/// little-endian; the affine goes to the sform (`sform_code` 2, aligned anatomical) and, when
/// its linear part is a rotation times positive scales, to the qform as well; units are mm and
/// s; `pixdim[4]` is the TR of a 4D volume.
pub fn write_nifti(volume: &Volume, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let ok = name
        .as_deref()
        .is_some_and(|n| n.ends_with(".nii") || n.ends_with(".nii.gz"));
    if !ok {
        return Err(DataError::InvalidParameter {
            name: "output path",
            value: path.display().to_string(),
            reason: "NIfTI output names end with .nii or .nii.gz".into(),
        });
    }
    let a = volume.affine();
    let row = |r: usize| a.rows[r].map(|v| v as f32);
    let vs = volume.voxel_size();
    let mut header = ::nifti::NiftiHeader {
        sform_code: 2,
        qform_code: 0,
        srow_x: row(0),
        srow_y: row(1),
        srow_z: row(2),
        pixdim: [
            1.0,
            vs[0] as f32,
            vs[1] as f32,
            vs[2] as f32,
            volume.tr().unwrap_or(1.0) as f32,
            1.0,
            1.0,
            1.0,
        ],
        xyzt_units: 2 | 8,
        endianness: ::nifti::Endianness::Little,
        ..Default::default()
    };
    let mut descrip = b"mmssl".to_vec();
    descrip.resize(80, 0);
    header.descrip = descrip;
    if let Some((qfac, quat)) = quaternion(a) {
        header.qform_code = 2;
        header.pixdim[0] = qfac as f32;
        header.quatern_b = quat[0] as f32;
        header.quatern_c = quat[1] as f32;
        header.quatern_d = quat[2] as f32;
        header.quatern_x = a.rows[0][3] as f32;
        header.quatern_y = a.rows[1][3] as f32;
        header.quatern_z = a.rows[2][3] as f32;
        let cols = a.voxel_sizes();
        header.pixdim[1] = cols[0] as f32;
        header.pixdim[2] = cols[1] as f32;
        header.pixdim[3] = cols[2] as f32;
    }
    let [nx, ny, nz, nt] = volume.dims();
    if [nx, ny, nz, nt].iter().any(|&d| d > i16::MAX as usize) {
        return Err(DataError::InvalidParameter {
            name: "volume dimensions",
            value: format!("{:?}", volume.dims()),
            reason: "NIfTI-1 dimensions are at most 32767".into(),
        });
    }
    use ndarray::ShapeBuilder;
    let options = ::nifti::writer::WriterOptions::new(path).reference_header(&header);
    let written = if nt == 1 {
        let view = ndarray::ArrayView::from_shape((nx, ny, nz).f(), volume.data())
            .map_err(|e| DataError::format(path, format!("bad volume shape: {e}")))?;
        options.write_nifti(&view)
    } else {
        let view = ndarray::ArrayView::from_shape((nx, ny, nz, nt).f(), volume.data())
            .map_err(|e| DataError::format(path, format!("bad volume shape: {e}")))?;
        options.write_nifti(&view)
    };
    written.map_err(|e| match e {
        ::nifti::NiftiError::Io(io) => DataError::io(path, io),
        other => DataError::format(path, format!("cannot write NIfTI: {other}")),
    })
}

/// The qform quaternion `(b, c, d)` and `qfac` of an affine whose linear part is a rotation
/// (or a rotation with the third axis reflected) times positive column scales; `None` for
/// shears. The conversion follows `nifti_mat44_to_quatern` of `nifti1_io.c`.
pub(super) fn quaternion(a: &Affine) -> Option<(f64, [f64; 3])> {
    let s = a.voxel_sizes();
    if s.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
        return None;
    }
    let mut r = [[0.0; 3]; 3];
    for (row, src) in r.iter_mut().zip(&a.rows) {
        for (j, v) in row.iter_mut().enumerate() {
            *v = src[j] / s[j];
        }
    }
    // Orthogonality of the normalised columns.
    for p in 0..3 {
        for q in p + 1..3 {
            let dot: f64 = (0..3).map(|i| r[i][p] * r[i][q]).sum();
            if dot.abs() > 1e-4 {
                return None;
            }
        }
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let (a_, b, c, d);
    if trace > 0.5 {
        let a0 = 0.5 * trace.sqrt();
        a_ = a0;
        b = 0.25 * (r[2][1] - r[1][2]) / a0;
        c = 0.25 * (r[0][2] - r[2][0]) / a0;
        d = 0.25 * (r[1][0] - r[0][1]) / a0;
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
        if xd > 1.0 {
            let b0 = 0.5 * xd.sqrt();
            b = b0;
            c = 0.25 * (r[0][1] + r[1][0]) / b0;
            d = 0.25 * (r[0][2] + r[2][0]) / b0;
            a_ = 0.25 * (r[2][1] - r[1][2]) / b0;
        } else if yd > 1.0 {
            let c0 = 0.5 * yd.sqrt();
            c = c0;
            b = 0.25 * (r[0][1] + r[1][0]) / c0;
            d = 0.25 * (r[1][2] + r[2][1]) / c0;
            a_ = 0.25 * (r[0][2] - r[2][0]) / c0;
        } else {
            let d0 = 0.5 * zd.sqrt();
            d = d0;
            b = 0.25 * (r[0][2] + r[2][0]) / d0;
            c = 0.25 * (r[1][2] + r[2][1]) / d0;
            a_ = 0.25 * (r[1][0] - r[0][1]) / d0;
        }
    }
    let q = if a_ < 0.0 { [-b, -c, -d] } else { [b, c, d] };
    q.iter().all(|v| v.is_finite()).then_some((qfac, q))
}
