//! Attribution of a scalar target to the input, item by item: plain gradients, SmoothGrad and
//! integrated gradients. The target is any differentiable function of a batch that gives one
//! value per item (a latent unit, a projection on a canonical direction, a classifier's
//! logit difference).
//!
//! - **Gradient** (Simonyan et al., "Deep inside convolutional networks: visualising image
//!   classification models and saliency maps", ICLR workshop 2014): `d f(x) / d x`.
//! - **SmoothGrad** (Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017): the
//!   mean gradient at `x + e`, `e ~ N(0, sigma^2)` with `sigma = noise * (max(x) - min(x))` per
//!   item, over `samples` draws.
//! - **Integrated gradients** (Sundararajan et al., "Axiomatic attribution for deep networks",
//!   ICML 2017): `(x - x') * integral_0^1 d f(x' + a (x - x')) / d x da` from the baseline
//!   `x' = 0`, by the midpoint rule over `steps` points (exact for quadratic targets). Their sum
//!   over the input approximates `f(x) - f(x')` (completeness).

use crate::error::{Result, TrainError};
use burn::tensor::{Tensor, TensorData};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

/// How to attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum Attribution {
    /// The gradient of the target.
    Gradient,
    /// The mean gradient over noisy copies of the input.
    SmoothGrad {
        /// Noisy copies (e.g. 25).
        samples: usize,
        /// Noise standard deviation as a fraction of each item's value range (e.g. 0.15).
        noise: f64,
        /// Seed of the noise.
        seed: u64,
    },
    /// Integrated gradients from the all-zero baseline.
    IntegratedGradients {
        /// Points of the path (e.g. 32).
        steps: usize,
    },
}

impl Attribution {
    /// Refuses zero samples or steps and a negative or non-finite noise.
    pub fn check(&self) -> Result<()> {
        let bad = |name, value: String, reason| {
            Err(TrainError::InvalidSetting {
                name,
                value,
                reason,
            })
        };
        match *self {
            Attribution::Gradient => Ok(()),
            Attribution::SmoothGrad { samples: 0, .. } => bad(
                "samples",
                "0".into(),
                "SmoothGrad needs at least one sample",
            ),
            Attribution::SmoothGrad { noise, .. } if !(noise.is_finite() && noise >= 0.0) => bad(
                "noise",
                noise.to_string(),
                "a non-negative fraction of the value range",
            ),
            Attribution::IntegratedGradients { steps: 0 } => bad(
                "steps",
                "0".into(),
                "integrated gradients need at least one step",
            ),
            _ => Ok(()),
        }
    }
}

/// The gradient of `target(x).sum()` with respect to `x` (the items do not interact when the
/// target of each item depends on that item only, as in evaluation mode).
fn gradient<const D: usize>(
    target: &dyn Fn(Tensor<D>) -> Result<Tensor<1>>,
    x: Tensor<D>,
) -> Result<Tensor<D>> {
    let x = x.detach().require_grad();
    let y = target(x.clone())?.sum();
    let grads = y.backward();
    x.grad(&grads).ok_or(TrainError::Readback {
        what: "the input gradient",
        reason: "the target does not depend on the input".into(),
    })
}

