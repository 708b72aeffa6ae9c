//! What the training loop's tests share: real MNIST pairs, a seeded model, a configuration,
//! and ways to compare two runs.
#![allow(dead_code)]

use burn::module::Module;
use burn::tensor::Device;
use mmssl_data::{ImageSet, PairedDataset, TwoViewConfig, TwoViewMnist, embedded_mnist_test};
use mmssl_objectives::ObjectiveConfig;
use mmssl_train::{ContrastiveConfig, ContrastiveModel, EpochMetrics, FitConfig, OneCycleConfig};
use rand::{SeedableRng, rngs::StdRng};

/// The first `n` images of the MNIST test split (shipped inside mmssl-data).
pub fn mnist(n: usize) -> Option<ImageSet> {
    Some(embedded_mnist_test().unwrap().truncate(n))
}

/// The seeded CR-XX model of `data`'s shapes.
pub fn model(data: &dyn PairedDataset, device: &Device) -> ContrastiveModel {
    let shapes: Vec<Vec<usize>> = (0..2).map(|m| data.shape(m)).collect();
    let objective = ObjectiveConfig::new("CR-XX".parse().unwrap());
    ContrastiveConfig::new(objective)
        .init(&shapes, device, &mut StdRng::seed_from_u64(3))
        .unwrap()
}

/// `epochs` epochs in batches of 16 with the one-cycle schedule, seed 11.
pub fn config(epochs: usize) -> FitConfig {
    FitConfig {
        epochs,
        batch_size: 16,
        seed: 11,
        schedule: Some(OneCycleConfig {
            max_lr: 0.005,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Every float parameter of `m`, in visiting order.
pub fn weights(m: &ContrastiveModel) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(
            &mut self,
            p: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            self.0
                .extend(p.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

/// An epoch without its timings: (train loss, validation loss, terms, validation terms).
pub type Comparable = (f64, Option<f64>, Vec<(String, f64)>, Vec<(String, f64)>);

/// Timings differ between runs; everything else must not.
pub fn comparable(h: &[EpochMetrics]) -> Vec<Comparable> {
    h.iter()
        .map(|m| {
            (
                m.train_loss,
                m.valid_loss,
                m.terms.clone().into_iter().collect(),
                m.valid_terms.clone().into_iter().collect(),
            )
        })
        .collect()
}

/// 64 training pairs and 96 validation pairs (other draws) of the embedded MNIST split.
pub fn sets() -> Option<(TwoViewMnist, TwoViewMnist)> {
    let images = mnist(96)?;
    let data = TwoViewMnist::new(images.clone().truncate(64), TwoViewConfig::default()).unwrap();
    let valid = TwoViewMnist::new(
        images,
        TwoViewConfig {
            seed: 5,
            ..Default::default()
        },
    )
    .unwrap();
    Some((data, valid))
}
