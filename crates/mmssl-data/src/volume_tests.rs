//! Tests of the NIfTI reader and writer, on the real files of
//! `../shared/data/mri` (skipped with a message when absent) and on files written here.

use super::*;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A volume of the shared MRI data read whole and by its header alone.
fn shared_volume(name: &str) -> Option<(PathBuf, Volume, NiftiHeaderInfo)> {
    let path = shared_mri(name)?;
    let (vol, info) = (
        read_nifti(&path).unwrap(),
        read_nifti_header(&path).unwrap(),
    );
    Some((path, vol, info))
}

pub(crate) fn shared_mri(name: &str) -> Option<PathBuf> {
    crate::tests::shared(&format!("mri/{name}"))
}

/// The shared MNI ICBM152 T1 template and its grey-matter map, if both are there.
pub(crate) fn shared_template() -> Option<(PathBuf, PathBuf)> {
    Some((
        shared_mri("mni152_t1_1mm.nii.gz")?,
        shared_mri("mni152_gm_1mm.nii.gz")?,
    ))
}

pub(crate) fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Writes `data` (x fastest) with the `nifti` crate as a fixture in its element type.
macro_rules! fixture {
    ($path:expr, $dims:expr, $data:expr, $be:expr) => {{
        use ndarray::ShapeBuilder;
        let header = ::nifti::NiftiHeader {
            endianness: if $be {
                ::nifti::Endianness::Big
            } else {
                ::nifti::Endianness::Little
            },
            pixdim: [1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0],
            srow_x: [2.0, 0.0, 0.0, -10.0],
            srow_y: [0.0, 3.0, 0.0, -20.0],
            srow_z: [0.0, 0.0, 4.0, -30.0],
            sform_code: 1,
            ..Default::default()
        };
        let dims: &[usize] = &$dims;
        let arr = ndarray::Array::from_shape_vec(ndarray::IxDyn(dims).f(), $data).unwrap();
        ::nifti::writer::WriterOptions::new($path)
            .reference_header(&header)
            .write_nifti(&arr)
            .unwrap();
    }};
}

fn values() -> Vec<f64> {
    (0..2 * 3 * 4).map(|i| (i as f64) * 3.0 - 7.0).collect()
}

#[test]
fn every_common_datatype_reads_in_both_byte_orders() {
    let tmp = tempfile::tempdir().unwrap();
    let v = values();
    let dims = [2usize, 3, 4];
    for be in [false, true] {
        let p = |n: &str| tmp.path().join(format!("{n}_{be}.nii"));
        macro_rules! check {
            ($t:ty, $name:expr, $signed:expr, $code:expr) => {{
                let data: Vec<$t> = v
                    .iter()
                    .map(|&x| (if $signed { x } else { x + 7.0 }) as $t)
                    .collect();
                let path = p($name);
                fixture!(&path, dims, data.clone(), be);
                let vol = read_nifti(&path).unwrap();
                assert_eq!(vol.dims(), [2, 3, 4, 1], "{}", $name);
                let want: Vec<f32> = data.iter().map(|&x| x as f32).collect();
                assert_eq!(vol.data(), &want[..], "{} big-endian {be}", $name);
                let info = read_nifti_header(&path).unwrap();
                assert_eq!(info.big_endian, be);
                assert_eq!(info.voxel_type.code(), $code);
                assert_eq!(info.voxel_size, [2.0, 3.0, 4.0]);
                assert_eq!(vol.affine().apply([1.0, 1.0, 1.0]), [-8.0, -17.0, -26.0]);
            }};
        }
        check!(u8, "u8", false, 2);
        check!(i8, "i8", true, 256);
        check!(i16, "i16", true, 4);
        check!(u16, "u16", false, 512);
        check!(i32, "i32", true, 8);
        check!(u32, "u32", false, 768);
        check!(i64, "i64", true, 1024);
        check!(u64, "u64", false, 1280);
        check!(f32, "f32", true, 16);
        check!(f64, "f64", true, 64);
    }
}

/// Patches bytes of an uncompressed NIfTI-1 file.
fn patch(path: &Path, at: usize, bytes: &[u8]) {
    let mut b = std::fs::read(path).unwrap();
    b[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, b).unwrap();
}

