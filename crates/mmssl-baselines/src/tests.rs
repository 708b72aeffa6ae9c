//! Unit tests: the deep CCA loss against an independent float64 reference (own Jacobi
//! eigensolver, finite differences), MMVAE's estimators and shapes, linear CCA, names.

use crate::*;
use burn::tensor::{Device, Tensor, TensorData};
use mmssl_data::{Batch, ViewBatch};
use mmssl_train::Method;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The MMVAE bound and loss of `estimator` with `k` samples, drawn with `seed`.
fn estimate(
    model: &Mmvae,
    batch: &Batch,
    estimator: MmvaeEstimator,
    k: usize,
    seed: u64,
) -> MmvaeEstimate {
    let mut rng = StdRng::seed_from_u64(seed);
    model.estimate(batch, estimator, k, &mut rng).unwrap()
}

// ---------------------------------------------------------------- MMVAE

fn image_batch(b: usize, channels: &[usize], seed: u64, device: &Device) -> Batch {
    let mut rng = StdRng::seed_from_u64(seed);
    let views = channels
        .iter()
        .map(|&c| {
            let v: Vec<f32> = (0..b * c * 32 * 32).map(|_| rng.random::<f32>()).collect();
            ViewBatch::Images(Tensor::from_data(
                TensorData::new(v, [b, c, 32, 32]),
                device,
            ))
        })
        .collect();
    Batch {
        views,
        labels: (0..b).map(|i| Some(i % 3)).collect(),
    }
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()[0] as f64
}

fn mmvae(shapes: &[Vec<usize>], device: &Device) -> Mmvae {
    MmvaeConfig {
        latent_dim: 8,
        k: 2,
        ..Default::default()
    }
    .init(shapes, device, &mut StdRng::seed_from_u64(4))
    .unwrap()
}

#[test]
fn mmvae_shapes_scaling_and_cross_generation() {
    let device = Device::flex();
    let shapes = vec![vec![1, 32, 32], vec![3, 32, 32]];
    let model = mmvae(&shapes, &device);
    assert_eq!(model.likelihood_scaling(), &[3.0, 1.0]);
    let batch = image_batch(4, &[1, 3], 1, &device);
    let q = model.posteriors(&batch).unwrap();
    assert_eq!(q.len(), 2);
    for p in &q {
        assert_eq!(p.loc.dims(), [4, 8]);
        let s: Vec<f32> = p.scale.clone().into_data().try_to_vec().unwrap();
        assert!(s.iter().all(|&x| x > 0.0));
        // softmax * D sums to D (+ D * eps) per item.
        for row in s.chunks(8) {
            assert!((row.iter().sum::<f32>() - 8.0).abs() < 1e-4);
        }
    }
    assert_eq!(model.represent(&batch, 1).unwrap().dims(), [4, 8]);
    let rec = model.reconstruct(&batch).unwrap();
    let gen_ = model.generate(5, &mut StdRng::seed_from_u64(2), &device);
    let mut all = Vec::new();
    for row in &rec {
        all.extend(row.iter().cloned());
    }
    all.extend(gen_.iter().cloned());
    for (i, v) in all.iter().enumerate() {
        let ViewBatch::Images(t) = v else {
            panic!("images expected")
        };
        let c = if i % 2 == 0 { 1 } else { 3 };
        assert_eq!(t.dims()[1..], [c, 32, 32]);
        let values: Vec<f32> = t.clone().into_data().try_to_vec().unwrap();
        assert!(values.iter().all(|&x| (0.0..=1.0).contains(&x)));
    }
    assert_eq!(rec[0][1].batch_size(), 4);
    assert_eq!(gen_[0].batch_size(), 5);
}

