//! Batch normalisation followed by an activation, and an activation alone.

use crate::norm::{Activation, RunningVariance, activate, batch_norm_with};
use crate::runtime;
use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor};

/// `activation(batch_norm(x))` over `[B, C, ...]`: burn's [`BatchNorm`] (its parameters, running
/// statistics and momentum) followed by an activation, fused into one operation in training
/// mode on the CPU backend and burn's `BatchNorm::forward` plus the activation elsewhere, with
/// the same values, gradients and running-statistics updates.
#[derive(Module, Debug)]
pub struct NormAct {
    /// The normalisation.
    pub norm: BatchNorm,
    /// The activation after it.
    #[module(skip)]
    pub activation: Activation,
    /// The batch variance the running variance follows in training mode (burn's biased one
    /// unless set otherwise).
    #[module(skip)]
    pub running: RunningVariance,
}

/// The settings of a [`NormAct`]: the channels, the activation, and the batch variance the
/// running variance follows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormActConfig {
    /// The channels normalised.
    pub channels: usize,
    /// The activation after the normalisation.
    pub activation: Activation,
    /// The batch variance the running variance follows in training mode (burn's biased one by
    /// default).
    pub running: RunningVariance,
}

impl NormActConfig {
    /// Batch normalisation of `channels` channels followed by `activation`.
    pub fn new(channels: usize, activation: Activation) -> Self {
        NormActConfig {
            channels,
            activation,
            running: RunningVariance::Biased,
        }
    }

    /// The same, its running variance following `running` in training mode.
    pub fn with_running(self, running: RunningVariance) -> Self {
        NormActConfig { running, ..self }
    }

    /// The layer (burn's defaults for the normalisation: momentum 0.1, epsilon 1e-5,
    /// `gamma = 1`, `beta = 0`).
    pub fn init(&self, device: &Device) -> NormAct {
        NormAct {
            norm: BatchNormConfig::new(self.channels).init(device),
            activation: self.activation,
            running: self.running,
        }
    }
}

impl NormAct {
    /// Batch normalisation of `channels` channels (burn's defaults: momentum 0.1, epsilon
    /// 1e-5, `gamma = 1`, `beta = 0`) followed by `activation`.
    #[deprecated(
        since = "0.1.0",
        note = "use NormActConfig::new(channels, activation).init(device)"
    )]
    pub fn new(channels: usize, activation: Activation, device: &Device) -> Self {
        NormActConfig::new(channels, activation).init(device)
    }

    /// The same layer, its running variance following `running` in training mode.
    pub fn with_running(mut self, running: RunningVariance) -> Self {
        self.running = running;
        self
    }

    /// Normalises `x` `[B, C, ...]` and applies the activation.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        runtime::configure();
        batch_norm_with(&self.norm, x, self.activation, self.running)
    }
}

/// An activation as a layer: one pass forward and one backward in training mode on the CPU
/// backend, burn's activation function elsewhere.
#[derive(Module, Debug)]
pub struct Act {
    /// The activation.
    #[module(skip)]
    pub activation: Activation,
}

impl Act {
    /// The layer applying `activation`.
    pub fn new(activation: Activation) -> Self {
        Act { activation }
    }

    /// `activation(x)`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        runtime::configure();
        activate(x, self.activation)
    }
}
