//! The attributions of each model: its targets, the items in batches, each item's map.

use super::maps::{self, Space};
use super::output;
use super::*;
use crate::config::RunConfig;
use crate::datasets::Datasets;
use crate::observe::{Observer, Phase};
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use mmssl_baselines::LinearCcaConfig;
use mmssl_data::{Batch, PairedDataset, Subset, ViewBatch, Volume, item_rng, load_batch};
use mmssl_train::{
    Features, LinearEvalConfig, LinearProbe, Method, attribute, extract_features, linear_eval_probe,
};
use rand::RngExt;
use std::collections::HashSet;
use std::time::Instant;

/// A model seen through its representations (object-safe, for any [`Method`]).
pub(crate) trait Encoders {
    /// [`Method::represent`].
    fn represent(&self, batch: &Batch, modality: usize) -> mmssl_train::Result<Tensor<2>>;
    /// [`Method::modalities`].
    fn modalities(&self) -> usize;
    /// The representations of modality `m` of every item of `data`, as the run's linear
    /// evaluation extracts them in evaluation mode ([`extract_features`], batches of 256).
    fn features(
        &self,
        data: &dyn PairedDataset,
        m: usize,
        device: &Device,
    ) -> mmssl_train::Result<Features>;
}

impl<M: Method> Encoders for M {
    fn represent(&self, batch: &Batch, modality: usize) -> mmssl_train::Result<Tensor<2>> {
        Method::represent(self, batch, modality)
    }
    fn modalities(&self) -> usize {
        Method::modalities(self)
    }
    fn features(
        &self,
        data: &dyn PairedDataset,
        m: usize,
        device: &Device,
    ) -> mmssl_train::Result<Features> {
        extract_features(self, data, m, 256, false, device)
    }
}

/// Everything an explanation needs from the session.
pub(crate) struct Explainer<'a> {
    pub(crate) run: &'a RunConfig,
    pub(crate) data: &'a Datasets,
    pub(crate) device: &'a Device,
    pub(crate) eval_config: &'a LinearEvalConfig,
    pub(crate) classes: usize,
    pub(crate) config: &'a ExplainConfig,
    pub(crate) out: &'a Path,
    pub(crate) observer: &'a mut dyn Observer,
}

/// A target computed from one modality's representation `z` (`[B, dim]`), one value per item.
// A handful per run: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Head {
    /// `(z - mean) . direction` (`mean` `[1, dim]`, `direction` `[dim, 1]`).
    Linear {
        mean: Tensor<2>,
        direction: Tensor<2>,
    },
    /// `z[:, unit]`.
    Unit(usize),
    /// The classifier's evidence (see the module documentation).
    Decision(LinearProbe),
}

impl Head {
    pub(super) fn apply(
        &self,
        z: Tensor<2>,
        labels: &[Option<usize>],
        classes: usize,
    ) -> mmssl_train::Result<Tensor<1>> {
        Ok(match self {
            Head::Linear { mean, direction } => (z - mean.clone())
                .matmul(direction.clone())
                .squeeze_dim::<1>(1),
            Head::Unit(u) => z.narrow(1, *u, 1).squeeze_dim::<1>(1),
            Head::Decision(probe) => {
                let logits = probe.logits(z);
                if classes == 2 {
                    (logits.clone().narrow(1, 1, 1) - logits.narrow(1, 0, 1)).squeeze_dim::<1>(1)
                } else {
                    let n = labels.len();
                    let mut onehot = vec![0f32; n * classes];
                    for (i, l) in labels.iter().enumerate() {
                        let l = l.ok_or(mmssl_train::TrainError::MissingLabel {
                            item: i,
                            needed_by: "the decision target (the item's own class)",
                        })?;
                        onehot[i * classes + l.min(classes - 1)] = 1.0;
                    }
                    let onehot = Tensor::<2>::from_data(
                        TensorData::new(onehot, [n, classes]),
                        &logits.device(),
                    );
                    let own = (logits.clone() * onehot).sum_dim(1);
                    (own - logits.mean_dim(1)).squeeze_dim::<1>(1)
                }
            }
        })
    }
}

