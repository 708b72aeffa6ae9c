//! The evaluations beyond the linear probe, on a run's frozen features: k-NN per modality,
//! cross-modal retrieval per ordered pair of modalities (in `z` and in the shared canonical
//! subspace), and the t-SNE maps of the test representations with their trustworthiness.
//! The numbers come from [`mmssl_similarity`]; this module picks the sets, pairs the
//! pretrained numbers with the random-initialisation reference, and draws the maps.

use crate::config::{AnalysisConfig, DEFAULT_KNN_K, DatasetKind, EvaluationConfig};
use crate::error::{ProtocolError, Result};
use crate::plots::{MapPoint, embedding_map};
use crate::report::{KnnEval, MapRecord, RetrievalEval, RetrievalSpace};
use mmssl_similarity::{
    CanonicalProjection, Retrieval, RetrievalResult, Tsne, linalg::LinalgBackend, trustworthiness,
};
use mmssl_train::Features;
use ndarray::{Array2, ArrayView2, Axis, concatenate};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::path::Path;

/// Neighbours of the maps' trustworthiness.
pub const MAP_TRUST_K: usize = 10;

/// One model's features of each modality: the labelled training set and the test set.
#[derive(Debug, Clone, Default)]
pub struct ModelFeatures {
    /// Per modality: the features of the linear probe's training set.
    pub train: Vec<Features>,
    /// Per modality: the test set's.
    pub test: Vec<Features>,
}

/// `f` as an `n x dim` `f64` matrix.
pub fn to_matrix(f: &Features) -> Array2<f64> {
    Array2::from_shape_fn((f.len(), f.dim), |(i, j)| f.values[i * f.dim + j] as f64)
}

/// An error naming `evaluation.knn_k` when the k-NN evaluation asks for more neighbours than
/// the `train_items` labelled training items (checked before pretraining), or an unusable vote.
pub fn check_knn(settings: &EvaluationConfig, train_items: usize) -> Result<()> {
    match settings.knn(train_items).map(|k| k.check(train_items)) {
        Some(Err(e)) => Err(ProtocolError::setting(
            "evaluation.knn_k",
            settings.knn_k.unwrap_or(DEFAULT_KNN_K),
            format!("{e} (0 turns the k-NN evaluation off)"),
        )),
        _ => Ok(()),
    }
}

