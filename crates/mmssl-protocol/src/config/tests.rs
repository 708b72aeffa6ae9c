//! Round trips, flat keys, validation and identities of run configurations.

use super::*;
use crate::Registry;
use std::path::PathBuf;

#[test]
fn defaults_are_the_papers() {
    let c = RunConfig::default();
    assert_eq!(c.method.to_string(), "CR-XX-CC");
    assert_eq!((c.training.epochs, c.training.batch_size), (50, 64));
    assert_eq!((c.training.lr, c.training.max_lr), (4e-4, 0.01));
    assert_eq!(c.evaluation.epochs_for(DatasetKind::TwoViewMnist), 50);
    assert_eq!(c.evaluation.epochs_for(DatasetKind::Oasis3), 500);
    assert_eq!(c.analysis.svcca_threshold, 0.99);
    c.validate(&Registry::builtin()).unwrap();
}

#[test]
fn toml_and_json_round_trips_are_exact() {
    let mut c = RunConfig::default();
    c.seed = 7;
    c.method = "dccae;cca_dim=12;cca_norm=frobenius".parse().unwrap();
    c.data.train_limit = Some(1000);
    c.data.data_dir = Some(PathBuf::from("../data/mnist"));
    c.training.schedule = ScheduleKind::Constant;
    c.evaluation.epochs = Some(3);
    c.output.dir = PathBuf::from("runs/x");
    let toml = c.to_toml_string().unwrap();
    assert_eq!(RunConfig::from_toml_str(&toml).unwrap(), c, "{toml}");
    let json = c.to_json_string().unwrap();
    assert_eq!(RunConfig::from_json_str(&json).unwrap(), c, "{json}");
    let dir = tempfile::tempdir().unwrap();
    for name in ["c.toml", "c.json"] {
        let p = dir.path().join(name);
        c.save(&p).unwrap();
        assert_eq!(RunConfig::load(&p).unwrap(), c);
    }
}

#[test]
fn flat_keys_of_the_flags_go_to_their_sections() {
    let c = RunConfig::from_toml_str(
        "objective = \"RR\"\nepochs = 3\ntrain-limit = 100\nseed = 7\neval_epochs = 5\n\
         out = \"r\"\nquiet = true\nbackend = \"cpu\"\n[analysis]\nenabled = false\n",
    )
    .unwrap();
    assert_eq!(c.method.to_string(), "RR");
    assert_eq!((c.training.epochs, c.seed), (3, 7));
    assert_eq!(c.data.train_limit, Some(100));
    assert_eq!(c.evaluation.epochs, Some(5));
    assert_eq!(c.output.dir, PathBuf::from("r"));
    assert!(!c.analysis.enabled);
    // A config.toml of an earlier mmssl: every baseline flag at its default, for any
    // method; non-default ones become options of the method they apply to.
    let old = RunConfig::from_toml_str(
        "dataset = \"two-view-mnist\"\nobjective = \"CR-XX-CC\"\nmethod = \"dccae\"\n\
         mmvae_k = 10\nmmvae_estimator = \"dreg\"\ncca_dim = 12\ncca_reg = 0.001\n\
         lcca_components = 64\n",
    )
    .unwrap();
    assert_eq!(old.method.to_string(), "dccae;cca_dim=12");
    // JSON takes the same flat keys, with the same rules (it refused them before).
    let json = RunConfig::from_json_str(
        r#"{"objective": "RR", "epochs": 3, "train-limit": 100, "seed": 7, "eval_epochs": 5,
            "out": "r", "quiet": true, "backend": "cpu", "analysis": {"enabled": false}}"#,
    )
    .unwrap();
    assert_eq!(json, c);
    let e = RunConfig::from_json_str(r#"{"objective": "CR", "mmvae_k": 3}"#).unwrap_err();
    assert!(e.to_string().contains("mmvae_k"), "{e}");
    let e = RunConfig::from_toml_str("objective = \"CR\"\nmmvae_k = 3\n").unwrap_err();
    assert!(
        e.to_string().contains("mmvae_k") && e.to_string().contains("mmvae"),
        "{e}"
    );
}

