//! Every baseline trains through the one training loop on real MNIST pairs and its loss goes
//! down; linear CCA fitted on real pairs gives features that linear evaluation can use.

use burn::tensor::Device;
use mmssl_baselines::{
    HybridFactory, LinearCcaConfig, MmvaeFactory, SupervisedFactory, dataset_matrix,
};
use mmssl_data::{
    ImageSet, MapItems, PairedDataset, PairedItem, TwoViewConfig, TwoViewMnist, embedded_mnist_test,
};
use mmssl_train::{
    BuildSetup, EpochMetrics, FitConfig, FitData, FitRun, LinearEvalConfig, Method, MethodFactory,
    MethodOptions, Quiet, fit, linear_eval,
};
use rand::{SeedableRng, rngs::StdRng};

/// The first `n` images of the MNIST test split (shipped inside mmssl-data).
fn mnist(n: usize) -> Option<ImageSet> {
    Some(embedded_mnist_test().unwrap().truncate(n))
}

#[test]
fn every_trained_baseline_lowers_its_loss_on_real_mnist_pairs() {
    let Some(images) = mnist(32) else { return };
    // The epoch-0 draw in every epoch, so the loss of a fixed set is tracked.
    let pairs = TwoViewMnist::new(images, TwoViewConfig::default()).unwrap();
    let data = MapItems::new(pairs, |d: &TwoViewMnist, i, _epoch| d.get(i, 0));
    let shapes: Vec<Vec<usize>> = (0..2).map(|m| data.shape(m)).collect();
    let device = Device::flex().autodiff();
    let config = FitConfig {
        epochs: 10,
        batch_size: 16,
        seed: 5,
        lr: 1e-3,
        schedule: None,
        ..Default::default()
    };
    let setup = BuildSetup {
        shapes: &shapes,
        classes: 10,
        device: &device,
    };
    // Each trained baseline through its factory, as the method registry builds it; two
    // importance samples keep MMVAE's steps quick.
    let options = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let build = |name: &str, factory: &dyn Fn(&MethodOptions<'_>) -> Box<dyn Trainable>| {
        let o = if name == "mmvae" {
            options(&[("k", "2")])
        } else {
            Vec::new()
        };
        (name.to_string(), factory(&MethodOptions::new(name, &o)))
    };
    let rng = || StdRng::seed_from_u64(1);
    let models = [
        build("supervised", &|o| {
            Box::new(SupervisedFactory.build(o, &setup, &mut rng()).unwrap())
        }),
        build("ae", &|o| {
            Box::new(HybridFactory::AE.build(o, &setup, &mut rng()).unwrap())
        }),
        build("dccae", &|o| {
            Box::new(HybridFactory::DCCAE.build(o, &setup, &mut rng()).unwrap())
        }),
        build("cr-cca", &|o| {
            Box::new(HybridFactory::CR_CCA.build(o, &setup, &mut rng()).unwrap())
        }),
        build("rr-ae", &|o| {
            Box::new(HybridFactory::RR_AE.build(o, &setup, &mut rng()).unwrap())
        }),
        build("mmvae", &|o| {
            Box::new(MmvaeFactory.build(o, &setup, &mut rng()).unwrap())
        }),
    ];
    for (kind, model) in models {
        let history = model.train(&data, &config, &device);
        let losses: Vec<f64> = history.iter().map(|e| e.train_loss).collect();
        assert!(losses.iter().all(|l| l.is_finite()), "{kind}: {losses:?}");
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(
            last < first - 0.02 * first.abs(),
            "{kind}: the loss did not go down: {losses:?}"
        );
        // The deep CCA term itself learns: with 10-dimensional CCA heads and 16 samples per
        // batch (15 > 10) its correlation is not at the ceiling from the start and rises.
        if history[0].terms.contains_key("CCA[0,1]") {
            let cca: Vec<f64> = history.iter().map(|e| e.terms["CCA[0,1]"]).collect();
            assert!(
                cca[0] > -10.0 && cca.iter().all(|c| *c >= -10.0),
                "{kind}: {cca:?}"
            );
            assert!(
                *cca.last().unwrap() < cca[0] - 0.05,
                "{kind}: the CCA term did not go down: {cca:?}"
            );
        }
        eprintln!("{kind}: {losses:?}");
    }
}

