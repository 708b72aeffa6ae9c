//! What a method's execution needs and does once the data is loaded: pretraining with its
//! checkpoints, the random-init reference, linear evaluation, explanations, linear CCA. The
//! registry's entries run methods through a [`Session`]; the run ([`crate::run`]) makes one.

use crate::attribution::{Encoders, ExplainConfig, ExplainReport, Explainer};
use crate::config::RunConfig;
use crate::datasets::{Datasets, load_datasets};
use crate::error::{ProtocolError, Result};
use crate::evalcache::EvalCache;
use crate::folder::write_atomic;
use crate::neighbourhood::{ModelFeatures, knn_evals, retrieval_evals};
use crate::observe::{Observer, Phase, Phases};
use crate::online::{MetricsLog, OnlineEvaluation};
use crate::report::{ModalityEval, RetrievalEval};
use burn::tensor::Device;
use mmssl_baselines::LinearCcaConfig;
use mmssl_data::{PairedDataset, Subset};
use mmssl_train::{
    BuildSetup, Checkpoints, Features, FitConfig, FitData, FitRun, LinearEvalConfig, Method,
    OneCycleConfig, extract_features, fit, linear_eval,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::Instant;

/// What a method's execution gives the run: the linear evaluation of each modality, the
/// test-set features of each (for the similarity), and the seconds spent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Evaluation {
    /// Per-modality linear evaluations (empty when not evaluated).
    pub(crate) linear: Vec<ModalityEval>,
    /// Test-set representations of each modality (empty when neither evaluated nor analysed).
    pub(crate) test_features: Vec<Features>,
    /// The same of the model at its random initialisation (empty without one: linear CCA).
    pub(crate) random_test_features: Vec<Features>,
    /// Seconds spent pretraining (0 when not pretrained here).
    pub(crate) pretrain_seconds: f64,
    /// Seconds spent evaluating.
    pub(crate) eval_seconds: f64,
    /// Cross-modal retrieval (empty when not evaluated).
    pub(crate) retrieval: Vec<RetrievalEval>,
    /// Why an evaluation was not made, in words.
    pub(crate) notes: Vec<String>,
}

/// The linear-evaluation epochs, the pretraining settings and the linear-evaluation settings
/// of `config`.
pub(crate) fn settings(config: &RunConfig) -> (usize, FitConfig, LinearEvalConfig) {
    let eval_epochs = config.evaluation.epochs_for(config.data.dataset);
    let t = &config.training;
    let schedule = match t.schedule {
        crate::ScheduleKind::OneCycle => Some(OneCycleConfig {
            max_lr: t.max_lr,
            ..Default::default()
        }),
        crate::ScheduleKind::Constant => None,
    };
    let mut eval_config = LinearEvalConfig {
        batchnorm_train_mode: config.evaluation.bn_train_mode,
        ..Default::default()
    };
    eval_config.training.epochs = eval_epochs;
    eval_config.training.seed = config.seed;
    eval_config.training.lr = t.lr;
    eval_config.training.schedule = schedule;
    let train_config = FitConfig {
        epochs: t.epochs,
        batch_size: t.batch_size,
        seed: config.seed,
        lr: t.lr,
        schedule,
        loader: mmssl_train::LoaderConfig {
            workers: t.workers,
            ..Default::default()
        },
        ..Default::default()
    };
    (eval_epochs, train_config, eval_config)
}

/// A run's data, loaded, on the autodiff form of its device, with what its models are built
/// from.
pub(crate) struct Loaded {
    pub(crate) device: Device,
    pub(crate) data: crate::datasets::Datasets,
    pub(crate) shapes: Vec<Vec<usize>>,
    pub(crate) classes: usize,
}

