//! PNG figures of maps: orthogonal slices over a template (volumes) and image grids (images).
//! Values at or beyond a threshold are drawn opaque over the grey underlay, positive from red
//! to yellow, negative from blue to cyan, saturating at `max`. Slice figures mark the
//! subject's left and right on the coronal and axial views (from the grid's affine), and give
//! each row a colour bar with its threshold and saturation values.

use crate::error::{ProtocolError, Result};
use mmssl_data::Volume;
use plotters::prelude::*;
use std::path::Path;

/// A map drawn over an underlay.
pub(super) struct Panel<'a> {
    /// Its caption.
    pub(super) label: String,
    /// The values (on the underlay's grid).
    pub(super) map: &'a Volume,
    /// `|value|` from which it is drawn.
    pub(super) threshold: f32,
    /// `|value|` at which the colour saturates.
    pub(super) max: f32,
}

/// One tile of an image grid: an underlay, a map over it, or both.
pub(super) struct Tile<'a> {
    caption: String,
    underlay: Option<&'a Volume>,
    overlay: Option<Panel<'a>>,
}

impl<'a> Tile<'a> {
    pub(super) fn new(
        caption: String,
        underlay: Option<&'a Volume>,
        overlay: Option<Panel<'a>>,
    ) -> Self {
        Tile {
            caption,
            underlay,
            overlay,
        }
    }
}

/// The colour of `v` over `base`.
fn colour(base: RGBColor, v: f32, threshold: f32, max: f32) -> RGBColor {
    let a = v.abs();
    // NaN or below the threshold: the underlay.
    if a.is_nan() || a < threshold || a == 0.0 {
        return base;
    }
    let f = ((a - threshold) / (max - threshold).max(f32::MIN_POSITIVE)).clamp(0.0, 1.0);
    let ramp = (60.0 + 195.0 * f) as u8;
    if v > 0.0 {
        RGBColor(255, ramp, 0)
    } else {
        RGBColor(0, ramp, 255)
    }
}

/// Grey levels of `values` between their 1st and 99th percentile.
fn grey_scale(values: &[f32]) -> (f32, f32) {
    let mut v: Vec<f32> = values.iter().copied().filter(|x| *x != 0.0).collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(f32::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    let (lo, hi) = (q(0.01), q(0.99));
    (lo, if hi > lo { hi } else { lo + 1.0 })
}

fn grey(v: f32, (lo, hi): (f32, f32)) -> RGBColor {
    let g = (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0) as u8;
    RGBColor(g, g, g)
}

fn failed(path: &Path) -> impl Fn(String) -> ProtocolError + '_ {
    move |reason: String| ProtocolError::write(path, reason)
}

const SCALE: u32 = 3;
const LABEL: u32 = 150;
const TITLE: u32 = 30;
/// Width of the colour bar and its tick labels.
const BAR: u32 = 110;

