//! Tests of manifests, subject splits, cohort sets, [`VolumeCohort`] and the synthetic cohort
//! generator (the latter on the real MNI template of `../shared/data/mri`, skipped with a
//! message when absent).

use super::*;
use crate::synth_tests::group_effects;
use crate::volume_tests::shared_template;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// A skull-stripped-looking test volume: an ellipsoid of varying intensity at 3 mm.
fn head(scale: f32, shift: f64) -> Volume {
    let shape = [20, 22, 18];
    let c = [9.5 + shift, 10.5, 8.5];
    let mut data = Vec::new();
    for k in 0..shape[2] {
        for j in 0..shape[1] {
            for i in 0..shape[0] {
                let d2 = ((i as f64 - c[0]) / 7.0).powi(2)
                    + ((j as f64 - c[1]) / 8.0).powi(2)
                    + ((k as f64 - c[2]) / 6.0).powi(2);
                let v = if d2 < 1.0 {
                    scale * (10.0 + 20.0 * (1.0 - d2) as f32 + ((i + 2 * j + 3 * k) % 7) as f32)
                } else {
                    0.0
                };
                data.push(v);
            }
        }
    }
    Volume::new(
        data,
        shape,
        Affine::scaling([3.0; 3], [-30.0, -33.0, -27.0]),
        "head",
    )
    .unwrap()
}

/// Writes `n` subjects (alternating HC, AD; subject 0 with 2 sessions) and a manifest.
fn toy_cohort(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut csv = String::from("subject,session,t1,falff,label,age\n");
    for s in 0..n {
        let sessions = if s == 0 { 2 } else { 1 };
        for ses in 0..sessions {
            let t1 = format!("s{s}_{ses}_t1.nii.gz");
            let falff = format!("s{s}_{ses}_falff.nii");
            let v = head(1.0 + 0.1 * s as f32, 0.3 * ses as f64);
            write_nifti(&v, dir.join(&t1)).unwrap();
            let f = v
                .with_data(v.data().iter().map(|x| x / 100.0).collect(), v.dims())
                .unwrap();
            write_nifti(&f, dir.join(&falff)).unwrap();
            let label = match s % 3 {
                0 => "HC",
                1 => "AD",
                _ => "",
            };
            csv.push_str(&format!(
                "sub{s},ses{ses},{t1},{falff},{label},{}\n",
                60 + s
            ));
        }
    }
    let p = dir.join("manifest.csv");
    std::fs::write(&p, csv).unwrap();
    p
}

