//! The method registry: one namespace for the objectives of the taxonomy, the baselines and
//! the methods of downstream crates, each with its options.
//!
//! A name is looked up among the registered methods first (case-insensitive, `_` for `-`);
//! any other name must be an objective spec (`CR-XX-CC`, `CR:1,XX:0.5`). The built-in
//! registry ([`Registry::builtin`]) holds the baselines of `mmssl-baselines`; a downstream
//! crate adds its own with [`Registry::register`]:
//!
//! ```
//! use mmssl_protocol::{BuildSetup, MethodFactory, MethodOption, MethodOptions, Registry};
//! use mmssl_protocol::baselines::{Baseline, HybridConfig};
//! use rand::rngs::StdRng;
//!
//! /// An autoencoder with a configurable latent size, under a name of its own.
//! struct Ae;
//! impl MethodFactory for Ae {
//!     type Model = Baseline;
//!     fn options(&self) -> Vec<MethodOption> {
//!         vec![MethodOption::new("width", "the latent size (default 32)")]
//!     }
//!     fn build(&self, o: &MethodOptions, s: &BuildSetup, rng: &mut StdRng)
//!         -> mmssl_protocol::Result<Baseline> {
//!         let width = o.get_or("width", 32usize)?;
//!         Ok(Baseline::Hybrid(HybridConfig::ae(width).init(s.shapes, s.device, rng)?))
//!     }
//! }
//!
//! let mut registry = Registry::builtin();
//! registry.register("small-ae", Ae).unwrap();
//! let m = registry.resolve(&"small_ae;width=16".parse().unwrap()).unwrap();
//! assert_eq!(m.spec().to_string(), "small-ae;width=16");
//! assert!(registry.resolve(&"small-ae;depth=3".parse().unwrap()).is_err());
//! ```

use crate::error::{ProtocolError, Result};
use crate::run::{Evaluated, Session};
use crate::spec::{MethodSpec, option_key};
use burn::tensor::Device;
use mmssl_baselines::{
    Baseline, BaselineKind, CorrelationNorm, DEFAULT_CCA_DIM, DeepCcaConfig, HybridConfig,
    LinearCcaConfig, MmvaeConfig, MmvaeEstimator,
};
use mmssl_objectives::{CriticKind, Estimator, ObjectiveConfig, ObjectiveSpec};
use mmssl_train::{ContrastiveModel, Method};
use rand::rngs::StdRng;
use std::fmt::Display;
use std::str::FromStr;
use std::sync::Arc;

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

/// A method's options, with typed access and errors that name the method and the option.
#[derive(Debug, Clone, Copy)]
pub struct MethodOptions<'a> {
    spec: &'a MethodSpec,
}

impl<'a> MethodOptions<'a> {
    /// The options of `spec`.
    pub fn new(spec: &'a MethodSpec) -> Self {
        MethodOptions { spec }
    }

    /// The method's spec.
    pub fn spec(&self) -> &MethodSpec {
        self.spec
    }

