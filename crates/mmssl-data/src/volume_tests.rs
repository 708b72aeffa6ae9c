//! Tests of the NIfTI reader/writer and the volume pipeline, on the real files of
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

#[test]
fn mni_template_resampled_to_3mm_matches_an_independent_computation() {
    let Some(path) = shared_mri("mni152_t1_1mm.nii.gz") else {
        return;
    };
    let mni = read_nifti(&path).unwrap();
    let [nx, ny, nz] = mni.shape();
    assert_eq!([nx, ny, nz], [197, 233, 189]);
    let at = |x: usize, y: usize, z: usize| mni.data()[x + nx * (y + ny * z)] as f64;
    let a = *mni.affine();
    // (1) Integer 3x downsampling with the same origin: target (i, j, k) is source
    // (3i, 3j, 3k) exactly, so the trilinear sample is that voxel.
    let shape = [nx.div_ceil(3), ny.div_ceil(3), nz.div_ceil(3)];
    let grid = VoxelGrid::new(shape, a.compose(&Affine::scaling([3.0; 3], [0.0; 3]))).unwrap();
    let r = resample(&mni, &grid).unwrap();
    assert_eq!(r.shape(), [66, 78, 63]);
    assert_eq!(r.voxel_size(), [3.0, 3.0, 3.0]);
    let mut want = 0.0;
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                want += at(3 * i, 3 * j, 3 * k);
            }
        }
    }
    let got: f64 = r.data().iter().map(|&v| v as f64).sum();
    assert!(want > 1e5);
    assert!((got - want).abs() <= 1e-6 * want, "{got} vs {want}");
    // (2) Shifted by 1.5 source voxels: every sample is the mean of a 2x2x2 block.
    let shape = [(nx - 2) / 3, (ny - 2) / 3, (nz - 2) / 3];
    let grid = VoxelGrid::new(shape, a.compose(&Affine::scaling([3.0; 3], [1.5; 3]))).unwrap();
    let r = resample(&mni, &grid).unwrap();
    let mut want = 0.0;
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                let (x, y, z) = (3 * i + 1, 3 * j + 1, 3 * k + 1);
                let mut block = 0.0;
                for (dx, dy, dz) in (0..8).map(|c| (c & 1, (c >> 1) & 1, c >> 2)) {
                    block += at(x + dx, y + dy, z + dz);
                }
                want += block / 8.0;
            }
        }
    }
    let got: f64 = r.data().iter().map(|&v| v as f64).sum();
    assert!((got - want).abs() <= 1e-5 * want, "{got} vs {want}");
    // (3) The standard grid: 64^3 at 3 mm centred on the brain; the brain fits inside.
    let centre = brain_centre(&mni, 0.0).unwrap();
    let s = resample_to_standard(&mni, 0.0).unwrap();
    assert_eq!(s.dims(), [64, 64, 64, 1]);
    assert_eq!(s.voxel_size(), [3.0; 3]);
    let mid = s.affine().apply([31.5; 3]);
    for a in 0..3 {
        assert!((mid[a] - centre[a]).abs() < 1e-9);
    }
    // 192 mm of field of view holds nearly all of the template's brain (only the tip of the
    // frontal pole touches the border), and the total intensity is 1/27 of the source's up to
    // interpolation error.
    let border: f64 = (0..64 * 64 * 64)
        .filter(|i| {
            let (x, y, z) = (i % 64, (i / 64) % 64, i / 4096);
            [x, y, z].iter().any(|&c| c == 0 || c == 63)
        })
        .map(|i| s.data()[i] as f64)
        .sum();
    let total_src: f64 = mni.data().iter().map(|&v| v as f64).sum();
    let total: f64 = s.data().iter().map(|&v| v as f64).sum();
    assert!(border < 1e-3 * total, "{border} of {total}");
    assert!(
        (total * 27.0 / total_src - 1.0).abs() < 0.02,
        "{}",
        total * 27.0 / total_src
    );
}

