//! Estimators and edges against plain f64 loops written here from the published definitions.

#![allow(clippy::needless_range_loop)] // the references are written as the index loops of the definitions
use super::*;
use burn::tensor::{Device, Tensor};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Host-side embeddings `[B][d][L]`, flattened row-major.
#[derive(Clone)]
pub(crate) struct Host {
    b: usize,
    d: usize,
    l: usize,
    v: Vec<f64>,
}

impl Host {
    pub(crate) fn random(b: usize, d: usize, l: usize, seed: u64, scale: f64) -> Host {
        let mut rng = StdRng::seed_from_u64(seed);
        let v = (0..b * d * l)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        Host { b, d, l, v }
    }
    pub(crate) fn at(&self, b: usize, k: usize, l: usize) -> f64 {
        self.v[(b * self.d + k) * self.l + l]
    }
    pub(crate) fn tensor(&self, device: &Device) -> Tensor<3> {
        let v: Vec<f32> = self.v.iter().map(|x| *x as f32).collect();
        Tensor::<1>::from_floats(v.as_slice(), device).reshape([self.b, self.d, self.l])
    }
    /// Rounded to f32, as the tensor sees it.
    pub(crate) fn as_f32(&self) -> Host {
        Host {
            v: self.v.iter().map(|x| *x as f32 as f64).collect(),
            ..self.clone()
        }
    }
}

/// Raw scores `f[b][la][b2][lt]` of the scaled dot critic (or a custom one).
pub(crate) fn ref_scores(
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

pub(crate) fn dot_critic(u: &[f64], v: &[f64]) -> f64 {
    u.iter().zip(v).map(|(x, y)| x * y).sum::<f64>() / (u.len() as f64).sqrt()
}

/// (loss, penalty) of one estimator, by loops over every positive and negative pair.
pub(crate) fn ref_loss(
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

pub(crate) fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

pub(crate) fn rel_close(x: f64, y: f64, tol: f64) -> bool {
    (x - y).abs() <= tol * y.abs().max(1e-3)
}

/// The InfoNCE-style loss of `est` with the scaled dot critic and clipping at 20.
pub(crate) fn loss_at(a: Tensor<3>, t: Tensor<3>, est: Estimator, penalty: f64) -> f64 {
    scalar(contrast(a, t, dot(), est, Some(20.0), penalty).unwrap().0)
}

pub(crate) fn dot() -> Critic<'static> {
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

    let w = BilinearCriticConfig::new(6).init(&device, &mut StdRng::seed_from_u64(3));
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

pub(crate) fn views(
    n: usize,
    b: usize,
    d: usize,
    l: usize,
    device: &Device,
) -> Vec<ModalityEmbeddings> {
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
