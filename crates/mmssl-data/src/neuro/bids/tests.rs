//! A BIDS tree built from the real volumes of `../shared/data/mri` (the MNI152 T1 template, the
//! real 4D resting BOLD series, a 3D statistical map posing as BOLD, a corrupt file), with the
//! good and the bad cases side by side.

use super::maps::sidecar_of;
use super::*;
use crate::formats::nifti::read_nifti;
use crate::neuro::cohort::Manifest;
use crate::neuro::falff::falff;
use crate::neuro::volume::Volume;
use crate::volume_tests::shared_mri;

/// `root/rel`, with its folders, a copy of `src` (or `bytes`).
fn put(root: &Path, rel: &str, src: Option<&Path>, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    match src {
        Some(s) => {
            if std::fs::hard_link(s, &path).is_err() {
                std::fs::copy(s, &path).unwrap();
            }
        }
        None => std::fs::write(&path, bytes).unwrap(),
    }
}

/// The real BOLD series of `bold_4d_small.nii.gz` (10x10x18, 40 frames, TR 1.35 s) on a grid
/// of 18x22x9 mm voxels that covers the MNI brain, written to `path` (the file's own affine
/// puts it in a 2 cm slab beside the head).
pub(crate) fn covering_bold(path: &Path) -> Option<PathBuf> {
    let real = read_nifti(shared_mri("bold_4d_small.nii.gz")?).unwrap();
    let grid = crate::neuro::volume::Affine::scaling([18.0, 22.0, 9.0], [-81.0, -115.0, -68.0]);
    let v = Volume::new_4d(
        real.data().to_vec(),
        real.dims(),
        grid,
        real.tr(),
        "covering bold",
    )
    .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    crate::formats::nifti::write_nifti(&v, path).unwrap();
    Some(path.to_path_buf())
}

/// The tree; `None` where the shared data is absent.
fn tree(root: &Path) -> Option<()> {
    let t1 = shared_mri("mni152_t1_1mm.nii.gz")?;
    let bold = covering_bold(&root.with_extension("bold.nii.gz"))?;
    let map3d = shared_mri("statmap_3mm.nii.gz")?;
    put(
        root,
        "dataset_description.json",
        None,
        br#"{"Name": "test cohort", "BIDSVersion": "1.9.0"}"#,
    );
    put(
        root,
        "participants.tsv",
        None,
        b"participant_id\tdiagnosis\tage\n\
          sub-01\tCN\t70\nsub-02\tDementia\t75\nsub-03\tCN\t71\nsub-04\tn/a\t60\n\
          sub-05\tCN\tn/a\nsub-06\tCN\t66\n",
    );
    // The repetition time of every rest series, inherited from the root.
    put(
        root,
        "task-rest_bold.json",
        None,
        br#"{"RepetitionTime": 1.35, "TaskName": "rest"}"#,
    );
    // sub-01: two sessions, the second with two runs; per-session diagnoses.
    put(
        root,
        "sub-01/sub-01_sessions.tsv",
        None,
        b"session_id\tdiagnosis\nses-1\tCN\nses-2\tDementia\n",
    );
    for ses in ["1", "2"] {
        put(
            root,
            &format!("sub-01/ses-{ses}/anat/sub-01_ses-{ses}_T1w.nii.gz"),
            Some(&t1),
            b"",
        );
    }
    put(
        root,
        "sub-01/ses-1/func/sub-01_ses-1_task-rest_bold.nii.gz",
        Some(&bold),
        b"",
    );
    for run in [1, 2] {
        put(
            root,
            &format!("sub-01/ses-2/func/sub-01_ses-2_task-rest_run-{run}_bold.nii.gz"),
            Some(&bold),
            b"",
        );
    }
    // Another task and a T2w image, which are not ours: ignored.
    put(
        root,
        "sub-01/ses-1/func/sub-01_ses-1_task-nback_bold.nii.gz",
        Some(&bold),
        b"",
    );
    put(
        root,
        "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz",
        Some(&t1),
        b"",
    );
    // sub-02: no session folders.
    put(root, "sub-02/anat/sub-02_T1w.nii.gz", Some(&t1), b"");
    put(
        root,
        "sub-02/func/sub-02_task-rest_bold.nii.gz",
        Some(&bold),
        b"",
    );
    // sub-03: no T1w.
    put(
        root,
        "sub-03/ses-1/func/sub-03_ses-1_task-rest_bold.nii.gz",
        Some(&bold),
        b"",
    );
    // sub-04: a 3D volume where the BOLD series should be.
    put(
        root,
        "sub-04/ses-1/anat/sub-04_ses-1_T1w.nii.gz",
        Some(&t1),
        b"",
    );
    put(
        root,
        "sub-04/ses-1/func/sub-04_ses-1_task-rest_bold.nii.gz",
        Some(&map3d),
        b"",
    );
    // sub-05: its own sidecar says 2 s, the header 1.35 s.
    put(
        root,
        "sub-05/ses-1/anat/sub-05_ses-1_T1w.nii.gz",
        Some(&t1),
        b"",
    );
    put(
        root,
        "sub-05/ses-1/func/sub-05_ses-1_task-rest_bold.nii.gz",
        Some(&bold),
        b"",
    );
    put(
        root,
        "sub-05/ses-1/func/sub-05_ses-1_task-rest_bold.json",
        None,
        br#"{"RepetitionTime": 2.0}"#,
    );
    // sub-06: a corrupt BOLD file.
    put(
        root,
        "sub-06/ses-1/anat/sub-06_ses-1_T1w.nii.gz",
        Some(&t1),
        b"",
    );
    put(
        root,
        "sub-06/ses-1/func/sub-06_ses-1_task-rest_bold.nii.gz",
        None,
        b"not a nifti file",
    );
    Some(())
}

