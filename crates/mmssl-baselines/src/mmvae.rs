//! The mixture-of-experts multimodal VAE (MMVAE) of Shi, Siddharth, Paige and Torr
//! (NeurIPS 2019), on the DCGAN encoders and decoders of this project (2D and 3D).
//!
//! # Model
//! - Each modality `m` has an encoder to a Laplace posterior `q(z | x_m)`: the encoder's output
//!   of size `2D` is split into the location `μ` and logits `ℓ`; the scale is
//!   `softmax(ℓ) * D + 1e-6`, as in the original.
//! - Prior `p(z) = Laplace(0, softmax(w) * D)` with `w = 0` (unit scale); `w` is learnt when
//!   [`MmvaeConfig::learn_prior`] is set.
//! - Each modality has a decoder; `p(x_d | z)` is a Laplace with the decoder's output as
//!   location and a fixed scale (0.75), its log-density multiplied by the modality's likelihood
//!   scaling (by default `max_size / size_d`, e.g. 3 for MNIST against 3x32x32 SVHN).
//! - Joint posterior: the mixture `q(z | x) = (1/M) Σ_m q(z | x_m)`.
//!
//! # Objective
//! Stratified over the mixture: `K` samples `z_mk ~ q(z | x_m)` per modality, each decoded by
//! every decoder (cross-modal reconstruction), with log-weights
//! `lw_mk = log p(z_mk) + Σ_d λ_d log p(x_d | z_mk) - log q(z_mk | x)`.
//! - [`MmvaeEstimator::Elbo`]: `(1/M) Σ_m (1/K) Σ_k lw_mk`.
//! - [`MmvaeEstimator::Iwae`] (the "looser" IWAE: the average over modalities outside the log):
//!   `(1/M) Σ_m log (1/K) Σ_k exp(lw_mk)`.
//! - [`MmvaeEstimator::Dreg`]: the same bound with the doubly reparameterised gradient of Tucker
//!   et al. (2019): posterior parameters are held constant inside `log q`, the encoders receive
//!   the gradient through the samples weighted by `w̃²` and the decoders (and prior) by `w̃`,
//!   with `w̃ = softmax_k(lw_mk)`. burn has no gradient hooks, so the `w̃` on the sample path is
//!   applied by `z' = detach(z) + w̃ (z - detach(z))` (same value, gradient scaled by `w̃`); this
//!   needs the weights first, so the decoders run twice per step.
//!
//! The loss is minus the bound averaged over the batch. The representation for evaluation is
//! the posterior location `μ`.

use crate::Baseline;
use crate::decoder::{AnyDecoder, flatten_view};
use crate::error::{BaselineError, Result};
use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use mmssl_data::{Batch, ViewBatch};
use mmssl_train::Result as TrainResult;
use mmssl_train::{AnyEncoder, Backbone, BuildSetup, Method, MethodOptions, StepOutput};
use rand::rngs::StdRng;
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

/// Added to the posterior scale so it never reaches 0 (the original's `eta`).
pub const SCALE_EPS: f64 = 1e-6;

/// Which bound, and which gradient estimator, trains the MMVAE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MmvaeEstimator {
    /// The mixture ELBO, averaged over the `K` samples.
    Elbo,
    /// The looser importance-weighted bound.
    Iwae,
    /// The looser importance-weighted bound with doubly reparameterised gradients (the
    /// original's best setting). The default.
    #[default]
    Dreg,
}

impl std::str::FromStr for MmvaeEstimator {
    type Err = BaselineError;

    /// `elbo`, `iwae` or `dreg`, case-insensitive.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "elbo" => Ok(MmvaeEstimator::Elbo),
            "iwae" => Ok(MmvaeEstimator::Iwae),
            "dreg" => Ok(MmvaeEstimator::Dreg),
            _ => Err(BaselineError::UnknownName {
                what: "MMVAE estimator",
                value: s.to_string(),
                valid: "dreg, iwae, elbo".into(),
            }),
        }
    }
}

/// Settings of [`Mmvae`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MmvaeConfig {
    /// Size `D` of the latent (and of the representation).
    pub latent_dim: usize,
    /// Importance samples `K` per modality and item (the original used 30 for MNIST-SVHN;
    /// the cost of a step grows linearly in `K`).
    pub k: usize,
    /// The estimator.
    pub estimator: MmvaeEstimator,
    /// The fixed scale of the Laplace likelihoods.
    pub likelihood_scale: f64,
    /// Per-modality factors of the log-likelihoods; `None`: `max_size / size_m`.
    pub likelihood_scaling: Option<Vec<f64>>,
    /// Whether the prior's scale is learnt.
    pub learn_prior: bool,
}

