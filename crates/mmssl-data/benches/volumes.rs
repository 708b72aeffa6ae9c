//! Loading throughput of volumes (volumes per second): read a NIfTI file, resample it onto the
//! standard 64^3 3 mm grid centred on the brain, mask and z-normalise.
//!
//! Inputs: the real MNI152 T1 template at 1 mm (`../shared/data/mri`, 197x233x189 u8, gzip),
//! the size of a FreeSurfer-conformed OASIS-3 brain; and the same template written at 3 mm as
//! `f32` `.nii.gz` (66x78x63), the size of the synthetic cohort's files. Without the shared
//! data a generated ellipsoid stands in (and a message says so).
//!
//! Run: `cargo bench -p mmssl-data --bench volumes`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mmssl_data::{
    Affine, Mask, Volume, VoxelGrid, read_nifti, resample, resample_to_standard, write_nifti,
    z_normalise,
};
use std::hint::black_box;
use std::path::{Path, PathBuf};

fn load(path: &Path) -> Volume {
    let v = read_nifti(path).expect("readable volume");
    let s = resample_to_standard(&v, 0.0).expect("resampled");
    let m = Mask::threshold(&s, 0.0);
    z_normalise(&s, &m).expect("normalised")
}

fn inputs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mni = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/mri/mni152_t1_1mm.nii.gz");
    let source = if mni.exists() {
        read_nifti(&mni).expect("the MNI template")
    } else {
        eprintln!(
            "{} is absent: benchmarking a generated 1 mm ellipsoid instead",
            mni.display()
        );
        let shape = [181, 217, 181];
        let mut data = Vec::with_capacity(shape.iter().product());
        for k in 0..shape[2] {
            for j in 0..shape[1] {
                for i in 0..shape[0] {
                    let d = ((i as f32 - 90.0) / 70.0).powi(2)
                        + ((j as f32 - 108.0) / 85.0).powi(2)
                        + ((k as f32 - 90.0) / 65.0).powi(2);
                    data.push(if d < 1.0 { 100.0 * (1.5 - d) } else { 0.0 });
                }
            }
        }
        Volume::new(data, shape, Affine::identity(), "generated").expect("volume")
    };
    let one_mm = dir.join("t1_1mm.nii.gz");
    write_nifti(&source, &one_mm).expect("written");
    let a = *source.affine();
    let [x, y, z] = source.shape();
    let grid = VoxelGrid::new(
        [x.div_ceil(3), y.div_ceil(3), z.div_ceil(3)],
        a.compose(&Affine::scaling([3.0; 3], [0.0; 3])),
    )
    .expect("grid");
    let three_mm = dir.join("t1_3mm.nii.gz");
    write_nifti(&resample(&source, &grid).expect("3 mm"), &three_mm).expect("written");
    let first = if mni.exists() { mni } else { one_mm.clone() };
    vec![("1mm_template".into(), first), ("3mm_f32".into(), three_mm)]
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("mmssl-bench-volumes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary folder");
    let mut group = c.benchmark_group("load_resample_normalise");
    group.sample_size(10);
    group.throughput(Throughput::Elements(1));
    for (name, path) in inputs(&dir) {
        group.bench_function(name, |b| b.iter(|| black_box(load(&path))));
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
