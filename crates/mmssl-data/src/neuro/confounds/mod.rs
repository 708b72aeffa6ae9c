//! Nuisance regression and scrubbing of a BOLD series before ALFF/fALFF, from the confounds
//! table fMRIPrep writes beside each preprocessed series
//! (`*_desc-confounds_timeseries.tsv`; `*_desc-confounds_regressors.tsv` before fMRIPrep 20.2).
//!
//! **The model.** A confound model is a list of terms ([`ConfoundsConfig::parse`]), each a set
//! of the table's columns:
//!
//! | term | columns |
//! | --- | --- |
//! | `motion6` | `trans_x/y/z`, `rot_x/y/z` |
//! | `motion24` | those 6, their `_derivative1`, `_power2` and `_derivative1_power2` (Friston et al., "Movement-related effects in fMRI time-series", Magn Reson Med 35:346-355, 1996) |
//! | `wm-csf` | `white_matter`, `csf` |
//! | `wm-csf8` | those 2 with the three expansions |
//! | `gs` | `global_signal` |
//! | `gs4` | `global_signal` with the three expansions |
//! | any other word | that column, as named |
//!
//! and the presets `6p` (`motion6`), `24p` (`motion24`), `9p` (`motion6+wm-csf+gs`) and `36p`
//! (`motion24+wm-csf8+gs4`; Satterthwaite et al., "An improved framework for confound
//! regression and filtering for control of motion artifact in the preprocessing of
//! resting-state functional connectivity data", NeuroImage 64:240-256, 2013). An expansion
//! column the table lacks is computed from its base column (backward difference, square), as
//! fMRIPrep defines them. The `n/a` that derivative columns hold in the first row is replaced
//! by the second row's value, as nilearn's `load_confounds` does; any other missing value is an
//! error naming the column and line.
//!
//! **Censoring.** Frames flagged by fMRIPrep's `non_steady_state_outlier*` columns are always
//! censored (as nilearn's `load_confounds` does). With [`ConfoundsConfig::fd_threshold`],
//! frames whose `framewise_displacement` exceeds it (in mm; Power et al., "Spurious but
//! systematic correlations in functional connectivity MRI networks arise from subject
//! motion", NeuroImage 59:2142-2154, 2012) are censored too, and then every run of kept frames
//! shorter than [`ConfoundsConfig::min_segment`] (nilearn's `scrub`).
//!
//! **The regression** ([`regress_confounds`]). Each voxel's series is fitted by least squares,
//! on the kept frames only, with an intercept, a linear trend (in the frames' real times) and
//! the confound columns; the residual replaces it on the kept frames. Censored frames are then
//! filled by linear interpolation between the nearest kept frames (constant past the ends), so
//! the series keeps its length and sampling for the spectrum (DPABI's "linear interpolation"
//! scrubbing). Without censoring this is what `nilearn.signal.clean(detrend=True,
//! confounds=...)` computes. Confound columns that are linear combinations of earlier ones
//! (a constant column, a derivative of a linear drift) are dropped and reported.

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The six rigid-body motion parameters, in fMRIPrep's names.
const MOTION: [&str; 6] = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"];
/// The suffixes of a column's Friston expansion, after the column itself.
const EXPANSIONS: [&str; 3] = ["_derivative1", "_power2", "_derivative1_power2"];

/// The confound model and censoring of a series (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfoundsConfig {
    /// The terms, expanded from presets (`motion24`, `wm-csf`, a column name); empty: no
    /// confound regression.
    pub terms: Vec<String>,
    /// Censor frames whose framewise displacement exceeds this many millimetres.
    pub fd_threshold: Option<f64>,
    /// After censoring, also censor runs of kept frames shorter than this (0: off).
    pub min_segment: usize,
    /// The smallest fraction of frames that must remain; fewer is an error (0.5).
    pub min_kept: f64,
}

impl Default for ConfoundsConfig {
    fn default() -> Self {
        ConfoundsConfig {
            terms: Vec::new(),
            fd_threshold: None,
            min_segment: 0,
            min_kept: 0.5,
        }
    }
}

