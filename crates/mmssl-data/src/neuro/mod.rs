//! Neuroimaging: volumes with their affine, the preprocessing pipeline (resampling, masks,
//! intensity standardisation, augmentation), fALFF, cohorts of paired T1 and fALFF volumes, the
//! synthetic cohort, BIDS datasets to fALFF derivatives, and voxelwise statistics of maps
//! (group means, Welch's t, clusters).

pub(crate) mod atlas;
pub(crate) mod bids;
pub(crate) mod cohort;
pub(crate) mod confounds;
pub(crate) mod falff;
pub(crate) mod histogram;
pub(crate) mod planted;
pub(crate) mod preprocess;
pub(crate) mod reports;
pub(crate) mod stats;
pub(crate) mod synth;
pub(crate) mod synth_fmriprep;
pub(crate) mod volume;

pub use atlas::{Atlas, DEBIAN_AAL};
pub use bids::{
    AnatImage, BidsConfig, BidsFile, BidsName, BidsReport, BidsSession, BidsSkipped, BidsUsed,
    RunChoice, Standardise, TrSource, bids_to_manifest, parse_label_map,
};
pub use cohort::{
    CohortItem, CohortSplit, CohortVolumes, Diagnosis, Manifest, ManifestRow, PreparedPair,
    Subject, VolumeCohort, VolumePipeline, balanced_upsample, evaluation_items, pretraining_items,
    split_subjects,
};
pub use confounds::{
    ConfoundDesign, ConfoundsConfig, ConfoundsTable, Regression, confound_design, regress_confounds,
};
pub use falff::{AlffReduction, FalffConfig, FalffMaps, falff};
pub use histogram::{HistogramConfig, HistogramFitter, HistogramStandardizer, landmarks};
pub use planted::{PlantedRegion, Recovery, planted_recovery, planted_regions};
#[allow(deprecated)]
pub use preprocess::Grid;
pub use preprocess::{
    AugmentConfig, AugmentDraw, AugmentPairing, Mask, STANDARD_SIDE, STANDARD_SPACING, VoxelGrid,
    apply_mask, augment_volumes, brain_centre, crop_or_pad, resample, resample_to_standard,
    z_normalise,
};
pub use reports::{MIN_SYNTH_SUBJECTS, bundled_template};
pub use stats::{Cluster, WelchMaps, clusters, mean_map, smooth_fwhm, welch_t};
pub use synth::{
    HIPPOCAMPAL_SIGMA_MM, HIPPOCAMPI_MNI, POSTERIOR_MNI, POSTERIOR_SIGMA_MM, SynthConfig,
    SynthReport, TEMPORAL_MNI, TEMPORAL_SIGMA_MM, synth_cohort,
};
pub use synth_fmriprep::{
    FmriprepSynthConfig, FmriprepSynthReport, SYNTH_SPACE, SynthSeries, synth_fmriprep,
};
pub use volume::{Affine, Volume};
