//! Paired-volume cohorts (OASIS-3 style T1 + fALFF) from a CSV manifest: subject-level
//! stratified folds with a hold-out set, pretraining / evaluation / class-balanced sets, and
//! [`VolumeCohort`], the [`PairedDataset`] that loads, preprocesses, caches and augments pairs.
//!
//! # Manifest
//!
//! A CSV file with a header row and the columns `subject`, `session`, `t1`, `falff`, `label`
//! (names case-insensitive, in any order), plus any extra covariate columns (kept as text).
//! `t1` and `falff` are paths to NIfTI files, relative to the manifest's folder unless
//! absolute; `label` is `HC`, `AD`, `other` or empty (unlabelled), case-insensitive. Every
//! problem (a missing column, a missing file, a duplicate `(subject, session)`, an unknown
//! label, a short row) is a [`DataError::Manifest`] naming the file and line.
//!
//! # Subjects and splits
//!
//! A subject's diagnosis is AD if any of its sessions is AD, else HC if any is HC, else other
//! if any is other, else unlabelled. [`split_subjects`] shuffles the subjects of each
//! diagnosis with a seed, puts a fraction of each in the hold-out set and deals the rest into
//! `k` folds (continuing the deal across diagnoses), so no subject is in two sets and every set
//! has the cohort's class proportions up to rounding.
//!
//! # Preprocessing of a pair ([`CohortVolumes`])
//!
//! Load both volumes -> resample both onto the standard grid (64^3, 3 mm) centred on the T1's
//! brain centre -> brain mask (T1 above a threshold, or a given mask volume) applied to both ->
//! Nyul-Udupa histogram standardisation with landmarks learned on training pairs only ->
//! z-normalisation inside the mask -> (per item and epoch) the same random crop and flips on
//! both modalities, drawn from [`item_rng`]`(seed, epoch, index)`. Everything up to the
//! augmentation is cached in memory per session (2 x 1 MiB for 64^3), so epochs after the
//! first only augment.

use crate::dataset::{PairedDataset, PairedItem, item_rng};
use crate::error::{DataError, Result};
use crate::histogram::{HistogramConfig, HistogramFitter, HistogramStandardizer};
use crate::nifti_io::read_nifti;
use crate::preprocess::{
    AugmentConfig, Grid, Mask, apply_mask, brain_centre, resample, z_normalise,
};
use crate::volume::Volume;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The diagnosis of a session (or of a subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Diagnosis {
    /// Healthy control (`HC`): class 0.
    Hc,
    /// Alzheimer's disease (`AD`): class 1.
    Ad,
    /// Any other diagnosis (`other`): not used by the HC-vs-AD classifier.
    Other,
    /// No label (empty): used for pretraining only.
    Unlabelled,
}

impl Diagnosis {
    /// Parses a manifest label (`HC`, `AD`, `other`, empty; case-insensitive, trimmed).
    pub fn parse(label: &str) -> Option<Self> {
        let l = label.trim();
        if l.is_empty() {
            Some(Diagnosis::Unlabelled)
        } else if l.eq_ignore_ascii_case("hc") {
            Some(Diagnosis::Hc)
        } else if l.eq_ignore_ascii_case("ad") {
            Some(Diagnosis::Ad)
        } else if l.eq_ignore_ascii_case("other") {
            Some(Diagnosis::Other)
        } else {
            None
        }
    }

    /// The binary class: HC = 0, AD = 1, none otherwise.
    pub fn class(self) -> Option<usize> {
        match self {
            Diagnosis::Hc => Some(0),
            Diagnosis::Ad => Some(1),
            _ => None,
        }
    }

    /// The label as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Diagnosis::Hc => "HC",
            Diagnosis::Ad => "AD",
            Diagnosis::Other => "other",
            Diagnosis::Unlabelled => "",
        }
    }
}

/// One session of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// Subject identifier.
    pub subject: String,
    /// Session identifier.
    pub session: String,
    /// The T1 volume (resolved against the manifest's folder).
    pub t1: PathBuf,
    /// The fALFF volume (resolved).
    pub falff: PathBuf,
    /// The session's diagnosis.
    pub diagnosis: Diagnosis,
    /// Values of the extra columns, in [`Manifest::covariate_names`] order.
    pub covariates: Vec<String>,
    /// The 1-based line of the row in the file.
    pub line: u64,
}