#[test]
fn scaling_and_time_units_are_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("scaled.nii");
    let data: Vec<i16> = (0..2 * 2 * 2 * 3).map(|i| i as i16 - 5).collect();
    fixture!(&path, [2, 2, 2, 3], data.clone(), false);
    // scl_slope (byte 112) = 2.5, scl_inter (116) = -3; pixdim[4] (92) = 1350 in ms.
    patch(&path, 112, &2.5f32.to_le_bytes());
    patch(&path, 116, &(-3.0f32).to_le_bytes());
    patch(&path, 92, &1350.0f32.to_le_bytes());
    patch(&path, 123, &[2 | 16]);
    let vol = read_nifti(&path).unwrap();
    let want: Vec<f32> = data.iter().map(|&x| x as f32 * 2.5 - 3.0).collect();
    assert_eq!(vol.data(), &want[..]);
    assert_eq!(vol.dims(), [2, 2, 2, 3]);
    assert!((vol.tr().unwrap() - 1.35).abs() < 1e-9);
    // Spatial unit metres: affine and voxel sizes in mm.
    patch(&path, 123, &[1 | 8]);
    let vol = read_nifti(&path).unwrap();
    assert_eq!(vol.voxel_size(), [2000.0, 3000.0, 4000.0]);
    assert!((vol.tr().unwrap() - 1350.0).abs() < 1e-9);
    assert_eq!(vol.affine().rows[0][0], 2000.0);
    // A slope of zero means no scaling.
    patch(&path, 112, &0.0f32.to_le_bytes());
    let vol = read_nifti(&path).unwrap();
    let want: Vec<f32> = data.iter().map(|&x| x as f32).collect();
    assert_eq!(vol.data(), &want[..]);
}

#[test]
fn written_volumes_read_back_with_affine_sform_and_qform() {
    let tmp = tempfile::tempdir().unwrap();
    // A rotation about z by 30 degrees, 2x2.5x3 mm, with a reflected third axis.
    let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    let affine = Affine::from_rows([
        [2.0 * c, -2.5 * s, 0.0, 10.0],
        [2.0 * s, 2.5 * c, 0.0, -20.0],
        [0.0, 0.0, -3.0, 30.0],
    ]);
    let data: Vec<f32> = (0..4 * 5 * 6 * 2)
        .map(|i| (i as f32).sin() * 100.0)
        .collect();
    let vol = Volume::new_4d(data, [4, 5, 6, 2], affine, Some(0.8), "mem").unwrap();
    for name in ["v.nii.gz", "v.nii"] {
        let path = tmp.path().join(name);
        write_nifti(&vol, &path).unwrap();
        let back = read_nifti(&path).unwrap();
        assert_eq!(back.dims(), vol.dims());
        assert_eq!(back.data(), vol.data());
        assert!((back.tr().unwrap() - 0.8).abs() < 1e-6);
        for r in 0..3 {
            for k in 0..4 {
                assert!((back.affine().rows[r][k] - affine.rows[r][k]).abs() < 1e-5);
            }
        }
    }
    // Drop the sform (sform_code at byte 254): the qform gives the same affine.
    let path = tmp.path().join("v.nii");
    patch(&path, 254, &0i16.to_le_bytes());
    let info = read_nifti_header(&path).unwrap();
    assert_eq!((info.sform_code, info.qform_code), (0, 2));
    for r in 0..3 {
        for k in 0..4 {
            assert!(
                (info.affine.rows[r][k] - affine.rows[r][k]).abs() < 1e-5,
                "qform {:?} vs {:?}",
                info.affine.rows,
                affine.rows
            );
        }
    }
    // Neither: pixdim scaling.
    patch(&path, 252, &0i16.to_le_bytes());
    let info = read_nifti_header(&path).unwrap();
    assert_eq!(info.affine, Affine::scaling([2.0, 2.5, 3.0], [0.0; 3]));
    assert!(write_nifti(&vol, tmp.path().join("v.img")).is_err());
}