#[test]
fn bad_manifests_name_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("a.nii.gz"), b"x").unwrap();
    std::fs::write(dir.join("b.nii.gz"), b"x").unwrap();
    let check = |name: &str, text: &str, line: u64, needle: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        match Manifest::read(&p) {
            Err(DataError::Manifest {
                path,
                line: l,
                problem,
            }) => {
                assert_eq!(path, p);
                assert_eq!(l, line, "{name}: {problem}");
                assert!(problem.contains(needle), "{name}: {problem}");
            }
            other => panic!("{name}: expected a manifest error, got {other:?}"),
        }
    };
    let head = "subject,session,t1,falff,label\n";
    check(
        "nolabel.csv",
        "subject,session,t1,falff\ns,1,a.nii.gz,b.nii.gz\n",
        1,
        "`label`",
    );
    check(
        "missing.csv",
        &format!("{head}s,1,a.nii.gz,b.nii.gz,HC\ns,2,a.nii.gz,c.nii.gz,AD\n"),
        3,
        "c.nii.gz does not exist",
    );
    check(
        "dup.csv",
        &format!(
            "{head}s,1,a.nii.gz,b.nii.gz,HC\nt,1,a.nii.gz,b.nii.gz,HC\ns,1,a.nii.gz,b.nii.gz,AD\n"
        ),
        4,
        "first on line 2",
    );
    check(
        "label.csv",
        &format!("{head}s,1,a.nii.gz,b.nii.gz,MCI\n"),
        2,
        "unknown label `MCI`",
    );
    check(
        "short.csv",
        &format!("{head}s,1,a.nii.gz\n"),
        2,
        "malformed",
    );
    check("empty.csv", head, 1, "no session");
    // Line numbers are the file's lines, blank lines and CRLF endings included.
    check(
        "blank.csv",
        &format!("{head}\ns,1,a.nii.gz,b.nii.gz,HC\n\nt,1,a.nii.gz,b.nii.gz,MCI\n"),
        5,
        "unknown label `MCI`",
    );
    check(
        "crlf.csv",
        "subject,session,t1,falff,label\r\ns,1,a.nii.gz,b.nii.gz,HC\r\nt,1,a.nii.gz,c.nii.gz,HC\r\n",
        3,
        "c.nii.gz does not exist",
    );
    check(
        "nosubject.csv",
        &format!("{head},1,a.nii.gz,b.nii.gz,HC\n"),
        2,
        "empty subject",
    );
    assert!(matches!(
        Manifest::read(dir.join("absent.csv")),
        Err(DataError::Io { .. })
    ));
    // Columns in any order and case, labels in any case, extra columns kept.
    let p = dir.join("ok.csv");
    std::fs::write(
        &p,
        "Label,FALFF,site,T1,Subject,Session\nhc,b.nii.gz,x,a.nii.gz,s,1\n,b.nii.gz,y,a.nii.gz,t,1\nOther,b.nii.gz,z,a.nii.gz,u,1\n",
    )
    .unwrap();
    let m = Manifest::read(&p).unwrap();
    assert_eq!(m.rows().len(), 3);
    assert_eq!(m.rows()[0].diagnosis, Diagnosis::Hc);
    assert_eq!(m.rows()[1].diagnosis, Diagnosis::Unlabelled);
    assert_eq!(m.rows()[2].diagnosis, Diagnosis::Other);
    assert_eq!(m.rows()[0].t1, dir.join("a.nii.gz"));
    assert_eq!(m.covariate_names(), ["site"]);
    assert_eq!(m.covariate(1, "site"), Some("y"));
    assert_eq!(m.rows()[2].line, 4);
}

/// A manifest of `n` subjects without files: labels cycle HC, AD, other, unlabelled;
/// subjects have 1-3 sessions.
fn paper_manifest(n: usize) -> Manifest {
    let mut csv = String::from("subject,session,t1,falff,label\n");
    for s in 0..n {
        for ses in 0..1 + s % 3 {
            let label = ["HC", "AD", "other", ""][s % 4];
            csv.push_str(&format!("sub{s:03},ses{ses},t.nii,f.nii,{label}\n"));
        }
    }
    Manifest::parse("mem.csv", csv.as_bytes(), Path::new("/data"), false).unwrap()
}

#[test]
fn subject_splits_are_disjoint_stratified_and_seeded() {
    let m = paper_manifest(103);
    let split = split_subjects(&m, 5, 0.2, 7).unwrap();
    assert_eq!(split, split_subjects(&m, 5, 0.2, 7).unwrap());
    assert_ne!(split, split_subjects(&m, 5, 0.2, 8).unwrap());
    let mut all = BTreeSet::new();
    for s in split.folds.iter().flatten().chain(&split.holdout) {
        assert!(all.insert(s.clone()), "{s} is in two sets");
    }
    assert_eq!(all.len(), 103);
    // Hold-out: 20% of each diagnosis (26, 26, 26, 25 subjects -> 5, 5, 5, 5).
    let diag: std::collections::HashMap<String, Diagnosis> = m
        .subjects()
        .into_iter()
        .map(|s| (s.id, s.diagnosis))
        .collect();
    let count = |ids: &[String], d| ids.iter().filter(|i| diag[*i] == d).count();
    for d in [
        Diagnosis::Hc,
        Diagnosis::Ad,
        Diagnosis::Other,
        Diagnosis::Unlabelled,
    ] {
        assert_eq!(count(&split.holdout, d), 5, "{d:?}");
        for f in &split.folds {
            let c = count(f, d);
            assert!((4..=5).contains(&c), "{d:?}: {c}");
        }
    }
    for f in &split.folds {
        assert!((16..=17).contains(&f.len()), "{}", f.len());
    }
    let train = split.train(2).unwrap();
    let val = split.validation(2).unwrap();
    assert_eq!(train.len() + val.len() + split.holdout.len(), 103);
    assert!(train.iter().all(|s| !val.contains(s)));
    assert!(split.train(5).is_err());
    assert!(split_subjects(&m, 1, 0.2, 0).is_err());
    assert!(split_subjects(&m, 5, 1.0, 0).is_err());
    assert!(split_subjects(&paper_manifest(3), 5, 0.0, 0).is_err());
    let tmp = tempfile::tempdir().unwrap();
    split.save(tmp.path().join("split.json")).unwrap();
    assert_eq!(
        CohortSplit::load(tmp.path().join("split.json")).unwrap(),
        split
    );
}