impl Loaded {
    /// Loads the sets of `config`; with `labels`, refuses labelled sets that the linear
    /// evaluation cannot use.
    pub(crate) fn new(
        config: &RunConfig,
        device: &Device,
        labels: bool,
        observer: &mut dyn Observer,
    ) -> Result<Self> {
        let device = if device.is_autodiff() {
            device.clone()
        } else {
            device.clone().autodiff()
        };
        observer.phase(Phase::Loading);
        let data = load_datasets(config)?;
        if labels {
            check_labels("training", data.eval_train())?;
            check_labels("validation", data.eval_valid())?;
            check_labels("test", &data.test)?;
            crate::neighbourhood::check_knn(&config.evaluation, data.eval_train().len())?;
        }
        let shapes = (0..data.train.modalities())
            .map(|m| data.train.shape(m))
            .collect();
        let classes = data.eval_train().classes();
        Ok(Loaded {
            device,
            data,
            shapes,
            classes,
        })
    }

    /// A session on this data.
    pub(crate) fn session<'a>(
        &'a self,
        config: &'a RunConfig,
        train_config: &'a FitConfig,
        eval_config: &'a LinearEvalConfig,
        phases: Phases,
        observer: &'a mut dyn Observer,
    ) -> Session<'a> {
        Session {
            config,
            data: &self.data,
            device: &self.device,
            shapes: &self.shapes,
            train_config,
            eval_config,
            classes: self.classes,
            phases,
            observer,
        }
    }
}

/// What a method's execution needs: the data, the device, the settings, the observer.
pub(crate) struct Session<'a> {
    pub(super) config: &'a RunConfig,
    pub(super) data: &'a Datasets,
    pub(super) device: &'a Device,
    pub(super) shapes: &'a [Vec<usize>],
    pub(super) train_config: &'a FitConfig,
    pub(super) eval_config: &'a LinearEvalConfig,
    pub(super) classes: usize,
    pub(super) phases: Phases,
    pub(super) observer: &'a mut dyn Observer,
}

