//! Settings changed one at a time from text: [`RunConfig::set`] and [`RunConfig::set_all`],
//! what the `--set KEY=VALUE` flags of the `mmssl` commands call.

use super::RunConfig;
use super::flat::FLAT_KEYS;
use crate::error::{ProtocolError, Result};

impl RunConfig {
    /// Sets one setting from text, as `--set KEY=VALUE` does: `key` is dotted
    /// (`evaluation.knn_k`, `seed`) or a flat key of the flags (`knn_k`, `eval_epochs`);
    /// `value` is a TOML value (`20`, `true`, `0.07`, `"cosine"`) or, when it does not parse as
    /// one, a string (`cosine`). Returns the section the setting belongs to (`""` for the
    /// top-level `seed`, `backend`, `method`). An unknown key or a value of the wrong type is
    /// an error naming the key; the configuration is unchanged then.
    ///
    /// ```
    /// use mmssl_protocol::RunConfig;
    /// let mut c = RunConfig::default();
    /// assert_eq!(c.set("knn_k", "5").unwrap(), "evaluation");
    /// c.set("analysis.maps", "false").unwrap();
    /// c.set("knn_metric", "euclidean").unwrap();
    /// assert_eq!(c.evaluation.knn_k, Some(5));
    /// assert!(!c.analysis.maps);
    /// assert!(c.set("knn_k", "many").is_err());
    /// assert!(c.set("evaluation.no_such_thing", "1").is_err());
    /// ```
    pub fn set(&mut self, key: &str, value: &str) -> Result<String> {
        let flat = key.trim().replace('-', "_");
        let (section, field) = match flat.split_once('.') {
            Some((s, f)) => (s.to_string(), f.to_string()),
            None => match FLAT_KEYS.iter().find(|(k, _, _)| *k == flat) {
                Some(&(_, s, f)) => (s.to_string(), f.to_string()),
                None => (String::new(), flat.clone()),
            },
        };
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        let mut table =
            toml::Table::try_from(&*self).map_err(|e| ProtocolError::Config(e.to_string()))?;
        let place = match section.as_str() {
            "" => &mut table,
            s => match table
                .entry(s.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ProtocolError::Config(format!(
                        "`{key}`: `{s}` is not a section"
                    )));
                }
            },
        };
        place.insert(field.clone(), parsed);
        let name = match section.as_str() {
            "" => field,
            s => format!("{s}.{field}"),
        };
        *self = Self::from_table(table).map_err(|e| {
            ProtocolError::setting(&name, value, format!("not a valid setting ({e})"))
        })?;
        Ok(section)
    }

    /// The settings of `sections` whose value here differs from `other`'s, as `(key, value)`
    /// in the form [`RunConfig::set`] takes (`("evaluation.epochs", "3")`), in key order. The
    /// evaluation epochs are compared resolved (absent = the dataset's default).
    pub fn settings_differing(
        &self,
        other: &RunConfig,
        sections: &[&str],
    ) -> Vec<(String, String)> {
        let resolved = |c: &RunConfig| {
            let mut c = c.clone();
            c.evaluation.epochs = Some(c.evaluation.epochs_for(c.data.dataset));
            toml::Table::try_from(c).unwrap_or_default()
        };
        let (mine, theirs) = (resolved(self), resolved(other));
        let mut out = Vec::new();
        for section in sections {
            let table = |t: &toml::Table| t.get(*section).and_then(|v| v.as_table()).cloned();
            let (Some(a), b) = (table(&mine), table(&theirs).unwrap_or_default()) else {
                continue;
            };
            for (field, value) in a {
                if b.get(&field) != Some(&value) {
                    out.push((
                        format!("{section}.{field}"),
                        super::flat::scalar_text(&value),
                    ));
                }
            }
        }
        out
    }

    /// Applies `KEY=VALUE` settings in order ([`RunConfig::set`], the `--set` flags); with
    /// `sections`, a key of another section is refused. All or nothing: on an error the
    /// configuration is unchanged.
    pub fn set_all(
        &mut self,
        settings: &[impl AsRef<str>],
        sections: Option<&[&str]>,
    ) -> Result<()> {
        let mut changed = self.clone();
        for kv in settings {
            let kv = kv.as_ref();
            let Some((key, value)) = kv.split_once('=') else {
                return Err(ProtocolError::Config(format!(
                    "--set {kv}: give KEY=VALUE (e.g. knn_k=10)"
                )));
            };
            let section = changed.set(key, value)?;
            if let Some(allowed) = sections.filter(|a| !a.contains(&section.as_str())) {
                return Err(ProtocolError::Config(format!(
                    "--set {kv}: only {} settings apply here",
                    allowed.join(" and ")
                )));
            }
        }
        *self = changed;
        Ok(())
    }
}
