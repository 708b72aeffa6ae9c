//! Estimators and edges against plain f64 loops written here from the published definitions.

#![allow(clippy::needless_range_loop)] // the references are written as the index loops of the definitions
use super::*;
use burn::tensor::{Device, Tensor};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Host-side embeddings `[B][d][L]`, flattened row-major.
#[derive(Clone)]
struct Host {
    b: usize,
    d: usize,
    l: usize,
    v: Vec<f64>,
}

impl Host {
    fn random(b: usize, d: usize, l: usize, seed: u64, scale: f64) -> Host {
        let mut rng = StdRng::seed_from_u64(seed);
        let v = (0..b * d * l)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        Host { b, d, l, v }
    }
    fn at(&self, b: usize, k: usize, l: usize) -> f64 {
        self.v[(b * self.d + k) * self.l + l]
    }
    fn tensor(&self, device: &Device) -> Tensor<3> {
        let v: Vec<f32> = self.v.iter().map(|x| *x as f32).collect();
        Tensor::<1>::from_floats(v.as_slice(), device).reshape([self.b, self.d, self.l])
    }
    /// Rounded to f32, as the tensor sees it.
    fn as_f32(&self) -> Host {
        Host {
            v: self.v.iter().map(|x| *x as f32 as f64).collect(),
            ..self.clone()
        }
    }
}

