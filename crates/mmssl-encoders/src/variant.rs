//! The two definitions of the model: mmssl's and the authors' (github:Entodi/fusion).

use mmssl_kernels::RunningVariance;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which definition of the DCGAN encoder and its heads a model follows where mmssl's and the
/// authors' PyTorch code (Fedorov et al., ISBI 2021; github:Entodi/fusion) differ.
///
/// The layers, kernel sizes, strides, padding, LeakyReLU slope (0.2), batch-norm momentum
/// (0.1) and epsilon (1e-5), the tapped layer and the encoders' initialisation are the same in
/// both. They differ in:
///
/// | | [`Variant::Mmssl`] (default) | [`Variant::Authors`] |
/// | --- | --- | --- |
/// | conv head shortcut | 1x1 convolution with a bias | without a bias (their `use_bias=False`) |
/// | running variance in training mode | biased batch variance (burn's `BatchNorm`) | unbiased, `n / (n - 1)` times it (PyTorch's) |
/// | conv head second convolution, latent head second linear layer | Xavier gain 1 | Xavier gain `sqrt(2)` (ReLU's) |
/// | conv head shortcut when the map has more channels than the embedding (3D: 128 -> 64) | Xavier, gain 1 | PyTorch's default, `U(-1/sqrt(C), 1/sqrt(C))` |
/// | conv head shortcut when the embedding has more channels than the map | Xavier, gain 1 | identity on the first channels + `U(-0.01, 0.01)` |
///
/// The first two change the function the model computes (a trained model's bias, the
/// evaluation-mode outputs); the others only the starting point of training. mmssl keeps its
/// own definition as the default so that every run and figure made with it stays
/// reproducible; a model imported from the authors' checkpoints uses theirs, and a run can
/// ask for it with the method option `variant=authors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// mmssl's definition.
    #[default]
    Mmssl,
    /// The authors' definition (github:Entodi/fusion).
    Authors,
}

impl Variant {
    /// Both variants.
    pub const ALL: [Variant; 2] = [Variant::Mmssl, Variant::Authors];

    /// The name options and files spell it with.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Mmssl => "mmssl",
            Variant::Authors => "authors",
        }
    }

    /// Whether the conv head's shortcut has a bias.
    pub fn shortcut_bias(self) -> bool {
        self == Variant::Mmssl
    }

    /// The batch variance the running variance of every batch norm follows.
    pub fn running_variance(self) -> RunningVariance {
        match self {
            Variant::Mmssl => RunningVariance::Biased,
            Variant::Authors => RunningVariance::Unbiased,
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("`{s}` is not a model variant: mmssl or authors"))
    }
}

/// How an encoder is built beyond its table: the width and the [`Variant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderOptions {
    /// Channels of the first convolution (the authors' `dim_h`); every later layer's channels
    /// scale with it (the tables are written at the paper's width, 32).
    pub width: usize,
    /// The definition followed.
    pub variant: Variant,
}

/// The paper's encoder width: the channels of the first convolution.
pub const BASE_WIDTH: usize = 32;

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            width: BASE_WIDTH,
            variant: Variant::Mmssl,
        }
    }
}
