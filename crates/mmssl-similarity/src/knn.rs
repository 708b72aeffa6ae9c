//! k-nearest-neighbour evaluation of frozen features: each test row takes the labels of its `k`
//! nearest training rows ([`crate::nearest_neighbours`], exact) and votes.
//!
//! Votes: plain majority; distance-weighted (weight `1 / d`, and, as in scikit-learn, only the
//! neighbours at distance 0 vote when there are any); or temperature-weighted, `exp(s / T)` with
//! `s` the cosine similarity (or minus the Euclidean distance), the weighted k-NN of Wu et al.,
//! "Unsupervised Feature Learning via Non-Parametric Instance Discrimination" (CVPR 2018), which
//! solo-learn uses with `T = 0.07`. The class with the largest total weight wins; a tie goes to
//! the lowest class index. Class scores are the totals over their sum, from which ROC-AUC is
//! computed ([`crate::metrics::roc_auc`]).

use crate::error::{Result, SimilarityError};
use crate::metrics::{accuracy, at_chance, balanced_accuracy, roc_auc};
use crate::neighbours::{Metric, Neighbours, nearest_neighbours};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// How the `k` neighbours' labels are combined.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Voting {
    /// One vote per neighbour.
    #[default]
    Majority,
    /// Weight `1 / distance`.
    Distance,
    /// Weight `exp(score / temperature)` ([`Knn::temperature`]).
    Temperature,
}

impl Voting {
    /// The voting's name as the configuration spells it.
    pub fn name(self) -> &'static str {
        match self {
            Voting::Majority => "majority",
            Voting::Distance => "distance",
            Voting::Temperature => "temperature",
        }
    }

    /// The voting named `name` (`majority`, `distance`, `temperature`).
    pub fn parse(name: &str) -> Option<Voting> {
        match name.trim().to_ascii_lowercase().as_str() {
            "majority" | "uniform" | "plain" => Some(Voting::Majority),
            "distance" => Some(Voting::Distance),
            "temperature" => Some(Voting::Temperature),
            _ => None,
        }
    }
}

/// Settings of the k-NN evaluation (parameters -> [`Knn::evaluate`] -> [`KnnResult`]).
///
/// ```
/// use mmssl_similarity::{Knn, Metric, Voting};
/// use ndarray::array;
/// let train = array![[0.0, 1.0], [0.1, 1.0], [1.0, 0.0], [1.0, 0.1]];
/// let test = array![[0.05, 1.0], [1.0, 0.05]];
/// let r = Knn::new(1)
///     .metric(Metric::Euclidean)
///     .voting(Voting::Distance)
///     .evaluate(train.view(), &[0, 0, 1, 1], test.view(), &[0, 1], 2)
///     .unwrap();
/// assert_eq!(r.accuracy, 1.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knn {
    k: usize,
    metric: Metric,
    voting: Voting,
    temperature: f64,
}

impl Default for Knn {
    fn default() -> Self {
        Knn::new(20)
    }
}