/// A volume whose value is a linear function of world position, on a rotated grid.
fn linear_volume(shape: [usize; 3], affine: Affine, f: impl Fn([f64; 3]) -> f64) -> Volume {
    let mut data = Vec::new();
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                data.push(f(affine.apply([i as f64, j as f64, k as f64])) as f32);
            }
        }
    }
    Volume::new(data, shape, affine, "linear").unwrap()
}

#[test]
fn resampling_maps_through_world_space() {
    let (c, s) = (0.3f64.cos(), 0.3f64.sin());
    let src_affine = Affine::from_rows([
        [2.0 * c, -2.0 * s, 0.0, -20.0],
        [2.0 * s, 2.0 * c, 0.0, -25.0],
        [0.0, 0.0, 2.5, -15.0],
    ]);
    let f = |w: [f64; 3]| 100.0 + 0.5 * w[0] - 0.25 * w[1] + 0.75 * w[2];
    let src = linear_volume([24, 26, 14], src_affine, f);
    let grid = VoxelGrid::centred([10, 10, 8], 3.0, src.world(11.5, 12.5, 6.5)).unwrap();
    let inv = src_affine.inverse().unwrap();
    let r = resample(&src, &grid).unwrap();
    let mut checked = 0;
    for k in 0..8 {
        for j in 0..10 {
            for i in 0..10 {
                let w = grid.affine.apply([i as f64, j as f64, k as f64]);
                let p = inv.apply(w);
                // Trilinear interpolation reproduces a linear function inside the grid.
                if (0..3).all(|a| p[a] >= 0.0 && p[a] <= [23.0, 25.0, 13.0][a]) {
                    let got = r.data()[i + 10 * (j + 10 * k)] as f64;
                    assert!((got - f(w)).abs() < 1e-3, "{got} vs {}", f(w));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 400, "{checked}");
    // Far outside the source: zero.
    let away = VoxelGrid::centred([4, 4, 4], 3.0, [1000.0, 0.0, 0.0]).unwrap();
    assert!(
        resample(&src, &away)
            .unwrap()
            .data()
            .iter()
            .all(|&v| v == 0.0)
    );
    // Crop and pad keep world positions.
    let cp = crop_or_pad(&src, [20, 30, 9]).unwrap();
    assert_eq!(cp.shape(), [20, 30, 9]);
    let w = cp.world(5.0, 10.0, 4.0);
    let p = inv.apply(w);
    let v = src.get(
        p[0].round() as usize,
        p[1].round() as usize,
        p[2].round() as usize,
    );
    assert_eq!(cp.get(5, 10, 4), v);
    assert_eq!(cp.get(0, 0, 0), Some(0.0)); // padding along y
}

fn blob(shape: [usize; 3], scale: f32, offset: f32) -> Volume {
    let c = shape.map(|s| (s as f64 - 1.0) / 2.0);
    let mut data = Vec::new();
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                let d2 = ((i as f64 - c[0]) / c[0]).powi(2)
                    + ((j as f64 - c[1]) / c[1]).powi(2)
                    + ((k as f64 - c[2]) / c[2]).powi(2);
                let v = if d2 < 0.8 {
                    // A non-uniform intensity profile inside an ellipsoid.
                    (1.0 + 3.0 * (1.0 - d2) + 0.5 * ((i * 7 + j * 3 + k) % 5) as f64) as f32
                } else {
                    0.0
                };
                data.push(if v > 0.0 { v * scale + offset } else { 0.0 });
            }
        }
    }
    Volume::new(data, shape, Affine::scaling([3.0; 3], [0.0; 3]), "blob").unwrap()
}