/// A subject and its sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// The identifier.
    pub id: String,
    /// The subject's diagnosis (AD if any session is AD, else HC if any is HC, ...).
    pub diagnosis: Diagnosis,
    /// Indices of its manifest rows, sorted by session identifier.
    pub rows: Vec<usize>,
}

/// A parsed and checked manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    path: PathBuf,
    covariate_names: Vec<String>,
    rows: Vec<ManifestRow>,
}

const REQUIRED: [&str; 5] = ["subject", "session", "t1", "falff", "label"];

impl Manifest {
    /// Reads and checks a manifest (see the module docs); every referenced file must exist.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        Manifest::parse(path, &bytes, &base, true)
    }

    /// Parses manifest text; paths resolve against `base`; `check_files` verifies that every
    /// referenced file exists. `name` labels errors.
    pub fn parse(
        name: impl AsRef<Path>,
        bytes: &[u8],
        base: &Path,
        check_files: bool,
    ) -> Result<Self> {
        let path = name.as_ref().to_path_buf();
        let err = |line: u64, problem: String| DataError::Manifest {
            path: path.clone(),
            line,
            problem,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let headers = reader
            .headers()
            .map_err(|e| err(1, format!("cannot read the header row: {e}")))?
            .clone();
        let find = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name))
        };
        let mut cols = [0usize; 5];
        for (c, name) in cols.iter_mut().zip(REQUIRED) {
            *c = find(name).ok_or_else(|| {
                err(
                    1,
                    format!(
                        "missing column `{name}` (the header must name subject, session, t1, \
                         falff and label; found {:?})",
                        headers.iter().collect::<Vec<_>>()
                    ),
                )
            })?;
        }
        let extra: Vec<usize> = (0..headers.len()).filter(|i| !cols.contains(i)).collect();
        let covariate_names: Vec<String> = extra.iter().map(|&i| headers[i].to_string()).collect();
        let mut rows = Vec::new();
        let mut seen: HashMap<(String, String), u64> = HashMap::new();
        for record in reader.records() {
            // The file's line, from the byte offset (the reader's own count skips blank lines).
            let line_of = |p: Option<&csv::Position>| {
                p.map_or(0, |p| {
                    // The position is where the reader resumed: skip the blank lines it skipped.
                    let mut at = (p.byte() as usize).min(bytes.len());
                    while at < bytes.len() && matches!(bytes[at], b'\n' | b'\r') {
                        at += 1;
                    }
                    1 + bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64
                })
            };
            let record = record.map_err(|e| {
                let line = line_of(e.position());
                err(line, format!("malformed row: {e}"))
            })?;
            let line = line_of(record.position());
            let field = |k: usize| record.get(cols[k]).unwrap_or("").to_string();
            let (subject, session) = (field(0), field(1));
            if subject.is_empty() || session.is_empty() {
                return Err(err(line, "empty subject or session".into()));
            }
            if let Some(first) = seen.insert((subject.clone(), session.clone()), line) {
                return Err(err(
                    line,
                    format!(
                        "duplicate subject `{subject}` session `{session}` (first on line {first})"
                    ),
                ));
            }
            let label = field(4);
            let diagnosis = Diagnosis::parse(&label).ok_or_else(|| {
                err(
                    line,
                    format!("unknown label `{label}` (expected HC, AD, other or empty)"),
                )
            })?;
            let resolve = |k: usize, what: &str| -> Result<PathBuf> {
                let f = field(k);
                if f.is_empty() {
                    return Err(err(line, format!("empty `{what}` path")));
                }
                let p = base.join(&f);
                if check_files && !p.is_file() {
                    return Err(err(
                        line,
                        format!("the {what} file {} does not exist", p.display()),
                    ));
                }
                Ok(p)
            };
            let t1 = resolve(2, "t1")?;
            let falff = resolve(3, "falff")?;
            rows.push(ManifestRow {
                subject,
                session,
                t1,
                falff,
                diagnosis,
                covariates: extra
                    .iter()
                    .map(|&i| record.get(i).unwrap_or("").to_string())
                    .collect(),
                line,
            });
        }
        if rows.is_empty() {
            return Err(err(1, "the manifest lists no session".into()));
        }
        Ok(Manifest {
            path,
            covariate_names,
            rows,
        })
    }

    /// The manifest's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rows, in file order.
    pub fn rows(&self) -> &[ManifestRow] {
        &self.rows
    }

    /// Names of the extra (covariate) columns.
    pub fn covariate_names(&self) -> &[String] {
        &self.covariate_names
    }

    /// The value of covariate `name` on row `row`.
    pub fn covariate(&self, row: usize, name: &str) -> Option<&str> {
        let c = self.covariate_names.iter().position(|n| n == name)?;
        self.rows.get(row)?.covariates.get(c).map(String::as_str)
    }

    /// The subjects, sorted by identifier.
    pub fn subjects(&self) -> Vec<Subject> {
        let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, r) in self.rows.iter().enumerate() {
            by.entry(&r.subject).or_default().push(i);
        }
        by.into_iter()
            .map(|(id, mut rows)| {
                rows.sort_by(|&a, &b| self.rows[a].session.cmp(&self.rows[b].session));
                let has = |d| rows.iter().any(|&r| self.rows[r].diagnosis == d);
                let diagnosis = [Diagnosis::Ad, Diagnosis::Hc, Diagnosis::Other]
                    .into_iter()
                    .find(|&d| has(d))
                    .unwrap_or(Diagnosis::Unlabelled);
                Subject {
                    id: id.to_string(),
                    diagnosis,
                    rows,
                }
            })
            .collect()
    }

    fn subject_map(&self) -> BTreeMap<String, Subject> {
        self.subjects()
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect()
    }
}

