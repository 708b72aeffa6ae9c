//! What a run reports: [`RunReport`], the content of `eval.json`, with a [`ModalityEval`] per
//! modality (linear probe and k-NN), a [`RetrievalEval`] per direction and space of
//! cross-modal retrieval, and a [`MapRecord`] per embedding map.

use mmssl_similarity::{KnnResult, RetrievalResult, SimilarityReport};
use mmssl_train::LinearEvalResult;
use serde::{Deserialize, Serialize};

/// Linear evaluation of one modality, trained and at random initialisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModalityEval {
    /// The modality (Two-View MNIST: 0 = rotated view, 1 = noisy view).
    pub modality: usize,
    /// The pretrained encoder.
    pub pretrained: LinearEvalResult,
    /// The same architecture at its random initialisation (`None` for linear CCA, which has
    /// no random initialisation).
    pub random_init: Option<LinearEvalResult>,
    /// k-NN evaluation of the same features (`None` when `evaluation.knn_k` is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knn: Option<KnnEval>,
}

/// k-NN evaluation of one modality, trained and at random initialisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnnEval {
    /// The pretrained encoder.
    pub pretrained: KnnResult,
    /// The same architecture at its random initialisation (`None` for linear CCA).
    pub random_init: Option<KnnResult>,
}

/// Where retrieval ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalSpace {
    /// The representations `z` themselves (cosine similarity): meaningful when the modalities'
    /// encoders were trained into one space (the XX and CC edges).
    Z,
    /// The shared canonical subspace of the two modalities, fitted on the training pairs.
    Canonical,
}

impl RetrievalSpace {
    /// The space in words (`z`, `the canonical subspace`).
    pub fn describe(self) -> &'static str {
        match self {
            RetrievalSpace::Z => "z",
            RetrievalSpace::Canonical => "the canonical subspace",
        }
    }
}

/// Cross-modal retrieval from one modality to another in one space, trained and at random
/// initialisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalEval {
    /// The modality of the queries.
    pub query: usize,
    /// The modality ranked for each query.
    pub gallery: usize,
    /// Where the ranking happens.
    pub space: RetrievalSpace,
    /// The pretrained encoders.
    pub pretrained: RetrievalResult,
    /// The same architecture at its random initialisation (`None` for linear CCA).
    pub random_init: Option<RetrievalResult>,
}

/// One embedding map of the analysis (`maps/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapRecord {
    /// What is mapped: `modality 0`, `modality 1`, or `both modalities`.
    pub name: String,
    /// The figure files, relative to the run folder (`maps/tsne_m0.png`, `.svg`).
    pub files: Vec<String>,
    /// Points on the map.
    pub points: usize,
    /// The t-SNE perplexity used.
    pub perplexity: f64,
    /// The Kullback-Leibler divergence the map ends at.
    pub kl_divergence: f64,
    /// Trustworthiness of the map with 10 neighbours (1: no false neighbour on the map).
    pub trustworthiness: f64,
    /// Whether the map shows the random-init encoder's features (the reference beside the
    /// pretrained encoder's maps).
    #[serde(default)]
    pub random_init: bool,
    /// What the reader should know (a lowered perplexity, a sampled test set), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Everything `eval.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The method's canonical spec (`CR-XX-CC`, `dccae;cca_dim=12`).
    pub method: String,
    /// The dataset.
    pub dataset: crate::DatasetKind,
    /// Items in the training, validation and test sets.
    pub sizes: [usize; 3],
    /// Per-modality linear evaluation.
    pub linear_eval: Vec<ModalityEval>,
    /// Similarity of the two modalities' representations on the test set (when analysed).
    pub similarity: Option<SimilarityReport>,
    /// Why the similarity could not be computed from these representations (e.g. one
    /// modality's test representations are constant: a collapsed encoder), when it could not;
    /// the rest of the report stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity_error: Option<String>,
    /// Cross-modal retrieval per direction and space (empty when not evaluated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retrieval: Vec<RetrievalEval>,
    /// Embedding maps of the test representations (empty when not drawn).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maps: Vec<MapRecord>,
    /// Why an evaluation or a map was not made (one modality, too few test items), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Seconds spent pretraining, evaluating and comparing (0 for a phase not run).
    pub seconds: [f64; 3],
    /// Linear-evaluation epochs used.
    pub eval_epochs: usize,
}

