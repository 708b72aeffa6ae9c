//! Tests against independent float64 references written here from the published definitions:
//! canonical correlations from the covariance eigenproblem (own Jacobi eigensolver, no faer or
//! LAPACK), CKA from `n x n` centred Gram matrices, debiased CKA from the U-statistic.

use super::*;
use crate::linalg::{LinalgBackend, jacobi_eigh};
use ndarray::{Array1, Array2, Axis, s};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Asserts that `e` is the non-finite value of `matrix` at (`row`, `col`).
fn assert_non_finite(e: &SimilarityError, matrix: &str, row: usize, col: usize) {
    assert!(
        matches!(e, SimilarityError::NonFinite { matrix: m, row: r, col: c, .. }
            if *m == matrix && *r == row && *c == col),
        "{e:?}"
    );
}

// ---------- independent reference implementations ----------

fn centre(a: &Array2<f64>) -> Array2<f64> {
    a - &a.mean_axis(Axis(0)).unwrap()
}

/// `S^{-1/2}` of a symmetric positive definite matrix.
fn inv_sqrt(sym: &Array2<f64>) -> Array2<f64> {
    let (vals, vecs) = jacobi_eigh(sym);
    let d = vals.mapv(|x| 1.0 / x.sqrt());
    (&vecs * &d).dot(&vecs.t())
}

/// Canonical correlations (descending) and A's canonical directions (columns) from the
/// covariance eigenproblem: eig(Saa^-1/2 Sab Sbb^-1 Sba Saa^-1/2) = rho^2.
fn ref_cca(a: &Array2<f64>, b: &Array2<f64>) -> (Array1<f64>, Array2<f64>) {
    let (ac, bc) = (centre(a), centre(b));
    let saa = ac.t().dot(&ac);
    let sbb = bc.t().dot(&bc);
    let sab = ac.t().dot(&bc);
    let wa = inv_sqrt(&saa);
    let wb = inv_sqrt(&sbb);
    let t = wa.dot(&sab).dot(&wb);
    let (vals, vecs) = jacobi_eigh(&t.dot(&t.t()));
    let k = a.ncols().min(b.ncols());
    let rho = vals.slice(s![..k]).mapv(|x| x.max(0.0).sqrt());
    let dirs = wa.dot(&vecs.slice(s![.., ..k]));
    (rho, dirs)
}

fn ref_mean_cca(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let (rho, _) = ref_cca(a, b);
    rho.sum() / a.ncols().min(b.ncols()) as f64
}

fn ref_pwcca(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let (rho, dirs) = ref_cca(a, b);
    let ac = centre(a);
    let mut h = ac.dot(&dirs);
    for mut col in h.columns_mut() {
        let norm = col.dot(&col).sqrt();
        col /= norm;
    }
    let alpha = h.t().dot(&ac).mapv(f64::abs).sum_axis(Axis(1));
    alpha.dot(&rho) / alpha.sum()
}

fn ref_svcca(a: &Array2<f64>, b: &Array2<f64>, threshold: f64) -> (f64, usize, usize) {
    let reduce = |m: &Array2<f64>| {
        let c = centre(m);
        let (vals, vecs) = jacobi_eigh(&c.t().dot(&c)); // eigenvalues = s^2, descending
        let total = vals.sum();
        let mut acc = 0.0;
        let mut k = vals.len();
        for (i, v) in vals.iter().enumerate() {
            acc += v;
            if acc >= threshold * total {
                k = i + 1;
                break;
            }
        }
        c.dot(&vecs.slice(s![.., ..k]))
    };
    let (ra, rb) = (reduce(a), reduce(b));
    (ref_mean_cca(&ra, &rb), ra.ncols(), rb.ncols())
}

fn hsic_gram(k: &Array2<f64>, l: &Array2<f64>) -> f64 {
    let n = k.nrows();
    let h = Array2::<f64>::eye(n) - 1.0 / n as f64;
    let kc = h.dot(k).dot(&h);
    let lc = h.dot(l).dot(&h);
    (&kc * &lc).sum()
}

fn ref_cka(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let k = a.dot(&a.t());
    let l = b.dot(&b.t());
    hsic_gram(&k, &l) / (hsic_gram(&k, &k) * hsic_gram(&l, &l)).sqrt()
}

