//! The cohort manifest: one row per session, read from CSV and checked.

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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
    pub(super) rows: Vec<ManifestRow>,
}

pub(super) const REQUIRED: [&str; 5] = ["subject", "session", "t1", "falff", "label"];

impl Manifest {
    /// Reads and checks a manifest (see the module docs); every referenced file must exist.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::files::read_bytes(path).map_err(|e| DataError::io(path, e))?;
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

    pub(super) fn subject_map(&self) -> BTreeMap<String, Subject> {
        self.subjects()
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect()
    }
}