#[test]
fn bad_files_and_values_name_the_problem() {
    for (text, needle) in [
        ("epochz = 3\n", "epochz"),
        ("[training]\nepochs = -3\n", "`training.epochs`"),
        ("[training]\nepochs = \"x\"\n", "epochs"),
        ("epochs = 2\n[training]\nepochs = 3\n", "training.epochs"),
        ("[data]\ndataset = \"imagenet\"\n", "imagenet"),
        ("method = \"XX;k\"\n", "XX;k"),
    ] {
        let e = RunConfig::from_toml_str(text).unwrap_err().to_string();
        assert!(e.contains(needle), "{text:?}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "[training]\nlr = true\n").unwrap();
    let e = RunConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("bad.toml") && e.contains("lr"), "{e}");
    let r = Registry::builtin();
    let check = |f: &dyn Fn(&mut RunConfig)| {
        let mut c = RunConfig::default();
        f(&mut c);
        c.validate(&r).unwrap_err().to_string()
    };
    assert!(check(&|c| c.training.lr = -1.0).contains("training.lr"));
    assert!(check(&|c| c.training.max_lr = f64::NAN).contains("training.max_lr"));
    assert!(check(&|c| c.training.batch_size = 1).contains("training.batch_size"));
    assert!(check(&|c| c.training.epochs = 0).contains("training.epochs"));
    assert!(check(&|c| c.evaluation.epochs = Some(0)).contains("evaluation.epochs"));
    assert!(check(&|c| c.analysis.svcca_threshold = 1.5).contains("svcca_threshold"));
    assert!(check(&|c| c.data.fold = 9).contains("0-8"));
    assert!(check(&|c| c.data.dataset = DatasetKind::Oasis3).contains("data.manifest"));
    assert!(check(&|c| c.data.dataset = DatasetKind::MnistSvhn).contains("data.data_dir"));
    assert!(check(&|c| c.method = "nonsense".parse().unwrap()).contains("nonsense"));
}

#[test]
fn the_identity_ignores_output_backend_workers_and_evaluation() {
    let a = RunConfig::default();
    let mut b = a.clone();
    b.output.dir = PathBuf::from("elsewhere");
    b.training.workers = 0;
    b.backend = BackendKind::Wgpu;
    b.evaluation.epochs = Some(1);
    assert!(a.identity_differences(&b).unwrap().is_empty());
    b.data.train_limit = Some(672);
    b.seed = 3;
    let d = a.identity_differences(&b).unwrap();
    assert!(d.contains(&"seed: 0 then, 3 now".to_string()), "{d:?}");
    assert!(
        d.contains(&"data.train_limit: unset then, 672 now".to_string()),
        "{d:?}"
    );
}

#[test]
fn cohort_augmentation_is_a_setting_of_oasis3_only() {
    let c = RunConfig::default();
    assert_eq!(c.data.augment, AugmentKind::Paired, "the authors' pipeline");
    assert_eq!(
        AugmentKind::Paired.config().unwrap(),
        mmssl_data::AugmentConfig::default()
    );
    assert_eq!(
        AugmentKind::Separate.config().unwrap().pairing,
        mmssl_data::AugmentPairing::Separate
    );
    assert_eq!(AugmentKind::None.config(), None);
    // Flat and nested keys, and every name back from its text.
    let flat = RunConfig::from_toml_str(
        "dataset = \"oasis3\"\nmanifest = \"m.csv\"\naugment = \"separate\"\n",
    )
    .unwrap();
    assert_eq!(flat.data.augment, AugmentKind::Separate);
    let toml = flat.to_toml_string().unwrap();
    assert!(toml.contains("augment = \"separate\""), "{toml}");
    assert_eq!(RunConfig::from_toml_str(&toml).unwrap(), flat);
    for k in AugmentKind::ALL {
        assert_eq!(k.name().parse::<AugmentKind>().unwrap(), k);
    }
    assert_eq!("NONE".parse::<AugmentKind>().unwrap(), AugmentKind::None);
    let e = "shared".parse::<AugmentKind>().unwrap_err().to_string();
    assert!(
        e.contains("data.augment") && e.contains("paired, separate, none"),
        "{e}"
    );
    // An earlier config.toml without the key reads as paired.
    let old =
        RunConfig::from_toml_str("[data]\ndataset = \"oasis3\"\nmanifest = \"m.csv\"\n").unwrap();
    assert_eq!(old.data.augment, AugmentKind::Paired);
    // Image datasets are not augmented: another setting is refused by name.
    let mut images = RunConfig::default();
    images.data.augment = AugmentKind::None;
    let e = images
        .validate(&Registry::builtin())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("data.augment") && e.contains("two-view-mnist"),
        "{e}"
    );
}

#[test]
fn every_wrong_setting_is_reported_at_once() {
    let registry = crate::Registry::builtin();
    let mut c = RunConfig::default();
    c.training.epochs = 0;
    c.training.lr = -1.0;
    c.method = "nonsense".parse().unwrap();
    let e = c.validate(&registry).unwrap_err();
    let ProtocolError::Settings { problems } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(problems.len(), 3, "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("3 problems with the run configuration"),
        "{text}"
    );
    for needle in ["training.lr", "training.epochs", "nonsense"] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    // One problem is reported as itself.
    let mut c = RunConfig::default();
    c.training.epochs = 0;
    assert!(matches!(
        c.validate(&registry),
        Err(ProtocolError::InvalidSetting { .. })
    ));
}