/// Raw scores `f[b][la][b2][lt]` of the scaled dot critic (or a custom one).
fn ref_scores(
    a: &Host,
    t: &Host,
    critic: &dyn Fn(&[f64], &[f64]) -> f64,
) -> Vec<Vec<Vec<Vec<f64>>>> {
    (0..a.b)
        .map(|b| {
            (0..a.l)
                .map(|la| {
                    let u: Vec<f64> = (0..a.d).map(|k| a.at(b, k, la)).collect();
                    (0..t.b)
                        .map(|b2| {
                            (0..t.l)
                                .map(|lt| {
                                    let v: Vec<f64> = (0..t.d).map(|k| t.at(b2, k, lt)).collect();
                                    critic(&u, &v)
                                })
                                .collect()
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn dot_critic(u: &[f64], v: &[f64]) -> f64 {
    u.iter().zip(v).map(|(x, y)| x * y).sum::<f64>() / (u.len() as f64).sqrt()
}

/// (loss, penalty) of one estimator, by loops over every positive and negative pair.
fn ref_loss(
    a: &Host,
    t: &Host,
    est: Estimator,
    clip: Option<f64>,
    lambda: f64,
    critic: &dyn Fn(&[f64], &[f64]) -> f64,
) -> (f64, f64) {
    let f = ref_scores(a, t, critic);
    let (bn, la_n, lt_n) = (a.b, a.l, t.l);
    let mut sq = 0.0;
    let mut count = 0.0;
    for row in f.iter().flatten().flatten().flatten() {
        sq += row * row;
        count += 1.0;
    }
    let penalty = lambda * sq / count;
    let c = |x: f64| clip.map_or(x, |c| c * (x / c).tanh());
    let (mut pos_sum, mut pos_n, mut neg_vals) = (0.0, 0.0, Vec::new());
    let mut nce = 0.0;
    let mut jsd_pos = 0.0;
    for b in 0..bn {
        for la in 0..la_n {
            let negs: Vec<f64> = (0..bn)
                .filter(|&b2| b2 != b)
                .flat_map(|b2| (0..lt_n).map(move |lt| (b2, lt)))
                .map(|(b2, lt)| c(f[b][la][b2][lt]))
                .collect();
            // log sum exp of the negatives, shifted by their maximum so huge scores stay finite.
            let m = negs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + negs.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            for lt in 0..lt_n {
                let p = c(f[b][la][b][lt]);
                // -log(e^p / (e^p + e^lse)) = log(1 + e^(lse - p)), evaluated stably.
                let x = lse - p;
                nce += x.max(0.0) + (-x.abs()).exp().ln_1p();
                jsd_pos += (1.0 + (-p).exp()).ln();
                pos_sum += p;
                pos_n += 1.0;
            }
            neg_vals.extend(negs);
        }
    }
    let neg_n = neg_vals.len() as f64;
    let loss = match est {
        Estimator::InfoNce => nce / pos_n,
        Estimator::JensenShannon => {
            jsd_pos / pos_n + neg_vals.iter().map(|x| (1.0 + x.exp()).ln()).sum::<f64>() / neg_n
        }
        Estimator::DonskerVaradhan => {
            -(pos_sum / pos_n - (neg_vals.iter().map(|x| x.exp()).sum::<f64>() / neg_n).ln())
        }
        Estimator::Nwj => {
            -(pos_sum / pos_n - neg_vals.iter().map(|x| (x - 1.0).exp()).sum::<f64>() / neg_n)
        }
    };
    (loss, penalty)
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

fn rel_close(x: f64, y: f64, tol: f64) -> bool {
    (x - y).abs() <= tol * y.abs().max(1e-3)
}

/// The InfoNCE-style loss of `est` with the scaled dot critic and clipping at 20.
fn loss_at(a: Tensor<3>, t: Tensor<3>, est: Estimator, penalty: f64) -> f64 {
    scalar(contrast(a, t, dot(), est, Some(20.0), penalty).unwrap().0)
}

fn dot() -> Critic<'static> {
    Critic {
        kind: CriticKind::ScaledDot,
        bilinear: None,
    }
}

#[test]
fn every_estimator_matches_the_reference_loop_on_odd_and_paper_shapes() {
    let device = Device::flex();
    let shapes = [
        (5, 7, 3, 9, 1.0),
        (64, 64, 1, 64, 0.5),
        (4, 16, 1, 1, 2.0),
        (3, 8, 2, 5, 12.0),
    ];
    for (i, &(b, d, la, lt, scale)) in shapes.iter().enumerate() {
        let a = Host::random(b, d, la, 10 + i as u64, scale);
        let t = Host::random(b, d, lt, 20 + i as u64, scale);
        for est in Estimator::all() {
            for clip in [Some(20.0), Some(2.0), None] {
                let (loss, pen) =
                    contrast(a.tensor(&device), t.tensor(&device), dot(), est, clip, 4e-2).unwrap();
                let (rl, rp) = ref_loss(&a.as_f32(), &t.as_f32(), est, clip, 4e-2, &dot_critic);
                let (loss, pen) = (scalar(loss), scalar(pen));
                // DV and NWJ are differences of O(1) means and can be near 0, where f32 rounding
                // of the terms dominates: compare them relative to max(|value|, 1).
                if rl.abs() > f32::MAX as f64 {
                    // The true value overflows f32 (NWJ/DV on unclipped huge scores): it must
                    // come out as an infinity, not NaN.
                    assert!(
                        loss.is_infinite(),
                        "{est:?}: {loss} for a reference of {rl}"
                    );
                    continue;
                }
                let floor = if matches!(est, Estimator::DonskerVaradhan | Estimator::Nwj) {
                    1.0
                } else {
                    1e-3
                };
                assert!(
                    (loss - rl).abs() <= 1e-5 * rl.abs().max(floor),
                    "{est:?} {clip:?} B={b} d={d} La={la} Lt={lt}: {loss} vs {rl}"
                );
                assert!(rel_close(pen, rp, 1e-5), "penalty {pen} vs {rp}");
            }
        }
    }
}

#[test]
fn cosine_and_bilinear_critics_match_their_definitions() {
    let device = Device::flex();
    let a = Host::random(4, 6, 2, 1, 1.0);
    let t = Host::random(4, 6, 3, 2, 1.0);
    let tau = 0.1;
    let cosine = Critic {
        kind: CriticKind::Cosine { temperature: tau },
        bilinear: None,
    };
    let infonce = |critic: Critic<'_>, penalty: f64| {
        let (a, t) = (a.tensor(&device), t.tensor(&device));
        contrast(a, t, critic, Estimator::InfoNce, Some(20.0), penalty).unwrap()
    };
    let (loss, _) = infonce(cosine, 0.0);
    let cos = |u: &[f64], v: &[f64]| {
        let n = |x: &[f64]| x.iter().map(|y| y * y).sum::<f64>().sqrt();
        u.iter().zip(v).map(|(x, y)| x * y).sum::<f64>() / (n(u) * n(v)) / tau
    };
    let (rl, _) = ref_loss(
        &a.as_f32(),
        &t.as_f32(),
        Estimator::InfoNce,
        Some(20.0),
        0.0,
        &cos,
    );
    assert!(rel_close(scalar(loss), rl, 1e-5));

    let w = BilinearCritic::init(6, &device, &mut StdRng::seed_from_u64(3));
    let wv: Vec<f64> = w
        .weight
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| *x as f64)
        .collect();
    let bil = |u: &[f64], v: &[f64]| {
        let mut s = 0.0;
        for i in 0..6 {
            for j in 0..6 {
                s += u[i] * wv[i * 6 + j] * v[j];
            }
        }
        s / 6f64.sqrt()
    };
    let critic = Critic {
        kind: CriticKind::Bilinear,
        bilinear: Some(&w),
    };
    let (loss, pen) = infonce(critic, 0.04);
    let (rl, rp) = ref_loss(
        &a.as_f32(),
        &t.as_f32(),
        Estimator::InfoNce,
        Some(20.0),
        0.04,
        &bil,
    );
    assert!(rel_close(scalar(loss), rl, 1e-5) && rel_close(scalar(pen), rp, 1e-5));
    assert!(CriticKind::Cosine { temperature: 0.0 }.validate().is_err());
}

#[test]
fn gradients_match_finite_differences_of_the_f64_reference() {
    let device = Device::flex().autodiff();
    let a = Host::random(3, 4, 2, 5, 1.5);
    let t = Host::random(3, 4, 3, 6, 1.5);
    for est in Estimator::all() {
        let at = a.tensor(&device).require_grad();
        let tt = t.tensor(&device).require_grad();
        let (loss, pen) = contrast(at.clone(), tt.clone(), dot(), est, Some(2.0), 4e-2).unwrap();
        let grads = (loss + pen).backward();
        let ga: Vec<f32> = at.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        let gt: Vec<f32> = tt.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        let h = 1e-6;
        let objective = |a: &Host, t: &Host| {
            let (l, p) = ref_loss(a, t, est, Some(2.0), 4e-2, &dot_critic);
            l + p
        };
        let (a32, t32) = (a.as_f32(), t.as_f32());
        for (which, grad) in [(0, &ga), (1, &gt)] {
            for k in 0..grad.len() {
                let (mut plus_a, mut minus_a, mut plus_t, mut minus_t) =
                    (a32.clone(), a32.clone(), t32.clone(), t32.clone());
                if which == 0 {
                    plus_a.v[k] += h;
                    minus_a.v[k] -= h;
                } else {
                    plus_t.v[k] += h;
                    minus_t.v[k] -= h;
                }
                let fd = (objective(&plus_a, &plus_t) - objective(&minus_a, &minus_t)) / (2.0 * h);
                let g = grad[k] as f64;
                assert!(
                    (g - fd).abs() <= 2e-4 * fd.abs().max(0.05),
                    "{est:?} input {which} entry {k}: autodiff {g} vs finite difference {fd}"
                );
            }
        }
    }
}

#[test]
fn aligned_pairs_score_lower_than_shuffled_pairs() {
    let device = Device::flex();
    let (b, d, l) = (16, 32, 8);
    let a = Host::random(b, d, 1, 7, 1.0);
    let noise = Host::random(b, d, l, 8, 0.3);
    // Targets: each sample's anchor repeated over locations, plus noise.
    let mut t = noise.clone();
    for bi in 0..b {
        for k in 0..d {
            for li in 0..l {
                t.v[(bi * d + k) * l + li] += 3.0 * a.at(bi, k, 0);
            }
        }
    }
    let mut shuffled = t.clone();
    for bi in 0..b {
        let src = (bi + 5) % b;
        let block = d * l;
        shuffled.v[bi * block..(bi + 1) * block]
            .copy_from_slice(&t.v[src * block..(src + 1) * block]);
    }
    for est in Estimator::all() {
        let aligned = loss_at(a.tensor(&device), t.tensor(&device), est, 0.0);
        let mixed = loss_at(a.tensor(&device), shuffled.tensor(&device), est, 0.0);
        assert!(
            aligned < mixed,
            "{est:?}: aligned {aligned} >= shuffled {mixed}"
        );
    }
}

#[test]
fn loss_is_invariant_to_permuting_the_batch() {
    let device = Device::flex();
    let a = Host::random(6, 5, 2, 9, 1.0);
    let t = Host::random(6, 5, 4, 10, 1.0);
    let perm = [3, 0, 5, 1, 4, 2];
    let permute = |h: &Host| {
        let block = h.d * h.l;
        let mut out = h.clone();
        for (i, &p) in perm.iter().enumerate() {
            out.v[i * block..(i + 1) * block].copy_from_slice(&h.v[p * block..(p + 1) * block]);
        }
        out
    };
    for est in Estimator::all() {
        let x = loss_at(a.tensor(&device), t.tensor(&device), est, 0.04);
        let y = loss_at(
            permute(&a).tensor(&device),
            permute(&t).tensor(&device),
            est,
            0.04,
        );
        assert!(rel_close(x, y, 1e-6), "{est:?}: {x} vs {y}");
    }
}

#[test]
fn huge_unclipped_scores_stay_finite() {
    let device = Device::flex().autodiff();
    let a = Host::random(4, 8, 1, 11, 40.0);
    let t = Host::random(4, 8, 6, 12, 40.0);
    let at = a.tensor(&device).require_grad();
    let (loss, _) = contrast(
        at.clone(),
        t.tensor(&device),
        dot(),
        Estimator::InfoNce,
        None,
        0.0,
    )
    .unwrap();
    let value = scalar(loss.clone());
    assert!(value.is_finite());
    let grads = loss.backward();
    let g: Vec<f32> = at.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
    assert!(g.iter().all(|x| x.is_finite()));
    let (rl, _) = ref_loss(
        &a.as_f32(),
        &t.as_f32(),
        Estimator::InfoNce,
        None,
        0.0,
        &dot_critic,
    );
    assert!(rel_close(value, rl, 1e-4), "{value} vs {rl}");
}

fn views(n: usize, b: usize, d: usize, l: usize, device: &Device) -> Vec<ModalityEmbeddings> {
    (0..n)
        .map(|i| ModalityEmbeddings {
            conv: Host::random(b, d, l, 100 + i as u64, 1.0).tensor(device),
            latent: Host::random(b, d, 1, 200 + i as u64, 1.0)
                .tensor(device)
                .reshape([b, d]),
        })
        .collect()
}

#[test]
fn edges_have_the_right_term_counts_and_names() {
    for (edge, n2, n3) in [
        (Edge::CR, 2, 3),
        (Edge::XX, 2, 6),
        (Edge::CC, 2, 6),
        (Edge::RR, 2, 6),
    ] {
        assert_eq!(edge_terms(edge, 2).len(), n2);
        assert_eq!(edge_terms(edge, 3).len(), n3);
    }
    let names: Vec<String> = edge_terms(Edge::XX, 3)
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "XX[0->1]", "XX[0->2]", "XX[1->0]", "XX[1->2]", "XX[2->0]", "XX[2->1]"
        ]
    );
    assert_eq!(edge_terms(Edge::CR, 1)[0].to_string(), "CR[0]");
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(1);
    let obj = ObjectiveConfig::new("CR-XX-CC-RR".parse().unwrap())
        .init(&device, &mut rng)
        .unwrap();
    let out = obj.forward(&views(3, 4, 8, 5, &device), &mut rng).unwrap();
    assert_eq!(out.terms.len(), 3 + 6 + 6 + 6);
    assert_eq!(out.scalars().len(), 2 * 21 + 1);
}

#[test]
fn each_edge_pairs_the_documented_tensors() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(2);
    let v = views(2, 5, 8, 7, &device);
    let est = Estimator::InfoNce;
    let clip = Some(20.0);
    let direct =
        |a: Tensor<3>, t: Tensor<3>| scalar(contrast(a, t, dot(), est, clip, 0.04).unwrap().0);
    let lat = |i: usize| v[i].latent.clone().unsqueeze_dim::<3>(2);
    let mut one = |spec: &str| {
        let obj = ObjectiveConfig::new(spec.parse().unwrap())
            .init(&device, &mut StdRng::seed_from_u64(0))
            .unwrap();
        obj.forward(&v, &mut rng).unwrap()
    };
    let cr = one("CR");
    assert!(rel_close(
        scalar(cr.terms[1].loss.clone()),
        direct(lat(1), v[1].conv.clone()),
        1e-6
    ));
    let xx = one("XX");
    assert_eq!(xx.terms[0].term.to_string(), "XX[0->1]");
    assert!(rel_close(
        scalar(xx.terms[0].loss.clone()),
        direct(lat(0), v[1].conv.clone()),
        1e-6
    ));
    let rr = one("RR");
    assert!(rel_close(
        scalar(rr.terms[1].loss.clone()),
        direct(lat(1), lat(0)),
        1e-6
    ));
    // CC: one location per sample, the same location across channels.
    let marked = ModalityEmbeddings {
        conv: Tensor::<1, burn::tensor::Int>::arange(0..7, &device)
            .float()
            .reshape([1, 1, 7])
            .expand([5, 8, 7]),
        latent: v[0].latent.clone(),
    };
    let mut r = StdRng::seed_from_u64(4);
    let picked = super::objective::tests_support::sampled(&marked, &mut r);
    assert_eq!(picked.dims(), [5, 8, 1]);
    let values: Vec<f32> = picked.into_data().try_to_vec().unwrap();
    for s in 0..5 {
        let first = values[s * 8];
        assert!((0.0..7.0).contains(&first) && first.fract() == 0.0);
        assert!(values[s * 8..(s + 1) * 8].iter().all(|x| *x == first));
    }
    assert!(
        values
            .chunks(8)
            .map(|c| c[0])
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] != w[1])
    );
}

