//! mmssl's encoder and heads in the authors' variant compute the authors' PyTorch model
//! (github:Entodi/fusion) to 1e-5: their state dicts imported through the documented name
//! table, their outputs (z, the tapped map, both heads) on fixed inputs in training and in
//! evaluation mode, and the batch-norm running statistics after one training-mode forward.
//! The fixtures come from `tests/fixtures/authors/make_fixtures.py` (PyTorch and a checkout of
//! the authors' code, run by hand); these tests need neither.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use mmssl_encoders::dcgan::{ENCODER_2D, ENCODER_3D, Layer, TAP_2D, TAP_3D};
use mmssl_encoders::{
    ConvHead, ConvHeadConfig, DcganEncoder, EncoderOptions, LatentHead, LatentHeadConfig, Variant,
};
use mmssl_protocol::interop::authors::{self, AuthorsArch, Part, TensorPair};
use mmssl_protocol::interop::burn_store::ModuleSnapshot;
use mmssl_protocol::interop::{StateDict, hash_inputs, pack_f32, unpack_f32};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/authors")
        .join(name)
}

/// `max |ours - theirs| / max |theirs|`.
fn relative(ours: &[f32], theirs: &[f32]) -> f64 {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let diff = ours
        .iter()
        .zip(theirs)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
    diff / scale.max(1e-30)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Applies the tensors of `table` (the authors' names) from `dict` to `module`, which must
/// then be complete.
fn load<M: Module>(module: &mut M, dict: &StateDict, table: &[TensorPair]) {
    let tensors = table
        .iter()
        .filter(|p| p.layout != authors::Layout::Counter)
        .map(|p| {
            let t = &dict.tensors[&p.authors];
            let (v, s) = authors::to_mmssl(&t.values, &t.shape, p.layout);
            pack_f32(p.mmssl.clone(), s, v)
        })
        .collect();
    let r = module.apply(tensors, None, None, true);
    assert!(
        r.missing.is_empty() && r.unused.is_empty() && r.errors.is_empty(),
        "{r:?}"
    );
}

struct Model<const D: usize> {
    encoder: DcganEncoder<D>,
    conv_head: ConvHead,
    latent_head: LatentHead,
    tables: [Vec<TensorPair>; 3],
}

fn build<const D: usize>(
    dict: &StateDict,
    s: usize,
    arch: &AuthorsArch,
    table: &[Layer],
    tap: usize,
    device: &Device,
) -> Model<D> {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(9);
    let options = EncoderOptions {
        width: arch.width,
        variant: Variant::Authors,
    };
    let mut encoder =
        DcganEncoder::<D>::from_table_with(table, tap, 1, arch.latent_dim, &options, device, rng)
            .unwrap();
    let mut conv_head = ConvHeadConfig::new(encoder.tapped_channels())
        .with_variant(Variant::Authors)
        .init(device, rng)
        .unwrap();
    let mut latent_head = LatentHeadConfig::new()
        .with_in_features(arch.latent_dim)
        .with_variant(Variant::Authors)
        .init(device, rng)
        .unwrap();
    let tables = [Part::Encoder, Part::ConvHead, Part::LatentHead]
        .map(|part| arch.table(part, &authors::dim_prefix(part, s, arch), ""));
    load(&mut encoder, dict, &tables[0]);
    load(&mut conv_head, dict, &tables[1]);
    load(&mut latent_head, dict, &tables[2]);
    Model {
        encoder,
        conv_head,
        latent_head,
        tables,
    }
}

/// The four outputs of one source on `x`.
fn forward<const D: usize>(m: &Model<D>, x: Tensor<D>) -> [Vec<f32>; 4] {
    let out = m.encoder.forward(x);
    let head = m.conv_head.forward(out.conv.clone());
    let latent = m.latent_head.forward(out.z.clone());
    [
        values(out.z),
        values(out.conv),
        values(head),
        values(latent),
    ]
}

/// Imports the fixture `pt`, runs both sources in training then evaluation mode and compares
/// every output and running statistic with the authors'; returns the worst relative
/// difference.
fn equivalence<const D: usize>(pt: &str, outputs: &str, table: &[Layer], tap: usize) -> f64 {
    let dict = StateDict::read(&fixture(pt)).unwrap();
    let expected = StateDict::read(&fixture(outputs)).unwrap().tensors;
    let device = Device::flex().autodiff();
    let mut worst = 0f64;
    for s in [0, 1] {
        let arch = authors::detect(&dict, s, true).unwrap();
        let model = build::<D>(&dict, s, &arch, table, tap, &device);
        let batch = expected[&format!("train.{s}.z")].shape[0];
        let mut dims = [1usize; D];
        dims[0] = batch;
        for d in dims.iter_mut().skip(2) {
            *d = arch.input_size();
        }
        let n: usize = dims.iter().product();
        let x = || TensorData::new(hash_inputs(n), dims);
        // Compares the four outputs in `mode` (`train`, `eval`) with the authors'; returns the
        // worst relative difference.
        let compare = |mode: &str, outputs: [Vec<f32>; 4]| {
            let names = ["z", "conv", "conv_head", "latent_head"];
            let mut worst = 0f64;
            for (name, ours) in names.iter().zip(&outputs) {
                let theirs = &expected[&format!("{mode}.{s}.{name}")].values;
                let r = relative(ours, theirs);
                assert!(r < 1e-5, "{pt} source {s} {mode} {name}: {r:e}");
                worst = worst.max(r);
            }
            worst
        };
        // Training mode: batch statistics, running statistics updated.
        let train = forward(&model, Tensor::<D>::from_data(x(), &device));
        worst = worst.max(compare("train", train));
        // Evaluation mode (`valid()` also gathers the running statistics the forward updated).
        let plain = device.clone().without_autodiff();
        let eval = Model::<D> {
            encoder: model.encoder.valid(),
            conv_head: model.conv_head.valid(),
            latent_head: model.latent_head.valid(),
            tables: model.tables.clone(),
        };
        // The running statistics after that forward.
        let mut state = BTreeMap::new();
        for t in eval.encoder.collect(None, None, true) {
            state.insert(format!("e.{}", t.name), unpack_f32(&t).unwrap());
        }
        for t in eval.conv_head.collect(None, None, true) {
            state.insert(format!("c.{}", t.name), unpack_f32(&t).unwrap());
        }
        for t in eval.latent_head.collect(None, None, true) {
            state.insert(format!("l.{}", t.name), unpack_f32(&t).unwrap());
        }
        let mut checked = 0;
        for (table, tag) in model.tables.iter().zip(["e", "c", "l"]) {
            for p in table.iter().filter(|p| p.mmssl.contains("running_")) {
                let ours = &state[&format!("{tag}.{}", p.mmssl)];
                let theirs = &expected[&format!("train.state.{}", p.authors)].values;
                let r = relative(ours, theirs);
                assert!(r < 1e-5, "{pt} {}: {r:e}", p.authors);
                worst = worst.max(r);
                checked += 1;
            }
        }
        // Batch norms: the encoder's (2 in 2D, 3 in 3D), the conv head's 2, the latent head's 1.
        let norms = if D == 4 { 2 + 2 + 1 } else { 3 + 2 + 1 };
        assert_eq!(checked, 2 * norms, "running statistics compared");
        // Evaluation mode: normalised by the running statistics.
        let evaluated = forward(&eval, Tensor::<D>::from_data(x(), &plain));
        worst = worst.max(compare("eval", evaluated));
    }
    worst
}

#[test]
fn the_authors_2d_model_computes_the_same_function_in_mmssl() {
    let worst = equivalence::<4>("dim2d.pt", "dim2d_outputs.safetensors", ENCODER_2D, TAP_2D);
    println!("2D: worst relative difference {worst:.2e}");
}

#[test]
fn the_authors_3d_model_from_a_catalyst_checkpoint_computes_the_same_function_in_mmssl() {
    let dict = StateDict::read(&fixture("dim3d_catalyst.pth")).unwrap();
    assert_eq!(dict.key.as_deref(), Some("model_state_dict"));
    let worst = equivalence::<5>(
        "dim3d_catalyst.pth",
        "dim3d_outputs.safetensors",
        ENCODER_3D,
        TAP_3D,
    );
    println!("3D: worst relative difference {worst:.2e}");
}

#[test]
fn mmssl_variant_differs_from_the_authors_in_the_running_variance() {
    // The authors' latent head in mmssl's own variant: training-mode outputs agree
    // (normalisation divides by the biased variance in both), the running variance does not:
    // PyTorch follows the unbiased batch variance, n / (n - 1) = 4 / 3 of it for a batch of 4.
    let dict = StateDict::read(&fixture("dim2d.pt")).unwrap();
    let arch = authors::detect(&dict, 0, true).unwrap();
    let device = Device::flex().autodiff();
    let rng = &mut rand::rngs::StdRng::seed_from_u64(1);
    let mut head = LatentHeadConfig::new().init(&device, rng).unwrap();
    let table = arch.table(Part::LatentHead, "_latent_heads.0.", "");
    load(&mut head, &dict, &table);
    let expected = StateDict::read(&fixture("dim2d_outputs.safetensors"))
        .unwrap()
        .tensors;
    // The authors' z of source 0 in training mode is the head's input.
    let z = &expected["train.0.z"];
    let input = Tensor::<2>::from_data(TensorData::new(z.values.clone(), z.shape.clone()), &device);
    let out = values(head.forward(input));
    assert!(relative(&out, &expected["train.0.latent_head"].values) < 1e-5);
    let state: BTreeMap<String, Vec<f32>> = head
        .valid()
        .collect(None, None, true)
        .into_iter()
        .map(|t| (t.name.clone(), unpack_f32(&t).unwrap()))
        .collect();
    let ours = &state["bn.norm.running_var"];
    let before = &dict.tensors["_latent_heads.0._head.2.running_var"].values;
    let theirs = &expected["train.state._latent_heads.0._head.2.running_var"].values;
    // Per channel: theirs - 0.9 before = 0.1 * 4/3 * var, ours - 0.9 before = 0.1 * var.
    for c in 0..ours.len() {
        let (o, t) = (ours[c] - 0.9 * before[c], theirs[c] - 0.9 * before[c]);
        assert!((t / o - 4.0 / 3.0).abs() < 1e-3, "channel {c}: {t} / {o}");
    }
}
