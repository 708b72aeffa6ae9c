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
//!         -> mmssl_train::Result<Baseline> {
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

use crate::attribution::{ExplainConfig, ExplainReport};
use crate::error::{ProtocolError, Result};
use crate::session::{Evaluation, Session};
use crate::spec::MethodSpec;
use crate::weights::{Applied, WeightsLoad};
use burn_store::burn_pack::Tensor as PackTensor;
use mmssl_baselines::{
    HybridFactory, LCCA_OPTIONS, LinearCcaConfig, MmvaeFactory, SupervisedFactory,
};
use mmssl_objectives::ObjectiveSpec;
use mmssl_train::{
    BuildSetup, ContrastiveFactory, FitConfig, MethodFactory, MethodOption, MethodOptions,
};
use std::path::Path;
use std::sync::Arc;

/// The report of an explanation, or why none was made.
type Explained = Result<ExplainReport>;

/// What the registry keeps per method (object-safe; the protocol's own session type stays
/// private).
pub(crate) trait Entry: Send + Sync {
    fn options(&self) -> Vec<MethodOption>;
    fn check(&self, options: &MethodOptions<'_>) -> Result<()>;
    fn warnings(&self, options: &MethodOptions<'_>, training: &FitConfig) -> Vec<String>;
    fn execute(&self, options: &MethodOptions<'_>, session: &mut Session<'_>)
    -> Result<Evaluation>;
    /// The explanation of the run session `s` is on, with the settings and into the folder of
    /// `to`.
    fn explain(&self, o: &MethodOptions, s: &mut Session, to: (&ExplainConfig, &Path))
    -> Explained;
    fn needs_labels(&self) -> bool {
        false
    }
    /// The model built as `build` says, `load.tensors` (burn-store paths) applied to it; when
    /// every parameter outside `load.partial` (path prefixes that may keep their
    /// initialisation) was filled and every tensor used, the model saved to each of
    /// `load.save`. A method without a network (linear CCA) refuses.
    fn load_weights(&self, _build: &SeededBuild<'_>, _load: WeightsLoad<'_>) -> Result<Applied> {
        Err(no_network())
    }
    /// Every tensor of the model built as `build` says with the weights of `checkpoint`, by
    /// burn-store path; a method without a network refuses.
    fn weights(&self, _build: &SeededBuild<'_>, _checkpoint: &Path) -> Result<Vec<PackTensor>> {
        Err(no_network())
    }
}

/// A model to build: the method's options, the data's shapes and device, and the seed its
/// parameters are drawn from.
pub(crate) struct SeededBuild<'a> {
    options: MethodOptions<'a>,
    setup: &'a BuildSetup<'a>,
    seed: u64,
}

/// The refusal of a method without network weights (linear CCA: its projections are in
/// `lcca.json`).
fn no_network() -> ProtocolError {
    ProtocolError::Config(
        "linear CCA (lcca) has no network weights: its projections are in lcca.json".into(),
    )
}

struct Trained<F>(F);

impl<F: MethodFactory> Entry for Trained<F> {
    fn options(&self) -> Vec<MethodOption> {
        self.0.options()
    }
    fn check(&self, options: &MethodOptions<'_>) -> Result<()> {
        Ok(self.0.check(options)?)
    }
    fn warnings(&self, options: &MethodOptions<'_>, training: &FitConfig) -> Vec<String> {
        self.0.warnings(options, training)
    }
    fn needs_labels(&self) -> bool {
        self.0.needs_labels()
    }
    fn execute(
        &self,
        options: &MethodOptions<'_>,
        session: &mut Session<'_>,
    ) -> Result<Evaluation> {
        session.pretrain_and_evaluate(self.0.needs_labels(), |setup, rng| {
            Ok(self.0.build(options, setup, rng)?)
        })
    }
    fn explain(
        &self,
        o: &MethodOptions,
        s: &mut Session,
        (config, out): (&ExplainConfig, &Path),
    ) -> Explained {
        s.explain(|setup, rng| Ok(self.0.build(o, setup, rng)?), config, out)
    }
    fn load_weights(&self, build: &SeededBuild<'_>, load: WeightsLoad<'_>) -> Result<Applied> {
        crate::weights::apply_and_save(self.model(build)?, load)
    }
    fn weights(&self, build: &SeededBuild<'_>, checkpoint: &Path) -> Result<Vec<PackTensor>> {
        use burn::module::Module;
        use burn_store::ModuleSnapshot;
        let model = self
            .model(build)?
            .try_load_file(checkpoint)
            .map_err(|e| ProtocolError::read(checkpoint, format!("{e:?}")))?;
        Ok(model.collect(None, None, true))
    }
}

impl<F: MethodFactory> Trained<F> {
    /// The method's model, its parameters drawn from a generator seeded with `build.seed`.
    fn model(&self, build: &SeededBuild<'_>) -> Result<F::Model> {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(build.seed);
        Ok(self.0.build(&build.options, build.setup, &mut rng)?)
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

    fn options(&self) -> MethodOptions<'_> {
        MethodOptions::new(self.spec.name(), self.spec.options())
    }