#[test]
fn masks_and_z_normalisation() {
    let v = blob([16, 14, 12], 1.0, 0.0);
    let mask = Mask::threshold(&v, 0.0);
    assert!(mask.count() > 100 && mask.count() < 16 * 14 * 12);
    let z = z_normalise(&v, &mask).unwrap();
    let inside = mask.values(z.data());
    let n = inside.len() as f64;
    let mean = inside.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = inside
        .iter()
        .map(|&x| (x as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
        "{mean} {var}"
    );
    assert!(
        z.data()
            .iter()
            .zip(mask.flags())
            .all(|(&x, &m)| m || x == 0.0)
    );
    // A mask given as a volume on another grid is resampled onto this one.
    let mvol = Volume::new(
        mask.flags().iter().map(|&b| b as u8 as f32).collect(),
        [16, 14, 12],
        *v.affine(),
        "mask",
    )
    .unwrap();
    assert_eq!(Mask::from_volume(&mvol, &VoxelGrid::of(&v)).unwrap(), mask);
    let fine = resample(
        &mvol,
        &VoxelGrid::new(
            [32, 28, 24],
            v.affine().compose(&Affine::scaling([0.5; 3], [0.0; 3])),
        )
        .unwrap(),
    )
    .unwrap();
    let back = Mask::from_volume(&fine, &VoxelGrid::of(&v)).unwrap();
    assert_eq!(back, mask);
    let masked = apply_mask(&blob([16, 14, 12], 1.0, 5.0), &mask).unwrap();
    assert!(
        masked
            .data()
            .iter()
            .zip(mask.flags())
            .all(|(&x, &m)| m == (x != 0.0))
    );
    // Errors: a constant volume, an empty mask, mismatched shapes.
    let flat = Volume::new(vec![1.0; 8], [2, 2, 2], Affine::identity(), "flat").unwrap();
    let all = Mask::threshold(&flat, 0.0);
    let refused = |mask: &Mask| z_normalise(&flat, mask).unwrap_err().to_string();
    assert!(refused(&all).contains("constant"));
    assert!(refused(&Mask::threshold(&flat, 5.0)).contains("empty"));
    assert!(matches!(
        z_normalise(&v, &all),
        Err(DataError::Mismatch { .. })
    ));
}

#[test]
fn histogram_standardisation_undoes_intensity_scalings() {
    let shape = [16, 14, 12];
    let train = [
        blob(shape, 1.0, 0.0),
        blob(shape, 2.0, 30.0),
        blob(shape, 0.5, 3.0),
    ];
    let masks: Vec<Mask> = train.iter().map(|v| Mask::threshold(v, 0.0)).collect();
    let st =
        HistogramStandardizer::fit(train.iter().zip(&masks), HistogramConfig::default()).unwrap();
    assert_eq!(st.training_volumes, 3);
    assert_eq!(st.landmarks.len(), 11);
    assert!((st.landmarks[0] - 0.0).abs() < 1e-9 && (st.landmarks[10] - 100.0).abs() < 1e-9);
    assert!(st.landmarks.windows(2).all(|w| w[0] <= w[1]));
    // The standardised images agree whatever the scanner's linear scaling was.
    let test_a = blob(shape, 3.0, -1.0);
    let test_b = blob(shape, 0.25, 7.0);
    let (ma, mb) = (Mask::threshold(&test_a, 0.0), Mask::threshold(&test_b, 0.0));
    let a = st.apply(&test_a, &ma).unwrap();
    let b = st.apply(&test_b, &mb).unwrap();
    for (x, y) in a.data().iter().zip(b.data()) {
        assert!((x - y).abs() < 1e-3, "{x} vs {y}");
    }
    // The landmarks of a standardised image are the standard landmarks.
    let mu = landmarks(&a, &ma, &st.percentiles).unwrap();
    for (m, s) in mu.iter().zip(&st.landmarks) {
        assert!((m - s).abs() < 1e-3, "{mu:?} vs {:?}", st.landmarks);
    }
    // Landmarks of a known distribution: values 0..=100 uniformly, percentile p is p.
    let ramp = Volume::new(
        (0..=100).map(|v| v as f32 + 1.0).collect(),
        [101, 1, 1],
        Affine::identity(),
        "ramp",
    )
    .unwrap();
    let mu = landmarks(
        &ramp,
        &Mask::threshold(&ramp, 0.0),
        &[0.0, 12.5, 50.0, 100.0],
    )
    .unwrap();
    assert_eq!(mu, vec![1.0, 13.5, 51.0, 101.0]);
    // Save and reload.
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("t1_landmarks.json");
    st.save(&p).unwrap();
    assert_eq!(HistogramStandardizer::load(&p).unwrap(), st);
    std::fs::write(&p, "{\"percentiles\": [1, 99], \"scale\": [0, 100], \"landmarks\": [5, 1], \"training_volumes\": 1}").unwrap();
    assert!(
        HistogramStandardizer::load(&p)
            .unwrap_err()
            .to_string()
            .contains("non-decreasing")
    );
    std::fs::write(&p, "not json").unwrap();
    assert!(matches!(
        HistogramStandardizer::load(&p),
        Err(DataError::Format { .. })
    ));
    // Constant training volume, no training volume, bad percentiles.
    let flat = Volume::new(vec![2.0; 8], [2, 2, 2], Affine::identity(), "flat.nii").unwrap();
    let fm = Mask::threshold(&flat, 0.0);
    let e = HistogramStandardizer::fit([(&flat, &fm)], HistogramConfig::default()).unwrap_err();
    assert!(e.to_string().contains("flat.nii"), "{e}");
    assert!(HistogramStandardizer::fit([], HistogramConfig::default()).is_err());
    let bad = HistogramConfig {
        percentiles: vec![50.0, 10.0],
        scale: [0.0, 1.0],
    };
    assert!(HistogramFitter::new(bad).is_err());
}

#[test]
fn augmentation_applies_one_draw_to_every_modality() {
    use rand::SeedableRng;
    let shape = [64, 64, 64];
    let a: Vec<f32> = (0..64 * 64 * 64).map(|i| (i % 977) as f32 + 1.0).collect();
    let b: Vec<f32> = a.iter().map(|v| 2.0 * v - 1.0).collect();
    let cfg = AugmentConfig::default();
    let mut offsets = std::collections::BTreeSet::new();
    let mut flips = [0usize; 3];
    for seed in 0..40 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let out = augment_volumes(&mut rng, shape, &[&a, &b], &cfg).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), 64 * 64 * 64);
        for (x, y) in out[0].iter().zip(&out[1]) {
            // The same crop and flips: y = 2x - 1 wherever x is not padding.
            assert!(*x == 0.0 && *y == 0.0 || *y == 2.0 * x - 1.0);
        }
        // Reproducible from the seed.
        let mut rng2 = rand::rngs::StdRng::seed_from_u64(seed);
        assert_eq!(
            augment_volumes(&mut rng2, shape, &[&a, &b], &cfg).unwrap(),
            out
        );
        let mut rng3 = rand::rngs::StdRng::seed_from_u64(seed);
        let d = cfg.draw(&mut rng3, shape).unwrap();
        offsets.extend(d.offset);
        for (f, &d) in flips.iter_mut().zip(&d.flip) {
            *f += d as usize;
        }
    }
    assert!(
        offsets.iter().all(|&o| o <= 16) && offsets.len() > 10,
        "{offsets:?}"
    );
    assert!(flips.iter().all(|&f| f > 5 && f < 35), "{flips:?}");
    // Known draws: centred and unflipped is the identity; a flip along x mirrors x.
    let id = AugmentDraw {
        offset: [8; 3],
        flip: [false; 3],
    };
    assert_eq!(cfg.apply(&id, shape, &a).unwrap(), a);
    let fx = AugmentDraw {
        offset: [8; 3],
        flip: [true, false, false],
    };
    let f = cfg.apply(&fx, shape, &a).unwrap();
    assert_eq!(f[5 + 64 * (6 + 64 * 7)], a[58 + 64 * (6 + 64 * 7)]);
    let corner = AugmentDraw {
        offset: [0; 3],
        flip: [false; 3],
    };
    let c = cfg.apply(&corner, shape, &a).unwrap();
    assert_eq!(c[0], 0.0);
    assert_eq!(c[8 + 64 * (8 + 64 * 8)], a[0]);
    assert!(cfg.apply(&id, [4, 4, 4], &a).is_err());
}

