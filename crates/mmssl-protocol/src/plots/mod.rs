//! Figures of an experiment, as SVG and PNG (plotters): linear-evaluation accuracy per method
//! and modality (like Figures 4-6 of Fedorov et al. 2021) and the similarity of the modalities
//! per method (like their Figure 7). Bars are means over folds and seeds, whiskers one
//! standard deviation. And the embedding maps of a run ([`embedding_map`]).
//!
//! Text is drawn with the DejaVu Sans font shipped in `assets/` (Bitstream Vera licence, see
//! `assets/DejaVuSans-LICENSE.txt`), so no system font library is needed.

use crate::error::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// Draws one figure through the SVG and the PNG backend into `stem.svg` and `stem.png`:
/// `svg_and_png!(stem, size, |area| draw(area, ...))`, where `draw` returns
/// `Result<(), String>` (its message becomes the error of the file being written).
macro_rules! svg_and_png {
    ($stem:expr, $size:expr, |$area:ident| $draw:expr) => {{
        $crate::plots::register_font();
        let written = |path: std::path::PathBuf, drawn: std::result::Result<(), String>| {
            drawn.map_err(|reason| $crate::error::ProtocolError::Write {
                path,
                source: reason.into(),
            })
        };
        let path = $stem.with_extension("svg");
        let $area = SVGBackend::new(&path, $size).into_drawing_area();
        written(path.clone(), $draw)?;
        let path = $stem.with_extension("png");
        let $area = BitMapBackend::new(&path, $size).into_drawing_area();
        written(path.clone(), $draw)
    }};
}

mod curves;
pub use curves::{MapPoint, curves_chart, embedding_map};

/// The coordinates of every chart: `f64` on both axes.
type Plane =
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>;

/// A chart on `plot` titled `title` (in `caption` points), with `label_areas` pixels for the
/// x and y labels, spanning `x` by `y`.
fn chart_on<'a, DB: DrawingBackend>(
    plot: &'a DrawingArea<DB, Shift>,
    (title, caption): (&str, u32),
    label_areas: (u32, u32),
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
) -> std::result::Result<ChartContext<'a, DB, Plane>, DrawingAreaErrorKind<DB::ErrorType>> {
    ChartBuilder::on(plot)
        .caption(title, ("sans-serif", caption))
        .margin(12)
        .x_label_area_size(label_areas.0)
        .y_label_area_size(label_areas.1)
        .build_cartesian_2d(x, y)
}

/// What stands left of a legend entry's label.
enum LegendKey {
    /// A filled square of the colour.
    Swatch(RGBColor),
    /// A short line in the style.
    Line(ShapeStyle),
    /// A modality's marker in the embedding maps: circle, triangle, cross (0, 1, later).
    Marker(usize),
}

/// Draws a legend entry centred at height `y` of `legend`: its key at the left, then `label`.
fn legend_entry<DB: DrawingBackend>(
    legend: &DrawingArea<DB, Shift>,
    y: i32,
    key: LegendKey,
    label: &str,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    match key {
        LegendKey::Swatch(c) => {
            legend.draw(&Rectangle::new([(8, y - 6), (22, y + 6)], c.filled()))?
        }
        LegendKey::Line(style) => legend.draw(&PathElement::new(vec![(6, y), (24, y)], style))?,
        LegendKey::Marker(0) => legend.draw(&Circle::new((15, y), 4, BLACK.filled()))?,
        LegendKey::Marker(1) => legend.draw(&TriangleMarker::new((15, y), 5, BLACK.filled()))?,
        LegendKey::Marker(_) => legend.draw(&Cross::new((15, y), 4, BLACK.stroke_width(2)))?,
    }
    let text = ("sans-serif", 14).into_font().color(&BLACK);
    legend.draw(&Text::new(label, (30, y - 7), text))
}

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        // The font is a fixed, valid file; a failure here would be a build defect.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// What a chart draws for one method on one dataset (an aggregation's summary: see
/// [`crate::aggregate::summarise`]): means and standard deviations over folds and seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Dataset.
    pub dataset: String,
    /// Method.
    pub method: String,
    /// Per modality: (mean, std) of the test accuracy.
    pub accuracy: Vec<(f64, f64)>,
    /// Per modality: (mean, std) of the random-init accuracy, if known.
    pub random_init: Vec<Option<(f64, f64)>>,
    /// (name, mean, std) of CCA, SVCCA, PWCCA, CKA.
    pub similarity: Vec<(&'static str, f64, f64)>,
    /// Per modality: (mean, std) of the k-NN test accuracy, if evaluated.
    pub knn: Vec<Option<(f64, f64)>>,
    /// Per modality: (mean, std) of the k-NN accuracy at random initialisation, if known.
    pub knn_random_init: Vec<Option<(f64, f64)>>,
    /// Per query modality: (mean, std) of retrieval recall@1 in `z` (to the next modality).
    pub retrieval_r1: Vec<Option<(f64, f64)>>,
    /// The same at random initialisation.
    pub retrieval_r1_random_init: Vec<Option<(f64, f64)>>,
    /// Per query modality: (mean, std) of recall@1 in the shared canonical subspace.
    pub canonical_r1: Vec<Option<(f64, f64)>>,
    /// Runs aggregated.
    pub runs: usize,
}

