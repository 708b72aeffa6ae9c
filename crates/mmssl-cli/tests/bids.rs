//! `mmssl data bids` end to end: a BIDS tree built from the real volumes of
//! `../shared/data/mri` becomes fALFF derivatives and a manifest, on which `mmssl run --dataset
//! oasis3` trains and evaluates; skipped sessions are listed; bad input exits 2 naming it.

mod common;
use common::scratch;

use common::{
    arg, assert_contains_all, assert_fails, assert_ok, mmssl, read_json, run_on_cohort, stdout,
};
use std::path::{Path, PathBuf};

fn mri() -> Option<PathBuf> {
    let mri = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mri");
    if mri.exists() {
        Some(mri)
    } else {
        eprintln!("skipping: {} is absent", mri.display());
        None
    }
}

/// Frames `first..first + 28` of the real resting BOLD series (10x10x18 voxels, 40 frames,
/// TR 1.35 s) on a coarse grid spanning the MNI152 template's box, so that its maps overlap
/// the T1w images as registered data would (the cohort pipeline expects both modalities in one
/// space); each subject's window differs, and so do its maps.
fn bold_over_the_template(mri: &Path, first: usize, dst: &Path) {
    let bold = mmssl_data::read_nifti(mri.join("bold_4d_small.nii.gz")).unwrap();
    let [x, y, z, _] = bold.dims();
    let frame = x * y * z;
    let data = bold.data()[first * frame..(first + 28) * frame].to_vec();
    let affine = mmssl_data::Affine::scaling([19.2, 23.2, 10.5], [-96.0, -132.0, -78.0]);
    let placed = mmssl_data::Volume::new_4d(
        data,
        [x, y, z, 28],
        affine,
        bold.tr(),
        dst.display().to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    mmssl_data::write_nifti(&placed, dst).unwrap();
}

/// The MNI152 T1 template at 2 mm (every other voxel), scaled by `factor` about the origin:
/// subjects with heads of different sizes.
fn t1_scaled(template: &mmssl_data::Volume, factor: f64, dst: &Path) {
    let [x, y, z, _] = template.dims();
    let (nx, ny, nz) = (x.div_ceil(2), y.div_ceil(2), z.div_ceil(2));
    let mut data = Vec::with_capacity(nx * ny * nz);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                data.push(template.get(2 * i, 2 * j, 2 * k).unwrap());
            }
        }
    }
    let a = template.affine();
    let origin = [
        a.rows[0][3] * factor,
        a.rows[1][3] * factor,
        a.rows[2][3] * factor,
    ];
    let sizes = template.voxel_size().map(|v| 2.0 * v * factor);
    let affine = mmssl_data::Affine::scaling(sizes, origin);
    let volume =
        mmssl_data::Volume::new(data, [nx, ny, nz], affine, dst.display().to_string()).unwrap();
    std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
    mmssl_data::write_nifti(&volume, dst).unwrap();
}

/// Twelve subjects (HC and AD in turn, ages 60-71), one session each with the MNI152 T1 at a
/// subject's scale and a window of the real resting BOLD series, plus one subject without a
/// T1w image.
fn tree(mri: &Path, root: &Path) {
    let template = mmssl_data::read_nifti(mri.join("mni152_t1_1mm.nii.gz")).unwrap();
    let mut participants = String::from("participant_id\tgroup\tage\n");
    for s in 1..=12 {
        let sub = format!("sub-{s:02}");
        let dir = root.join(&sub).join("ses-1");
        t1_scaled(
            &template,
            0.9 + 0.02 * s as f64,
            &dir.join(format!("anat/{sub}_ses-1_T1w.nii.gz")),
        );
        bold_over_the_template(
            mri,
            s - 1,
            &dir.join(format!("func/{sub}_ses-1_task-rest_bold.nii.gz")),
        );
        let group = if s % 2 == 0 { "Dementia" } else { "Control" };
        participants += &format!("{sub}\t{group}\t{}\n", 59 + s);
    }
    bold_over_the_template(
        mri,
        0,
        &root.join("sub-13/ses-1/func/sub-13_ses-1_task-rest_bold.nii.gz"),
    );
    participants += "sub-13\tControl\t80\n";
    std::fs::write(root.join("participants.tsv"), participants).unwrap();
    std::fs::write(
        root.join("task-rest_bold.json"),
        r#"{"RepetitionTime": 1.35}"#,
    )
    .unwrap();
}

