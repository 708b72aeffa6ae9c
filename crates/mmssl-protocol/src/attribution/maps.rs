//! Where the maps live (each item's input grid, the common grid), the inputs' mask and
//! template, and the group maps of one target and modality: class means, Welch's t per
//! contrast, clusters, files and figures.

use super::figures::{self, Panel, Tile};
use super::output::{REGION_RADIUS_MM, on_output};
use super::*;
use mmssl_data::{
    Affine, Atlas, PairedDataset, Subset, Volume, VoxelGrid, clusters, mean_map, read_nifti,
    resample, welch_t, write_nifti,
};

/// Items shown one by one in the image figures.
pub(super) const EXAMPLES: usize = 8;

/// The space of the maps.
pub(super) enum Space {
    /// Volumes `[1, D, H, W]`, each item on its own grid; group maps on `common`.
    Volumes { common: VoxelGrid },
    /// Images `[C, H, W]`: maps of `H x W` (channels summed), all on one pixel grid.
    Images,
}

fn centre(g: &VoxelGrid) -> [f64; 3] {
    g.affine.apply(g.shape.map(|s| (s as f64 - 1.0) / 2.0))
}

impl Space {
    /// The space of items with `grids` whose modalities have item `shapes`.
    pub(super) fn new(grids: &[Option<VoxelGrid>], shapes: &[Vec<usize>]) -> Result<Space> {
        let refuse = |reason: String| {
            Err(ProtocolError::NotExplainable {
                run: "the run".into(),
                reason,
            })
        };
        if shapes.iter().all(|s| s.len() == 3) {
            return Ok(Space::Images);
        }
        if !shapes.iter().all(|s| s.len() == 4 && s[0] == 1) {
            return refuse(format!(
                "maps are made for images [C, H, W] or one-channel volumes [1, D, H, W] in \
                 every modality, not {shapes:?}"
            ));
        }
        let Some(Some(first)) = grids.first() else {
            return refuse("its volumes have no grid in world space".into());
        };
        let mut sum = [0f64; 3];
        for g in grids {
            let Some(g) = g else {
                return refuse("some of its volumes have no grid in world space".into());
            };
            if g.shape != first.shape {
                return refuse(format!(
                    "its volumes are on grids of different shapes ({:?} and {:?})",
                    first.shape, g.shape
                ));
            }
            let c = centre(g);
            for a in 0..3 {
                sum[a] += c[a];
            }
        }
        if grids.iter().all(|g| g.as_ref() == Some(first)) {
            return Ok(Space::Volumes { common: *first });
        }
        let n = grids.len() as f64;
        let spacing = first.affine.voxel_sizes()[0];
        let common = VoxelGrid::centred(first.shape, spacing, sum.map(|s| s / n))?;
        Ok(Space::Volumes { common })
    }

    pub(super) fn is_volumes(&self) -> bool {
        matches!(self, Space::Volumes { .. })
    }

    /// One item's map from its values in the input's layout (`shape`): a volume on the item's
    /// grid, or an image (channels summed) as a `W x H x 1` volume.
    pub(super) fn item_map(
        &self,
        values: &[f32],
        shape: &[usize],
        grid: Option<&VoxelGrid>,
        source: &str,
    ) -> Result<Volume> {
        match (self, shape) {
            (Space::Volumes { .. }, &[_, d, h, w]) => {
                let Some(grid) = grid else {
                    return Err(ProtocolError::NotExplainable {
                        run: "the run".into(),
                        reason: format!("{source} has no grid in world space"),
                    });
                };
                if grid.shape != [w, h, d] {
                    return Err(ProtocolError::NotExplainable {
                        run: "the run".into(),
                        reason: format!(
                            "{source}: the input is {w} x {h} x {d}, its grid {:?}",
                            grid.shape
                        ),
                    });
                }
                Ok(Volume::new(
                    values.to_vec(),
                    [w, h, d],
                    grid.affine,
                    source,
                )?)
            }
            (Space::Images, &[c, h, w]) => {
                let plane = h * w;
                let summed: Vec<f32> = (0..plane)
                    .map(|p| (0..c).map(|k| values[k * plane + p]).sum())
                    .collect();
                Ok(Volume::new(summed, [w, h, 1], Affine::identity(), source)?)
            }
            _ => Err(ProtocolError::NotExplainable {
                run: "the run".into(),
                reason: format!("{source}: unexpected input shape {shape:?}"),
            }),
        }
    }

    /// `map` on the common grid (resampled trilinearly when its grid differs).
    pub(super) fn to_common(&self, map: &Volume) -> Result<Volume> {
        match self {
            Space::Volumes { common }
                if map.affine() != &common.affine || map.shape() != common.shape =>
            {
                Ok(resample(map, common)?)
            }
            _ => Ok(map.clone()),
        }
    }
}