impl RunReport {
    /// The result table, as `mmssl run` prints it.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} on {:?}: {} train / {} valid / {} test pairs\n\n",
            self.method, self.dataset, self.sizes[0], self.sizes[1], self.sizes[2]
        );
        if !self.linear_eval.is_empty() {
            s += "modality | test accuracy (pretrained) | test accuracy (random init) | ROC-AUC (pretrained)\n";
            s += "---------+----------------------------+-----------------------------+---------------------\n";
        }
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        for m in &self.linear_eval {
            s += &format!(
                "{:>8} | {:>26.4} | {:>27} | {:>20}\n",
                m.modality,
                m.pretrained.accuracy,
                f(m.random_init.as_ref().map(|r| r.accuracy)),
                f(m.pretrained.roc_auc),
            );
        }
        let knn: Vec<&ModalityEval> = self
            .linear_eval
            .iter()
            .filter(|m| m.knn.is_some())
            .collect();
        if let Some(first) = knn.first().and_then(|m| m.knn.as_ref()) {
            let p = &first.pretrained;
            s += &format!(
                "\n{}-NN ({}, {} vote) | test accuracy (pretrained) | test accuracy (random init)\n",
                p.k,
                p.metric,
                p.voting.name()
            );
            for m in &knn {
                if let Some(k) = &m.knn {
                    s += &format!(
                        "modality {} | {:.4} | {}\n",
                        m.modality,
                        k.pretrained.accuracy,
                        f(k.random_init.as_ref().map(|r| r.accuracy))
                    );
                }
            }
        }
        if !self.retrieval.is_empty() {
            s += "\ncross-modal retrieval | space | R@1 | R@5 | R@10 | median rank | MRR | \
                  R@1 random init | chance R@1\n";
            for r in &self.retrieval {
                let p = &r.pretrained;
                let chance = p.recall_at.first().map_or(f64::NAN, |x| x.chance);
                s += &format!(
                    "{} -> {} | {} | {} | {} | {} | {:.1} | {:.4} | {} | {:.4}\n",
                    r.query,
                    r.gallery,
                    match r.space {
                        RetrievalSpace::Z => "z",
                        RetrievalSpace::Canonical => "canonical",
                    },
                    f(p.recall(1)),
                    f(p.recall(5)),
                    f(p.recall(10)),
                    p.median_rank,
                    p.mean_reciprocal_rank,
                    f(r.random_init.as_ref().and_then(|x| x.recall(1))),
                    chance
                );
            }
        }
        for m in &self.maps {
            s += &format!(
                "map of {}: {} points, trustworthiness {:.3} ({})\n",
                m.name,
                m.points,
                m.trustworthiness,
                m.files.join(", ")
            );
        }
        for n in &self.notes {
            s += &format!("  note: {n}\n");
        }
        if let Some(sim) = &self.similarity {
            s += &format!(
                "\nsimilarity of the two modalities' z on the test set: CCA {}, SVCCA {}, PWCCA {}, CKA {}\n",
                f(sim.cca),
                f(sim.svcca),
                f(sim.pwcca),
                f(sim.cka)
            );
            // Every caveat, not only in eval.json: a `-` or a biased value has its reason here.
            for w in &sim.warnings {
                s += &format!("  note: {w}\n");
            }
        }
        if let Some(e) = &self.similarity_error {
            s += &format!("\nsimilarity of the two modalities: not computed ({e})\n");
        }
        s += &format!(
            "time: pretraining {:.0} s, linear evaluation {:.0} s, similarity {:.1} s\n",
            self.seconds[0], self.seconds[1], self.seconds[2]
        );
        s
    }
}
