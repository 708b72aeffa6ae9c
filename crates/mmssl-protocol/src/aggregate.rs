//! Aggregation of a grid's results: one CSV row per run and modality, mean and sample
//! standard deviation per dataset and method as a Markdown table, and figures.

use crate::error::{ProtocolError, Result};
use crate::plots::{self, NEIGHBOUR_METRICS, Pick};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One row of `results.csv`: one modality of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// Dataset name.
    pub dataset: String,
    /// Method (objective spec or baseline).
    pub method: String,
    /// Validation fold.
    pub fold: usize,
    /// Seed.
    pub seed: u64,
    /// Modality.
    pub modality: usize,
    /// Test accuracy of the pretrained representation.
    pub accuracy: f64,
    /// Test balanced accuracy.
    pub balanced_accuracy: f64,
    /// Test ROC-AUC (binary, or macro one-vs-rest).
    pub roc_auc: Option<f64>,
    /// Test accuracy of the same encoder at random initialisation.
    pub random_init_accuracy: Option<f64>,
    /// Mean CCA between the modalities (per run, repeated on each modality's row).
    pub cca: Option<f64>,
    /// SVCCA.
    pub svcca: Option<f64>,
    /// PWCCA.
    pub pwcca: Option<f64>,
    /// Linear CKA.
    pub cka: Option<f64>,
    /// k-NN test accuracy of the pretrained representation.
    #[serde(default)]
    pub knn_accuracy: Option<f64>,
    /// k-NN test accuracy at random initialisation.
    #[serde(default)]
    pub random_init_knn_accuracy: Option<f64>,
    /// Recall@1 of retrieval from this modality to the next one (`(m + 1) mod n`) in `z`.
    #[serde(default)]
    pub retrieval_r1: Option<f64>,
    /// The same at random initialisation.
    #[serde(default)]
    pub random_init_retrieval_r1: Option<f64>,
    /// Mean reciprocal rank of that retrieval.
    #[serde(default)]
    pub retrieval_mrr: Option<f64>,
    /// Recall@1 of that retrieval in the shared canonical subspace.
    #[serde(default)]
    pub canonical_r1: Option<f64>,
    /// Trustworthiness of the t-SNE map of this modality's test representations.
    #[serde(default)]
    pub map_trustworthiness: Option<f64>,
}

