//! How a method is built from its name's options: [`MethodFactory`], the other half of
//! [`Method`].
//!
//! A method spec (`XX;estimator=jsd`, `dccae;cca_dim=10`) names a factory and gives it
//! options; the factory lists the options it takes, checks their values and builds the model.
//! The registry that maps names to factories is `mmssl-protocol`'s; the factories sit beside
//! their models (the objectives' in this crate, each baseline's in its file of
//! `mmssl-baselines`, a downstream crate's in that crate).

use crate::error::{Result, TrainError};
use crate::fit::FitConfig;
use crate::method::Method;
use burn::tensor::Device;
use mmssl_objectives::{CriticKind, Estimator, ObjectiveConfig};
use rand::rngs::StdRng;
use std::fmt::Display;
use std::str::FromStr;

/// One option a method takes, for error messages and listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodOption {
    /// The name (lower case, `_` between words).
    pub name: &'static str,
    /// What it sets, its values and default.
    pub help: &'static str,
}

impl MethodOption {
    /// An option named `name`.
    pub const fn new(name: &'static str, help: &'static str) -> Self {
        MethodOption { name, help }
    }
}

/// What a method's model is built for.
#[derive(Debug, Clone, Copy)]
pub struct BuildSetup<'a> {
    /// The shape of one item of each modality (`[C, 32, 32]`, `[C, 64, 64, 64]`).
    pub shapes: &'a [Vec<usize>],
    /// Classes of the labelled task (for supervised methods).
    pub classes: usize,
    /// The (autodiff) device the model trains on.
    pub device: &'a Device,
}

/// A method's options (`name=value` pairs, names canonical), with typed access and errors that
/// name the method and the option.
#[derive(Debug, Clone, Copy)]
pub struct MethodOptions<'a> {
    method: &'a str,
    values: &'a [(String, String)],
}

impl<'a> MethodOptions<'a> {
    /// The options `values` of the method `method`.
    pub fn new(method: &'a str, values: &'a [(String, String)]) -> Self {
        MethodOptions { method, values }
    }

    /// The method's name.
    pub fn method(&self) -> &str {
        self.method
    }

    /// Every option given, in order.
    pub fn given(&self) -> &[(String, String)] {
        self.values
    }

    /// The text of `option`, if given.
    pub fn raw(&self, option: &str) -> Option<&'a str> {
        self.values
            .iter()
            .find(|(k, _)| k == option)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `option` parsed as `T`, if given.
    pub fn get<T: FromStr>(&self, option: &str) -> Result<Option<T>>
    where
        T::Err: Display,
    {
        self.raw(option)
            .map(|v| v.parse::<T>().map_err(|e| self.bad(option, e.to_string())))
            .transpose()
    }

    /// The value of `option` parsed as `T`, or `default`.
    pub fn get_or<T: FromStr>(&self, option: &str, default: T) -> Result<T>
    where
        T::Err: Display,
    {
        Ok(self.get(option)?.unwrap_or(default))
    }

    /// An error about the value of `option`.
    pub fn bad(&self, option: &str, reason: impl Into<String>) -> TrainError {
        TrainError::BadOption {
            method: self.method.to_string(),
            option: option.to_string(),
            value: self.raw(option).unwrap_or("").to_string(),
            reason: reason.into(),
        }
    }

    /// A positive, finite number (or the default).
    pub fn positive(&self, option: &str, default: f64) -> Result<f64> {
        let v = self.get_or(option, default)?;
        if !(v.is_finite() && v > 0.0) {
            return Err(self.bad(option, "must be a finite number > 0"));
        }
        Ok(v)
    }

    /// A non-negative, finite number (or the default).
    pub fn non_negative(&self, option: &str, default: f64) -> Result<f64> {
        let v = self.get_or(option, default)?;
        if !(v.is_finite() && v >= 0.0) {
            return Err(self.bad(option, "must be a finite number >= 0"));
        }
        Ok(v)
    }

    /// A count of at least 1 (or the default).
    pub fn count(&self, option: &str, default: usize) -> Result<usize> {
        let v = self.get_or(option, default)?;
        if v == 0 {
            return Err(self.bad(option, "must be at least 1"));
        }
        Ok(v)
    }
}