/// Subject-level folds and hold-out set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortSplit {
    /// The subjects of each fold.
    pub folds: Vec<Vec<String>>,
    /// The hold-out (test) subjects.
    pub holdout: Vec<String>,
    /// The seed the split was drawn with.
    pub seed: u64,
}

impl CohortSplit {
    fn fold_index(&self, fold: usize) -> Result<()> {
        if fold >= self.folds.len() {
            return Err(DataError::InvalidParameter {
                name: "fold",
                value: fold.to_string(),
                reason: format!("must be in 0..{}", self.folds.len()),
            });
        }
        Ok(())
    }

    /// The training subjects of `fold`: every other fold.
    pub fn train(&self, fold: usize) -> Result<Vec<String>> {
        self.fold_index(fold)?;
        let mut s: Vec<String> = self
            .folds
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != fold)
            .flat_map(|(_, f)| f.iter().cloned())
            .collect();
        s.sort();
        Ok(s)
    }

    /// The validation subjects of `fold`.
    pub fn validation(&self, fold: usize) -> Result<Vec<String>> {
        self.fold_index(fold)?;
        Ok(self.folds[fold].clone())
    }

    /// Writes the split as JSON.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| DataError::format(path, format!("cannot serialise the split: {e}")))?;
        std::fs::write(path, json).map_err(|e| DataError::io(path, e))
    }

    /// Reads a split written by [`CohortSplit::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        serde_json::from_str(&json).map_err(|e| DataError::format(path, format!("bad split: {e}")))
    }
}

/// Splits the subjects of `manifest` into `folds` stratified folds plus a hold-out set of
/// about `holdout_fraction` of each diagnosis (see the module docs).
pub fn split_subjects(
    manifest: &Manifest,
    folds: usize,
    holdout_fraction: f64,
    seed: u64,
) -> Result<CohortSplit> {
    if folds < 2 {
        return Err(DataError::InvalidParameter {
            name: "folds",
            value: folds.to_string(),
            reason: "k-fold needs k >= 2".into(),
        });
    }
    if !(0.0..1.0).contains(&holdout_fraction) {
        return Err(DataError::InvalidParameter {
            name: "holdout fraction",
            value: holdout_fraction.to_string(),
            reason: "must be in [0, 1)".into(),
        });
    }
    let mut strata: BTreeMap<Diagnosis, Vec<String>> = BTreeMap::new();
    for s in manifest.subjects() {
        strata.entry(s.diagnosis).or_default().push(s.id);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = vec![Vec::new(); folds];
    let mut holdout = Vec::new();
    let mut deal = 0usize;
    for (_, mut ids) in strata {
        ids.shuffle(&mut rng);
        let h = (holdout_fraction * ids.len() as f64).round() as usize;
        holdout.extend(ids.drain(..h));
        for id in ids {
            out[deal % folds].push(id);
            deal += 1;
        }
    }
    if let Some(k) = out.iter().position(Vec::is_empty) {
        return Err(DataError::InvalidParameter {
            name: "folds",
            value: folds.to_string(),
            reason: format!(
                "{} subjects outside the hold-out set cannot fill {folds} folds: fold {k} would \
                 be empty",
                deal
            ),
        });
    }
    for f in out.iter_mut() {
        f.sort();
    }
    holdout.sort();
    Ok(CohortSplit {
        folds: out,
        holdout,
        seed,
    })
}

/// One item of a cohort: a manifest row and its class (HC 0, AD 1, none otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortItem {
    /// The manifest row.
    pub row: usize,
    /// The binary class.
    pub label: Option<usize>,
}

