//! Image datasets: image sets, Two-View MNIST (an image and its noisy or shifted second
//! view) and label pairing of two image sets (MNIST-SVHN).

pub(crate) mod paired;
pub(crate) mod set;
pub(crate) mod two_view;

pub use paired::{LabelPaired, LabelPairedConfig};
pub use set::{Image, ImageSet};
pub use two_view::{NoiseRange, SecondView, TwoViewConfig, TwoViewMnist};
