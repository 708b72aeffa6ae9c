//! Reading a BIDS tree: file names into entities, the T1w and BOLD files of every session,
//! JSON sidecars with inheritance, and the `participants.tsv` / `sessions.tsv` tables.
//!
//! The Brain Imaging Data Structure (Gorgolewski et al., "The brain imaging data structure, a
//! format for organizing and describing outputs of neuroimaging experiments", Sci Data 3:160044,
//! 2016; specification at bids-specification.readthedocs.io) names files
//! `sub-<label>[_ses-<label>][_key-<value>...]_<suffix>.<extension>` under
//! `sub-<label>/[ses-<label>/]<datatype>/`.

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
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
    /// Sort key among several candidates of a session: acquisition, resolution, then run.
    fn order(&self) -> (String, String, u64, String) {
        let run = self.name.get("run").unwrap_or("0");
        (
            self.name.get("acq").unwrap_or("").to_string(),
            self.name.get("res").unwrap_or("").to_string(),
            run.parse().unwrap_or(u64::MAX),
            run.to_string(),
        )
    }

    /// The file name.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }

    /// The path of a file beside this one whose name has this one's entities changed by
    /// `set` (`Some`: set or add at the end, `None`: remove) and `suffix`, if it exists with
    /// one of `extensions`.
    pub(crate) fn sibling(
        &self,
        set: &[(&str, Option<&str>)],
        suffix: &str,
        extensions: &[&str],
    ) -> Option<PathBuf> {
        let mut entities = self.name.entities.clone();
        for (key, value) in set {
            match (entities.iter().position(|(k, _)| k == key), value) {
                (Some(i), Some(v)) => entities[i].1 = v.to_string(),
                (Some(i), None) => {
                    entities.remove(i);
                }
                (None, Some(v)) => entities.push((key.to_string(), v.to_string())),
                (None, None) => {}
            }
        }
        let stem: Vec<String> = entities.iter().map(|(k, v)| format!("{k}-{v}")).collect();
        let dir = self.path.parent()?;
        extensions
            .iter()
            .map(|ext| dir.join(format!("{}_{suffix}{ext}", stem.join("_"))))
            .find(|p| p.is_file())
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
    /// Anatomical images (T1w, or grey-matter probability maps when asked), ordered by
    /// acquisition, resolution and run: the session's own, or those of the fallback
    /// [`BidsSession::t1w_from`] names.
    pub t1w: Vec<BidsFile>,
    /// Where the anatomical images come from when the session has none of its own: the
    /// subject-level `anat/` folder, or another session (`ses-01`); `None`: its own.
    pub t1w_from: Option<String>,
    /// BOLD series of the requested task (and space and description, in derivatives), ordered
    /// by acquisition, resolution and run.
    pub bold: Vec<BidsFile>,
    /// Files of the session that would be candidates but for their space or description
    /// (named in the reason when nothing else is found).
    pub passed_over: Vec<String>,
    /// Automatic choices made while scanning (duplicate `.nii` / `.nii.gz` copies).
    pub notes: Vec<String>,
}

/// The anatomical image of each session, in a derivative dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnatImage {
    /// The preprocessed T1w image (`*_desc-preproc_T1w`), masked by its brain mask.
    #[default]
    T1w,
    /// The grey-matter probability map (`*_label-GM_probseg`).
    GreyMatter,
}

/// Which files count: the task of the BOLD series, optional acquisition labels, and in
/// derivatives the space, the BOLD series' description and the anatomical image.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Filters<'a> {
    pub task: &'a str,
    pub t1_acq: Option<&'a str>,
    pub bold_acq: Option<&'a str>,
    pub derivative: Option<DerivativeFilters<'a>>,
}

/// The selection inside a derivative dataset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DerivativeFilters<'a> {
    pub space: &'a str,
    pub desc: &'a str,
    pub anat: AnatImage,
}

