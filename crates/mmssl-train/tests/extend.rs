//! A downstream method that adds a term to a built-in objective: the term reaches the loss
//! with its weight, is logged by name, and the model trains and represents like the built-in.

use burn::tensor::{Device, Tensor};
use mmssl_data::{
    MapItems, PairedDataset, TwoViewConfig, TwoViewMnist, embedded_mnist_test, load_batch,
};
use mmssl_train::{
    BuildSetup, ContrastiveFactory, ContrastiveStep, FitConfig, FitData, FitRun, Method,
    MethodFactory, MethodOptions, Quiet, fit,
};
use rand::{SeedableRng, rngs::StdRng};

/// An L1 penalty on the representations: the mean |z| over every modality's entries.
fn l1_of_z(step: &ContrastiveStep) -> Tensor<1> {
    let all: Vec<Tensor<1>> = step
        .encoded
        .iter()
        .map(|e| e.z.clone().abs().flatten(0, 1))
        .collect();
    Tensor::cat(all, 0).mean()
}

/// The mean of the first modality's latent embedding.
fn mean_latent(step: &ContrastiveStep) -> Tensor<1> {
    step.embeddings[0].latent.clone().mean()
}

#[test]
fn an_extra_term_is_added_with_its_weight_and_logged() {
    let images = embedded_mnist_test().unwrap().truncate(64);
    let pairs = TwoViewMnist::new(images, TwoViewConfig::default()).unwrap();
    let data = MapItems::new(pairs, |d: &TwoViewMnist, i, _epoch| d.get(i, 0));
    let shapes: Vec<Vec<usize>> = (0..2).map(|m| data.shape(m)).collect();
    let device = Device::flex().autodiff();
    let setup = BuildSetup {
        shapes: &shapes,
        classes: 10,
        device: &device,
    };
    let options = [("latent_dim".to_string(), "32".to_string())];
    let o = MethodOptions::new("cr-l2", &options);
    let base = ContrastiveFactory("CR".parse().unwrap());
    let extended =
        base.clone()
            .with_term("l1", 0.25, l1_of_z)
            .with_term("latent", -2.0, mean_latent);
    // The built-in's options, checked the same way.
    assert_eq!(extended.options(), base.options());
    let bad = [("latent_dim".to_string(), "0".to_string())];
    assert!(extended.check(&MethodOptions::new("cr-l2", &bad)).is_err());
    let plain = base
        .build(&o, &setup, &mut StdRng::seed_from_u64(4))
        .unwrap();
    let model = extended
        .build(&o, &setup, &mut StdRng::seed_from_u64(4))
        .unwrap();
    let batch = load_batch(&data, &(0..16).collect::<Vec<_>>(), 0, &device).unwrap();
    let read = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()[0] as f64;
    let step = plain.step(&batch, &mut StdRng::seed_from_u64(9)).unwrap();
    let expected = read(step.output.loss.clone()) + 0.25 * read(l1_of_z(&step))
        - 2.0 * read(mean_latent(&step));
    let out = model.loss(&batch, &mut StdRng::seed_from_u64(9)).unwrap();
    let (loss, terms) = out.values("test").unwrap();
    assert!(
        (loss - expected).abs() < 1e-4 * expected.abs().max(1.0),
        "{loss} vs {expected}"
    );
    let names: Vec<&str> = terms.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["CR[0]", "CR[1]", "l1", "latent"]);
    assert!((terms[2].1 - 0.25 * read(l1_of_z(&step))).abs() < 1e-5);
    // It represents and trains like the built-in.
    assert_eq!(model.modalities(), 2);
    assert_eq!(model.represent(&batch, 1).unwrap().dims(), [16, 32]);
    let config = FitConfig {
        epochs: 1,
        batch_size: 16,
        schedule: None,
        ..Default::default()
    };
    let outcome = fit(
        model,
        FitData::new(&data),
        &config,
        FitRun::new(&device, &mut Quiet),
    )
    .unwrap();
    assert!(outcome.history[0].terms.contains_key("l1"));
}