impl ConfoundsConfig {
    /// The terms of `text`: terms and presets joined by `+` or `,` (`24p+wm-csf`,
    /// `motion6,csf`, `none`). A column name is letters, digits and underscores.
    pub fn parse_terms(text: &str) -> std::result::Result<Vec<String>, String> {
        let mut terms: Vec<String> = Vec::new();
        for raw in text.split(['+', ',']).map(str::trim) {
            let expanded: &[&str] = match raw {
                "" => return Err(format!("`{text}` has an empty term")),
                "none" => &[],
                "6p" => &["motion6"],
                "24p" => &["motion24"],
                "9p" => &["motion6", "wm-csf", "gs"],
                "36p" => &["motion24", "wm-csf8", "gs4"],
                other => {
                    let known = ["motion6", "motion24", "wm-csf", "wm-csf8", "gs", "gs4"];
                    if !known.contains(&other)
                        && !other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(format!(
                            "`{other}` is neither a preset (none, 6p, 24p, 9p, 36p), a term \
                             (motion6, motion24, wm-csf, wm-csf8, gs, gs4) nor a column name"
                        ));
                    }
                    terms.push(other.to_string());
                    &[]
                }
            };
            terms.extend(expanded.iter().map(|s| s.to_string()));
        }
        let mut seen = std::collections::BTreeSet::new();
        terms.retain(|t| seen.insert(t.clone()));
        Ok(terms)
    }

    /// Whether this model changes the series at all (regression or censoring beyond the
    /// table's non-steady-state frames).
    pub fn is_active(&self) -> bool {
        !self.terms.is_empty() || self.fd_threshold.is_some()
    }

    /// The table's column names the terms stand for, in order.
    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        let expand = |bases: &[&str], full: bool, out: &mut Vec<String>| {
            for b in bases {
                out.push(b.to_string());
                if full {
                    out.extend(EXPANSIONS.iter().map(|e| format!("{b}{e}")));
                }
            }
        };
        for t in &self.terms {
            match t.as_str() {
                "motion6" => expand(&MOTION, false, &mut out),
                "motion24" => expand(&MOTION, true, &mut out),
                "wm-csf" => expand(&["white_matter", "csf"], false, &mut out),
                "wm-csf8" => expand(&["white_matter", "csf"], true, &mut out),
                "gs" => expand(&["global_signal"], false, &mut out),
                "gs4" => expand(&["global_signal"], true, &mut out),
                column => out.push(column.to_string()),
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|c| seen.insert(c.clone()));
        out
    }

    fn check(&self) -> Result<()> {
        if let Some(fd) = self.fd_threshold
            && !(fd.is_finite() && fd > 0.0)
        {
            return Err(DataError::InvalidParameter {
                name: "fd_threshold",
                value: fd.to_string(),
                reason: "a positive number of millimetres".into(),
            });
        }
        if !(self.min_kept.is_finite() && (0.0..=1.0).contains(&self.min_kept)) {
            return Err(DataError::InvalidParameter {
                name: "min_kept",
                value: self.min_kept.to_string(),
                reason: "a fraction of the frames, in [0, 1]".into(),
            });
        }
        Ok(())
    }
}

/// A confounds table: named columns of one value per frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfoundsTable {
    /// The file.
    pub path: PathBuf,
    /// Column names, in the file's order.
    pub names: Vec<String>,
    /// `columns[c][t]`; `NaN` where the file says `n/a`.
    pub columns: Vec<Vec<f64>>,
}

impl ConfoundsTable {
    /// Reads a tab-separated table with a header row; `n/a` (and empty cells) are `NaN`. A
    /// value that is not a number, or a row of another length, is an error naming the line.
    pub fn read(path: &Path) -> Result<ConfoundsTable> {
        let text = crate::files::read_text(path).map_err(|e| DataError::io(path, e))?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Err(DataError::format(path, "empty: no header row"));
        };
        let names: Vec<String> = header.split('\t').map(|s| s.trim().to_string()).collect();
        let mut columns = vec![Vec::new(); names.len()];
        for (i, line) in lines {
            let cells: Vec<&str> = line.split('\t').collect();
            if cells.len() != names.len() {
                return Err(DataError::format(
                    path,
                    format!(
                        "line {}: {} values for {} columns",
                        i + 1,
                        cells.len(),
                        names.len()
                    ),
                ));
            }
            for (c, cell) in cells.iter().enumerate() {
                let cell = cell.trim();
                let v = if cell.is_empty() || cell.eq_ignore_ascii_case("n/a") {
                    f64::NAN
                } else {
                    cell.parse::<f64>().map_err(|_| {
                        DataError::format(
                            path,
                            format!(
                                "line {}, column `{}`: `{cell}` is not a number",
                                i + 1,
                                names[c]
                            ),
                        )
                    })?
                };
                columns[c].push(v);
            }
        }
        Ok(ConfoundsTable {
            path: path.to_path_buf(),
            names,
            columns,
        })
    }

    /// Frames (rows).
    pub fn frames(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    fn column(&self, name: &str) -> Option<&[f64]> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(&self.columns[i])
    }

    /// Column `name`, computing a missing Friston expansion from its base column; `None` when
    /// neither exists.
    fn resolve(&self, name: &str) -> Option<Vec<f64>> {
        if let Some(c) = self.column(name) {
            return Some(c.to_vec());
        }
        let (base, how) = EXPANSIONS
            .iter()
            .rev() // `_derivative1_power2` before `_power2`
            .find_map(|e| name.strip_suffix(e).map(|b| (b, *e)))?;
        let x = self.column(base)?;
        let diff = |x: &[f64]| -> Vec<f64> {
            (0..x.len())
                .map(|t| if t == 0 { f64::NAN } else { x[t] - x[t - 1] })
                .collect()
        };
        Some(match how {
            "_derivative1" => diff(x),
            "_power2" => x.iter().map(|v| v * v).collect(),
            _ => diff(x).iter().map(|v| v * v).collect(),
        })
    }
}