/// A new temporary folder holding the tree at `bids`; `None` (and a note) where the shared
/// data is absent.
fn temporary_tree() -> Option<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bids");
    if tree(&root).is_none() {
        eprintln!("skipping: ../shared/data/mri is absent");
        return None;
    }
    Some((dir, root))
}

fn config() -> BidsConfig {
    BidsConfig {
        label_map: parse_label_map("CN=HC, Dementia=AD").unwrap(),
        covariates: vec!["age".into()],
        ..Default::default()
    }
}

/// [`bids_to_manifest`] of `root` into `out`, without progress reports.
pub(super) fn run(root: &Path, out: &Path, config: &BidsConfig) -> Result<BidsReport> {
    bids_to_manifest(root, out, config, &|_, _| {})
}

/// Asserts that [`run`] fails and that its error names every one of `needles`.
pub(super) fn assert_refused(root: &Path, out: &Path, config: &BidsConfig, needles: &[&str]) {
    crate::tests::assert_error(run(root, out, config), needles);
}

#[test]
fn a_bids_tree_becomes_falff_derivatives_and_a_manifest() {
    let Some((dir, root)) = temporary_tree() else {
        return;
    };
    let out = dir.path().join("deriv");
    let calls = AtomicUsize::new(0);
    let report = bids_to_manifest(&root, &out, &config(), &|done, total| {
        calls.fetch_add(1, Ordering::Relaxed);
        assert!(done <= total && total == 4);
    })
    .unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 4);
    let used: Vec<(&str, &str, &str)> = report
        .used
        .iter()
        .map(|u| (u.subject.as_str(), u.session.as_str(), u.label.as_str()))
        .collect();
    assert_eq!(
        used,
        [
            ("01", "1", "HC"),
            ("01", "2", "AD"),
            ("02", "1", "AD"),
            ("05", "1", "HC")
        ]
    );
    // Raw series: said loudly, once.
    assert_eq!(report.warnings.len(), 1);
    assert!(report.warnings[0].starts_with("NO PREPROCESSING"));
    // The run chosen is said.
    assert!(
        report.used[1]
            .choices
            .iter()
            .any(|c| c.contains("2 candidates")
                && c.contains("took sub-01_ses-2_task-rest_run-1_bold.nii.gz (--runs first)")),
        "{:?}",
        report.used[1].choices
    );
    // sub-05: the sidecar's 2 s against the header's 1.35 s: the sidecar wins, and it is said.
    assert_eq!(report.used[3].tr, 2.0);
    assert!(
        report.used[3].choices[0].contains("contradicts the header's 1.35 s")
            && report.used[3].choices[0].contains("--tr-from sidecar"),
        "{:?}",
        report.used[3].choices
    );
    assert!(report.used.iter().all(|u| u.overlap > 0.95));
    assert_eq!(report.label_column.as_deref(), Some("diagnosis"));
    // The first run of sub-01 ses-2 (runs: first), named with its run.
    assert!(report.used[1].bold[0].ends_with("sub-01_ses-2_task-rest_run-1_bold.nii.gz"));
    assert!(
        report.used[1]
            .falff
            .ends_with("sub-01/ses-2/func/sub-01_ses-2_task-rest_run-1_falff.nii.gz")
    );
    // Every skipped session, with its reason naming the file.
    let skipped: Vec<(&str, &str)> = report
        .skipped
        .iter()
        .map(|s| (s.subject.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    let reason = |sub: &str| skipped.iter().find(|(s, _)| *s == sub).unwrap().1;
    assert!(reason("03").contains("no T1w image"), "{}", reason("03"));
    assert!(
        reason("04").contains("must be 4D") && reason("04").contains("sub-04_ses-1_task-rest_bold"),
        "{}",
        reason("04")
    );
    assert!(
        reason("06").contains("sub-06_ses-1_task-rest_bold.nii.gz"),
        "{}",
        reason("06")
    );

    // The maps are those of `falff` on the series with the sidecar's TR, on the series' grid.
    let bold = read_nifti(&report.used[0].bold[0]).unwrap();
    let expected = falff(
        &bold,
        &FalffConfig {
            tr: Some(1.35),
            ..Default::default()
        },
    )
    .unwrap();
    let written = read_nifti(&report.used[0].falff).unwrap();
    assert_eq!(written.dims(), [10, 10, 18, 1]);
    assert_eq!(written.data(), expected.falff.data());
    assert_eq!(written.affine(), expected.falff.affine());
    assert!(written.data().iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(written.data().iter().any(|&v| v > 0.0));
    let alff = read_nifti(&report.used[0].alff).unwrap();
    assert_eq!(alff.data(), expected.alff.data());
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sidecar_of(&report.used[0].falff)).unwrap())
            .unwrap();
    assert_eq!(side["RepetitionTime"], 1.35);
    assert_eq!(
        side["Sources"][0],
        "bids:raw:sub-01/ses-1/func/sub-01_ses-1_task-rest_bold.nii.gz"
    );
    let description: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("dataset_description.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(description["DatasetType"], "derivative");
    assert_eq!(description["Name"], "ALFF and fALFF of test cohort");

    // The manifest reads as a cohort manifest, covariates included.
    let manifest = Manifest::read(&report.manifest).unwrap();
    assert_eq!(manifest.rows().len(), 4);
    assert_eq!(manifest.covariate_names(), ["age"]);
    assert_eq!(manifest.covariate(2, "age"), Some("75"));
    assert_eq!(manifest.rows()[1].diagnosis, Diagnosis::Ad);
    assert_eq!(manifest.rows()[0].falff, report.used[0].falff);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("bids_report.json")).unwrap())
            .unwrap();
    assert_eq!(saved["report"]["skipped"].as_array().unwrap().len(), 3);

    // Again: everything is reused; with overwrite, computed again.
    assert_eq!(
        run(&root, &out, &config()).unwrap().computed_reused(),
        (0, 4)
    );
    let again = BidsConfig {
        overwrite: true,
        ..config()
    };
    assert_eq!(run(&root, &out, &again).unwrap().computed_reused(), (4, 0));
    // Other settings are not reused.
    let band = BidsConfig {
        falff: FalffConfig {
            band: [0.01, 0.08],
            ..Default::default()
        },
        ..config()
    };
    assert_eq!(run(&root, &out, &band).unwrap().computed_reused(), (4, 0));
    // The header's TR on request: sub-05's maps are computed again, with 1.35 s.
    let header = BidsConfig {
        tr_from: TrSource::Header,
        ..band
    };
    let r = run(&root, &out, &header).unwrap();
    assert_eq!(r.computed_reused(), (1, 3));
    assert_eq!(r.used[3].tr as f32, 1.35);
}