#[test]
fn mmvae_iwae_with_one_sample_is_the_elbo_and_grows_with_k() {
    let device = Device::flex();
    let shapes = vec![vec![1, 32, 32], vec![1, 32, 32]];
    let model = mmvae(&shapes, &device);
    let batch = image_batch(6, &[1, 1], 3, &device);
    for seed in 0..3 {
        let elbo = estimate(&model, &batch, MmvaeEstimator::Elbo, 1, seed);
        let iwae = estimate(&model, &batch, MmvaeEstimator::Iwae, 1, seed);
        let (e, i) = (scalar(elbo.bound), scalar(iwae.bound));
        assert!((e - i).abs() <= 1e-6 * e.abs(), "{e} vs {i}");
        // DReG reports the same bound as IWAE on the same draw, and minus it as its loss.
        let dreg = estimate(&model, &batch, MmvaeEstimator::Dreg, 1, seed);
        let d = scalar(dreg.bound);
        assert!((d - i).abs() <= 1e-6 * i.abs());
        assert!((scalar(dreg.loss) + d).abs() <= 1e-6 * d.abs());
    }
    // E[IWAE_K] is non-decreasing in K: average over seeds (BatchNorm in evaluation mode so
    // items are decoded independently of K).
    let mean_bound = |k: usize| {
        (0..24)
            .map(|seed| {
                scalar(
                    model
                        .estimate(
                            &batch,
                            MmvaeEstimator::Iwae,
                            k,
                            &mut StdRng::seed_from_u64(100 + seed),
                        )
                        .unwrap()
                        .bound,
                )
            })
            .sum::<f64>()
            / 24.0
    };
    let (b1, b4, b16) = (mean_bound(1), mean_bound(4), mean_bound(16));
    assert!(b1 < b4 && b4 < b16, "{b1} {b4} {b16}");
    // The ELBO is the same at any K in expectation; IWAE_K >= ELBO on average.
    assert!(b16 > b1);
}

#[test]
fn mmvae_gradients_are_finite_for_every_estimator() {
    let device = Device::flex().autodiff();
    let shapes = vec![vec![1, 32, 32], vec![1, 32, 32]];
    let model = MmvaeConfig {
        latent_dim: 8,
        k: 3,
        learn_prior: true,
        ..Default::default()
    }
    .init(&shapes, &device, &mut StdRng::seed_from_u64(4))
    .unwrap();
    let batch = image_batch(4, &[1, 1], 5, &device);
    for est in [
        MmvaeEstimator::Elbo,
        MmvaeEstimator::Iwae,
        MmvaeEstimator::Dreg,
    ] {
        let out = model
            .estimate(&batch, est, 3, &mut StdRng::seed_from_u64(1))
            .unwrap();
        let grads = out.loss.backward();
        let g = model.prior_logits_grad(&grads);
        assert!(g.iter().all(|x| x.is_finite()), "{est:?}");
        assert!(
            g.iter().any(|&x| x != 0.0),
            "{est:?}: the learnable prior gets no gradient"
        );
    }
}

#[test]
fn mmvae_rejects_bad_settings() {
    let device = Device::flex();
    let shapes = vec![vec![1, 32, 32], vec![1, 32, 32]];
    for cfg in [
        MmvaeConfig {
            k: 0,
            ..Default::default()
        },
        MmvaeConfig {
            latent_dim: 0,
            ..Default::default()
        },
        MmvaeConfig {
            likelihood_scale: 0.0,
            ..Default::default()
        },
        MmvaeConfig {
            likelihood_scaling: Some(vec![1.0]),
            ..Default::default()
        },
        MmvaeConfig {
            likelihood_scaling: Some(vec![1.0, -1.0]),
            ..Default::default()
        },
    ] {
        assert!(
            cfg.init(&shapes, &device, &mut StdRng::seed_from_u64(0))
                .is_err(),
            "{cfg:?}"
        );
    }
    assert!(
        MmvaeConfig::default()
            .init(&[vec![1, 28, 28]], &device, &mut StdRng::seed_from_u64(0))
            .is_err()
    );
}

// ---------------------------------------------------------------- other baselines

