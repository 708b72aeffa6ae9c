//! Every baseline trains through the one training loop on real MNIST pairs and its loss goes
//! down; linear CCA fitted on real pairs gives features that linear evaluation can use.

use burn::tensor::Device;
use mmssl_baselines::{BaselineKind, LinearCcaConfig, dataset_matrix};
use mmssl_data::{
    ImageSet, MnistSplit, PairedDataset, PairedItem, TwoViewConfig, TwoViewMnist, load_mnist_dir,
};
use mmssl_train::{LinearEvalConfig, Quiet, TrainConfig, fit, linear_eval};
use rand::{SeedableRng, rngs::StdRng};
use std::path::PathBuf;

fn mnist(n: usize) -> Option<ImageSet> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mnist");
    if !dir.exists() {
        eprintln!("skipping: {} is absent", dir.display());
        return None;
    }
    Some(load_mnist_dir(&dir, MnistSplit::Test).unwrap().truncate(n))
}

/// Two-View MNIST with the epoch-0 draw in every epoch, so the loss of a fixed set is tracked.
struct Fixed(TwoViewMnist);

impl PairedDataset for Fixed {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn modalities(&self) -> usize {
        2
    }
    fn shape(&self, m: usize) -> Vec<usize> {
        self.0.shape(m)
    }
    fn classes(&self) -> usize {
        self.0.classes()
    }
    fn label(&self, i: usize) -> Option<usize> {
        self.0.label(i)
    }
    fn get(&self, i: usize, _epoch: u64) -> mmssl_data::Result<PairedItem> {
        self.0.get(i, 0)
    }
}

#[test]
fn every_trained_baseline_lowers_its_loss_on_real_mnist_pairs() {
    let Some(images) = mnist(32) else { return };
    let data = Fixed(TwoViewMnist::new(images, TwoViewConfig::default()).unwrap());
    let shapes: Vec<Vec<usize>> = (0..2).map(|m| data.shape(m)).collect();
    let device = Device::flex().autodiff();
    let config = TrainConfig {
        epochs: 10,
        batch_size: 16,
        seed: 5,
        lr: 1e-3,
        schedule: None,
        ..Default::default()
    };
    for kind in BaselineKind::ALL.into_iter().filter(|k| k.is_trained()) {
        // Two importance samples keep MMVAE's steps quick.
        let model = kind
            .build(&shapes, 64, 10, 2, &device, &mut StdRng::seed_from_u64(1))
            .unwrap();
        let out = fit(model, &data, None, &config, None, &device, &mut Quiet).unwrap();
        let losses: Vec<f64> = out.history.iter().map(|e| e.train_loss).collect();
        assert!(losses.iter().all(|l| l.is_finite()), "{kind}: {losses:?}");
        // With 16 samples and 64-dimensional heads the deep CCA term starts at its ceiling
        // (m - 1 canonical correlations of 1; see DeepCca's docs), so for the CCA methods the
        // other terms are tracked, and the CCA term must stay at its ceiling.
        let tracked: Vec<f64> = out
            .history
            .iter()
            .map(|e| {
                if e.terms.contains_key("CCA[0,1]") {
                    assert!(e.terms["CCA[0,1]"] < -14.0, "{kind}: {:?}", e.terms);
                    e.terms
                        .iter()
                        .filter(|(n, _)| !n.starts_with("CCA"))
                        .map(|(_, v)| v)
                        .sum()
                } else {
                    e.train_loss
                }
            })
            .collect();
        let (first, last) = (tracked[0], *tracked.last().unwrap());
        assert!(
            last < first - 0.02 * first.abs(),
            "{kind}: the loss did not go down: {tracked:?} (total {losses:?})"
        );
        eprintln!("{kind}: {losses:?}");
    }
}

#[test]
fn linear_cca_on_real_pairs_feeds_linear_evaluation() {
    let Some(images) = mnist(1200) else { return };
    let parent: std::sync::Arc<dyn PairedDataset> =
        std::sync::Arc::new(TwoViewMnist::new(images, TwoViewConfig::default()).unwrap());
    let train = mmssl_data::Subset::new(parent.clone(), (0..1000).collect()).unwrap();
    let (x1, _) = dataset_matrix(&train, 0).unwrap();
    let (x2, _) = dataset_matrix(&train, 1).unwrap();
    assert_eq!(x1.dim(), (1000, 1024));
    let lcca = LinearCcaConfig {
        components: 16,
        reg: 1e-2,
    }
    .fit(x1.view(), x2.view())
    .unwrap();
    let c = lcca.correlations();
    assert!(
        c[0] > 0.5 && c.windows(2).into_iter().all(|w| w[0] >= w[1]),
        "{c}"
    );
    let valid = mmssl_data::Subset::new(parent.clone(), (1000..1100).collect()).unwrap();
    let test = mmssl_data::Subset::new(parent, (1100..1200).collect()).unwrap();
    let device = Device::flex().autodiff();
    let cfg = LinearEvalConfig {
        epochs: 50,
        ..Default::default()
    };
    let f = |d: &dyn PairedDataset| lcca.features(d, 0).unwrap();
    let (ftr, fva, fte) = (f(&train), f(&valid), f(&test));
    assert_eq!(ftr.dim, 16);
    let r = linear_eval(&ftr, &fva, &fte, 10, &cfg, &device).unwrap();
    // Ten classes: chance is 0.1.
    assert!(r.accuracy > 0.4, "{r:?}");
}
