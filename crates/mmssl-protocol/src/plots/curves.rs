//! The figures of one run: the embedding maps of its test representations and the curves of
//! its online evaluation.

use super::{COLOURS, LEGEND_WIDTH, LegendKey, chart_on, legend_entry};
use crate::error::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One point of an embedding map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapPoint {
    /// Map coordinates.
    pub x: f64,
    /// Map coordinates.
    pub y: f64,
    /// Class (colour).
    pub class: usize,
    /// Modality (marker: circle, triangle, cross).
    pub modality: usize,
}

fn draw_map<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    points: &[MapPoint],
    title: &str,
    classes: &[String],
    modalities: &[String],
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let (width, _) = root.dim_in_pixel();
    let (plot, legend) = root.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    let range = |f: fn(&MapPoint) -> f64| {
        let (lo, hi) = points
            .iter()
            .map(f)
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
        let pad = ((hi - lo) * 0.05).max(1e-9);
        (lo - pad)..(hi + pad)
    };
    let span = (range(|p| p.x), range(|p| p.y));
    let mut chart = chart_on(&plot, (title, 20), (30, 50), span).map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("t-SNE 1")
        .y_desc("t-SNE 2")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    let colour = |p: &MapPoint| COLOURS[p.class % COLOURS.len()].mix(0.8);
    let of = |m: usize| points.iter().filter(move |p| (p.modality.min(2)) == m);
    chart
        .draw_series(of(0).map(|p| Circle::new((p.x, p.y), 3, colour(p).filled())))
        .map_err(err)?;
    chart
        .draw_series(of(1).map(|p| TriangleMarker::new((p.x, p.y), 4, colour(p).filled())))
        .map_err(err)?;
    chart
        .draw_series(of(2).map(|p| Cross::new((p.x, p.y), 3, colour(p).stroke_width(2))))
        .map_err(err)?;
    // The legend: a swatch per class present, then a marker per modality present.
    let mut y = 40;
    let present = |f: fn(&MapPoint) -> usize, i: usize| points.iter().any(|p| f(p) == i);
    for (c, name) in classes.iter().enumerate() {
        if !present(|p| p.class, c) {
            continue;
        }
        let key = LegendKey::Swatch(COLOURS[c % COLOURS.len()]);
        legend_entry(&legend, y, key, &format!("class {name}")).map_err(err)?;
        y += 22;
    }
    y += 10;
    for (m, name) in modalities.iter().enumerate() {
        if !present(|p| p.modality, m) {
            continue;
        }
        legend_entry(&legend, y, LegendKey::Marker(m), name).map_err(err)?;
        y += 22;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// An embedding map: each point a marker, its colour the class (named by `classes`), its shape
/// the modality (named by `modalities`), with a legend. Writes `stem.svg` and `stem.png`.
pub fn embedding_map(
    points: &[MapPoint],
    title: &str,
    classes: &[String],
    modalities: &[String],
    stem: &Path,
) -> Result<()> {
    svg_and_png!(stem, (720 + LEGEND_WIDTH, 640), |area| draw_map(
        area, points, title, classes, modalities
    ))
}

/// Curves over pretraining: one line per named series of `(epochs trained, value)` points,
/// values in [0, 1] (accuracies, recalls), with a legend. Writes `stem.svg` and `stem.png`.
pub fn curves_chart(series: &[(String, Vec<(f64, f64)>)], title: &str, stem: &Path) -> Result<()> {
    svg_and_png!(stem, (720 + LEGEND_WIDTH, 480), |area| draw_curves(
        area, series, title
    ))
}

fn draw_curves<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    series: &[(String, Vec<(f64, f64)>)],
    title: &str,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let (width, _) = root.dim_in_pixel();
    let (plot, legend) = root.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    let last = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(1.0f64, f64::max);
    let mut chart = chart_on(&plot, (title, 20), (40, 50), (0.0..last, 0.0..1.0)).map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epochs of pretraining")
        .y_desc("accuracy / recall@1")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(err)?;
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
            .map_err(err)?;
        let y = 40 + 22 * i as i32;
        let key = LegendKey::Line(colour.stroke_width(3));
        legend_entry(&legend, y, key, name).map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