#[test]
fn header_and_image_pairs_read_like_single_files() {
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("one.nii");
    let data: Vec<i16> = (0..3 * 4 * 5).map(|i| i as i16 * 7 - 50).collect();
    fixture!(&single, [3, 4, 5], data, true);
    let bytes = std::fs::read(&single).unwrap();
    let mut hdr = bytes[..348].to_vec();
    hdr[108..112].copy_from_slice(&0f32.to_be_bytes()); // vox_offset 0 in the .img
    hdr[344..348].copy_from_slice(b"ni1\0");
    std::fs::write(tmp.path().join("pair.hdr"), &hdr).unwrap();
    std::fs::write(tmp.path().join("pair.img"), &bytes[352..]).unwrap();
    let a = read_nifti(&single).unwrap();
    let b = read_nifti(tmp.path().join("pair.hdr")).unwrap();
    assert_eq!(a.data(), b.data());
    assert_eq!(a.affine(), b.affine());
    // Without the .img: a Missing error naming it; from bytes: a clear format error.
    std::fs::remove_file(tmp.path().join("pair.img")).unwrap();
    match read_nifti(tmp.path().join("pair.hdr")) {
        Err(DataError::Missing { path, .. }) => assert!(path.ends_with("pair.img")),
        other => panic!("expected Missing, got {other:?}"),
    }
    let e = read_nifti_bytes("pair.hdr", &hdr).unwrap_err().to_string();
    assert!(e.contains("separate .img"), "{e}");
}

#[test]
fn real_big_endian_file_matches_an_independent_decode() {
    let Some((path, vol, info)) = shared_volume("anatomical_big_endian.nii") else {
        return;
    };
    assert!(info.big_endian);
    assert_eq!(vol.dims(), [33, 41, 25, 1]);
    assert_eq!(vol.voxel_size(), [2.0, 2.0, 2.0]);
    let raw = std::fs::read(&path).unwrap();
    let want: Vec<f32> = raw[352..]
        .chunks_exact(2)
        .map(|c| i16::from_be_bytes([c[0], c[1]]) as f32)
        .collect();
    assert_eq!(vol.data(), &want[..]);
    assert!(vol.data().iter().any(|&v| v > 0.0));
    // The same bytes from memory, and gzip-compressed, read identically.
    assert_eq!(read_nifti_bytes("mem", &raw).unwrap().data(), vol.data());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(read_nifti_bytes("mem.gz", &gz).unwrap().data(), vol.data());
}

#[test]
fn nifti2_files_are_read() {
    let Some((path, vol, info)) = shared_volume("example_nifti2.nii.gz") else {
        return;
    };
    assert_eq!(info.version, 2);
    assert_eq!(info.dims, vec![32, 20, 12, 2]);
    assert_eq!(vol.dims(), [32, 20, 12, 2]);
    assert_eq!(info.vox_offset, 608);
    assert_eq!(
        vol.affine().rows[0],
        [
            -2.0,
            6.714715653593746e-19,
            9.081024511081715e-18,
            117.8551025390625
        ]
    );
    let raw = gunzip(&path);
    let want: Vec<f32> = raw[608..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32)
        .collect();
    assert_eq!(vol.data(), &want[..]);
}

#[test]
fn real_volumes_have_their_documented_headers() {
    let Some(path) = shared_mri("bold_4d_small.nii.gz") else {
        return;
    };
    let bold = read_nifti(&path).unwrap();
    assert_eq!(bold.dims(), [10, 10, 18, 40]);
    assert!((bold.tr().unwrap() - 1.35).abs() < 1e-6);
    let Some(stat) = shared_mri("statmap_3mm.nii.gz") else {
        return;
    };
    let stat = read_nifti(&stat).unwrap();
    assert_eq!(stat.shape(), [53, 63, 46]);
    assert_eq!(stat.voxel_size(), [3.0, 3.0, 3.0]);
    assert_eq!(stat.affine().apply([0.0; 3]), [78.0, -112.0, -50.0]);
    assert_eq!(stat.tr(), None);
}

/// A valid little-endian NIfTI-1 file of `f32` values.
fn f32_file(dir: &Path, data: &[f32], dims: [usize; 3]) -> PathBuf {
    let path = dir.join("f.nii");
    fixture!(&path, dims, data.to_vec(), false);
    path
}

