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
use mmssl::protocol::ExplainReport;
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
    // Paths in explain.json are relative to the run folder: `read` resolves them, so this
    // works from any working folder.
    let report = ExplainReport::read(&dir.join("explain.json"))?;
    let mask = read_nifti(dir.join("mask.nii.gz"))?;
    println!(
        "| model | target | modality | map | peak | peak (mm) | region | distance to nearest centre (mm) | |t| mass inside | share of brain | enrichment |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for model in &report.models {
        for maps in &model.maps {
            for contrast in &maps.contrasts {
                let region = contrast
                    .clusters
                    .first()
                    .and_then(|k| k.region.clone())
                    .unwrap_or_default();
                for (kind, file) in [
                    ("t", &contrast.file),
                    ("difference", &contrast.difference_file),
                ] {
                    let map = read_nifti(file)?;
                    let regions = planted_regions(maps.modality);
                    let r = planted_recovery(&map, Some(&mask), &regions, 1.5, threshold)?;
                    println!(
                        "| {} | {} | {} | {kind} {} | {:.3e} | [{:.0}, {:.0}, {:.0}] | {region} | {:.1} | {:.3} | {:.3} | {:.2} |",
                        model.model,
                        maps.target,
                        maps.modality_name,
                        contrast.name,
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
