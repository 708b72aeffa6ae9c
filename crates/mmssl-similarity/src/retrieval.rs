//! Cross-modal retrieval: the direct test of a shared space. Row `i` of the queries (modality
//! `a` of sample `i`) ranks every row of the gallery (modality `b` of every sample) by cosine
//! similarity; its match is gallery row `i`. Reported: recall@k (the share of queries whose
//! match ranks within the first `k`), the median and mean rank of the match, and the mean
//! reciprocal rank, each beside its value under chance (a uniformly random ranking).
//!
//! A match tied with other gallery rows takes the mean of the ranks they share: tied with one
//! other row at the top, it ranks 1.5 (so it counts for recall@2, not recall@1). Ranks start
//! at one. The shared canonical subspace, where modalities whose `z` live in unrelated coordinates
//! can still be compared, is [`CanonicalProjection`].

use crate::error::{Result, SimilarityError};
use crate::linalg::LinalgBackend;
use crate::metrics::at_chance;
use crate::neighbours::{Gallery, Metric, check_finite, per_block, same_width};
use crate::prepare::centred_pair;
use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use serde::{Deserialize, Serialize};

/// Settings of cross-modal retrieval (parameters -> [`Retrieval::evaluate`] ->
/// [`RetrievalResult`]).
///
/// ```
/// use mmssl_similarity::Retrieval;
/// use ndarray::array;
/// let a = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
/// let r = Retrieval::new().evaluate(a.view(), a.view()).unwrap();
/// assert_eq!(r.recall_at[0].recall, 1.0); // every sample finds itself first
/// assert_eq!(r.mean_reciprocal_rank, 1.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieval {
    ks: Vec<usize>,
}

impl Default for Retrieval {
    fn default() -> Self {
        Retrieval::new()
    }
}

/// Recall at one cut-off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecallAt {
    /// The cut-off.
    pub k: usize,
    /// Share of queries whose match ranks at most `k`.
    pub recall: f64,
    /// Its value under chance, `min(k, n) / n`.
    pub chance: f64,
}

/// The outcome of [`Retrieval::evaluate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalResult {
    /// Queries (= gallery rows).
    pub n: usize,
    /// Recall at each cut-off.
    pub recall_at: Vec<RecallAt>,
    /// Median rank of the match.
    pub median_rank: f64,
    /// Mean rank of the match.
    pub mean_rank: f64,
    /// Mean of `1 / rank`.
    pub mean_reciprocal_rank: f64,
    /// Median and mean rank under chance, `(n + 1) / 2`.
    pub chance_rank: f64,
    /// Mean reciprocal rank under chance, `H_n / n`.
    pub chance_mean_reciprocal_rank: f64,
    /// What the caller should know (retrieval at chance), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl RetrievalResult {
    /// Recall at cut-off `k`, if it was computed.
    pub fn recall(&self, k: usize) -> Option<f64> {
        self.recall_at.iter().find(|r| r.k == k).map(|r| r.recall)
    }
}

impl Retrieval {
    /// Recall at 1, 5 and 10.
    pub fn new() -> Retrieval {
        Retrieval { ks: vec![1, 5, 10] }
    }

    /// The recall cut-offs (each at least 1).
    pub fn ks(mut self, ks: impl Into<Vec<usize>>) -> Retrieval {
        self.ks = ks.into();
        self
    }

    /// The rank of each query's match among the gallery rows (1 = first; ties share their
    /// mean rank).
    pub fn ranks(&self, queries: ArrayView2<f64>, gallery: ArrayView2<f64>) -> Result<Vec<f64>> {
        check_finite("the queries", queries)?;
        check_finite("the gallery", gallery)?;
        if queries.nrows() != gallery.nrows() {
            return Err(SimilarityError::SampleMismatch {
                n_a: queries.nrows(),
                n_b: gallery.nrows(),
            });
        }
        same_width(("the queries", queries), ("the gallery", gallery))?;
        if queries.nrows() < 2 {
            return Err(SimilarityError::TooFewSamples {
                metric: "cross-modal retrieval",
                needed: 2,
                n: queries.nrows(),
            });
        }
        let g = Gallery::new(gallery, Metric::Cosine);
        let q = Gallery::new(queries, Metric::Cosine);
        Ok(per_block(queries.nrows(), |start, end| {
            let scores = g.scores(&q.slice(start, end));
            (start..end)
                .zip(scores.rows())
                .map(|(i, row)| {
                    let own = row[i];
                    let (mut above, mut tied) = (0usize, 0usize);
                    for (j, &v) in row.iter().enumerate() {
                        if j != i {
                            above += usize::from(v > own);
                            tied += usize::from(v == own);
                        }
                    }
                    1.0 + above as f64 + tied as f64 / 2.0
                })
                .collect()
        }))
    }