#[test]
fn bad_nifti_files_are_typed_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<f32> = (0..4 * 4 * 4).map(|i| i as f32).collect();
    let good = std::fs::read(f32_file(tmp.path(), &data, [4, 4, 4])).unwrap();
    let try_bytes = |name: &str, b: &[u8]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, b).unwrap();
        let e = read_nifti(&path).unwrap_err();
        let from_mem = read_nifti_bytes(&path, b).unwrap_err();
        assert_eq!(e.to_string(), from_mem.to_string());
        assert!(e.to_string().contains(name), "{e}");
        e
    };
    // Truncated data.
    let e = try_bytes("cut.nii", &good[..good.len() - 10]);
    assert!(
        matches!(e, DataError::Format { .. }) && e.to_string().contains("truncated"),
        "{e}"
    );
    // Truncated header.
    let e = try_bytes("head.nii", &good[..200]);
    assert!(e.to_string().contains("truncated header"), "{e}");
    let e = try_bytes("tiny.nii", &good[..2]);
    assert!(e.to_string().contains("truncated"), "{e}");
    // Wrong magic.
    let mut b = good.clone();
    b[344..348].copy_from_slice(b"xyz\0");
    let e = try_bytes("magic.nii", &b);
    assert!(e.to_string().contains("magic"), "{e}");
    // Not a NIfTI file at all.
    let e = try_bytes("text.nii", b"hello, this is not an image at all");
    assert!(e.to_string().contains("sizeof_hdr"), "{e}");
    // Unsupported datatype (complex64).
    let mut b = good.clone();
    b[70..72].copy_from_slice(&32i16.to_le_bytes());
    let e = try_bytes("complex.nii", &b);
    assert!(e.to_string().contains("complex64"), "{e}");
    // dim[0] = 0, a negative dimension, more than 4 dimensions.
    let mut b = good.clone();
    b[40..42].copy_from_slice(&0i16.to_le_bytes());
    try_bytes("dim0.nii", &b);
    let mut b = good.clone();
    b[42..44].copy_from_slice(&(-4i16).to_le_bytes());
    let e = try_bytes("negdim.nii", &b);
    assert!(e.to_string().contains("dim[1]"), "{e}");
    let mut b = good.clone();
    b[40..42].copy_from_slice(&5i16.to_le_bytes());
    b[48..52].copy_from_slice(&[1, 0, 2, 0]);
    let e = try_bytes("5d.nii", &b);
    assert!(e.to_string().contains("more than 4"), "{e}");
    // Huge declared dimensions in a small file: an error before any allocation.
    let mut b = good.clone();
    for k in 0..3 {
        b[42 + 2 * k..44 + 2 * k].copy_from_slice(&32767i16.to_le_bytes());
    }
    b[70..72].copy_from_slice(&64i16.to_le_bytes());
    let e = try_bytes("huge.nii", &b);
    assert!(e.to_string().contains("truncated"), "{e}");
    // vox_offset inside the header.
    let mut b = good.clone();
    b[108..112].copy_from_slice(&100f32.to_le_bytes());
    let e = try_bytes("offset.nii", &b);
    assert!(e.to_string().contains("vox_offset"), "{e}");
    // A singular sform.
    let mut b = good.clone();
    b[280..328].copy_from_slice(&[0u8; 48]);
    let e = try_bytes("singular.nii", &b);
    assert!(e.to_string().contains("singular"), "{e}");
    // NaN and infinite voxels: errors naming the voxel.
    let mut nan = data.clone();
    nan[1 + 4 * (2 + 4 * 3)] = f32::NAN;
    let p = f32_file(tmp.path(), &nan, [4, 4, 4]);
    match read_nifti(&p) {
        Err(DataError::NonFinite { path, voxel, value }) => {
            assert_eq!(path, p);
            assert_eq!(voxel, vec![1, 2, 3]);
            assert!(value.is_nan());
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    // Truncated gzip stream.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &good).unwrap();
    let gz = gz.finish().unwrap();
    let e = try_bytes("cut.nii.gz", &gz[..gz.len() / 2]);
    assert!(matches!(e, DataError::Format { .. }), "{e}");
    // Missing file.
    assert!(matches!(
        read_nifti(tmp.path().join("absent.nii")),
        Err(DataError::Io { .. })
    ));
}