/// `mmssl explain RUN --method gradient --set all`, which must succeed.
fn explain_every_session(run: &Path) {
    let res = mmssl(&[
        "explain",
        arg(run),
        "--method",
        "gradient",
        "--set",
        "all",
        "--quiet",
    ]);
    assert_ok(&res);
}

#[test]
fn from_a_bids_folder_to_a_trained_and_evaluated_model() {
    let Some(mri) = mri() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (root, deriv) = (dir.path().join("bids"), dir.path().join("deriv"));
    tree(&mri, &root);
    let bids = |extra: &[&str]| {
        let mut args = vec!["data", "bids", arg(&root), "--out", arg(&deriv), "--quiet"];
        args.extend_from_slice(extra);
        mmssl(&args)
    };
    let map = [
        "--label-map",
        "Control=HC,Dementia=AD",
        "--covariate",
        "age",
    ];
    let res = bids(&map);
    assert_ok(&res);
    let text = stdout(&res);
    assert_contains_all(
        &text,
        &[
            "12 sessions of 12 subjects",
            "HC 6, AD 6, other 0, unlabelled 0; label column: group",
            "maps computed for 12 sessions, reused for 0",
            "1 sessions skipped:\n  sub-13 ses-1: no T1w image",
            "next: mmssl run --dataset oasis3 --manifest",
        ],
    );
    let manifest = deriv.join("manifest.csv");
    let info = mmssl(&["data", "info", arg(&manifest)]);
    assert_ok(&info);
    // Again: the maps are reused.
    let res = bids(&map);
    assert_ok(&res);
    assert!(stdout(&res).contains("computed for 0 sessions, reused for 12"));

    // The manifest trains and evaluates as an OASIS-3 cohort.
    let out = dir.path().join("run");
    let res = run_on_cohort(&manifest, &out);
    assert_ok(&res);
    let eval = read_json(out.join("eval.json"));
    assert_eq!(eval["linear_eval"].as_array().unwrap().len(), 2);

    // The third command of docs/biomarkers.md: maps of every labelled session, each on its
    // own input grid, named by subject and session.
    explain_every_session(&out);
    let report = read_json(out.join("explain/explain.json"));
    let items = report["items"].as_u64().unwrap();
    assert_eq!(items, 12, "one labelled session per subject");
    let folder = out.join("explain/pretrained/shared-1/falff/items");
    let names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len() as u64, items);
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("sub-") && n.contains("_ses-") && n.ends_with(".nii.gz")),
        "{names:?}"
    );
    assert!(
        out.join("explain/pretrained/shared-1/t1/t_AD-vs-HC.nii.gz")
            .exists()
    );
}

#[test]
fn bad_bids_input_exits_2_naming_it() {
    let Some(mri) = mri() else { return };
    let (dir, root) = scratch("bids");
    tree(&mri, &root);
    let out = dir.path().join("deriv");
    let run = |root: &Path, extra: &[&str]| {
        let mut args = vec!["data", "bids", arg(root), "--out", arg(&out), "--quiet"];
        args.extend_from_slice(extra);
        mmssl(&args)
    };
    assert_fails(
        &run(&dir.path().join("nowhere"), &[]),
        &["nowhere", "not a folder"],
    );
    assert_fails(
        &run(&root, &[]),
        &["`Control`", "`Dementia`", "--label-map"],
    );
    assert_fails(
        &run(&root, &["--label-map", "Control=healthy"]),
        &["--label-map", "healthy"],
    );
    assert_fails(
        &run(
            &root,
            &["--label-map", "Control=HC,Dementia=AD", "--strict"],
        ),
        &["sub-13", "no T1w image"],
    );
    assert_fails(
        &run(&root, &["--label-column", "diagnosis"]),
        &["no label column `diagnosis`"],
    );
}