/// The regressors and frames kept for one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfoundDesign {
    /// The confound columns used, in order.
    pub names: Vec<String>,
    /// `values[c][t]`, missing first values filled.
    #[serde(skip)]
    pub values: Vec<Vec<f64>>,
    /// Whether each frame is kept (`false`: censored).
    pub keep: Vec<bool>,
    /// Frames censored as non-steady-state.
    pub non_steady: usize,
    /// Frames censored for framewise displacement (and short segments).
    pub scrubbed: usize,
}

impl ConfoundDesign {
    /// Frames kept.
    pub fn kept(&self) -> usize {
        self.keep.iter().filter(|&&k| k).count()
    }
}

/// The regressors and censoring of `config` from `table`, for a series of `frames` frames.
/// A column the model needs and the table lacks, a table of another length, or censoring
/// that leaves fewer than [`ConfoundsConfig::min_kept`] of the frames is an error naming the
/// table.
pub fn confound_design(
    table: &ConfoundsTable,
    config: &ConfoundsConfig,
    frames: usize,
) -> Result<ConfoundDesign> {
    config.check()?;
    let path = &table.path;
    let rows = table.frames();
    if rows != frames {
        let what = format!("{rows} rows, but the BOLD series has {frames} frames");
        return Err(DataError::format(path, what));
    }
    let mut names = Vec::new();
    let mut values = Vec::new();
    for name in config.columns() {
        let Some(mut v) = table.resolve(&name) else {
            return Err(DataError::format(
                path,
                format!(
                    "no column `{name}` for the confound model {}; the table has {}",
                    config.terms.join("+"),
                    table.names.join(", ")
                ),
            ));
        };
        // The first row of a derivative is `n/a`: the second row's value (nilearn).
        if frames > 1 && v[0].is_nan() {
            v[0] = v[1];
        }
        if let Some(t) = v.iter().position(|x| !x.is_finite()) {
            return Err(DataError::format(
                path,
                format!("column `{name}` has no value at line {}", t + 2),
            ));
        }
        names.push(name);
        values.push(v);
    }
    let mut keep = vec![true; frames];
    let mut non_steady = 0;
    for (n, c) in table.names.iter().zip(&table.columns) {
        if n.starts_with("non_steady_state_outlier") {
            for (t, &v) in c.iter().enumerate() {
                if v == 1.0 && keep[t] {
                    keep[t] = false;
                    non_steady += 1;
                }
            }
        }
    }
    let before = keep.iter().filter(|&&k| k).count();
    if let Some(threshold) = config.fd_threshold {
        let Some(fd) = table.column("framewise_displacement") else {
            return Err(DataError::format(
                path,
                "no `framewise_displacement` column to scrub by",
            ));
        };
        for (t, &v) in fd.iter().enumerate() {
            if v.is_finite() && v > threshold {
                keep[t] = false;
            }
        }
        if config.min_segment > 1 {
            let mut t = 0;
            while t < frames {
                if !keep[t] {
                    t += 1;
                    continue;
                }
                let start = t;
                while t < frames && keep[t] {
                    t += 1;
                }
                if t - start < config.min_segment {
                    keep[start..t].iter_mut().for_each(|k| *k = false);
                }
            }
        }
    }
    let kept = keep.iter().filter(|&&k| k).count();
    let scrubbed = before - kept;
    if (kept as f64) < config.min_kept * frames as f64 || kept < 3 {
        return Err(DataError::format(
            path,
            format!(
                "censoring keeps {kept} of {frames} frames ({non_steady} non-steady-state, \
                 {scrubbed} above the displacement threshold {:?} mm), below the {:.0}% \
                 required (min_kept)",
                config.fd_threshold,
                100.0 * config.min_kept
            ),
        ));
    }
    Ok(ConfoundDesign {
        names,
        values,
        keep,
        non_steady,
        scrubbed,
    })
}

mod regress;
#[cfg(test)]
mod tests;

pub use regress::{Regression, regress_confounds};
