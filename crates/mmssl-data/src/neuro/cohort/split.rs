//! Subject-level splits and the items of pretraining and evaluation.

use super::*;
use crate::error::{DataError, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

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
        let json = crate::files::read_text(path).map_err(|e| DataError::io(path, e))?;
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

pub(super) fn lookup<'a>(
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