/// A 4D volume of `signals.len()` voxels along x, each with its own series.
fn series_volume(signals: &[Vec<f64>], tr: Option<f64>) -> Volume {
    let t = signals[0].len();
    let n = signals.len();
    let mut data = vec![0f32; n * t];
    for (v, s) in signals.iter().enumerate() {
        for (i, &x) in s.iter().enumerate() {
            data[v + i * n] = x as f32;
        }
    }
    Volume::new_4d(data, [n, 1, 1, t], Affine::identity(), tr, "series").unwrap()
}

fn cosine(t: usize, tr: f64, amp: f64, freq: f64, phase: f64) -> Vec<f64> {
    (0..t)
        .map(|i| amp * (2.0 * std::f64::consts::PI * freq * i as f64 * tr + phase).cos())
        .collect()
}

#[test]
fn falff_of_sinusoids_has_the_closed_form_values() {
    // T = 100 frames at TR 2 s: bins are 0.005 Hz apart; 0.05 Hz is bin 10, 0.2 Hz bin 40,
    // 0.25 Hz (Nyquist) bin 50; the 0.01-0.1 Hz band holds bins 2..=20 (19 bins).
    let (t, tr) = (100, 2.0);
    let add = |a: Vec<f64>, b: Vec<f64>| a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>();
    let pure = add(cosine(t, tr, 3.0, 0.05, 0.3), vec![7.0; t]);
    let mixed = add(cosine(t, tr, 2.0, 0.05, 1.0), cosine(t, tr, 5.0, 0.2, -0.4));
    let nyquist = add(cosine(t, tr, 1.5, 0.05, 0.0), cosine(t, tr, 4.5, 0.25, 0.0));
    let out_only = cosine(t, tr, 2.0, 0.2, 0.1);
    let flat = vec![12.0; t];
    let vol = series_volume(&[pure, mixed, nyquist, out_only, flat], Some(tr));
    let cfg = FalffConfig {
        detrend: false,
        alff: AlffReduction::Sum,
        ..FalffConfig::default()
    };
    let m = falff(&vol, &cfg).unwrap();
    assert_eq!(m.band_bins, 19);
    assert_eq!(m.falff.dims(), [5, 1, 1, 1]);
    let (f, a) = (m.falff.data(), m.alff.data());
    let close = |x: f32, y: f64| (x as f64 - y).abs() < 1e-5;
    assert!(close(f[0], 1.0) && close(a[0], 3.0), "{} {}", f[0], a[0]);
    assert!(
        close(f[1], 2.0 / 7.0) && close(a[1], 2.0),
        "{} {}",
        f[1],
        a[1]
    );
    assert!(
        close(f[2], 1.5 / 6.0) && close(a[2], 1.5),
        "{} {}",
        f[2],
        a[2]
    );
    assert!(close(f[3], 0.0) && close(a[3], 0.0));
    assert_eq!((f[4], a[4]), (0.0, 0.0));
    // ALFF as the band's mean amplitude.
    let mean = falff(
        &vol,
        &FalffConfig {
            detrend: false,
            ..FalffConfig::default()
        },
    )
    .unwrap();
    assert!(close(mean.alff.data()[0], 3.0 / 19.0));
    assert_eq!(mean.falff.data(), m.falff.data());
    // Detrending removes an added linear trend exactly.
    let base = add(cosine(t, tr, 2.0, 0.05, 1.0), cosine(t, tr, 5.0, 0.2, -0.4));
    let ramped: Vec<f64> = base
        .iter()
        .enumerate()
        .map(|(i, x)| x + 0.3 * i as f64 - 4.0)
        .collect();
    let ramp: Vec<f64> = (0..t).map(|i| 0.3 * i as f64).collect();
    let d = falff(
        &series_volume(&[base, ramped, ramp], Some(tr)),
        &FalffConfig::default(),
    )
    .unwrap();
    assert!((d.falff.data()[0] - d.falff.data()[1]).abs() < 1e-5);
    assert!((d.alff.data()[0] - d.alff.data()[1]).abs() < 1e-5);
    assert_eq!(d.falff.data()[2], 0.0);
    // TR: the override wins; missing TR, a band with no bin, and a 3D input are errors.
    let no_tr = series_volume(&[cosine(t, tr, 1.0, 0.05, 0.0)], None);
    assert!(
        falff(&no_tr, &cfg)
            .unwrap_err()
            .to_string()
            .contains("repetition time")
    );
    let with = falff(
        &no_tr,
        &FalffConfig {
            tr: Some(2.0),
            ..cfg.clone()
        },
    )
    .unwrap();
    assert!(close(with.falff.data()[0], 1.0));
    let narrow = FalffConfig {
        band: [0.0101, 0.0102],
        ..cfg.clone()
    };
    assert!(
        falff(&vol, &narrow)
            .unwrap_err()
            .to_string()
            .contains("no frequency bin")
    );
    let three = Volume::new(vec![1.0; 8], [2, 2, 2], Affine::identity(), "3d").unwrap();
    assert!(falff(&three, &cfg).is_err());
}