/// An fMRIPrep output folder (the synthetic study of `mmssl_data::synth_fmriprep`, from the
/// real MNI template: 12 subjects, BOLD at 8 mm, anatomy at 4 mm) through `data bids
/// --derivatives`, `run` and `explain`: every setting and choice printed, z-scored fALFF in
/// MNI space, maps written voxel-aligned with the study's template grids.
#[test]
fn from_fmriprep_derivatives_to_maps_on_the_template_grid() {
    let Some(mri) = mri() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = mmssl_data::FmriprepSynthConfig {
        subjects: 12,
        frames: 64,
        bold_spacing: 8.0,
        anat_spacing: 4.0,
        ..mmssl_data::FmriprepSynthConfig::new(
            mri.join("mni152_t1_1mm.nii.gz"),
            mri.join("mni152_gm_1mm.nii.gz"),
        )
    };
    let study = mmssl_data::synth_fmriprep(&config, &dir.path().join("study")).unwrap();
    let out = dir.path().join("maps");
    let res = mmssl(&[
        "data",
        "bids",
        arg(&study.bids),
        "--derivatives",
        arg(&study.derivatives),
        "--out",
        arg(&out),
        "--fd-threshold",
        "0.5",
        "--quiet",
    ]);
    assert_ok(&res);
    let text = stdout(&res);
    assert_contains_all(
        &text,
        &[
            "space MNI152NLin2009cAsym, BOLD desc-preproc, anatomical preprocessed T1w inside its brain mask",
            "confounds motion24+wm-csf (26 columns)",
            "scrubbing frames with framewise displacement > 0.5 mm, at least 50% kept",
            "manifest: fALFF z-scored inside the brain mask (desc-zstd)",
            "12 sessions of 12 subjects",
            "HC 6, AD 6",
            "12 sessions (sub-01 ses-1, sub-02 ses-1, sub-03 ses-1, sub-04 ses-1, sub-05 ses-1, sub-06 ses-1, sub-07 ses-1, sub-08 ses-1, sub-09 ses-1, sub-10 ses-1, sub-11 ses-1, sub-12 ses-1): no anatomical image of its own: using sub-*_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz from sub-*/anat (subject level)",
            "frames kept after censoring: sub-01 ses-1 59/64",
        ],
    );
    assert!(!text.contains("NO PREPROCESSING"), "{text}");
    let manifest = out.join("manifest.csv");
    let csv = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        csv.contains("space-MNI152NLin2009cAsym_desc-zstd_falff.nii.gz"),
        "{csv}"
    );

    let run = dir.path().join("run");
    assert_ok(&run_on_cohort(&manifest, &run));
    explain_every_session(&run);
    // The maps lie on the grids of the study's files: the T1w's (4 mm) and the BOLD's (8 mm).
    let t1_grid = mmssl_data::read_nifti_header(
        study
            .derivatives
            .join("sub-01/anat/sub-01_space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz"),
    )
    .unwrap();
    let bold_grid = mmssl_data::read_nifti_header(&study.series[0].bold).unwrap();
    for (file, grid) in [
        ("t1/t_AD-vs-HC.nii.gz", &t1_grid),
        ("t1/mean_HC.nii.gz", &t1_grid),
        ("falff/t_AD-vs-HC.nii.gz", &bold_grid),
        ("falff/difference_AD-vs-HC.nii.gz", &bold_grid),
    ] {
        let h = mmssl_data::read_nifti_header(run.join("explain/pretrained/shared-1").join(file))
            .unwrap();
        assert_eq!(h.dims[..3], grid.dims[..3], "{file}");
        assert_eq!(h.affine, grid.affine, "{file}");
    }
    let mask = mmssl_data::read_nifti_header(run.join("explain/mask.nii.gz")).unwrap();
    assert_eq!(mask.affine, t1_grid.affine);
    // explain.json: paths relative to the run folder, read back from anywhere.
    let report = read_json(run.join("explain/explain.json"));
    let file = report["models"][0]["maps"][0]["contrasts"][0]["file"]
        .as_str()
        .unwrap();
    assert!(file.starts_with("explain/pretrained/"), "{file}");
    assert_eq!(report["out"], "explain");
    let moved = dir.path().join("moved");
    std::fs::rename(&run, &moved).unwrap();
    let read = mmssl_protocol::ExplainReport::read(&moved.join("explain/explain.json")).unwrap();
    let t = &read.models[0].maps[1].contrasts[0].file;
    assert!(t.starts_with(&moved) && t.is_file(), "{t:?}");
    // With Debian's AAL installed (CI installs mricron-data) the fALFF clusters are named.
    // Each cluster carries the region at (or within 6 mm of) its peak.
    if let Some((image, labels)) = mmssl_data::Atlas::installed() {
        assert_eq!(read.atlas.as_deref(), Some(image.as_path()));
        let aal = mmssl_data::Atlas::read(&image, &labels).unwrap();
        let clusters: Vec<_> = read.models[0]
            .maps
            .iter()
            .flat_map(|m| m.contrasts.iter().flat_map(|c| c.clusters.iter()))
            .collect();
        for k in &clusters {
            assert_eq!(k.region, aal.describe(k.peak_mm, 6.0), "{k:?}");
        }
        assert!(clusters.iter().any(|k| k.region.is_some()), "{clusters:?}");
    }
}