impl Default for MmvaeConfig {
    fn default() -> Self {
        MmvaeConfig {
            latent_dim: 64,
            k: 10,
            estimator: MmvaeEstimator::Dreg,
            likelihood_scale: 0.75,
            likelihood_scaling: None,
            learn_prior: false,
        }
    }
}

impl MmvaeConfig {
    /// Builds the model for modalities whose items have `shapes`.
    pub fn init<R>(&self, shapes: &[Vec<usize>], device: &Device, rng: &mut R) -> Result<Mmvae>
    where
        R: Rng + ?Sized,
    {
        BaselineError::check_some_modalities(shapes, "MMVAE")?;
        if self.latent_dim == 0 || self.k == 0 {
            let (name, value) = if self.latent_dim == 0 {
                ("MMVAE latent_dim", self.latent_dim)
            } else {
                ("MMVAE k", self.k)
            };
            return Err(BaselineError::InvalidSetting {
                name,
                value: value.to_string(),
                reason: "must be at least 1".into(),
            });
        }
        if !(self.likelihood_scale.is_finite() && self.likelihood_scale > 0.0) {
            return Err(BaselineError::InvalidSetting {
                name: "MMVAE likelihood_scale",
                value: self.likelihood_scale.to_string(),
                reason: "must be positive".into(),
            });
        }
        let sizes: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
        let scaling = match &self.likelihood_scaling {
            Some(s) if s.len() != shapes.len() => {
                return Err(BaselineError::InvalidSetting {
                    name: "MMVAE likelihood_scaling",
                    value: format!("{s:?}"),
                    reason: format!("one factor per modality: the data has {}", shapes.len()),
                });
            }
            Some(s) if s.iter().any(|x| !(x.is_finite() && *x > 0.0)) => {
                return Err(BaselineError::InvalidSetting {
                    name: "MMVAE likelihood_scaling",
                    value: format!("{s:?}"),
                    reason: "factors must be positive".into(),
                });
            }
            Some(s) => s.clone(),
            None => {
                let max = *sizes.iter().max().unwrap_or(&1) as f64;
                sizes.iter().map(|&n| max / n as f64).collect()
            }
        };
        let mut encoders = Vec::new();
        let mut decoders = Vec::new();
        for shape in shapes {
            encoders.push(AnyEncoder::for_shape(
                shape,
                2 * self.latent_dim,
                device,
                rng,
            )?);
            decoders.push(AnyDecoder::for_shape(shape, self.latent_dim, device, rng)?);
        }
        let prior_logits = Param::from_tensor(Tensor::zeros([self.latent_dim], device));
        let mut settings = self.clone();
        settings.likelihood_scaling = Some(scaling);
        Ok(Mmvae {
            backbone: Backbone::new(encoders)?,
            decoders,
            prior_logits,
            settings,
        })
    }
}

/// The MMVAE model. See the module documentation.
#[derive(Module, Debug)]
pub struct Mmvae {
    backbone: Backbone,
    decoders: Vec<AnyDecoder>,
    prior_logits: Param<Tensor<1>>,
    #[module(skip)]
    settings: MmvaeConfig,
}

/// A Laplace posterior over a batch: location and scale, `[B, D]` each.
#[derive(Debug, Clone)]
pub struct Laplace {
    /// Location.
    pub loc: Tensor<2>,
    /// Scale (positive).
    pub scale: Tensor<2>,
}

/// The value of a bound on one batch, with the loss that trains it.
#[derive(Debug, Clone)]
pub struct MmvaeEstimate {
    /// The bound averaged over the batch, `[1]`.
    pub bound: Tensor<1>,
    /// Minus the bound, `[1]`, carrying the estimator's gradient (for DReG the gradient of
    /// its surrogate objective).
    pub loss: Tensor<1>,
}

/// `log Laplace(x; loc, scale)` elementwise.
fn laplace_log_density<const D: usize>(
    x: Tensor<D>,
    loc: Tensor<D>,
    scale: Tensor<D>,
) -> Tensor<D> {
    let ln2 = std::f64::consts::LN_2;
    (x - loc).abs().div(scale.clone()).neg() - scale.log().add_scalar(ln2)
}