/// A trainable method that a protocol can run: its options and how to build its model from
/// them. `mmssl-protocol` registers factories under names; the protocol then pretrains the
/// model with the one training loop, evaluates it linearly (against the same model at its
/// random initialisation), compares its modalities and puts it in grids, like a built-in
/// method.
pub trait MethodFactory: Send + Sync + 'static {
    /// The model it builds.
    type Model: Method;

    /// The options it takes (others are refused with this list).
    fn options(&self) -> Vec<MethodOption> {
        Vec::new()
    }

    /// Checks the option values before any data is loaded (default: nothing beyond the names;
    /// [`build`](MethodFactory::build) still reports bad values, only later).
    fn check(&self, _options: &MethodOptions<'_>) -> Result<()> {
        Ok(())
    }

    /// Builds the model, its parameters drawn from `rng` (seeded with the run's seed, so the
    /// pretrained model and its random-initialisation reference start equal).
    fn build(
        &self,
        options: &MethodOptions<'_>,
        setup: &BuildSetup<'_>,
        rng: &mut StdRng,
    ) -> Result<Self::Model>;

    /// Whether pretraining needs labelled items (a supervised method): it then trains on the
    /// labelled sets of the linear evaluation.
    fn needs_labels(&self) -> bool {
        false
    }

    /// Warnings about settings that run but are probably not what was meant.
    fn warnings(&self, _options: &MethodOptions<'_>, _training: &FitConfig) -> Vec<String> {
        Vec::new()
    }
}

/// The options every contrastive objective takes (and the baselines with a contrastive term).
pub const OBJECTIVE_OPTIONS: &[MethodOption] = &[
    MethodOption::new(
        "estimator",
        "infonce (default), jsd, dv or nwj: the mutual-information bound",
    ),
    MethodOption::new(
        "critic",
        "scaled_dot (default), cosine(T) (cosine = cosine(0.1)) or bilinear",
    ),
    MethodOption::new(
        "clip",
        "scores clipped to c*tanh(f/c) with this c (default 20), or none",
    ),
    MethodOption::new(
        "penalty",
        "the score penalty lambda*mean(f^2) (default 0.04)",
    ),
    MethodOption::new(
        "penalty_weighted",
        "true: the penalty is multiplied by its edge's weight (default false)",
    ),
    MethodOption::new(
        "embedding_dim",
        "output size of the conv and latent heads (default 64)",
    ),
];

/// The option of the encoders' representation size.
pub const LATENT_DIM: MethodOption = MethodOption::new("latent_dim", "size of z (default 64)");

/// `base` with the objective options of `o` applied ([`OBJECTIVE_OPTIONS`]), checked.
pub fn objective_options(base: ObjectiveConfig, o: &MethodOptions<'_>) -> Result<ObjectiveConfig> {
    let mut c = base;
    if let Some(e) = o.get::<Estimator>("estimator")? {
        c.estimator = e;
    }
    if let Some(k) = o.get::<CriticKind>("critic")? {
        c.critic = k;
    }
    if let Some(clip) = o.raw("clip") {
        c.clip = match clip.to_ascii_lowercase().as_str() {
            "none" | "off" | "false" => None,
            _ => Some(o.positive("clip", 0.0)?),
        };
    }
    c.penalty = o.non_negative("penalty", c.penalty)?;
    c.penalty_weighted = o.get_or("penalty_weighted", c.penalty_weighted)?;
    c.embedding_dim = o.count("embedding_dim", c.embedding_dim)?;
    c.validate()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(values: &[(&str, &str)]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn typed_access_names_the_method_and_option() {
        let v = opts(&[("k", "3"), ("scale", "-1"), ("flag", "maybe")]);
        let o = MethodOptions::new("mine", &v);
        assert_eq!(o.count("k", 1).unwrap(), 3);
        assert_eq!(o.count("absent", 7).unwrap(), 7);
        let e = o.positive("scale", 1.0).unwrap_err();
        assert!(
            matches!(&e, TrainError::BadOption { method, option, value, .. }
                if method == "mine" && option == "scale" && value == "-1"),
            "{e}"
        );
        assert!(
            o.get::<bool>("flag")
                .unwrap_err()
                .to_string()
                .contains("flag")
        );
    }

    #[test]
    fn objective_options_reach_the_configuration() {
        let v = opts(&[
            ("estimator", "jsd"),
            ("critic", "cosine(0.2)"),
            ("clip", "none"),
            ("penalty", "0"),
            ("embedding_dim", "32"),
        ]);
        let c = objective_options(
            ObjectiveConfig::new("XX".parse().unwrap()),
            &MethodOptions::new("XX", &v),
        )
        .unwrap();
        assert_eq!(c.estimator, Estimator::JensenShannon);
        assert_eq!(c.critic, CriticKind::cosine(0.2));
        assert_eq!((c.clip, c.penalty, c.embedding_dim), (None, 0.0, 32));
        for (k, v) in [
            ("clip", "0"),
            ("critic", "cosine(-1)"),
            ("estimator", "mine"),
        ] {
            let bad = opts(&[(k, v)]);
            let base = ObjectiveConfig::new("XX".parse().unwrap());
            assert!(objective_options(base, &MethodOptions::new("XX", &bad)).is_err());
        }
    }
}
