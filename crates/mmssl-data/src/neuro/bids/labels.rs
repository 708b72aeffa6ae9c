//! Labels and covariates from `participants.tsv` and `sessions.tsv`, and the manifest.

use super::layout::{Table, TableProblem};
use super::{BidsConfig, BidsSession, BidsUsed, write_atomic};
use crate::error::{DataError, Result};
use crate::neuro::cohort::Diagnosis;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub(super) fn write_manifest(
    path: &Path,
    out: &Path,
    used: &[BidsUsed],
    labels: &Labels,
    config: &BidsConfig,
) -> Result<()> {
    let err = |e: csv::Error| DataError::format(path, e.to_string());
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["subject", "session", "t1", "falff", "label"];
    header.extend(config.covariates.iter().map(String::as_str));
    w.write_record(&header).map_err(err)?;
    for u in used {
        let falff = u.falff.strip_prefix(out).unwrap_or(&u.falff);
        let t1 = u.t1.strip_prefix(out).unwrap_or(&u.t1);
        let session = labels.has_sessions.then_some(u.session.as_str());
        let mut record = vec![
            u.subject.clone(),
            u.session.clone(),
            t1.to_string_lossy().into_owned(),
            falff.to_string_lossy().into_owned(),
            u.label.clone(),
        ];
        for c in &config.covariates {
            record.push(labels.covariate(&u.subject, session, c));
        }
        w.write_record(&record).map_err(err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| DataError::format(path, e.to_string()))?;
    write_atomic(path, &bytes)
}

/// The label and covariate tables of a dataset.
pub(super) struct Labels {
    participants: Option<Table>,
    sessions: BTreeMap<String, Table>,
    pub(super) column: Option<String>,
    map: BTreeMap<String, Diagnosis>,
    has_sessions: bool,
}

impl Labels {
    /// The tables of `root` for `sessions`; problems that leave a table unused (a missing
    /// `participants.tsv`, a `sessions.tsv` without a session column) are pushed to
    /// `warnings`, never fatal.
    pub(super) fn read(
        root: &Path,
        sessions: &[BidsSession],
        config: &BidsConfig,
        warnings: &mut Vec<String>,
    ) -> Result<Labels> {
        let participants_path = root.join("participants.tsv");
        let participants = match Table::read(&participants_path, &["participant_id"], "sub-") {
            Ok(Some(t)) => Some(t),
            Ok(None) => {
                warnings.push(format!(
                    "no {}: every session is unlabelled (used for pretraining only, not for \
                     linear evaluation)",
                    participants_path.display()
                ));
                None
            }
            Err(TableProblem::NoKey(columns)) => {
                return Err(DataError::format(
                    &participants_path,
                    format!(
                        "no `participant_id` column (the columns are {})",
                        columns.join(", ")
                    ),
                ));
            }
            Err(TableProblem::Error(e)) => return Err(e),
        };
        let mut per_subject = BTreeMap::new();
        for subject in sessions.iter().map(|s| &s.subject).collect::<BTreeSet<_>>() {
            let path = root
                .join(format!("sub-{subject}"))
                .join(format!("sub-{subject}_sessions.tsv"));
            match Table::read(&path, &["session_id", "session"], "ses-") {
                Ok(Some(t)) => {
                    if t.key != "session_id" {
                        warnings.push(format!(
                            "{}: read with its `{}` column as the session label (BIDS names it \
                             `session_id`)",
                            path.display(),
                            t.key
                        ));
                    }
                    per_subject.insert(subject.clone(), t);
                }
                Ok(None) => {}
                Err(TableProblem::NoKey(columns)) => warnings.push(format!(
                    "{}: ignored, it has no `session_id` (or `session`) column (its columns: {})",
                    path.display(),
                    columns.join(", ")
                )),
                Err(TableProblem::Error(e)) => {
                    warnings.push(format!("{e}: ignored"));
                }
            }
        }
        let has = |c: &str| {
            participants.as_ref().is_some_and(|t| t.has(c))
                || per_subject.values().any(|t| t.has(c))
        };
        let where_ = || {
            format!(
                "{}participants.tsv{}",
                root.display().to_string() + "/",
                if per_subject.is_empty() {
                    ""
                } else {
                    " or the sessions.tsv files"
                }
            )
        };
        let column = match &config.label_column {
            Some(c) if has(c) => Some(c.clone()),
            Some(c) => {
                return Err(DataError::format(
                    root.join("participants.tsv"),
                    format!("no label column `{c}` in {}", where_()),
                ));
            }
            None => ["diagnosis", "group", "dx"]
                .into_iter()
                .find(|c| has(c))
                .map(str::to_string),
        };
        for c in &config.covariates {
            if !has(c) {
                return Err(DataError::format(
                    root.join("participants.tsv"),
                    format!("no covariate column `{c}` in {}", where_()),
                ));
            }
        }
        let labels = Labels {
            participants,
            sessions: per_subject,
            column,
            map: config.label_map.clone(),
            has_sessions: sessions.iter().any(|s| s.session.is_some()),
        };
        // Every value of the label column must mean something: all unmapped ones at once.
        let mut unknown = BTreeSet::new();
        for s in sessions {
            if let Some(raw) = labels.raw_label(&s.subject, s.session.as_deref())
                && labels.parse(&raw).is_none()
            {
                unknown.insert(raw);
            }
        }
        if !unknown.is_empty() {
            return Err(DataError::format(
                root.join("participants.tsv"),
                format!(
                    "the label column `{}` has values that are not HC, AD, other or empty: {}; \
                     map them (--label-map \"VALUE=HC,VALUE=AD\")",
                    labels.column.as_deref().unwrap_or(""),
                    unknown
                        .into_iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(labels)
    }

    /// The value of `column` for a session: its `sessions.tsv` row if it has the column, else
    /// the subject's `participants.tsv` row.
    fn value(&self, subject: &str, session: Option<&str>, column: &str) -> Option<String> {
        if let (Some(t), Some(ses)) = (self.sessions.get(subject), session)
            && t.has(column)
            && let Some(v) = t.get(ses, column)
        {
            return Some(v.to_string());
        }
        self.participants
            .as_ref()
            .and_then(|t| t.get(subject, column))
            .map(str::to_string)
    }

    fn raw_label(&self, subject: &str, session: Option<&str>) -> Option<String> {
        self.value(subject, session, self.column.as_deref()?)
    }

    fn parse(&self, raw: &str) -> Option<Diagnosis> {
        let v = raw.trim();
        if let Some(d) = self.map.get(v) {
            return Some(*d);
        }
        if v.is_empty() || v.eq_ignore_ascii_case("n/a") {
            return Some(Diagnosis::Unlabelled);
        }
        Diagnosis::parse(v)
    }

    pub(super) fn label(&self, subject: &str, session: Option<&str>) -> Diagnosis {
        self.raw_label(subject, session)
            .and_then(|r| self.parse(&r))
            .unwrap_or(Diagnosis::Unlabelled)
    }

    fn covariate(&self, subject: &str, session: Option<&str>, column: &str) -> String {
        match self.value(subject, session, column) {
            Some(v) if v != "n/a" => v,
            _ => String::new(),
        }
    }
}

/// Parses `VALUE=CLASS,VALUE=CLASS` (classes `HC`, `AD`, `other`, or empty for no label) into
/// a [`BidsConfig::label_map`]; the error names the part that does not parse.
pub fn parse_label_map(text: &str) -> std::result::Result<BTreeMap<String, Diagnosis>, String> {
    let mut map = BTreeMap::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((value, class)) = part.rsplit_once('=') else {
            return Err(format!("`{part}` is not VALUE=CLASS"));
        };
        let Some(d) = Diagnosis::parse(class) else {
            return Err(format!(
                "`{part}`: the class `{}` is not HC, AD, other or empty",
                class.trim()
            ));
        };
        map.insert(value.trim().to_string(), d);
    }
    Ok(map)
}
