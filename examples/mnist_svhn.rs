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
// A configuration is built field by field from the defaults: its sections nest too deep for
// one struct literal to read well.
#![allow(clippy::field_reassign_with_default)]

use mmssl::baselines::{Baseline, MmvaeConfig};
use mmssl::burn::module::Module;
use mmssl::burn::tensor::Device;
use mmssl::data::{PairedDataset, ViewBatch, load_batch};
use mmssl::protocol::{DatasetKind, Quiet, RunConfig, load_datasets, run};
use rand::{SeedableRng, rngs::StdRng};
use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mnist_dir = PathBuf::from(args.first().map_or("../shared/data/mnist", String::as_str));
    // The protocol of `mmssl run --dataset mnist-svhn` (or mnist-fashion): each side's training
    // split divided before pairing, 30 pairings per class, a seeded random 5,000 pairs.
    let mut config = RunConfig::default();
    config.data.data_dir = Some(mnist_dir);
    match args.get(1) {
        Some(d) => {
            println!("MNIST-SVHN with SVHN from {d}");
            config.data.dataset = DatasetKind::MnistSvhn;
            config.data.second_data_dir = Some(d.into());
        }
        None => {
            println!(
                "no SVHN folder given: using MNIST + Fashion-MNIST as the stand-in for MNIST-SVHN"
            );
            config.data.dataset = DatasetKind::MnistFashion;
        }
    }
    config.method = "mmvae;k=2".parse()?;
    config.data.train_limit = Some(5000);
    config.training.epochs = 1;
    config.evaluation.epochs = Some(20);
    config.output.dir = "runs/example-mnist-svhn".into();
    let report = run(&config, &Device::flex(), &mut Quiet)?;
    println!("{}", report.summary());

    // Cross-modal reconstruction of four test pairs with the best checkpoint: modality 1
    // decoded from modality 0.
    let data = load_datasets(&config)?;
    let device = Device::flex().autodiff();
    let shapes = vec![data.train.shape(0), data.train.shape(1)];
    let mmvae = MmvaeConfig {
        k: 2,
        ..Default::default()
    }
    .init(&shapes, &device, &mut StdRng::seed_from_u64(config.seed))?;
    println!("likelihood scaling {:?}", mmvae.likelihood_scaling());
    let best = Baseline::Mmvae(mmvae)
        .try_load_file(config.output.dir.join("checkpoints/best.bpk"))
        .map_err(|e| format!("{e:?}"))?;
    let Baseline::Mmvae(model) = best.valid() else {
        unreachable!("built as MMVAE")
    };
    let batch = load_batch(
        &data.test,
        &[0, 1, 2, 3],
        0,
        &device.clone().without_autodiff(),
    )?;
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