#[test]
fn totals_combine_weights_and_penalties_as_configured() {
    let device = Device::flex();
    let v = views(2, 4, 8, 5, &device);
    for weighted in [false, true] {
        let obj = ObjectiveConfig::new("CR:2-RR:0.5".parse().unwrap())
            .with_penalty_weighted(weighted)
            .init(&device, &mut StdRng::seed_from_u64(0))
            .unwrap();
        let out = obj.forward(&v, &mut StdRng::seed_from_u64(0)).unwrap();
        let expected: f64 = out
            .terms
            .iter()
            .map(|t| {
                let pw = if weighted { t.weight } else { 1.0 };
                t.weight * scalar(t.loss.clone()) + pw * scalar(t.penalty.clone())
            })
            .sum();
        assert!(rel_close(scalar(out.total.clone()), expected, 1e-6));
    }
}

#[test]
fn errors_are_values() {
    let device = Device::flex();
    let mut rng = StdRng::seed_from_u64(0);
    let xx = ObjectiveConfig::new("XX".parse().unwrap())
        .init(&device, &mut rng)
        .unwrap();
    let one = views(1, 4, 8, 5, &device);
    assert!(matches!(
        xx.forward(&one, &mut rng),
        Err(ObjectiveError::TooFewModalities { .. })
    ));
    let cr = ObjectiveConfig::new("CR".parse().unwrap())
        .init(&device, &mut rng)
        .unwrap();
    assert_eq!(cr.forward(&one, &mut rng).unwrap().terms.len(), 1);
    assert!(matches!(
        cr.forward(&views(1, 1, 8, 5, &device), &mut rng),
        Err(ObjectiveError::BatchTooSmall(1))
    ));
    let a = Host::random(4, 8, 1, 1, 1.0).tensor(&device);
    let t = Host::random(4, 6, 3, 1, 1.0).tensor(&device);
    assert!(matches!(
        contrast(a, t, dot(), Estimator::InfoNce, None, 0.0),
        Err(ObjectiveError::Shape(_))
    ));
    for cfg in [
        ObjectiveConfig::new("CR".parse().unwrap()).with_clip(Some(0.0)),
        ObjectiveConfig::new("CR".parse().unwrap()).with_penalty(-1.0),
        ObjectiveConfig::new("CR".parse().unwrap())
            .with_critic(CriticKind::Cosine { temperature: -1.0 }),
    ] {
        assert!(matches!(
            cfg.init(&device, &mut rng),
            Err(ObjectiveError::InvalidParameter { .. })
        ));
    }
    assert!("bogus".parse::<Estimator>().is_err());
    assert_eq!(
        "JSD".parse::<Estimator>().unwrap(),
        Estimator::JensenShannon
    );
}