#[test]
fn linear_cca_on_real_pairs_feeds_linear_evaluation() {
    let Some(images) = mnist(3300) else { return };
    let parent: std::sync::Arc<dyn PairedDataset> =
        std::sync::Arc::new(TwoViewMnist::new(images, TwoViewConfig::default()).unwrap());
    // 3000 training pairs: more than one block of the streamed fit.
    let train = mmssl_data::Subset::new(parent.clone(), (300..3300).collect()).unwrap();
    let (x1, _) = dataset_matrix(&train, 0).unwrap();
    let (x2, _) = dataset_matrix(&train, 1).unwrap();
    assert_eq!(x1.dim(), (3000, 1024));
    let config = LinearCcaConfig {
        components: 16,
        reg: 1e-2,
    };
    let lcca = config.fit(x1.view(), x2.view()).unwrap();
    let c = lcca.correlations();
    assert!(
        c[0] > 0.5 && c.windows(2).into_iter().all(|w| w[0] >= w[1]),
        "{c}"
    );
    // The streamed fit (covariances accumulated over blocks of items, never the whole data
    // in memory) gives the same correlations and the same variates up to sign.
    let streamed = config.fit_dataset(&train).unwrap();
    for (a, b) in c.iter().zip(streamed.correlations().iter()) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
    let (za, zb) = (
        lcca.transform(0, x1.view()).unwrap(),
        streamed.transform(0, x1.view()).unwrap(),
    );
    for j in 0..8 {
        let dot: f64 = za.column(j).dot(&zb.column(j));
        let norm = za.column(j).dot(&za.column(j));
        assert!(
            (dot.abs() / norm - 1.0).abs() < 1e-6,
            "component {j}: {}",
            dot / norm
        );
    }
    let valid = mmssl_data::Subset::new(parent.clone(), (0..100).collect()).unwrap();
    let test = mmssl_data::Subset::new(parent, (100..300).collect()).unwrap();
    let device = Device::flex().autodiff();
    let mut cfg = LinearEvalConfig::default();
    cfg.training.epochs = 50;
    let f = |d: &dyn PairedDataset| lcca.features(d, 0).unwrap();
    let (ftr, fva, fte) = (f(&train), f(&valid), f(&test));
    assert_eq!(ftr.dim, 16);
    let r = linear_eval(&ftr, &fva, &fte, 10, &cfg, &device).unwrap();
    // Ten classes: chance is 0.1.
    assert!(r.accuracy > 0.4, "{r:?}");
}

/// Two modalities of 64³ volumes (never read: linear CCA must refuse them from the shapes).
struct Volumes;

impl PairedDataset for Volumes {
    fn len(&self) -> usize {
        8
    }
    fn modalities(&self) -> usize {
        2
    }
    fn shape(&self, _m: usize) -> Vec<usize> {
        vec![1, 64, 64, 64]
    }
    fn classes(&self) -> usize {
        2
    }
    fn label(&self, _i: usize) -> Option<usize> {
        None
    }
    fn get(&self, i: usize, _epoch: u64) -> mmssl_data::Result<PairedItem> {
        panic!("item {i} read: the shape check should have refused the data first")
    }
}

#[test]
fn linear_cca_refuses_raw_volumes_with_the_reason() {
    let err = LinearCcaConfig::default()
        .fit_dataset(&Volumes)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("262144 features") && err.contains("GB"),
        "{err}"
    );
}

/// A baseline's model, trained through the one loop (each factory builds its own type): the
/// per-epoch metrics.
trait Trainable {
    fn train(
        self: Box<Self>,
        data: &dyn PairedDataset,
        config: &FitConfig,
        device: &Device,
    ) -> Vec<EpochMetrics>;
}

impl<M: Method> Trainable for M {
    fn train(
        self: Box<Self>,
        data: &dyn PairedDataset,
        config: &FitConfig,
        device: &Device,
    ) -> Vec<EpochMetrics> {
        fit(
            *self,
            FitData::new(data),
            config,
            FitRun {
                device,
                checkpoints: None,
                progress: &mut Quiet,
            },
        )
        .unwrap()
        .history
    }
}