/// Song et al. (2012) unbiased HSIC, straight from its definition.
fn hsic_unbiased(k: &Array2<f64>, l: &Array2<f64>) -> f64 {
    let n = k.nrows() as f64;
    let mut kt = k.clone();
    let mut lt = l.clone();
    kt.diag_mut().fill(0.0);
    lt.diag_mut().fill(0.0);
    let ones = Array1::<f64>::ones(k.nrows());
    let tr = (&kt * &lt.t()).sum();
    let term2 = ones.dot(&kt).dot(&ones) * ones.dot(&lt).dot(&ones) / ((n - 1.0) * (n - 2.0));
    let term3 = 2.0 / (n - 2.0) * ones.dot(&kt.dot(&lt)).dot(&ones);
    (tr + term2 - term3) / (n * (n - 3.0))
}

fn ref_cka_debiased(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let (ac, bc) = (centre(a), centre(b));
    let k = ac.dot(&ac.t());
    let l = bc.dot(&bc.t());
    hsic_unbiased(&k, &l) / (hsic_unbiased(&k, &k) * hsic_unbiased(&l, &l)).sqrt()
}

// ---------- data ----------

fn gaussian(rng: &mut StdRng, shape: (usize, usize)) -> Array2<f64> {
    Array2::from_shape_fn(shape, |_| {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random_range(0.0..1.0);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    })
}

/// Two views with shared latent structure plus noise, offset from zero.
pub(crate) fn views(seed: u64, n: usize, d_a: usize, d_b: usize) -> (Array2<f64>, Array2<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let z = gaussian(&mut rng, (n, 4));
    let a = z.dot(&gaussian(&mut rng, (4, d_a))) + gaussian(&mut rng, (n, d_a)) * 0.7 + 3.0;
    let b = z.dot(&gaussian(&mut rng, (4, d_b))) + gaussian(&mut rng, (n, d_b)) * 1.3 - 1.0;
    (a, b)
}

fn orthogonal(seed: u64, d: usize) -> Array2<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (q, _) = LinalgBackend::Faer
        .thin_qr(gaussian(&mut rng, (d, d)).view())
        .unwrap();
    q
}

pub(crate) fn close(x: f64, y: f64, tol: f64) -> bool {
    (x - y).abs() <= tol
}

// ---------- agreement with the references ----------

const SHAPES: [(usize, usize, usize); 4] = [(50, 5, 8), (300, 20, 12), (40, 1, 3), (1000, 32, 32)];

#[test]
fn cca_matches_covariance_eigenproblem() {
    for (i, &(n, da, db)) in SHAPES.iter().enumerate() {
        let (a, b) = views(i as u64, n, da, db);
        for backend in LinalgBackend::available() {
            let r = Cca::new().backend(backend).fit(a.view(), b.view()).unwrap();
            let (rho, _) = ref_cca(&a, &b);
            assert_eq!(r.correlations.len(), rho.len());
            for (x, y) in r.correlations.iter().zip(&rho) {
                assert!(close(*x, *y, 1e-9), "{n}x{da}/{db}: {x} vs {y}");
            }
            assert!(close(r.mean, ref_mean_cca(&a, &b), 1e-10));
            assert!(r.warnings.is_empty());
        }
    }
}

#[test]
fn pwcca_matches_reference_and_weighs_by_a() {
    for (i, &(n, da, db)) in SHAPES.iter().enumerate() {
        let (a, b) = views(10 + i as u64, n, da, db);
        let r = Pwcca::new().fit(a.view(), b.view()).unwrap();
        assert!(
            close(r.value, ref_pwcca(&a, &b), 1e-9),
            "{} vs {}",
            r.value,
            ref_pwcca(&a, &b)
        );
        assert!(close(r.weights.sum(), 1.0, 1e-12));
        assert!(r.weights.iter().all(|&w| w >= 0.0));
        // Asymmetric: weights come from the first argument.
        let swapped = Pwcca::new().fit(b.view(), a.view()).unwrap();
        assert!(close(swapped.value, ref_pwcca(&b, &a), 1e-9));
    }
    let (a, b) = views(20, 200, 6, 9);
    let ab = pwcca(a.view(), b.view()).unwrap();
    let ba = pwcca(b.view(), a.view()).unwrap();
    assert!(
        (ab - ba).abs() > 1e-4,
        "PWCCA should not be symmetric here: {ab} {ba}"
    );
}

#[test]
fn svcca_matches_reference() {
    for (i, &(n, da, db)) in SHAPES.iter().enumerate() {
        let (a, b) = views(30 + i as u64, n, da, db);
        for t in [0.5, 0.9, 0.99] {
            let r = Svcca::new()
                .threshold(t)
                .unwrap()
                .fit(a.view(), b.view())
                .unwrap();
            let (m, ka, kb) = ref_svcca(&a, &b, t);
            assert_eq!((r.kept_a, r.kept_b), (ka, kb), "threshold {t}");
            assert!(close(r.mean, m, 1e-9), "{} vs {m}", r.mean);
        }
    }
}