    /// The value of `option` parsed as `T`, if given.
    pub fn get<T: FromStr>(&self, option: &str) -> Result<Option<T>>
    where
        T::Err: Display,
    {
        self.spec
            .option(option)
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
    pub fn bad(&self, option: &str, reason: impl Into<String>) -> ProtocolError {
        ProtocolError::BadOption {
            method: self.spec.name().to_string(),
            option: option_key(option),
            value: self.spec.option(option).unwrap_or("").to_string(),
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

/// A trainable method that the protocol can run: its options and how to build its model.
/// Register it under a name with [`Registry::register`]; the protocol then pretrains it with
/// the one training loop, evaluates it linearly (against the same model at its random
/// initialisation), compares its modalities and puts it in grids, like a built-in method.
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
    fn warnings(
        &self,
        _options: &MethodOptions<'_>,
        _config: &crate::RunConfig,
    ) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// What the registry keeps per method (object-safe; the protocol's own session type stays
/// private).
pub(crate) trait Entry: Send + Sync {
    fn options(&self) -> Vec<MethodOption>;
    fn check(&self, options: &MethodOptions<'_>) -> Result<()>;
    fn warnings(
        &self,
        options: &MethodOptions<'_>,
        config: &crate::RunConfig,
    ) -> Result<Vec<String>>;
    fn execute(&self, options: &MethodOptions<'_>, session: &mut Session<'_>) -> Result<Evaluated>;
}

struct Trained<F>(F);

impl<F: MethodFactory> Entry for Trained<F> {
    fn options(&self) -> Vec<MethodOption> {
        self.0.options()
    }
    fn check(&self, options: &MethodOptions<'_>) -> Result<()> {
        self.0.check(options)
    }
    fn warnings(
        &self,
        options: &MethodOptions<'_>,
        config: &crate::RunConfig,
    ) -> Result<Vec<String>> {
        self.0.warnings(options, config)
    }
    fn execute(&self, options: &MethodOptions<'_>, session: &mut Session<'_>) -> Result<Evaluated> {
        session.pretrain_and_evaluate(self.0.needs_labels(), |setup, rng| {
            self.0.build(options, setup, rng)
        })
    }
}

/// A method resolved against a registry: its canonical spec and how to run it.
#[derive(Clone)]
pub struct ResolvedMethod {
    spec: MethodSpec,
    entry: Arc<dyn Entry>,
}

impl std::fmt::Debug for ResolvedMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedMethod")
            .field("spec", &self.spec)
            .finish()
    }
}

impl ResolvedMethod {
    /// The canonical spec: the registered name (or the objective in canonical edge order) and
    /// the options sorted by name. Two spellings of one method have the same canonical spec.
    pub fn spec(&self) -> &MethodSpec {
        &self.spec
    }

    pub(crate) fn warnings(&self, config: &crate::RunConfig) -> Result<Vec<String>> {
        self.entry.warnings(&MethodOptions::new(&self.spec), config)
    }

    pub(crate) fn execute(&self, session: &mut Session<'_>) -> Result<Evaluated> {
        self.entry.execute(&MethodOptions::new(&self.spec), session)
    }
}

/// Methods by name. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    entries: Vec<(String, Arc<dyn Entry>)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', "-")
}

impl Registry {
    /// The built-in methods: every objective spec, and the baselines `supervised`, `ae`,
    /// `dccae`, `cr-cca`, `rr-ae`, `mmvae` and `lcca`.
    pub fn builtin() -> Self {
        let mut r = Registry {
            entries: Vec::new(),
        };
        for kind in BaselineKind::ALL {
            let entry: Arc<dyn Entry> = match kind {
                BaselineKind::Lcca => Arc::new(LinearCcaEntry),
                kind => Arc::new(Trained(BaselineFactory(kind))),
            };
            r.entries.push((kind.name().to_string(), entry));
        }
        r
    }

    /// Registers `factory` under `name` (case-insensitive; `_` and `-` are the same). Names
    /// already taken, and names that read as objective specs (`rr`, `cr-xx`), are refused.
    pub fn register<F: MethodFactory>(&mut self, name: &str, factory: F) -> Result<()> {
        let key = normalise(name);
        let refuse = |reason: String| ProtocolError::Registration {
            name: name.to_string(),
            reason,
        };
        if key.is_empty() || key.contains([';', '=', ' ', ',', ':']) {
            return Err(refuse(
                "a name is a non-empty word without `;`, `=`, `,`, `:` or spaces".into(),
            ));
        }
        if self.find(&key).is_some() {
            return Err(refuse("the name is taken".into()));
        }
        if key.parse::<ObjectiveSpec>().is_ok() {
            return Err(refuse(
                "it reads as an objective of the edges CR, XX, CC, RR".into(),
            ));
        }
        self.entries.push((key, Arc::new(Trained(factory))));
        Ok(())
    }

    fn find(&self, key: &str) -> Option<&(String, Arc<dyn Entry>)> {
        let key = if key == "l-cca" { "lcca" } else { key };
        self.entries.iter().find(|(n, _)| n == key)
    }

    /// The registered names (objectives, which are any edge spec, are not listed).
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The options of the method `spec` names (for an objective, those of every objective).
    pub fn options_of(&self, spec: &MethodSpec) -> Result<Vec<MethodOption>> {
        Ok(self.lookup(spec)?.1.options())
    }

    fn lookup(&self, spec: &MethodSpec) -> Result<(String, Arc<dyn Entry>)> {
        let key = normalise(spec.name());
        if let Some((name, entry)) = self.find(&key) {
            return Ok((name.clone(), entry.clone()));
        }
        match spec.name().parse::<ObjectiveSpec>() {
            Ok(objective) => Ok((
                objective.to_string(),
                Arc::new(Trained(ObjectiveFactory(objective))),
            )),
            Err(e) => Err(ProtocolError::UnknownMethod {
                name: spec.name().to_string(),
                known: self.names().join(", "),
                objective: e,
            }),
        }
    }

    /// Resolves `spec`: the method must exist, take every option given, and accept the values.
    pub fn resolve(&self, spec: &MethodSpec) -> Result<ResolvedMethod> {
        let (name, entry) = self.lookup(spec)?;
        let allowed = entry.options();
        for (option, _) in spec.options() {
            if !allowed.iter().any(|o| o.name == option) {
                let names: Vec<&str> = allowed.iter().map(|o| o.name).collect();
                return Err(ProtocolError::UnknownOption {
                    method: spec.name().to_string(),
                    option: option.clone(),
                    allowed: if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    },
                });
            }
        }
        let spec = spec.clone().renamed(name).sorted();
        entry.check(&MethodOptions::new(&spec))?;
        Ok(ResolvedMethod { spec, entry })
    }

    /// A listing of the methods and their options, for help texts.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let objective = ObjectiveFactory("CR".parse().expect("an edge"));
        let mut listed: Vec<(String, Vec<MethodOption>)> = vec![(
            "CR, XX, CC, RR and any set of them (`CR-XX-CC`, `CR:1,XX:0.5`)".into(),
            objective.options(),
        )];
        listed.extend(self.entries.iter().map(|(n, e)| (n.clone(), e.options())));
        for (name, options) in listed {
            s += &format!("{name}\n");
            for o in options {
                s += &format!("    {:<18} {}\n", o.name, o.help);
            }
        }
        s
    }
}