fn lookup<'a>(
    manifest: &Manifest,
    map: &'a BTreeMap<String, Subject>,
    id: &str,
) -> Result<&'a Subject> {
    map.get(id).ok_or_else(|| DataError::InvalidParameter {
        name: "subject",
        value: id.to_string(),
        reason: format!("not in {}", manifest.path().display()),
    })
}

/// Every session of `subjects` (labelled or not): the pretraining set.
pub fn pretraining_items(manifest: &Manifest, subjects: &[String]) -> Result<Vec<CohortItem>> {
    let map = manifest.subject_map();
    let mut items = Vec::new();
    for id in subjects {
        for &row in &lookup(manifest, &map, id)?.rows {
            items.push(CohortItem {
                row,
                label: manifest.rows[row].diagnosis.class(),
            });
        }
    }
    Ok(items)
}

/// One session per HC or AD subject of `subjects` (others are skipped): the first session,
/// in session order, whose label is the subject's diagnosis. The evaluation set.
pub fn evaluation_items(manifest: &Manifest, subjects: &[String]) -> Result<Vec<CohortItem>> {
    let map = manifest.subject_map();
    let mut items = Vec::new();
    for id in subjects {
        let s = lookup(manifest, &map, id)?;
        let Some(class) = s.diagnosis.class() else {
            continue;
        };
        if let Some(&row) = s
            .rows
            .iter()
            .find(|&&r| manifest.rows[r].diagnosis == s.diagnosis)
        {
            items.push(CohortItem {
                row,
                label: Some(class),
            });
        }
    }
    Ok(items)
}

/// Class-balanced upsampling for training classifiers: every labelled class is brought up to
/// the largest class's count by whole repeats plus a seeded draw without replacement for the
/// remainder; unlabelled items are kept once. The result is shuffled with `seed`.
pub fn balanced_upsample(items: &[CohortItem], seed: u64) -> Vec<CohortItem> {
    let mut by: BTreeMap<usize, Vec<CohortItem>> = BTreeMap::new();
    let mut out: Vec<CohortItem> = Vec::new();
    for it in items {
        match it.label {
            Some(c) => by.entry(c).or_default().push(*it),
            None => out.push(*it),
        }
    }
    let target = by.values().map(Vec::len).max().unwrap_or(0);
    let mut rng = StdRng::seed_from_u64(seed);
    for (_, class) in by {
        let reps = target / class.len();
        for _ in 0..reps {
            out.extend_from_slice(&class);
        }
        let mut rest = class.clone();
        rest.shuffle(&mut rng);
        out.extend_from_slice(&rest[..target - reps * class.len()]);
    }
    out.shuffle(&mut rng);
    out
}

/// Settings of the per-pair preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumePipeline {
    /// Side of the cubic target grid (64).
    pub side: usize,
    /// Voxel size of the target grid in mm (3).
    pub spacing: f64,
    /// T1 intensity above which a voxel is brain (0, for skull-stripped T1s), used for the
    /// grid's centre and, without `mask`, for the brain mask.
    pub mask_threshold: f32,
    /// A brain mask volume (world-aligned with the T1s, e.g. an MNI-space mask) used instead of
    /// thresholding.
    pub mask: Option<PathBuf>,
    /// Landmark percentiles and scale of the histogram standardisation.
    pub histogram: HistogramConfig,
    /// Keep preprocessed pairs in memory (true).
    pub cache: bool,
}

impl Default for VolumePipeline {
    fn default() -> Self {
        VolumePipeline {
            side: 64,
            spacing: 3.0,
            mask_threshold: 0.0,
            mask: None,
            histogram: HistogramConfig::default(),
            cache: true,
        }
    }
}

/// A preprocessed pair: both modalities on the same grid, masked, standardised and
/// z-normalised (x fastest).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedPair {
    /// The T1 values.
    pub t1: Vec<f32>,
    /// The fALFF values.
    pub falff: Vec<f32>,
    /// The common grid.
    pub grid: Grid,
}

/// The volumes of a manifest with their preprocessing and cache; shared (through `Arc`) by
/// every [`VolumeCohort`] drawn from the manifest.
#[derive(Debug)]
pub struct CohortVolumes {
    manifest: Manifest,
    pipeline: VolumePipeline,
    standardizers: Option<[HistogramStandardizer; 2]>,
    mask: Option<Volume>,
    cache: Vec<OnceLock<Arc<PreparedPair>>>,
}

