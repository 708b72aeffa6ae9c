//! A downstream crate's own method, run through the paper's protocol and a grid without
//! touching mmssl.
//!
//! The method, `cosine-rr`, is a cross-modal representation-to-representation objective
//! written from outside: each modality's DCGAN encoder, a linear projection, and the
//! symmetric InfoNCE between the modalities' projections with a cosine critic whose
//! temperature is an option. Three steps make it a method of the protocol:
//!
//! 1. a model type implementing [`Method`] (a batch in, a loss out; the representation of a
//!    modality for evaluation);
//! 2. a [`MethodFactory`] naming its options and building the model;
//! 3. [`Registry::register`] under a name, then [`run_with`] or [`Grid::run`] with that
//!    registry.
//!
//! It then runs like a built-in method: pretraining with checkpoints, linear evaluation per
//! modality against the random initialisation, similarity, the run folder, grids and their
//! tables, and `cosine-rr;temperature=0.2` in configuration files.
//!
//! ```sh
//! cargo run --release --example custom_method
//! ```
// A configuration is built field by field from the defaults: its sections nest too deep for
// one struct literal to read well.
#![allow(clippy::field_reassign_with_default)]

use mmssl::burn::module::Module;
use mmssl::burn::nn::{Linear, LinearConfig};
use mmssl::burn::tensor::{Device, Tensor};
use mmssl::data::Batch;
use mmssl::encoders::init::xavier_param;
use mmssl::objectives::{Contrast, Critic};
use mmssl::protocol::aggregate::{markdown, summarise};
use mmssl::protocol::{
    BuildSetup, Grid, GridOptions, MethodFactory, MethodOption, MethodOptions, Phases, Quiet,
    Registry, RunConfig, run_with,
};
use mmssl::train::Result as TrainResult;
use mmssl::train::{AnyEncoder, Method, StepOutput};
use rand::rngs::StdRng;
use std::error::Error;

/// Encoders and projections of `cosine-rr`.
#[derive(Module, Debug)]
struct CosineRr {
    encoders: Vec<AnyEncoder>,
    projections: Vec<Linear>,
    #[module(skip)]
    temperature: f64,
}

impl Method for CosineRr {
    fn loss(&self, batch: &Batch, _rng: &mut StdRng) -> TrainResult<StepOutput> {
        let mut embeddings = Vec::new();
        for (m, view) in batch.views.iter().enumerate() {
            let z = self.encoders[m].forward(view)?.z;
            // [B, d] -> [B, d, 1]: one location per sample.
            embeddings.push(self.projections[m].forward(z).unsqueeze_dim::<3>(2));
        }
        let contrast = Contrast::new().with_critic(Critic::cosine(self.temperature));
        let mut terms = Vec::new();
        let mut total: Option<Tensor<1>> = None;
        for (a, t) in [(0, 1), (1, 0)] {
            let (loss, penalty) = contrast.forward(embeddings[a].clone(), embeddings[t].clone())?;
            let term = loss + penalty;
            total = Some(match total {
                Some(sum) => sum + term.clone(),
                None => term.clone(),
            });
            terms.push((format!("cosine-rr[{a}->{t}]"), term));
        }
        Ok(StepOutput {
            loss: total.expect("two terms"),
            terms,
        })
    }

    fn represent(&self, batch: &Batch, modality: usize) -> TrainResult<Tensor<2>> {
        let view = batch
            .views
            .get(modality)
            .ok_or(mmssl::train::TrainError::NoModality {
                modality,
                available: batch.views.len(),
            })?;
        Ok(self.encoders[modality].forward(view)?.z)
    }

    fn modalities(&self) -> usize {
        self.encoders.len()
    }
}

/// How the protocol builds `cosine-rr` and which options it takes.
struct CosineRrFactory;

impl MethodFactory for CosineRrFactory {
    type Model = CosineRr;

    fn options(&self) -> Vec<MethodOption> {
        vec![
            MethodOption::new(
                "temperature",
                "the cosine critic's temperature (default 0.1)",
            ),
            MethodOption::new("latent_dim", "size of z (default 64)"),
        ]
    }

    fn check(&self, options: &MethodOptions<'_>) -> TrainResult<()> {
        options.positive("temperature", 0.1)?;
        options.count("latent_dim", 64)?;
        Ok(())
    }

    fn build(&self, o: &MethodOptions, s: &BuildSetup, rng: &mut StdRng) -> TrainResult<CosineRr> {
        let latent = o.count("latent_dim", 64)?;
        let mut encoders = Vec::new();
        let mut projections = Vec::new();
        for shape in s.shapes {
            encoders.push(AnyEncoder::for_shape(shape, latent, s.device, rng)?);
            // Seeded Xavier weights (burn's own initialisers draw from an unseeded generator).
            let mut projection = LinearConfig::new(latent, 32)
                .with_bias(false)
                .init(s.device);
            projection.weight = xavier_param([latent, 32], latent, 32, 1.0, rng, s.device);
            projections.push(projection);
        }
        Ok(CosineRr {
            encoders,
            projections,
            temperature: o.positive("temperature", 0.1)?,
        })
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut registry = Registry::builtin();
    registry.register("cosine-rr", CosineRrFactory)?;

    // One run from a configuration, as `mmssl run` would do it.
    let mut config = RunConfig::default();
    config.method = "cosine-rr;temperature=0.2".parse()?;
    config.data.train_limit = Some(1024);
    config.training.epochs = 1;
    config.evaluation.epochs = Some(5);
    config.output.dir = "runs/example-custom-method".into();
    let device = Device::flex();
    let report = run_with(&config, &registry, Phases::ALL, &device, &mut Quiet)?;
    println!("{}", report.summary());

    // The same method beside a built-in one in a grid.
    let grid = Grid::from_toml_str(
        "methods = [\"cosine-rr;temperature=0.1\", \"RR\"]\nseeds = [0]\n\
         [settings]\ntrain_limit = 1024\nepochs = 1\neval_epochs = 5\n",
        &registry,
    )?;
    let out = std::path::Path::new("runs/example-custom-grid");
    let rows = grid.run(out, &registry, &device, GridOptions::default(), &mut Quiet)?;
    println!("{}", markdown(&summarise(&rows)));
    println!("tables and figures in {}", out.display());
    Ok(())
}