/// Gradients of `x` as host values.
fn grad_of<const D: usize>(x: &Tensor<D>, grads: &burn::tensor::Gradients) -> Vec<f32> {
    x.grad(grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// `x` close to `y` relative to the largest magnitude in `y`.
fn assert_all_close(x: &[f32], y: &[f32], tol: f32, ctx: &str) {
    assert_eq!(x.len(), y.len(), "{ctx}: lengths");
    let norm = y.iter().map(|v| v.abs()).fold(0.0f32, f32::max).max(1e-12);
    for (a, b) in x.iter().zip(y) {
        assert!(
            (a - b).abs() <= tol * norm,
            "{ctx}: {a} vs {b} (max {norm})"
        );
    }
}

/// The critics the fused-path tests cover: scaled dot and cosine, plus bilinear (whose matrix
/// is `bilinear`, 7 x 7) when `d` is 7.
fn fused_critics(d: usize, bilinear: &BilinearCritic) -> Vec<Critic<'_>> {
    let mut critics = vec![
        dot(),
        Critic {
            kind: CriticKind::Cosine { temperature: 0.5 },
            bilinear: None,
        },
    ];
    if d == 7 {
        critics.push(Critic {
            kind: CriticKind::Bilinear,
            bilinear: Some(bilinear),
        });
    }
    critics
}

#[test]
fn fused_cpu_infonce_equals_the_generic_path_in_value_and_gradient() {
    // (B, d, L_a, L_t, clip, scale of the inputs): the paper's 2D and RR shapes, several anchor
    // locations, no clipping with large scores, a batch smaller than the dimension, more
    // target rows than one piece of the anchor gradient's product (1024), saturated clipping
    // at the largest constant shifted by `c` (30) and a larger one (shifted by the maximum).
    let cases = [
        (16, 64, 1, 64, Some(20.0), 1.0),
        (8, 16, 1, 1, Some(20.0), 2.0),
        (5, 7, 3, 4, Some(5.0), 3.0),
        (6, 4, 2, 3, None, 6.0),
        (3, 32, 1, 9, Some(20.0), 0.1),
        (20, 8, 1, 60, Some(20.0), 1.0),
        (6, 16, 1, 5, Some(30.0), 12.0),
        (6, 16, 1, 5, Some(50.0), 12.0),
    ];
    let ad = Device::flex().autodiff();
    let mut rng = StdRng::seed_from_u64(42);
    let bilinear = BilinearCritic::init(7, &ad, &mut rng);
    for (i, &(b, d, la, lt, clip, scale)) in cases.iter().enumerate() {
        let ha = Host::random(b, d, la, 100 + i as u64, scale);
        let ht = Host::random(b, d, lt, 200 + i as u64, scale);
        let critics = fused_critics(d, &bilinear);
        // Loss and penalty weighted alike (the objectives' sum) and differently, so both ways
        // the backward combines the upstream gradients are checked.
        for (critic, (wl, wp)) in critics
            .into_iter()
            .flat_map(|c| [(c, (1.5, 0.7)), (c, (0.5, 0.5))])
        {
            let run = |fused: bool| {
                let a = ha.tensor(&ad).require_grad();
                let t = ht.tensor(&ad).require_grad();
                let f = if fused { contrast } else { contrast_unfused };
                let (loss, pen) =
                    f(a.clone(), t.clone(), critic, Estimator::InfoNce, clip, 0.04).unwrap();
                let values = (scalar(loss.clone()), scalar(pen.clone()));
                let grads = (loss.mul_scalar(wl) + pen.mul_scalar(wp)).backward();
                (values, grad_of(&a, &grads), grad_of(&t, &grads))
            };
            let ((l1, p1), ga1, gt1) = run(true);
            let ((l0, p0), ga0, gt0) = run(false);
            let ctx = format!("case {i} critic {:?} weights {wl}/{wp}", critic.kind);
            assert!(rel_close(l1, l0, 1e-5), "{ctx}: loss {l1} vs {l0}");
            assert!(rel_close(p1, p0, 1e-5), "{ctx}: penalty {p1} vs {p0}");
            assert_all_close(&ga1, &ga0, 1e-4, &format!("{ctx}: anchor gradient"));
            assert_all_close(&gt1, &gt0, 1e-4, &format!("{ctx}: target gradient"));
        }
    }
    // Without autodiff the fused forward gives the same values.
    let plain = Device::flex();
    let (ha, ht) = (Host::random(4, 8, 1, 1, 1.0), Host::random(4, 8, 5, 2, 1.0));
    let [f, g] = [contrast, contrast_unfused].map(|term| {
        let (a, t) = (ha.tensor(&plain), ht.tensor(&plain));
        let (loss, penalty) = term(a, t, dot(), Estimator::InfoNce, Some(20.0), 0.04).unwrap();
        (scalar(loss), scalar(penalty))
    });
    assert!(rel_close(f.0, g.0, 1e-5));
    assert!(rel_close(f.1, g.1, 1e-5));
}

#[test]
fn shared_target_terms_equal_separate_generic_terms_in_value_and_gradient() {
    // (B, d, L_a, L_t, clip, scale of the inputs), three anchor sets against one target; the
    // sets' outputs weighted alike, differently, and one loss not used at all.
    let cases = [
        (16, 64, 1, 64, Some(20.0), 1.0),
        (5, 7, 2, 4, Some(5.0), 3.0),
        (6, 4, 1, 3, None, 6.0),
        (20, 8, 1, 60, Some(50.0), 8.0),
    ];
    let weights = [(1.0, 1.0), (1.5, 0.7), (0.0, 2.0)];
    let ad = Device::flex().autodiff();
    let bilinear = BilinearCritic::init(7, &ad, &mut StdRng::seed_from_u64(9));
    for (i, &(b, d, la, lt, clip, scale)) in cases.iter().enumerate() {
        let hs: Vec<Host> = (0..3)
            .map(|k| Host::random(b, d, la, 300 + 10 * i as u64 + k, scale))
            .collect();
        let ht = Host::random(b, d, lt, 400 + i as u64, scale);
        let critics = fused_critics(d, &bilinear);
        for critic in critics {
            let run = |shared: bool| {
                let anchors: Vec<Tensor<3>> =
                    hs.iter().map(|h| h.tensor(&ad).require_grad()).collect();
                let t = ht.tensor(&ad).require_grad();
                let outs = if shared {
                    contrast_shared_targets(
                        &anchors,
                        t.clone(),
                        critic,
                        Estimator::InfoNce,
                        clip,
                        0.04,
                    )
                    .unwrap()
                } else {
                    anchors
                        .iter()
                        .map(|a| {
                            let e = Estimator::InfoNce;
                            contrast_unfused(a.clone(), t.clone(), critic, e, clip, 0.04).unwrap()
                        })
                        .collect()
                };
                let values: Vec<(f64, f64)> = outs
                    .iter()
                    .map(|(l, p)| (scalar(l.clone()), scalar(p.clone())))
                    .collect();
                let total = outs
                    .into_iter()
                    .zip(weights)
                    .map(|((l, p), (wl, wp))| l.mul_scalar(wl) + p.mul_scalar(wp))
                    .reduce(|x, y| x + y)
                    .unwrap();
                let grads = total.backward();
                let ga: Vec<Vec<f32>> = anchors.iter().map(|a| grad_of(a, &grads)).collect();
                (values, ga, grad_of(&t, &grads))
            };
            let (v1, ga1, gt1) = run(true);
            let (v0, ga0, gt0) = run(false);
            let ctx = format!("case {i} critic {:?}", critic.kind);
            for (k, ((l1, p1), (l0, p0))) in v1.iter().zip(&v0).enumerate() {
                assert!(
                    rel_close(*l1, *l0, 1e-5),
                    "{ctx} set {k}: loss {l1} vs {l0}"
                );
                assert!(
                    rel_close(*p1, *p0, 1e-5),
                    "{ctx} set {k}: penalty {p1} vs {p0}"
                );
            }
            for (k, (g1, g0)) in ga1.iter().zip(&ga0).enumerate() {
                assert_all_close(g1, g0, 1e-4, &format!("{ctx} anchors {k}"));
            }
            assert_all_close(&gt1, &gt0, 1e-4, &format!("{ctx} targets"));
        }
    }
    // Anchor sets of different shapes fall back to one term each, with the same results.
    let plain = Device::flex();
    let t = Host::random(4, 8, 5, 1, 1.0).tensor(&plain);
    let anchors = [
        Host::random(4, 8, 1, 2, 1.0).tensor(&plain),
        Host::random(4, 8, 3, 3, 1.0).tensor(&plain),
    ];
    let est = Estimator::InfoNce;
    let shared =
        contrast_shared_targets(&anchors, t.clone(), dot(), est, Some(20.0), 0.04).unwrap();
    assert_eq!(shared.len(), 2);
    for (a, (l, p)) in anchors.iter().zip(shared) {
        let (l0, p0) =
            contrast_unfused(a.clone(), t.clone(), dot(), est, Some(20.0), 0.04).unwrap();
        assert!(rel_close(scalar(l), scalar(l0), 1e-5));
        assert!(rel_close(scalar(p), scalar(p0), 1e-5));
    }
    assert!(
        contrast_shared_targets(&[], t, dot(), est, None, 0.0)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn objective_terms_evaluated_together_equal_the_generic_terms_one_by_one() {
    // CR-XX-CC over three modalities: the conv-map targets are shared by three terms each,
    // the CC anchors are sampled; weights make the loss and penalty gradients differ.
    let ad = Device::flex().autodiff();
    let v = views(3, 6, 8, 5, &ad);
    let v: Vec<ModalityEmbeddings> = v
        .into_iter()
        .map(|m| ModalityEmbeddings {
            conv: m.conv.require_grad(),
            latent: m.latent.require_grad(),
        })
        .collect();
    let obj = ObjectiveConfig::new("CR:2-XX-CC:0.5".parse().unwrap())
        .init(&ad, &mut StdRng::seed_from_u64(0))
        .unwrap();
    let out = obj.forward(&v, &mut StdRng::seed_from_u64(7)).unwrap();
    let grads = out.total.backward();
    // The reference: every term on its own through the generic path, with the embeddings
    // drawn in the same order from the same generator.
    let mut rng = StdRng::seed_from_u64(7);
    let mut embed = |view: &ModalityEmbeddings, kind: EmbeddingKind| match kind {
        EmbeddingKind::Latent => view.latent.clone().unsqueeze_dim(2),
        EmbeddingKind::ConvMap => view.conv.clone(),
        EmbeddingKind::SampledLocation => super::objective::tests_support::sampled(view, &mut rng),
    };
    let mut total = None;
    let terms = obj.terms(3).unwrap();
    assert_eq!(terms.len(), out.terms.len());
    for ((term, weight), got) in terms.iter().zip(&out.terms) {
        let a = embed(&v[term.anchor], term.anchor_kind());
        let t = embed(&v[term.target], term.target_kind());
        let (l, p) = contrast_unfused(a, t, dot(), Estimator::InfoNce, Some(20.0), 4e-2).unwrap();
        assert_eq!(got.term, *term);
        assert!(
            rel_close(scalar(got.loss.clone()), scalar(l.clone()), 1e-5),
            "{term}"
        );
        assert!(
            rel_close(scalar(got.penalty.clone()), scalar(p.clone()), 1e-5),
            "{term}"
        );
        let c = l.mul_scalar(*weight) + p;
        total = Some(match total {
            Some(x) => x + c,
            None => c,
        });
    }
    let total = total.unwrap();
    assert!(rel_close(
        scalar(out.total.clone()),
        scalar(total.clone()),
        1e-5
    ));
    let reference = total.backward();
    for (i, m) in v.iter().enumerate() {
        let (g1, g0) = (grad_of(&m.conv, &grads), grad_of(&m.conv, &reference));
        assert_all_close(&g1, &g0, 1e-4, &format!("conv {i}"));
        let (g1, g0) = (grad_of(&m.latent, &grads), grad_of(&m.latent, &reference));
        assert_all_close(&g1, &g0, 1e-4, &format!("latent {i}"));
    }
}

#[test]
fn a_negative_cosine_temperature_is_refused_as_a_temperature() {
    // `-` is `_` only in names: `cosine(-1)` is a cosine critic with a bad temperature, not an
    // unknown critic.
    for text in ["cosine(-1)", "COS(-0.5)"] {
        let e = text.parse::<CriticKind>().unwrap_err();
        assert!(
            matches!(
                e,
                ObjectiveError::InvalidParameter {
                    name: "temperature",
                    ..
                }
            ),
            "{text}: {e:?}"
        );
    }
    assert_eq!(
        "cosine(0.2)".parse::<CriticKind>().unwrap(),
        CriticKind::cosine(0.2)
    );
    assert_eq!(
        "Scaled-Dot".parse::<CriticKind>().unwrap(),
        CriticKind::ScaledDot
    );
    assert!(matches!(
        "cosine(abc)".parse::<CriticKind>(),
        Err(ObjectiveError::UnknownCritic(_))
    ));
}
