//! k-NN, retrieval, the canonical subspace, t-SNE maps and trustworthiness, through the public
//! API, against references written here independently (direct distances, full sorts).

use mmssl_similarity::{
    CanonicalProjection, Knn, Metric, Retrieval, SimilarityError, Tsne, Voting,
    linalg::LinalgBackend, nearest_neighbours, trustworthiness,
};
use ndarray::{Array2, ArrayView1, array};
use rand::{RngExt, SeedableRng, rngs::StdRng};

fn gaussian(rng: &mut StdRng, shape: (usize, usize)) -> Array2<f64> {
    Array2::from_shape_fn(shape, |_| {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random_range(0.0..1.0);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    })
}

/// Distance by its definition: `sqrt(sum (x - y)^2)` or `1 - x.y / (|x| |y|)`.
fn direct_distance(x: ArrayView1<f64>, y: ArrayView1<f64>, metric: Metric) -> f64 {
    match metric {
        Metric::Euclidean => x
            .iter()
            .zip(y)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt(),
        Metric::Cosine => {
            let (nx, ny) = (x.dot(&x).sqrt(), y.dot(&y).sqrt());
            if nx == 0.0 || ny == 0.0 {
                1.0
            } else {
                1.0 - x.dot(&y) / (nx * ny)
            }
        }
    }
}

/// The reference k-NN: sort every training row by (distance, index), vote, break vote ties
/// towards the lower class.
#[allow(clippy::too_many_arguments)] // a reference spelt out, not an API
fn reference_knn(
    train: &Array2<f64>,
    labels: &[usize],
    query: ArrayView1<f64>,
    k: usize,
    metric: Metric,
    voting: Voting,
    temperature: f64,
    classes: usize,
) -> usize {
    let mut d: Vec<(f64, usize)> = train
        .rows()
        .into_iter()
        .enumerate()
        .map(|(j, row)| (direct_distance(query, row, metric), j))
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let nearest = &d[..k];
    let mut votes = vec![0.0; classes];
    let exact = nearest.iter().any(|(dist, _)| *dist <= 1e-12);
    for &(dist, j) in nearest {
        votes[labels[j]] += match voting {
            Voting::Majority => 1.0,
            Voting::Distance if exact => f64::from(u8::from(dist <= 1e-12)),
            Voting::Distance => 1.0 / dist,
            Voting::Temperature => {
                let s = match metric {
                    Metric::Cosine => 1.0 - dist,
                    Metric::Euclidean => -dist,
                };
                (s / temperature).exp()
            }
        };
    }
    let mut best = 0;
    for c in 1..classes {
        if votes[c] > votes[best] + 1e-12 {
            best = c;
        }
    }
    best
}

#[test]
fn knn_matches_a_brute_force_reference_for_every_metric_and_voting_with_ties() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut train = gaussian(&mut rng, (60, 6));
    // Ties: rows 10..20 repeat rows 0..10 exactly, half of them under another label.
    for i in 0..10 {
        let row = train.row(i).to_owned();
        train.row_mut(10 + i).assign(&row);
    }
    let labels: Vec<usize> = (0..60).map(|i| (i * 7 + i / 13) % 3).collect();
    let mut test = gaussian(&mut rng, (25, 6));
    // Test rows equal to training rows: distance 0 (the distance vote's exact-match rule).
    for i in 0..5 {
        let row = train.row(2 * i).to_owned();
        test.row_mut(i).assign(&row);
    }
    let test_labels: Vec<usize> = (0..25).map(|i| i % 3).collect();
    for metric in [Metric::Cosine, Metric::Euclidean] {
        for voting in [Voting::Majority, Voting::Distance, Voting::Temperature] {
            for k in [1, 2, 5, 20] {
                let knn = Knn::new(k).metric(metric).voting(voting).temperature(0.5);
                let nn = nearest_neighbours(test.view(), train.view(), k, metric, false).unwrap();
                let scores = knn.class_scores(&nn, &labels, 3);
                let mut hits = 0;
                for (i, s) in scores.iter().enumerate() {
                    let expected =
                        reference_knn(&train, &labels, test.row(i), k, metric, voting, 0.5, 3);
                    let mut got = 0;
                    for c in 1..3 {
                        if s[c] > s[got] + 1e-12 {
                            got = c;
                        }
                    }
                    assert_eq!(got, expected, "{metric} {voting:?} k={k} row {i}");
                    hits += usize::from(got == test_labels[i]);
                    assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-9);
                }
                let r = knn
                    .evaluate(train.view(), &labels, test.view(), &test_labels, 3)
                    .unwrap();
                assert!((r.accuracy - hits as f64 / 25.0).abs() < 1e-12);
                assert_eq!((r.k, r.n_train, r.n_test), (k, 60, 25));
            }
        }
    }
}

