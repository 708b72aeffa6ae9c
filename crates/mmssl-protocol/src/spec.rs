//! Method specs: a method's name and its options, written `NAME;option=value;...`.
//!
//! The name is a registered method (`dccae`, `mmvae`, a downstream crate's own) or an
//! objective of the taxonomy (`CR-XX-CC`, `CR:1,XX:0.5`); options follow, separated by `;`:
//!
//! ```
//! use mmssl_protocol::MethodSpec;
//! let spec: MethodSpec = "XX;estimator=jsd;critic=cosine(0.1);clip=none".parse().unwrap();
//! assert_eq!(spec.name(), "XX");
//! assert_eq!(spec.option("critic"), Some("cosine(0.1)"));
//! assert_eq!(spec.to_string(), "XX;estimator=jsd;critic=cosine(0.1);clip=none");
//! ```
//!
//! Option names are case-insensitive and `-` and `_` are the same (`cca-dim` is `cca_dim`).
//! Which options a method takes, and their values, is the registry's business
//! ([`Registry::resolve`](crate::Registry::resolve)); this type only holds the text.

use crate::error::{ProtocolError, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A method and its options, as written in a flag, a configuration file or a grid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MethodSpec {
    name: String,
    options: Vec<(String, String)>,
}

/// The default method: the paper's CR-XX-CC objective.
pub const DEFAULT_METHOD: &str = "CR-XX-CC";

impl Default for MethodSpec {
    fn default() -> Self {
        MethodSpec::new(DEFAULT_METHOD)
    }
}

/// An option name in its canonical form: lower case, `_` for `-`.
pub(crate) fn option_key(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('-', "_")
}

impl MethodSpec {
    /// A spec with no options.
    pub fn new(name: impl Into<String>) -> Self {
        MethodSpec {
            name: name.into().trim().to_string(),
            options: Vec::new(),
        }
    }

    /// Sets `option` to `value` (replacing an earlier value of the same option).
    pub fn with_option(mut self, option: &str, value: impl fmt::Display) -> Self {
        self.set_option(option, value);
        self
    }

    /// Sets `option` to `value` in place (replacing an earlier value of the same option).
    pub fn set_option(&mut self, option: &str, value: impl fmt::Display) {
        let key = option_key(option);
        let value = value.to_string();
        match self.options.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.options.push((key, value)),
        }
    }

    /// The method's name as written.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The options in the order written, names canonical.
    pub fn options(&self) -> &[(String, String)] {
        &self.options
    }

    /// The value of `option`, if given.
    pub fn option(&self, option: &str) -> Option<&str> {
        let key = option_key(option);
        self.options
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The same spec with its options sorted by name (the canonical form).
    pub(crate) fn sorted(mut self) -> Self {
        self.options.sort();
        self
    }

    /// Replaces the name (the registry's canonical spelling).
    pub(crate) fn renamed(mut self, name: String) -> Self {
        self.name = name;
        self
    }
}

impl fmt::Display for MethodSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (k, v) in &self.options {
            write!(f, ";{k}={v}")?;
        }
        Ok(())
    }
}

impl FromStr for MethodSpec {
    type Err = ProtocolError;

    fn from_str(text: &str) -> Result<Self> {
        let err = |reason: String| ProtocolError::SpecSyntax {
            spec: text.to_string(),
            reason,
        };
        let mut parts = text.split(';');
        let name = parts.next().unwrap_or_default().trim();
        if name.is_empty() {
            return Err(err("the method name is empty".into()));
        }
        if name.contains('=') {
            return Err(err(format!(
                "`{name}` is an option, not a method name: the name comes first"
            )));
        }
        let mut spec = MethodSpec::new(name);
        for part in parts {
            let part = part.trim();
            if part.is_empty() {
                return Err(err(
                    "an empty option (two `;` in a row, or one at the end)".into()
                ));
            }
            let Some((key, value)) = part.split_once('=') else {
                return Err(err(format!("option `{part}` has no `=value`")));
            };
            let (key, value) = (option_key(key), value.trim());
            if key.is_empty() || value.is_empty() {
                return Err(err(format!("option `{part}` needs a name and a value")));
            }
            if spec.option(&key).is_some() {
                return Err(err(format!("option `{key}` is given twice")));
            }
            spec.options.push((key, value.to_string()));
        }
        Ok(spec)
    }
}

