//! Reading a BIDS tree: file names into entities, the T1w and BOLD files of every session,
//! JSON sidecars with inheritance, and the `participants.tsv` / `sessions.tsv` tables.
//!
//! The Brain Imaging Data Structure (Gorgolewski et al., "The brain imaging data structure, a
//! format for organizing and describing outputs of neuroimaging experiments", Sci Data 3:160044,
//! 2016; specification at bids-specification.readthedocs.io) names files
//! `sub-<label>[_ses-<label>][_key-<value>...]_<suffix>.<extension>` under
//! `sub-<label>/[ses-<label>/]<datatype>/`.

use crate::error::{DataError, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The entities and suffix of a BIDS file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BidsName {
    /// `key -> value` in the order of the name (`sub`, `ses`, `task`, `acq`, `run`, ...).
    pub entities: Vec<(String, String)>,
    /// The suffix (`T1w`, `bold`).
    pub suffix: String,
    /// The extension with its dot (`.nii.gz`, `.nii`, `.json`, `.tsv`).
    pub extension: String,
}

impl BidsName {
    /// Parses a file name; the error says which part does not parse.
    pub fn parse(path: &Path) -> Result<BidsName> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bad = |why: String| DataError::format(path, format!("not a BIDS file name: {why}"));
        let (stem, extension) = match name.find('.') {
            Some(i) => (&name[..i], name[i..].to_string()),
            None => (name.as_str(), String::new()),
        };
        let mut parts: Vec<&str> = stem.split('_').collect();
        let suffix = parts.pop().unwrap_or_default().to_string();
        if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad(format!("the suffix `{suffix}` is not alphanumeric")));
        }
        let mut entities = Vec::new();
        for part in parts {
            let Some((key, value)) = part.split_once('-') else {
                return Err(bad(format!("`{part}` is not a key-value entity")));
            };
            let alnum = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
            if !alnum(key) || !alnum(value) {
                return Err(bad(format!(
                    "`{part}`: entity keys and values are letters and digits only"
                )));
            }
            if entities.iter().any(|(k, _): &(String, String)| k == key) {
                return Err(bad(format!("the entity `{key}` appears twice")));
            }
            entities.push((key.to_string(), value.to_string()));
        }
        Ok(BidsName {
            entities,
            suffix,
            extension,
        })
    }

    /// The value of entity `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entities
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether every entity of `self` has the same value in `other` (BIDS inheritance: a
    /// sidecar applies to the files whose names include all its entities).
    fn applies_to(&self, other: &BidsName) -> bool {
        self.entities
            .iter()
            .all(|(k, v)| other.get(k) == Some(v.as_str()))
    }
}

/// One image of a session: its path and parsed name.
#[derive(Debug, Clone, PartialEq)]
pub struct BidsFile {
    /// The file.
    pub path: PathBuf,
    /// Its name's entities.
    pub name: BidsName,
}

impl BidsFile {
    /// Sort key among several candidates of a session: acquisition, then run number.
    fn order(&self) -> (String, u64, String) {
        let run = self.name.get("run").unwrap_or("0");
        (
            self.name.get("acq").unwrap_or("").to_string(),
            run.parse().unwrap_or(u64::MAX),
            run.to_string(),
        )
    }
}

/// The T1w and BOLD images found for one session.
#[derive(Debug, Clone, PartialEq)]
pub struct BidsSession {
    /// Subject label (without `sub-`).
    pub subject: String,
    /// Session label (without `ses-`); `None` in a dataset without session folders.
    pub session: Option<String>,
    /// The session's folder (`sub-X/ses-Y`, or `sub-X`).
    pub dir: PathBuf,
    /// T1-weighted images, ordered by acquisition and run.
    pub t1w: Vec<BidsFile>,
    /// BOLD series of the requested task, ordered by acquisition and run.
    pub bold: Vec<BidsFile>,
}

/// Which files count: the task of the BOLD series and optional acquisition labels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Filters<'a> {
    pub task: &'a str,
    pub t1_acq: Option<&'a str>,
    pub bold_acq: Option<&'a str>,
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| DataError::io(dir, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    Ok(entries)
}

fn label(path: &Path, prefix: &str) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let l = name.strip_prefix(prefix)?;
    (path.is_dir() && !l.is_empty()).then(|| l.to_string())
}

fn is_nifti(name: &BidsName) -> bool {
    name.extension == ".nii" || name.extension == ".nii.gz"
}