/// `log Σ exp` along `dim`, stable.
fn log_sum_exp<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let max = x.clone().max_dim(dim).detach();
    (x - max.clone()).exp().sum_dim(dim).log() + max
}

impl Mmvae {
    /// The settings (with the likelihood scaling resolved).
    pub fn config(&self) -> &MmvaeConfig {
        &self.settings
    }

    /// The likelihood scaling of each modality.
    pub fn likelihood_scaling(&self) -> &[f64] {
        self.settings.likelihood_scaling.as_deref().unwrap_or(&[])
    }

    /// The posterior `q(z | x_m)` of each modality of `batch`.
    pub fn posteriors(&self, batch: &Batch) -> mmssl_train::Result<Vec<Laplace>> {
        let d = self.settings.latent_dim;
        let mut out = Vec::new();
        for encoded in self.backbone.encode_all(batch)? {
            let h = encoded.z;
            let b = h.dims()[0];
            let loc = h.clone().narrow(1, 0, d);
            let logits = h.narrow(1, d, d);
            let scale = softmax(logits, 1)
                .mul_scalar(d as f64)
                .add_scalar(SCALE_EPS);
            debug_assert_eq!(loc.dims(), [b, d]);
            out.push(Laplace { loc, scale });
        }
        Ok(out)
    }

    /// The prior's scale `[D]`.
    pub fn prior_scale(&self) -> Tensor<1> {
        let logits = if self.settings.learn_prior {
            self.prior_logits.val()
        } else {
            self.prior_logits.val().detach()
        };
        softmax(logits, 0).mul_scalar(self.settings.latent_dim as f64)
    }

    /// Standard Laplace noise `[K, B, D]` drawn on the host (same seed, same draw on every
    /// backend).
    fn noise(&self, k: usize, b: usize, rng: &mut StdRng, device: &Device) -> Tensor<3> {
        let d = self.settings.latent_dim;
        let values: Vec<f32> = (0..k * b * d)
            .map(|_| {
                let v: f64 = rng.random();
                let e = -(1.0 - v).ln();
                if rng.random::<bool>() {
                    e as f32
                } else {
                    -e as f32
                }
            })
            .collect();
        Tensor::from_data(TensorData::new(values, [k, b, d]), device)
    }

    /// `Σ_d λ_d log p(x_d | z)` for latents `z` `[K, B, D]`: `[K, B]`.
    fn log_likelihood(&self, z: Tensor<3>, batch: &Batch) -> mmssl_train::Result<Tensor<2>> {
        let [k, b, d] = z.dims();
        let flat = z.reshape([k * b, d]);
        let scale = self.settings.likelihood_scale;
        let mut total: Option<Tensor<2>> = None;
        for (m, dec) in self.decoders.iter().enumerate() {
            let mean = flatten_view(&dec.forward(flat.clone()));
            let x = flatten_view(self.backbone.view(batch, m)?);
            let p = x.dims()[1];
            let mean = mean.reshape([k, b, p]);
            let x = x.reshape([1, b, p]);
            let per_pixel = (mean - x)
                .abs()
                .div_scalar(scale)
                .neg()
                .sub_scalar((2.0 * scale).ln());
            let ll = per_pixel
                .sum_dim(2)
                .reshape([k, b])
                .mul_scalar(self.likelihood_scaling()[m]);
            total = Some(match total {
                Some(t) => t + ll,
                None => ll,
            });
        }
        Ok(total.expect("at least one modality"))
    }

    /// `log p(z) - log q(z | x)` (mixture) for `z` `[K, B, D]`: `[K, B]`.
    fn log_prior_over_mixture(&self, z: Tensor<3>, posteriors: &[Laplace]) -> Tensor<2> {
        let [k, b, d] = z.dims();
        let prior_scale = self.prior_scale().reshape([1, 1, d]);
        let lpz = laplace_log_density(z.clone(), prior_scale.zeros_like(), prior_scale)
            .sum_dim(2)
            .reshape([k, b]);
        let lq: Vec<Tensor<2>> = posteriors
            .iter()
            .map(|q| {
                laplace_log_density(
                    z.clone(),
                    q.loc.clone().reshape([1, b, d]),
                    q.scale.clone().reshape([1, b, d]),
                )
                .sum_dim(2)
                .reshape([k, b])
            })
            .collect();
        let m = lq.len();
        let lq = Tensor::stack::<3>(lq, 0);
        let lq_mix = log_sum_exp(lq, 0)
            .reshape([k, b])
            .sub_scalar((m as f64).ln());
        lpz - lq_mix
    }