/// What the group maps share: the mask and the template (volumes), the class-mean inputs and
/// a few items' inputs (images).
pub(super) struct Prepared {
    /// Voxels inside the brain in every item (volumes).
    mask: Option<Vec<bool>>,
    /// The figures' underlay on the common grid (volumes).
    template: Option<Volume>,
    pub(super) mask_file: Option<PathBuf>,
    pub(super) template_file: Option<PathBuf>,
    /// `[modality][class]` mean input (images).
    class_inputs: Vec<Vec<Option<Volume>>>,
    /// `[modality]` the first items' inputs (images).
    example_inputs: Vec<Vec<Volume>>,
}

impl Prepared {
    /// Reads every explained item's inputs once: the mask and template of volumes (written to
    /// `out`), the class means and examples of images.
    pub(super) fn new(
        space: &Space,
        sets: &[&Subset],
        items: &[(usize, usize)],
        labels: &[usize],
        config: &ExplainConfig,
        out: &Path,
        output: Option<&VoxelGrid>,
    ) -> Result<Prepared> {
        let modalities = sets[0].modalities();
        let classes = labels.iter().max().map_or(0, |&l| l + 1);
        #[allow(clippy::type_complexity)]
        let mut sums: Vec<Vec<Option<(Vec<f64>, usize, [usize; 3])>>> =
            vec![vec![None; classes]; modalities];
        let mut examples = vec![Vec::new(); modalities];
        let (mut inside, mut intensity): (Option<Vec<f64>>, Option<Vec<f64>>) = (None, None);
        for (k, &(s, i)) in items.iter().enumerate() {
            let set = sets[s];
            let item = set.get(i, 0)?;
            let grid = set.item_grid(i)?;
            // Volumes: the mask and the template come from the first modality (T1) alone.
            let used = if space.is_volumes() { 1 } else { modalities };
            for m in 0..used {
                let input =
                    space.item_map(&item.views[m], &set.shape(m), grid.as_ref(), "input")?;
                let common = space.to_common(&input)?;
                if space.is_volumes() {
                    let flags = input.with_data(
                        input
                            .data()
                            .iter()
                            .map(|&v| (v != 0.0) as u8 as f32)
                            .collect(),
                        input.dims(),
                    )?;
                    let flags = space.to_common(&flags)?;
                    let flags: Vec<f32> = flags
                        .data()
                        .iter()
                        .map(|&f| (f >= 0.5) as u8 as f32)
                        .collect();
                    add(&mut inside, &flags);
                    add(&mut intensity, common.data());
                } else {
                    let slot = &mut sums[m][labels[k]];
                    let (sum, n, _) = slot
                        .get_or_insert_with(|| (vec![0.0; common.data().len()], 0, common.shape()));
                    for (a, &v) in sum.iter_mut().zip(common.data()) {
                        *a += v as f64;
                    }
                    *n += 1;
                    if examples[m].len() < EXAMPLES {
                        examples[m].push(common);
                    }
                }
            }
        }
        let n = items.len() as f64;
        let mut prepared = Prepared {
            mask: None,
            template: None,
            mask_file: None,
            template_file: None,
            class_inputs: Vec::new(),
            example_inputs: examples,
        };
        if let Space::Volumes { common } = space {
            let empty = || Volume::new(vec![0.0; common.len()], common.shape, common.affine, "");
            let inside = inside.unwrap_or_default();
            // Inside the brain in every item: at the edge, where some items have no brain,
            // the test would compare a few values against zeros.
            let mask: Vec<bool> = inside.iter().map(|&c| c >= n - 0.5).collect();
            let mask_volume = empty()?.with_data(
                mask.iter().map(|&b| b as u8 as f32).collect(),
                empty()?.dims(),
            )?;
            // A given template is read once: resampled onto the common grid for the figures
            // and onto the output grid for its file.
            let given = match &config.template {
                Some(path) => {
                    let t = read_nifti(path)?;
                    if t.frames() != 1 {
                        return Err(ProtocolError::file(
                            path,
                            format!("a template must be 3D, it has {} frames", t.frames()),
                        ));
                    }
                    Some(t)
                }
                None => None,
            };
            let template = match &given {
                Some(t) => resample(t, common)?,
                None => {
                    let mean = intensity.unwrap_or_default();
                    empty()?.with_data(
                        mean.iter().map(|&v| (v / n) as f32).collect(),
                        empty()?.dims(),
                    )?
                }
            };
            let (mask_file, template_file) = (out.join("mask.nii.gz"), out.join("template.nii.gz"));
            let mask_out = on_output(&mask_volume, output)?;
            let binary: Vec<f32> = mask_out
                .data()
                .iter()
                .map(|&v| (v >= 0.5) as u8 as f32)
                .collect();
            write_volume(&mask_out.with_data(binary, mask_out.dims())?, &mask_file)?;
            let template_out = match (&given, output) {
                (Some(t), Some(g)) => resample(t, g)?,
                _ => on_output(&template, output)?,
            };
            write_volume(&template_out, &template_file)?;
            prepared.mask = Some(mask);
            prepared.template = Some(template);
            prepared.mask_file = Some(mask_file);
            prepared.template_file = Some(template_file);
        } else {
            prepared.class_inputs = sums
                .into_iter()
                .map(|per_class| {
                    per_class
                        .into_iter()
                        .map(|slot| {
                            slot.map(|(sum, n, shape)| {
                                let values = sum.iter().map(|&v| (v / n as f64) as f32).collect();
                                Volume::new(values, shape, Affine::identity(), "mean input")
                            })
                            .transpose()
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
        }
        Ok(prepared)
    }

    /// `map` with the voxels outside the mask set to 0 (unchanged without a mask).
    fn masked(&self, map: Volume) -> Result<Volume> {
        match &self.mask {
            Some(mask) => {
                let data = map
                    .data()
                    .iter()
                    .zip(mask)
                    .map(|(&v, &inside)| if inside { v } else { 0.0 })
                    .collect();
                Ok(map.with_data(data, map.dims())?)
            }
            None => Ok(map),
        }
    }
}

fn add(acc: &mut Option<Vec<f64>>, values: &[f32]) {
    let acc = acc.get_or_insert_with(|| vec![0.0; values.len()]);
    for (a, &v) in acc.iter_mut().zip(values) {
        *a += v as f64;
    }
}

/// Writes a volume, making its folder.
pub(super) fn write_volume(volume: &Volume, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ProtocolError::write(dir, e))?;
    }
    Ok(write_nifti(volume, path)?)
}

/// The inputs of [`write_group`].
pub(super) struct Group<'a> {
    pub(super) space: &'a Space,
    pub(super) prep: &'a Prepared,
    /// Each item's map on the common grid.
    pub(super) maps: &'a [Volume],
    /// The first items' maps.
    pub(super) examples: &'a [Volume],
    pub(super) labels: &'a [usize],
    pub(super) names: &'a [String],
    pub(super) modality: usize,
    pub(super) config: &'a ExplainConfig,
    pub(super) folder: &'a Path,
    pub(super) target: &'a str,
    pub(super) modality_name: &'a str,
    /// The grid the files are written on (`None`: the common grid).
    pub(super) output: Option<&'a VoxelGrid>,
    /// The atlas naming the clusters' regions.
    pub(super) atlas: Option<&'a Atlas>,
}

/// The largest `|value|` of a map.
fn max_abs(map: &Volume) -> f32 {
    map.data().iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// Class means, contrasts, clusters, files and the figure of one target and modality.
pub(super) fn write_group(g: Group<'_>) -> Result<TargetMaps> {
    std::fs::create_dir_all(g.folder).map_err(|e| ProtocolError::write(g.folder, e))?;
    let volumes = g.space.is_volumes();
    let of = |pick: &dyn Fn(usize) -> bool| -> Vec<&Volume> {
        g.maps
            .iter()
            .zip(g.labels)
            .filter(|(_, l)| pick(**l))
            .map(|(m, _)| m)
            .collect()
    };
    let mut class_means = Vec::new();
    let mut means: Vec<(usize, Volume)> = Vec::new();
    for (c, name) in g.names.iter().enumerate() {
        let members = of(&|l| l == c);
        if members.is_empty() {
            continue;
        }
        let mean = g.prep.masked(mean_map(&members)?)?;
        let file = g.folder.join(format!("mean_{name}.nii.gz"));
        if volumes {
            write_volume(&on_output(&mean, g.output)?, &file)?;
            class_means.push((name.clone(), file));
        }
        means.push((c, mean));
    }
    let pairs: Vec<(usize, Option<usize>)> = match g.names.len() {
        2 => vec![(1, Some(0))],
        k => (0..k).map(|c| (c, None)).collect(),
    };
    let figure = g.folder.join("figure.png");
    let mut contrasts = Vec::new();
    let mut t_maps = Vec::new();
    let mut skipped = Vec::new();
    for (a, b) in pairs {
        let name = match b {
            Some(b) => format!("{}-vs-{}", g.names[a], g.names[b]),
            None => format!("{}-vs-rest", g.names[a]),
        };
        let first = of(&|l| l == a);
        let second = of(&|l| b.map_or(l != a, |b| l == b));
        if first.len() < 2 || second.len() < 2 {
            skipped.push(format!(
                "{name}: {} and {} items (Welch's t needs two per group; `--set all` explains every labelled session)",
                first.len(),
                second.len()
            ));
            continue;
        }
        let t = g.prep.masked(welch_t(&first, &second)?.t)?;
        // The difference of the group means, in attribution units: unlike t, it is weighted
        // by how much the model uses each voxel.
        let (ma, mb) = (mean_map(&first)?, mean_map(&second)?);
        let diff: Vec<f32> = ma
            .data()
            .iter()
            .zip(mb.data())
            .map(|(a, b)| a - b)
            .collect();
        let difference = g.prep.masked(ma.with_data(diff, ma.dims())?)?;
        let mut found = clusters(&t, g.config.cluster_threshold, g.config.cluster_min_voxels)?;
        found.truncate(g.config.max_clusters);
        if let Some(atlas) = g.atlas {
            for k in &mut found {
                k.region = atlas.describe(k.peak_mm, REGION_RADIUS_MM);
            }
        }
        let (file, difference_file) = if volumes {
            let file = g.folder.join(format!("t_{name}.nii.gz"));
            let diff_file = g.folder.join(format!("difference_{name}.nii.gz"));
            write_volume(&on_output(&t, g.output)?, &file)?;
            write_volume(&on_output(&difference, g.output)?, &diff_file)?;
            (file, diff_file)
        } else {
            (figure.clone(), figure.clone())
        };
        contrasts.push(Contrast {
            name: name.clone(),
            sizes: [first.len(), second.len()],
            file,
            difference_file,
            max_abs_t: max_abs(&t),
            clusters: found,
        });
        t_maps.push((name, t));
    }
    fn t_panel<'v>(name: &str, t: &'v Volume, threshold: f32) -> Panel<'v> {
        Panel {
            label: format!("t {name}"),
            map: t,
            threshold,
            max: max_abs(t).max(threshold * 1.5),
        }
    }
    fn mean_panel<'v>(name: &str, mean: &'v Volume) -> Panel<'v> {
        let max = max_abs(mean);
        Panel {
            label: format!("mean {name}"),
            map: mean,
            threshold: 0.2 * max,
            max: max.max(f32::MIN_POSITIVE),
        }
    }
    let threshold = g.config.cluster_threshold;
    let title = format!("{} {}", g.target, g.modality_name);
    if volumes {
        let template = g.prep.template.as_ref().expect("volumes have a template");
        let mut panels: Vec<Panel<'_>> = means
            .iter()
            .map(|(c, m)| mean_panel(&g.names[*c], m))
            .collect();
        panels.extend(t_maps.iter().map(|(n, t)| t_panel(n, t, threshold)));
        // Cut through the strongest peak of the first contrast, else the grid's centre.
        let cut = contrasts
            .first()
            .and_then(|c| c.clusters.first())
            .map_or(template.shape().map(|s| s / 2), |k| k.peak_voxel);
        figures::slices(&figure, &title, template, &panels, cut)?;
    } else {
        let inputs = &g.prep.class_inputs[g.modality];
        let mut rows: Vec<(String, Vec<Tile<'_>>)> = Vec::new();
        rows.push((
            "mean input".into(),
            means
                .iter()
                .map(|(c, _)| Tile::new(g.names[*c].clone(), inputs[*c].as_ref(), None))
                .collect(),
        ));
        rows.push((
            "mean map".into(),
            means
                .iter()
                .map(|(c, m)| {
                    Tile::new(
                        g.names[*c].clone(),
                        inputs[*c].as_ref(),
                        Some(mean_panel(&g.names[*c], m)),
                    )
                })
                .collect(),
        ));
        rows.push((
            "Welch t".into(),
            t_maps
                .iter()
                .map(|(n, t)| Tile::new(n.clone(), None, Some(t_panel(n, t, threshold))))
                .collect(),
        ));
        let examples = &g.prep.example_inputs[g.modality];
        rows.push((
            "items".into(),
            g.examples
                .iter()
                .zip(examples)
                .enumerate()
                .map(|(k, (map, input))| {
                    let max = max_abs(map);
                    Tile::new(
                        format!("item {k}"),
                        Some(input),
                        Some(Panel {
                            label: String::new(),
                            map,
                            threshold: 0.2 * max,
                            max: max.max(f32::MIN_POSITIVE),
                        }),
                    )
                })
                .collect(),
        ));
        figures::image_grid(&figure, &title, &rows)?;
    }
    Ok(TargetMaps {
        target: g.target.to_string(),
        modality: g.modality,
        modality_name: g.modality_name.to_string(),
        folder: g.folder.to_path_buf(),
        class_means,
        contrasts,
        figure: Some(figure),
        skipped,
    })
}