    /// Retrieval between every ordered pair of `modalities` (the same items, row by row, in
    /// one space): `(query, gallery, result)` for `0 -> 1`, `1 -> 0`, ... Fewer than two
    /// modalities is [`SimilarityError::TooFewModalities`].
    ///
    /// ```
    /// use mmssl_similarity::{Retrieval, SimilarityError};
    /// use ndarray::array;
    /// let a = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
    /// let b = array![[0.9, 0.1], [0.1, 0.9], [1.0, 0.8]];
    /// let all = Retrieval::new().all_pairs(&[a.view(), b.view()]).unwrap();
    /// assert_eq!((all[0].0, all[0].1, all[1].0, all[1].1), (0, 1, 1, 0));
    /// let one = Retrieval::new().all_pairs(&[a.view()]).unwrap_err();
    /// assert!(matches!(one, SimilarityError::TooFewModalities { given: 1 }));
    /// ```
    pub fn all_pairs(
        &self,
        modalities: &[ArrayView2<f64>],
    ) -> Result<Vec<(usize, usize, RetrievalResult)>> {
        if modalities.len() < 2 {
            return Err(SimilarityError::TooFewModalities {
                given: modalities.len(),
            });
        }
        let mut out = Vec::new();
        for (a, qa) in modalities.iter().enumerate() {
            for (b, gb) in modalities.iter().enumerate().filter(|(b, _)| *b != a) {
                out.push((a, b, self.evaluate(qa.view(), gb.view())?));
            }
        }
        Ok(out)
    }

    /// Retrieves each query's match (row `i` of `gallery` for row `i` of `queries`) and
    /// summarises the ranks.
    pub fn evaluate(
        &self,
        queries: ArrayView2<f64>,
        gallery: ArrayView2<f64>,
    ) -> Result<RetrievalResult> {
        if let Some(&k) = self.ks.iter().find(|&&k| k == 0) {
            return Err(SimilarityError::InvalidParameter {
                name: "recall cut-off",
                value: k as f64,
                reason: "recall@k needs k >= 1",
            });
        }
        let ranks = self.ranks(queries, gallery)?;
        Ok(summarise(&ranks, &self.ks))
    }
}

/// Recall, rank statistics and their chance levels from the ranks of the matches.
pub(crate) fn summarise(ranks: &[f64], ks: &[usize]) -> RetrievalResult {
    let n = ranks.len();
    let nf = n as f64;
    let recall_at: Vec<RecallAt> = ks
        .iter()
        .map(|&k| RecallAt {
            k,
            recall: ranks.iter().filter(|&&r| r <= k as f64).count() as f64 / nf,
            chance: k.min(n) as f64 / nf,
        })
        .collect();
    let mut sorted = ranks.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median_rank = match n % 2 {
        1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    let harmonic: f64 = (1..=n).map(|i| 1.0 / i as f64).sum();
    let mut warnings = Vec::new();
    if let Some(r) = recall_at.first()
        && at_chance(r.recall, r.chance, n)
    {
        warnings.push(format!(
            "recall@{} {:.4} is at chance ({:.4} for a random ranking of {n} items)",
            r.k, r.recall, r.chance
        ));
    }
    RetrievalResult {
        n,
        recall_at,
        median_rank,
        mean_rank: ranks.iter().sum::<f64>() / nf,
        mean_reciprocal_rank: ranks.iter().map(|r| 1.0 / r).sum::<f64>() / nf,
        chance_rank: (nf + 1.0) / 2.0,
        chance_mean_reciprocal_rank: harmonic / nf,
        warnings,
    }
}

/// The shared canonical subspace of two representations, fitted on paired training rows
/// (Hotelling 1936): the `dims` pairs of directions `a W_a`, `b W_b` of largest correlation,
/// each with unit norm over the training rows. Projecting held-out rows of both modalities
/// puts them in one space, whatever coordinates each encoder chose.
///
/// Computed by whitening each centred matrix through the eigendecomposition of its Gram matrix
/// `X^T X` (directions of numerical rank only, the threshold of [`crate::Cca`]) and the SVD of
/// the whitened cross-product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalProjection {
    /// Training mean of `a`.
    pub mean_a: Array1<f64>,
    /// `d_a x dims` weights of `a`.
    pub weights_a: Array2<f64>,
    /// Training mean of `b`.
    pub mean_b: Array1<f64>,
    /// `d_b x dims` weights of `b`.
    pub weights_b: Array2<f64>,
    /// The canonical correlations of the kept pairs on the training rows.
    pub correlations: Array1<f64>,
}