impl CohortVolumes {
    /// The volumes of `manifest` under `pipeline`, without histogram standardisation until
    /// [`CohortVolumes::with_standardizers`] gives landmarks.
    pub fn new(manifest: Manifest, pipeline: VolumePipeline) -> Result<Self> {
        if pipeline.side == 0 || !(pipeline.spacing.is_finite() && pipeline.spacing > 0.0) {
            return Err(DataError::InvalidParameter {
                name: "pipeline grid",
                value: format!("side {} spacing {}", pipeline.side, pipeline.spacing),
                reason: "a positive side and spacing".into(),
            });
        }
        let mask = pipeline.mask.as_ref().map(read_nifti).transpose()?;
        let cache = (0..manifest.rows.len()).map(|_| OnceLock::new()).collect();
        Ok(CohortVolumes {
            manifest,
            pipeline,
            standardizers: None,
            mask,
            cache,
        })
    }

    /// Uses learned landmarks `[T1, fALFF]` (clears the cache).
    pub fn with_standardizers(mut self, standardizers: [HistogramStandardizer; 2]) -> Self {
        self.standardizers = Some(standardizers);
        self.cache = (0..self.manifest.rows.len())
            .map(|_| OnceLock::new())
            .collect();
        self
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The landmarks in use.
    pub fn standardizers(&self) -> Option<&[HistogramStandardizer; 2]> {
        self.standardizers.as_ref()
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &VolumePipeline {
        &self.pipeline
    }

    /// Loads row `row`, resamples both modalities onto the T1-centred grid and masks them.
    fn resampled(&self, row: usize) -> Result<(Volume, Volume, Mask)> {
        let r = self.manifest.rows.get(row).ok_or(DataError::OutOfRange {
            index: row,
            len: self.manifest.rows.len(),
        })?;
        let load3 = |p: &Path| -> Result<Volume> {
            let v = read_nifti(p)?;
            if v.frames() != 1 {
                return Err(DataError::format(
                    p,
                    format!(
                        "expected a 3D volume, found {} frames (compute fALFF maps first)",
                        v.frames()
                    ),
                ));
            }
            Ok(v)
        };
        let t1 = load3(&r.t1)?;
        let falff = load3(&r.falff)?;
        let p = &self.pipeline;
        let grid = Grid::centred([p.side; 3], p.spacing, brain_centre(&t1, p.mask_threshold)?)?;
        let t1 = resample(&t1, &grid)?;
        let falff = resample(&falff, &grid)?;
        let mask = match &self.mask {
            Some(m) => Mask::from_volume(m, &grid)?,
            None => Mask::threshold(&t1, p.mask_threshold),
        };
        if mask.count() == 0 {
            return Err(DataError::format(
                &r.t1,
                "the brain mask is empty on the target grid",
            ));
        }
        Ok((apply_mask(&t1, &mask)?, apply_mask(&falff, &mask)?, mask))
    }

    /// Learns `[T1, fALFF]` histogram landmarks from manifest rows `rows` (training data only).
    pub fn fit_standardizers(&self, rows: &[usize]) -> Result<[HistogramStandardizer; 2]> {
        let mut t1 = HistogramFitter::new(self.pipeline.histogram.clone())?;
        let mut falff = HistogramFitter::new(self.pipeline.histogram.clone())?;
        for &row in rows {
            let (a, b, m) = self.resampled(row)?;
            t1.add(&a, &m)?;
            falff.add(&b, &m)?;
        }
        Ok([t1.finish()?, falff.finish()?])
    }

    /// The preprocessed pair of row `row` (from the cache when enabled).
    pub fn prepared(&self, row: usize) -> Result<Arc<PreparedPair>> {
        let slot = self.cache.get(row).ok_or(DataError::OutOfRange {
            index: row,
            len: self.cache.len(),
        })?;
        if let Some(p) = slot.get() {
            return Ok(p.clone());
        }
        let (t1, falff, mask) = self.resampled(row)?;
        let (t1, falff) = match &self.standardizers {
            Some([s1, s2]) => (s1.apply(&t1, &mask)?, s2.apply(&falff, &mask)?),
            None => (t1, falff),
        };
        let grid = Grid::of(&t1);
        let pair = Arc::new(PreparedPair {
            t1: z_normalise(&t1, &mask)?.into_data(),
            falff: z_normalise(&falff, &mask)?.into_data(),
            grid,
        });
        if self.pipeline.cache {
            // Another thread may have filled the slot meanwhile: keep whichever came first.
            let _ = slot.set(pair.clone());
        }
        Ok(pair)
    }
}

/// A [`PairedDataset`] of (T1, fALFF) pairs from [`CohortVolumes`]: items of shape
/// `[1, D, H, W]` = `[1, 64, 64, 64]` per modality (the volume's z, y, x axes; x fastest),
/// labels HC = 0 / AD = 1, optional augmentation drawn from `item_rng(seed, epoch, index)`.
#[derive(Debug, Clone)]
pub struct VolumeCohort {
    volumes: Arc<CohortVolumes>,
    items: Vec<CohortItem>,
    augment: Option<AugmentConfig>,
    seed: u64,
}

impl VolumeCohort {
    /// A cohort of `items` (rows of the manifest of `volumes`).
    pub fn new(
        volumes: Arc<CohortVolumes>,
        items: Vec<CohortItem>,
        augment: Option<AugmentConfig>,
        seed: u64,
    ) -> Result<Self> {
        let n = volumes.manifest.rows.len();
        if let Some(bad) = items.iter().find(|i| i.row >= n) {
            return Err(DataError::OutOfRange {
                index: bad.row,
                len: n,
            });
        }
        if let Some(a) = &augment {
            let side = volumes.pipeline.side;
            if a.crop[0] != a.crop[1] || a.crop[1] != a.crop[2] || a.crop[0] > side + 2 * a.pad {
                return Err(DataError::InvalidParameter {
                    name: "augmentation crop",
                    value: format!("{:?}", a.crop),
                    reason: format!(
                        "a cube no larger than the padded grid ({side} + 2 x {})",
                        a.pad
                    ),
                });
            }
        }
        Ok(VolumeCohort {
            volumes,
            items,
            augment,
            seed,
        })
    }

    /// Every session of `subjects`, for self-supervised pretraining.
    pub fn pretraining(
        volumes: Arc<CohortVolumes>,
        subjects: &[String],
        augment: Option<AugmentConfig>,
        seed: u64,
    ) -> Result<Self> {
        let items = pretraining_items(&volumes.manifest, subjects)?;
        VolumeCohort::new(volumes, items, augment, seed)
    }

    /// One labelled (HC/AD) session per subject, optionally class-balanced by upsampling
    /// (for training a classifier; leave `balanced` off for evaluation).
    pub fn labelled(
        volumes: Arc<CohortVolumes>,
        subjects: &[String],
        balanced: bool,
        augment: Option<AugmentConfig>,
        seed: u64,
    ) -> Result<Self> {
        let mut items = evaluation_items(&volumes.manifest, subjects)?;
        if balanced {
            items = balanced_upsample(&items, seed);
        }
        VolumeCohort::new(volumes, items, augment, seed)
    }

    /// The items.
    pub fn items(&self) -> &[CohortItem] {
        &self.items
    }

    /// The shared volumes.
    pub fn volumes(&self) -> &Arc<CohortVolumes> {
        &self.volumes
    }

    fn side(&self) -> usize {
        match &self.augment {
            Some(a) => a.crop[0],
            None => self.volumes.pipeline.side,
        }
    }
}

impl PairedDataset for VolumeCohort {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn modalities(&self) -> usize {
        2
    }

    fn shape(&self, _modality: usize) -> Vec<usize> {
        let s = self.side();
        vec![1, s, s, s]
    }

    fn classes(&self) -> usize {
        2
    }

    fn label(&self, index: usize) -> Option<usize> {
        self.items.get(index).and_then(|i| i.label)
    }

    fn get(&self, index: usize, epoch: u64) -> Result<PairedItem> {
        let item = self.items.get(index).ok_or(DataError::OutOfRange {
            index,
            len: self.items.len(),
        })?;
        let pair = self.volumes.prepared(item.row)?;
        let views = match &self.augment {
            None => vec![pair.t1.clone(), pair.falff.clone()],
            Some(a) => {
                let mut rng = item_rng(self.seed, epoch, index as u64);
                let draw = a.draw(&mut rng, pair.grid.shape)?;
                vec![
                    a.apply(&draw, pair.grid.shape, &pair.t1)?,
                    a.apply(&draw, pair.grid.shape, &pair.falff)?,
                ]
            }
        };
        Ok(PairedItem {
            views,
            label: item.label,
        })
    }
}
