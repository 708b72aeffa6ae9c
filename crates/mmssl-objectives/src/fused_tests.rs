//! The fused CPU paths against the generic tensor operations, in value and gradient.

use super::*;
use crate::tests::{Host, dot, rel_close, scalar, views};
use burn::tensor::{Device, Tensor};
use rand::{SeedableRng, rngs::StdRng};

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
    let bilinear = BilinearCriticConfig::new(7).init(&ad, &mut rng);
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
    let bilinear = BilinearCriticConfig::new(7).init(&ad, &mut StdRng::seed_from_u64(9));
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