#[test]
fn several_runs_are_averaged_refused_or_chosen() {
    let Some((dir, root)) = temporary_tree() else {
        return;
    };
    // The tree in `dir/NAME` with the runs of a session chosen by `runs`.
    let with_runs = |name: &str, runs: RunChoice| {
        let config = BidsConfig { runs, ..config() };
        run(&root, &dir.path().join(name), &config).unwrap()
    };
    let report = with_runs("mean", RunChoice::Mean);
    let ses2 = &report.used[1];
    assert_eq!(ses2.bold.len(), 2);
    // The two runs are the same series: their mean is that series' map. No run entity.
    assert!(
        ses2.falff.ends_with("sub-01_ses-2_task-rest_falff.nii.gz"),
        "{:?}",
        ses2.falff
    );
    let one = read_nifti(&report.used[0].falff).unwrap();
    let avg = read_nifti(&ses2.falff).unwrap();
    assert_eq!(one.data(), avg.data());

    let last = with_runs("last", RunChoice::Last);
    assert!(last.used[1].bold[0].ends_with("sub-01_ses-2_task-rest_run-2_bold.nii.gz"));

    let refuse = with_runs("refuse", RunChoice::Refuse);
    let r = refuse.skipped.iter().find(|s| s.subject == "01").unwrap();
    assert!(
        r.reason.contains("2 candidates") && r.reason.contains("run-2"),
        "{}",
        r.reason
    );

    // Strict: the first unusable session is an error naming it.
    let strict = BidsConfig {
        strict: true,
        ..config()
    };
    assert_refused(
        &root,
        &dir.path().join("strict"),
        &strict,
        &["sub-03", "no T1w"],
    );
}