    /// Log-weights `lw_m` `[K, B]` of samples `z_m` `[K, B, D]`.
    fn log_weights(
        &self,
        samples: &[Tensor<3>],
        posteriors: &[Laplace],
        batch: &Batch,
    ) -> mmssl_train::Result<Vec<Tensor<2>>> {
        samples
            .iter()
            .map(|z| {
                Ok(self.log_prior_over_mixture(z.clone(), posteriors)
                    + self.log_likelihood(z.clone(), batch)?)
            })
            .collect()
    }

    /// The bound of `estimator` with `k` samples on `batch`, and the loss that trains it.
    pub fn estimate(
        &self,
        batch: &Batch,
        estimator: MmvaeEstimator,
        k: usize,
        rng: &mut StdRng,
    ) -> mmssl_train::Result<MmvaeEstimate> {
        if k == 0 {
            return Err(mmssl_train::TrainError::InvalidSetting {
                name: "k",
                value: "0".into(),
                reason: "MMVAE needs at least 1 sample",
            });
        }
        let posteriors = self.posteriors(batch)?;
        let [b, _] = posteriors[0].loc.dims();
        let device = posteriors[0].loc.device();
        let noise: Vec<Tensor<3>> = posteriors
            .iter()
            .map(|_| self.noise(k, b, rng, &device))
            .collect();
        let samples: Vec<Tensor<3>> = posteriors
            .iter()
            .zip(&noise)
            .map(|(q, e)| {
                q.loc.clone().unsqueeze_dim(0) + q.scale.clone().unsqueeze_dim(0) * e.clone()
            })
            .collect();
        let m = posteriors.len() as f64;
        let iwae = |lws: &[Tensor<2>]| -> Tensor<1> {
            let per: Vec<Tensor<1>> = lws
                .iter()
                .map(|lw| {
                    log_sum_exp(lw.clone(), 0)
                        .sub_scalar((k as f64).ln())
                        .mean()
                        .reshape([1])
                })
                .collect();
            Tensor::cat(per, 0).sum().div_scalar(m)
        };
        match estimator {
            MmvaeEstimator::Elbo => {
                let lws = self.log_weights(&samples, &posteriors, batch)?;
                let per: Vec<Tensor<1>> = lws
                    .iter()
                    .map(|lw| lw.clone().mean().reshape([1]))
                    .collect();
                let bound = Tensor::cat(per, 0).sum().div_scalar(m);
                Ok(MmvaeEstimate {
                    loss: bound.clone().neg(),
                    bound,
                })
            }
            MmvaeEstimator::Iwae => {
                let lws = self.log_weights(&samples, &posteriors, batch)?;
                let bound = iwae(&lws);
                Ok(MmvaeEstimate {
                    loss: bound.clone().neg(),
                    bound,
                })
            }
            MmvaeEstimator::Dreg => {
                // Pass 1: the weights (no gradient needed).
                let detached: Vec<Tensor<3>> = samples.iter().map(|z| z.clone().detach()).collect();
                let lws = self.log_weights(&detached, &posteriors, batch)?;
                let lws: Vec<Tensor<2>> = lws.into_iter().map(|lw| lw.detach()).collect();
                let bound = iwae(&lws);
                let weights: Vec<Tensor<2>> = lws.iter().map(|lw| softmax(lw.clone(), 0)).collect();
                // Pass 2: posterior parameters constant inside log q; sample path scaled by w.
                let fixed: Vec<Laplace> = posteriors
                    .iter()
                    .map(|q| Laplace {
                        loc: q.loc.clone().detach(),
                        scale: q.scale.clone().detach(),
                    })
                    .collect();
                let mut surrogate: Option<Tensor<1>> = None;
                for (z, w) in samples.iter().zip(&weights) {
                    let zd = z.clone().detach();
                    let scaled = zd.clone() + (z.clone() - zd) * w.clone().unsqueeze_dim(2);
                    let lw = self.log_prior_over_mixture(scaled.clone(), &fixed)
                        + self.log_likelihood(scaled, batch)?;
                    let s = (w.clone() * lw).sum_dim(0).mean().reshape([1]);
                    surrogate = Some(match surrogate {
                        Some(t) => t + s,
                        None => s,
                    });
                }
                let surrogate = surrogate
                    .expect("at least one modality")
                    .div_scalar(m)
                    .neg();
                // Report minus the bound as the value, keep the surrogate's gradient.
                let loss = bound.clone().neg() + (surrogate.clone() - surrogate.detach());
                Ok(MmvaeEstimate { bound, loss })
            }
        }
    }

