//! A run's phases after the data is loaded: pretraining with its checkpoints, the random-init
//! reference, linear evaluation and similarity.

use super::*;
use crate::config::RunConfig;
use crate::datasets::Datasets;
use crate::error::{ProtocolError, Result};
use burn::tensor::Device;
use mmssl_baselines::LinearCcaConfig;
use mmssl_data::Subset;
use mmssl_train::BuildSetup;
use mmssl_train::{
    Checkpoints, LinearEvalConfig, Method, TrainConfig, extract_features, fit, linear_eval,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::time::Instant;

/// What a method's execution needs: the data, the device, the settings, the observer.
pub(crate) struct Session<'a> {
    pub(super) config: &'a RunConfig,
    pub(super) data: &'a Datasets,
    pub(super) device: &'a Device,
    pub(super) shapes: &'a [Vec<usize>],
    pub(super) train_config: &'a TrainConfig,
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
    ) -> Result<Evaluated> {
        let (data, device, out) = (self.data, self.device, &self.config.output.dir);
        let setup = BuildSetup {
            shapes: self.shapes,
            classes: self.classes,
            device,
        };
        let seed = self.config.seed;
        let make = || build(&setup, &mut StdRng::seed_from_u64(seed));
        let resume = self.config.output.resume;
        let checkpoints = Checkpoints::new(out.join("checkpoints"))?.resume(resume);
        let mut pretrain_seconds = 0.0;
        if self.phases.pretrain {
            self.observer.phase(Phase::Pretraining);
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
            let mut log = MetricsLog {
                file,
                inner: &mut *self.observer,
            };
            // A new run may start from another run's (or an imported) model.
            let initial = match (&self.config.training.init_from, resume) {
                (Some(from), false) => {
                    let file = crate::interop::init_checkpoint(from)?;
                    make()?
                        .try_load_file(&file)
                        .map_err(|e| ProtocolError::read(&file, init_mismatch(&e)))?
                }
                _ => make()?,
            };
            let outcome = fit(
                initial,
                train,
                Some(valid),
                self.train_config,
                Some(&checkpoints),
                device,
                &mut log,
            )?;
            drop(log);
            // One line per epoch, from the checkpointed history: a run killed between an
            // epoch's checkpoint and its log line, and resumed, still logs every epoch once.
            let mut lines = String::new();
            for m in &outcome.history {
                lines += &serde_json::to_string(m).unwrap_or_default();
                lines.push('\n');
            }
            write_atomic(&metrics_path, &lines)?;
            pretrain_seconds = t0.elapsed().as_secs_f64();
        }
        if !self.phases.evaluate && !self.phases.analyze {
            return Ok((Vec::new(), Vec::new(), pretrain_seconds, 0.0));
        }
        // Evaluate the model of the best validation loss.
        let best = load_best(make()?, &checkpoints, out)?;
        let t1 = Instant::now();
        let mut linear = Vec::new();
        let mut test_z = Vec::new();
        // With BatchNorm in training mode the features depend on the batch: use the
        // pretraining batch size, as the authors' code does.
        let (bn_train, batch) = match self.eval_config.batchnorm_train_mode {
            true => (true, self.train_config.batch_size),
            false => (false, 256),
        };
        if !self.phases.evaluate {
            for m in 0..best.modalities() {
                test_z.push(extract_features(
                    &best, &data.test, m, batch, bn_train, device,
                )?);
            }
            return Ok((linear, test_z, pretrain_seconds, 0.0));
        }
        let random = make()?;
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
                results.push(linear_eval(
                    &tr,
                    &va,
                    &te,
                    self.classes,
                    self.eval_config,
                    device,
                )?);
                if !random_init {
                    test_z.push(te);
                }
            }
            let random_init = results.pop();
            let pretrained = results.pop().expect("two results");
            linear.push(ModalityEval {
                modality: m,
                pretrained,
                random_init,
            });
        }
        Ok((linear, test_z, pretrain_seconds, t1.elapsed().as_secs_f64()))
    }

    /// Loads the best checkpoint of the model `build` makes (and, for `config.reference`, the
    /// model at its random initialisation), frozen, and explains them (see
    /// [`crate::explain`]).
    pub(crate) fn explain<M: Method>(
        &mut self,
        build: impl Fn(&BuildSetup<'_>, &mut StdRng) -> Result<M>,
        config: &crate::explain::ExplainConfig,
        out: &std::path::Path,
    ) -> Result<crate::explain::ExplainReport> {
        let setup = BuildSetup {
            shapes: self.shapes,
            classes: self.classes,
            device: self.device,
        };
        let seed = self.config.seed;
        let make = || build(&setup, &mut StdRng::seed_from_u64(seed));
        let dir = &self.config.output.dir;
        let checkpoints = Checkpoints::new(dir.join("checkpoints"))?;
        let best = load_best(make()?, &checkpoints, dir)?.freeze();
        let random = match config.reference {
            true => Some(make()?.freeze()),
            false => None,
        };
        let mut models: Vec<(&str, &dyn crate::explain::Encoders)> = vec![("pretrained", &best)];
        if let Some(r) = &random {
            models.push(("random-init", r));
        }
        crate::explain::Explainer {
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
    pub(crate) fn linear_cca(&mut self, config: &LinearCcaConfig) -> Result<Evaluated> {
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
            return Ok((Vec::new(), test_z, fit_seconds, 0.0));
        }
        let t1 = Instant::now();
        let mut linear = Vec::new();
        let mut test_z = Vec::new();
        for m in 0..2 {
            self.observer.phase(Phase::Evaluating {
                modality: m,
                random_init: false,
            });
            let f = |d: &Subset| fitted.features(d, m);
            let (tr, va, te) = (f(data.eval_train())?, f(data.eval_valid())?, f(&data.test)?);
            let pretrained =
                linear_eval(&tr, &va, &te, self.classes, self.eval_config, self.device)?;
            test_z.push(te);
            linear.push(ModalityEval {
                modality: m,
                pretrained,
                random_init: None,
            });
        }
        Ok((linear, test_z, fit_seconds, t1.elapsed().as_secs_f64()))
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

/// `model` with the weights of the best checkpoint of the run in `dir`.
fn load_best<M: Method>(model: M, checkpoints: &Checkpoints, dir: &std::path::Path) -> Result<M> {
    let best = checkpoints.best();
    if !best.exists() {
        return Err(ProtocolError::NotPretrained {
            missing: best,
            dir: dir.to_path_buf(),
        });
    }
    model
        .try_load_file(&best)
        .map_err(|e| ProtocolError::read(&best, format!("{e:?}")))
}