#[test]
fn supervised_classifier_init_and_label_errors() {
    let device = Device::flex();
    let shapes = vec![vec![1, 32, 32], vec![1, 32, 32]];
    let model = SupervisedConfig::new(10)
        .init(&shapes, &device, &mut StdRng::seed_from_u64(0))
        .unwrap();
    let bias = model.classifier_bias(0);
    assert!(bias.iter().all(|&b| (b - 0.1).abs() < 1e-7));
    let mut batch = image_batch(4, &[1, 1], 1, &device);
    let out = model.loss(&batch, &mut StdRng::seed_from_u64(0)).unwrap();
    assert_eq!(out.terms.len(), 2);
    let total = scalar(out.loss);
    let parts: f64 = out.terms.into_iter().map(|(_, t)| scalar(t)).sum();
    assert!((total - parts).abs() < 1e-5);
    batch.labels[2] = None;
    assert!(matches!(
        model.loss(&batch, &mut StdRng::seed_from_u64(0)),
        Err(mmssl_train::TrainError::MissingLabel { item: 2, .. })
    ));
    batch.labels[2] = Some(12);
    let err = model
        .loss(&batch, &mut StdRng::seed_from_u64(0))
        .unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    // The baseline's own error reaches the loop as its type, not as text.
    let mmssl_train::TrainError::Method(inner) = err else {
        panic!("expected the baseline's error, got {err:?}")
    };
    assert!(matches!(
        inner.downcast_ref::<BaselineError>(),
        Some(BaselineError::LabelOutOfRange {
            label: 12,
            classes: 10
        })
    ));
    assert!(matches!(
        SupervisedConfig::new(1).init(&shapes, &device, &mut StdRng::seed_from_u64(0)),
        Err(BaselineError::InvalidSetting {
            name: "classes",
            ..
        })
    ));
    // A modality the model does not have is an error, not a panic.
    assert!(matches!(
        model.represent(&batch, 2),
        Err(mmssl_train::TrainError::NoModality {
            modality: 2,
            available: 2
        })
    ));
    // Xavier-uniform weights: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), so every
    // |w| <= a, the largest near a, and the variance a² / 3.
    let linear = crate::supervised::classifier(64, 10, &device, &mut StdRng::seed_from_u64(3));
    let w: Vec<f32> = linear.weight.val().into_data().try_to_vec().unwrap();
    assert_eq!(w.len(), 640);
    let a = (6.0f64 / 74.0).sqrt();
    let max = w.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
    assert!(max <= a && max > 0.95 * a, "max |w| {max} vs bound {a}");
    let var = w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.len() as f64;
    assert!((var / (a * a / 3.0) - 1.0).abs() < 0.15, "variance {var}");
}

#[test]
fn hybrid_terms_add_up_for_every_configuration() {
    let device = Device::flex();
    let shapes = vec![vec![1, 32, 32], vec![1, 32, 32]];
    let batch = image_batch(8, &[1, 1], 2, &device);
    for (cfg, names) in [
        (HybridConfig::ae(16), vec!["recon[0]", "recon[1]"]),
        (
            HybridConfig::dccae(16),
            vec!["recon[0]", "recon[1]", "CCA[0,1]"],
        ),
        (HybridConfig::cr_cca(16), vec!["CR[0]", "CR[1]", "CCA[0,1]"]),
        (
            HybridConfig::rr_ae(16),
            vec!["recon[0]", "recon[1]", "RR[0->1]", "RR[1->0]"],
        ),
    ] {
        let model = cfg
            .init(&shapes, &device, &mut StdRng::seed_from_u64(1))
            .unwrap();
        let out = model.loss(&batch, &mut StdRng::seed_from_u64(0)).unwrap();
        let got: Vec<&str> = out.terms.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(got, names);
        assert_eq!(model.represent(&batch, 0).unwrap().dims(), [8, 16]);
        let total = scalar(out.loss);
        assert!(total.is_finite());
        if !names
            .iter()
            .any(|n| n.starts_with("CR") || n.starts_with("RR"))
        {
            // Without an objective (whose penalty adds to the total) the total is the sum.
            let parts: f64 = out.terms.into_iter().map(|(_, t)| scalar(t)).sum();
            assert!(
                (total - parts).abs() < 1e-4 * total.abs().max(1.0),
                "{total} vs {parts}"
            );
        }
    }
    // CCA is defined for two modalities.
    let three = vec![vec![1, 32, 32]; 3];
    assert!(
        HybridConfig::dccae(16)
            .init(&three, &device, &mut StdRng::seed_from_u64(1))
            .is_err()
    );
    let nothing = HybridConfig {
        reconstruction: None,
        ..HybridConfig::ae(16)
    };
    assert!(
        nothing
            .init(&shapes, &device, &mut StdRng::seed_from_u64(1))
            .is_err()
    );
}

