//! What a run reports: [`RunReport`], the content of `eval.json`, with a [`ModalityEval`] per
//! modality.

use mmssl_similarity::SimilarityReport;
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
