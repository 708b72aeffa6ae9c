//! RAdam, the rectified Adam of Liu et al., "On the Variance of the Adaptive Learning Rate and
//! Beyond" (ICLR 2020), as a burn optimiser, following the algorithm as PyTorch's
//! `torch.optim.RAdam` documents it (decoupled weight decay off):
//!
//! ```text
//! m_t = b1 m_{t-1} + (1 - b1) g_t            v_t = b2 v_{t-1} + (1 - b2) g_t^2
//! mhat_t = m_t / (1 - b1^t)                  rho_inf = 2 / (1 - b2) - 1
//! rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
//! if rho_t > 5:  theta -= lr * mhat_t * r_t * sqrt(1 - b2^t) / (sqrt(v_t) + eps)
//!                r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
//! else:          theta -= lr * mhat_t
//! ```
//!
//! `b1` is read at every step from a shared cell, so a one-cycle schedule can cycle it
//! ([`RAdamHandle::set_beta_1`]) as PyTorch's `OneCycleLR` cycles Adam's first beta.
//!
//! On the CPU backend each parameter's update is one parallel pass
//! ([`mmssl_kernels::optim::moment_step`]); elsewhere burn's tensor operations. Both give the
//! same values to the bit.

use burn::optim::{AdaptiveMomentumState, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};
use mmssl_kernels::optim::{Direction, MomentStep, Unfused, moment_step};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Settings of [`RAdam`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RAdamConfig {
    /// First-moment decay (0.9; cycled by the one-cycle schedule when enabled).
    pub beta_1: f64,
    /// Second-moment decay (0.999).
    pub beta_2: f64,
    /// Denominator guard (1e-8).
    pub epsilon: f64,
    /// L2 weight decay added to the gradient (0).
    pub weight_decay: f64,
}

impl Default for RAdamConfig {
    fn default() -> Self {
        RAdamConfig {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// A shared handle on the optimiser's first beta.
#[derive(Debug, Clone)]
pub struct RAdamHandle {
    beta_1: Arc<AtomicU64>,
}

impl RAdamHandle {
    /// Sets the first beta used from the next step on.
    pub fn set_beta_1(&self, beta_1: f64) {
        self.beta_1.store(beta_1.to_bits(), Ordering::Relaxed);
    }

    /// The current first beta.
    pub fn beta_1(&self) -> f64 {
        f64::from_bits(self.beta_1.load(Ordering::Relaxed))
    }
}

/// The RAdam optimiser (see the module docs).
#[derive(Debug, Clone)]
pub struct RAdam {
    config: RAdamConfig,
    beta_1: RAdamHandle,
}

/// Per-parameter state of [`RAdam`]: burn's Adam moment state (step count, first and second
/// moments), which burn already knows how to save and load.
pub type RAdamState<const D: usize> = AdaptiveMomentumState<D>;

impl RAdamConfig {
    /// The bare optimiser and the handle on its first beta.
    pub fn build(&self) -> (RAdam, RAdamHandle) {
        let handle = RAdamHandle {
            beta_1: Arc::new(AtomicU64::new(self.beta_1.to_bits())),
        };
        (
            RAdam {
                config: *self,
                beta_1: handle.clone(),
            },
            handle,
        )
    }

    /// A whole-module optimiser (burn's [`ModuleOptimizer`]) and the handle on its first beta.
    pub fn init(&self) -> (ModuleOptimizer, RAdamHandle) {
        let (radam, handle) = self.build();
        (ModuleOptimizer::from(radam), handle)
    }
}

impl RAdam {
    /// The coefficients of step number `time` (from 1) at learning rate `lr`: the bias
    /// corrections and the rectification folded into the step's scale.
    fn coefficients(&self, lr: f64, time: usize) -> MomentStep {
        let (b1, b2) = (self.beta_1.beta_1(), self.config.beta_2);
        let t = time as i32;
        let bias_1 = 1.0 - b1.powi(t);
        let b2t = b2.powi(t);
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho_t = rho_inf - 2.0 * time as f64 * b2t / (1.0 - b2t);
        let direction = if rho_t > 5.0 {
            let r = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .sqrt();
            Direction::Adaptive {
                scale: lr * r * (1.0 - b2t).sqrt() / bias_1,
            }
        } else {
            Direction::Momentum { scale: lr / bias_1 }
        };
        MomentStep {
            beta_1: b1,
            beta_2: b2,
            weight_decay: self.config.weight_decay,
            epsilon: self.config.epsilon,
            direction,
        }
    }
}

/// One step written with burn's tensor operations, on every backend: the new parameter and
/// moments (`moments`: the previous ones, `None` at the first step).
fn generic_step<const D: usize>(
    tensor: Tensor<D>,
    mut grad: Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
    s: &MomentStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    if s.weight_decay != 0.0 {
        grad = grad + tensor.clone().mul_scalar(s.weight_decay);
    }
    let (m, v) = match moments {
        Some((m, v)) => (
            m.mul_scalar(s.beta_1) + grad.clone().mul_scalar(1.0 - s.beta_1),
            v.mul_scalar(s.beta_2) + grad.square().mul_scalar(1.0 - s.beta_2),
        ),
        None => (
            grad.clone().mul_scalar(1.0 - s.beta_1),
            grad.square().mul_scalar(1.0 - s.beta_2),
        ),
    };
    let update = match s.direction {
        Direction::Adaptive { scale } => {
            m.clone().mul_scalar(scale) / (v.clone().sqrt() + s.epsilon)
        }
        Direction::Momentum { scale } => m.clone().mul_scalar(scale),
    };
    (tensor - update, m, v)
}

impl Optimizer for RAdam {
    type State<const D: usize> = RAdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let time = state.as_ref().map_or(1, |s| s.time + 1);
        let step = self.coefficients(lr, time);
        let moments = state.map(|s| (s.moment_1, s.moment_2));
        // One parallel pass on the CPU backend (in place), the same values to the bit as
        // `generic_step`.
        let (p, m, v) = match moment_step(tensor, &grad, moments, &step) {
            Ok([p, m, v]) => (p, m, v),
            Err(back) => {
                let Unfused { param, moments } = *back;
                generic_step(param, grad, moments, &step)
            }
        };
        (p, Some(AdaptiveMomentumState::new(time, m, v)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdaptiveMomentumState::new(
            state.time,
            state.moment_1.to_device(device),
            state.moment_2.to_device(device),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onecycle::OneCycleConfig;
    use burn::module::{Module, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::TensorData;

    #[derive(Module, Debug)]
    struct Toy {
        w: Param<Tensor<1>>,
    }

    const TARGET: [f64; 6] = [1.0, -2.0, 0.5, 3.0, -0.25, 0.0];
    const COEF: [f64; 6] = [1.0, 0.1, 10.0, 2.0, 0.5, 4.0];

    fn toy(device: &Device) -> Toy {
        let w0 = vec![0.3f32, 0.2, -0.1, 0.0, 1.0, -1.0];
        Toy {
            w: Param::from_data(TensorData::new(w0, [6]), device),
        }
    }

    fn loss(m: &Toy, device: &Device) -> Tensor<1> {
        let t = Tensor::<1>::from_floats(TARGET.map(|x| x as f32), device);
        let c = Tensor::<1>::from_floats(COEF.map(|x| x as f32), device);
        ((m.w.val() - t).square() * c).sum()
    }

    /// PyTorch's documented RAdam in f64, with the one-cycle lr and beta1 per step.
    fn reference(steps: usize) -> Vec<f64> {
        let sched = OneCycleConfig::default().init(steps).unwrap();
        let (b2, eps) = (0.999f64, 1e-8);
        let mut w = [0.3f32, 0.2, -0.1, 0.0, 1.0, -1.0].map(|x| x as f64);
        let (mut m, mut v) = ([0.0f64; 6], [0.0f64; 6]);
        for step in 0..steps {
            let (lr, b1) = sched.at(step);
            let t = (step + 1) as i32;
            let rho_inf = 2.0 / (1.0 - b2) - 1.0;
            let rho_t = rho_inf - 2.0 * t as f64 * b2.powi(t) / (1.0 - b2.powi(t));
            for i in 0..6 {
                let g = 2.0 * COEF[i] * (w[i] - TARGET[i]);
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let mhat = m[i] / (1.0 - b1.powi(t));
                if rho_t > 5.0 {
                    let l = (1.0 - b2.powi(t)).sqrt() / (v[i].sqrt() + eps);
                    let r = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                        / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                        .sqrt();
                    w[i] -= lr * mhat * r * l;
                } else {
                    w[i] -= lr * mhat;
                }
            }
        }
        w.to_vec()
    }

    /// Trains `steps` steps; at `stop_at`, throws the optimiser and model away and rebuilds
    /// them from the optimiser record and the weights' values, as a resumed run does.
    fn train(steps: usize, stop_at: Option<usize>) -> Vec<f32> {
        let device = Device::flex().autodiff();
        let sched = OneCycleConfig::default().init(steps).unwrap();
        let (mut optim, mut handle) = RAdamConfig::default().init();
        let mut model = toy(&device);
        for step in 0..steps {
            if Some(step) == stop_at {
                let record = optim.to_record();
                let weights = model.into_record();
                let (fresh, fresh_handle) = RAdamConfig::default().init();
                optim = fresh.load_record(record);
                handle = fresh_handle;
                model = toy(&device).load_record(weights);
            }
            let (lr, b1) = sched.at(step);
            handle.set_beta_1(b1);
            let grads = GradientsParams::from_grads(loss(&model, &device).backward(), &model);
            model = optim.step(lr, model, grads);
        }
        model.w.val().into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn matches_the_documented_algorithm_with_one_cycle() {
        let ours = train(60, None);
        let reference = reference(60);
        for (x, y) in ours.iter().zip(&reference) {
            assert!(
                (*x as f64 - y).abs() <= 1e-4 * y.abs().max(1.0),
                "{ours:?} vs {reference:?}"
            );
        }
        // And it optimises: the weights approach the targets.
        let before: f64 = TARGET
            .iter()
            .zip([0.3, 0.2, -0.1, 0.0, 1.0, -1.0])
            .map(|(t, w)| (t - w).abs())
            .sum();
        let after: f64 = TARGET
            .iter()
            .zip(&ours)
            .map(|(t, w)| (t - *w as f64).abs())
            .sum();
        assert!(after < before - 0.2, "{before} -> {after}");
    }

    #[test]
    fn resuming_from_a_record_gives_the_same_weights() {
        let straight = train(40, None);
        let resumed = train(40, Some(17));
        assert_eq!(straight, resumed);
    }

    /// The fused CPU pass (parallel pieces, one short) and the generic tensor operations give
    /// the same parameters and moments to the bit, through the un-rectified first steps and the
    /// rectified later ones, with and without weight decay.
    #[test]
    fn fused_step_equals_the_generic_operations_to_the_bit() {
        let device = Device::flex();
        let n = 40_000;
        let wave = |k: f32| -> Tensor<1> {
            let v: Vec<f32> = (0..n).map(|i| (i as f32 * k).sin() * 3.0).collect();
            Tensor::from_floats(&v[..], &device)
        };
        for weight_decay in [0.0, 1e-2] {
            let config = RAdamConfig {
                weight_decay,
                ..RAdamConfig::default()
            };
            let (radam, handle) = config.build();
            let first = radam.coefficients(3e-3, 1);
            assert!(
                moment_step(wave(0.1), &wave(0.2), None, &first).is_ok(),
                "the fused pass applies to these tensors"
            );
            let mut fused = (wave(0.37), None::<RAdamState<1>>);
            let mut generic = (wave(0.37), None::<(Tensor<1>, Tensor<1>)>);
            for time in 1..=9 {
                handle.set_beta_1(0.95 - 0.01 * time as f64);
                let grad = wave(0.11 * time as f32);
                let (p, state) = radam.step(3e-3, fused.0, grad.clone(), fused.1);
                fused = (p, state);
                let step = radam.coefficients(3e-3, time);
                let (p, m, v) = generic_step(generic.0, grad, generic.1, &step);
                generic = (p, Some((m, v)));
                let bits = |t: &Tensor<1>| -> Vec<u32> {
                    let v = t.clone().into_data().try_to_vec::<f32>().unwrap();
                    v.iter().map(|x| x.to_bits()).collect()
                };
                let state = fused.1.as_ref().unwrap();
                let (m, v) = generic.1.as_ref().unwrap();
                assert_eq!(state.time, time);
                assert!(bits(&fused.0) == bits(&generic.0), "parameter, step {time}");
                assert!(
                    bits(&state.moment_1) == bits(m),
                    "first moment, step {time}"
                );
                assert!(
                    bits(&state.moment_2) == bits(v),
                    "second moment, step {time}"
                );
            }
            let rectified = matches!(
                radam.coefficients(3e-3, 9).direction,
                Direction::Adaptive { .. }
            );
            let early = matches!(
                radam.coefficients(3e-3, 1).direction,
                Direction::Momentum { .. }
            );
            assert!(rectified && early, "both directions are exercised");
        }
    }

    #[test]
    fn no_nan_from_zero_gradients() {
        let device = Device::flex().autodiff();
        let (mut optim, _) = RAdamConfig::default().init();
        let mut model = toy(&device);
        for _ in 0..10 {
            let l = model.w.val().mul_scalar(0.0).sum();
            let grads = GradientsParams::from_grads(l.backward(), &model);
            model = optim.step(0.01, model, grads);
        }
        let w = model.w.val().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(w, vec![0.3, 0.2, -0.1, 0.0, 1.0, -1.0]);
    }
}