    /// Whether pretraining needs labelled items.
    pub fn needs_labels(&self) -> bool {
        self.entry.needs_labels()
    }

    pub(crate) fn warnings(&self, training: &FitConfig) -> Vec<String> {
        self.entry.warnings(&self.options(), training)
    }

    pub(crate) fn execute(&self, session: &mut Session<'_>) -> Result<Evaluation> {
        self.entry.execute(&self.options(), session)
    }

    /// The model built from `seed` for the data of `setup`, `load` applied to it (see
    /// [`Entry::load_weights`]).
    pub(crate) fn load_weights(
        &self,
        on: (&BuildSetup<'_>, u64),
        load: WeightsLoad,
    ) -> Result<Applied> {
        self.entry.load_weights(&self.seeded(on), load)
    }

    /// Every tensor of the model built from `seed` with the weights of `checkpoint`.
    pub(crate) fn weights(
        &self,
        on: (&BuildSetup<'_>, u64),
        checkpoint: &Path,
    ) -> Result<Vec<PackTensor>> {
        self.entry.weights(&self.seeded(on), checkpoint)
    }

    fn seeded<'a>(&'a self, (setup, seed): (&'a BuildSetup<'a>, u64)) -> SeededBuild<'a> {
        SeededBuild {
            options: self.options(),
            setup,
            seed,
        }
    }

    pub(crate) fn explain(
        &self,
        session: &mut Session<'_>,
        config: &ExplainConfig,
        out: &Path,
    ) -> Result<ExplainReport> {
        self.entry.explain(&self.options(), session, (config, out))
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
        r.add("supervised", SupervisedFactory);
        r.add("ae", HybridFactory::AE);
        r.add("dccae", HybridFactory::DCCAE);
        r.add("cr-cca", HybridFactory::CR_CCA);
        r.add("rr-ae", HybridFactory::RR_AE);
        r.add("mmvae", MmvaeFactory);
        r.entries.push(("lcca".into(), Arc::new(LinearCcaEntry)));
        r
    }

