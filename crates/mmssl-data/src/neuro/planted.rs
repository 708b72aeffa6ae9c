//! How well a map finds the synthetic cohort's planted group effects (its known truth): where
//! its strongest voxel lies against the planted centres, and how much of its mass falls inside
//! the planted regions against their share of the brain.

use crate::error::{DataError, Result};
use crate::neuro::synth::{
    HIPPOCAMPAL_SIGMA_MM, HIPPOCAMPI_MNI, POSTERIOR_MNI, POSTERIOR_SIGMA_MM, TEMPORAL_MNI,
    TEMPORAL_SIGMA_MM,
};
use crate::neuro::volume::Volume;
use serde::{Deserialize, Serialize};

/// A planted Gaussian effect: its centre in MNI millimetres and its width.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlantedRegion {
    /// The centre (mm).
    pub centre_mm: [f64; 3],
    /// The standard deviation (mm).
    pub sigma_mm: f64,
}

/// The regions [`synth_cohort`](crate::synth_cohort) plants in `modality`: 0 (T1) the two
/// hippocampal and two lateral temporal grey-matter losses, 1 (fALFF) the posterior drop;
/// none for another modality.
pub fn planted_regions(modality: usize) -> Vec<PlantedRegion> {
    let region = |centre_mm, sigma_mm| PlantedRegion {
        centre_mm,
        sigma_mm,
    };
    match modality {
        0 => HIPPOCAMPI_MNI
            .iter()
            .map(|&c| region(c, HIPPOCAMPAL_SIGMA_MM))
            .chain(TEMPORAL_MNI.iter().map(|&c| region(c, TEMPORAL_SIGMA_MM)))
            .collect(),
        1 => vec![region(POSTERIOR_MNI, POSTERIOR_SIGMA_MM)],
        _ => Vec::new(),
    }
}

/// What [`planted_recovery`] measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// The voxel of largest `|value|` inside the mask, in mm.
    pub peak_mm: [f64; 3],
    /// Its value.
    pub peak: f32,
    /// Its distance to the nearest planted centre (mm).
    pub peak_distance_mm: f64,
    /// The share of the map's mass (`sum |value|` over the mask voxels at or beyond the
    /// threshold) inside the regions.
    pub mass_inside: f64,
    /// The share of the mask's voxels inside the regions.
    pub share_inside: f64,
    /// `mass_inside / share_inside`: 1 for a map that ignores the regions, above 1 for one
    /// concentrated in them.
    pub enrichment: f64,
}

/// Scores `map` against `regions`: a voxel is inside when it lies within `radius_sigmas`
/// standard deviations of a region's centre; only voxels of `mask` (non-zero; every voxel
/// without one) count, and only values with `|value| >= threshold` carry mass.
pub fn planted_recovery(
    map: &Volume,
    mask: Option<&Volume>,
    regions: &[PlantedRegion],
    radius_sigmas: f64,
    threshold: f32,
) -> Result<Recovery> {
    let bad = |name: &'static str, value: String, reason: &str| {
        Err(DataError::InvalidParameter {
            name,
            value,
            reason: reason.into(),
        })
    };
    if regions.is_empty() {
        return bad("regions", "none".into(), "at least one planted region");
    }
    if !(radius_sigmas.is_finite() && radius_sigmas > 0.0) {
        return bad(
            "radius_sigmas",
            radius_sigmas.to_string(),
            "a positive number",
        );
    }
    if let Some(m) = mask
        && (m.dims() != map.dims() || m.affine() != map.affine())
    {
        return Err(DataError::format(
            m.source(),
            format!("the mask is not on the grid of {}", map.source()),
        ));
    }
    let [nx, ny, nz] = map.shape();
    let (mut total, mut inside_mass, mut voxels, mut inside_voxels) = (0f64, 0f64, 0usize, 0usize);
    let mut peak: Option<(f32, [f64; 3])> = None;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let i = x + nx * (y + ny * z);
                if mask.is_some_and(|m| m.data()[i] == 0.0) {
                    continue;
                }
                let mm = map.world(x as f64, y as f64, z as f64);
                let inside = regions
                    .iter()
                    .any(|r| distance(mm, r.centre_mm) <= radius_sigmas * r.sigma_mm);
                let v = map.data()[i];
                voxels += 1;
                inside_voxels += inside as usize;
                if v.abs() >= threshold {
                    total += v.abs() as f64;
                    if inside {
                        inside_mass += v.abs() as f64;
                    }
                }
                if peak.is_none_or(|(p, _)| v.abs() > p.abs()) {
                    peak = Some((v, mm));
                }
            }
        }
    }
    let Some((peak, peak_mm)) = peak else {
        return Err(DataError::format(map.source(), "the mask selects no voxel"));
    };
    let peak_distance_mm = regions
        .iter()
        .map(|r| distance(peak_mm, r.centre_mm))
        .fold(f64::INFINITY, f64::min);
    let mass_inside = if total > 0.0 {
        inside_mass / total
    } else {
        0.0
    };
    let share_inside = inside_voxels as f64 / voxels as f64;
    Ok(Recovery {
        peak_mm,
        peak,
        peak_distance_mm,
        mass_inside,
        share_inside,
        enrichment: if share_inside > 0.0 {
            mass_inside / share_inside
        } else {
            0.0
        },
    })
}

