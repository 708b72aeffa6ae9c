//! Labelled atlases in template space: which region a point in millimetres lies in, for
//! cluster reports. An atlas is a NIfTI volume of integer labels (0 = none) and a text file
//! naming them, one region per line: `index name [anything]`, separated by whitespace
//! (MRIcron's `aal.nii.txt`) or by tabs, with an optional header row (`index\tname`, as BIDS
//! `*_dseg.tsv` and nilearn write them).
//!
//! Debian's package `mricron-data` ships the AAL atlas (Tzourio-Mazoyer et al., "Automated
//! anatomical labeling of activations in SPM using a macroscopic anatomical parcellation of
//! the MNI MRI single-subject brain", NeuroImage 15:273-289, 2002) in MNI space as
//! `/usr/share/mricron/templates/aal.nii.gz` with `aal.nii.txt`; [`Atlas::installed`] finds it.

use crate::error::{DataError, Result};
use crate::formats::nifti::read_nifti;
use crate::neuro::volume::{Affine, Volume};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where Debian's `mricron-data` installs the AAL atlas and its labels.
pub const DEBIAN_AAL: (&str, &str) = (
    "/usr/share/mricron/templates/aal.nii.gz",
    "/usr/share/mricron/templates/aal.nii.txt",
);

/// A label volume with its region names.
#[derive(Debug, Clone)]
pub struct Atlas {
    name: String,
    volume: Volume,
    inverse: Affine,
    labels: BTreeMap<u32, String>,
}