/// Attributions of `target` (one value per item of the batch `x`, `[B]`, or the error that
/// stops it) to every value of
/// `x` (`[B, ...]`, on an autodiff device), with the shape of `x`. Models inside `target`
/// should be frozen on the autodiff device (`Module::freeze`): their BatchNorm layers then use
/// their running statistics, as evaluation does, so that items do not interact (a test checks
/// this on the DCGAN encoder), and their parameters take no gradient.
pub fn attribute<const D: usize>(
    target: &dyn Fn(Tensor<D>) -> Result<Tensor<1>>,
    x: Tensor<D>,
    method: &Attribution,
) -> Result<Tensor<D>> {
    method.check()?;
    match *method {
        Attribution::Gradient => gradient(target, x),
        Attribution::SmoothGrad {
            samples,
            noise,
            seed,
        } => {
            let dims = x.dims();
            let items = dims[0];
            let per = x.shape().num_elements() / items.max(1);
            let values = TrainError::read_back(x.clone(), "the input")?;
            let sigma: Vec<f64> = values
                .chunks(per.max(1))
                .map(|c| {
                    let (lo, hi) = c
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                            (l.min(v), h.max(v))
                        });
                    noise * (hi - lo).max(0.0) as f64
                })
                .collect();
            let mut rng = StdRng::seed_from_u64(seed);
            let mut sum: Option<Tensor<D>> = None;
            for _ in 0..samples {
                let noisy: Vec<f32> = values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| v + (normal(&mut rng) * sigma[i / per.max(1)]) as f32)
                    .collect();
                let xn = Tensor::<D>::from_data(TensorData::new(noisy, dims), &x.device());
                let g = gradient(target, xn)?;
                sum = Some(match sum {
                    Some(s) => s + g,
                    None => g,
                });
            }
            Ok(sum.expect("samples >= 1") / samples as f64)
        }
        Attribution::IntegratedGradients { steps } => {
            let mut sum: Option<Tensor<D>> = None;
            for k in 0..steps {
                let alpha = (k as f64 + 0.5) / steps as f64;
                let g = gradient(target, x.clone().detach() * alpha)?;
                sum = Some(match sum {
                    Some(s) => s + g,
                    None => g,
                });
            }
            Ok(sum.expect("steps >= 1") / steps as f64 * x.detach())
        }
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.random();
    (-2.0f64 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn device() -> Device {
        Device::flex().autodiff()
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    fn batch() -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(vec![0.5f32, -1.0, 2.0, 1.5, 0.25, -0.75], [2, 3]),
            &device(),
        )
    }

    #[test]
    fn a_linear_target_is_attributed_its_weights() {
        // f(x) = x . w per item: the gradient and SmoothGrad are w, integrated gradients x * w.
        let w = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, -1.0, 0.5], [1, 3]), &device());
        let f = move |x: Tensor<2>| Ok((x * w.clone()).sum_dim(1).squeeze_dim::<1>(1));
        let expect_w = [2.0, -1.0, 0.5, 2.0, -1.0, 0.5];
        let g = values(attribute(&f, batch(), &Attribution::Gradient).unwrap());
        assert_eq!(g, expect_w);
        let sg = Attribution::SmoothGrad {
            samples: 4,
            noise: 0.2,
            seed: 1,
        };
        let s = values(attribute(&f, batch(), &sg).unwrap());
        for (a, b) in s.iter().zip(expect_w) {
            assert!((a - b).abs() < 1e-5, "{s:?}");
        }
        let ig =
            values(attribute(&f, batch(), &Attribution::IntegratedGradients { steps: 3 }).unwrap());
        let x = values(batch());
        for i in 0..6 {
            assert!((ig[i] - x[i] * expect_w[i]).abs() < 1e-5, "{ig:?}");
        }
    }

    /// Asserts that the integrated gradients (`steps`) of `f`, the sum of `term` over an
    /// item's values, sum per item of [`batch`] to `f(x) - f(0)` (`term(0)` is 0) to within
    /// `tolerance`.
    fn assert_complete(
        f: &dyn Fn(Tensor<2>) -> Result<Tensor<1>>,
        term: fn(f32) -> f32,
        steps: usize,
        tolerance: f32,
    ) {
        let method = Attribution::IntegratedGradients { steps };
        let ig = values(attribute(f, batch(), &method).unwrap());
        let x = values(batch());
        for item in 0..2 {
            let sum: f32 = ig[item * 3..item * 3 + 3].iter().sum();
            let f: f32 = x[item * 3..item * 3 + 3].iter().map(|&v| term(v)).sum();
            assert!((sum - f).abs() < tolerance, "{sum} vs {f}");
        }
    }

    #[test]
    fn integrated_gradients_are_complete() {
        // f(x) = sum x^2: the midpoint rule is exact, so the attributions sum to f(x) - f(0)
        // per item; f(x) = sum tanh(x) approximately, with 64 steps.
        let square = |x: Tensor<2>| Ok((x.clone() * x).sum_dim(1).squeeze_dim::<1>(1));
        assert_complete(&square, |v| v * v, 2, 1e-5);
        let tanh = |x: Tensor<2>| {
            Ok(burn::tensor::activation::tanh(x)
                .sum_dim(1)
                .squeeze_dim::<1>(1))
        };
        assert_complete(&tanh, f32::tanh, 64, 1e-3);
        let x = values(batch());
        // The plain gradient of tanh is 1 - tanh^2.
        let g = values(attribute(&tanh, batch(), &Attribution::Gradient).unwrap());
        for i in 0..6 {
            assert!((g[i] - (1.0 - x[i].tanh().powi(2))).abs() < 1e-5);
        }
    }

    #[test]
    fn a_frozen_dcgan_encoder_is_attributed_item_by_item() {
        use burn::module::Module;
        use rand::SeedableRng;
        // The 2D DCGAN encoder frozen on the autodiff device: BatchNorm on its running
        // statistics, so an item's attribution does not depend on the rest of the batch.
        let device = device();
        let encoder = mmssl_encoders::DcganEncoder2dConfig::new()
            .init(&device, &mut StdRng::seed_from_u64(3))
            .unwrap()
            .freeze();
        let unit = move |x: Tensor<4>| Ok(encoder.forward(x).z.narrow(1, 5, 1).squeeze_dim::<1>(1));
        let image = |seed: u64| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..32 * 32)
                .map(|_| rng.random::<f32>())
                .collect::<Vec<f32>>()
        };
        let pair = |second: u64| {
            let mut v = image(1);
            v.extend(image(second));
            Tensor::<4>::from_data(TensorData::new(v, [2, 1, 32, 32]), &device)
        };
        let a = values(attribute(&unit, pair(2), &Attribution::Gradient).unwrap());
        let b = values(attribute(&unit, pair(9), &Attribution::Gradient).unwrap());
        assert!(a[..1024] == b[..1024], "item 0 must not depend on item 1");
        assert!(a[1024..] != b[1024..]);
        assert!(a.iter().any(|&g| g != 0.0));
        // Completeness of integrated gradients on the real encoder (piecewise linear but for
        // its output): the sum is f(x) - f(0) to within 2% with 64 steps.
        let x = pair(2);
        let ig = values(
            attribute(
                &unit,
                x.clone(),
                &Attribution::IntegratedGradients { steps: 64 },
            )
            .unwrap(),
        );
        let fx = values(unit(x.clone().detach()).unwrap());
        let f0 = values(unit(x.zeros_like()).unwrap());
        for item in 0..2 {
            let sum: f32 = ig[item * 1024..(item + 1) * 1024].iter().sum();
            let delta = fx[item] - f0[item];
            assert!(
                (sum - delta).abs() <= 0.02 * delta.abs().max(1e-3),
                "item {item}: {sum} vs {delta}"
            );
        }
    }

    #[test]
    fn smoothgrad_is_seeded_and_settings_are_checked() {
        let cube = |x: Tensor<2>| Ok((x.clone() * x.clone() * x).sum_dim(1).squeeze_dim::<1>(1));
        let sg = |seed| Attribution::SmoothGrad {
            samples: 3,
            noise: 0.3,
            seed,
        };
        let a = values(attribute(&cube, batch(), &sg(7)).unwrap());
        let b = values(attribute(&cube, batch(), &sg(7)).unwrap());
        let c = values(attribute(&cube, batch(), &sg(8)).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        for bad in [
            Attribution::SmoothGrad {
                samples: 0,
                noise: 0.1,
                seed: 0,
            },
            Attribution::SmoothGrad {
                samples: 2,
                noise: -1.0,
                seed: 0,
            },
            Attribution::IntegratedGradients { steps: 0 },
        ] {
            assert!(attribute(&cube, batch(), &bad).is_err(), "{bad:?}");
        }
    }
}
