//! Two-View MNIST end to end with the library's protocol: the paper's main experiment in
//! miniature.
//!
//! Pretrains CR-XX-CC (InfoNCE, scaled-dot critic, RAdam + one-cycle) on Two-View MNIST
//! (view 1 rotated by up to 45 degrees, view 2 with additive uniform noise), evaluates each
//! view linearly on the frozen encoder's `z` against the same encoder at its random
//! initialisation, and compares the two views' representations, all through
//! `mmssl::protocol::run`, the function behind `mmssl run`. The run folder
//! (`runs/example-two-view`) holds the configuration, the checkpoints and `eval.json`.
//!
//! ```sh
//! cargo run --release --example two_view_mnist                           # embedded t10k subset
//! cargo run --release --example two_view_mnist -- ../shared/data/mnist 2   # full MNIST, 2 epochs
//! ```
//!
//! With a folder, the official training split trains (10,000 pairs; a stratified twelfth of
//! the rest validates) and t10k tests; without one, the MNIST test split shipped with mmssl is
//! split 8,000 / 1,000 / 1,000.
// A configuration is built field by field from the defaults: its sections nest too deep for
// one struct literal to read well.
#![allow(clippy::field_reassign_with_default)]

use mmssl::burn::tensor::Device;
use mmssl::protocol::{EpochMetrics, Observer, Phase, Progress, RunConfig, run};
use std::error::Error;

/// Prints one line per epoch and per phase.
struct Lines;

impl Progress for Lines {
    fn epoch(&mut self, e: &EpochMetrics) {
        println!(
            "epoch {}: train loss {:.3}, validation loss {:.3}, {:.0} pairs/s",
            e.epoch,
            e.train_loss,
            e.valid_loss.unwrap_or(f64::NAN),
            e.pairs_per_second
        );
    }
}

impl Observer for Lines {
    fn phase(&mut self, phase: Phase) {
        println!("{phase:?}");
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = RunConfig::default();
    config.method = "CR-XX-CC".parse()?;
    config.training.epochs = args.get(1).map(|e| e.parse()).transpose()?.unwrap_or(1);
    config.evaluation.epochs = Some(20);
    config.output.dir = "runs/example-two-view".into();
    if let Some(dir) = args.first() {
        config.data.data_dir = Some(dir.into());
        config.data.train_limit = Some(10_000);
    }
    let report = run(&config, &Device::flex(), &mut Lines)?;
    println!("{}", report.summary());
    Ok(())
}
