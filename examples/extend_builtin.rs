//! A built-in objective with one term of your own, as a method of the protocol: CR plus an L2
//! penalty on each modality's representation `z`, registered as `cr-l2`, run once and in a
//! grid built in code beside plain CR. The method itself is the ten lines under "The method".
//!
//! ```sh
//! cargo run --release --example extend_builtin
//! ```
// A configuration is built field by field from the defaults: its sections nest too deep for
// one struct literal to read well.
#![allow(clippy::field_reassign_with_default)]

use mmssl::prelude::*;
use mmssl::protocol::aggregate::{markdown, summarise};

// The method: a function of the built-in step (encodings, head embeddings, the objective's
// loss), and the built-in factory with that term added.
fn l2_of_z(step: &ContrastiveStep) -> Tensor<1> {
    let mut terms = step
        .encoded
        .iter()
        .map(|e| e.z.clone().powi_scalar(2).mean());
    let first = terms.next().expect("a modality");
    terms.fold(first, |a, b| a + b)
}

fn cr_l2() -> ExtendedFactory {
    ContrastiveFactory("CR".parse().expect("an objective")).with_term("l2", 0.01, l2_of_z)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::builtin();
    registry.register("cr-l2", cr_l2())?;
    let device = Device::flex();

    // One run: pretraining, linear evaluation against the random init, similarity.
    let mut config = RunConfig::default();
    config.method = "cr-l2;latent_dim=32".parse()?;
    config.training.epochs = 1;
    config.evaluation.epochs = Some(5);
    config.output.dir = "runs/example-extend-builtin".into();
    config.output.overwrite = true;
    let report = run_with(&config, &registry, Phases::ALL, &device, &mut Quiet)?;
    print!("{}", report.summary());

    // A grid built in code: plain CR against CR + L2, two seeds each (on 2,048 pairs).
    config.data.train_limit = Some(2048);
    let methods = vec!["CR;latent_dim=32".parse()?, "cr-l2;latent_dim=32".parse()?];
    let grid = Grid::new(methods, config).with_seeds(vec![0, 1]);
    let out = std::path::Path::new("runs/example-extend-builtin-grid");
    let rows = grid.run(out, &registry, &device, GridOptions::default(), &mut Quiet)?;
    println!("{}", markdown(&summarise(&rows)));
    println!("tables and figures in {}", out.display());
    Ok(())
}
