//! Representation similarity on a generated two-view example.
//!
//! Two "modalities" of 2,000 samples share an 8-dimensional latent factor: view A sees it
//! through a random linear map (32 features), view B through a random map and a `tanh`
//! (24 features), each with its own noise. The example writes `A.npy` and `B.npy` to the
//! directory given as the first argument (default `target/similarity-demo`), prints the
//! similarity report, and shows how the indices fall as B's noise grows.
//!
//! ```sh
//! cargo run --release --example similarity -- target/similarity-demo
//! cargo run --release -- similarity --a target/similarity-demo/A.npy --b target/similarity-demo/B.npy
//! ```

use mmssl::similarity::Similarity;
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use std::error::Error;
use std::path::PathBuf;

fn gaussian(rng: &mut StdRng, shape: (usize, usize)) -> Array2<f64> {
    Array2::from_shape_fn(shape, |_| {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random_range(0.0..1.0);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    })
}

fn views(seed: u64, noise_b: f64) -> (Array2<f64>, Array2<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = 2000;
    let z = gaussian(&mut rng, (n, 8));
    let a = z.dot(&gaussian(&mut rng, (8, 32))) + gaussian(&mut rng, (n, 32)) * 0.5;
    let b = z
        .dot(&gaussian(&mut rng, (8, 24)))
        .mapv(|x| (x / 3.0).tanh())
        + gaussian(&mut rng, (n, 24)) * noise_b;
    (a, b)
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/similarity-demo".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let (a, b) = views(42, 0.2);
    a.write_npy(std::fs::File::create(dir.join("A.npy"))?)?;
    b.mapv(|x| x as f32)
        .write_npy(std::fs::File::create(dir.join("B.npy"))?)?;
    println!(
        "wrote {} (2000 x 32, f64) and {} (2000 x 24, f32)",
        dir.join("A.npy").display(),
        dir.join("B.npy").display()
    );

    println!("\nnoise on B |   CCA  | SVCCA  | PWCCA  |  CKA   | CKA (debiased)");
    println!("-----------+--------+--------+--------+--------+---------------");
    for noise in [0.05, 0.2, 0.5, 1.0, 3.0] {
        let (a, b) = views(42, noise);
        let r = Similarity::new().report(a.view(), b.view())?;
        let f = |v: Option<f64>| v.map_or("  n/a ".to_string(), |v| format!("{v:.4}"));
        println!(
            "   {noise:>5.2}   | {} | {} | {} | {} | {}",
            f(r.cca),
            f(r.svcca),
            f(r.pwcca),
            f(r.cka),
            f(r.cka_debiased)
        );
    }
    Ok(())
}