/// One series of a grouped bar chart: its name and a (mean, std) per group.
type Series = (String, Vec<Option<(f64, f64)>>);

/// The colours of series and classes (matplotlib's `tab10`); more cycle.
pub(crate) const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Width of the legend column right of the plot.
pub(crate) const LEGEND_WIDTH: u32 = 200;

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[Series],
    chance: Option<f64>,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let n = groups.len().max(1) as f64;
    // The legend in its own column, so the axis ends at 1 (every index is at most 1).
    let (width, _) = root.dim_in_pixel();
    let (plot, legend) = root.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    let mut chart = chart_on(&plot, (title, 22), (70, 60), (0.0..n, 0.0..1.0)).map_err(err)?;
    let labels = groups.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len().max(1) * 2 + 1)
        .x_label_formatter(&move |x| {
            let i = x.floor() as usize;
            let centre = (x - x.floor() - 0.5).abs() < 1e-6;
            if centre {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let k = series.len().max(1) as f64;
    let width = 0.8 / k;
    for (s, (_, values)) in series.iter().enumerate() {
        let colour = COLOURS[s % COLOURS.len()];
        let bars = values.iter().enumerate().filter_map(|(g, v)| {
            v.map(|(mean, _)| {
                let x0 = g as f64 + 0.1 + s as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, mean)], colour.filled())
            })
        });
        chart.draw_series(bars).map_err(err)?;
        // Error bars: one standard deviation over folds and seeds, with caps (none for a
        // single run, whose deviation is unknown).
        let whiskers = values.iter().enumerate().filter_map(|(g, v)| {
            v.filter(|(_, sd)| *sd > 0.0).map(|(mean, sd)| {
                let xc = g as f64 + 0.1 + s as f64 * width + width * 0.45;
                let cap = width * 0.2;
                let (lo, hi) = ((mean - sd).max(0.0), (mean + sd).min(1.0));
                PathElement::new(
                    vec![
                        (xc - cap, lo),
                        (xc + cap, lo),
                        (xc, lo),
                        (xc, hi),
                        (xc - cap, hi),
                        (xc + cap, hi),
                    ],
                    BLACK.stroke_width(2),
                )
            })
        });
        chart.draw_series(whiskers).map_err(err)?;
    }
    if let Some(level) = chance {
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, level), (n, level)],
                8,
                5,
                BLACK.stroke_width(2),
            ))
            .map_err(err)?;
    }
    // The legend: a swatch and a name per series, and the chance level.
    let mut y = 50;
    for (s, (name, _)) in series.iter().enumerate() {
        let key = LegendKey::Swatch(COLOURS[s % COLOURS.len()]);
        legend_entry(&legend, y, key, name).map_err(err)?;
        y += 24;
    }
    if let Some(level) = chance {
        let key = LegendKey::Line(BLACK.stroke_width(2));
        legend_entry(&legend, y, key, &format!("chance ({level:.2})")).map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn both(
    stem: &Path,
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[Series],
    chance: Option<f64>,
) -> Result<()> {
    let width = (groups.len() as u32 * 110 + 200).clamp(640, 2400) + LEGEND_WIDTH;
    svg_and_png!(stem, (width, 480), |area| draw(
        area, title, y_label, groups, series, chance
    ))
}

/// Test accuracy per method (groups) and modality (bars), with random-init accuracy of
/// modality 0 as a reference series when known. Writes `stem.svg` and `stem.png`.
pub fn accuracy_chart(summaries: &[&Summary], stem: &Path) -> Result<()> {
    let groups: Vec<String> = summaries.iter().map(|s| s.method.clone()).collect();
    let modalities = summaries
        .iter()
        .map(|s| s.accuracy.len())
        .max()
        .unwrap_or(0);
    let mut series: Vec<Series> = (0..modalities)
        .map(|m| {
            (
                format!("modality {m}"),
                summaries
                    .iter()
                    .map(|s| s.accuracy.get(m).copied())
                    .collect(),
            )
        })
        .collect();
    for m in 0..modalities {
        let values: Vec<Option<(f64, f64)>> = summaries
            .iter()
            .map(|s| s.random_init.get(m).copied().flatten())
            .collect();
        if values.iter().any(Option::is_some) {
            series.push((format!("modality {m}, random init"), values));
        }
    }
    let dataset = summaries.first().map_or("", |s| s.dataset.as_str());
    // Chance: one over the classes of the dataset's task.
    let chance = dataset
        .parse::<crate::DatasetKind>()
        .ok()
        .map(|d| 1.0 / d.classes() as f64);
    both(
        stem,
        &format!("Linear evaluation on {dataset}"),
        "test accuracy",
        &groups,
        &series,
        chance,
    )
}

/// How a per-modality metric (mean and standard deviation per modality) is read from a
/// [`Summary`].
pub(crate) type Pick = fn(&Summary) -> &Vec<Option<(f64, f64)>>;

/// The metrics beyond the linear probe: k-NN accuracy and cross-modal retrieval recall@1 (in
/// `z` and in the canonical subspace), with their random-init references; each with its name
/// in the Markdown table and in the chart's legend (`{m}`: the modality).
pub(crate) const NEIGHBOUR_METRICS: [(&str, &str, Pick); 5] = [
    ("k-NN", "k-NN m{m}", |s| &s.knn),
    ("k-NN random init", "k-NN m{m}, random init", |s| {
        &s.knn_random_init
    }),
    ("R@1 z", "R@1 m{m} (z)", |s| &s.retrieval_r1),
    ("R@1 z random init", "R@1 m{m} (z), random init", |s| {
        &s.retrieval_r1_random_init
    }),
    ("R@1 canonical", "R@1 m{m} (canonical)", |s| &s.canonical_r1),
];

/// k-NN accuracy per method and modality, and cross-modal retrieval recall@1 (in `z` and in
/// the canonical subspace), each beside its random-initialisation reference when known. Writes
/// `stem.svg` and `stem.png`; nothing when no summary has these numbers.
pub fn neighbours_chart(summaries: &[&Summary], stem: &Path) -> Result<()> {
    let groups: Vec<String> = summaries.iter().map(|s| s.method.clone()).collect();
    let modalities = summaries.iter().map(|s| s.knn.len()).max().unwrap_or(0);
    let mut series: Vec<Series> = Vec::new();
    for (_, name, pick) in NEIGHBOUR_METRICS {
        for m in 0..modalities {
            let values: Vec<Option<(f64, f64)>> = summaries
                .iter()
                .map(|s| pick(s).get(m).copied().flatten())
                .collect();
            if values.iter().any(Option::is_some) {
                series.push((name.replace("{m}", &m.to_string()), values));
            }
        }
    }
    if series.is_empty() {
        return Ok(());
    }
    let dataset = summaries.first().map_or("", |s| s.dataset.as_str());
    both(
        stem,
        &format!("k-NN and cross-modal retrieval on {dataset}"),
        "test accuracy / recall@1",
        &groups,
        &series,
        None,
    )
}

/// CCA, SVCCA, PWCCA and CKA between the modalities per method. Writes `stem.svg` and
/// `stem.png`.
pub fn similarity_chart(summaries: &[&Summary], stem: &Path) -> Result<()> {
    let groups: Vec<String> = summaries.iter().map(|s| s.method.clone()).collect();
    let series: Vec<Series> = ["CCA", "SVCCA", "PWCCA", "CKA"]
        .iter()
        .map(|name| {
            (
                name.to_string(),
                summaries
                    .iter()
                    .map(|s| {
                        s.similarity
                            .iter()
                            .find(|x| x.0 == *name)
                            .map(|&(_, m, sd)| (m, sd))
                    })
                    .collect(),
            )
        })
        .collect();
    let dataset = summaries.first().map_or("", |s| s.dataset.as_str());
    both(
        stem,
        &format!("Similarity of the modalities on {dataset}"),
        "similarity",
        &groups,
        &series,
        None,
    )
}