/// The outcome of [`Knn::evaluate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnnResult {
    /// Neighbours per test row.
    pub k: usize,
    /// The metric.
    pub metric: Metric,
    /// The voting.
    pub voting: Voting,
    /// The temperature of temperature-weighted voting (`None` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Test accuracy.
    pub accuracy: f64,
    /// Test balanced accuracy (mean per-class recall).
    pub balanced_accuracy: f64,
    /// Test ROC-AUC of the class scores (binary, or the macro one-vs-rest mean); `None` when
    /// no class has both positives and negatives in the test set.
    pub roc_auc: Option<f64>,
    /// The accuracy of always answering the training set's most frequent class.
    pub chance_accuracy: f64,
    /// Training rows (the neighbours' pool).
    pub n_train: usize,
    /// Test rows.
    pub n_test: usize,
    /// What the caller should know (an accuracy at chance), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Knn {
    /// `k` neighbours, cosine metric, majority voting, temperature 0.07 (for
    /// [`Voting::Temperature`]).
    pub fn new(k: usize) -> Knn {
        Knn {
            k,
            metric: Metric::Cosine,
            voting: Voting::Majority,
            temperature: 0.07,
        }
    }

    /// Chooses the metric.
    pub fn metric(mut self, metric: Metric) -> Knn {
        self.metric = metric;
        self
    }

    /// Chooses the voting.
    pub fn voting(mut self, voting: Voting) -> Knn {
        self.voting = voting;
        self
    }

    /// The temperature of [`Voting::Temperature`] (must be positive).
    pub fn temperature(mut self, temperature: f64) -> Knn {
        self.temperature = temperature;
        self
    }

    /// Checks the parameters against a training set of `n_train` rows.
    pub fn check(&self, n_train: usize) -> Result<()> {
        if self.k == 0 {
            return Err(SimilarityError::InvalidParameter {
                name: "k",
                value: 0.0,
                reason: "k-NN needs at least one neighbour",
            });
        }
        if self.k > n_train {
            return Err(SimilarityError::NeighboursTooMany {
                what: "the training set",
                k: self.k,
                n: n_train,
                hint: "; give a smaller k (knn_k) or more labelled training items",
            });
        }
        if self.voting == Voting::Temperature
            && !(self.temperature.is_finite() && self.temperature > 0.0)
        {
            return Err(SimilarityError::InvalidParameter {
                name: "temperature",
                value: self.temperature,
                reason: "the temperature of weighted voting must be a positive number",
            });
        }
        Ok(())
    }

    /// Class scores (summing to 1 per row) of each test row from its neighbours' labels.
    pub fn class_scores(
        &self,
        neighbours: &Neighbours,
        train_labels: &[usize],
        classes: usize,
    ) -> Vec<Vec<f64>> {
        neighbours
            .indices
            .rows()
            .into_iter()
            .zip(neighbours.distances.rows())
            .zip(neighbours.scores.rows())
            .map(|((idx, dist), score)| {
                let mut weights: Vec<f64> = match self.voting {
                    Voting::Majority => vec![1.0; idx.len()],
                    Voting::Distance => {
                        let exact = dist.iter().any(|&d| d <= 0.0);
                        dist.iter()
                            .map(|&d| match (exact, d <= 0.0) {
                                (true, true) => 1.0,
                                (true, false) => 0.0,
                                (false, _) => 1.0 / d,
                            })
                            .collect()
                    }
                    Voting::Temperature => {
                        let s: Vec<f64> = match self.metric {
                            Metric::Cosine => score.to_vec(),
                            Metric::Euclidean => dist.iter().map(|d| -d).collect(),
                        };
                        // exp((s - max) / T): the same ratios, no overflow.
                        let top = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        s.iter()
                            .map(|v| ((v - top) / self.temperature).exp())
                            .collect()
                    }
                };
                let mut per_class = vec![0.0; classes];
                for (&j, w) in idx.iter().zip(weights.iter_mut()) {
                    per_class[train_labels[j]] += *w;
                }
                let total: f64 = per_class.iter().sum();
                if total > 0.0 {
                    per_class.iter_mut().for_each(|v| *v /= total);
                }
                per_class
            })
            .collect()
    }

    /// Classifies each row of `test` by its `k` nearest rows of `train` and scores the
    /// predictions against `test_labels`. Labels are class indices below `classes`.
    pub fn evaluate(
        &self,
        train: ArrayView2<f64>,
        train_labels: &[usize],
        test: ArrayView2<f64>,
        test_labels: &[usize],
        classes: usize,
    ) -> Result<KnnResult> {
        for (set, rows, labels) in [
            ("train", train.nrows(), train_labels),
            ("test", test.nrows(), test_labels),
        ] {
            if rows != labels.len() {
                return Err(SimilarityError::LabelCount {
                    set,
                    rows,
                    labels: labels.len(),
                });
            }
            if let Some((row, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= classes) {
                return Err(SimilarityError::LabelOutOfRange {
                    set,
                    row,
                    label,
                    classes,
                });
            }
        }
        if test.nrows() == 0 {
            return Err(SimilarityError::TooFewSamples {
                metric: "k-NN evaluation (test set)",
                needed: 1,
                n: 0,
            });
        }
        self.check(train.nrows())?;
        let nn = nearest_neighbours(test, train, self.k, self.metric, false)?;
        let scores = self.class_scores(&nn, train_labels, classes);
        let predicted: Vec<usize> = scores.iter().map(|s| argmax(s)).collect();
        let mut counts = vec![0usize; classes];
        train_labels.iter().for_each(|&l| counts[l] += 1);
        let majority = argmax(&counts.iter().map(|&c| c as f64).collect::<Vec<_>>());
        let chance_accuracy =
            test_labels.iter().filter(|&&l| l == majority).count() as f64 / test.nrows() as f64;
        let acc = accuracy(&predicted, test_labels);
        let mut warnings = Vec::new();
        if at_chance(acc, chance_accuracy, test.nrows()) {
            warnings.push(format!(
                "{}-NN accuracy {acc:.4} is at chance (always answering the most frequent \
                 training class gives {chance_accuracy:.4} on {} test items)",
                self.k,
                test.nrows()
            ));
        }
        Ok(KnnResult {
            k: self.k,
            metric: self.metric,
            voting: self.voting,
            temperature: (self.voting == Voting::Temperature).then_some(self.temperature),
            accuracy: acc,
            balanced_accuracy: balanced_accuracy(&predicted, test_labels, classes),
            roc_auc: roc_auc(&scores, test_labels, classes),
            chance_accuracy,
            n_train: train.nrows(),
            n_test: test.nrows(),
            warnings,
        })
    }
}

/// The index of the largest value; the lowest index among equal ones.
fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