/// A vertical colour bar from `+max` (top) to `-max` (bottom) at `(left, top)`, `h` pixels
/// high, with the values between `-threshold` and `threshold` (not drawn in the map) black,
/// and ticks at `+-max` and `+-threshold`.
fn colour_bar<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    (left, top, h): (i32, i32, i32),
    threshold: f32,
    max: f32,
    text: &TextStyle<'_>,
) -> std::result::Result<(), String> {
    let value = |j: i32| max - 2.0 * max * j as f32 / (h - 1).max(1) as f32;
    for j in 0..h {
        let c = colour(RGBColor(0, 0, 0), value(j), threshold, max);
        root.draw(&Rectangle::new(
            [(left, top + j), (left + 12, top + j + 1)],
            c.filled(),
        ))
        .map_err(|e| e.to_string())?;
    }
    // The frame one pixel outside the bar, which keeps its end colours.
    root.draw(&Rectangle::new(
        [(left - 1, top - 1), (left + 12, top + h)],
        WHITE.stroke_width(1),
    ))
    .map_err(|e| e.to_string())?;
    let at =
        |v: f32| top + ((max - v) / (2.0 * max).max(f32::MIN_POSITIVE) * (h - 1) as f32) as i32;
    let mut ticks = vec![(max, format!("{max:.3}")), (-max, format!("-{max:.3}"))];
    if threshold > 0.0 && threshold < max {
        ticks.push((threshold, format!("{threshold:.3} thr")));
        ticks.push((-threshold, format!("-{threshold:.3}")));
    }
    for (v, label) in ticks {
        let y = at(v);
        root.draw(&PathElement::new(
            vec![(left + 12, y), (left + 16, y)],
            WHITE,
        ))
        .map_err(|e| e.to_string())?;
        root.draw(&Text::new(label, (left + 18, y - 6), text.clone()))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Orthogonal slices (sagittal, coronal, axial) through voxel `cut` of each panel's map over
/// `underlay` (all on one grid), a row per panel; written to `path` as PNG.
pub(super) fn slices(
    path: &Path,
    title: &str,
    underlay: &Volume,
    panels: &[Panel<'_>],
    cut: [usize; 3],
) -> Result<()> {
    crate::plots::register_font();
    let [nx, ny, nz] = underlay.shape();
    let cut = [cut[0].min(nx - 1), cut[1].min(ny - 1), cut[2].min(nz - 1)];
    // (width, height) of each view in voxels: sagittal y-z, coronal x-z, axial x-y.
    let views = [(ny, nz), (nx, nz), (nx, ny)];
    let width = LABEL + views.iter().map(|v| v.0 as u32 * SCALE + 10).sum::<u32>() + BAR;
    // The subject's right is +x in world space: which side of the picture it is on.
    let right_on_right = underlay.affine().rows[0][0] >= 0.0;
    let row_h = (nz.max(ny) as u32) * SCALE + 10;
    let height = TITLE + row_h * panels.len().max(1) as u32;
    let err = failed(path);
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&BLACK).map_err(|e| err(e.to_string()))?;
    let text = ("sans-serif", 14).into_font().color(&WHITE);
    let caption = format!(
        "{title}; slices through voxel {cut:?} = {:.0?} mm",
        underlay.world(cut[0] as f64, cut[1] as f64, cut[2] as f64)
    );
    root.draw(&Text::new(caption, (8, 8), text.clone()))
        .map_err(|e| err(e.to_string()))?;
    let scale = grey_scale(underlay.data());
    let index = |x: usize, y: usize, z: usize| x + nx * (y + ny * z);
    for (row, panel) in panels.iter().enumerate() {
        let top = TITLE + row as u32 * row_h;
        root.draw(&Text::new(
            panel.label.clone(),
            (8, (top + row_h / 2) as i32),
            text.clone(),
        ))
        .map_err(|e| err(e.to_string()))?;
        root.draw(&Text::new(
            format!("|value| >= {:.3}", panel.threshold),
            (8, (top + row_h / 2 + 18) as i32),
            ("sans-serif", 11).into_font().color(&WHITE),
        ))
        .map_err(|e| err(e.to_string()))?;
        let mut left = LABEL;
        for (v, &(w, h)) in views.iter().enumerate() {
            for i in 0..w {
                for j in 0..h {
                    let k = match v {
                        0 => index(cut[0], i, j),
                        1 => index(i, cut[1], j),
                        _ => index(i, j, cut[2]),
                    };
                    // Outside the head (exactly 0 after masking) is black.
                    let u = underlay.data()[k];
                    let base = if u == 0.0 { BLACK } else { grey(u, scale) };
                    let c = colour(base, panel.map.data()[k], panel.threshold, panel.max);
                    // Up is +z (or +y on the axial view): rows are drawn from the bottom.
                    let (px, py) = (left + i as u32 * SCALE, top + (h - 1 - j) as u32 * SCALE);
                    root.draw(&Rectangle::new(
                        [
                            (px as i32, py as i32),
                            ((px + SCALE) as i32, (py + SCALE) as i32),
                        ],
                        c.filled(),
                    ))
                    .map_err(|e| err(e.to_string()))?;
                }
            }
            if v > 0 {
                // Coronal and axial views: the subject's left and right.
                let (l, r) = if right_on_right {
                    ("L", "R")
                } else {
                    ("R", "L")
                };
                let small = ("sans-serif", 12).into_font().color(&WHITE);
                root.draw(&Text::new(
                    l,
                    ((left + 2) as i32, (top + 2) as i32),
                    small.clone(),
                ))
                .map_err(|e| err(e.to_string()))?;
                root.draw(&Text::new(
                    r,
                    ((left + w as u32 * SCALE - 10) as i32, (top + 2) as i32),
                    small,
                ))
                .map_err(|e| err(e.to_string()))?;
            }
            left += w as u32 * SCALE + 10;
        }
        colour_bar(
            &root,
            (left as i32 + 4, top as i32 + 6, row_h as i32 - 20),
            panel.threshold,
            panel.max,
            &("sans-serif", 11).into_font().color(&WHITE),
        )
        .map_err(&err)?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Rows of image tiles (`W x H x 1` volumes), each row with a label, written to `path` as PNG.
pub(super) fn image_grid(path: &Path, title: &str, rows: &[(String, Vec<Tile<'_>>)]) -> Result<()> {
    crate::plots::register_font();
    const ZOOM: u32 = 4;
    let size = rows
        .iter()
        .flat_map(|r| r.1.iter())
        .find_map(|t| t.underlay.or(t.overlay.as_ref().map(|p| p.map)))
        .map_or([28, 28, 1], |v| v.shape());
    let (w, h) = (size[0] as u32, size[1] as u32);
    let cols = rows.iter().map(|r| r.1.len()).max().unwrap_or(1).max(1) as u32;
    let tile_w = w * ZOOM + 10;
    let tile_h = h * ZOOM + 24;
    let width = LABEL + cols * tile_w;
    let height = TITLE + rows.len().max(1) as u32 * tile_h;
    let err = failed(path);
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&BLACK).map_err(|e| err(e.to_string()))?;
    let text = ("sans-serif", 13).into_font().color(&WHITE);
    root.draw(&Text::new(title.to_string(), (8, 8), text.clone()))
        .map_err(|e| err(e.to_string()))?;
    for (r, (label, tiles)) in rows.iter().enumerate() {
        let top = TITLE + r as u32 * tile_h;
        root.draw(&Text::new(
            label.clone(),
            (8, (top + tile_h / 2) as i32),
            text.clone(),
        ))
        .map_err(|e| err(e.to_string()))?;
        for (c, tile) in tiles.iter().enumerate() {
            let left = LABEL + c as u32 * tile_w;
            let scale = tile.underlay.map(|u| grey_scale(u.data()));
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let k = x + w as usize * y;
                    let base = match (tile.underlay, scale) {
                        (Some(u), Some(s)) => grey(u.data().get(k).copied().unwrap_or(0.0), s),
                        _ => RGBColor(0, 0, 0),
                    };
                    let colour = match &tile.overlay {
                        Some(p) => colour(
                            base,
                            p.map.data().get(k).copied().unwrap_or(0.0),
                            p.threshold,
                            p.max,
                        ),
                        None => base,
                    };
                    // Image rows go down, as the image is stored.
                    let (px, py) = (left + x as u32 * ZOOM, top + y as u32 * ZOOM);
                    root.draw(&Rectangle::new(
                        [
                            (px as i32, py as i32),
                            ((px + ZOOM) as i32, (py + ZOOM) as i32),
                        ],
                        colour.filled(),
                    ))
                    .map_err(|e| err(e.to_string()))?;
                }
            }
            root.draw(&Text::new(
                tile.caption.clone(),
                (left as i32, (top + h * ZOOM + 4) as i32),
                text.clone(),
            ))
            .map_err(|e| err(e.to_string()))?;
        }
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
