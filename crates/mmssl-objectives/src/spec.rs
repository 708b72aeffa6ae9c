//! Objective specs: which edges, with which weights, written `CR-XX-CC` or `CR:1,XX:0.5`.

use crate::error::{ObjectiveError, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The four edges of the taxonomy (Fedorov et al., arXiv:2012.13623).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Edge {
    /// Convolutional map to representation of the same modality (local DIM, unimodal).
    CR,
    /// Representation of modality `i` against the convolutional map of modality `j != i`.
    XX,
    /// A sampled location of the map of `i` against all locations of the map of `j != i`.
    CC,
    /// Representation of `i` against representation of `j != i` (CMC, SimCLR style).
    RR,
}

impl Edge {
    /// All four, in canonical order.
    pub const ALL: [Edge; 4] = [Edge::CR, Edge::XX, Edge::CC, Edge::RR];

    /// The edge's name.
    pub fn name(self) -> &'static str {
        match self {
            Edge::CR => "CR",
            Edge::XX => "XX",
            Edge::CC => "CC",
            Edge::RR => "RR",
        }
    }

    /// Whether the edge pairs two different modalities.
    pub fn is_cross_modal(self) -> bool {
        self != Edge::CR
    }
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The largest edge weight a spec accepts: larger ones overflow a float32 loss (a weight of
/// 1e40 is infinite in float32) long before they could mean anything.
pub const MAX_WEIGHT: f64 = 1e6;

/// A parsed objective: a non-empty set of edges with positive weights, in canonical order.
///
/// ```
/// use mmssl_objectives::{Edge, ObjectiveSpec};
/// let spec: ObjectiveSpec = "CR-XX-CC".parse().unwrap();
/// assert_eq!(spec.edges().len(), 3);
/// let weighted: ObjectiveSpec = "XX:0.5,CR:1".parse().unwrap();
/// assert_eq!(weighted.weight(Edge::XX), Some(0.5));
/// assert_eq!(weighted.to_string(), "CR-XX:0.5");
/// assert!("CR-QQ".parse::<ObjectiveSpec>().is_err());
/// assert_eq!(ObjectiveSpec::all_combinations().len(), 15);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectiveSpec {
    edges: Vec<(Edge, f64)>,
}

impl ObjectiveSpec {
    /// A spec from edges and weights (checked like a parsed one).
    pub fn new(edges: &[(Edge, f64)]) -> Result<Self> {
        let text = edges
            .iter()
            .map(|(e, w)| format!("{e}:{w}"))
            .collect::<Vec<_>>()
            .join(",");
        text.parse()
    }

    /// The edges and their weights, in canonical order (CR, XX, CC, RR).
    pub fn edges(&self) -> &[(Edge, f64)] {
        &self.edges
    }

    /// The weight of `edge`, if present.
    pub fn weight(&self, edge: Edge) -> Option<f64> {
        self.edges.iter().find(|(e, _)| *e == edge).map(|(_, w)| *w)
    }

    /// Whether any edge pairs two modalities.
    pub fn is_multimodal(&self) -> bool {
        self.edges.iter().any(|(e, _)| e.is_cross_modal())
    }

    /// All 15 non-empty combinations of the four edges, with unit weights, by size then order.
    pub fn all_combinations() -> Vec<ObjectiveSpec> {
        let mut all: Vec<ObjectiveSpec> = (1u8..16)
            .map(|mask| ObjectiveSpec {
                edges: Edge::ALL
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, e)| (*e, 1.0))
                    .collect(),
            })
            .collect();
        all.sort_by_key(|s| {
            (
                s.edges.len(),
                s.edges.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
            )
        });
        all
    }
}

impl fmt::Display for ObjectiveSpec {
    /// `CR-XX-CC`, with `:weight` after edges whose weight is not 1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .edges
            .iter()
            .map(|(e, w)| {
                if *w == 1.0 {
                    e.to_string()
                } else {
                    format!("{e}:{w}")
                }
            })
            .collect();
        f.write_str(&parts.join("-"))
    }
}

impl FromStr for ObjectiveSpec {
    type Err = ObjectiveError;