#[test]
fn pretraining_evaluation_and_balanced_sets() {
    let m = paper_manifest(40);
    let subjects: Vec<String> = m.subjects().into_iter().map(|s| s.id).collect();
    let pre = pretraining_items(&m, &subjects).unwrap();
    assert_eq!(pre.len(), m.rows().len());
    let eval = evaluation_items(&m, &subjects).unwrap();
    // One pair per HC/AD subject: 10 + 10.
    assert_eq!(eval.len(), 20);
    let rows: BTreeSet<&str> = eval
        .iter()
        .map(|i| m.rows()[i.row].subject.as_str())
        .collect();
    assert_eq!(rows.len(), 20);
    for it in &eval {
        let r = &m.rows()[it.row];
        assert_eq!(it.label, r.diagnosis.class());
        assert!(it.label.is_some());
        assert_eq!(r.session, "ses0");
    }
    // Upsampling 3 AD against 7 HC: 7 + 7, every AD item at least twice, seeded.
    let items: Vec<CohortItem> = (0..10)
        .map(|row| CohortItem {
            row,
            label: Some(usize::from(row >= 7)),
        })
        .chain([CohortItem {
            row: 99,
            label: None,
        }])
        .collect();
    let up = balanced_upsample(&items, 1);
    assert_eq!(up, balanced_upsample(&items, 1));
    assert_eq!(up.iter().filter(|i| i.label == Some(0)).count(), 7);
    assert_eq!(up.iter().filter(|i| i.label == Some(1)).count(), 7);
    assert_eq!(up.iter().filter(|i| i.label.is_none()).count(), 1);
    for r in 7..10 {
        let c = up.iter().filter(|i| i.row == r).count();
        assert!((2..=3).contains(&c), "{r}: {c}");
    }
    assert!(pretraining_items(&m, &["nobody".to_string()]).is_err());
}