fn distance(a: [f64; 3], b: [f64; 3]) -> f64 {
    (0..3).map(|k| (a[k] - b[k]).powi(2)).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neuro::volume::Affine;

    /// A 3 mm grid over the MNI brain with a Gaussian blob at `centre`.
    fn blob(centre: [f64; 3], sigma: f64) -> Volume {
        let affine = Affine::scaling([3.0; 3], [-90.0, -126.0, -72.0]);
        let dims = [61, 73, 61];
        let mut data = Vec::with_capacity(61 * 73 * 61);
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                for x in 0..dims[0] {
                    let p = affine.apply([x as f64, y as f64, z as f64]);
                    data.push(
                        (-(distance(p, centre).powi(2)) / (2.0 * sigma * sigma)).exp() as f32,
                    );
                }
            }
        }
        Volume::new(data, dims, affine, "blob").unwrap()
    }

    #[test]
    fn a_map_on_the_planted_region_is_recovered_and_one_elsewhere_is_not() {
        let regions = planted_regions(1);
        let on = planted_recovery(&blob(POSTERIOR_MNI, 8.0), None, &regions, 1.5, 0.0).unwrap();
        // The peak voxel lies within half a voxel diagonal of the centre.
        assert!(on.peak_distance_mm <= 2.6, "{on:?}");
        assert!((on.peak - 1.0).abs() < 0.2);
        // A blob narrower than the region: nearly all its mass is inside, far above the
        // region's share of the grid (a sphere of 22.5 mm radius, 47 713 mm^3 = 1767 voxels
        // of 3 mm, in 61 x 73 x 61 voxels: 0.65%).
        assert!(on.mass_inside > 0.95, "{on:?}");
        assert!((on.share_inside - 0.0065).abs() < 0.0005, "{on:?}");
        assert!(on.enrichment > 100.0, "{on:?}");
        let off =
            planted_recovery(&blob([40.0, 40.0, -10.0], 8.0), None, &regions, 1.5, 0.0).unwrap();
        assert!(off.peak_distance_mm > 80.0, "{off:?}");
        assert!(off.enrichment < 0.1, "{off:?}");
        // The threshold drops the tails; T1 has four regions.
        let t = planted_recovery(&blob(POSTERIOR_MNI, 8.0), None, &regions, 1.5, 0.5).unwrap();
        assert!(t.mass_inside > on.mass_inside - 1e-9);
        assert_eq!(planted_regions(0).len(), 4);
        assert!(planted_regions(2).is_empty());
    }

    #[test]
    fn the_mask_restricts_and_bad_settings_are_refused() {
        let map = blob(POSTERIOR_MNI, 8.0);
        // A mask of the upper half (z >= 30): every counted voxel is there.
        let mask_data: Vec<f32> = (0..map.data().len())
            .map(|i| (i / (61 * 73) >= 30) as u8 as f32)
            .collect();
        let mask = map.with_data(mask_data, map.dims()).unwrap();
        let r = planted_recovery(&map, Some(&mask), &planted_regions(1), 1.5, 0.0).unwrap();
        assert!(r.peak_mm[2] >= -72.0 + 90.0 - 1e-9, "{r:?}");
        let regions = planted_regions(1);
        assert!(planted_recovery(&map, None, &[], 1.5, 0.0).is_err());
        assert!(planted_recovery(&map, None, &regions, 0.0, 0.0).is_err());
        let other = Volume::new(vec![1.0; 8], [2, 2, 2], Affine::identity(), "small").unwrap();
        let err = planted_recovery(&map, Some(&other), &regions, 1.5, 0.0).unwrap_err();
        assert!(err.to_string().contains("small"), "{err}");
        let empty = map
            .with_data(vec![0.0; map.data().len()], map.dims())
            .unwrap();
        assert!(planted_recovery(&map, Some(&empty), &regions, 1.5, 0.0).is_err());
    }
}
