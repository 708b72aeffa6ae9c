//! Exact nearest neighbours: every query row against every gallery row, by matrix products over
//! blocks of queries run in parallel. The k-NN evaluation ([`crate::Knn`]), the embedding maps'
//! neighbour graphs ([`crate::Tsne`]) and trustworthiness ([`crate::trustworthiness`]) use it.
//!
//! Exact (no index, no approximation), so a result can be checked against any brute-force
//! implementation. Each query row is computed whole by one thread with the same operations
//! whatever the number of threads, so results do not depend on the thread count. Order: nearer
//! first; among equally near gallery rows, the lower index first.

use crate::error::{Result, SimilarityError};
use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Query rows per block (one block per parallel task).
const BLOCK: usize = 256;

/// Below this relative size a distance is rounding, and counts as 0 (equal rows).
const EXACT: f64 = 1e-12;

/// How nearness is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity of the rows (the distance is `1 - cos`). A zero row has similarity 0
    /// to every row.
    #[default]
    Cosine,
    /// Euclidean distance, from `|x|^2 + |y|^2 - 2 x.y` in `f64` (0 when that is below
    /// `1e-12 (|x|^2 + |y|^2)`, rounding between equal rows).
    Euclidean,
}

impl Metric {
    /// The metric's name as the configuration spells it (`cosine`, `euclidean`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Euclidean => "euclidean",
        }
    }

    /// The metric named `name` (`cosine`, `euclidean`).
    pub fn parse(name: &str) -> Option<Metric> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cosine" | "cos" => Some(Metric::Cosine),
            "euclidean" | "l2" => Some(Metric::Euclidean),
            _ => None,
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The `k` nearest gallery rows of each query row.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbours {
    /// Gallery indices, `n_queries x k`, nearest first.
    pub indices: Array2<usize>,
    /// Their distances (`1 - cos` or Euclidean), `n_queries x k`, non-decreasing along a row.
    pub distances: Array2<f64>,
    /// Their scores, larger for nearer rows: the cosine similarity, or minus the squared
    /// Euclidean distance.
    pub scores: Array2<f64>,
}

/// A gallery prepared for one metric: unit rows for the cosine, squared norms for Euclidean.
pub(crate) struct Gallery {
    rows: Array2<f64>,
    sq_norms: Array1<f64>,
    metric: Metric,
}

impl Gallery {
    pub(crate) fn new(x: ArrayView2<f64>, metric: Metric) -> Gallery {
        let sq_norms: Array1<f64> = x.rows().into_iter().map(|r| r.dot(&r)).collect();
        let rows = match metric {
            Metric::Cosine => unit_rows(x),
            Metric::Euclidean => x.to_owned(),
        };
        Gallery {
            rows,
            sq_norms,
            metric,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.nrows()
    }

    /// Scores of every query row of `q` (prepared the same way) against every gallery row.
    pub(crate) fn scores(&self, q: &Gallery) -> Array2<f64> {
        let dots = q.rows.dot(&self.rows.t());
        match self.metric {
            Metric::Cosine => dots,
            Metric::Euclidean => {
                let mut d = dots;
                for (mut row, &qn) in d.rows_mut().into_iter().zip(&q.sq_norms) {
                    for (v, &gn) in row.iter_mut().zip(&self.sq_norms) {
                        // Rounding leaves equal rows a hair apart: below a relative 1e-12
                        // of the squared norms, the distance is 0.
                        let d2 = qn + gn - 2.0 * *v;
                        *v = if d2 <= EXACT * (qn + gn) { 0.0 } else { -d2 };
                    }
                }
                d
            }
        }
    }

    /// The distance a score stands for.
    pub(crate) fn distance(&self, score: f64) -> f64 {
        match self.metric {
            Metric::Cosine if 1.0 - score <= EXACT => 0.0,
            Metric::Cosine => 1.0 - score,
            Metric::Euclidean => (-score).max(0.0).sqrt(),
        }
    }

    /// Rows `range` of this gallery, as queries.
    pub(crate) fn slice(&self, start: usize, end: usize) -> Gallery {
        Gallery {
            rows: self.rows.slice(s![start..end, ..]).to_owned(),
            sq_norms: self.sq_norms.slice(s![start..end]).to_owned(),
            metric: self.metric,
        }
    }
}

/// Rows scaled to unit length (a zero row stays zero).
fn unit_rows(x: ArrayView2<f64>) -> Array2<f64> {
    let mut u = x.to_owned();
    for mut row in u.axis_iter_mut(Axis(0)) {
        let n = row.dot(&row).sqrt();
        if n > 0.0 {
            row.mapv_inplace(|v| v / n);
        }
    }
    u
}

/// Nearer first (larger score), then the lower index.
pub(crate) fn nearer(scores: &[f64]) -> impl Fn(&usize, &usize) -> Ordering + '_ {
    |&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b))
}

