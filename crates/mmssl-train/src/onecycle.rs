//! The one-cycle policy (Smith and Topin, "Super-Convergence", 2019) with the semantics of
//! PyTorch's `OneCycleLR` (two phases, cosine annealing), stepped once per batch:
//!
//! - phase 1, steps `0 ..= pct_start * total - 1`: the learning rate rises from
//!   `max_lr / div_factor` to `max_lr` and the momentum (Adam's first beta) falls from
//!   `max_momentum` to `base_momentum`;
//! - phase 2, up to step `total - 1`: the learning rate falls to
//!   `max_lr / div_factor / final_div_factor` and the momentum rises back.
//!
//! Each phase anneals with `end + (start - end) / 2 * (1 + cos(pi * pct))`. The paper's
//! settings (and the defaults): `max_lr = 0.01`, `pct_start = 0.3`, `div_factor = 25`,
//! `final_div_factor = 1e4`, momentum `0.95 <-> 0.85`.

use serde::{Deserialize, Serialize};

/// Settings of [`OneCycle`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OneCycleConfig {
    /// Peak learning rate.
    pub max_lr: f64,
    /// Fraction of the steps spent warming up.
    pub pct_start: f64,
    /// `initial_lr = max_lr / div_factor`.
    pub div_factor: f64,
    /// `final_lr = initial_lr / final_div_factor`.
    pub final_div_factor: f64,
    /// Momentum at the start and end of the cycle.
    pub max_momentum: f64,
    /// Momentum at the peak learning rate.
    pub base_momentum: f64,
    /// Whether to cycle the momentum at all.
    pub cycle_momentum: bool,
}

impl Default for OneCycleConfig {
    fn default() -> Self {
        OneCycleConfig {
            max_lr: 0.01,
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
            max_momentum: 0.95,
            base_momentum: 0.85,
            cycle_momentum: true,
        }
    }
}

/// A one-cycle schedule over a known number of steps. Its only state is the step counter.
#[derive(Debug, Clone, PartialEq)]
pub struct OneCycle {
    config: OneCycleConfig,
    total_steps: usize,
}

/// Why a schedule cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid one-cycle schedule: {0}")]
pub struct ScheduleError(pub String);

impl OneCycleConfig {
    /// Checks the settings and builds the schedule for `total_steps` steps.
    pub fn init(&self, total_steps: usize) -> Result<OneCycle, ScheduleError> {
        let c = self;
        let bad = |m: String| Err(ScheduleError(m));
        if total_steps == 0 {
            return bad("total_steps must be at least 1".into());
        }
        if !(c.max_lr > 0.0 && c.max_lr.is_finite()) {
            return bad(format!("max_lr = {} must be finite and > 0", c.max_lr));
        }
        if !(c.pct_start > 0.0 && c.pct_start < 1.0) {
            return bad(format!("pct_start = {} must lie in (0, 1)", c.pct_start));
        }
        if !(c.div_factor > 0.0 && c.final_div_factor > 0.0) {
            return bad("div_factor and final_div_factor must be > 0".into());
        }
        let unit = 0.0..1.0;
        if c.cycle_momentum && !(unit.contains(&c.base_momentum) && unit.contains(&c.max_momentum))
        {
            return bad("momenta must lie in [0, 1)".into());
        }
        Ok(OneCycle {
            config: *c,
            total_steps,
        })
    }
}

fn anneal(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
}

impl OneCycle {
    /// Number of steps of the cycle.
    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    /// `(learning rate, momentum)` for step `step` (0-based), clamped to the last step.
    pub fn at(&self, step: usize) -> (f64, f64) {
        let c = &self.config;
        let step = step.min(self.total_steps - 1) as f64;
        let initial = c.max_lr / c.div_factor;
        let min = initial / c.final_div_factor;
        let end1 = c.pct_start * self.total_steps as f64 - 1.0;
        let end2 = self.total_steps as f64 - 1.0;
        let (lr, mom) = if step <= end1 {
            let pct = if end1 > 0.0 { step / end1 } else { 1.0 };
            (
                anneal(initial, c.max_lr, pct),
                anneal(c.max_momentum, c.base_momentum, pct),
            )
        } else {
            let span = end2 - end1;
            let pct = if span > 0.0 {
                (step - end1) / span
            } else {
                1.0
            };
            (
                anneal(c.max_lr, min, pct),
                anneal(c.base_momentum, c.max_momentum, pct),
            )
        };
        (
            lr,
            if c.cycle_momentum {
                mom
            } else {
                c.max_momentum
            },
        )
    }
}

/// RAdam driven by an optional one-cycle schedule: gives the learning rate of each step and
/// sets the optimiser's first beta to the schedule's momentum. Shared by pretraining and
/// linear evaluation.
#[derive(Debug, Clone)]
pub struct LrDriver {
    schedule: Option<OneCycle>,
    handle: crate::radam::RAdamHandle,
    lr: f64,
}

impl LrDriver {
    /// The optimiser and its driver for `total_steps` steps; without a schedule, the constant
    /// learning rate `lr` and the configured first beta.
    pub fn new(
        optimizer: &crate::radam::RAdamConfig,
        lr: f64,
        schedule: Option<&OneCycleConfig>,
        total_steps: usize,
    ) -> Result<(burn::optim::ModuleOptimizer, Self), ScheduleError> {
        let schedule = schedule.map(|s| s.init(total_steps.max(1))).transpose()?;
        let (optim, handle) = optimizer.init();
        Ok((
            optim,
            LrDriver {
                schedule,
                handle,
                lr,
            },
        ))
    }

    /// The learning rate of step `step` (from 0); sets the first beta for that step.
    pub fn lr_at(&self, step: usize) -> f64 {
        match &self.schedule {
            Some(s) => {
                let (lr, momentum) = s.at(step);
                self.handle.set_beta_1(momentum);
                lr
            }
            None => self.lr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_peak_follow_pytorch_semantics() {
        let s = OneCycleConfig::default().init(100).unwrap();
        let (lr0, m0) = s.at(0);
        assert!((lr0 - 0.01 / 25.0).abs() < 1e-15 && (m0 - 0.95).abs() < 1e-15);
        // Phase 1 ends at step 0.3 * 100 - 1 = 29: peak lr, base momentum.
        let (lr29, m29) = s.at(29);
        assert!((lr29 - 0.01).abs() < 1e-15 && (m29 - 0.85).abs() < 1e-15);
        let (lr99, m99) = s.at(99);
        assert!((lr99 - 0.01 / 25.0 / 1e4).abs() < 1e-18 && (m99 - 0.95).abs() < 1e-15);
        // Halfway through phase 1 (step 14.5 is the midpoint; step 14 is just before it).
        let (lr14, _) = s.at(14);
        let pct: f64 = 14.0 / 29.0;
        let expected = 0.01 + (0.0004 - 0.01) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0);
        assert!((lr14 - expected).abs() < 1e-15);
        // Monotone up then down.
        let lrs: Vec<f64> = (0..100).map(|t| s.at(t).0).collect();
        assert!(lrs[..30].windows(2).all(|w| w[1] > w[0]));
        assert!(lrs[29..].windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn invalid_settings_are_errors() {
        assert!(OneCycleConfig::default().init(0).is_err());
        let c = OneCycleConfig {
            pct_start: 1.0,
            ..Default::default()
        };
        assert!(c.init(10).is_err());
        let c = OneCycleConfig {
            max_lr: -1.0,
            ..Default::default()
        };
        assert!(c.init(10).is_err());
    }
}
