//! Two-View MNIST end to end with the library API: the paper's main experiment in miniature.
//!
//! Pretrains CR-XX-CC (InfoNCE, scaled-dot critic, RAdam + one-cycle) on Two-View MNIST
//! (view 1 rotated by up to 45 degrees, view 2 with additive uniform noise), then evaluates
//! each view linearly on the frozen encoder's `z` and compares the two views' representations.
//!
//! ```sh
//! cargo run --release --example two_view_mnist                       # embedded t10k subset
//! cargo run --release --example two_view_mnist -- ../shared/data/mnist 2   # full MNIST, 2 epochs
//! ```
//!
//! With a folder, the official training split trains (10,000 images, a stratified twelfth of
//! the rest validates) and t10k tests; without one, the MNIST test split shipped with mmssl is
//! split 8,000 / 1,000 / 1,000.

use mmssl::burn::tensor::Device;
use mmssl::data::{
    MnistSplit, PairedDataset, Subset, TwoViewConfig, TwoViewMnist, embedded_mnist_test,
    load_mnist_dir, stratified_k_fold,
};
use mmssl::objectives::ObjectiveConfig;
use mmssl::similarity::Similarity;
use mmssl::train::{
    ContrastiveModel, LinearEvalConfig, Quiet, TrainConfig, extract_features, fit, linear_eval,
};
use rand::{SeedableRng, rngs::StdRng};
use std::error::Error;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn Error>> {
    mmssl::encoders::cpu::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let epochs: usize = args.get(1).map(|e| e.parse()).transpose()?.unwrap_or(1);
    let views = |images, seed| -> Result<Arc<dyn PairedDataset>, Box<dyn Error>> {
        Ok(Arc::new(TwoViewMnist::new(
            images,
            TwoViewConfig {
                seed,
                ..Default::default()
            },
        )?))
    };
    let (train, valid, test) = match args.first() {
        Some(dir) => {
            let images = load_mnist_dir(dir, MnistSplit::Train)?;
            let labels: Vec<usize> = images.labels().iter().map(|&l| l as usize).collect();
            let (tr, va) = stratified_k_fold(&labels, 12, 0, 0)?;
            let all = views(images, 0)?;
            let test = views(load_mnist_dir(dir, MnistSplit::Test)?, 1)?;
            let n = test.len();
            (
                Subset::new(all.clone(), tr.into_iter().take(10_000).collect())?,
                Subset::new(all, va)?,
                Subset::new(test, (0..n).collect())?,
            )
        }
        None => {
            let all = views(embedded_mnist_test()?, 0)?;
            (
                Subset::new(all.clone(), (0..8000).collect())?,
                Subset::new(all.clone(), (8000..9000).collect())?,
                Subset::new(all, (9000..10_000).collect())?,
            )
        }
    };
    println!(
        "Two-View MNIST: {} training, {} validation, {} test pairs; {epochs} epoch(s)",
        train.len(),
        valid.len(),
        test.len()
    );

    let device = Device::flex().autodiff();
    let shapes = vec![train.shape(0), train.shape(1)];
    let objective = ObjectiveConfig::new("CR-XX-CC".parse()?);
    let build = || {
        ContrastiveModel::new(
            &shapes,
            64,
            &objective,
            &device,
            &mut StdRng::seed_from_u64(0),
        )
    };
    let config = TrainConfig {
        epochs,
        ..Default::default()
    };
    let outcome = fit(
        build()?,
        &train,
        Some(&valid),
        &config,
        None,
        &device,
        &mut Quiet,
    )?;
    for e in &outcome.history {
        println!(
            "epoch {}: train loss {:.3}, validation loss {:.3}, {:.0} pairs/s",
            e.epoch + 1,
            e.train_loss,
            e.valid_loss.unwrap_or(f64::NAN),
            e.pairs_per_second
        );
    }

    let eval = LinearEvalConfig {
        epochs: 20,
        ..Default::default()
    };
    let random = build()?;
    let mut test_z = Vec::new();
    for m in 0..2 {
        let mut accuracy = Vec::new();
        for model in [&outcome.last, &random] {
            let f = |d: &Subset| extract_features(model, d, m, 256, false, &device);
            let (tr, va, te) = (f(&train)?, f(&valid)?, f(&test)?);
            accuracy.push(linear_eval(&tr, &va, &te, 10, &eval, &device)?.accuracy);
            if std::ptr::eq(model, &outcome.last) {
                test_z.push(te);
            }
        }
        println!(
            "view {m}: linear-evaluation test accuracy {:.3} (random init {:.3})",
            accuracy[0], accuracy[1]
        );
    }
    let matrix = |f: &mmssl::train::Features| {
        ndarray::Array2::from_shape_fn((f.len(), f.dim), |(i, j)| f.values[i * f.dim + j] as f64)
    };
    let sim = Similarity::new().report(matrix(&test_z[0]).view(), matrix(&test_z[1]).view())?;
    println!(
        "similarity of the views' z: CCA {:?}, SVCCA {:?}, PWCCA {:?}, CKA {:?}",
        sim.cca, sim.svcca, sim.pwcca, sim.cka
    );
    Ok(())
}