impl Serialize for MethodSpec {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for MethodSpec {
    /// From the string form, or from a table `{ name = "dccae", cca_dim = 12 }`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Table(std::collections::BTreeMap<String, Scalar>),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            Bool(bool),
            Int(i64),
            Float(f64),
            Text(String),
        }
        use serde::de::Error;
        match Form::deserialize(d)? {
            Form::Text(t) => t.parse().map_err(D::Error::custom),
            Form::Table(mut table) => {
                let name = match table.remove("name") {
                    Some(Scalar::Text(n)) => n,
                    _ => return Err(D::Error::custom("a method table needs `name = \"...\"`")),
                };
                let mut spec: MethodSpec = name.parse().map_err(D::Error::custom)?;
                for (k, v) in table {
                    let v = match v {
                        Scalar::Bool(b) => b.to_string(),
                        Scalar::Int(i) => i.to_string(),
                        Scalar::Float(x) => x.to_string(),
                        Scalar::Text(t) => t,
                    };
                    spec.set_option(&k, v);
                }
                Ok(spec)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_options_and_round_trips() {
        let s: MethodSpec = " dccae ; CCA-Dim = 12 ;cca_norm=frobenius".parse().unwrap();
        assert_eq!(s.name(), "dccae");
        assert_eq!(
            s.options(),
            &[
                ("cca_dim".to_string(), "12".to_string()),
                ("cca_norm".to_string(), "frobenius".to_string())
            ]
        );
        assert_eq!(s.to_string(), "dccae;cca_dim=12;cca_norm=frobenius");
        assert_eq!(s.to_string().parse::<MethodSpec>().unwrap(), s);
        // Objective names keep their own punctuation.
        let o: MethodSpec = "CR:1,XX:0.5;penalty=0".parse().unwrap();
        assert_eq!((o.name(), o.option("penalty")), ("CR:1,XX:0.5", Some("0")));
        assert_eq!(MethodSpec::default().to_string(), "CR-XX-CC");
        let replaced = o.with_option("PENALTY", 0.1);
        assert_eq!(replaced.to_string(), "CR:1,XX:0.5;penalty=0.1");
    }

    #[test]
    fn rejects_malformed_specs() {
        for bad in [
            "",
            " ; k=v",
            "XX;",
            "XX;;k=v",
            "XX;k",
            "XX;=3",
            "XX;k=",
            "k=v",
            "XX;k=1;K=2",
        ] {
            let e = bad.parse::<MethodSpec>().unwrap_err();
            assert!(
                matches!(e, ProtocolError::SpecSyntax { .. }),
                "{bad:?} gave {e}"
            );
            assert!(e.to_string().contains("NAME;option=value"), "{e}");
        }
    }

    #[test]
    fn deserialises_from_a_string_or_a_table() {
        #[derive(Deserialize)]
        struct W {
            m: MethodSpec,
        }
        let w: W = toml::from_str("m = \"mmvae;k=2\"").unwrap();
        assert_eq!(w.m.to_string(), "mmvae;k=2");
        let w: W = toml::from_str("[m]\nname = \"dccae\"\ncca_dim = 12\ncca_reg = 0.01\n").unwrap();
        assert_eq!(w.m.option("cca_dim"), Some("12"));
        assert_eq!(w.m.option("cca_reg"), Some("0.01"));
        assert!(toml::from_str::<W>("[m]\ncca_dim = 12\n").is_err());
        assert!(toml::from_str::<W>("m = \"XX;k\"").is_err());
    }
}