/// The options every objective takes.
const OBJECTIVE_OPTIONS: &[MethodOption] = &[
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

const LATENT_DIM: MethodOption = MethodOption::new("latent_dim", "size of z (default 64)");

/// The objective settings of `o` on top of `base` (an objective's own spec and the paper's
/// defaults).
fn objective_config(base: ObjectiveConfig, o: &MethodOptions<'_>) -> Result<ObjectiveConfig> {
    let mut c = base;
    if let Some(e) = o.get::<Estimator>("estimator")? {
        c.estimator = e;
    }
    if let Some(k) = o.get::<CriticKind>("critic")? {
        c.critic = k;
    }
    if let Some(clip) = o.spec().option("clip") {
        c.clip = match clip.to_ascii_lowercase().as_str() {
            "none" | "off" | "false" => None,
            _ => Some(o.positive("clip", 0.0)?),
        };
    }
    c.penalty = o.non_negative("penalty", c.penalty)?;
    c.penalty_weighted = o.get_or("penalty_weighted", c.penalty_weighted)?;
    c.embedding_dim = o.count("embedding_dim", c.embedding_dim)?;
    c.validate().map_err(|e| {
        o.bad(
            o.spec().options().first().map_or("", |x| &x.0),
            e.to_string(),
        )
    })?;
    Ok(c)
}

/// An objective of the taxonomy.
struct ObjectiveFactory(ObjectiveSpec);

impl MethodFactory for ObjectiveFactory {
    type Model = ContrastiveModel;

    fn options(&self) -> Vec<MethodOption> {
        let mut v = OBJECTIVE_OPTIONS.to_vec();
        v.push(LATENT_DIM);
        v
    }

    fn check(&self, o: &MethodOptions<'_>) -> Result<()> {
        objective_config(ObjectiveConfig::new(self.0.clone()), o)?;
        o.count("latent_dim", 64)?;
        Ok(())
    }

    fn build(
        &self,
        o: &MethodOptions<'_>,
        s: &BuildSetup<'_>,
        rng: &mut StdRng,
    ) -> Result<ContrastiveModel> {
        let objective = objective_config(ObjectiveConfig::new(self.0.clone()), o)?;
        let latent = o.count("latent_dim", 64)?;
        Ok(ContrastiveModel::new(
            s.shapes, latent, &objective, s.device, rng,
        )?)
    }
}

/// A trained baseline of `mmssl-baselines`.
struct BaselineFactory(BaselineKind);

const CCA_OPTIONS: &[MethodOption] = &[
    MethodOption::new(
        "cca_dim",
        "output size of the heads feeding the deep CCA loss (default 10; keep it below the \
         batch size minus one)",
    ),
    MethodOption::new(
        "cca_norm",
        "trace (default: the sum of canonical correlations) or frobenius (the authors' code)",
    ),
    MethodOption::new(
        "cca_top_k",
        "only the top k canonical correlations count (default all)",
    ),
    MethodOption::new(
        "cca_reg",
        "ridge added to the auto-covariances (default 0.001)",
    ),
    MethodOption::new("cca_weight", "weight of the deep CCA term (default 1)"),
];
const RECONSTRUCTION: MethodOption = MethodOption::new(
    "reconstruction",
    "weight of the reconstruction error (default 1)",
);
const MMVAE_OPTIONS: &[MethodOption] = &[
    MethodOption::new(
        "k",
        "importance samples per modality (default 10; a step's cost grows linearly)",
    ),
    MethodOption::new(
        "estimator",
        "dreg (default), iwae (both loose: the mean over modalities outside the log) or elbo",
    ),
    MethodOption::new(
        "learn_prior",
        "true: learn the prior's scale (default false)",
    ),
    MethodOption::new(
        "likelihood_scale",
        "the fixed scale of the Laplace likelihoods (default 0.75)",
    ),
    MethodOption::new(
        "likelihood_scaling",
        "per-modality factors of the log-likelihoods, comma-separated (default: largest \
         modality size over each modality's)",
    ),
];

impl BaselineFactory {
    fn hybrid(&self, o: &MethodOptions<'_>) -> Result<HybridConfig> {
        let latent = o.count("latent_dim", 64)?;
        let mut c = match self.0 {
            BaselineKind::Ae => HybridConfig::ae(latent),
            BaselineKind::Dccae => HybridConfig::dccae(latent),
            BaselineKind::CrCca => HybridConfig::cr_cca(latent),
            _ => HybridConfig::rr_ae(latent),
        };
        if let Some(w) = c.reconstruction.as_mut() {
            *w = o.non_negative("reconstruction", *w)?;
        }
        if let Some((cca, w)) = c.cca.as_mut() {
            *cca = DeepCcaConfig {
                reg: o.positive("cca_reg", cca.reg)?,
                norm: o.get_or::<CorrelationNorm>("cca_norm", cca.norm)?,
                top_k: match o.get::<usize>("cca_top_k")? {
                    Some(0) => return Err(o.bad("cca_top_k", "must be at least 1")),
                    k => k.or(cca.top_k),
                },
            };
            *w = o.non_negative("cca_weight", *w)?;
            c.cca_dim = o.count("cca_dim", DEFAULT_CCA_DIM)?;
        }
        if let Some(obj) = c.objective.take() {
            c.objective = Some(objective_config(obj, o)?);
            c.embedding_dim = o.count("embedding_dim", c.embedding_dim)?;
        }
        Ok(c)
    }

    fn mmvae(&self, o: &MethodOptions<'_>) -> Result<MmvaeConfig> {
        let d = MmvaeConfig::default();
        let scaling = match o.spec().option("likelihood_scaling") {
            None => None,
            Some(text) => Some(
                text.split(',')
                    .map(|x| match x.trim().parse::<f64>() {
                        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                        _ => Err(o.bad(
                            "likelihood_scaling",
                            "comma-separated finite numbers > 0, one per modality",
                        )),
                    })
                    .collect::<Result<Vec<f64>>>()?,
            ),
        };
        Ok(MmvaeConfig {
            latent_dim: o.count("latent_dim", d.latent_dim)?,
            k: o.count("k", d.k)?,
            estimator: o.get_or::<MmvaeEstimator>("estimator", d.estimator)?,
            likelihood_scale: o.positive("likelihood_scale", d.likelihood_scale)?,
            likelihood_scaling: scaling,
            learn_prior: o.get_or("learn_prior", d.learn_prior)?,
        })
    }
}

impl MethodFactory for BaselineFactory {
    type Model = Baseline;

    fn options(&self) -> Vec<MethodOption> {
        let mut v = vec![LATENT_DIM];
        match self.0 {
            BaselineKind::Supervised | BaselineKind::Lcca => {}
            BaselineKind::Ae => v.push(RECONSTRUCTION),
            BaselineKind::Dccae => {
                v.push(RECONSTRUCTION);
                v.extend_from_slice(CCA_OPTIONS);
            }
            BaselineKind::CrCca => {
                v.extend_from_slice(CCA_OPTIONS);
                v.extend_from_slice(OBJECTIVE_OPTIONS);
            }
            BaselineKind::RrAe => {
                v.push(RECONSTRUCTION);
                v.extend_from_slice(OBJECTIVE_OPTIONS);
            }
            BaselineKind::Mmvae => v.extend_from_slice(MMVAE_OPTIONS),
        }
        v
    }

    fn check(&self, o: &MethodOptions<'_>) -> Result<()> {
        match self.0 {
            BaselineKind::Mmvae => self.mmvae(o).map(|_| ()),
            BaselineKind::Supervised => o.count("latent_dim", 64).map(|_| ()),
            _ => self.hybrid(o).map(|_| ()),
        }
    }

    fn build(
        &self,
        o: &MethodOptions<'_>,
        s: &BuildSetup<'_>,
        rng: &mut StdRng,
    ) -> Result<Baseline> {
        Ok(match self.0 {
            BaselineKind::Supervised => Baseline::Supervised(mmssl_baselines::Supervised::new(
                s.shapes,
                o.count("latent_dim", 64)?,
                s.classes,
                s.device,
                rng,
            )?),
            BaselineKind::Mmvae => Baseline::Mmvae(self.mmvae(o)?.init(s.shapes, s.device, rng)?),
            _ => Baseline::Hybrid(self.hybrid(o)?.init(s.shapes, s.device, rng)?),
        })
    }

    fn needs_labels(&self) -> bool {
        self.0.needs_labels()
    }

    fn warnings(&self, o: &MethodOptions<'_>, config: &crate::RunConfig) -> Result<Vec<String>> {
        let batch = config.training.batch_size;
        if matches!(self.0, BaselineKind::Dccae | BaselineKind::CrCca) {
            let dim = self.hybrid(o)?.cca_dim;
            if dim + 1 >= batch {
                return Ok(vec![format!(
                    "cca_dim {dim} with batch size {batch}: a batch's cross-covariance has rank \
                     at most {}, so every canonical correlation can be 1 whatever the encoders \
                     learn and the deep CCA term carries no signal; use a CCA dimension below \
                     the batch size minus one",
                    batch - 1
                )]);
            }
        }
        Ok(Vec::new())
    }
}

/// Linear CCA: fitted in closed form on the flattened training pairs, not trained.
struct LinearCcaEntry;

impl LinearCcaEntry {
    fn config(o: &MethodOptions<'_>) -> Result<LinearCcaConfig> {
        let d = LinearCcaConfig::default();
        Ok(LinearCcaConfig {
            components: o.count("components", d.components)?,
            reg: o.positive("reg", d.reg)?,
        })
    }
}

impl Entry for LinearCcaEntry {
    fn options(&self) -> Vec<MethodOption> {
        vec![
            MethodOption::new(
                "components",
                "canonical components kept, the representation's size (default 64)",
            ),
            MethodOption::new("reg", "ridge added to the auto-covariances (default 0.001)"),
        ]
    }
    fn check(&self, o: &MethodOptions<'_>) -> Result<()> {
        Self::config(o).map(|_| ())
    }
    fn warnings(&self, _: &MethodOptions<'_>, _: &crate::RunConfig) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn execute(&self, o: &MethodOptions<'_>, session: &mut Session<'_>) -> Result<Evaluated> {
        session.linear_cca(&Self::config(o)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<ResolvedMethod> {
        Registry::builtin().resolve(&text.parse()?)
    }

    #[test]
    fn names_and_spellings_resolve_to_one_canonical_spec() {
        for (text, canonical) in [
            ("CR-XX-CC", "CR-XX-CC"),
            ("cc-xx-cr", "CR-XX-CC"),
            ("CR:1,XX:0.5", "CR-XX:0.5"),
            ("xx;penalty=0;estimator=jsd", "XX;estimator=jsd;penalty=0"),
            ("DCCAE", "dccae"),
            ("cr_cca;cca_dim=8", "cr-cca;cca_dim=8"),
            ("l-cca;components=4", "lcca;components=4"),
            ("mmvae;k=10;estimator=dreg", "mmvae;estimator=dreg;k=10"),
            (
                "XX;critic=cosine(0.1);clip=none",
                "XX;clip=none;critic=cosine(0.1)",
            ),
            (
                "rr-ae;critic=bilinear;reconstruction=0.5",
                "rr-ae;critic=bilinear;reconstruction=0.5",
            ),
        ] {
            let m = resolve(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.spec().to_string(), canonical);
        }
    }

    #[test]
    fn unknown_names_options_and_values_list_what_is_allowed() {
        let e = resolve("nonsense").unwrap_err().to_string();
        assert!(
            e.contains("nonsense") && e.contains("dccae") && e.contains("CR-XX-CC"),
            "{e}"
        );
        let e = resolve("XX;temperature=0.1").unwrap_err().to_string();
        assert!(
            e.contains("temperature") && e.contains("critic") && e.contains("estimator"),
            "{e}"
        );
        let e = resolve("supervised;k=3").unwrap_err().to_string();
        assert!(e.contains("latent_dim"), "{e}");
        for (text, option) in [
            ("XX;estimator=mine", "estimator"),
            ("XX;critic=cosine(-1)", "critic"),
            ("XX;critic=cosine(abc)", "critic"),
            ("XX;clip=0", "clip"),
            ("XX;penalty=-1", "penalty"),
            ("XX;embedding_dim=0", "embedding_dim"),
            ("XX;penalty_weighted=maybe", "penalty_weighted"),
            ("dccae;cca_dim=0", "cca_dim"),
            ("dccae;cca_norm=spectral", "cca_norm"),
            ("dccae;cca_reg=0", "cca_reg"),
            ("dccae;cca_top_k=0", "cca_top_k"),
            ("mmvae;k=0", "k"),
            ("mmvae;estimator=infonce", "estimator"),
            ("mmvae;likelihood_scaling=1,x", "likelihood_scaling"),
            ("lcca;components=-2", "components"),
        ] {
            let e = resolve(text).unwrap_err();
            assert!(
                matches!(&e, ProtocolError::BadOption { option: o, .. } if o == option),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn options_reach_the_configurations() {
        let spec: MethodSpec =
            "XX;estimator=jsd;critic=cosine(0.2);clip=none;penalty=0;embedding_dim=32"
                .parse()
                .unwrap();
        let c = objective_config(
            ObjectiveConfig::new("XX".parse().unwrap()),
            &MethodOptions::new(&spec),
        )
        .unwrap();
        assert_eq!(c.estimator, Estimator::JensenShannon);
        assert_eq!(c.critic, CriticKind::cosine(0.2));
        assert_eq!((c.clip, c.penalty, c.embedding_dim), (None, 0.0, 32));
        let spec: MethodSpec = "dccae;cca_dim=12;cca_norm=frobenius;cca_top_k=3;cca_reg=0.01;cca_weight=2;reconstruction=0.5;latent_dim=16"
            .parse()
            .unwrap();
        let h = BaselineFactory(BaselineKind::Dccae)
            .hybrid(&MethodOptions::new(&spec))
            .unwrap();
        let (cca, w) = h.cca.unwrap();
        assert_eq!(
            (h.cca_dim, h.latent_dim, h.reconstruction),
            (12, 16, Some(0.5))
        );
        assert_eq!(
            (cca.norm, cca.top_k, cca.reg, w),
            (CorrelationNorm::Frobenius, Some(3), 0.01, 2.0)
        );
        let spec: MethodSpec =
            "mmvae;k=3;estimator=iwae;learn_prior=true;likelihood_scale=0.5;likelihood_scaling=1,2"
                .parse()
                .unwrap();
        let m = BaselineFactory(BaselineKind::Mmvae)
            .mmvae(&MethodOptions::new(&spec))
            .unwrap();
        assert_eq!(
            (m.k, m.estimator, m.learn_prior),
            (3, MmvaeEstimator::Iwae, true)
        );
        assert_eq!(
            (m.likelihood_scale, m.likelihood_scaling),
            (0.5, Some(vec![1.0, 2.0]))
        );
    }

    #[test]
    fn registration_refuses_taken_and_objective_names() {
        struct Nothing;
        impl MethodFactory for Nothing {
            type Model = ContrastiveModel;
            fn build(
                &self,
                _: &MethodOptions<'_>,
                s: &BuildSetup<'_>,
                rng: &mut StdRng,
            ) -> Result<ContrastiveModel> {
                let objective = ObjectiveConfig::new("CR".parse().unwrap());
                Ok(ContrastiveModel::new(
                    s.shapes, 8, &objective, s.device, rng,
                )?)
            }
        }
        let mut r = Registry::builtin();
        for bad in ["dccae", "DCCAE", "rr", "cr-xx", "", "a;b", "x=y"] {
            assert!(
                matches!(
                    r.register(bad, Nothing),
                    Err(ProtocolError::Registration { .. })
                ),
                "{bad:?}"
            );
        }
        r.register("My_Method", Nothing).unwrap();
        assert!(r.names().contains(&"my-method"));
        let m = r.resolve(&"my-method".parse().unwrap()).unwrap();
        assert_eq!(m.spec().name(), "my-method");
        let e = r.resolve(&"my_method;x=1".parse().unwrap()).unwrap_err();
        assert!(e.to_string().contains("none"), "{e}");
        assert!(r.describe().contains("my-method") && r.describe().contains("cca_dim"));
    }
}