impl CanonicalProjection {
    /// Fits the projection on the paired rows of `a` and `b` and keeps the first `dims` pairs
    /// (fewer when the ranks are lower).
    pub fn fit(
        a: ArrayView2<f64>,
        b: ArrayView2<f64>,
        dims: usize,
        backend: LinalgBackend,
    ) -> Result<CanonicalProjection> {
        if dims == 0 {
            return Err(SimilarityError::InvalidParameter {
                name: "dims",
                value: 0.0,
                reason: "the canonical subspace needs at least one dimension",
            });
        }
        let (ac, bc) = centred_pair("canonical projection", 2, a, b)?;
        let n = ac.nrows();
        for (matrix, m) in [("A", &ac), ("B", &bc)] {
            if n <= m.ncols() {
                return Err(SimilarityError::Underdetermined {
                    metric: "canonical projection",
                    matrix,
                    n,
                    d: m.ncols(),
                });
            }
        }
        let wa = whitening(&ac, backend)?;
        let wb = whitening(&bc, backend)?;
        let cross = wa.t().dot(&ac.t().dot(&bc)).dot(&wb);
        let svd = backend.svd(cross.view())?;
        let keep = dims.min(svd.s.len());
        Ok(CanonicalProjection {
            mean_a: a.mean_axis(Axis(0)).expect("n >= 2"),
            weights_a: wa.dot(&svd.u.slice(s![.., ..keep])),
            mean_b: b.mean_axis(Axis(0)).expect("n >= 2"),
            weights_b: wb.dot(&svd.vt.slice(s![..keep, ..]).t()),
            correlations: svd.s.slice(s![..keep]).mapv(|x| x.clamp(0.0, 1.0)),
        })
    }

    /// Rows of modality `a` in the canonical subspace.
    pub fn project_a(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        project(x, &self.mean_a, &self.weights_a, "A")
    }

    /// Rows of modality `b` in the canonical subspace.
    pub fn project_b(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        project(x, &self.mean_b, &self.weights_b, "B")
    }
}

fn project(
    x: ArrayView2<f64>,
    mean: &Array1<f64>,
    w: &Array2<f64>,
    matrix: &'static str,
) -> Result<Array2<f64>> {
    check_finite(matrix, x)?;
    same_width(
        ("the rows to project", x),
        ("the fitted representation", w.view().reversed_axes()),
    )?;
    Ok((&x - mean).dot(w))
}

/// `W` with `X W` orthonormal over the numerical column space of the centred `x`.
fn whitening(x: &Array2<f64>, backend: LinalgBackend) -> Result<Array2<f64>> {
    let (n, d) = x.dim();
    let gram = x.t().dot(x);
    let eig = backend.eigh(gram.view())?;
    let top = eig
        .values
        .iter()
        .copied()
        .fold(0.0, f64::max)
        .max(0.0)
        .sqrt();
    let tol = n.max(d) as f64 * f64::EPSILON * top;
    let kept: Vec<usize> = (0..d)
        .rev()
        .filter(|&i| eig.values[i].max(0.0).sqrt() > tol)
        .collect();
    let mut w = Array2::zeros((d, kept.len()));
    for (c, &i) in kept.iter().enumerate() {
        let scale = 1.0 / eig.values[i].sqrt();
        w.column_mut(c)
            .assign(&eig.vectors.column(i).mapv(|v| v * scale));
    }
    Ok(w)
}