#[test]
fn malformed_trees_and_labels_are_clear_errors() {
    let Some((dir, root)) = temporary_tree() else {
        return;
    };
    let out = dir.path().join("out");
    // A value of the label column that means nothing.
    let unmapped = BidsConfig {
        label_map: BTreeMap::new(),
        ..config()
    };
    assert_refused(
        &root,
        &out,
        &unmapped,
        &["`CN`", "`Dementia`", "--label-map"],
    );
    // A label or covariate column that does not exist.
    let dx2 = BidsConfig {
        label_column: Some("dx2".into()),
        ..config()
    };
    assert_refused(&root, &out, &dx2, &["no label column `dx2`"]);
    let weight = BidsConfig {
        covariates: vec!["weight".into()],
        ..config()
    };
    assert_refused(&root, &out, &weight, &["no covariate column `weight`"]);
    assert!(
        parse_label_map("CN=HC,AD")
            .unwrap_err()
            .contains("`AD` is not VALUE=CLASS")
    );
    assert!(
        parse_label_map("CN=healthy")
            .unwrap_err()
            .contains("healthy")
    );
    // An explicit TR is refused: the sidecars give it.
    let tr = BidsConfig {
        falff: FalffConfig {
            tr: Some(2.0),
            ..Default::default()
        },
        ..config()
    };
    assert_refused(&root, &out, &tr, &["sidecar"]);
    // Not a BIDS root; no subjects.
    assert_refused(&dir.path().join("none"), &out, &config(), &["not a folder"]);
    std::fs::create_dir_all(dir.path().join("empty")).unwrap();
    assert_refused(
        &dir.path().join("empty"),
        &out,
        &config(),
        &["no subject folders"],
    );
    // Without the inherited sidecar the header gives the repetition time, and that is said.
    std::fs::remove_file(root.join("task-rest_bold.json")).unwrap();
    let r = run(&root, &out, &config()).unwrap();
    assert_eq!(r.used[0].tr as f32, 1.35);
    assert!(
        r.used[0].choices[0].contains("no RepetitionTime in its sidecar; the header's 1.35 s"),
        "{:?}",
        r.used[0].choices
    );
    // A file name whose entities do not parse.
    put(&root, "sub-07/anat/sub-07_acq-a-b_T1w.nii.gz", None, b"");
    assert_refused(&root, &out, &config(), &["not a BIDS file name", "acq-a-b"]);
    std::fs::remove_dir_all(root.join("sub-07")).unwrap();
    // Entities that contradict the folder.
    put(&root, "sub-08/anat/sub-09_T1w.nii.gz", None, b"");
    assert_refused(&root, &out, &config(), &["do not match its folder"]);
}

#[test]
fn names_parse_into_entities() {
    let n = BidsName::parse(Path::new("sub-01_ses-2_task-rest_run-1_bold.nii.gz")).unwrap();
    assert_eq!(n.get("task"), Some("rest"));
    assert_eq!(
        (n.suffix.as_str(), n.extension.as_str()),
        ("bold", ".nii.gz")
    );
    for bad in [
        "sub-01_ses_T1w.nii",
        "sub-01_sub-02_T1w.nii",
        "sub-0.1_T1w.nii",
        "sub-01_.nii",
    ] {
        assert!(BidsName::parse(Path::new(bad)).is_err(), "{bad}");
    }
}