impl Filters<'_> {
    /// `Ok(true)`: a candidate; `Ok(false)`: not ours; `Err(())`: ours but for its space or
    /// description.
    fn accepts(&self, name: &BidsName, datatype: &str) -> std::result::Result<bool, ()> {
        let space_ok = |d: &DerivativeFilters<'_>| match name.get("space") {
            // Anatomical images in the subject's T1w space carry no space entity.
            None => datatype == "anat" && d.space == "T1w",
            Some(s) => s == d.space,
        };
        if datatype == "anat" {
            if self.t1_acq.is_some_and(|a| name.get("acq") != Some(a)) {
                return Ok(false);
            }
            match &self.derivative {
                None => Ok(name.suffix == "T1w"),
                Some(d) => {
                    let wanted = match d.anat {
                        AnatImage::T1w => name.suffix == "T1w",
                        AnatImage::GreyMatter => {
                            name.suffix == "probseg" && name.get("label") == Some("GM")
                        }
                    };
                    let desc_ok = match d.anat {
                        AnatImage::T1w => name.get("desc") == Some("preproc"),
                        AnatImage::GreyMatter => true,
                    };
                    if !wanted {
                        Ok(false)
                    } else if space_ok(d) && desc_ok {
                        Ok(true)
                    } else {
                        Err(())
                    }
                }
            }
        } else {
            if name.suffix != "bold"
                || name.get("task") != Some(self.task)
                || self.bold_acq.is_some_and(|a| name.get("acq") != Some(a))
            {
                return Ok(false);
            }
            match &self.derivative {
                None => Ok(true),
                Some(d) if space_ok(d) && name.get("desc") == Some(d.desc) => Ok(true),
                Some(_) => Err(()),
            }
        }
    }
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

/// The suffixes whose NIfTI files a folder's scan parses (others are not ours).
const SUFFIXES: [&str; 3] = ["_T1w", "_bold", "_probseg"];