/// Every session of the tree under `root`, with its T1w and BOLD candidates. File names that
/// end like T1w or BOLD images but do not parse, or whose `sub`/`ses` entities contradict
/// their folders, are errors naming the file.
pub(crate) fn scan(root: &Path, filters: &Filters<'_>) -> Result<Vec<BidsSession>> {
    if !root.is_dir() {
        return Err(DataError::format(
            root,
            "not a folder (a BIDS dataset's root)",
        ));
    }
    let mut sessions = Vec::new();
    for sub_dir in sorted_dir(root)? {
        let Some(subject) = label(&sub_dir, "sub-") else {
            continue;
        };
        let ses_dirs: Vec<(Option<String>, PathBuf)> = sorted_dir(&sub_dir)?
            .into_iter()
            .filter_map(|p| label(&p, "ses-").map(|s| (Some(s), p)))
            .collect();
        let ses_dirs = if ses_dirs.is_empty() {
            vec![(None, sub_dir.clone())]
        } else {
            ses_dirs
        };
        for (session, dir) in ses_dirs {
            let mut found = BidsSession {
                subject: subject.clone(),
                session: session.clone(),
                dir: dir.clone(),
                t1w: Vec::new(),
                bold: Vec::new(),
            };
            for (datatype, suffix) in [("anat", "T1w"), ("func", "bold")] {
                let folder = dir.join(datatype);
                if !folder.is_dir() {
                    continue;
                }
                for path in sorted_dir(&folder)? {
                    let file_name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let looks = [".nii", ".nii.gz"]
                        .iter()
                        .any(|ext| file_name.ends_with(&format!("_{suffix}{ext}")));
                    if !looks {
                        continue;
                    }
                    let name = BidsName::parse(&path)?;
                    if name.get("sub") != Some(subject.as_str())
                        || name.get("ses") != session.as_deref()
                    {
                        return Err(DataError::format(
                            &path,
                            format!(
                                "its sub/ses entities ({:?}, {:?}) do not match its folder \
                                 (sub-{subject}{})",
                                name.get("sub"),
                                name.get("ses"),
                                session
                                    .as_ref()
                                    .map(|s| format!(", ses-{s}"))
                                    .unwrap_or_default()
                            ),
                        ));
                    }
                    if !is_nifti(&name) || name.suffix != suffix {
                        continue;
                    }
                    let file = BidsFile { path, name };
                    if suffix == "T1w" {
                        if filters
                            .t1_acq
                            .is_none_or(|a| file.name.get("acq") == Some(a))
                        {
                            found.t1w.push(file);
                        }
                    } else if file.name.get("task") == Some(filters.task)
                        && filters
                            .bold_acq
                            .is_none_or(|a| file.name.get("acq") == Some(a))
                    {
                        found.bold.push(file);
                    }
                }
            }
            found.t1w.sort_by_key(BidsFile::order);
            found.bold.sort_by_key(BidsFile::order);
            sessions.push(found);
        }
    }
    Ok(sessions)
}

/// The JSON sidecar of `file` with BIDS inheritance: every `*_<suffix>.json` at the dataset
/// root, in the subject's folder, the session's folder and the file's own folder whose
/// entities all appear in the file's name, merged from the top down (a nearer file's keys
/// win). An unreadable or malformed sidecar is an error naming it.
pub(crate) fn sidecar(
    root: &Path,
    file: &BidsFile,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut levels = vec![root.to_path_buf()];
    if let Some(sub) = file.name.get("sub") {
        let sub_dir = root.join(format!("sub-{sub}"));
        levels.push(sub_dir.clone());
        if let Some(ses) = file.name.get("ses") {
            levels.push(sub_dir.join(format!("ses-{ses}")));
        }
    }
    if let Some(parent) = file.path.parent() {
        levels.push(parent.to_path_buf());
    }
    levels.dedup();
    let mut merged = serde_json::Map::new();
    for dir in levels {
        let Ok(entries) = sorted_dir(&dir) else {
            continue;
        };
        // Fewer entities first, so that the more specific file of one level wins.
        let mut candidates: Vec<(usize, PathBuf)> = Vec::new();
        for path in entries {
            let is_json = path.extension().is_some_and(|e| e == "json");
            if !is_json || !path.is_file() {
                continue;
            }
            let Ok(name) = BidsName::parse(&path) else {
                continue;
            };
            if name.suffix == file.name.suffix && name.applies_to(&file.name) {
                candidates.push((name.entities.len(), path));
            }
        }
        candidates.sort();
        for (_, path) in candidates {
            let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| DataError::format(&path, format!("not valid JSON: {e}")))?;
            let serde_json::Value::Object(map) = value else {
                return Err(DataError::format(&path, "a sidecar must be a JSON object"));
            };
            merged.extend(map);
        }
    }
    Ok(merged)
}

/// A tab-separated table (`participants.tsv`, `sub-X_sessions.tsv`): its header and rows keyed
/// by the values of `key` (`participant_id`, `session_id`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    pub path: PathBuf,
    pub columns: Vec<String>,
    pub rows: BTreeMap<String, Vec<String>>,
}

impl Table {
    /// Reads `path`; `None` if it does not exist.
    pub fn read(path: &Path, key: &str) -> Result<Option<Table>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DataError::io(path, e)),
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(b'\t')
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(bytes.as_slice());
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| DataError::format(path, format!("cannot read the header row: {e}")))?
            .iter()
            .map(str::to_string)
            .collect();
        let Some(k) = columns.iter().position(|c| c == key) else {
            return Err(DataError::format(
                path,
                format!("no `{key}` column (the columns are {})", columns.join(", ")),
            ));
        };
        let mut rows = BTreeMap::new();
        for (i, record) in reader.records().enumerate() {
            let record =
                record.map_err(|e| DataError::format(path, format!("line {}: {e}", i + 2)))?;
            let values: Vec<String> = record.iter().map(str::to_string).collect();
            let id = values.get(k).cloned().unwrap_or_default();
            if rows.insert(id.clone(), values).is_some() {
                return Err(DataError::format(
                    path,
                    format!("line {}: `{id}` appears twice", i + 2),
                ));
            }
        }
        Ok(Some(Table {
            path: path.to_path_buf(),
            columns,
            rows,
        }))
    }

    /// The value of `column` in the row `id`.
    pub fn get(&self, id: &str, column: &str) -> Option<&str> {
        let c = self.columns.iter().position(|x| x == column)?;
        self.rows.get(id)?.get(c).map(String::as_str)
    }

    /// Whether the table has `column`.
    pub fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }
}
