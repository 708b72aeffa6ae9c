//! Tests of `grid`.

use super::*;
use std::path::PathBuf;

#[test]
fn a_grid_built_in_code_has_the_cells_of_its_axes() {
    let mut base = RunConfig::default();
    base.seed = 7;
    let methods = vec!["CR".parse().unwrap(), "RR;latent_dim=32".parse().unwrap()];
    let g = Grid::new(methods, base.clone());
    let cells = g.cells(Path::new("exp"));
    assert_eq!(cells.len(), 2);
    assert!(cells.iter().all(|c| c.seed == 7 && c.fold == 0));
    let g = g.with_seeds(vec![0, 1, 2]).with_folds(vec![0, 1]);
    assert_eq!(g.cells(Path::new("exp")).len(), 2 * 3 * 2);
    let g = g.with_datasets(vec![DatasetKind::TwoViewMnist, DatasetKind::MnistFashion]);
    assert_eq!(g.cells(Path::new("exp")).len(), 24);
}

#[test]
fn grids_are_checked_and_expand_to_cells() {
    let r = Registry::builtin();
    let e = Grid::from_toml_str("methods = [\"CR-XX\", \"nonsense\"]\n", &r)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nonsense"), "{e}");
    assert!(Grid::from_toml_str("methods = []\n", &r).is_err());
    let e = Grid::from_toml_str("methods = [\"CR\"]\nmodels = [1]\n", &r).unwrap_err();
    assert!(e.to_string().contains("models"), "{e}");
    let e = Grid::from_toml_str("methods = [\"CR\"]\n[settings]\nseed = 3\n", &r).unwrap_err();
    assert!(e.to_string().contains("seed"), "{e}");
    let e = Grid::from_toml_str("methods = [\"CR\"]\n[settings]\nepochz = 3\n", &r).unwrap_err();
    assert!(e.to_string().contains("epochz"), "{e}");
    let e = Grid::from_toml_str("methods = [\"XX;temperature=2\"]\n", &r).unwrap_err();
    assert!(e.to_string().contains("temperature"), "{e}");
    let g = Grid::from_toml_str(
        "methods = [\"CR\", \"mmvae;k=2\", \"XX;critic=cosine(0.1)\"]\nseeds = [7, 8]\n\
         folds = [1]\n[settings]\nepochs = 3\n[settings.evaluation]\nepochs = 4\n",
        &r,
    )
    .unwrap();
    let cells = g.cells(Path::new("EXP"));
    assert_eq!(cells.len(), 6);
    let c = &cells[3];
    assert_eq!(c.config.method.to_string(), "mmvae;k=2");
    assert_eq!((c.config.seed, c.config.data.fold), (8, 1));
    assert_eq!(
        (c.config.training.epochs, c.config.evaluation.epochs),
        (3, Some(4))
    );
    assert_eq!(
        c.config.output.dir,
        Path::new("EXP/two-view-mnist/mmvae_k_2/fold1-seed8")
    );
    assert_eq!(
        cells[5].config.output.dir,
        Path::new("EXP/two-view-mnist/XX_critic_cosine_0.1_/fold1-seed8")
    );
    assert_eq!(slug("CR:1,XX:0.5"), "CR_1_XX_0.5");
    assert_eq!(g.slurm, SlurmResources::default());
    let g = Grid::from_toml_str(
        "methods = [\"CR\"]\n[slurm]\npartition = \"gpu\"\ngpus = 2\nextra = [\"--qos=x\"]\n",
        &r,
    )
    .unwrap();
    assert_eq!(g.slurm.partition.as_deref(), Some("gpu"));
    assert_eq!((g.slurm.gpus, g.slurm.extra.len()), (Some(2), 1));
    for (text, needle) in [
        ("[slurm]\ngpu = 1\n", "gpu"),
        ("[slurm]\ngpus = 0\n", "slurm.gpus"),
        ("[slurm]\ngpus = \"one\"\n", "gpus"),
    ] {
        let e = Grid::from_toml_str(&format!("methods = [\"CR\"]\n{text}"), &r)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{text}: {e}");
    }
}

#[test]
fn duplicates_are_refused_and_relative_paths_follow_the_grid_file() {
    let r = Registry::builtin();
    for (text, needle) in [
        ("methods = [\"XX\", \"xx\"]\n", "same method"),
        ("methods = [\"XX\", \"XX:1\"]\n", "same method"),
        ("methods = [\"dccae\", \"DCCAE;\"]\n", "cannot parse"),
        (
            "methods = [\"XX\"]\nseeds = [1, 1]\n",
            "seeds lists 1 twice",
        ),
        (
            "methods = [\"XX\"]\nfolds = [0, 0]\n",
            "folds lists 0 twice",
        ),
    ] {
        let e = Grid::from_toml_str(text, &r).unwrap_err().to_string();
        assert!(e.contains(needle), "{text}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("grids");
    std::fs::create_dir_all(&sub).unwrap();
    let file = sub.join("g.toml");
    std::fs::write(
        &file,
        "methods = [\"XX\"]\nout = \"exp\"\n[settings]\ndata_dir = \"../mnist\"\n\
         manifest = \"/abs/cohort.csv\"\n",
    )
    .unwrap();
    let g = Grid::load(&file, &r).unwrap();
    assert_eq!(g.base.data.data_dir, Some(sub.join("../mnist")));
    assert_eq!(g.base.data.manifest, Some(PathBuf::from("/abs/cohort.csv")));
    assert_eq!(g.out, Some(sub.join("exp")));
}