// The deprecated second table of methods, still public for one release.
#[allow(deprecated)]
#[test]
fn baseline_names_parse_and_round_trip() {
    for k in BaselineKind::ALL {
        assert_eq!(k.name().parse::<BaselineKind>().unwrap(), k);
        assert_eq!(
            k.to_string()
                .to_uppercase()
                .parse::<BaselineKind>()
                .unwrap(),
            k
        );
    }
    assert_eq!(
        "cr_cca".parse::<BaselineKind>().unwrap(),
        BaselineKind::CrCca
    );
    assert_eq!("L-CCA".parse::<BaselineKind>().unwrap(), BaselineKind::Lcca);
    // The option enums parse their short names and their serialised (config file) names.
    for (text, norm) in [
        ("trace", CorrelationNorm::TraceNorm),
        ("Frobenius", CorrelationNorm::Frobenius),
    ] {
        assert_eq!(text.parse::<CorrelationNorm>().unwrap(), norm);
        let saved = serde_json::to_string(&norm).unwrap();
        assert_eq!(
            saved.trim_matches('"').parse::<CorrelationNorm>().unwrap(),
            norm
        );
    }
    for e in [
        MmvaeEstimator::Elbo,
        MmvaeEstimator::Iwae,
        MmvaeEstimator::Dreg,
    ] {
        let saved = serde_json::to_string(&e).unwrap();
        assert_eq!(
            saved.trim_matches('"').parse::<MmvaeEstimator>().unwrap(),
            e
        );
    }
    assert!("nuclear".parse::<CorrelationNorm>().is_err());
    assert!("vae".parse::<MmvaeEstimator>().is_err());
    let err = "vae".parse::<BaselineKind>().unwrap_err().to_string();
    assert!(err.contains("dccae") && err.contains("mmvae"), "{err}");
    assert!(
        BaselineKind::Lcca
            .build(
                &[vec![1, 32, 32]],
                64,
                10,
                &BaselineOptions::default(),
                &Device::flex(),
                &mut StdRng::seed_from_u64(0)
            )
            .is_err()
    );
}

// ---------------------------------------------------------------- linear CCA

