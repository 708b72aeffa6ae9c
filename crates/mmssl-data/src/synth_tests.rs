//! Tests of the synthetic cohort's shared disease stage (`SynthConfig::stage` and
//! `hc_stage`), on the real MNI template of `../shared/data/mri` (skipped with a message when
//! absent).

use super::*;
use crate::volume_tests::shared_template;
use std::path::Path;

/// The planted effects of a synthetic session, measured in world space: T1 near the hippocampi
/// over the whole brain's mean, and posterior fALFF over the brain's mean.
pub(crate) fn group_effects(t: &Volume, f: &Volume, brain: &[bool]) -> (f64, f64) {
    let near = |c: [f64; 3], radius: f64| -> Vec<usize> {
        (0..t.frame_len())
            .filter(|&v| {
                let [nx, ny, _] = t.shape();
                let w = t.world(
                    (v % nx) as f64,
                    ((v / nx) % ny) as f64,
                    (v / (nx * ny)) as f64,
                );
                brain[v] && (0..3).map(|a| (w[a] - c[a]).powi(2)).sum::<f64>() < radius * radius
            })
            .collect()
    };
    let mean =
        |d: &[f32], idx: &[usize]| idx.iter().map(|&i| d[i] as f64).sum::<f64>() / idx.len() as f64;
    let all: Vec<usize> = (0..t.frame_len()).filter(|&v| brain[v]).collect();
    let hip: Vec<usize> = HIPPOCAMPI_MNI.iter().flat_map(|&c| near(c, 8.0)).collect();
    let post = near(POSTERIOR_MNI, 12.0);
    (
        mean(t.data(), &hip) / mean(t.data(), &all),
        mean(f.data(), &post) / mean(f.data(), &all),
    )
}

#[test]
fn a_shared_stage_couples_the_two_modalities_effects() {
    let Some((t1, gm)) = shared_template() else {
        return;
    };
    // Effects per AD subject: (T1 hippocampal ratio, posterior fALFF ratio) of its session.
    let effects = |stage: Option<[f64; 2]>| {
        synth_subjects(&t1, &gm, stage, None)
            .into_iter()
            .filter(|s| s.diagnosis == Diagnosis::Ad)
            .map(|s| s.effects)
            .collect::<Vec<_>>()
    };
    let spread = |e: &[(f64, f64)], k: usize| {
        let v: Vec<f64> = e.iter().map(|p| if k == 0 { p.0 } else { p.1 }).collect();
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    };
    let staged = effects(Some([0.2, 1.5]));
    let independent = effects(None);
    assert_eq!((staged.len(), independent.len()), (8, 8));
    let (rs, ri) = (corr(&staged), corr(&independent));
    eprintln!("AD effects, T1 against fALFF: r = {rs:.3} with a shared stage, {ri:.3} without");
    // One stage scales both effects: the more hippocampal loss (a lower T1 ratio), the lower
    // the posterior fALFF, across AD subjects.
    assert!(rs > 0.8, "shared stage: r = {rs}");
    assert!(
        rs > ri + 0.2,
        "independent strengths: r = {ri} against {rs}"
    );
    // Stages 0.2-1.5 spread the effects far wider than the 0.8-1.2 strengths.
    for k in 0..2 {
        assert!(
            spread(&staged, k) > 2.0 * spread(&independent, k),
            "modality {k}: {} against {}",
            spread(&staged, k),
            spread(&independent, k)
        );
    }
    // A stage range must be ordered and non-negative.
    let mut bad = SynthConfig::new(&t1, Some(gm));
    bad.stage = Some([1.0, 0.5]);
    let e = synth_cohort(&bad, tempfile::tempdir().unwrap().path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("stage"), "{e}");
}