/// k-NN evaluation of each modality of `pretrained` (and of `random`, the reference), with
/// `classes` classes. `None` when `settings.knn_k` is 0. A `k` above the training items is an
/// error naming the setting ([`check_knn`]).
pub fn knn_evals(
    settings: &EvaluationConfig,
    pretrained: &ModelFeatures,
    random: Option<&ModelFeatures>,
    classes: usize,
) -> Result<Option<Vec<KnnEval>>> {
    let train_items = pretrained.train.first().map_or(0, Features::len);
    let Some(knn) = settings.knn(train_items) else {
        return Ok(None);
    };
    check_knn(settings, train_items)?;
    let one = |m: &ModelFeatures, modality: usize| {
        let (train, test) = (&m.train[modality], &m.test[modality]);
        knn.evaluate(
            to_matrix(train).view(),
            &train.labels,
            to_matrix(test).view(),
            &test.labels,
            classes,
        )
        .map_err(ProtocolError::from)
    };
    (0..pretrained.test.len())
        .map(|m| {
            Ok(KnnEval {
                pretrained: one(pretrained, m)?,
                random_init: random.map(|r| one(r, m)).transpose()?,
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Retrieval between modalities `a` and `b` of one model in one space, both directions
/// (`a -> b`, `b -> a`): the canonical subspace is fitted once for the pair. `Err` holds why it
/// is not defined (widths differ, too few items, constant features).
fn retrieve_pair(
    m: &ModelFeatures,
    (a, b): (usize, usize),
    space: RetrievalSpace,
    dims: usize,
) -> std::result::Result<[RetrievalResult; 2], String> {
    let (mut qa, mut qb) = (to_matrix(&m.test[a]), to_matrix(&m.test[b]));
    if space == RetrievalSpace::Canonical {
        let (ta, tb) = (to_matrix(&m.train[a]), to_matrix(&m.train[b]));
        let p = CanonicalProjection::fit(ta.view(), tb.view(), dims, LinalgBackend::default())
            .map_err(|e| e.to_string())?;
        qa = p.project_a(qa.view()).map_err(|e| e.to_string())?;
        qb = p.project_b(qb.view()).map_err(|e| e.to_string())?;
    }
    let r = Retrieval::new();
    let forward = r
        .evaluate(qa.view(), qb.view())
        .map_err(|e| e.to_string())?;
    let backward = r
        .evaluate(qb.view(), qa.view())
        .map_err(|e| e.to_string())?;
    Ok([forward, backward])
}

/// Cross-modal retrieval for every ordered pair of modalities, in `z` and in the canonical
/// subspace, with the random-initialisation reference; and notes for what could not be
/// computed (one modality; `z` of different widths; a subspace that cannot be fitted).
pub fn retrieval_evals(
    settings: &EvaluationConfig,
    pretrained: &ModelFeatures,
    random: Option<&ModelFeatures>,
) -> (Vec<RetrievalEval>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    if !settings.retrieval {
        return (out, notes);
    }
    let n = pretrained.test.len();
    if n < 2 {
        notes.push(format!(
            "cross-modal retrieval not computed: {}",
            mmssl_similarity::SimilarityError::TooFewModalities { given: n }
        ));
        return (out, notes);
    }
    let dims = settings.retrieval_cca_dims;
    for a in 0..n {
        for b in a + 1..n {
            for space in [RetrievalSpace::Z, RetrievalSpace::Canonical] {
                let reference = random.and_then(|r| retrieve_pair(r, (a, b), space, dims).ok());
                let directions = [(a, b), (b, a)];
                match retrieve_pair(pretrained, (a, b), space, dims) {
                    Ok(results) => {
                        for (k, ((query, gallery), pretrained)) in
                            directions.into_iter().zip(results).enumerate()
                        {
                            out.push(RetrievalEval {
                                query,
                                gallery,
                                space,
                                pretrained,
                                random_init: reference.as_ref().map(|r| r[k].clone()),
                            });
                        }
                    }
                    Err(e) => {
                        for (query, gallery) in directions {
                            notes.push(format!(
                                "retrieval {query} -> {gallery} in the {} space not computed: {e}",
                                match space {
                                    RetrievalSpace::Z => "z",
                                    RetrievalSpace::Canonical => "canonical",
                                }
                            ));
                        }
                    }
                }
            }
        }
    }
    (out, notes)
}

/// The test items a map shows: all of them, or a seeded sample of `points` (sorted).
pub fn map_sample(n: usize, points: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    if n > points {
        idx.shuffle(&mut StdRng::seed_from_u64(seed));
        idx.truncate(points);
        idx.sort_unstable();
    }
    idx
}

/// One map to draw: its name, file stem, points, and the modality of each point.
struct MapJob {
    name: String,
    stem: String,
    random_init: bool,
    x: Array2<f64>,
    modality: Vec<usize>,
}

/// The maps of one model's sampled test rows: one per modality and, when the widths agree,
/// one of all modalities together; notes for a joint map not drawn.
fn map_jobs(rows: &[Array2<f64>], names: &[&str], random_init: bool) -> Result<Vec<MapJob>> {
    let (prefix, what) = match random_init {
        true => ("tsne_random_", ", random initialisation"),
        false => ("tsne_", ""),
    };
    let mut jobs = Vec::new();
    for (m, x) in rows.iter().enumerate() {
        let name = names.get(m).copied().unwrap_or("modality");
        jobs.push(MapJob {
            name: format!("modality {m} ({name}){what}"),
            stem: format!("{prefix}m{m}"),
            random_init,
            x: x.clone(),
            modality: vec![m; x.nrows()],
        });
    }
    if rows.len() >= 2 && rows.iter().all(|r| r.ncols() == rows[0].ncols()) {
        let views: Vec<ArrayView2<f64>> = rows.iter().map(|r| r.view()).collect();
        let both =
            concatenate(Axis(0), &views).map_err(|e| ProtocolError::Config(e.to_string()))?;
        jobs.push(MapJob {
            name: format!("both modalities{what}"),
            stem: format!("{prefix}joint"),
            random_init,
            x: both,
            modality: (0..rows.len())
                .flat_map(|m| std::iter::repeat_n(m, rows[m].nrows()))
                .collect(),
        });
    }
    Ok(jobs)
}

/// Draws the t-SNE maps of `test` (one `Features` per modality) into `out/maps/`: one per
/// modality and, when the modalities' widths agree, one of both together (colour = class,
/// marker = modality); and the same of `random` (the random-init encoder's test features,
/// when given: the reference the pretrained maps are read against). Returns a record per map
/// and notes for maps not drawn.
pub fn embedding_maps(
    test: &[Features],
    random: &[Features],
    settings: &AnalysisConfig,
    dataset: DatasetKind,
    classes: usize,
    seed: u64,
    out: &Path,
) -> Result<(Vec<MapRecord>, Vec<String>)> {
    let mut records = Vec::new();
    let mut notes = Vec::new();
    if !settings.maps || test.is_empty() {
        return Ok((records, notes));
    }
    let n = test[0].len();
    if n < 2 * MAP_TRUST_K + 1 {
        notes.push(format!(
            "no embedding map: the test set has {n} items, a map needs at least {}",
            2 * MAP_TRUST_K + 1
        ));
        return Ok((records, notes));
    }
    let sample = map_sample(n, settings.map_points, seed);
    let mut sample_note = Vec::new();
    if sample.len() < n {
        sample_note.push(format!(
            "{} of the {n} test items (a sample drawn with the run's seed, the same items for \
             every modality)",
            sample.len()
        ));
    }
    let names = dataset.modality_names();
    let class_names = dataset.class_names(classes);
    let dir = out.join("maps");
    std::fs::create_dir_all(&dir).map_err(|e| ProtocolError::write(&dir, e))?;
    let rows_of = |features: &[Features]| -> Vec<Array2<f64>> {
        features
            .iter()
            .map(|f| to_matrix(f).select(Axis(0), &sample))
            .collect()
    };
    let rows = rows_of(test);
    let labels: Vec<usize> = sample.iter().map(|&i| test[0].labels[i]).collect();
    let mut maps = map_jobs(&rows, &names, false)?;
    if rows.len() >= 2 && !maps.iter().any(|j| j.stem == "tsne_joint") {
        notes.push("no joint map: the modalities' representations have different widths".into());
    }
    if random.len() == test.len() && random.iter().all(|f| f.len() == n) {
        maps.extend(map_jobs(&rows_of(random), &names, true)?);
    }
    // The maps are independent: one thread each (every map itself runs on one thread, so
    // the result does not depend on how they are scheduled).
    let tsne = Tsne::new().perplexity(settings.map_perplexity);
    let embedded: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = maps
            .iter()
            .map(|job| scope.spawn(move || tsne.embed(job.x.view())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a t-SNE thread does not panic"))
            .collect()
    });
    for (job, map) in maps.into_iter().zip(embedded) {
        let MapJob {
            name,
            stem,
            random_init,
            x,
            modality,
        } = job;
        let map = match map {
            Ok(map) => map,
            Err(e) => {
                notes.push(format!("no map of {name}: {e}"));
                continue;
            }
        };
        let trust = trustworthiness(x.view(), map.coords.view(), MAP_TRUST_K)?;
        let points: Vec<MapPoint> = (0..x.nrows())
            .map(|i| MapPoint {
                x: map.coords[[i, 0]],
                y: map.coords[[i, 1]],
                class: labels[i % labels.len()],
                modality: modality[i],
            })
            .collect();
        let title = format!("t-SNE of z, {name}: trustworthiness {trust:.3}");
        let modality_labels: Vec<String> = (0..rows.len())
            .map(|m| format!("modality {m} ({})", names.get(m).copied().unwrap_or("?")))
            .collect();
        embedding_map(
            &points,
            &title,
            &class_names,
            &modality_labels,
            &dir.join(&stem),
        )?;
        let mut map_notes = sample_note.clone();
        map_notes.extend(map.notes);
        records.push(MapRecord {
            name,
            files: vec![format!("maps/{stem}.png"), format!("maps/{stem}.svg")],
            points: x.nrows(),
            perplexity: map.perplexity,
            kl_divergence: map.kl_divergence,
            trustworthiness: trust,
            random_init,
            notes: map_notes,
        });
    }
    Ok((records, notes))
}
