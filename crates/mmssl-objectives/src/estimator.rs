//! Mutual-information estimators over the positives and negatives of [`Scores`].
//!
//! - **InfoNCE** (van den Oord et al. 2018, in the AMDIM form of Bachman et al. 2019): for each
//!   positive pair, `-log(e^{f+} / (e^{f+} + sum_{negatives of its anchor} e^{f-}))`, averaged
//!   over the `B L_a L_t` positives.
//! - **Jensen-Shannon** (Hjelm et al., ICLR 2019, after Nowozin et al. 2016):
//!   `E+[softplus(-f)] + E-[softplus(f)]`.
//! - **Donsker-Varadhan** (Belghazi et al. 2018): `-(E+[f] - log E-[e^f])`.
//! - **NWJ** (Nguyen, Wainwright and Jordan 2010): `-(E+[f] - E-[e^{f - 1}])`.
//!
//! `E+` averages over all positive pairs, `E-` over all negative pairs. Each returns a loss to
//! minimise (the negated bound).

use crate::error::ObjectiveError;
use crate::scores::{Scores, softplus};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Which estimator an objective uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// InfoNCE, AMDIM style (the paper's).
    #[default]
    InfoNce,
    /// Jensen-Shannon divergence (Fenchel dual).
    JensenShannon,
    /// Donsker-Varadhan.
    DonskerVaradhan,
    /// Nguyen-Wainwright-Jordan.
    Nwj,
}

impl Estimator {
    /// The loss of this estimator on `scores`: `[1]`.
    pub fn loss(self, scores: &Scores) -> Tensor<1> {
        match self {
            Estimator::InfoNce => {
                let lse = scores.negative_log_sum_exp(); // [rows, 1]
                softplus(lse - scores.positives.clone()).mean()
            }
            Estimator::JensenShannon => {
                softplus(scores.positives.clone().neg()).mean() + scores.negative_mean(softplus)
            }
            Estimator::DonskerVaradhan => {
                let lse = scores.negative_log_sum_exp().reshape([-1]); // per anchor row
                let top = lse.clone().max().detach();
                let log_sum = top.clone() + (lse - top).exp().sum().log();
                let log_mean = log_sum - (scores.negative_count() as f64).ln();
                log_mean - scores.positives.clone().mean()
            }
            Estimator::Nwj => {
                scores.negative_mean(|f| (f - 1.0).exp()) - scores.positives.clone().mean()
            }
        }
    }

    /// Every estimator.
    pub fn all() -> [Estimator; 4] {
        [
            Estimator::InfoNce,
            Estimator::JensenShannon,
            Estimator::DonskerVaradhan,
            Estimator::Nwj,
        ]
    }
}

impl std::fmt::Display for Estimator {
    /// `infonce`, `jsd`, `dv`, `nwj`: the short names [`Estimator::from_str`] reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Estimator::InfoNce => "infonce",
            Estimator::JensenShannon => "jsd",
            Estimator::DonskerVaradhan => "dv",
            Estimator::Nwj => "nwj",
        })
    }
}

impl FromStr for Estimator {
    type Err = ObjectiveError;

    /// `infonce`, `jsd` (or `jensen-shannon`), `dv` (or `donsker-varadhan`), `nwj`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "infonce" | "info-nce" | "nce" => Ok(Estimator::InfoNce),
            "jsd" | "js" | "jensen-shannon" => Ok(Estimator::JensenShannon),
            "dv" | "donsker-varadhan" => Ok(Estimator::DonskerVaradhan),
            "nwj" => Ok(Estimator::Nwj),
            _ => Err(ObjectiveError::UnknownEstimator(s.to_string())),
        }
    }
}
