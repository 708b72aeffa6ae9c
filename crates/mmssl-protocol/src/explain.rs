//! Attribution maps of a pretrained run (`mmssl explain`): which parts of each modality's
//! input carry the representation that the modalities share, a single latent unit, or the
//! decision of the linear classifier, item by item, averaged per class and compared between
//! classes voxel by voxel.
//!
//! For each explained item and modality, a target (one number per item computed from the
//! modality's representation `z`) is attributed to the input by plain gradients, SmoothGrad or
//! integrated gradients ([`mmssl_train::attribute`]), with the encoders frozen (BatchNorm on its
//! running statistics, as in linear evaluation). The targets:
//!
//! - **shared** (default): the leading canonical components between the two modalities' `z`,
//!   fitted by CCA on the labelled training set of the linear evaluation (each session once);
//!   the target of component `c` for modality `m` is `(z_m - mean_m) . w_mc`. One set of maps
//!   per component.
//! - **unit**: one unit of `z`.
//! - **decision**: the linear classifier of the linear evaluation, rebuilt by training it again
//!   with the run's seed and settings (the same classifier as `eval.json`'s); the target is
//!   `logit(1) - logit(0)` for two classes (evidence for the second class: AD against HC), and
//!   the logit of the item's own class minus the mean logit for more.
//!
//! Volumes: each item's map is written on its input grid with the input's affine
//! (`items/<name>.nii.gz`), so it overlays on the subject's preprocessed volume; the group maps
//! (class means, and per contrast Welch's t and the difference of the means) are computed on a common grid (the items' grid when
//! they share one, else the same grid centred on the mean of their centres, each map resampled
//! trilinearly, then smoothed with a Gaussian of [`ExplainConfig::smoothing_mm`] FWHM),
//! restricted to the voxels inside the brain in every item, and written with a PNG of orthogonal slices over the template and the strongest clusters (peak
//! coordinates in millimetres) in `explain.json`. The group maps assume that the inputs are in a
//! common space (e.g. MNI, as the OASIS-3 derivatives and the synthetic cohort are): mmssl
//! recentres volumes, it does not register them. Images: the same maps as PNG image grids.

pub use crate::attribution::{
    AtlasSetting, Contrast, ExplainConfig, ExplainReport, ExplainSet, ExplainTarget, ModelMaps,
    TargetMaps,
};

use crate::attribution::prepare_out;
use crate::error::Result;
use crate::observe::Observer;
use crate::registry::Registry;
use burn::tensor::Device;
use std::path::Path;

/// Explains the run in `run_dir` with the built-in methods (see the module documentation);
/// writes the maps and `explain.json` into `config.out` (default `RUN/explain`).
pub fn explain(
    run_dir: &Path,
    config: &ExplainConfig,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<ExplainReport> {
    explain_with(run_dir, config, &Registry::builtin(), device, observer)
}

/// [`explain`] with the methods of `registry`.
pub fn explain_with(
    run_dir: &Path,
    config: &ExplainConfig,
    registry: &Registry,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<ExplainReport> {
    config.check()?;
    let run = crate::config::load_run_config(run_dir)?;
    let out = config
        .out
        .clone()
        .unwrap_or_else(|| run_dir.join("explain"));
    prepare_out(&out, config.overwrite)?;
    crate::run::with_session(&run, registry, device, observer, |method, session| {
        method.explain(session, config, &out)
    })
}