#[test]
fn neighbours_are_ordered_and_ties_go_to_the_lower_index() {
    let g = array![[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]];
    let q = array![[2.0, 0.0]];
    let nn = nearest_neighbours(q.view(), g.view(), 4, Metric::Euclidean, false).unwrap();
    // Distances 1, sqrt 5, 1, 1: the three at 1 in index order.
    assert_eq!(nn.indices.row(0).to_vec(), vec![0, 2, 3, 1]);
    assert!((nn.distances[[0, 3]] - 5f64.sqrt()).abs() < 1e-12);
    let nn = nearest_neighbours(g.view(), g.view(), 1, Metric::Cosine, true).unwrap();
    assert_eq!(nn.indices.column(0).to_vec(), vec![2, 0, 0, 0]);
    assert!(nn.distances[[0, 0]].abs() < 1e-12);
}

#[test]
fn neighbourhood_inputs_that_cannot_work_are_errors() {
    let g = array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
    let labels = [0, 1, 0];
    let err = Knn::new(4)
        .evaluate(g.view(), &labels, g.view(), &labels, 2)
        .unwrap_err();
    assert!(
        matches!(err, SimilarityError::NeighboursTooMany { k: 4, n: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("k = 4 is too large"), "{err}");
    let err = Knn::new(1)
        .evaluate(g.view(), &[0, 1], g.view(), &labels, 2)
        .unwrap_err();
    assert!(matches!(
        err,
        SimilarityError::LabelCount { set: "train", .. }
    ));
    let err = Knn::new(1)
        .evaluate(g.view(), &[0, 1, 2], g.view(), &labels, 2)
        .unwrap_err();
    assert!(matches!(
        err,
        SimilarityError::LabelOutOfRange { label: 2, .. }
    ));
    let err = Knn::new(0).check(3).unwrap_err();
    assert!(matches!(
        err,
        SimilarityError::InvalidParameter { name: "k", .. }
    ));
    let err = Knn::new(1)
        .voting(Voting::Temperature)
        .temperature(0.0)
        .check(3)
        .unwrap_err();
    assert!(matches!(
        err,
        SimilarityError::InvalidParameter {
            name: "temperature",
            ..
        }
    ));
    let wide = array![[1.0, 0.0, 0.0]];
    let err = nearest_neighbours(wide.view(), g.view(), 1, Metric::Cosine, false).unwrap_err();
    assert!(matches!(err, SimilarityError::WidthMismatch { .. }));
    let nan = array![[f64::NAN, 0.0]];
    let err = nearest_neighbours(nan.view(), g.view(), 1, Metric::Cosine, false).unwrap_err();
    assert!(matches!(err, SimilarityError::NonFinite { .. }));
    let err = Retrieval::new()
        .evaluate(g.view(), g.slice(ndarray::s![..2, ..]))
        .unwrap_err();
    assert!(matches!(err, SimilarityError::SampleMismatch { .. }));
    let err = Retrieval::new()
        .ks([0])
        .evaluate(g.view(), g.view())
        .unwrap_err();
    assert!(matches!(err, SimilarityError::InvalidParameter { .. }));
}

#[test]
fn knn_at_chance_says_so() {
    let mut rng = StdRng::seed_from_u64(5);
    let train = gaussian(&mut rng, (200, 4));
    let test = gaussian(&mut rng, (200, 4));
    let labels: Vec<usize> = (0..200).map(|i| i % 2).collect();
    let r = Knn::new(5)
        .evaluate(train.view(), &labels, test.view(), &labels, 2)
        .unwrap();
    assert!((r.chance_accuracy - 0.5).abs() < 1e-12);
    assert!((r.accuracy - 0.5).abs() < 0.1, "{}", r.accuracy);
    assert!(r.warnings.iter().any(|w| w.contains("at chance")), "{r:?}");
}

#[test]
fn retrieval_of_a_hand_made_five_sample_case_is_exact() {
    let gallery = array![[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 1.0]];
    let queries = array![[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
    // Query 1: its match (0, 1) scores 0, below (1, 0) at 1 and (1, 1) at 1/sqrt 2, tied with
    // (0, -1): rank 1 + 2 + 1/2. Query 3: its match (0, -1) scores -1, below all four: rank 5.
    let r = Retrieval::new().ks([1, 3, 5, 10]);
    assert_eq!(
        r.ranks(queries.view(), gallery.view()).unwrap(),
        vec![1.0, 3.5, 1.0, 5.0, 1.0]
    );
    let res = r.evaluate(queries.view(), gallery.view()).unwrap();
    assert_eq!(res.recall(1), Some(0.6));
    assert_eq!(res.recall(3), Some(0.6));
    assert_eq!(res.recall(5), Some(1.0));
    assert_eq!(res.recall_at[3].chance, 1.0);
    assert_eq!(res.recall_at[0].chance, 0.2);
    assert_eq!(res.median_rank, 1.0);
    assert!((res.mean_rank - 2.3).abs() < 1e-12);
    assert!((res.mean_reciprocal_rank - (3.2 + 1.0 / 3.5) / 5.0).abs() < 1e-12);
    assert_eq!(res.chance_rank, 3.0);
    let h5 = 1.0 + 0.5 + 1.0 / 3.0 + 0.25 + 0.2;
    assert!((res.chance_mean_reciprocal_rank - h5 / 5.0).abs() < 1e-12);
}

#[test]
fn retrieval_is_perfect_for_identical_embeddings_and_at_chance_for_independent_ones() {
    let mut rng = StdRng::seed_from_u64(11);
    let a = gaussian(&mut rng, (400, 8));
    let same = Retrieval::new().evaluate(a.view(), a.view()).unwrap();
    assert_eq!(same.recall(1), Some(1.0));
    assert_eq!(same.median_rank, 1.0);
    assert!(same.warnings.is_empty());
    let b = gaussian(&mut rng, (400, 8));
    let r = Retrieval::new().evaluate(a.view(), b.view()).unwrap();
    for at in &r.recall_at {
        // Within three binomial standard errors of k / n.
        let se = (at.chance * (1.0 - at.chance) / 400.0).sqrt();
        assert!((at.recall - at.chance).abs() <= 3.0 * se + 1e-12, "{at:?}");
    }
    assert!(
        (r.mean_rank - r.chance_rank).abs() < 3.0 * 115.5 / 20.0,
        "{}",
        r.mean_rank
    );
    assert!(r.warnings.iter().any(|w| w.contains("at chance")));
}

#[test]
fn the_canonical_subspace_aligns_modalities_whose_coordinates_differ() {
    let mut rng = StdRng::seed_from_u64(7);
    let shared = gaussian(&mut rng, (600, 4));
    // Two modalities: the same 4 latent factors through unrelated linear maps, plus noise.
    let a = shared.dot(&gaussian(&mut rng, (4, 6))) + gaussian(&mut rng, (600, 6)) * 0.05;
    let b = shared.dot(&gaussian(&mut rng, (4, 6))) + gaussian(&mut rng, (600, 6)) * 0.05 + 2.0;
    let (train_a, test_a) = a.view().split_at(ndarray::Axis(0), 400);
    let (train_b, test_b) = b.view().split_at(ndarray::Axis(0), 400);
    let p = CanonicalProjection::fit(train_a, train_b, 4, LinalgBackend::default()).unwrap();
    assert_eq!(p.correlations.len(), 4);
    assert!(
        p.correlations.iter().all(|&c| c > 0.99),
        "{}",
        p.correlations
    );
    let (pa, pb) = (p.project_a(test_a).unwrap(), p.project_b(test_b).unwrap());
    let in_z = Retrieval::new().evaluate(test_a, test_b).unwrap();
    let in_cca = Retrieval::new().evaluate(pa.view(), pb.view()).unwrap();
    assert!(in_cca.recall(1).unwrap() > 0.8, "{in_cca:?}");
    assert!(
        in_z.recall(1).unwrap() < 0.5 * in_cca.recall(1).unwrap(),
        "{in_z:?}"
    );
    let err = CanonicalProjection::fit(
        train_a.slice(ndarray::s![..5, ..]),
        train_b.slice(ndarray::s![..5, ..]),
        4,
        LinalgBackend::default(),
    )
    .unwrap_err();
    assert!(matches!(err, SimilarityError::Underdetermined { .. }));
}

/// Trustworthiness by its definition, with full sorts.
fn reference_trustworthiness(high: &Array2<f64>, low: &Array2<f64>, k: usize) -> f64 {
    let n = high.nrows();
    let order = |x: &Array2<f64>, i: usize| {
        let mut d: Vec<(f64, usize)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| (direct_distance(x.row(i), x.row(j), Metric::Euclidean), j))
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.into_iter().map(|(_, j)| j).collect::<Vec<_>>()
    };
    let mut sum = 0.0;
    for i in 0..n {
        let orig = order(high, i);
        for &j in &order(low, i)[..k] {
            let r = orig.iter().position(|&x| x == j).unwrap() + 1;
            if r > k {
                sum += (r - k) as f64;
            }
        }
    }
    let (nf, kf) = (n as f64, k as f64);
    1.0 - 2.0 / (nf * kf * (2.0 * nf - 3.0 * kf - 1.0)) * sum
}

#[test]
fn trustworthiness_matches_its_definition() {
    let mut rng = StdRng::seed_from_u64(13);
    let high = gaussian(&mut rng, (70, 5));
    let identity = trustworthiness(high.view(), high.view(), 10).unwrap();
    assert!((identity - 1.0).abs() < 1e-12);
    // A map that keeps two of the five coordinates.
    let low = high.slice(ndarray::s![.., ..2]).to_owned();
    let got = trustworthiness(high.view(), low.view(), 10).unwrap();
    let want = reference_trustworthiness(&high, &low, 10);
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    assert!(got < 0.95);
    let random = gaussian(&mut rng, (70, 2));
    let t = trustworthiness(high.view(), random.view(), 10).unwrap();
    assert!((t - reference_trustworthiness(&high, &random, 10)).abs() < 1e-12);
    assert!((t - 0.5).abs() < 0.1, "{t}");
    let err = trustworthiness(high.view(), low.view(), 35).unwrap_err();
    assert!(matches!(err, SimilarityError::NeighboursTooMany { .. }));
}

#[test]
fn tsne_separates_separated_clusters_and_is_reproducible() {
    let mut rng = StdRng::seed_from_u64(17);
    let mut x = gaussian(&mut rng, (150, 10)) * 0.5;
    for i in 0..150 {
        x[[i, i % 3]] += 8.0;
    }
    let tsne = Tsne::new().perplexity(15.0).epochs(400);
    let map = tsne.embed(x.view()).unwrap();
    assert_eq!(map.coords.dim(), (150, 2));
    assert!(map.notes.is_empty());
    assert!(map.kl_divergence.is_finite());
    let t = trustworthiness(x.view(), map.coords.view(), 10).unwrap();
    assert!(t > 0.9, "trustworthiness {t}");
    // Every point's nearest neighbour on the map is of its own cluster.
    let nn = nearest_neighbours(
        map.coords.view(),
        map.coords.view(),
        1,
        Metric::Euclidean,
        true,
    )
    .unwrap();
    assert!((0..150).all(|i| nn.indices[[i, 0]] % 3 == i % 3));
    assert_eq!(tsne.embed(x.view()).unwrap(), map, "same rows, same map");
}

#[test]
fn tsne_lowers_the_perplexity_for_few_points_and_refuses_what_it_cannot_map() {
    let mut rng = StdRng::seed_from_u64(19);
    let x = gaussian(&mut rng, (16, 3));
    let map = Tsne::new().epochs(300).embed(x.view()).unwrap();
    assert_eq!(map.perplexity, 5.0);
    assert!(
        map.notes[0].contains("perplexity lowered from 30 to 5"),
        "{:?}",
        map.notes
    );
    let err = Tsne::new()
        .embed(x.slice(ndarray::s![..4, ..]))
        .unwrap_err();
    assert!(matches!(
        err,
        SimilarityError::TooFewSamples { needed: 5, .. }
    ));
    let flat = Array2::<f64>::ones((10, 3));
    let err = Tsne::new().embed(flat.view()).unwrap_err();
    assert!(matches!(err, SimilarityError::ZeroVariance { .. }), "{err}");
    let err = Tsne::new().epochs(100).embed(x.view()).unwrap_err();
    assert!(matches!(
        err,
        SimilarityError::InvalidParameter { name: "epochs", .. }
    ));
}