#[test]
fn volume_cohort_preprocesses_caches_and_augments_pairs() {
    let tmp = tempfile::tempdir().unwrap();
    let path = toy_cohort(tmp.path(), 6);
    let m = Manifest::read(&path).unwrap();
    assert_eq!(m.rows().len(), 7);
    let pipeline = VolumePipeline {
        side: 16,
        ..VolumePipeline::default()
    };
    let vols = CohortVolumes::new(m.clone(), pipeline.clone()).unwrap();
    let train_rows: Vec<usize> = (0..4).collect();
    let st = vols.fit_standardizers(&train_rows).unwrap();
    assert_eq!(st[0].training_volumes, 4);
    let vols = Arc::new(vols.with_standardizers(st.clone()));
    let a = vols.prepared(0).unwrap();
    assert!(
        Arc::ptr_eq(&a, &vols.prepared(0).unwrap()),
        "the second load is cached"
    );
    assert_eq!(a.grid.shape, [16; 3]);
    assert_eq!(a.t1.len(), 16 * 16 * 16);
    // Both modalities share the mask; inside it each is z-normalised.
    let inside: Vec<usize> = (0..a.t1.len()).filter(|&i| a.t1[i] != 0.0).collect();
    assert!(inside.len() > 500);
    let mean = inside.iter().map(|&i| a.falff[i] as f64).sum::<f64>() / inside.len() as f64;
    assert!(mean.abs() < 1e-4);
    let subjects: Vec<String> = m.subjects().into_iter().map(|s| s.id).collect();
    let aug = AugmentConfig {
        pad: 2,
        crop: [16; 3],
        flip: [true; 3],
        pairing: AugmentPairing::Paired,
    };
    let pre = VolumeCohort::pretraining(vols.clone(), &subjects, Some(aug.clone()), 5).unwrap();
    assert_eq!(pre.len(), 7);
    assert_eq!(pre.shape(0), vec![1, 16, 16, 16]);
    assert_eq!(pre.modalities(), 2);
    let x = pre.get(0, 0).unwrap();
    assert_eq!(x, pre.get(0, 0).unwrap());
    let other_epochs: Vec<PairedItem> = (1..6).map(|e| pre.get(0, e).unwrap()).collect();
    assert!(
        other_epochs.iter().any(|y| *y != x),
        "augmentation varies with the epoch"
    );
    // The same draw on both modalities: their non-zero supports coincide.
    for item in other_epochs.iter().chain([&x]) {
        for (p, q) in item.views[0].iter().zip(&item.views[1]) {
            assert_eq!(*p == 0.0, *q == 0.0);
        }
    }
    // Separate draws: T1 gets the paired draw (the first from the item's generator), fALFF a
    // draw of its own, so in some epoch the supports differ.
    let separate = AugmentConfig {
        pairing: AugmentPairing::Separate,
        ..aug.clone()
    };
    let sep = VolumeCohort::pretraining(vols.clone(), &subjects, Some(separate), 5).unwrap();
    let mut misaligned = 0;
    for e in 0..6 {
        let (p, q) = (pre.get(0, e).unwrap(), sep.get(0, e).unwrap());
        assert_eq!(p.views[0], q.views[0], "epoch {e}: T1 keeps the first draw");
        assert_eq!(q, sep.get(0, e).unwrap(), "separate draws are seeded");
        let differ = q.views[0]
            .iter()
            .zip(&q.views[1])
            .any(|(a, b)| (*a == 0.0) != (*b == 0.0));
        misaligned += differ as usize;
    }
    assert!(
        misaligned >= 5,
        "separate draws misalign T1 and fALFF: {misaligned} of 6"
    );
    // Labelled sets: HC/AD subjects only (sub0, sub1, sub3, sub4), one pair each.
    let lab = VolumeCohort::labelled(vols.clone(), &subjects, false, None, 0).unwrap();
    assert_eq!(lab.len(), 4);
    assert_eq!(
        (0..4).map(|i| lab.label(i).unwrap()).collect::<Vec<_>>(),
        vec![0, 1, 0, 1]
    );
    assert_eq!(lab.get(0, 0).unwrap().views[0], a.t1);
    #[cfg(feature = "burn")]
    {
        let device = burn::tensor::Device::flex();
        let batch = load_batch(&lab, &[0, 1, 2], 0, &device).unwrap();
        match &batch.views[1] {
            ViewBatch::Volumes(t) => assert_eq!(t.dims(), [3, 1, 16, 16, 16]),
            other => panic!("expected volumes, got {other:?}"),
        }
    }
    // Errors carry the file: a corrupt volume.
    std::fs::write(tmp.path().join("s5_0_t1.nii.gz"), b"garbage").unwrap();
    let fresh = Arc::new(CohortVolumes::new(m.clone(), pipeline).unwrap());
    let c = VolumeCohort::pretraining(fresh, &subjects, None, 0).unwrap();
    let e = c.get(6, 0).unwrap_err().to_string();
    assert!(e.contains("s5_0_t1.nii.gz"), "{e}");
}