impl Atlas {
    /// Reads the label volume `image` and the names in `labels`. A volume that is not 3D,
    /// holds non-integer or negative values, or a names file without a single `index name`
    /// line, is an error naming the file; labels of the volume without a name are reported
    /// as `label N`.
    pub fn read(image: &Path, labels: &Path) -> Result<Atlas> {
        let volume = read_nifti(image)?;
        if volume.frames() != 1 {
            return Err(DataError::format(
                image,
                format!("an atlas is 3D, this one has {} frames", volume.frames()),
            ));
        }
        if let Some(v) = volume.data().iter().find(|v| **v < 0.0 || v.fract() != 0.0) {
            return Err(DataError::format(
                image,
                format!("an atlas holds non-negative integer labels, it has {v}"),
            ));
        }
        let text = crate::files::read_text(labels).map_err(|e| DataError::io(labels, e))?;
        let mut names = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (index, name) = if line.contains('\t') {
                let mut parts = line.split('\t');
                (parts.next(), parts.next())
            } else {
                let mut parts = line.split_whitespace();
                (parts.next(), parts.next())
            };
            match (index.and_then(|x| x.trim().parse::<u32>().ok()), name) {
                (Some(index), Some(name)) if !name.trim().is_empty() => {
                    names.insert(index, name.trim().to_string());
                }
                // A header row.
                _ if i == 0 || names.is_empty() && i < 2 => {}
                _ => {
                    return Err(DataError::format(
                        labels,
                        format!("line {}: `{line}` is not `index name`", i + 1),
                    ));
                }
            }
        }
        if names.is_empty() {
            return Err(DataError::format(labels, "no `index name` line"));
        }
        let inverse = volume
            .affine()
            .inverse()
            .ok_or_else(|| DataError::format(image, "its affine is not invertible"))?;
        let name = image
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .trim_end_matches(".gz")
            .trim_end_matches(".nii")
            .to_string();
        Ok(Atlas {
            name,
            volume,
            inverse,
            labels: names,
        })
    }

    /// The AAL atlas of Debian's `mricron-data`, if it is installed.
    pub fn installed() -> Option<(PathBuf, PathBuf)> {
        let (image, labels) = (PathBuf::from(DEBIAN_AAL.0), PathBuf::from(DEBIAN_AAL.1));
        (image.is_file() && labels.is_file()).then_some((image, labels))
    }

    /// The atlas' name (its file name without the extension).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of named regions.
    pub fn regions(&self) -> usize {
        self.labels.len()
    }

    fn label_index(&self, mm: [f64; 3]) -> Option<u32> {
        let v = self.inverse.apply(mm);
        let [nx, ny, nz] = self.volume.shape();
        let idx: Vec<usize> = (0..3)
            .map(|a| v[a].round())
            .zip([nx, ny, nz])
            .filter(|(x, n)| *x >= 0.0 && (*x as usize) < *n)
            .map(|(x, _)| x as usize)
            .collect();
        if idx.len() != 3 {
            return None;
        }
        let label = self.volume.get(idx[0], idx[1], idx[2])? as u32;
        (label != 0).then_some(label)
    }

    fn name_of(&self, label: u32) -> String {
        self.labels
            .get(&label)
            .cloned()
            .unwrap_or_else(|| format!("label {label}"))
    }

    /// The region at `mm` (nearest voxel), `None` outside every region.
    pub fn region_at(&self, mm: [f64; 3]) -> Option<String> {
        self.label_index(mm).map(|l| self.name_of(l))
    }

    /// The region at `mm`, else the nearest region within `radius_mm` (searched on a 1 mm
    /// lattice) as `"near NAME (D mm)"`; `None` when there is none.
    pub fn describe(&self, mm: [f64; 3], radius_mm: f64) -> Option<String> {
        if let Some(r) = self.region_at(mm) {
            return Some(r);
        }
        let r = radius_mm.max(0.0).floor() as i64;
        let mut best: Option<(f64, u32)> = None;
        for dz in -r..=r {
            for dy in -r..=r {
                for dx in -r..=r {
                    let d = ((dx * dx + dy * dy + dz * dz) as f64).sqrt();
                    if d > radius_mm || best.is_some_and(|(b, _)| b <= d) {
                        continue;
                    }
                    let p = [mm[0] + dx as f64, mm[1] + dy as f64, mm[2] + dz as f64];
                    if let Some(l) = self.label_index(p) {
                        best = Some((d, l));
                    }
                }
            }
        }
        best.map(|(d, l)| format!("near {} ({d:.0} mm)", self.name_of(l)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::nifti::write_nifti;

    /// A 10 mm cube of label 2 at the origin, label 7 (unnamed) beside it, on a 2 mm grid.
    fn atlas(dir: &Path, names: &str) -> Result<Atlas> {
        let affine = Affine::scaling([2.0; 3], [-20.0; 3]);
        let mut data = vec![0f32; 21 * 21 * 21];
        for z in 0..21 {
            for y in 0..21 {
                for x in 0..21 {
                    let p = [x, y, z].map(|i| -20.0 + 2.0 * i as f64);
                    if p.iter().all(|c| c.abs() <= 5.0) {
                        data[x + 21 * (y + 21 * z)] = 2.0;
                    } else if (10.0..=14.0).contains(&p[0])
                        && p[1].abs() <= 2.0
                        && p[2].abs() <= 2.0
                    {
                        data[x + 21 * (y + 21 * z)] = 7.0;
                    }
                }
            }
        }
        let v = Volume::new(data, [21, 21, 21], affine, "atlas").unwrap();
        write_nifti(&v, dir.join("a.nii.gz")).unwrap();
        std::fs::write(dir.join("a.txt"), names).unwrap();
        Atlas::read(&dir.join("a.nii.gz"), &dir.join("a.txt"))
    }

    #[test]
    fn regions_are_named_at_and_near_a_point() {
        let dir = tempfile::tempdir().unwrap();
        let a = atlas(dir.path(), "1 Precentral_L 2001\n2 Cube_Centre 2002\n").unwrap();
        assert_eq!(a.regions(), 2);
        assert_eq!(a.region_at([0.0, 0.0, 0.0]).as_deref(), Some("Cube_Centre"));
        assert_eq!(
            a.region_at([3.9, -4.0, 4.0]).as_deref(),
            Some("Cube_Centre")
        );
        assert_eq!(a.region_at([0.0, 9.0, 0.0]), None);
        assert_eq!(a.region_at([12.0, 0.0, 0.0]).as_deref(), Some("label 7"));
        assert_eq!(a.region_at([500.0, 0.0, 0.0]), None);
        // 9 mm above the centre: the cube's face is at 4 mm (voxel centres), 5 mm away.
        assert_eq!(
            a.describe([0.0, 0.0, 9.0], 6.0).as_deref(),
            Some("near Cube_Centre (5 mm)")
        );
        assert_eq!(a.describe([0.0, 0.0, 9.0], 3.0), None);
        // A tab-separated table with a header, names with spaces.
        let b = atlas(dir.path(), "index\tname\n2\tPosterior cingulate\n").unwrap();
        assert_eq!(
            b.region_at([0.0; 3]).as_deref(),
            Some("Posterior cingulate")
        );
    }

    #[test]
    fn bad_atlases_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = atlas(dir.path(), "1 A\nnot a label line\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.txt") && e.contains("line 2"), "{e}");
        let e = atlas(dir.path(), "").unwrap_err().to_string();
        assert!(e.contains("no `index name` line"), "{e}");
        let v = Volume::new(vec![0.5; 8], [2, 2, 2], Affine::identity(), "x").unwrap();
        write_nifti(&v, dir.path().join("f.nii.gz")).unwrap();
        let e = Atlas::read(&dir.path().join("f.nii.gz"), &dir.path().join("a.txt"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("integer labels"), "{e}");
    }

    /// The AAL atlas of Debian's mricron-data, where installed (CI installs it).
    #[test]
    fn the_installed_aal_names_the_posterior_cingulate() {
        let Some((image, labels)) = Atlas::installed() else {
            eprintln!("skipping: Debian's mricron-data (AAL) is not installed");
            return;
        };
        let a = Atlas::read(&image, &labels).unwrap();
        assert_eq!(a.name(), "aal");
        assert!(a.regions() >= 116, "{}", a.regions());
        assert_eq!(
            a.region_at([-4.0, -48.0, 30.0]).as_deref(),
            Some("Cingulum_Post_L")
        );
        assert_eq!(
            a.region_at([-26.0, -20.0, -14.0]).as_deref(),
            Some("Hippocampus_L")
        );
    }
}