/// The candidates of one `anat/` or `func/` folder: (accepted, passed over, notes).
fn scan_folder(
    folder: &Path,
    datatype: &str,
    subject: &str,
    session: Option<&str>,
    filters: &Filters<'_>,
) -> Result<(Vec<BidsFile>, Vec<String>, Vec<String>)> {
    let (mut found, mut passed, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    if !folder.is_dir() {
        return Ok((found, passed, notes));
    }
    for path in sorted_dir(folder)? {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let looks = SUFFIXES.iter().any(|suffix| {
            [".nii", ".nii.gz"]
                .iter()
                .any(|ext| file_name.ends_with(&format!("{suffix}{ext}")))
        });
        if !looks {
            continue;
        }
        let name = BidsName::parse(&path)?;
        if name.get("sub") != Some(subject) || name.get("ses") != session {
            return Err(DataError::format(
                &path,
                format!(
                    "its sub/ses entities ({:?}, {:?}) do not match its folder (sub-{subject}{})",
                    name.get("sub"),
                    name.get("ses"),
                    session.map(|s| format!(", ses-{s}")).unwrap_or_default()
                ),
            ));
        }
        if !is_nifti(&name) {
            continue;
        }
        match filters.accepts(&name, datatype) {
            Ok(true) => found.push(BidsFile { path, name }),
            Ok(false) => {}
            Err(()) => passed.push(file_name),
        }
    }
    // `.nii` and `.nii.gz` copies of one image are one image.
    let mut i = 0;
    while i < found.len() {
        let stem = |f: &BidsFile| f.name.entities.clone();
        if let Some(j) = (0..found.len()).find(|&j| {
            j != i
                && stem(&found[j]) == stem(&found[i])
                && found[j].name.suffix == found[i].name.suffix
                && found[i].name.extension == ".nii"
        }) {
            let same = match (
                crate::formats::nifti::read_nifti_header(&found[i].path),
                crate::formats::nifti::read_nifti_header(&found[j].path),
            ) {
                (Ok(a), Ok(b)) => a.dims == b.dims && a.affine == b.affine,
                _ => false,
            };
            if same {
                notes.push(format!(
                    "{} and {} are copies of one image (same dimensions and affine): using the \
                     .nii.gz",
                    found[i].file_name(),
                    found[j].file_name()
                ));
                found.remove(i);
                continue;
            }
            notes.push(format!(
                "{} and {} share a name but not their dimensions or affine: both are candidates",
                found[i].file_name(),
                found[j].file_name()
            ));
        }
        i += 1;
    }
    found.sort_by_key(BidsFile::order);
    Ok((found, passed, notes))
}

/// Every session of the tree under `root`, with its T1w and BOLD candidates. File names that
/// end like T1w, BOLD or probability images but do not parse, or whose `sub`/`ses` entities
/// contradict their folders, are errors naming the file. A session without anatomical images
/// takes its subject's: the subject-level `anat/` folder, else the nearest session that has
/// some (the earlier one on a tie), and says so in [`BidsSession::t1w_from`].
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
        // A subject-level anat/ folder beside session folders (fMRIPrep's anatomical outputs
        // of a longitudinal subject, or a dataset with one T1w for all sessions).
        let subject_anat = if ses_dirs.is_empty() {
            None
        } else {
            let (files, passed, notes) =
                scan_folder(&sub_dir.join("anat"), "anat", &subject, None, filters)?;
            Some((files, passed, notes))
        };
        let ses_dirs = if ses_dirs.is_empty() {
            vec![(None, sub_dir.clone())]
        } else {
            ses_dirs
        };
        let first = sessions.len();
        for (session, dir) in ses_dirs {
            let ses = session.as_deref();
            let (t1w, mut passed, mut notes) =
                scan_folder(&dir.join("anat"), "anat", &subject, ses, filters)?;
            let (bold, p2, n2) = scan_folder(&dir.join("func"), "func", &subject, ses, filters)?;
            passed.extend(p2);
            notes.extend(n2);
            sessions.push(BidsSession {
                subject: subject.clone(),
                session,
                dir,
                t1w,
                t1w_from: None,
                bold,
                passed_over: passed,
                notes,
            });
        }
        // Sessions without anatomical images of their own.
        let own: Vec<Vec<BidsFile>> = sessions[first..].iter().map(|s| s.t1w.clone()).collect();
        for (k, s) in sessions[first..].iter_mut().enumerate() {
            if !s.t1w.is_empty() {
                continue;
            }
            if let Some((files, passed, notes)) = &subject_anat
                && !files.is_empty()
            {
                s.t1w = files.clone();
                s.t1w_from = Some(format!("sub-{}/anat (subject level)", s.subject));
                s.notes.extend(notes.iter().cloned());
                s.passed_over.extend(passed.iter().cloned());
                continue;
            }
            if let Some((_, passed, _)) = &subject_anat {
                s.passed_over.extend(passed.iter().cloned());
            }
            let nearest = (0..own.len())
                .filter(|&j| !own[j].is_empty())
                .min_by_key(|&j| (j.abs_diff(k), j));
            if let Some(j) = nearest {
                s.t1w = own[j].clone();
                let name = own[j][0].name.get("ses").unwrap_or("").to_string();
                s.t1w_from = Some(format!("ses-{name}"));
            }
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
            let text = crate::files::read_text(&path).map_err(|e| DataError::io(&path, e))?;
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
/// by the values of its key column, with the entity prefix (`sub-`, `ses-`) removed so that
/// `ses-1` and `1` name the same row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Table {
    pub path: PathBuf,
    pub columns: Vec<String>,
    /// The key column found (the first of the accepted names).
    pub key: String,
    pub rows: BTreeMap<String, Vec<String>>,
}

/// Why a table could not be used.
#[derive(Debug)]
pub(crate) enum TableProblem {
    /// None of the accepted key columns: the columns it has.
    NoKey(Vec<String>),
    /// Unreadable or malformed.
    Error(DataError),
}

impl Table {
    /// Reads `path` keyed by the first of `keys` it has (`participant_id`; `session_id`, then
    /// `session`), values stripped of `prefix`; `Ok(None)` if it does not exist.
    pub fn read(
        path: &Path,
        keys: &[&str],
        prefix: &str,
    ) -> std::result::Result<Option<Table>, TableProblem> {
        let bytes = match crate::files::read_bytes(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TableProblem::Error(DataError::io(path, e))),
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(b'\t')
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(bytes.as_slice());
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| {
                TableProblem::Error(DataError::format(
                    path,
                    format!("cannot read the header row: {e}"),
                ))
            })?
            .iter()
            .map(str::to_string)
            .collect();
        let Some((k, key)) = keys
            .iter()
            .find_map(|key| columns.iter().position(|c| c == key).map(|k| (k, *key)))
        else {
            return Err(TableProblem::NoKey(columns));
        };
        let mut rows = BTreeMap::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| {
                TableProblem::Error(DataError::format(path, format!("line {}: {e}", i + 2)))
            })?;
            let values: Vec<String> = record.iter().map(str::to_string).collect();
            let raw = values.get(k).cloned().unwrap_or_default();
            let id = raw.strip_prefix(prefix).unwrap_or(&raw).to_string();
            if rows.insert(id, values).is_some() {
                return Err(TableProblem::Error(DataError::format(
                    path,
                    format!("line {}: `{raw}` appears twice", i + 2),
                )));
            }
        }
        Ok(Some(Table {
            path: path.to_path_buf(),
            columns,
            key: key.to_string(),
            rows,
        }))
    }

    /// The value of `column` in the row `id` (a label without its prefix).
    pub fn get(&self, id: &str, column: &str) -> Option<&str> {
        let c = self.columns.iter().position(|x| x == column)?;
        self.rows.get(id)?.get(c).map(String::as_str)
    }

    /// Whether the table has `column`.
    pub fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }
}
