//! Where the maps are written and what names their clusters: the template grid of each
//! modality (the grid of the study's files, when every explained item shares one) and the
//! atlas of the cluster regions.

use super::maps::Space;
use super::*;
use mmssl_data::{Atlas, PairedDataset, Subset, Volume, VoxelGrid, resample};

impl AtlasSetting {
    /// The setting `--atlas` and `--atlas-labels` describe: `auto`, `none`, or the path of a
    /// label volume whose names file is `labels`, else found beside it (`<stem>.nii.txt`,
    /// `<stem>.txt` or `<stem>.tsv`, as AAL and FSL ship them).
    pub fn parse(atlas: &str, labels: Option<&Path>) -> Result<AtlasSetting> {
        match (atlas, labels) {
            ("auto", None) => Ok(AtlasSetting::Auto),
            ("none", None) => Ok(AtlasSetting::None),
            ("auto" | "none", Some(_)) => Err(ProtocolError::Config(
                "--atlas-labels goes with --atlas PATH".into(),
            )),
            (path, labels) => {
                let image = PathBuf::from(path);
                let labels = match labels {
                    Some(l) => l.to_path_buf(),
                    None => {
                        let name = image.file_name().unwrap_or_default().to_string_lossy();
                        let stem = name.trim_end_matches(".gz").trim_end_matches(".nii");
                        ["nii.txt", "txt", "tsv"]
                            .map(|ext| image.with_file_name(format!("{stem}.{ext}")))
                            .into_iter()
                            .find(|p| p.is_file())
                            .ok_or_else(|| {
                                ProtocolError::Config(format!(
                                    "--atlas {path}: no names file beside it ({stem}.nii.txt, \
                                     {stem}.txt or {stem}.tsv); give one with --atlas-labels"
                                ))
                            })?
                    }
                };
                Ok(AtlasSetting::File { image, labels })
            }
        }
    }
}

/// The grid each modality's maps are written on: the grid of the files the items were read
/// from when every explained item shares one (the template the study's images are on, so
/// that the maps are voxel-aligned with it), else `None` (the common grid), with a warning.
pub(super) fn output_grids(
    space: &Space,
    sets: &[&Subset],
    items: &[(usize, usize)],
    modalities: usize,
    warnings: &mut Vec<String>,
) -> Result<Vec<Option<VoxelGrid>>> {
    if !space.is_volumes() {
        return Ok(vec![None; modalities]);
    }
    let mut out = Vec::new();
    for m in 0..modalities {
        let mut grids: Vec<VoxelGrid> = Vec::new();
        let mut missing = false;
        for &(s, i) in items {
            match sets[s].source_grid(i, m)? {
                Some(g) => {
                    if !grids.contains(&g) {
                        grids.push(g);
                    }
                }
                None => missing = true,
            }
        }
        match (grids.len(), missing) {
            (1, false) => out.push(Some(grids[0])),
            (0, _) => out.push(None),
            (n, _) => {
                warnings.push(format!(
                    "the inputs of modality {m} lie on {n} different grids{}: its maps are written \
                     on the common grid of the explanation, not on a template's",
                    if missing { " (or none)" } else { "" }
                ));
                out.push(None);
            }
        }
    }
    Ok(out)
}

/// The atlas of `setting` for volume maps, with its file (`None` for images, for
/// [`AtlasSetting::None`], or when `Auto` finds none installed); a warning says which atlas
/// names the regions and that it assumes MNI space.
pub(super) fn load_atlas(
    space: &Space,
    setting: &AtlasSetting,
    warnings: &mut Vec<String>,
) -> Result<Option<(Atlas, PathBuf)>> {
    if !space.is_volumes() {
        return Ok(None);
    }
    let (image, labels) = match setting {
        AtlasSetting::None => return Ok(None),
        AtlasSetting::Auto => match Atlas::installed() {
            Some(found) => found,
            None => return Ok(None),
        },
        AtlasSetting::File { image, labels } => (image.clone(), labels.clone()),
    };
    let atlas = Atlas::read(&image, &labels)?;
    warnings.push(format!(
        "cluster regions are named from the {} atlas ({}, {} regions); it is in MNI space, so \
         the names mean something only for maps in MNI space",
        atlas.name(),
        image.display(),
        atlas.regions()
    ));
    Ok(Some((atlas, image)))
}

/// How far from a cluster's peak the nearest atlas region is looked for, mm.
pub(super) const REGION_RADIUS_MM: f64 = 6.0;

/// `map` on the output grid (resampled trilinearly when it is elsewhere).
pub(super) fn on_output(map: &Volume, output: Option<&VoxelGrid>) -> Result<Volume> {
    match output {
        Some(g) if map.affine() != &g.affine || map.shape() != g.shape => Ok(resample(map, g)?),
        _ => Ok(map.clone()),
    }
}