/// The correlation of the pairs' two values.
fn corr(e: &[(f64, f64)]) -> f64 {
    let n = e.len() as f64;
    let (ma, mb) = (
        e.iter().map(|p| p.0).sum::<f64>() / n,
        e.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let cov: f64 = e.iter().map(|p| (p.0 - ma) * (p.1 - mb)).sum();
    let va: f64 = e.iter().map(|p| (p.0 - ma).powi(2)).sum();
    let vb: f64 = e.iter().map(|p| (p.1 - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// One subject of a cohort with one session per subject.
struct Subject {
    diagnosis: Diagnosis,
    /// (T1 hippocampal ratio, posterior fALFF ratio), from [`group_effects`].
    effects: (f64, f64),
    t1: Vec<f32>,
    falff: Vec<f32>,
}

/// The subjects of a 16-subject cohort with one session each.
fn synth_subjects(
    t1: &Path,
    gm: &Path,
    stage: Option<[f64; 2]>,
    hc_stage: Option<[f64; 2]>,
) -> Vec<Subject> {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = SynthConfig::new(t1, Some(gm.to_path_buf()));
    cfg.subjects = 16;
    cfg.sessions = [1, 1];
    cfg.atrophy = 0.6;
    cfg.falff_drop = 0.6;
    cfg.stage = stage;
    cfg.hc_stage = hc_stage;
    cfg.seed = 3;
    let report = synth_cohort(&cfg, tmp.path()).unwrap();
    let m = Manifest::read(&report.manifest).unwrap();
    m.rows()
        .iter()
        .map(|r| {
            let t = read_nifti(&r.t1).unwrap();
            let f = read_nifti(&r.falff).unwrap();
            let brain: Vec<bool> = t.data().iter().map(|&v| v > 0.0).collect();
            Subject {
                diagnosis: r.diagnosis,
                effects: group_effects(&t, &f, &brain),
                t1: t.into_data(),
                falff: f.into_data(),
            }
        })
        .collect()
}

#[test]
fn an_hc_stage_range_puts_every_subject_on_one_disease_continuum() {
    let Some((t1, gm)) = shared_template() else {
        return;
    };
    let default = synth_subjects(&t1, &gm, Some([0.5, 1.5]), None);
    let continuum = synth_subjects(&t1, &gm, Some([0.5, 1.5]), Some([0.0, 0.5]));
    assert_eq!((default.len(), continuum.len()), (16, 16));
    let t1_ratios = |c: &[Subject], d: Diagnosis| {
        c.iter()
            .filter(|s| s.diagnosis == d)
            .map(|s| s.effects.0)
            .collect::<Vec<f64>>()
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    for (a, b) in default.iter().zip(&continuum) {
        assert_eq!(a.diagnosis, b.diagnosis);
        if a.diagnosis == Diagnosis::Ad {
            // AD subjects draw exactly as before: the HC range changes only HC volumes.
            assert!(a.t1 == b.t1 && a.falff == b.falff, "an AD subject changed");
        } else {
            assert!(a.t1 != b.t1, "an HC subject kept its T1");
        }
    }
    let (hc_default, hc_cont) = (
        t1_ratios(&default, Diagnosis::Hc),
        t1_ratios(&continuum, Diagnosis::Hc),
    );
    let ad = t1_ratios(&continuum, Diagnosis::Ad);
    eprintln!(
        "hippocampal T1 ratio: HC {:.3} by default, {:.3} on the continuum; AD {:.3}",
        mean(&hc_default),
        mean(&hc_cont),
        mean(&ad)
    );
    // Stages 0-0.5 give HC a graded loss: lower on average than the default's 0-0.075, and
    // still less than AD's 0.5-1.5.
    assert!(mean(&hc_cont) < mean(&hc_default) - 0.02);
    assert!(mean(&ad) < mean(&hc_cont) - 0.05);
    // One stage scales both modalities' effects for HC too. An HC subject draws the same
    // numbers in both cohorts, only its stage differs (by a factor set by its one uniform
    // draw), so how much its T1 effect and its fALFF effect deepen goes together.
    let deltas: Vec<(f64, f64)> = default
        .iter()
        .zip(&continuum)
        .filter(|(a, _)| a.diagnosis == Diagnosis::Hc)
        .map(|(a, b)| (a.effects.0 - b.effects.0, a.effects.1 - b.effects.1))
        .collect();
    let r = corr(&deltas);
    eprintln!("HC subjects, deeper T1 effect against deeper fALFF effect: r = {r:.3}");
    assert!(deltas.iter().all(|d| d.0 > 0.0 && d.1 > 0.0), "{deltas:?}");
    assert!(r > 0.9, "r = {r}");
    // The range is checked, and it needs a stage.
    let mut bad = SynthConfig::new(&t1, Some(gm.clone()));
    bad.stage = Some([0.5, 1.5]);
    bad.hc_stage = Some([0.5, 0.1]);
    let dir = tempfile::tempdir().unwrap();
    let e = synth_cohort(&bad, dir.path()).unwrap_err().to_string();
    assert!(e.contains("hc_stage"), "{e}");
    bad.stage = None;
    bad.hc_stage = Some([0.0, 0.5]);
    let e = synth_cohort(&bad, dir.path()).unwrap_err().to_string();
    assert!(e.contains("hc_stage") && e.contains("needs `stage`"), "{e}");
}
