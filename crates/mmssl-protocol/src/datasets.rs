//! The protocol's datasets: the training, validation and test pairs of a [`RunConfig`], and
//! the labelled sets of the linear evaluation where they differ (OASIS-3).

use crate::config::{DatasetKind, RunConfig};
use crate::error::{ProtocolError, Result};
use mmssl_data::{
    ImageSet, LabelPaired, LabelPairedConfig, MnistSplit, PairedDataset, Subset, TwoViewConfig,
    TwoViewMnist, embedded_mnist_test, load_mnist_dir, stratified_k_fold,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The sets of one run.
pub struct Datasets {
    /// Pretraining pairs.
    pub train: Subset,
    /// Validation pairs (the best checkpoint is chosen on them).
    pub valid: Subset,
    /// Test pairs (linear evaluation and similarity are reported on them).
    pub test: Subset,
    /// Labelled training and validation sets of the linear evaluation when they differ from
    /// the pretraining sets (OASIS-3: one labelled session per subject, class-balanced
    /// training).
    pub eval: Option<(Subset, Subset)>,
}

impl Datasets {
    /// The linear evaluation's training set.
    pub fn eval_train(&self) -> &Subset {
        self.eval.as_ref().map_or(&self.train, |e| &e.0)
    }

    /// The linear evaluation's validation set.
    pub fn eval_valid(&self) -> &Subset {
        self.eval.as_ref().map_or(&self.valid, |e| &e.1)
    }

    /// Items in the training, validation and test sets.
    pub fn sizes(&self) -> [usize; 3] {
        [self.train.len(), self.valid.len(), self.test.len()]
    }
}

/// Loads the sets `config.data` describes, split by `config.data.fold` and `config.seed`.
/// Cohorts write their subject split (`split.json`, reused when present) and histogram
/// landmarks (`landmarks.json`) into `config.output.dir`, which must exist.
pub fn load_datasets(config: &RunConfig) -> Result<Datasets> {
    match config.data.dataset {
        DatasetKind::TwoViewMnist => two_view(config),
        DatasetKind::MnistFashion | DatasetKind::MnistSvhn => label_paired(config),
        DatasetKind::Oasis3 => cohort(config),
    }
}

/// A paired-volume cohort: subjects split into 5 stratified folds (`fold` validates) and a
/// hold-out fifth (the test set); histogram landmarks learnt on the training subjects only;
/// pretraining on every session of the training subjects with crop/flip augmentation as
/// `data.augment` says (paired by default);
/// linear evaluation on one labelled (HC or AD) session per subject, class-balanced for
/// training.
fn cohort(config: &RunConfig) -> Result<Datasets> {
    use mmssl_data::{
        CohortSplit, CohortVolumes, Manifest, VolumeCohort, VolumePipeline, pretraining_items,
        split_subjects,
    };
    let path = config
        .data
        .manifest
        .clone()
        .ok_or_else(|| ProtocolError::MissingSetting {
            dataset: "oasis3".into(),
            field: "data.manifest".into(),
            hint: "a CSV with columns subject, session, t1, falff, label".into(),
        })?;
    let (seed, out) = (config.seed, &config.output.dir);
    let manifest = Manifest::read(&path)?;
    let split_path = out.join("split.json");
    let split = if split_path.exists() {
        CohortSplit::load(&split_path)?
    } else {
        let s = split_subjects(&manifest, 5, 0.2, seed)?;
        s.save(&split_path)?;
        s
    };
    let train_subjects = split.train(config.data.fold)?;
    let valid_subjects = split.validation(config.data.fold)?;
    let volumes = CohortVolumes::new(manifest, VolumePipeline::default())?;
    let rows: Vec<usize> = pretraining_items(volumes.manifest(), &train_subjects)?
        .iter()
        .map(|i| i.row)
        .collect();
    let standardizers = volumes.fit_standardizers(&rows)?;
    crate::folder::write_atomic(
        &out.join("landmarks.json"),
        &serde_json::to_string_pretty(&standardizers).unwrap_or_default(),
    )?;
    let volumes = Arc::new(volumes.with_standardizers(standardizers));
    let whole = |c: VolumeCohort| -> Result<Subset> {
        let n = c.len();
        Ok(Subset::new(Arc::new(c), (0..n).collect())?)
    };
    let pretraining = |subjects, augment| {
        whole(VolumeCohort::pretraining(
            volumes.clone(),
            subjects,
            augment,
            seed,
        )?)
    };
    let labelled = |subjects, balanced| {
        whole(VolumeCohort::labelled(
            volumes.clone(),
            subjects,
            balanced,
            None,
            seed,
        )?)
    };
    let mut train = pretraining(&train_subjects, config.data.augment.config())?;
    if let Some(n) = config.data.train_limit {
        train = Subset::first(Arc::new(train), n);
    }
    Ok(Datasets {
        train,
        valid: pretraining(&valid_subjects, None)?,
        test: labelled(&split.holdout, false)?,
        eval: Some((
            labelled(&train_subjects, true)?,
            labelled(&valid_subjects, false)?,
        )),
    })
}

/// One split of the MNIST-layout folder `dir` holding `dataset` (`mnist` or `fashion-mnist`):
/// a missing file names the exact command that fetches that dataset.
pub fn load_idx(dir: &Path, split: MnistSplit, dataset: &str) -> Result<ImageSet> {
    load_mnist_dir(dir, split).map_err(|e| match e {
        mmssl_data::DataError::Missing { path, .. } => {
            ProtocolError::Data(mmssl_data::DataError::Missing {
                path,
                hint: format!(
                    "{} should hold the four IDX files of {dataset} (train and t10k images and \
                     labels, .gz or raw); fetch them with `mmssl data download {dataset} --dir {}`",
                    dir.display(),
                    dir.display()
                ),
            })
        }
        other => ProtocolError::Data(other),
    })
}

/// Two-View MNIST: the official training split with a stratified twelfth validating and t10k
/// testing, or without `data_dir` the embedded test split (8,000 / 1,000 / 1,000, the fold
/// choosing which 1,000-image block validates).
fn two_view(config: &RunConfig) -> Result<Datasets> {
    let seed = config.seed;
    let fold = config.data.fold;
    let views = |images: ImageSet, seed: u64| -> Result<Arc<dyn PairedDataset>> {
        Ok(Arc::new(TwoViewMnist::new(
            images,
            TwoViewConfig {
                seed,
                ..Default::default()
            },
        )?))
    };
    let (train, valid, test) = match &config.data.data_dir {
        None => {
            if fold >= 9 {
                return Err(ProtocolError::setting(
                    "data.fold",
                    fold,
                    "the embedded MNIST subset has 9 validation blocks (0-8)",
                ));
            }
            let all = views(embedded_mnist_test()?, seed)?;
            // Fold 0 validates on images 8,000-8,999, fold f on block (8 + f) mod 9.
            let block = (8 + fold) % 9;
            let valid: Vec<usize> = (block * 1000..(block + 1) * 1000).collect();
            let train: Vec<usize> = (0..9000).filter(|i| i / 1000 != block).collect();
            (
                Subset::new(all.clone(), train)?,
                Subset::new(all.clone(), valid)?,
                Subset::new(all, (9000..10_000).collect())?,
            )
        }
        Some(dir) => {
            let images = load_idx(dir, MnistSplit::Train, "mnist")?;
            let labels: Vec<usize> = images.labels().iter().map(|&l| l as usize).collect();
            let (tr, va) = stratified_k_fold(&labels, 12, fold, seed)?;
            let all = views(images, seed)?;
            let test = views(load_idx(dir, MnistSplit::Test, "mnist")?, seed ^ 0x7e57)?;
            let n_test = test.len();
            (
                Subset::new(all.clone(), tr)?,
                Subset::new(all, va)?,
                Subset::new(test, (0..n_test).collect())?,
            )
        }
    };
    let train = match config.data.train_limit {
        Some(n) => Subset::first(Arc::new(train), n),
        None => train,
    };
    Ok(Datasets {
        train,
        valid,
        test,
        eval: None,
    })
}

/// MNIST paired by label with Fashion-MNIST or SVHN. Each side's training split is divided
/// (stratified, a twelfth validates) before pairing, so no image is in both the training and
/// the validation pairs. Training pairs use 30 random pairings per class (MMVAE's protocol);
/// validation and test pairs one, so each image is evaluated once.
fn label_paired(config: &RunConfig) -> Result<Datasets> {
    let svhn = config.data.dataset == DatasetKind::MnistSvhn;
    let seed = config.seed;
    let second_name = if svhn { "svhn" } else { "fashion-mnist" };
    let mnist_dir = config
        .data
        .data_dir
        .clone()
        .ok_or_else(|| ProtocolError::MissingSetting {
            dataset: config.data.dataset.name().into(),
            field: "data.data_dir".into(),
            hint: "the folder with the MNIST IDX files (train and t10k)".into(),
        })?;
    let second_dir = match &config.data.second_data_dir {
        Some(d) => d.clone(),
        None => mnist_dir
            .parent()
            .map(|p| p.join(second_name))
            .unwrap_or_else(|| PathBuf::from(second_name)),
    };
    let load_second = |train: bool| -> Result<ImageSet> {
        if svhn {
            let file = if train {
                "train_32x32.mat"
            } else {
                "test_32x32.mat"
            };
            let path = second_dir.join(file);
            if !path.exists() {
                return Err(ProtocolError::Data(mmssl_data::DataError::Missing {
                    path,
                    hint: format!(
                        "fetch SVHN with `mmssl data download svhn --dir {}` or set \
                         data.second_data_dir (--second-data-dir)",
                        second_dir.display()
                    ),
                }));
            }
            Ok(mmssl_data::load_svhn_mat(path)?)
        } else {
            let split = if train {
                MnistSplit::Train
            } else {
                MnistSplit::Test
            };
            load_idx(&second_dir, split, "fashion-mnist")
        }
    };
    let split = |set: &ImageSet| -> Result<(ImageSet, ImageSet)> {
        let labels: Vec<usize> = set.labels().iter().map(|&l| l as usize).collect();
        let (tr, va) = stratified_k_fold(&labels, 12, config.data.fold, seed)?;
        Ok((set.select(&tr)?, set.select(&va)?))
    };
    let (a_train, a_valid) = split(&load_idx(&mnist_dir, MnistSplit::Train, "mnist")?)?;
    let (b_train, b_valid) = split(&load_second(true)?)?;
    let a_test = load_idx(&mnist_dir, MnistSplit::Test, "mnist")?;
    let b_test = load_second(false)?;
    let pair = |a: ImageSet, b: ImageSet, repeats: usize, seed: u64| -> Result<Subset> {
        let paired: Arc<dyn PairedDataset> = Arc::new(LabelPaired::new(
            a,
            b,
            LabelPairedConfig {
                repeats,
                seed,
                ..Default::default()
            },
        )?);
        let n = paired.len();
        Ok(Subset::new(paired, (0..n).collect())?)
    };
    let train = pair(a_train, b_train, 30, seed)?;
    let valid = pair(a_valid, b_valid, 1, seed ^ 0x7a11d)?;
    let test = pair(a_test, b_test, 1, seed ^ 0x7e57)?;
    let train = match config.data.train_limit {
        Some(n) if n < train.len() => {
            let mut idx: Vec<usize> = (0..train.len()).collect();
            idx.shuffle(&mut StdRng::seed_from_u64(seed ^ 0x1173));
            idx.truncate(n);
            idx.sort_unstable();
            Subset::new(Arc::new(train), idx)?
        }
        _ => train,
    };
    Ok(Datasets {
        train,
        valid,
        test,
        eval: None,
    })
}
