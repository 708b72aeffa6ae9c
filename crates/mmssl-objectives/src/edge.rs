//! Which embeddings each edge pairs, and over which modality pairs.

use crate::spec::Edge;
use std::fmt;

/// One term of an objective: an edge between an anchor modality and a target modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeTerm {
    /// The edge.
    pub edge: Edge,
    /// Modality providing the anchors.
    pub anchor: usize,
    /// Modality providing the targets.
    pub target: usize,
}

impl EdgeTerm {
    /// What the anchors are.
    pub fn anchor_kind(&self) -> EmbeddingKind {
        match self.edge {
            Edge::CR | Edge::XX | Edge::RR => EmbeddingKind::Latent,
            Edge::CC => EmbeddingKind::SampledLocation,
        }
    }

    /// What the targets are.
    pub fn target_kind(&self) -> EmbeddingKind {
        match self.edge {
            Edge::CR | Edge::XX | Edge::CC => EmbeddingKind::ConvMap,
            Edge::RR => EmbeddingKind::Latent,
        }
    }
}

impl fmt::Display for EdgeTerm {
    /// `CR[0]` for the unimodal edge, `XX[0->1]` (anchor -> target) for the others.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.edge.is_cross_modal() {
            write!(f, "{}[{}->{}]", self.edge, self.anchor, self.target)
        } else {
            write!(f, "{}[{}]", self.edge, self.anchor)
        }
    }
}

/// The embedding an edge takes from a modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingKind {
    /// The latent head's output, one location: `[B, d, 1]`.
    Latent,
    /// The conv head's output, every location: `[B, d, L]`.
    ConvMap,
    /// One location of the conv head's output, drawn at random per sample: `[B, d, 1]`.
    SampledLocation,
}

/// The terms of `edge` for `modalities` modalities: CR once per modality; XX, CC and RR once
/// per ordered pair `(i, j)`, `i != j`, so both directions count.
///
/// ```
/// use mmssl_objectives::{Edge, edge_terms};
/// assert_eq!(edge_terms(Edge::CR, 2).len(), 2);
/// assert_eq!(edge_terms(Edge::XX, 3).len(), 6);
/// assert_eq!(edge_terms(Edge::RR, 2)[1].to_string(), "RR[1->0]");
/// ```
pub fn edge_terms(edge: Edge, modalities: usize) -> Vec<EdgeTerm> {
    let mut terms = Vec::new();
    for anchor in 0..modalities {
        if edge.is_cross_modal() {
            for target in (0..modalities).filter(|&t| t != anchor) {
                terms.push(EdgeTerm {
                    edge,
                    anchor,
                    target,
                });
            }
        } else {
            terms.push(EdgeTerm {
                edge,
                anchor,
                target: anchor,
            });
        }
    }
    terms
}