    fn add<F: MethodFactory>(&mut self, name: &str, factory: F) {
        self.entries.push((name.into(), Arc::new(Trained(factory))));
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

    /// Whether the method `spec` names takes the option `option`.
    pub fn takes(&self, spec: &MethodSpec, option: &str) -> bool {
        self.options_of(spec)
            .is_ok_and(|o| o.iter().any(|x| x.name == option))
    }

    /// The registered methods that take the option `option`.
    pub fn taking(&self, option: &str) -> Vec<&str> {
        let names = self.names().into_iter();
        names
            .filter(|n| self.takes(&MethodSpec::new(*n), option))
            .collect()
    }

    fn lookup(&self, spec: &MethodSpec) -> Result<(String, Arc<dyn Entry>)> {
        let key = normalise(spec.name());
        if let Some((name, entry)) = self.find(&key) {
            return Ok((name.clone(), entry.clone()));
        }
        match spec.name().parse::<ObjectiveSpec>() {
            Ok(objective) => Ok((
                objective.to_string(),
                Arc::new(Trained(ContrastiveFactory(objective))),
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
        for (option, value) in spec.options() {
            if !allowed.iter().any(|o| o.name == option) {
                let names: Vec<&str> = allowed.iter().map(|o| o.name).collect();
                return Err(ProtocolError::BadOption {
                    method: spec.name().to_string(),
                    option: option.clone(),
                    value: value.clone(),
                    reason: format!(
                        "no such option; its options are {}",
                        if names.is_empty() {
                            "none".into()
                        } else {
                            names.join(", ")
                        }
                    ),
                });
            }
        }
        let spec = spec.clone().renamed(name).sorted();
        entry.check(&MethodOptions::new(spec.name(), spec.options()))?;
        Ok(ResolvedMethod { spec, entry })
    }

    /// A listing of the methods and their options, for help texts.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let objective = ContrastiveFactory("CR".parse().expect("an edge"));
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

/// Linear CCA: fitted in closed form on the flattened training pairs, not trained.
struct LinearCcaEntry;

impl Entry for LinearCcaEntry {
    fn options(&self) -> Vec<MethodOption> {
        LCCA_OPTIONS.to_vec()
    }
    fn check(&self, o: &MethodOptions<'_>) -> Result<()> {
        LinearCcaConfig::from_options(o)?;
        Ok(())
    }
    fn warnings(&self, _: &MethodOptions<'_>, _: &FitConfig) -> Vec<String> {
        Vec::new()
    }
    fn execute(&self, o: &MethodOptions<'_>, session: &mut Session<'_>) -> Result<Evaluation> {
        session.linear_cca(&LinearCcaConfig::from_options(o)?)
    }
    fn explain(&self, _: &MethodOptions, _: &mut Session, _: (&ExplainConfig, &Path)) -> Explained {
        Err(ProtocolError::NotExplainable {
            run: "an lcca run".into(),
            reason: "linear CCA has no encoder to attribute: its projections, in lcca.json, \
                     are the weights of each input value"
                .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mmssl_train::{BuildSetup, ContrastiveConfig, ContrastiveModel};
    use rand::rngs::StdRng;

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
        let c = mmssl_train::objective_options(
            mmssl_objectives::ObjectiveConfig::new("XX".parse().unwrap()),
            &MethodOptions::new(spec.name(), spec.options()),
        )
        .unwrap();
        assert_eq!(c.estimator, mmssl_objectives::Estimator::JensenShannon);
        assert_eq!(c.critic, mmssl_objectives::CriticKind::cosine(0.2));
        assert_eq!((c.clip, c.penalty, c.embedding_dim), (None, 0.0, 32));
        let spec: MethodSpec = "dccae;cca_dim=12;cca_norm=frobenius;cca_top_k=3;cca_reg=0.01;cca_weight=2;reconstruction=0.5;latent_dim=16"
            .parse()
            .unwrap();
        let h = HybridFactory::DCCAE
            .config(&MethodOptions::new(spec.name(), spec.options()))
            .unwrap();
        let (cca, w) = h.cca.unwrap();
        assert_eq!(
            (h.cca_dim, h.latent_dim, h.reconstruction),
            (12, 16, Some(0.5))
        );
        assert_eq!(
            (cca.norm, cca.top_k, cca.reg, w),
            (
                mmssl_baselines::CorrelationNorm::Frobenius,
                Some(3),
                0.01,
                2.0
            )
        );
        let spec: MethodSpec =
            "mmvae;k=3;estimator=iwae;learn_prior=true;likelihood_scale=0.5;likelihood_scaling=1,2"
                .parse()
                .unwrap();
        let m = MmvaeFactory
            .config(&MethodOptions::new(spec.name(), spec.options()))
            .unwrap();
        assert_eq!(
            (m.k, m.estimator, m.learn_prior),
            (3, mmssl_baselines::MmvaeEstimator::Iwae, true)
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
            ) -> mmssl_train::Result<ContrastiveModel> {
                let objective = mmssl_objectives::ObjectiveConfig::new("CR".parse().unwrap());
                ContrastiveConfig::new(objective)
                    .with_latent_dim(8)
                    .init(s.shapes, s.device, rng)
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