/// fALFF by the textbook O(T^2) DFT, for comparison.
fn naive_falff(x: &[f64], tr: f64, band: [f64; 2], detrend: bool) -> (f64, f64) {
    let t = x.len();
    let mean = x.iter().sum::<f64>() / t as f64;
    let c: Vec<f64> = (0..t).map(|i| i as f64 - (t as f64 - 1.0) / 2.0).collect();
    let slope = if detrend {
        x.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>() / c.iter().map(|b| b * b).sum::<f64>()
    } else {
        0.0
    };
    let y: Vec<f64> = x
        .iter()
        .zip(&c)
        .map(|(a, b)| a - mean - slope * b)
        .collect();
    let (mut inb, mut all, mut nb) = (0.0, 0.0, 0);
    for k in 1..=t / 2 {
        let (mut re, mut im) = (0.0, 0.0);
        for (n, v) in y.iter().enumerate() {
            let ang = -2.0 * std::f64::consts::PI * (k * n) as f64 / t as f64;
            re += v * ang.cos();
            im += v * ang.sin();
        }
        let amp = (if 2 * k == t { 1.0 } else { 2.0 }) * (re * re + im * im).sqrt() / t as f64;
        all += amp;
        let f = k as f64 / (t as f64 * tr);
        if f >= band[0] && f <= band[1] {
            inb += amp;
            nb += 1;
        }
    }
    (inb / nb as f64, inb / all)
}