#[test]
fn cka_matches_gram_matrix_definition() {
    for (i, &(n, da, db)) in SHAPES[..3].iter().enumerate() {
        let (a, b) = views(40 + i as u64, n, da, db);
        let v = linear_cka(a.view(), b.view()).unwrap();
        assert!(
            close(v, ref_cka(&a, &b), 1e-10),
            "{v} vs {}",
            ref_cka(&a, &b)
        );
        let d = linear_cka_debiased(a.view(), b.view()).unwrap();
        assert!(
            close(d, ref_cka_debiased(&a, &b), 1e-9),
            "{d} vs {}",
            ref_cka_debiased(&a, &b)
        );
    }
}

// ---------- analytic cases ----------

#[test]
fn identical_representations_score_one() {
    let (a, _) = views(50, 100, 7, 3);
    let r = Similarity::new().report(a.view(), a.view()).unwrap();
    for (name, v) in [
        ("cca", r.cca),
        ("svcca", r.svcca),
        ("pwcca", r.pwcca),
        ("cka", r.cka),
        ("cka_debiased", r.cka_debiased),
    ] {
        assert!(close(v.unwrap(), 1.0, 1e-10), "{name} = {v:?}");
    }
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn known_shared_subspace_gives_known_correlations() {
    // Six centred orthonormal sample-space directions u1..u6; A spans u1..u3, B's columns are
    // cos(t) u_i + sin(t) u_{i+3}, so the canonical correlations are exactly the cosines.
    let mut rng = StdRng::seed_from_u64(60);
    let n = 120;
    let (u, _) = LinalgBackend::Faer
        .thin_qr(centre(&gaussian(&mut rng, (n, 6))).view())
        .unwrap();
    let cosines: [f64; 3] = [0.9, 0.6, 0.3];
    let a0 = u.slice(s![.., 0..3]).to_owned();
    let mut b0 = Array2::<f64>::zeros((n, 3));
    for (j, c) in cosines.iter().enumerate() {
        let sn = (1.0f64 - c * c).sqrt();
        let col = &u.column(j) * *c + &u.column(j + 3) * sn;
        b0.column_mut(j).assign(&col);
    }
    // Arbitrary invertible mixing and offsets must not change CCA.
    let a = a0.dot(&(gaussian(&mut rng, (3, 3)) + Array2::<f64>::eye(3) * 3.0)) + 5.0;
    let b = b0.dot(&(gaussian(&mut rng, (3, 3)) + Array2::<f64>::eye(3) * 3.0)) - 2.0;
    let r = Cca::new().fit(a.view(), b.view()).unwrap();
    for (x, y) in r.correlations.iter().zip(cosines) {
        assert!(close(*x, y, 1e-12), "{x} vs {y}");
    }
    assert!(close(r.mean, 0.6, 1e-12));
    // B padded with 2 independent columns: correlations stay, the mean still divides by 3.
    let pad = gaussian(&mut rng, (n, 2));
    let b_wide = ndarray::concatenate![Axis(1), b, pad];
    let r = Cca::new().fit(a.view(), b_wide.view()).unwrap();
    assert!(r.correlations[0] >= 0.9 - 1e-12);
}

#[test]
fn cca_and_cka_are_invariant_to_orthogonal_maps_and_isotropic_scaling() {
    let (a, b) = views(70, 200, 6, 5);
    let q = orthogonal(71, 6);
    let a2 = a.dot(&q) * 7.5;
    let cca0 = cca(a.view(), b.view()).unwrap();
    let cka0 = linear_cka(a.view(), b.view()).unwrap();
    let deb0 = linear_cka_debiased(a.view(), b.view()).unwrap();
    assert!(close(cca(a2.view(), b.view()).unwrap(), cca0, 1e-10));
    assert!(close(linear_cka(a2.view(), b.view()).unwrap(), cka0, 1e-10));
    assert!(close(
        linear_cka_debiased(a2.view(), b.view()).unwrap(),
        deb0,
        1e-10
    ));
    // CCA, but not CKA, is invariant to any invertible map.
    let mut m = orthogonal(72, 6);
    m.column_mut(0).mapv_inplace(|x| x * 10.0);
    let a3 = a.dot(&m);
    assert!(close(cca(a3.view(), b.view()).unwrap(), cca0, 1e-10));
    assert!((linear_cka(a3.view(), b.view()).unwrap() - cka0).abs() > 1e-3);
}

#[test]
fn independent_noise_scores_low() {
    let mut rng = StdRng::seed_from_u64(80);
    let a = gaussian(&mut rng, (5000, 4));
    let b = gaussian(&mut rng, (5000, 4));
    assert!(cca(a.view(), b.view()).unwrap() < 0.05);
    assert!(linear_cka(a.view(), b.view()).unwrap() < 0.01);
    assert!(linear_cka_debiased(a.view(), b.view()).unwrap().abs() < 0.01);
}

#[test]
fn svcca_keeps_the_directions_that_explain_the_variance() {
    // Singular values squared 90, 5, 4.5, 0.3, 0.2 (of 100).
    let n = 80;
    let mut rng = StdRng::seed_from_u64(90);
    let (u, _) = LinalgBackend::Faer
        .thin_qr(centre(&gaussian(&mut rng, (n, 5))).view())
        .unwrap();
    let s = ndarray::arr1(&[90.0f64, 5.0, 4.5, 0.3, 0.2]).mapv(f64::sqrt);
    let a = (&u * &s).dot(&orthogonal(91, 5));
    let b = gaussian(&mut rng, (n, 3));
    for (t, k) in [
        (0.89, 1),
        (0.93, 2),
        (0.96, 3),
        (0.99, 3),
        (0.998, 4),
        (1.0, 5),
    ] {
        let r = Svcca::new()
            .threshold(t)
            .unwrap()
            .fit(a.view(), b.view())
            .unwrap();
        assert_eq!(r.kept_a, k, "threshold {t}");
    }
}

#[test]
fn svcca_works_when_cca_is_underdetermined() {
    // 60 samples of 100 features that live in a 4-dimensional space (plus a little noise):
    // CCA cannot run (n <= d), SVCCA keeps a few directions and can.
    let mut rng = StdRng::seed_from_u64(100);
    let z = gaussian(&mut rng, (60, 4));
    let a = z.dot(&gaussian(&mut rng, (4, 100))) + gaussian(&mut rng, (60, 100)) * 1e-3;
    let b = z.dot(&gaussian(&mut rng, (4, 80))) + gaussian(&mut rng, (60, 80)) * 1e-3;
    let err = Cca::new().fit(a.view(), b.view()).unwrap_err();
    assert!(matches!(
        err,
        SimilarityError::Underdetermined { n: 60, d: 100, .. }
    ));
    let msg = err.to_string();
    assert!(msg.contains("SVCCA") && msg.contains("CKA"), "{msg}");
    let r = Svcca::new().fit(a.view(), b.view()).unwrap();
    assert!(r.kept_a + r.kept_b < 60, "{} + {}", r.kept_a, r.kept_b);
    assert!(r.mean > 0.99, "shared 4-d signal: {}", r.mean);
    let rep = Similarity::new().report(a.view(), b.view()).unwrap();
    assert!(rep.cca.is_none() && rep.pwcca.is_none());
    assert!(rep.svcca.is_some() && rep.cka.is_some() && rep.cka_debiased.is_some());
    assert!(rep.warnings.iter().any(|w| w.contains("underdetermined")));
}

#[test]
fn svcca_of_independent_noise_is_not_reported_as_similarity() {
    // Independent noise with n = 20 or 50 samples of 64 features: SVCCA keeps nearly every
    // direction, and its correlations of (near) 1 would come from the sample size alone.
    for n in [20, 50] {
        let mut rng = StdRng::seed_from_u64(n as u64);
        let a = gaussian(&mut rng, (n, 64));
        let b = gaussian(&mut rng, (n, 64));
        let err = Svcca::new().fit(a.view(), b.view()).unwrap_err();
        assert!(
            matches!(err, SimilarityError::SvccaUnderdetermined { n: m, kept_a, kept_b }
                if m == n && kept_a + kept_b >= n),
            "{err}"
        );
        let rep = Similarity::new().report(a.view(), b.view()).unwrap();
        assert!(rep.svcca.is_none(), "n = {n}: {:?}", rep.svcca);
        assert!(
            rep.warnings
                .iter()
                .any(|w| w.contains("SVCCA is underdetermined"))
        );
    }
    // With enough samples it is reported, with a warning while the ratio is still high.
    let mut rng = StdRng::seed_from_u64(7);
    let a = gaussian(&mut rng, (300, 64));
    let b = gaussian(&mut rng, (300, 64));
    let rep = Similarity::new().report(a.view(), b.view()).unwrap();
    assert!(rep.svcca.is_some());
    assert!(
        rep.warnings.iter().any(|w| w.contains("biased upward")),
        "{:?}",
        rep.warnings
    );
}

#[test]
fn rank_deficient_input_is_reported_not_nan() {
    let (a, b) = views(110, 200, 4, 4);
    // A with a duplicated column and a constant (dead) unit.
    let dup = ndarray::concatenate![
        Axis(1),
        a,
        a.slice(s![.., 0..1]),
        Array2::from_elem((200, 1), 3.0)
    ];
    let r = Cca::new().fit(dup.view(), b.view()).unwrap();
    assert_eq!(r.rank_a, 4);
    assert_eq!(r.correlations.len(), 4);
    let full = Cca::new().fit(a.view(), b.view()).unwrap();
    for (x, y) in r.correlations.iter().zip(&full.correlations) {
        assert!(close(*x, *y, 1e-10));
    }
    // min(d_a, d_b) = 4 here, so the mean is the same; with a wider B it would be diluted.
    assert!(close(r.mean, full.mean, 1e-10));
    assert_eq!(r.warnings.len(), 1);
    assert!(r.warnings[0].contains("rank 4 < 6"), "{}", r.warnings[0]);
    let p = Pwcca::new().fit(dup.view(), b.view()).unwrap();
    assert!(p.value.is_finite() && close(p.weights.sum(), 1.0, 1e-12));
}

// ---------- errors ----------

#[test]
fn bad_inputs_are_errors() {
    let (a, b) = views(120, 30, 3, 3);
    let one = a.slice(s![0..1, ..]);
    assert!(matches!(
        cca(one, one),
        Err(SimilarityError::TooFewSamples { n: 1, .. })
    ));
    assert!(matches!(
        linear_cka(a.view(), b.slice(s![..29, ..])),
        Err(SimilarityError::SampleMismatch { n_a: 30, n_b: 29 })
    ));
    let mut nan = a.clone();
    nan[[4, 2]] = f64::NAN;
    let e = linear_cka(nan.view(), b.view()).unwrap_err();
    assert_non_finite(&e, "A", 4, 2);
    let mut inf = b.clone();
    inf[[7, 0]] = f64::NEG_INFINITY;
    let e = svcca(a.view(), inf.view()).unwrap_err();
    assert_non_finite(&e, "B", 7, 0);
    let constant = Array2::from_elem((30, 3), 0.1);
    for f in [cca, svcca, pwcca, linear_cka, linear_cka_debiased] {
        assert!(matches!(
            f(a.view(), constant.view()),
            Err(SimilarityError::ZeroVariance { matrix: "B" })
        ));
    }
    let empty = Array2::<f64>::zeros((30, 0));
    assert!(matches!(
        linear_cka(empty.view(), b.view()),
        Err(SimilarityError::NoFeatures { matrix: "A" })
    ));
    assert!(matches!(
        linear_cka_debiased(a.slice(s![..3, ..]), b.slice(s![..3, ..])),
        Err(SimilarityError::TooFewSamples {
            needed: 4,
            n: 3,
            ..
        })
    ));
    for t in [0.0, -0.5, 1.5, f64::NAN] {
        assert!(matches!(
            Svcca::new().threshold(t),
            Err(SimilarityError::InvalidParameter { .. })
        ));
    }
    // n = d: underdetermined for CCA and PWCCA.
    let sq = a.slice(s![..3, ..]);
    assert!(matches!(
        pwcca(sq, b.slice(s![..3, ..])),
        Err(SimilarityError::Underdetermined {
            metric: "PWCCA",
            n: 3,
            d: 3,
            ..
        })
    ));
    // The report refuses input no metric can use.
    assert!(Similarity::new().report(nan.view(), b.view()).is_err());
}

#[test]
fn small_samples_never_give_nan() {
    for seed in 0..40 {
        let (a, b) = views(200 + seed, 4 + (seed as usize % 4), 2, 3);
        let r = Similarity::new().report(a.view(), b.view()).unwrap();
        for v in [r.cca, r.svcca, r.pwcca, r.cka, r.cka_debiased]
            .into_iter()
            .flatten()
        {
            assert!(v.is_finite());
        }
        if r.cka_debiased.is_none() {
            assert!(r.warnings.iter().any(|w| w.starts_with("cka_debiased")));
        }
    }
}
