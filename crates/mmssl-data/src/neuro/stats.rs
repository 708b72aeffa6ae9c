//! Voxelwise statistics of maps on one grid: group means, Welch's t between two groups, and
//! the clusters of a thresholded map with their peaks in millimetres. The pieces of a group
//! comparison of attribution maps (AD against HC).

use crate::error::{DataError, Result};
use crate::neuro::volume::Volume;
use serde::{Deserialize, Serialize};

/// Checks that `maps` are non-empty 3D volumes on one grid (dimensions and affine).
fn same_grid(what: &str, maps: &[&Volume]) -> Result<()> {
    let Some(first) = maps.first() else {
        return Err(DataError::InvalidParameter {
            name: "maps",
            value: format!("no {what} map"),
            reason: "a group needs at least one map".into(),
        });
    };
    for m in maps {
        if m.frames() != 1 {
            return Err(DataError::format(
                m.source(),
                format!("a map must be 3D, this one has {} frames", m.frames()),
            ));
        }
        if m.dims() != first.dims() || m.affine() != first.affine() {
            return Err(DataError::format(
                m.source(),
                format!(
                    "not on the grid of {} ({:?} against {:?}, or another affine)",
                    first.source(),
                    m.dims(),
                    first.dims()
                ),
            ));
        }
    }
    Ok(())
}

/// Separable Gaussian smoothing of a 3D array (`x` fastest) with standard deviation
/// `sigma[axis]` voxels per axis (0: that axis untouched); the kernel is cut at 3 sigma and
/// renormalised at the edges of the grid.
pub(crate) fn smooth_axes(data: &[f32], shape: [usize; 3], sigma: [f64; 3]) -> Vec<f32> {
    let mut cur: Vec<f64> = data.iter().map(|&v| v as f64).collect();
    let strides = [1, shape[0], shape[0] * shape[1]];
    for axis in 0..3 {
        let s = sigma[axis];
        if s <= 0.0 {
            continue;
        }
        let r = (3.0 * s).ceil() as isize;
        let kernel: Vec<f64> = (-r..=r)
            .map(|i| (-(i * i) as f64 / (2.0 * s * s)).exp())
            .collect();
        let mut next = vec![0.0; cur.len()];
        for (i, out) in next.iter_mut().enumerate() {
            let pos = (i / strides[axis]) % shape[axis];
            let (mut acc, mut wsum) = (0.0, 0.0);
            for (j, &kw) in kernel.iter().enumerate() {
                let q = pos as isize + j as isize - r;
                if q >= 0 && (q as usize) < shape[axis] {
                    acc += kw * cur[i - pos * strides[axis] + q as usize * strides[axis]];
                    wsum += kw;
                }
            }
            *out = acc / wsum;
        }
        cur = next;
    }
    cur.into_iter().map(|v| v as f32).collect()
}

/// `map` (3D) smoothed by a Gaussian of full width at half maximum `fwhm_mm` millimetres
/// (`sigma = fwhm / (2 sqrt(2 ln 2))`, converted to voxels along each axis with the map's
/// voxel sizes), as voxel-based group analyses smooth their maps before voxelwise tests; 0
/// returns it unchanged.
pub fn smooth_fwhm(map: &Volume, fwhm_mm: f64) -> Result<Volume> {
    if !(fwhm_mm.is_finite() && fwhm_mm >= 0.0) {
        return Err(DataError::InvalidParameter {
            name: "fwhm_mm",
            value: fwhm_mm.to_string(),
            reason: "a non-negative width in millimetres".into(),
        });
    }
    if map.frames() != 1 {
        return Err(DataError::format(
            map.source(),
            format!("a map must be 3D, this one has {} frames", map.frames()),
        ));
    }
    if fwhm_mm == 0.0 {
        return Ok(map.clone());
    }
    let sigma_mm = fwhm_mm / (2.0 * (2.0 * std::f64::consts::LN_2).sqrt());
    let sizes = map.voxel_size();
    let sigma = [0, 1, 2].map(|a| sigma_mm / sizes[a]);
    map.with_data(smooth_axes(map.data(), map.shape(), sigma), map.dims())
}

