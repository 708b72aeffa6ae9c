//! Scores the group maps of `mmssl explain` on a synthetic cohort (`mmssl data synth-cohort`)
//! against the regions the cohort planted its AD effects in: for each model (pretrained and,
//! with `--reference`, random-init), target and modality, where the strongest `|t|` lies
//! against the nearest planted centre, and how much of the `|t|` mass falls inside the planted
//! regions (within 1.5 sigma of a centre) against their share of the brain mask.
//!
//! ```sh
//! mmssl explain RUN --set all --reference
//! cargo run --release --example planted_regions -- RUN/explain
//! ```

use mmssl::data::{planted_recovery, planted_regions, read_nifti};
use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: planted_regions EXPLAIN_FOLDER [THRESHOLD]")?,
    );
    let threshold: f32 = std::env::args()
        .nth(2)
        .map(|t| t.parse())
        .transpose()?
        .unwrap_or(0.0);
    let text = std::fs::read_to_string(dir.join("explain.json"))?;
    let report: serde_json::Value = serde_json::from_str(&text)?;
    let mask = read_nifti(dir.join("mask.nii.gz"))?;
    println!(
        "| model | target | modality | map | peak | peak (mm) | distance to nearest centre (mm) | |t| mass inside | share of brain | enrichment |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for model in report["models"].as_array().into_iter().flatten() {
        for maps in model["maps"].as_array().into_iter().flatten() {
            let modality = maps["modality"].as_u64().unwrap_or(0) as usize;
            for contrast in maps["contrasts"].as_array().into_iter().flatten() {
                for (kind, key) in [("t", "file"), ("difference", "difference_file")] {
                    let file = contrast[key].as_str().ok_or("a contrast without a file")?;
                    let map = read_nifti(file)?;
                    let regions = planted_regions(modality);
                    let r = planted_recovery(&map, Some(&mask), &regions, 1.5, threshold)?;
                    println!(
                        "| {} | {} | {} | {kind} {} | {:.3e} | [{:.0}, {:.0}, {:.0}] | {:.1} | {:.3} | {:.3} | {:.2} |",
                        model["model"].as_str().unwrap_or("?"),
                        maps["target"].as_str().unwrap_or("?"),
                        maps["modality_name"].as_str().unwrap_or("?"),
                        contrast["name"].as_str().unwrap_or("?"),
                        r.peak,
                        r.peak_mm[0],
                        r.peak_mm[1],
                        r.peak_mm[2],
                        r.peak_distance_mm,
                        r.mass_inside,
                        r.share_inside,
                        r.enrichment
                    );
                }
            }
        }
    }
    Ok(())
}