#[test]
fn falff_of_real_bold_matches_a_naive_dft() {
    let Some(path) = shared_mri("bold_4d_small.nii.gz") else {
        return;
    };
    let bold = read_nifti(&path).unwrap();
    let m = falff(&bold, &FalffConfig::default()).unwrap();
    assert!((m.tr - 1.35).abs() < 1e-6);
    assert_eq!(m.falff.dims(), [10, 10, 18, 1]);
    assert_eq!(m.alff.shape(), [10, 10, 18]);
    assert_eq!(m.falff.affine(), bold.affine());
    assert!(m.falff.data().iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(m.alff.data().iter().all(|v| v.is_finite() && *v >= 0.0));
    assert!(m.falff.data().iter().filter(|&&v| v > 0.0).count() > 1000);
    let n = bold.frame_len();
    for v in [0, 137, 555, 901, 1234, n - 1] {
        let x: Vec<f64> = (0..40).map(|i| bold.data()[v + i * n] as f64).collect();
        let (alff, frac) = naive_falff(&x, 1.35, [0.01, 0.1], true);
        assert!(
            (m.falff.data()[v] as f64 - frac).abs() < 1e-5,
            "voxel {v}: {} vs {frac}",
            m.falff.data()[v]
        );
        assert!(
            (m.alff.data()[v] as f64 - alff).abs() < 1e-4 * alff.max(1.0),
            "voxel {v}"
        );
    }
    // The maps write and read back as NIfTI.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("falff.nii.gz");
    write_nifti(&m.falff, &out).unwrap();
    assert_eq!(read_nifti(&out).unwrap().data(), m.falff.data());
}