/// Checks a feature matrix: at least one column, every entry finite.
pub(crate) fn check_finite(matrix: &'static str, x: ArrayView2<f64>) -> Result<()> {
    if x.ncols() == 0 {
        return Err(SimilarityError::NoFeatures { matrix });
    }
    if let Some(((row, col), &value)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(SimilarityError::NonFinite {
            matrix,
            row,
            col,
            value,
        });
    }
    Ok(())
}

/// An error unless the two named matrices have as many columns (live in one space).
pub(crate) fn same_width(
    (a, x): (&'static str, ArrayView2<f64>),
    (b, y): (&'static str, ArrayView2<f64>),
) -> Result<()> {
    match x.ncols() == y.ncols() {
        true => Ok(()),
        false => Err(SimilarityError::WidthMismatch {
            a,
            d_a: x.ncols(),
            b,
            d_b: y.ncols(),
        }),
    }
}

/// Runs `f` on each block of query rows `[start, end)` in parallel and concatenates the
/// per-row results in query order.
pub(crate) fn per_block<R: Send>(
    n: usize,
    f: impl Fn(usize, usize) -> Vec<R> + Sync + Send,
) -> Vec<R> {
    let starts: Vec<usize> = (0..n).step_by(BLOCK).collect();
    starts
        .into_par_iter()
        .map(|start| f(start, (start + BLOCK).min(n)))
        .collect::<Vec<Vec<R>>>()
        .into_iter()
        .flatten()
        .collect()
}

/// The `k` nearest rows of `gallery` to each row of `queries` under `metric`, exactly.
///
/// With `exclude_self` the query set is the gallery itself and row `i` is not its own neighbour
/// (then `k` must be below the number of rows).
///
/// ```
/// use mmssl_similarity::{Metric, nearest_neighbours};
/// use ndarray::array;
/// let g = array![[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]];
/// let q = array![[0.9, 0.0]];
/// let nn = nearest_neighbours(q.view(), g.view(), 2, Metric::Euclidean, false).unwrap();
/// assert_eq!(nn.indices.row(0).to_vec(), vec![1, 0]);
/// assert!((nn.distances[[0, 0]] - 0.1).abs() < 1e-12);
/// ```
pub fn nearest_neighbours(
    queries: ArrayView2<f64>,
    gallery: ArrayView2<f64>,
    k: usize,
    metric: Metric,
    exclude_self: bool,
) -> Result<Neighbours> {
    check_finite("the queries", queries)?;
    check_finite("the gallery", gallery)?;
    same_width(("the queries", queries), ("the gallery", gallery))?;
    if exclude_self && queries.nrows() != gallery.nrows() {
        return Err(SimilarityError::SampleMismatch {
            n_a: queries.nrows(),
            n_b: gallery.nrows(),
        });
    }
    let available = gallery.nrows() - usize::from(exclude_self && gallery.nrows() > 0);
    if k == 0 {
        return Err(SimilarityError::InvalidParameter {
            name: "k",
            value: 0.0,
            reason: "the number of neighbours must be at least 1",
        });
    }
    if k > available {
        return Err(SimilarityError::NeighboursTooMany {
            what: "the gallery (other than the query itself)",
            k,
            n: available,
            hint: "",
        });
    }
    let g = Gallery::new(gallery, metric);
    let q = Gallery::new(queries, metric);
    let rows = per_block(queries.nrows(), |start, end| {
        let scores = g.scores(&q.slice(start, end));
        let mut order: Vec<usize> = Vec::with_capacity(g.len());
        (start..end)
            .zip(scores.rows())
            .map(|(i, row)| {
                let row = row.as_slice().expect("a fresh product is standard layout");
                order.clear();
                order.extend((0..g.len()).filter(|&j| !(exclude_self && j == i)));
                let cmp = nearer(row);
                order.select_nth_unstable_by(k - 1, &cmp);
                order[..k].sort_unstable_by(&cmp);
                order[..k]
                    .iter()
                    .map(|&j| (j, g.distance(row[j]), row[j]))
                    .collect::<Vec<_>>()
            })
            .collect()
    });
    let n = queries.nrows();
    let mut indices = Array2::zeros((n, k));
    let mut distances = Array2::zeros((n, k));
    let mut scores = Array2::zeros((n, k));
    for (i, row) in rows.iter().enumerate() {
        for (c, &(j, d, sc)) in row.iter().enumerate() {
            indices[[i, c]] = j;
            distances[[i, c]] = d;
            scores[[i, c]] = sc;
        }
    }
    Ok(Neighbours {
        indices,
        distances,
        scores,
    })
}
