//! Two-dimensional maps of representations and how faithful they are.
//!
//! [`Tsne`]: Barnes-Hut t-SNE (van der Maaten, "Accelerating t-SNE using Tree-Based
//! Algorithms", JMLR 2014) from the `bhtsne` crate, fed with this crate's exact neighbour graph
//! (`3 * perplexity` Euclidean neighbours, as the paper's) and started from the first two
//! principal components scaled to a standard deviation of `1e-4` (the start Kobak & Berens, "The
//! art of using t-SNE for single-cell transcriptomics", Nat. Commun. 2019, recommend), and run on
//! one thread: the same rows give the same map every time, on any machine with the same build.
//!
//! [`trustworthiness`]: Venna & Kaski, "Neighborhood preservation in nonlinear projection
//! methods: an experimental study" (ICANN 2001): `1 - 2 / (n k (2n - 3k - 1)) * sum_i sum_{j in
//! U_k(i)} (r(i, j) - k)`, where `U_k(i)` are the points among `i`'s `k` nearest in the map that
//! are not among its `k` nearest in the original space and `r(i, j)` is `j`'s rank among `i`'s
//! original neighbours. 1 when the map invents no neighbour; about 0.5 for a random map.

use crate::error::{Result, SimilarityError};
use crate::linalg::LinalgBackend;
use crate::neighbours::{Gallery, Metric, check_finite, nearer, nearest_neighbours, per_block};
use ndarray::{Array2, ArrayView2, Axis};

/// Settings of a t-SNE map (parameters -> [`Tsne::embed`] -> [`TsneMap`]).
///
/// ```
/// use mmssl_similarity::{Tsne, trustworthiness};
/// use ndarray::Array2;
/// // Two tight clusters far apart in 5 dimensions.
/// let x = Array2::from_shape_fn((40, 5), |(i, j)| {
///     (if i < 20 { 0.0 } else { 10.0 }) + ((i * 7 + j * 3) % 11) as f64 * 0.01
/// });
/// let map = Tsne::new().perplexity(5.0).epochs(500).embed(x.view()).unwrap();
/// assert_eq!(map.coords.dim(), (40, 2));
/// assert!(trustworthiness(x.view(), map.coords.view(), 5).unwrap() > 0.9);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tsne {
    perplexity: f64,
    epochs: usize,
    theta: f64,
}

impl Default for Tsne {
    fn default() -> Self {
        Tsne::new()
    }
}

/// A map made by [`Tsne::embed`].
#[derive(Debug, Clone, PartialEq)]
pub struct TsneMap {
    /// `n x 2` coordinates, one row per input row.
    pub coords: Array2<f64>,
    /// The perplexity used (lowered from the setting when the rows are too few).
    pub perplexity: f64,
    /// The Kullback-Leibler divergence the map ends at (Barnes-Hut estimate).
    pub kl_divergence: f64,
    /// What the caller should know (a lowered perplexity), in words.
    pub notes: Vec<String>,
}

impl Tsne {
    /// Perplexity 30, 1000 iterations, Barnes-Hut angle 0.5 (the usual settings).
    pub fn new() -> Tsne {
        Tsne {
            perplexity: 30.0,
            epochs: 1000,
            theta: 0.5,
        }
    }

    /// The perplexity (the effective number of neighbours, > 0).
    pub fn perplexity(mut self, perplexity: f64) -> Tsne {
        self.perplexity = perplexity;
        self
    }

    /// Gradient iterations (at least 251: the first 250 exaggerate the clusters).
    pub fn epochs(mut self, epochs: usize) -> Tsne {
        self.epochs = epochs;
        self
    }

    /// The Barnes-Hut angle (> 0; smaller is more exact and slower).
    pub fn theta(mut self, theta: f64) -> Tsne {
        self.theta = theta;
        self
    }