#[test]
fn synthetic_cohort_has_the_group_effect_and_loads_back() {
    let Some((t1, gm)) = shared_template() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = SynthConfig::new(&t1, Some(gm.clone()));
    cfg.subjects = 6;
    cfg.seed = 11;
    let report = synth_cohort(&cfg, tmp.path()).unwrap();
    assert_eq!((report.hc, report.ad, report.subjects), (3, 3, 6));
    assert_eq!(report.shape, [66, 78, 63]);
    let m = Manifest::read(&report.manifest).unwrap();
    assert_eq!(m.rows().len(), report.sessions);
    assert!((6..=18).contains(&report.sessions));
    assert_eq!(m.covariate_names(), ["age", "sex"]);
    assert_eq!(m.subjects().len(), 6);
    // The group effect, measured in world space on the written volumes: the T1 intensity near
    // the hippocampi relative to the whole brain, and posterior fALFF relative to the brain.
    let (mut hc, mut ad) = (Vec::new(), Vec::new());
    for r in m.rows() {
        let t = read_nifti(&r.t1).unwrap();
        let f = read_nifti(&r.falff).unwrap();
        assert_eq!(t.shape(), [66, 78, 63]);
        assert_eq!(t.voxel_size(), [3.0; 3]);
        let brain: Vec<bool> = t.data().iter().map(|&v| v > 0.0).collect();
        assert!(f.data().iter().zip(&brain).all(|(&v, &b)| if b {
            v > 0.0 && v < 1.0
        } else {
            v == 0.0
        }));
        let stats = group_effects(&t, &f, &brain);
        match r.diagnosis {
            Diagnosis::Hc => hc.push(stats),
            Diagnosis::Ad => ad.push(stats),
            other => panic!("unexpected {other:?}"),
        }
    }
    let avg = |v: &[(f64, f64)], k: usize| {
        v.iter()
            .map(|s| if k == 0 { s.0 } else { s.1 })
            .sum::<f64>()
            / v.len() as f64
    };
    eprintln!(
        "T1 hippocampal ratio HC {:.3} AD {:.3}; posterior fALFF ratio HC {:.3} AD {:.3}",
        avg(&hc, 0),
        avg(&ad, 0),
        avg(&hc, 1),
        avg(&ad, 1)
    );
    assert!(
        avg(&ad, 0) < avg(&hc, 0) - 0.05,
        "T1: AD {} vs HC {}",
        avg(&ad, 0),
        avg(&hc, 0)
    );
    assert!(
        avg(&ad, 1) < avg(&hc, 1) - 0.05,
        "fALFF: AD {} vs HC {}",
        avg(&ad, 1),
        avg(&hc, 1)
    );
    let max_ad = ad.iter().map(|s| s.0).fold(f64::MIN, f64::max);
    let min_hc = hc.iter().map(|s| s.0).fold(f64::MAX, f64::min);
    assert!(
        max_ad < min_hc,
        "every AD session shows more hippocampal loss than every HC one"
    );
    // The cohort loader reads it back into 64^3 pairs.
    let vols = Arc::new(CohortVolumes::new(m.clone(), VolumePipeline::default()).unwrap());
    let subjects: Vec<String> = m.subjects().into_iter().map(|s| s.id).collect();
    let lab =
        VolumeCohort::labelled(vols, &subjects, true, Some(AugmentConfig::default()), 0).unwrap();
    assert_eq!(lab.len(), 6);
    let item = lab.get(1, 0).unwrap();
    assert_eq!(item.views[0].len(), 64 * 64 * 64);
    assert!(item.views.iter().flatten().all(|v| v.is_finite()));
    // Seeded: the same configuration writes the same files.
    let tmp2 = tempfile::tempdir().unwrap();
    let mut small = cfg.clone();
    small.subjects = 2;
    let r2 = synth_cohort(&small, tmp2.path()).unwrap();
    let r3 = synth_cohort(&small, tmp.path().join("again")).unwrap();
    let a = std::fs::read_to_string(&r2.manifest).unwrap();
    assert_eq!(a, std::fs::read_to_string(&r3.manifest).unwrap());
    let first = Manifest::read(&r2.manifest).unwrap().rows()[0].t1.clone();
    let again = Manifest::read(&r3.manifest).unwrap().rows()[0].t1.clone();
    assert_eq!(
        read_nifti(first).unwrap().data(),
        read_nifti(again).unwrap().data()
    );
    let mut bad = cfg.clone();
    bad.subjects = 1;
    assert!(synth_cohort(&bad, tmp.path()).is_err());
}