impl Session<'_> {
    /// Pretrains the model `build` makes, then evaluates the best checkpoint and a fresh
    /// (randomly initialised, from the same seed) model per modality.
    pub(crate) fn pretrain_and_evaluate<M: Method>(
        &mut self,
        labelled: bool,
        build: impl Fn(&BuildSetup<'_>, &mut StdRng) -> Result<M>,
    ) -> Result<Evaluation> {
        let (data, device, out) = (self.data, self.device, &self.config.output.dir);
        let setup = BuildSetup {
            shapes: self.shapes,
            classes: self.classes,
            device,
        };
        let seed = self.config.seed;
        let make = || build(&setup, &mut StdRng::seed_from_u64(seed));
        let checkpoints = Checkpoints::new(out.join("checkpoints"))?
            .with_record(self.config.checkpoint_record()?);
        // A resume continues from the last committed checkpoint; without one it starts over,
        // and says so (a warning, which `--quiet` does not hide).
        let resume = self.config.output.resume && checkpoints.state().exists();
        let checkpoints = checkpoints.resume(resume);
        let mut pretrain_seconds = 0.0;
        if self.phases.pretrain {
            self.observer.phase(Phase::Pretraining);
            if self.config.output.resume && !resume {
                self.observer.warning(&format!(
                    "nothing to resume from: {} holds no committed checkpoint (state.json); \
                     pretraining starts again from the first epoch",
                    out.join("checkpoints").display()
                ));
            }
            let metrics_path = out.join("metrics.jsonl");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(resume)
                .write(true)
                .truncate(!resume)
                .open(&metrics_path)
                .map_err(|e| ProtocolError::write(&metrics_path, e))?;
            let t0 = Instant::now();
            let (train, valid) = if labelled {
                (data.eval_train(), data.eval_valid())
            } else {
                (&data.train, &data.valid)
            };
            let online = OnlineEvaluation::new(
                &self.config.evaluation,
                self.config.seed,
                data,
                self.eval_config,
                self.classes,
                device,
            )?
            .map(|o| o.until(self.train_config.epochs));
            let mut log = MetricsLog {
                file,
                inner: &mut *self.observer,
                online,
            };
            // A new run may start from another run's (or an imported) model.
            let initial = match (&self.config.training.init_from, resume) {
                (Some(from), false) => {
                    let file = crate::weights::init_checkpoint(from)?;
                    make()?
                        .try_load_file(&file)
                        .map_err(|e| ProtocolError::read(&file, init_mismatch(&e)))?
                }
                _ => make()?,
            };
            let outcome = fit(
                initial,
                FitData {
                    train,
                    valid: Some(valid),
                },
                self.train_config,
                FitRun {
                    device,
                    checkpoints: Some(&checkpoints),
                    progress: &mut log,
                },
            )?;
            drop(log);
            crate::online::write_history(&outcome.before_training, &outcome.history, out)?;
            pretrain_seconds = t0.elapsed().as_secs_f64();
        }
        if !self.phases.evaluate && !self.phases.analyze {
            return Ok(Evaluation {
                pretrain_seconds,
                ..Default::default()
            });
        }
        // Evaluate the model of the best validation loss.
        let (best, best_checksum) = load_best(make()?, &checkpoints, out)?;
        let t1 = Instant::now();
        let mut linear = Vec::new();
        let mut test_z = Vec::new();
        // With BatchNorm in training mode the features depend on the batch: use the
        // pretraining batch size, as the authors' code does.
        let (bn_train, batch) = match self.eval_config.batchnorm_train_mode {
            true => (true, self.train_config.batch_size),
            false => (false, 256),
        };
        let random = make()?;
        if !self.phases.evaluate {
            let mut random_z = Vec::new();
            for m in 0..best.modalities() {
                let f = |model: &M| extract_features(model, &data.test, m, batch, bn_train, device);
                test_z.push(f(&best)?);
                random_z.push(f(&random)?);
            }
            return Ok(Evaluation {
                linear,
                test_features: test_z,
                random_test_features: random_z,
                pretrain_seconds,
                ..Default::default()
            });
        }
        // The probes an interrupted attempt finished on this checkpoint with these settings.
        let settings = serde_json::to_string(self.eval_config).unwrap_or_default();
        let key = format!("{settings}|{best_checksum}");
        let mut kept = EvalCache::open(out, key);
        // Each model's training and test features of each modality, for k-NN and retrieval.
        let mut features = [ModelFeatures::default(), ModelFeatures::default()];
        for m in 0..best.modalities() {
            let mut results = Vec::new();
            for (model, random_init) in [(&best, false), (&random, true)] {
                if self.observer.stop_requested() {
                    return Err(ProtocolError::Interrupted {
                        during: format!(
                            "before the linear evaluation of modality {m} ({})",
                            if random_init {
                                "random initialisation"
                            } else {
                                "pretrained"
                            }
                        ),
                    });
                }
                self.observer.phase(Phase::Evaluating {
                    modality: m,
                    random_init,
                });
                let f = |d: &Subset| extract_features(model, d, m, batch, bn_train, device);
                let (tr, va, te) = (f(data.eval_train())?, f(data.eval_valid())?, f(&data.test)?);
                results.push(match kept.get(m, random_init) {
                    Some(done) => {
                        self.observer.note(&format!(
                            "linear evaluation of modality {m} ({}): kept from an interrupted \
                             attempt ({})",
                            if random_init {
                                "random-init"
                            } else {
                                "pretrained"
                            },
                            crate::evalcache::EVAL_PARTIAL
                        ));
                        done
                    }
                    None => {
                        let r = linear_eval(&tr, &va, &te, self.classes, self.eval_config, device)?;
                        kept.put(m, random_init, &r)?;
                        r
                    }
                });
                if !random_init {
                    test_z.push(te.clone());
                }
                let f = &mut features[usize::from(random_init)];
                f.train.push(tr);
                f.test.push(te);
            }
            let random_init = results.pop();
            let pretrained = results.pop().expect("two results");
            linear.push(ModalityEval {
                modality: m,
                pretrained,
                random_init,
                knn: None,
            });
        }
        let [pretrained, random] = features;
        let (retrieval, notes) = self.neighbours(&mut linear, &pretrained, Some(&random))?;
        kept.finish()?;
        Ok(Evaluation {
            linear,
            test_features: test_z,
            random_test_features: random.test,
            pretrain_seconds,
            eval_seconds: t1.elapsed().as_secs_f64(),
            retrieval,
            notes,
        })
    }

    /// k-NN evaluation of each modality (into `linear`) and cross-modal retrieval, of the
    /// `pretrained` features beside the `random` reference's; warns of pretrained numbers at
    /// chance.
    fn neighbours(
        &mut self,
        linear: &mut [ModalityEval],
        pretrained: &ModelFeatures,
        random: Option<&ModelFeatures>,
    ) -> Result<(Vec<RetrievalEval>, Vec<String>)> {
        let settings = &self.config.evaluation;
        if settings.knn_k == Some(0) && !settings.retrieval {
            return Ok((Vec::new(), Vec::new()));
        }
        self.observer.phase(Phase::Neighbours);
        if let Some(knn) = knn_evals(settings, pretrained, random, self.classes)? {
            for (m, k) in linear.iter_mut().zip(knn) {
                for w in &k.pretrained.warnings {
                    self.observer
                        .warning(&format!("modality {}: {w}", m.modality));
                }
                m.knn = Some(k);
            }
        }
        let (retrieval, notes) = retrieval_evals(settings, pretrained, random);
        for r in &retrieval {
            for w in &r.pretrained.warnings {
                self.observer.warning(&format!(
                    "retrieval {} -> {} in {}: {w}",
                    r.query,
                    r.gallery,
                    r.space.describe()
                ));
            }
        }
        Ok((retrieval, notes))
    }

    /// Loads the best checkpoint of the model `build` makes (and, for `config.reference`, the
    /// model at its random initialisation), frozen, and explains them (see
    /// [`crate::explain`]).
    pub(crate) fn explain<M: Method>(
        &mut self,
        build: impl Fn(&BuildSetup<'_>, &mut StdRng) -> Result<M>,
        config: &ExplainConfig,
        out: &std::path::Path,
    ) -> Result<ExplainReport> {
        let setup = BuildSetup {
            shapes: self.shapes,
            classes: self.classes,
            device: self.device,
        };
        let seed = self.config.seed;
        let make = || build(&setup, &mut StdRng::seed_from_u64(seed));
        let dir = &self.config.output.dir;
        let checkpoints = Checkpoints::new(dir.join("checkpoints"))?;
        let best = load_best(make()?, &checkpoints, dir)?.0.freeze();
        let random = match config.reference {
            true => Some(make()?.freeze()),
            false => None,
        };
        let mut models: Vec<(&str, &dyn Encoders)> = vec![("pretrained", &best)];
        if let Some(r) = &random {
            models.push(("random-init", r));
        }
        Explainer {
            run: self.config,
            data: self.data,
            device: self.device,
            eval_config: self.eval_config,
            classes: self.classes,
            config,
            out,
            observer: &mut *self.observer,
        }
        .explain(&models)
    }

    /// Fits linear CCA on the flattened training pairs (writing `lcca.json`) and evaluates its
    /// canonical variates.
    pub(crate) fn linear_cca(&mut self, config: &LinearCcaConfig) -> Result<Evaluation> {
        let data = self.data;
        let path = self.config.output.dir.join("lcca.json");
        let mut fit_seconds = 0.0;
        let fitted = if self.phases.pretrain {
            self.observer.phase(Phase::Pretraining);
            let t0 = Instant::now();
            let fitted = config.fit_dataset(&data.train)?;
            fit_seconds = t0.elapsed().as_secs_f64();
            write_atomic(
                &path,
                &serde_json::to_string(&serde_json::json!({
                    "config": config,
                    "canonical_correlations": fitted.correlations().to_vec(),
                    "model": fitted,
                }))
                .unwrap_or_default(),
            )?;
            fitted
        } else {
            if !path.exists() {
                return Err(ProtocolError::NotPretrained {
                    missing: path,
                    dir: self.config.output.dir.clone(),
                });
            }
            let text = std::fs::read_to_string(&path).map_err(|e| ProtocolError::read(&path, e))?;
            let mut v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ProtocolError::read(&path, e))?;
            serde_json::from_value(v["model"].take()).map_err(|e| ProtocolError::read(&path, e))?
        };
        if !self.phases.evaluate {
            let mut test_z = Vec::new();
            if self.phases.analyze {
                for m in 0..2 {
                    test_z.push(fitted.features(&data.test, m)?);
                }
            }
            return Ok(Evaluation {
                test_features: test_z,
                pretrain_seconds: fit_seconds,
                ..Default::default()
            });
        }
        let t1 = Instant::now();
        let mut linear = Vec::new();
        let mut test_z = Vec::new();
        let mut features = ModelFeatures::default();
        for m in 0..2 {
            self.observer.phase(Phase::Evaluating {
                modality: m,
                random_init: false,
            });
            let f = |d: &Subset| fitted.features(d, m);
            let (tr, va, te) = (f(data.eval_train())?, f(data.eval_valid())?, f(&data.test)?);
            let pretrained =
                linear_eval(&tr, &va, &te, self.classes, self.eval_config, self.device)?;
            test_z.push(te.clone());
            features.train.push(tr);
            features.test.push(te);
            linear.push(ModalityEval {
                modality: m,
                pretrained,
                random_init: None,
                knn: None,
            });
        }
        let (retrieval, notes) = self.neighbours(&mut linear, &features, None)?;
        Ok(Evaluation {
            linear,
            test_features: test_z,
            random_test_features: Vec::new(),
            pretrain_seconds: fit_seconds,
            eval_seconds: t1.elapsed().as_secs_f64(),
            retrieval,
            notes,
        })
    }
}

