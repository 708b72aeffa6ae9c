//! The layouts of BIDS datasets written by other tools than a scanner converter: sessions
//! without their own T1w (nilearn's fake BIDS), a subject-level `anat/` beside session
//! folders, `.nii` and `.nii.gz` copies of one image, `sessions.tsv` variants, no
//! `participants.tsv`, and a BOLD field of view that misses the brain.

use super::tests::covering_bold;
use super::*;
use crate::formats::nifti::{read_nifti, write_nifti};
use crate::neuro::preprocess::{VoxelGrid, resample};
use crate::volume_tests::shared_mri;

fn put(root: &Path, rel: &str, src: &Path) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy(src, &path).unwrap();
}

fn text(root: &Path, rel: &str, body: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

/// The MNI template at 4 mm (small and quick to read), as `.nii.gz` and as `.nii`; the
/// covering BOLD series; the real BOLD series whose own affine misses the brain.
fn images(dir: &Path) -> Option<[PathBuf; 4]> {
    let t1 = read_nifti(shared_mri("mni152_t1_1mm.nii.gz")?).unwrap();
    let grid = VoxelGrid::centred([50, 58, 48], 4.0, [0.0, -18.0, 18.0]).unwrap();
    let small = resample(&t1, &grid).unwrap();
    let (gz, nii) = (dir.join("t1.nii.gz"), dir.join("t1.nii"));
    write_nifti(&small, &gz).unwrap();
    write_nifti(&small, &nii).unwrap();
    let bold = covering_bold(&dir.join("bold.nii.gz"))?;
    Some([gz, nii, bold, shared_mri("bold_4d_small.nii.gz")?])
}

#[test]
fn layouts_of_other_tools_are_read_and_every_choice_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let Some([t1, t1_nii, bold, off_brain]) = images(dir.path()) else {
        eprintln!("skipping: ../shared/data/mri is absent");
        return;
    };
    let root = dir.path().join("bids");
    text(&root, "task-rest_bold.json", r#"{"RepetitionTime": 1.35}"#);
    // nilearn's layout: anat only in some sessions. ses-02 takes ses-01's (a tie with ses-03:
    // the earlier), ses-04 takes ses-03's.
    put(&root, "sub-10/ses-01/anat/sub-10_ses-01_T1w.nii.gz", &t1);
    put(&root, "sub-10/ses-03/anat/sub-10_ses-03_T1w.nii.gz", &t1);
    for ses in ["01", "02", "03", "04"] {
        put(
            &root,
            &format!("sub-10/ses-{ses}/func/sub-10_ses-{ses}_task-rest_bold.nii.gz"),
            &bold,
        );
    }
    // A subject-level anat/ beside session folders.
    put(&root, "sub-11/anat/sub-11_T1w.nii.gz", &t1);
    for ses in ["1", "2"] {
        put(
            &root,
            &format!("sub-11/ses-{ses}/func/sub-11_ses-{ses}_task-rest_bold.nii.gz"),
            &bold,
        );
    }
    // .nii and .nii.gz copies of one T1w; a session label column named `session`.
    put(&root, "sub-12/ses-1/anat/sub-12_ses-1_T1w.nii.gz", &t1);
    put(&root, "sub-12/ses-1/anat/sub-12_ses-1_T1w.nii", &t1_nii);
    put(
        &root,
        "sub-12/ses-1/func/sub-12_ses-1_task-rest_bold.nii.gz",
        &bold,
    );
    text(
        &root,
        "sub-12/sub-12_sessions.tsv",
        "session\tdiagnosis\n1\tAD\n",
    );
    // A sessions.tsv with no session column at all: ignored, said, not fatal.
    text(
        &root,
        "sub-11/sub-11_sessions.tsv",
        "visit\tdiagnosis\nv1\tAD\n",
    );
    // A BOLD series whose field of view misses the brain.
    put(&root, "sub-13/ses-1/anat/sub-13_ses-1_T1w.nii.gz", &t1);
    put(
        &root,
        "sub-13/ses-1/func/sub-13_ses-1_task-rest_bold.nii.gz",
        &off_brain,
    );
    let out = dir.path().join("out");
    let report = bids_to_manifest(&root, &out, &BidsConfig::default(), &|_, _| {}).unwrap();
    let used: Vec<(&str, &str, Option<&str>)> = report
        .used
        .iter()
        .map(|u| (u.subject.as_str(), u.session.as_str(), u.t1_from.as_deref()))
        .collect();
    assert_eq!(
        used,
        [
            ("10", "01", None),
            ("10", "02", Some("ses-01")),
            ("10", "03", None),
            ("10", "04", Some("ses-03")),
            ("11", "1", Some("sub-11/anat (subject level)")),
            ("11", "2", Some("sub-11/anat (subject level)")),
            ("12", "1", None),
        ]
    );
    // Each fallback is said, naming the file used.
    assert!(
        report.used[1]
            .choices
            .iter()
            .any(|c| c.contains("using sub-10_ses-01_T1w.nii.gz from ses-01")),
        "{:?}",
        report.used[1].choices
    );
    assert!(report.used[1].t1.ends_with("sub-10_ses-01_T1w.nii.gz"));
    // One image, not two competing runs; said.
    assert!(
        report.used[6].choices.iter().any(|c| c
            .contains("sub-12_ses-1_T1w.nii and sub-12_ses-1_T1w.nii.gz are copies of one image")),
        "{:?}",
        report.used[6].choices
    );
    assert!(report.used[6].t1.ends_with("sub-12_ses-1_T1w.nii.gz"));
    assert!(
        !report.used[6]
            .choices
            .iter()
            .any(|c| c.contains("candidates"))
    );
    // The `session` column is read (sub-12 is AD from it), with a warning.
    assert_eq!(report.used[6].label, "AD");
    let warned = |needle: &str| report.warnings.iter().any(|w| w.contains(needle));
    assert!(
        warned("read with its `session` column"),
        "{:?}",
        report.warnings
    );
    assert!(
        warned("sub-11_sessions.tsv: ignored"),
        "{:?}",
        report.warnings
    );
    // No participants.tsv: said.
    assert!(warned("no ") && warned("participants.tsv: every session is unlabelled"));
    // The field of view off the brain: skipped, naming both files.
    assert_eq!(report.skipped.len(), 1);
    let r = &report.skipped[0].reason;
    assert!(
        r.contains("of the brain of")
            && r.contains("sub-13_ses-1_T1w.nii.gz")
            && r.contains("sub-13_ses-1_task-rest_bold.nii.gz")
            && r.contains("--min-overlap"),
        "{r}"
    );
    // The threshold is the user's: at 0 the session is used.
    let lax = BidsConfig {
        min_overlap: 0.0,
        ..Default::default()
    };
    let r = bids_to_manifest(&root, &dir.path().join("lax"), &lax, &|_, _| {}).unwrap();
    assert!(r.skipped.is_empty());
    assert!(r.used.iter().find(|u| u.subject == "13").unwrap().overlap < 0.05);
    // Strict: the off-brain session is an error.
    let strict = BidsConfig {
        strict: true,
        ..Default::default()
    };
    let e = bids_to_manifest(&root, &dir.path().join("strict"), &strict, &|_, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("field of view"), "{e}");
}