    /// Maps the rows of `x` to two dimensions. Needs at least 5 rows, finite values, and rows
    /// that are not all equal; with fewer than `3 * perplexity + 1` rows the perplexity is
    /// lowered to `(n - 1) / 3` (said in [`TsneMap::notes`]).
    pub fn embed(&self, x: ArrayView2<f64>) -> Result<TsneMap> {
        check_finite("the rows to map", x)?;
        let n = x.nrows();
        if n < 5 {
            return Err(SimilarityError::TooFewSamples {
                metric: "t-SNE",
                needed: 5,
                n,
            });
        }
        if !(self.perplexity.is_finite() && self.perplexity > 0.0) {
            return Err(SimilarityError::InvalidParameter {
                name: "perplexity",
                value: self.perplexity,
                reason: "the perplexity must be a positive number",
            });
        }
        if !(self.theta.is_finite() && self.theta > 0.0) {
            return Err(SimilarityError::InvalidParameter {
                name: "theta",
                value: self.theta,
                reason: "the Barnes-Hut angle must be positive",
            });
        }
        if self.epochs <= 250 {
            return Err(SimilarityError::InvalidParameter {
                name: "epochs",
                value: self.epochs as f64,
                reason: "t-SNE needs more than the 250 iterations of early exaggeration",
            });
        }
        let mut notes = Vec::new();
        let mut perplexity = self.perplexity;
        let most = ((n - 1) / 3) as f64;
        if 3.0 * perplexity > (n - 1) as f64 {
            notes.push(format!(
                "perplexity lowered from {} to {most} for {n} points (t-SNE needs n - 1 >= 3 \
                 * perplexity)",
                self.perplexity
            ));
            perplexity = most;
        }
        let k = ((3.0 * perplexity) as usize).clamp(1, n - 1);
        let nn = nearest_neighbours(x, x, k, Metric::Euclidean, true)?;
        let neighbours: Vec<Vec<bhtsne::Neighbor<f64>>> = nn
            .indices
            .rows()
            .into_iter()
            .zip(nn.distances.rows())
            .map(|(idx, dist)| {
                idx.iter()
                    .zip(dist)
                    .map(|(&index, &distance)| bhtsne::Neighbor { index, distance })
                    .collect()
            })
            .collect();
        let start = pca_start(x)?;
        let rows: Vec<usize> = (0..n).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .map_err(|e| SimilarityError::Linalg {
                operation: "t-SNE (thread pool)",
                reason: e.to_string(),
            })?;
        let (y, kl) = pool.install(|| {
            let mut tsne = bhtsne::tSNE::<f64, usize, 2>::new(&rows);
            tsne.perplexity(perplexity)
                .epochs(self.epochs)
                .initial_embedding(start.iter().copied().collect::<Vec<f64>>())
                .barnes_hut_with_neighbors(self.theta, &neighbours);
            (tsne.embedding(), tsne.kl_divergence().unwrap_or(f64::NAN))
        });
        let coords = Array2::from_shape_vec((n, 2), y).map_err(|e| SimilarityError::Linalg {
            operation: "t-SNE (result shape)",
            reason: e.to_string(),
        })?;
        if let Some(((row, col), &value)) = coords.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(SimilarityError::NonFinite {
                matrix: "the t-SNE map (the optimisation diverged)",
                row,
                col,
                value,
            });
        }
        Ok(TsneMap {
            coords,
            perplexity,
            kl_divergence: kl,
            notes,
        })
    }
}

/// The first two principal components of `x`, scaled so the first has standard deviation
/// `1e-4`; each component's sign makes its largest entry positive. A missing second component
/// (rank 1) is a fixed small ramp.
fn pca_start(x: ArrayView2<f64>) -> Result<Array2<f64>> {
    let n = x.nrows();
    let mean = x.mean_axis(Axis(0)).expect("n >= 5");
    let c = &x - &mean;
    let svd = LinalgBackend::default().svd(c.view())?;
    if svd.s.is_empty() || svd.s[0] == 0.0 {
        return Err(SimilarityError::ZeroVariance {
            matrix: "the rows to map",
        });
    }
    let mut start = Array2::zeros((n, 2));
    for comp in 0..2 {
        if comp < svd.s.len() && svd.s[comp] > svd.s[0] * 1e-12 {
            let col = svd.u.column(comp).mapv(|v| v * svd.s[comp]);
            let big = col
                .iter()
                .copied()
                .fold(0.0f64, |m, v| match v.abs() > m.abs() {
                    true => v,
                    false => m,
                });
            let sign = if big < 0.0 { -1.0 } else { 1.0 };
            start.column_mut(comp).assign(&col.mapv(|v| v * sign));
        } else {
            for i in 0..n {
                start[[i, comp]] = ((i as f64 * 0.618_033_988_75) % 1.0 - 0.5) * 1e-4;
            }
        }
    }
    let sd = start.column(0).std(0.0);
    if sd > 0.0 {
        start.mapv_inplace(|v| v / sd * 1e-4);
    }
    Ok(start)
}

/// Trustworthiness of the map `low` of the rows `high` with `k` neighbours (Euclidean in both
/// spaces; Venna & Kaski 2001, the definition scikit-learn uses). Needs `1 <= k < n / 2`.
pub fn trustworthiness(high: ArrayView2<f64>, low: ArrayView2<f64>, k: usize) -> Result<f64> {
    let n = high.nrows();
    if low.nrows() != n {
        return Err(SimilarityError::SampleMismatch {
            n_a: n,
            n_b: low.nrows(),
        });
    }
    if k == 0 || 2 * k >= n {
        return Err(SimilarityError::NeighboursTooMany {
            what: "the mapped set",
            k,
            n,
            hint: " (trustworthiness needs 1 <= k < n / 2)",
        });
    }
    let in_map = nearest_neighbours(low, low, k, Metric::Euclidean, true)?;
    check_finite("the original rows", high)?;
    let g = Gallery::new(high, Metric::Euclidean);
    let penalties: Vec<f64> = per_block(n, |start, end| {
        let scores = g.scores(&g.slice(start, end));
        let mut order: Vec<usize> = Vec::with_capacity(n);
        let mut rank = vec![0usize; n];
        (start..end)
            .zip(scores.rows())
            .map(|(i, row)| {
                let row = row.as_slice().expect("a fresh product is standard layout");
                order.clear();
                order.extend((0..n).filter(|&j| j != i));
                order.sort_unstable_by(nearer(row));
                for (r, &j) in order.iter().enumerate() {
                    rank[j] = r + 1;
                }
                in_map
                    .indices
                    .row(i)
                    .iter()
                    .map(|&j| rank[j].saturating_sub(k) as f64)
                    .sum::<f64>()
            })
            .collect()
    });
    let (nf, kf) = (n as f64, k as f64);
    Ok(1.0 - 2.0 / (nf * kf * (2.0 * nf - 3.0 * kf - 1.0)) * penalties.iter().sum::<f64>())
}
