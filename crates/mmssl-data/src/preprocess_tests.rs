//! The volume pipeline: resampling the MNI template and through world space, masks and
//! z-normalisation, histogram standardisation, one augmentation draw for every modality.

use super::*;
use crate::tests::assert_error;
use crate::volume_tests::shared_mri;

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
    assert_error(HistogramStandardizer::load(&p), &["non-decreasing"]);
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