    /// Edges separated by `-` or `,`, each optionally followed by `:weight`; case-insensitive.
    fn from_str(spec: &str) -> Result<Self> {
        let mut edges: Vec<(Edge, f64)> = Vec::new();
        let mut rest = spec.trim();
        if rest.is_empty() {
            return Err(ObjectiveError::EmptySpec);
        }
        let syntax = |rest: &str| ObjectiveError::Syntax {
            spec: spec.to_string(),
            rest: rest.to_string(),
        };
        loop {
            rest = rest.trim_start();
            let name_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            if name_len == 0 {
                return Err(syntax(rest));
            }
            let token = &rest[..name_len];
            let edge = match token.to_ascii_uppercase().as_str() {
                "CR" => Edge::CR,
                "XX" => Edge::XX,
                "CC" => Edge::CC,
                "RR" => Edge::RR,
                _ => {
                    return Err(ObjectiveError::UnknownEdge {
                        token: token.to_string(),
                        spec: spec.to_string(),
                    });
                }
            };
            rest = rest[name_len..].trim_start();
            let mut weight = 1.0;
            if let Some(after) = rest.strip_prefix(':') {
                let after = after.trim_start();
                // A number: digits, '.', exponent; '-'/'+' only right after the exponent.
                let mut end = 0;
                let bytes = after.as_bytes();
                while end < bytes.len() {
                    let c = bytes[end] as char;
                    let sign_ok = (c == '-' || c == '+')
                        && end > 0
                        && matches!(bytes[end - 1] as char, 'e' | 'E');
                    if c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || sign_ok {
                        end += 1;
                    } else {
                        break;
                    }
                }
                let text = &after[..end];
                weight = match text.parse::<f64>() {
                    Ok(w) if w.is_finite() && w > 0.0 && w <= MAX_WEIGHT => w,
                    _ => {
                        // The weight as written, a leading sign included (`CR:-1`).
                        let shown: String = if text.is_empty() {
                            after
                                .char_indices()
                                .take_while(|&(i, c)| {
                                    c != ',' && !c.is_whitespace() && (c != '-' || i == 0)
                                })
                                .map(|(_, c)| c)
                                .collect()
                        } else {
                            text.to_string()
                        };
                        return Err(ObjectiveError::BadWeight {
                            edge: edge.to_string(),
                            weight: shown,
                            spec: spec.to_string(),
                        });
                    }
                };
                rest = after[end..].trim_start();
            }
            if edges.iter().any(|(e, _)| *e == edge) {
                return Err(ObjectiveError::DuplicateEdge {
                    edge: edge.to_string(),
                    spec: spec.to_string(),
                });
            }
            edges.push((edge, weight));
            if rest.is_empty() {
                break;
            }
            match rest.strip_prefix(['-', ',']) {
                Some(r) if !r.trim().is_empty() => rest = r,
                _ => return Err(syntax(rest)),
            }
        }
        edges.sort_by_key(|(e, _)| *e);
        Ok(ObjectiveSpec { edges })
    }
}

impl Serialize for ObjectiveSpec {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ObjectiveSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_weighted_and_mixed_case() {
        let s: ObjectiveSpec = "CR-XX-CC".parse().unwrap();
        assert_eq!(
            s.edges(),
            &[(Edge::CR, 1.0), (Edge::XX, 1.0), (Edge::CC, 1.0)]
        );
        let s: ObjectiveSpec = " rr , cr:2.5 ".parse().unwrap();
        assert_eq!(s.edges(), &[(Edge::CR, 2.5), (Edge::RR, 1.0)]);
        let s: ObjectiveSpec = "CR:1e-3-XX:5E+1".parse().unwrap();
        assert_eq!(s.edges(), &[(Edge::CR, 1e-3), (Edge::XX, 50.0)]);
        assert_eq!(s.to_string(), "CR:0.001-XX:50");
        assert_eq!(s.to_string().parse::<ObjectiveSpec>().unwrap(), s);
        assert!(!"CR".parse::<ObjectiveSpec>().unwrap().is_multimodal());
        assert!("CR-RR".parse::<ObjectiveSpec>().unwrap().is_multimodal());
    }

    #[test]
    fn rejects_bad_specs_with_clear_errors() {
        use ObjectiveError::*;
        let err = |s: &str| s.parse::<ObjectiveSpec>().unwrap_err();
        assert_eq!(err(""), EmptySpec);
        assert_eq!(err("   "), EmptySpec);
        assert!(matches!(err("CR-QQ"), UnknownEdge { token, .. } if token == "QQ"));
        assert!(matches!(err("CR-cr"), DuplicateEdge { edge, .. } if edge == "CR"));
        assert!(matches!(err("CR:0"), BadWeight { .. }));
        assert!(matches!(err("CR:-1"), BadWeight { .. }));
        assert!(matches!(err("CR:abc"), BadWeight { weight, .. } if weight == "abc"));
        assert!(matches!(err("CR:inf"), BadWeight { .. }));
        assert!(matches!(err("CR:-1"), BadWeight { weight, .. } if weight == "-1"));
        assert!(matches!(err("CR:1e40"), BadWeight { weight, .. } if weight == "1e40"));
        assert!(matches!(err("XX:2,CR:-0.5"), BadWeight { weight, .. } if weight == "-0.5"));
        assert!("CR:1e6".parse::<ObjectiveSpec>().is_ok());
        assert!(matches!(err("CR--XX"), Syntax { .. }));
        assert!(matches!(err("CR-"), Syntax { .. }));
        assert!(matches!(err("CR XX"), Syntax { .. }));
        assert!(
            err("CR-QQ")
                .to_string()
                .contains("valid edges are CR, XX, CC, RR")
        );
    }

    #[test]
    fn fifteen_distinct_combinations() {
        let all = ObjectiveSpec::all_combinations();
        assert_eq!(all.len(), 15);
        let names: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        assert_eq!(&names[..4], &["CR", "XX", "CC", "RR"]);
        assert_eq!(names.last().unwrap(), "CR-XX-CC-RR");
        let mut dedup = names.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 15);
        assert!(names.contains(&"CR-XX-CC".to_string()));
    }

    #[test]
    fn serde_round_trip_as_string() {
        let s: ObjectiveSpec = "XX:0.5-CC".parse().unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"XX:0.5-CC\"");
        assert_eq!(serde_json::from_str::<ObjectiveSpec>(&json).unwrap(), s);
        assert!(serde_json::from_str::<ObjectiveSpec>("\"CR-ZZ\"").is_err());
    }
}
