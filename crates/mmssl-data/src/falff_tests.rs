//! ALFF and fALFF: closed-form values of sinusoids, and real BOLD against a naive DFT.

use super::*;
use crate::volume_tests::shared_mri;

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