/// Why a checkpoint did not load into the model of this run: most often another method,
/// width or variant.
fn init_mismatch(e: &dyn std::fmt::Debug) -> String {
    format!(
        "it does not fit this run's model (give --init-from a run of the same method and \
         options, or the same --method as the run it comes from): {e:?}"
    )
}

/// `model` with the weights of the best checkpoint of the run in `dir`, checked against its
/// checksum, and that checksum (which identifies the model evaluated).
fn load_best<M: Method>(
    model: M,
    checkpoints: &Checkpoints,
    dir: &std::path::Path,
) -> Result<(M, String)> {
    let best = checkpoints.best();
    if !best.exists() {
        return Err(ProtocolError::NotPretrained {
            missing: best,
            dir: dir.to_path_buf(),
        });
    }
    let checksum = checkpoints.verify()?;
    let model = model
        .try_load_file(&best)
        .map_err(|e| ProtocolError::read(&best, format!("{e:?}")))?;
    Ok((model, checksum))
}

/// Loads the data of `config` on the autodiff form of `device` and calls `f` with what its
/// models are built from, without taking the folder's lock (for the commands that make a
/// folder, import, or only read one, export); `labels` as in a run's evaluation.
pub(crate) fn with_setup<R>(
    config: &RunConfig,
    device: &Device,
    observer: &mut dyn Observer,
    labels: bool,
    f: impl FnOnce(&mmssl_train::BuildSetup<'_>, &crate::datasets::Datasets) -> Result<R>,
) -> Result<R> {
    let loaded = Loaded::new(config, device, labels, observer)?;
    let setup = mmssl_train::BuildSetup {
        shapes: &loaded.shapes,
        classes: loaded.classes,
        device: &loaded.device,
    };
    f(&setup, &loaded.data)
}

/// The labelled `set` of the linear evaluation must have labelled items of at least two
/// classes.
fn check_labels(set: &'static str, data: &Subset) -> Result<()> {
    let mut classes = std::collections::BTreeSet::new();
    let mut unlabelled = 0;
    for i in 0..data.len() {
        match data.label(i) {
            Some(l) => {
                classes.insert(l);
            }
            None => unlabelled += 1,
        }
    }
    let reason = match classes.len() {
        0 => format!(
            "it has no labelled item ({} items, {unlabelled} without a label)",
            data.len()
        ),
        1 => format!(
            "all its {} labelled items are of class {}: accuracy would be 0 or 1 whatever the \
             representation",
            data.len() - unlabelled,
            classes.first().copied().unwrap_or_default()
        ),
        _ => return Ok(()),
    };
    Err(ProtocolError::Labels { set, reason })
}