    /// Cross-modal reconstruction: entry `[m][d]` decodes modality `d` from the posterior
    /// location of modality `m` (the diagonal is the plain reconstruction). Values in `(0, 1)`.
    pub fn reconstruct(&self, batch: &Batch) -> mmssl_train::Result<Vec<Vec<ViewBatch>>> {
        let posteriors = self.posteriors(batch)?;
        Ok(posteriors
            .iter()
            .map(|q| {
                self.decoders
                    .iter()
                    .map(|dec| dec.forward(q.loc.clone()))
                    .collect()
            })
            .collect())
    }

    /// Generation: `n` latents from the prior, decoded into every modality. Values in `(0, 1)`.
    pub fn generate(&self, n: usize, rng: &mut StdRng, device: &Device) -> Vec<ViewBatch> {
        let d = self.settings.latent_dim;
        let z = self.noise(1, n, rng, device).reshape([n, d]) * self.prior_scale().reshape([1, d]);
        self.decoders
            .iter()
            .map(|dec| dec.forward(z.clone()))
            .collect()
    }
}

impl Method for Mmvae {
    fn loss(&self, batch: &Batch, rng: &mut StdRng) -> mmssl_train::Result<StepOutput> {
        let e = self.estimate(batch, self.settings.estimator, self.settings.k, rng)?;
        Ok(StepOutput {
            loss: e.loss,
            terms: vec![("bound".to_string(), e.bound)],
        })
    }

    fn represent(&self, batch: &Batch, modality: usize) -> mmssl_train::Result<Tensor<2>> {
        // The encoder's z holds the posterior's location, then its scale logits.
        let d = self.settings.latent_dim;
        Ok(self.backbone.represent(batch, modality)?.narrow(1, 0, d))
    }

    fn modalities(&self) -> usize {
        self.backbone.modalities()
    }
}

#[cfg(test)]
impl Mmvae {
    /// The gradient reaching the prior's logits (tests).
    pub(crate) fn prior_logits_grad(&self, grads: &burn::tensor::Gradients) -> Vec<f32> {
        self.prior_logits
            .val()
            .grad(grads)
            .map(|g| g.into_data().try_to_vec::<f32>().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Builds the `mmvae` baseline from its options.
#[derive(Debug, Clone, Copy, Default)]
pub struct MmvaeFactory;

impl MmvaeFactory {
    /// The configuration the options `o` describe (the defaults where absent).
    pub fn config(&self, o: &mmssl_train::MethodOptions<'_>) -> mmssl_train::Result<MmvaeConfig> {
        let d = MmvaeConfig::default();
        let scaling = match o.raw("likelihood_scaling") {
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
                    .collect::<mmssl_train::Result<Vec<f64>>>()?,
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

impl mmssl_train::MethodFactory for MmvaeFactory {
    type Model = crate::Baseline;

    fn options(&self) -> Vec<mmssl_train::MethodOption> {
        use mmssl_train::MethodOption as O;
        vec![
            mmssl_train::LATENT_DIM,
            O::new(
                "k",
                "importance samples per modality (default 10; a step's cost grows linearly)",
            ),
            O::new(
                "estimator",
                "dreg (default), iwae (both loose: the mean over modalities outside the log) \
                 or elbo",
            ),
            O::new(
                "learn_prior",
                "true: learn the prior's scale (default false)",
            ),
            O::new(
                "likelihood_scale",
                "the fixed scale of the Laplace likelihoods (default 0.75)",
            ),
            O::new(
                "likelihood_scaling",
                "per-modality factors of the log-likelihoods, comma-separated (default: the \
                 largest modality size over each modality's)",
            ),
        ]
    }

    fn check(&self, o: &MethodOptions) -> TrainResult<()> {
        self.config(o).map(|_| ())
    }

    fn build(&self, o: &MethodOptions, s: &BuildSetup, rng: &mut StdRng) -> TrainResult<Baseline> {
        Ok(Baseline::Mmvae(
            self.config(o)?.init(s.shapes, s.device, rng)?,
        ))
    }
}