#[test]
fn linear_cca_recovers_known_correlations() {
    // Two views sharing 2 latent signals with known correlations, plus independent dims.
    let n = 4000;
    let mut rng = StdRng::seed_from_u64(7);
    let mut gauss = || {
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    };
    let rho = [0.9, 0.5];
    let mut x1 = Array2::zeros((n, 4));
    let mut x2 = Array2::zeros((n, 3));
    for i in 0..n {
        for (j, &r) in rho.iter().enumerate() {
            let s = gauss();
            let e = gauss();
            x1[[i, j]] = s;
            x2[[i, j]] = r * s + (1.0 - r * r).sqrt() * e;
        }
        x1[[i, 2]] = gauss();
        x1[[i, 3]] = gauss();
        x2[[i, 2]] = gauss();
    }
    // Mix the columns so the directions are not the axes.
    let mix = ndarray::array![
        [1.0, 0.5, 0.0, 0.2],
        [0.0, 1.0, 0.3, 0.0],
        [0.4, 0.0, 1.0, 0.0],
        [0.0, 0.1, 0.0, 1.0]
    ];
    let x1 = x1.dot(&mix);
    let fit = LinearCcaConfig {
        components: 3,
        reg: 1e-9,
    }
    .fit(x1.view(), x2.view())
    .unwrap();
    let c = fit.correlations();
    assert!(
        (c[0] - 0.9).abs() < 0.02 && (c[1] - 0.5).abs() < 0.04 && c[2] < 0.1,
        "{c}"
    );
    // Same as mmssl-similarity's CCA (QR route) on the same data.
    let cca = mmssl_similarity::Cca::new()
        .fit(x1.view(), x2.view())
        .unwrap();
    for i in 0..3 {
        assert!((c[i] - cca.correlations[i]).abs() < 1e-6);
    }
    // The variates have unit variance and the reported correlations.
    let z1 = fit.transform(0, x1.view()).unwrap();
    let z2 = fit.transform(1, x2.view()).unwrap();
    for i in 0..3 {
        let (a, b) = (z1.column(i), z2.column(i));
        let var_a = a.dot(&a) / (n as f64 - 1.0);
        let cov = a.dot(&b) / (n as f64 - 1.0);
        let var_b = b.dot(&b) / (n as f64 - 1.0);
        assert!((var_a - 1.0).abs() < 1e-6 && (var_b - 1.0).abs() < 1e-6);
        assert!((cov - c[i]).abs() < 1e-6);
    }
    // Errors.
    assert!(fit.transform(0, x2.view()).is_err());
    assert!(fit.transform(2, x1.view()).is_err());
    for components in [4, 0] {
        let config = LinearCcaConfig {
            components,
            reg: 1e-3,
        };
        assert!(config.fit(x1.view(), x2.view()).is_err(), "{components}");
    }
    let short = x2.slice(ndarray::s![..10, ..]);
    assert!(LinearCcaConfig::default().fit(x1.view(), short).is_err());
    let mut bad = x2.clone();
    bad[[7, 1]] = f64::NAN;
    let err = LinearCcaConfig {
        components: 3,
        reg: 1e-3,
    }
    .fit(x1.view(), bad.view())
    .unwrap_err()
    .to_string();
    assert!(err.contains("view 2 has NaN at row 7, column 1"), "{err}");
}

#[test]
fn volume_variants_build_and_run() {
    // 3D: DCGAN 3D encoders and decoders on [B, 1, 64, 64, 64] volumes.
    let device = Device::flex();
    let shapes = vec![vec![1, 64, 64, 64], vec![1, 64, 64, 64]];
    let mut rng = StdRng::seed_from_u64(8);
    let vol = |seed: u64| {
        let mut r = StdRng::seed_from_u64(seed);
        let v: Vec<f32> = (0..2 * 64 * 64 * 64).map(|_| r.random::<f32>()).collect();
        ViewBatch::Volumes(Tensor::from_data(
            TensorData::new(v, [2, 1, 64, 64, 64]),
            &device,
        ))
    };
    let batch = Batch {
        views: vec![vol(1), vol(2)],
        labels: vec![Some(0), Some(1)],
    };
    let model = MmvaeConfig {
        latent_dim: 8,
        k: 1,
        estimator: MmvaeEstimator::Elbo,
        ..Default::default()
    }
    .init(&shapes, &device, &mut rng)
    .unwrap();
    assert_eq!(model.likelihood_scaling(), &[1.0, 1.0]);
    let out = model.loss(&batch, &mut rng).unwrap();
    assert!(scalar(out.loss).is_finite());
    let rec = model.reconstruct(&batch).unwrap();
    let ViewBatch::Volumes(t) = &rec[0][1] else {
        panic!("volumes expected")
    };
    assert_eq!(t.dims(), [2, 1, 64, 64, 64]);
    let ae = HybridConfig::ae(8)
        .init(&shapes, &device, &mut rng)
        .unwrap();
    let out = ae.loss(&batch, &mut rng).unwrap();
    assert!(scalar(out.loss).is_finite());
    assert_eq!(ae.represent(&batch, 1).unwrap().dims(), [2, 8]);
}
