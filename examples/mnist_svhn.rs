//! MNIST-SVHN (MMVAE's label-paired dataset) with the MMVAE baseline, or its stand-in MNIST +
//! Fashion-MNIST when no SVHN files are given.
//!
//! ```sh
//! # real SVHN: a folder with train_32x32.mat and test_32x32.mat
//! cargo run --release --example mnist_svhn -- ../shared/data/mnist /data/svhn
//! # stand-in: MNIST paired by label with Fashion-MNIST (the folder beside MNIST's)
//! cargo run --release --example mnist_svhn -- ../shared/data/mnist
//! ```
//!
//! Pairs are formed per class (30 random pairings per class on the training split), the MMVAE
//! (DCGAN encoders/decoders, Laplace posteriors, mixture of experts, DReG with K = 2) trains
//! for one epoch on 5,000 pairs, then each modality's posterior mean is evaluated linearly, and
//! a cross-modal reconstruction is drawn.

use mmssl::baselines::{Mmvae, MmvaeConfig};
use mmssl::burn::module::Module;
use mmssl::burn::tensor::Device;
use mmssl::data::{
    ImageSet, LabelPaired, LabelPairedConfig, MnistSplit, PairedDataset, Subset, ViewBatch,
    load_batch, load_mnist_dir, load_svhn_mat,
};
use mmssl::train::{LinearEvalConfig, Quiet, TrainConfig, extract_features, fit, linear_eval};
use rand::{SeedableRng, rngs::StdRng};
use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn Error>> {
    mmssl::encoders::cpu::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mnist_dir = PathBuf::from(args.first().map_or("../shared/data/mnist", String::as_str));
    let second = |split_train: bool| -> Result<ImageSet, Box<dyn Error>> {
        Ok(match args.get(1) {
            Some(svhn) => {
                let file = if split_train {
                    "train_32x32.mat"
                } else {
                    "test_32x32.mat"
                };
                load_svhn_mat(PathBuf::from(svhn).join(file))?
            }
            None => {
                let dir = mnist_dir
                    .parent()
                    .unwrap_or(&mnist_dir)
                    .join("fashion-mnist");
                let split = if split_train {
                    MnistSplit::Train
                } else {
                    MnistSplit::Test
                };
                load_mnist_dir(&dir, split)?
            }
        })
    };
    match args.get(1) {
        Some(d) => println!("MNIST-SVHN with SVHN from {d}"),
        None => println!(
            "no SVHN folder given: using MNIST + Fashion-MNIST as the stand-in for MNIST-SVHN"
        ),
    }
    let pair = |a, b, repeats| -> Result<Arc<dyn PairedDataset>, Box<dyn Error>> {
        Ok(Arc::new(LabelPaired::new(
            a,
            b,
            LabelPairedConfig {
                repeats,
                ..Default::default()
            },
        )?))
    };
    let train_all = pair(
        load_mnist_dir(&mnist_dir, MnistSplit::Train)?.truncate(20_000),
        second(true)?.truncate(20_000),
        30,
    )?;
    let test_all = pair(
        load_mnist_dir(&mnist_dir, MnistSplit::Test)?,
        second(false)?,
        1,
    )?;
    // Pairs are ordered by class: take a seeded random sample of each set.
    let sample =
        |d: &Arc<dyn PairedDataset>, n: usize, seed: u64| -> Result<Subset, Box<dyn Error>> {
            use rand::seq::SliceRandom;
            let mut idx: Vec<usize> = (0..d.len()).collect();
            idx.shuffle(&mut StdRng::seed_from_u64(seed));
            idx.truncate(n);
            Ok(Subset::new(d.clone(), idx)?)
        };
    let train = sample(&train_all, 5000, 1)?;
    let valid = sample(&train_all, 1000, 2)?;
    let test = sample(&test_all, 2000, 3)?;

    let device = Device::flex().autodiff();
    let shapes = vec![train.shape(0), train.shape(1)];
    let config = MmvaeConfig {
        k: 2,
        ..Default::default()
    };
    println!(
        "likelihood scaling {:?}; training {} pairs",
        config
            .init(&shapes, &device, &mut StdRng::seed_from_u64(0))?
            .likelihood_scaling(),
        train.len()
    );
    let model: Mmvae = config.init(&shapes, &device, &mut StdRng::seed_from_u64(0))?;
    let outcome = fit(
        model,
        &train,
        Some(&valid),
        &TrainConfig {
            epochs: 1,
            ..Default::default()
        },
        None,
        &device,
        &mut Quiet,
    )?;
    let e = &outcome.history[0];
    println!(
        "epoch 1: loss {:.1} (minus the IWAE bound), validation {:.1}",
        e.train_loss,
        e.valid_loss.unwrap_or(f64::NAN)
    );
    let eval = LinearEvalConfig {
        epochs: 20,
        ..Default::default()
    };
    for m in 0..2 {
        let f = |d: &Subset| extract_features(&outcome.last, d, m, 256, false, &device);
        let r = linear_eval(&f(&train)?, &f(&valid)?, &f(&test)?, 10, &eval, &device)?;
        println!(
            "modality {m}: linear-evaluation test accuracy {:.3}",
            r.accuracy
        );
    }
    // Cross-modal reconstruction of four test pairs: modality 1 decoded from modality 0.
    let model = outcome.last.valid();
    let batch = load_batch(&test, &[0, 1, 2, 3], 0, &device.clone().without_autodiff())?;
    let rec = model.reconstruct(&batch)?;
    if let ViewBatch::Images(t) = &rec[0][1] {
        let v: Vec<f32> = t
            .clone()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        println!(
            "cross reconstruction 0 -> 1: shape {:?}, mean intensity {mean:.3}",
            t.dims()
        );
    }
    Ok(())
}