/// The items of `sets`, each once: `(set, index)` in order; items with the same
/// [`PairedDataset::item_name`] (a session repeated for class balance, or in two sets) count
/// once.
pub(super) fn distinct(sets: &[&Subset]) -> Vec<(usize, usize)> {
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    for (s, set) in sets.iter().enumerate() {
        for i in 0..set.len() {
            if set.item_name(i).is_none_or(|n| seen.insert(n)) {
                items.push((s, i));
            }
        }
    }
    items
}

/// Reads a tensor back as `f32` values.
fn values<const D: usize>(t: Tensor<D>, what: &'static str) -> Result<Vec<f32>> {
    Ok(mmssl_train::TrainError::read_back(t, what)?)
}

impl Explainer<'_> {
    /// Explains each of `models` (name, model) and writes `explain.json`.
    pub(crate) fn explain(mut self, models: &[(&str, &dyn Encoders)]) -> Result<ExplainReport> {
        let t0 = Instant::now();
        let data = self.data;
        let kind = self.run.data.dataset;
        let sets: Vec<&Subset> = match self.config.set {
            ExplainSet::Test => vec![&data.test],
            ExplainSet::Valid => vec![data.eval_valid()],
            ExplainSet::Train => vec![data.eval_train()],
            ExplainSet::All => vec![data.eval_train(), data.eval_valid(), &data.test],
        };
        let mut items = distinct(&sets);
        if let Some(n) = self.config.limit {
            items.truncate(n);
        }
        if items.is_empty() {
            return Err(ProtocolError::InvalidSetting {
                field: "explain.set".into(),
                value: format!("{:?}", self.config.set).to_lowercase(),
                reason: "it has no item".into(),
            });
        }
        let modalities = models.first().map_or(0, |m| m.1.modalities());
        let mut warnings = Vec::new();
        if self.eval_config.batchnorm_train_mode {
            warnings.push(
                "the run's linear evaluation extracted features with BatchNorm in training mode; \
                 the explanation uses the encoders' running statistics (evaluation mode)"
                    .to_string(),
            );
        }
        let names = class_names(kind, self.classes);
        let labels: Vec<usize> = items
            .iter()
            .map(|&(s, i)| sets[s].label(i).unwrap_or(0))
            .collect();
        let classes: Vec<(String, usize)> = names
            .iter()
            .enumerate()
            .map(|(c, n)| (n.clone(), labels.iter().filter(|&&l| l == c).count()))
            .collect();
        let grids = items
            .iter()
            .map(|&(s, i)| sets[s].item_grid(i))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let shapes: Vec<Vec<usize>> = (0..modalities).map(|m| data.test.shape(m)).collect();
        let space = Space::new(&grids, &shapes)?;
        if let (false, Some(t)) = (space.is_volumes(), &self.config.template) {
            return Err(ProtocolError::setting(
                "template",
                t.display(),
                "a template is drawn under the maps of volumes; the maps of an image run are \
                 drawn over its images",
            ));
        }
        let outputs = output::output_grids(&space, &sets, &items, modalities, &mut warnings)?;
        let atlas = output::load_atlas(&space, &self.config.atlas, &mut warnings)?;
        let prep = maps::Prepared::new(
            &space,
            &sets,
            &items,
            &labels,
            self.config,
            self.out,
            outputs.first().and_then(Option::as_ref),
        )?;
        let mut report = ExplainReport {
            run: self.run.output.dir.clone(),
            out: self.out.to_path_buf(),
            method: self.run.method.to_string(),
            dataset: kind,
            config: self.config.clone(),
            items: items.len(),
            classes,
            mask: prep.mask_file.clone(),
            template: prep.template_file.clone(),
            atlas: atlas.as_ref().map(|(_, p)| p.clone()),
            models: Vec::new(),
            warnings,
            seconds: 0.0,
        };
        for &(name, model) in models {
            self.observer.phase(Phase::Explaining {
                random_init: name != "pretrained",
            });
            let (heads, correlations, accuracy) = self.heads(model, modalities)?;
            let targets = self.config.target.names();
            // maps[t][m]: each item's map on the common grid.
            let mut store: Vec<Vec<Vec<Volume>>> =
                vec![vec![Vec::new(); modalities]; targets.len()];
            let mut examples: Vec<Vec<Vec<Volume>>> =
                vec![vec![Vec::new(); modalities]; targets.len()];
            // Per item: its name, and per target and modality the target's value, its value at
            // the all-zero input and the sum of the attributions.
            let mut table: Vec<(String, Vec<f64>)> = Vec::new();
            let mut done = 0;
            for (s, chunk) in batches(&items, self.config.batch_size) {
                if self.observer.stop_requested() {
                    return Err(ProtocolError::Interrupted {
                        during: format!("while explaining the {name} model ({done} items done)"),
                    });
                }
                let set = sets[s];
                let batch = load_batch(set, &chunk, 0, self.device)?;
                for (k, &i) in chunk.iter().enumerate() {
                    let name = set
                        .item_name(i)
                        .unwrap_or_else(|| format!("item-{}", done + k));
                    table.push((name, Vec::new()));
                }
                for m in 0..modalities {
                    let per: usize = shapes[m].iter().product();
                    for (t, head) in heads[m].iter().enumerate() {
                        let method = self.attribution_for(done);
                        let flat = self.attribute(model, &batch, m, head, &method)?;
                        let at_x = self.target_values(model, &batch, m, head, false)?;
                        let at_zero = self.target_values(model, &batch, m, head, true)?;
                        for (k, &i) in chunk.iter().enumerate() {
                            let item_no = done + k;
                            let sum: f64 =
                                flat[k * per..(k + 1) * per].iter().map(|&v| v as f64).sum();
                            table[item_no]
                                .1
                                .extend([at_x[k] as f64, at_zero[k] as f64, sum]);
                            let mut map = space.item_map(
                                &flat[k * per..(k + 1) * per],
                                &shapes[m],
                                grids[item_no].as_ref(),
                                &format!("item {i}"),
                            )?;
                            if self.config.magnitude {
                                let abs: Vec<f32> = map.data().iter().map(|v| v.abs()).collect();
                                map = map.with_data(abs, map.dims())?;
                            }
                            let folder = self.folder(name, &targets[t], kind, m);
                            if self.config.per_item && space.is_volumes() {
                                let stem = set
                                    .item_name(i)
                                    .unwrap_or_else(|| format!("item-{item_no}"));
                                maps::write_volume(
                                    &output::on_output(&map, outputs[m].as_ref())?,
                                    &folder.join("items").join(format!("{stem}.nii.gz")),
                                )?;
                            }
                            let mut common = space.to_common(&map)?;
                            if space.is_volumes() {
                                common =
                                    mmssl_data::smooth_fwhm(&common, self.config.smoothing_mm)?;
                            }
                            if examples[t][m].len() < maps::EXAMPLES {
                                examples[t][m].push(common.clone());
                            }
                            store[t][m].push(common);
                        }
                    }
                }
                done += chunk.len();
                self.observer.note(&format!(
                    "{name}: {done} of {} items explained",
                    items.len()
                ));
            }
            let mut csv = "item,label".to_string();
            for target in &targets {
                for m in 0..modalities {
                    let mname = modality_names(kind)[m.min(1)];
                    for col in ["value", "value_at_zero", "attribution_sum"] {
                        csv += &format!(",{target}/{mname}/{col}");
                    }
                }
            }
            csv.push('\n');
            for (k, (item, row)) in table.iter().enumerate() {
                csv += &format!("{item},{}", names[labels[k]]);
                for v in row {
                    csv += &format!(",{v}");
                }
                csv.push('\n');
            }
            let model_dir = self.out.join(name);
            std::fs::create_dir_all(&model_dir).map_err(|e| ProtocolError::write(&model_dir, e))?;
            crate::folder::write_atomic(&model_dir.join("items.csv"), &csv)?;
            let mut maps_out = Vec::new();
            for (t, target) in targets.iter().enumerate() {
                for m in 0..modalities {
                    let folder = self.folder(name, target, kind, m);
                    maps_out.push(maps::write_group(maps::Group {
                        space: &space,
                        prep: &prep,
                        maps: &store[t][m],
                        examples: &examples[t][m],
                        labels: &labels,
                        names: &names,
                        modality: m,
                        config: self.config,
                        folder: &folder,
                        target,
                        modality_name: modality_names(kind)[m.min(1)],
                        output: outputs[m].as_ref(),
                        atlas: atlas.as_ref().map(|(a, _)| a),
                    })?);
                    store[t][m] = Vec::new();
                }
            }
            report.models.push(ModelMaps {
                model: name.to_string(),
                canonical_correlations: correlations,
                classifier_accuracy: accuracy,
                maps: maps_out,
                items_file: model_dir.join("items.csv"),
            });
        }
        report.seconds = t0.elapsed().as_secs_f64();
        crate::folder::write_atomic(
            &self.out.join("explain.json"),
            &serde_json::to_string_pretty(&report.relative_to_run()).unwrap_or_default(),
        )?;
        Ok(report)
    }

    /// `OUT/<model>/<target>/<modality>`.
    fn folder(&self, model: &str, target: &str, kind: DatasetKind, m: usize) -> PathBuf {
        let names = modality_names(kind);
        let modality = names
            .get(m)
            .map_or(format!("modality-{m}"), |n| n.to_string());
        self.out.join(model).join(target).join(modality)
    }

    /// The attribution settings for the batch starting at item `first`: SmoothGrad's noise
    /// seeded per batch, so items are not given the same noise.
    fn attribution_for(&self, first: usize) -> Attribution {
        match self.config.attribution {
            Attribution::SmoothGrad {
                samples,
                noise,
                seed,
            } => Attribution::SmoothGrad {
                samples,
                noise,
                seed: item_rng(seed, 0, first as u64).random::<u64>(),
            },
            ref other => other.clone(),
        }
    }

    /// The targets per modality, the canonical correlations (shared) and the classifier's
    /// test accuracy per modality (decision).
    #[allow(clippy::type_complexity)]
    fn heads(
        &mut self,
        model: &dyn Encoders,
        modalities: usize,
    ) -> Result<(Vec<Vec<Head>>, Option<Vec<f64>>, Option<Vec<f64>>)> {
        let data = self.data;
        let device = self.device;
        let train = data.eval_train();
        match self.config.target {
            ExplainTarget::Shared { components } => {
                if modalities != 2 {
                    return Err(ProtocolError::NotExplainable {
                        run: format!("a {} run", self.run.method),
                        reason: format!(
                            "the shared target needs two modalities, the model has {modalities}"
                        ),
                    });
                }
                let fit: Vec<usize> = distinct(&[train]).into_iter().map(|(_, i)| i).collect();
                let fit = Subset::new(std::sync::Arc::new(train.clone()), fit)?;
                let z: Vec<ndarray::Array2<f64>> = (0..2)
                    .map(|m| {
                        let f = model.features(&fit, m, device)?;
                        Ok(ndarray::Array2::from_shape_fn(
                            (f.len(), f.dim),
                            |(i, j)| f.values[i * f.dim + j] as f64,
                        ))
                    })
                    .collect::<Result<_>>()?;
                let cca = LinearCcaConfig {
                    components,
                    reg: 1e-3,
                }
                .fit(z[0].view(), z[1].view())?;
                let mut heads = Vec::new();
                for m in 0..2 {
                    let (Some(mean), Some(w)) = (cca.mean(m), cca.projection(m)) else {
                        unreachable!("linear CCA has two modalities");
                    };
                    let d = mean.len();
                    let mean = Tensor::<2>::from_data(
                        TensorData::new(mean.iter().map(|&v| v as f32).collect(), [1, d]),
                        device,
                    );
                    heads.push(
                        (0..components)
                            .map(|c| Head::Linear {
                                mean: mean.clone(),
                                direction: Tensor::<2>::from_data(
                                    TensorData::new(
                                        w.column(c).iter().map(|&v| v as f32).collect(),
                                        [d, 1],
                                    ),
                                    device,
                                ),
                            })
                            .collect(),
                    );
                }
                Ok((heads, Some(cca.correlations().to_vec()), None))
            }
            ExplainTarget::Unit { unit } => {
                let one = load_batch(train, &[0], 0, device)?;
                let mut heads = Vec::new();
                for m in 0..modalities {
                    let dim = model.represent(&one, m)?.dims()[1];
                    if unit >= dim {
                        return Err(ProtocolError::InvalidSetting {
                            field: "explain.unit".into(),
                            value: unit.to_string(),
                            reason: format!("modality {m}'s representation has {dim} units"),
                        });
                    }
                    heads.push(vec![Head::Unit(unit)]);
                }
                Ok((heads, None, None))
            }
            ExplainTarget::Decision => {
                let mut heads = Vec::new();
                let mut accuracy = Vec::new();
                for m in 0..modalities {
                    let all = |set: &Subset| model.features(set, m, device);
                    let (tr, va, te) = (all(train)?, all(data.eval_valid())?, all(&data.test)?);
                    let (result, probe) =
                        linear_eval_probe([&tr, &va, &te], self.classes, self.eval_config, device)?;
                    accuracy.push(result.accuracy);
                    heads.push(vec![Head::Decision(probe.freeze())]);
                }
                Ok((heads, None, Some(accuracy)))
            }
        }
    }

    /// The target's values on `batch` (`zero`: with modality `m`'s input set to 0, the
    /// baseline of integrated gradients).
    fn target_values(
        &self,
        model: &dyn Encoders,
        batch: &Batch,
        m: usize,
        head: &Head,
        zero: bool,
    ) -> Result<Vec<f32>> {
        let mut views = batch.views.clone();
        if zero {
            views[m] = match &views[m] {
                ViewBatch::Volumes(x) => ViewBatch::Volumes(x.zeros_like()),
                ViewBatch::Images(x) => ViewBatch::Images(x.zeros_like()),
                ViewBatch::Vectors(x) => ViewBatch::Vectors(x.zeros_like()),
            };
        }
        let b = Batch {
            views,
            labels: batch.labels.clone(),
        };
        let v = head.apply(model.represent(&b, m)?, &batch.labels, self.classes)?;
        values(v.detach(), "target values")
    }

    /// The attribution of `head` on modality `m` of `batch` to that modality's input, flat in
    /// the batch's layout.
    fn attribute(
        &self,
        model: &dyn Encoders,
        batch: &Batch,
        m: usize,
        head: &Head,
        method: &Attribution,
    ) -> Result<Vec<f32>> {
        let classes = self.classes;
        let target = |view: ViewBatch| -> mmssl_train::Result<Tensor<1>> {
            let mut views = batch.views.clone();
            views[m] = view;
            let b = Batch {
                views,
                labels: batch.labels.clone(),
            };
            head.apply(model.represent(&b, m)?, &batch.labels, classes)
        };
        match &batch.views[m] {
            ViewBatch::Volumes(x) => values(
                attribute(&|x| target(ViewBatch::Volumes(x)), x.clone(), method)?,
                "attributions",
            ),
            ViewBatch::Images(x) => values(
                attribute(&|x| target(ViewBatch::Images(x)), x.clone(), method)?,
                "attributions",
            ),
            ViewBatch::Vectors(_) => Err(ProtocolError::NotExplainable {
                run: format!("a {} run", self.run.method),
                reason: format!("modality {m} is feature vectors, not images or volumes"),
            }),
        }
    }
}

/// Consecutive chunks of at most `size` items of one set: `(set, indices)`.
pub(super) fn batches(items: &[(usize, usize)], size: usize) -> Vec<(usize, Vec<usize>)> {
    let mut out: Vec<(usize, Vec<usize>)> = Vec::new();
    for &(s, i) in items {
        match out.last_mut() {
            Some((last, chunk)) if *last == s && chunk.len() < size => chunk.push(i),
            _ => out.push((s, vec![i])),
        }
    }
    out
}