/// The voxelwise mean of `maps` (one grid), on their grid.
pub fn mean_map(maps: &[&Volume]) -> Result<Volume> {
    same_grid("", maps)?;
    let n = maps.len() as f64;
    let len = maps[0].data().len();
    let data: Vec<f32> = (0..len)
        .map(|i| (maps.iter().map(|m| m.data()[i] as f64).sum::<f64>() / n) as f32)
        .collect();
    maps[0].with_data(data, maps[0].dims())
}

/// Welch's t between two groups of maps, voxel by voxel, and its degrees of freedom.
#[derive(Debug, Clone, PartialEq)]
pub struct WelchMaps {
    /// `t = (mean_a - mean_b) / sqrt(var_a / n_a + var_b / n_b)` (unbiased variances); 0 where
    /// both groups are constant (the denominator is 0).
    pub t: Volume,
    /// The Welch-Satterthwaite degrees of freedom
    /// `(va/na + vb/nb)^2 / ((va/na)^2/(na-1) + (vb/nb)^2/(nb-1))`; 0 where `t` is 0 for
    /// want of variance.
    pub df: Volume,
}

/// Welch's unequal-variances t-test (Welch, "The generalization of Student's problem when
/// several different population variances are involved", Biometrika 34:28-35, 1947) of group
/// `a` against group `b` at every voxel. Each group needs at least two maps, all on one grid.
pub fn welch_t(a: &[&Volume], b: &[&Volume]) -> Result<WelchMaps> {
    same_grid("first-group", a)?;
    same_grid("second-group", b)?;
    same_grid("", &[a[0], b[0]])?;
    for (name, g) in [("first group", a), ("second group", b)] {
        if g.len() < 2 {
            return Err(DataError::InvalidParameter {
                name: "maps",
                value: format!("{} map(s) in the {name}", g.len()),
                reason: "Welch's t needs at least two maps per group (a variance)".into(),
            });
        }
    }
    let moments = |g: &[&Volume], i: usize| {
        let n = g.len() as f64;
        let mean = g.iter().map(|m| m.data()[i] as f64).sum::<f64>() / n;
        let var = g
            .iter()
            .map(|m| (m.data()[i] as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        (mean, var / n, n)
    };
    let len = a[0].data().len();
    let (mut t, mut df) = (vec![0f32; len], vec![0f32; len]);
    for i in 0..len {
        let (ma, sa, na) = moments(a, i);
        let (mb, sb, nb) = moments(b, i);
        let se2 = sa + sb;
        if se2 > 0.0 {
            t[i] = ((ma - mb) / se2.sqrt()) as f32;
            df[i] = (se2 * se2 / (sa * sa / (na - 1.0) + sb * sb / (nb - 1.0))) as f32;
        }
    }
    let dims = a[0].dims();
    Ok(WelchMaps {
        t: a[0].with_data(t, dims)?,
        df: a[0].with_data(df, dims)?,
    })
}

/// A connected set of voxels beyond a threshold, all of one sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// `1` for values at or above the threshold, `-1` for values at or below its negative.
    pub sign: i8,
    /// Its voxels.
    pub voxels: usize,
    /// The value of largest magnitude.
    pub peak: f32,
    /// Where it is, in voxel indices `[x, y, z]`.
    pub peak_voxel: [usize; 3],
    /// Where it is, in millimetres (the map's affine).
    pub peak_mm: [f64; 3],
    /// The centre of the cluster weighted by `|value|`, in millimetres.
    pub centre_mm: [f64; 3],
    /// The sum of `|value|` over the cluster.
    pub mass: f64,
    /// The atlas region at the peak (or the nearest one, `near NAME (D mm)`), when an atlas
    /// was given ([`crate::Atlas::describe`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The clusters of `map` (3D): voxels with `value >= threshold` or `value <= -threshold`,
/// joined when they touch by a face, an edge or a corner (26-connectivity) and share a sign;
/// those of fewer than `min_voxels` voxels are left out. Sorted by `|peak|`, largest first.
pub fn clusters(map: &Volume, threshold: f32, min_voxels: usize) -> Result<Vec<Cluster>> {
    if map.frames() != 1 {
        return Err(DataError::format(
            map.source(),
            format!("a map must be 3D, this one has {} frames", map.frames()),
        ));
    }
    if !(threshold.is_finite() && threshold > 0.0) {
        return Err(DataError::InvalidParameter {
            name: "threshold",
            value: threshold.to_string(),
            reason: "a positive finite value".into(),
        });
    }
    let [nx, ny, nz] = map.shape();
    let data = map.data();
    let sign_of = |v: f32| -> i8 {
        if v >= threshold {
            1
        } else if v <= -threshold {
            -1
        } else {
            0
        }
    };
    let index = |x: usize, y: usize, z: usize| x + nx * (y + ny * z);
    let mut seen = vec![false; data.len()];
    let mut found = Vec::new();
    let mut stack = Vec::new();
    for start in 0..data.len() {
        let sign = sign_of(data[start]);
        if sign == 0 || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut voxels, mut mass, mut weighted) = (0usize, 0f64, [0f64; 3]);
        let (mut peak, mut peak_at) = (data[start], start);
        while let Some(i) = stack.pop() {
            let (x, y, z) = (i % nx, (i / nx) % ny, i / (nx * ny));
            let v = data[i];
            voxels += 1;
            let w = v.abs() as f64;
            mass += w;
            let mm = map.world(x as f64, y as f64, z as f64);
            for a in 0..3 {
                weighted[a] += w * mm[a];
            }
            if v.abs() > peak.abs() {
                (peak, peak_at) = (v, i);
            }
            for dz in -1i64..=1 {
                for dy in -1i64..=1 {
                    for dx in -1i64..=1 {
                        let (qx, qy, qz) = (x as i64 + dx, y as i64 + dy, z as i64 + dz);
                        if qx < 0 || qy < 0 || qz < 0 {
                            continue;
                        }
                        let (qx, qy, qz) = (qx as usize, qy as usize, qz as usize);
                        if qx >= nx || qy >= ny || qz >= nz {
                            continue;
                        }
                        let j = index(qx, qy, qz);
                        if !seen[j] && sign_of(data[j]) == sign {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
        }
        if voxels < min_voxels {
            continue;
        }
        let (px, py, pz) = (peak_at % nx, (peak_at / nx) % ny, peak_at / (nx * ny));
        found.push(Cluster {
            sign,
            voxels,
            peak,
            peak_voxel: [px, py, pz],
            peak_mm: map.world(px as f64, py as f64, pz as f64),
            centre_mm: weighted.map(|c| c / mass),
            mass,
            region: None,
        });
    }
    found.sort_by(|a, b| b.peak.abs().total_cmp(&a.peak.abs()));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neuro::volume::Affine;

    fn vol(data: Vec<f32>, dims: [usize; 3]) -> Volume {
        Volume::new(
            data,
            dims,
            Affine::scaling([2.0; 3], [-10.0, 0.0, 5.0]),
            "map",
        )
        .unwrap()
    }

    #[test]
    fn welch_t_matches_the_formula_by_hand() {
        // Voxel 0: a = [1, 2, 3] (mean 2, var 1), b = [4, 6] (mean 5, var 2):
        // se^2 = 1/3 + 2/2 = 4/3, t = -3 / sqrt(4/3) = -2.598076,
        // df = (4/3)^2 / ((1/3)^2/2 + 1^2/1) = (16/9) / (1/18 + 1) = 32/19 = 1.684211.
        // Voxel 1: both constant: t = 0, df = 0.
        let a: Vec<Volume> = [1.0, 2.0, 3.0]
            .iter()
            .map(|&v| vol(vec![v, 7.0], [2, 1, 1]))
            .collect();
        let b: Vec<Volume> = [4.0, 6.0]
            .iter()
            .map(|&v| vol(vec![v, 7.0], [2, 1, 1]))
            .collect();
        let (ra, rb): (Vec<&Volume>, Vec<&Volume>) = (a.iter().collect(), b.iter().collect());
        let w = welch_t(&ra, &rb).unwrap();
        assert!(
            (w.t.data()[0] - (-2.598_076)).abs() < 1e-5,
            "{:?}",
            w.t.data()
        );
        assert!(
            (w.df.data()[0] - 32.0 / 19.0).abs() < 1e-5,
            "{:?}",
            w.df.data()
        );
        assert_eq!((w.t.data()[1], w.df.data()[1]), (0.0, 0.0));
        // Swapping the groups negates t.
        let back = welch_t(&rb, &ra).unwrap();
        assert_eq!(back.t.data()[0], -w.t.data()[0]);
        assert_eq!(mean_map(&ra).unwrap().data(), &[2.0, 7.0]);
        // Too few maps, and maps on other grids, are refused naming them.
        assert!(
            welch_t(&ra[..1], &rb)
                .unwrap_err()
                .to_string()
                .contains("at least two")
        );
        let other = vol(vec![0.0; 3], [3, 1, 1]);
        let e = welch_t(&[&a[0], &other], &rb).unwrap_err().to_string();
        assert!(e.contains("not on the grid"), "{e}");
        assert!(mean_map(&[]).is_err());
    }

    #[test]
    fn clusters_are_connected_signed_and_located_in_millimetres() {
        let dims = [6, 5, 4];
        let mut data = vec![0f32; 6 * 5 * 4];
        let at = |x: usize, y: usize, z: usize| x + 6 * (y + 5 * z);
        // A positive cluster of three voxels joined by a corner, with its peak at (2, 2, 1).
        data[at(1, 1, 0)] = 2.0;
        data[at(2, 2, 1)] = 5.0;
        data[at(3, 3, 2)] = 2.5;
        // A negative one of two voxels touching the positive one: a separate cluster.
        data[at(3, 2, 1)] = -3.0;
        data[at(4, 2, 1)] = -2.0;
        // A lone weak voxel below the threshold, and a lone strong one dropped by min_voxels.
        data[at(0, 4, 3)] = 1.0;
        data[at(5, 0, 3)] = 9.0;
        let map = vol(data, dims);
        let all = clusters(&map, 1.5, 1).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].voxels, all[0].peak), (1, 9.0));
        let c = clusters(&map, 1.5, 2).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].sign, c[0].voxels, c[0].peak), (1, 3, 5.0));
        assert_eq!(c[0].peak_voxel, [2, 2, 1]);
        // Voxel (2, 2, 1) with 2 mm voxels from (-10, 0, 5).
        assert_eq!(c[0].peak_mm, [-6.0, 4.0, 7.0]);
        assert!((c[0].mass - 9.5).abs() < 1e-9);
        // Centre of mass: weights 2, 5, 2.5 at x = -8, -6, -4 mm.
        assert!((c[0].centre_mm[0] - (-8.0 * 2.0 - 6.0 * 5.0 - 4.0 * 2.5) / 9.5).abs() < 1e-9);
        assert_eq!((c[1].sign, c[1].voxels, c[1].peak), (-1, 2, -3.0));
        assert!(clusters(&map, 0.0, 1).is_err());
        assert!(clusters(&map, 100.0, 1).unwrap().is_empty());
    }

    #[test]
    fn smoothing_spreads_an_impulse_to_the_asked_width() {
        // An impulse in the middle of 41^3 voxels of 2 mm, smoothed to FWHM 9.4 mm: a
        // Gaussian of sigma 9.4 / 2.3548 = 3.99 mm, whose variance along x is sigma^2 in mm^2
        // (the kernel cut at 3 sigma loses ~1% of it), and whose sum stays 1.
        let n = 41;
        let mut data = vec![0f32; n * n * n];
        data[20 + n * (20 + n * 20)] = 1.0;
        let map = vol(data, [n, n, n]);
        let s = smooth_fwhm(&map, 9.4).unwrap();
        let total: f64 = s.data().iter().map(|&v| v as f64).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        let var_x: f64 = s
            .data()
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f64 * ((i % n) as f64 * 2.0 - 40.0).powi(2))
            .sum();
        let sigma = 9.4 / (2.0 * (2.0 * std::f64::consts::LN_2).sqrt());
        assert!(
            (var_x / (sigma * sigma) - 1.0).abs() < 0.02,
            "{var_x} vs {}",
            sigma * sigma
        );
        // The peak stays in place; 0 leaves the map as it is; bad widths are refused.
        let peak = s
            .data()
            .iter()
            .enumerate()
            .fold((0, 0f32), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        assert_eq!(peak.0, 20 + n * (20 + n * 20));
        assert_eq!(smooth_fwhm(&map, 0.0).unwrap(), map);
        assert!(smooth_fwhm(&map, -1.0).is_err());
        assert!(smooth_fwhm(&map, f64::NAN).is_err());
    }
}