impl ResultRow {
    /// The rows of one run's `eval.json` (one per modality).
    pub fn of_eval(
        eval: &serde_json::Value,
        dataset: &str,
        method: &str,
        fold: usize,
        seed: u64,
    ) -> Vec<ResultRow> {
        let sim = &eval["similarity"];
        let get = |v: &serde_json::Value| v.as_f64();
        let n = eval["linear_eval"].as_array().map_or(0, Vec::len);
        // Retrieval from modality `m` to the next one in `space`.
        let retrieval = |m: usize, space: &str| {
            eval["retrieval"].as_array().and_then(|rs| {
                rs.iter().find(|r| {
                    r["query"].as_u64() == Some(m as u64)
                        && r["gallery"].as_u64() == Some(((m + 1) % n.max(1)) as u64)
                        && r["space"] == space
                })
            })
        };
        let recall1 = |r: &serde_json::Value| {
            r["recall_at"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["k"] == 1))
                .and_then(|x| x["recall"].as_f64())
        };
        let trust = |m: usize| {
            eval["maps"].as_array().and_then(|ms| {
                ms.iter()
                    .find(|x| {
                        x["random_init"] != true
                            && x["name"]
                                .as_str()
                                .is_some_and(|s| s.starts_with(&format!("modality {m}")))
                    })
                    .and_then(|x| x["trustworthiness"].as_f64())
            })
        };
        eval["linear_eval"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        let modality = m["modality"].as_u64().unwrap_or(0) as usize;
                        let z = retrieval(modality, "z");
                        ResultRow {
                            dataset: dataset.into(),
                            method: method.into(),
                            fold,
                            seed,
                            modality,
                            accuracy: get(&m["pretrained"]["accuracy"]).unwrap_or(f64::NAN),
                            balanced_accuracy: get(&m["pretrained"]["balanced_accuracy"])
                                .unwrap_or(f64::NAN),
                            roc_auc: get(&m["pretrained"]["roc_auc"]),
                            random_init_accuracy: get(&m["random_init"]["accuracy"]),
                            cca: get(&sim["cca"]),
                            svcca: get(&sim["svcca"]),
                            pwcca: get(&sim["pwcca"]),
                            cka: get(&sim["cka"]),
                            knn_accuracy: get(&m["knn"]["pretrained"]["accuracy"]),
                            random_init_knn_accuracy: get(&m["knn"]["random_init"]["accuracy"]),
                            retrieval_r1: z.and_then(|r| recall1(&r["pretrained"])),
                            random_init_retrieval_r1: z.and_then(|r| recall1(&r["random_init"])),
                            retrieval_mrr: z
                                .and_then(|r| r["pretrained"]["mean_reciprocal_rank"].as_f64()),
                            canonical_r1: retrieval(modality, "canonical")
                                .and_then(|r| recall1(&r["pretrained"])),
                            map_trustworthiness: trust(modality),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Mean and sample standard deviation (0 for one value) of the finite values.
pub fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((mean, var.sqrt()))
}

pub use crate::plots::Summary;

/// Summaries per (dataset, method), in the order methods first appear.
pub fn summarise(rows: &[ResultRow]) -> Vec<Summary> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<&ResultRow>> = BTreeMap::new();
    for r in rows {
        let key = (r.dataset.clone(), r.method.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    order
        .into_iter()
        .map(|key| {
            let g = &groups[&key];
            let modalities = g.iter().map(|r| r.modality + 1).max().unwrap_or(0);
            let of = |m: usize, f: &dyn Fn(&ResultRow) -> Option<f64>| -> Vec<f64> {
                g.iter()
                    .filter(|r| r.modality == m)
                    .filter_map(|r| f(r))
                    .collect()
            };
            let accuracy = (0..modalities)
                .map(|m| mean_std(&of(m, &|r| Some(r.accuracy))).unwrap_or((f64::NAN, 0.0)))
                .collect();
            let random_init = (0..modalities)
                .map(|m| mean_std(&of(m, &|r| r.random_init_accuracy)))
                .collect();
            let sim = |f: &dyn Fn(&ResultRow) -> Option<f64>| mean_std(&of(0, f));
            let similarity = [
                ("CCA", sim(&|r| r.cca)),
                ("SVCCA", sim(&|r| r.svcca)),
                ("PWCCA", sim(&|r| r.pwcca)),
                ("CKA", sim(&|r| r.cka)),
            ]
            .into_iter()
            .filter_map(|(n, v)| v.map(|(m, s)| (n, m, s)))
            .collect();
            let per_modality = |f: &dyn Fn(&ResultRow) -> Option<f64>| -> Vec<Option<(f64, f64)>> {
                (0..modalities).map(|m| mean_std(&of(m, f))).collect()
            };
            Summary {
                dataset: key.0.clone(),
                method: key.1.clone(),
                accuracy,
                random_init,
                similarity,
                knn: per_modality(&|r| r.knn_accuracy),
                knn_random_init: per_modality(&|r| r.random_init_knn_accuracy),
                retrieval_r1: per_modality(&|r| r.retrieval_r1),
                retrieval_r1_random_init: per_modality(&|r| r.random_init_retrieval_r1),
                canonical_r1: per_modality(&|r| r.canonical_r1),
                runs: g.iter().filter(|r| r.modality == 0).count(),
            }
        })
        .collect()
}

/// The Markdown table of the summaries: accuracy per modality and its random-init reference,
/// the similarity of the modalities, and, when any run has them, k-NN accuracy and retrieval
/// recall@1 (in `z`, its random-init reference, and in the canonical subspace) per modality.
pub fn markdown(summaries: &[Summary]) -> String {
    let modalities = summaries
        .iter()
        .map(|s| s.accuracy.len())
        .max()
        .unwrap_or(0);
    let extra: Vec<(&str, Pick)> = NEIGHBOUR_METRICS
        .into_iter()
        .map(|(name, _, pick)| (name, pick))
        .filter(|(_, pick)| {
            summaries
                .iter()
                .any(|s| pick(s).iter().any(Option::is_some))
        })
        .collect();
    let mut s = String::from("| dataset | method | runs |");
    for m in 0..modalities {
        s += &format!(" accuracy m{m} | random init m{m} |");
    }
    s += " CCA | SVCCA | PWCCA | CKA |";
    for (name, _) in &extra {
        for m in 0..modalities {
            s += &format!(" {name} m{m} |");
        }
    }
    s += "\n|---|---|---|";
    for _ in 0..modalities {
        s += "---|---|";
    }
    s += "---|---|---|---|";
    s += &"---|".repeat(extra.len() * modalities);
    s += "\n";
    for x in summaries {
        // A single run has no spread to show.
        let pm = |v: (f64, f64)| match x.runs {
            0 | 1 => format!("{:.4}", v.0),
            _ => format!("{:.4} ± {:.4}", v.0, v.1),
        };
        s += &format!("| {} | {} | {} |", x.dataset, x.method, x.runs);
        for m in 0..modalities {
            let acc = x.accuracy.get(m).map_or("-".into(), |&v| pm(v));
            let rnd = x
                .random_init
                .get(m)
                .copied()
                .flatten()
                .map_or("-".into(), pm);
            s += &format!(" {acc} | {rnd} |");
        }
        for name in ["CCA", "SVCCA", "PWCCA", "CKA"] {
            let v = x.similarity.iter().find(|(n, _, _)| *n == name);
            s += &format!(" {} |", v.map_or("-".into(), |&(_, m, sd)| pm((m, sd))));
        }
        for (_, pick) in &extra {
            for m in 0..modalities {
                let v = pick(x).get(m).copied().flatten();
                s += &format!(" {} |", v.map_or("-".into(), pm));
            }
        }
        s += "\n";
    }
    s
}

/// Writes `results.csv`, `results.md` and the figures into `out`.
pub fn aggregate(rows: &[ResultRow], out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| ProtocolError::write(out, e))?;
    let csv_path = out.join("results.csv");
    let mut w =
        csv::Writer::from_path(&csv_path).map_err(|e| ProtocolError::write(&csv_path, e))?;
    for r in rows {
        w.serialize(r)
            .map_err(|e| ProtocolError::write(&csv_path, e))?;
    }
    w.flush().map_err(|e| ProtocolError::write(&csv_path, e))?;
    let summaries = summarise(rows);
    let md_path = out.join("results.md");
    std::fs::write(&md_path, markdown(&summaries))
        .map_err(|e| ProtocolError::write(&md_path, e))?;
    let datasets: Vec<String> = summaries.iter().fold(Vec::new(), |mut v, s| {
        if !v.contains(&s.dataset) {
            v.push(s.dataset.clone());
        }
        v
    });
    for d in datasets {
        let of: Vec<&Summary> = summaries.iter().filter(|s| s.dataset == d).collect();
        plots::accuracy_chart(&of, &out.join(format!("accuracy_{d}")))?;
        plots::similarity_chart(&of, &out.join(format!("similarity_{d}")))?;
        plots::neighbours_chart(&of, &out.join(format!("neighbours_{d}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, seed: u64, modality: usize, acc: f64) -> ResultRow {
        ResultRow {
            dataset: "two-view-mnist".into(),
            method: method.into(),
            fold: 0,
            seed,
            modality,
            accuracy: acc,
            balanced_accuracy: acc,
            roc_auc: Some(0.9),
            random_init_accuracy: Some(0.5),
            cca: Some(0.6 + seed as f64 * 0.1),
            svcca: Some(0.5),
            pwcca: None,
            cka: Some(0.7),
            knn_accuracy: None,
            random_init_knn_accuracy: None,
            retrieval_r1: None,
            random_init_retrieval_r1: None,
            retrieval_mrr: None,
            canonical_r1: None,
            map_trustworthiness: None,
        }
    }

    #[test]
    fn summaries_are_means_and_sample_deviations() {
        let rows = vec![
            row("CR-XX", 0, 0, 0.8),
            row("CR-XX", 0, 1, 0.7),
            row("CR-XX", 1, 0, 0.9),
            row("CR-XX", 1, 1, 0.7),
            row("dccae", 0, 0, 0.6),
            row("dccae", 0, 1, 0.5),
        ];
        let s = summarise(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].method, "CR-XX");
        assert_eq!(s[0].runs, 2);
        assert!((s[0].accuracy[0].0 - 0.85).abs() < 1e-12);
        // sample std of {0.8, 0.9} = 0.0707...
        assert!((s[0].accuracy[0].1 - 0.05f64.sqrt() / 10f64.sqrt()).abs() < 1e-9);
        assert_eq!(s[0].accuracy[1], (0.7, 0.0));
        let cca = s[0].similarity.iter().find(|x| x.0 == "CCA").unwrap();
        assert!((cca.1 - 0.65).abs() < 1e-12);
        assert!(s[0].similarity.iter().all(|x| x.0 != "PWCCA"));
        let md = markdown(&s);
        assert!(
            md.contains("| two-view-mnist | CR-XX | 2 | 0.8500 ± 0.0707 |"),
            "{md}"
        );
        assert!(md.contains("| dccae | 1 | 0.6000 |"), "{md}");
        assert!(!md.contains("0.6000 ±"), "no spread for one run: {md}");
        assert_eq!(mean_std(&[f64::NAN]), None);
    }

    #[test]
    fn aggregate_writes_csv_markdown_and_figures() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            row("CR", 0, 0, 0.8),
            row("CR", 0, 1, 0.6),
            row("lcca", 0, 0, 0.7),
        ];
        aggregate(&rows, dir.path()).unwrap();
        let mut csv = csv::Reader::from_path(dir.path().join("results.csv")).unwrap();
        let back: Vec<ResultRow> = csv.deserialize().map(|r| r.unwrap()).collect();
        assert_eq!(back, rows);
        for f in [
            "results.md",
            "accuracy_two-view-mnist.svg",
            "accuracy_two-view-mnist.png",
            "similarity_two-view-mnist.svg",
            "similarity_two-view-mnist.png",
        ] {
            let p = dir.path().join(f);
            assert!(p.metadata().unwrap().len() > 100, "{f}");
        }
        let svg = std::fs::read_to_string(dir.path().join("accuracy_two-view-mnist.svg")).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("lcca"),
            "the method names label the bars"
        );
        // Ten digit classes: the chance level is drawn and named; the axis ends at 1.
        assert!(svg.contains("chance (0.10)"), "{svg}");
        assert!(!svg.contains(">1.2<") && !svg.contains(">1.3<"));
        let png = std::fs::read(dir.path().join("accuracy_two-view-mnist.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn the_neighbourhood_columns_come_from_eval_json_into_the_tables() {
        let eval = serde_json::json!({
            "linear_eval": [
                {"modality": 0, "pretrained": {"accuracy": 0.9, "balanced_accuracy": 0.9},
                 "knn": {"pretrained": {"accuracy": 0.8}, "random_init": {"accuracy": 0.3}}},
                {"modality": 1, "pretrained": {"accuracy": 0.7, "balanced_accuracy": 0.7},
                 "knn": {"pretrained": {"accuracy": 0.6}, "random_init": null}}
            ],
            "retrieval": [
                {"query": 0, "gallery": 1, "space": "z",
                 "pretrained": {"recall_at": [{"k": 1, "recall": 0.5}, {"k": 5, "recall": 0.9}],
                                "mean_reciprocal_rank": 0.6},
                 "random_init": {"recall_at": [{"k": 1, "recall": 0.01}]}},
                {"query": 0, "gallery": 1, "space": "canonical",
                 "pretrained": {"recall_at": [{"k": 1, "recall": 0.55}]}},
                {"query": 1, "gallery": 0, "space": "z",
                 "pretrained": {"recall_at": [{"k": 1, "recall": 0.4}]}}
            ],
            "maps": [
                {"name": "modality 0 (rotated)", "trustworthiness": 0.93},
                {"name": "both modalities", "trustworthiness": 0.9}
            ]
        });
        let rows = ResultRow::of_eval(&eval, "two-view-mnist", "CR", 0, 0);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].knn_accuracy, Some(0.8));
        assert_eq!(rows[0].random_init_knn_accuracy, Some(0.3));
        assert_eq!(rows[0].retrieval_r1, Some(0.5));
        assert_eq!(rows[0].random_init_retrieval_r1, Some(0.01));
        assert_eq!(rows[0].retrieval_mrr, Some(0.6));
        assert_eq!(rows[0].canonical_r1, Some(0.55));
        assert_eq!(rows[0].map_trustworthiness, Some(0.93));
        assert_eq!(rows[1].random_init_knn_accuracy, None);
        assert_eq!(rows[1].retrieval_r1, Some(0.4));
        assert_eq!(rows[1].map_trustworthiness, None);
        let md = markdown(&summarise(&rows));
        assert!(
            md.contains("| k-NN m0 | k-NN m1 | k-NN random init m0 |"),
            "{md}"
        );
        assert!(
            md.contains("R@1 z m0") && md.contains("R@1 canonical m1"),
            "{md}"
        );
        assert!(md.contains("| 0.8000 | 0.6000 | 0.3000 | - |"), "{md}");
        let dir = tempfile::tempdir().unwrap();
        aggregate(&rows, dir.path()).unwrap();
        let csv = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
        assert!(
            csv.lines().next().unwrap().contains("knn_accuracy"),
            "{csv}"
        );
        let mut reader = csv::Reader::from_path(dir.path().join("results.csv")).unwrap();
        let back: Vec<ResultRow> = reader.deserialize().map(|r| r.unwrap()).collect();
        assert_eq!(back, rows);
        let svg =
            std::fs::read_to_string(dir.path().join("neighbours_two-view-mnist.svg")).unwrap();
        assert!(
            svg.contains("k-NN m0") && svg.contains("R@1 m1 (z)"),
            "{svg}"
        );
        // Runs without these numbers keep the earlier table and draw no such chart.
        let plain = vec![row("CR", 0, 0, 0.8)];
        assert!(!markdown(&summarise(&plain)).contains("k-NN"));
        let dir = tempfile::tempdir().unwrap();
        aggregate(&plain, dir.path()).unwrap();
        assert!(!dir.path().join("neighbours_two-view-mnist.svg").exists());
    }
}
