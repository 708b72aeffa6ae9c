//! A downstream crate computing mmssl objectives on its own encoders.
//!
//! Two modalities that are not images: a multichannel time series (8 channels x 16 steps) and
//! a vector of 20 measurements, both generated from a shared 4-dimensional factor. Each has a
//! home-made encoder that exposes what the edges need, a feature map `[B, d, L]` and a latent
//! `[B, d]`. The objective is the spec `XX-RR:0.5` with the Jensen-Shannon estimator, plus one
//! custom term built with `contrast` (time-series latent against its own feature map, i.e. a
//! hand-written CR edge). A few Adam steps show the loss going down.
//!
//! ```sh
//! cargo run --release --example custom_objective
//! ```

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use mmssl::burn;
use mmssl::objectives::{
    Critic, CriticKind, Estimator, ModalityEmbeddings, ObjectiveConfig, contrast,
};
use rand::{SeedableRng, rngs::StdRng};

const D: usize = 32;

/// Per-time-step embedding (a 1x1 convolution) as the feature map; mean over time + linear as
/// the latent.
#[derive(Module, Debug)]
struct SeriesEncoder {
    step: Linear,
    out: Linear,
}

impl SeriesEncoder {
    fn new(device: &Device) -> Self {
        Self {
            step: LinearConfig::new(8, D).init(device),
            out: LinearConfig::new(D, D).init(device),
        }
    }

    /// `x`: `[B, 8, 16]` -> feature map `[B, D, 16]`, latent `[B, D]`.
    fn forward(&self, x: Tensor<3>) -> ModalityEmbeddings {
        let h = relu(self.step.forward(x.swap_dims(1, 2))); // [B, 16, D]
        let latent = self.out.forward(h.clone().mean_dim(1).squeeze_dim::<2>(1));
        ModalityEmbeddings {
            conv: h.swap_dims(1, 2),
            latent,
        }
    }
}

/// An MLP whose hidden layer, cut into 4 chunks, serves as a 4-location feature map.
#[derive(Module, Debug)]
struct VectorEncoder {
    hidden: Linear,
    out: Linear,
}

impl VectorEncoder {
    fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(20, 4 * D).init(device),
            out: LinearConfig::new(4 * D, D).init(device),
        }
    }

    /// `x`: `[B, 20]` -> feature map `[B, D, 4]`, latent `[B, D]`.
    fn forward(&self, x: Tensor<2>) -> ModalityEmbeddings {
        let [b, _] = x.dims();
        let h = relu(self.hidden.forward(x));
        ModalityEmbeddings {
            conv: h.clone().reshape([b, 4, D]).swap_dims(1, 2),
            latent: self.out.forward(h),
        }
    }
}

#[derive(Module, Debug)]
struct Model {
    series: SeriesEncoder,
    vector: VectorEncoder,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::flex().autodiff();
    device.seed(7);
    let mut rng = StdRng::seed_from_u64(7);
    let objective = ObjectiveConfig::new("XX-RR:0.5".parse()?)
        .with_estimator(Estimator::JensenShannon)
        .init(&device, &mut rng)?;
    let mut model = Model {
        series: SeriesEncoder::new(&device),
        vector: VectorEncoder::new(&device),
    };
    let mut optim = AdamConfig::new().init();
    // Fixed random maps from the shared factor to each modality.
    let to_series = Tensor::<2>::random([4, 8 * 16], Distribution::Normal(0.0, 1.0), &device);
    let to_vector = Tensor::<2>::random([4, 20], Distribution::Normal(0.0, 1.0), &device);
    let dot = Critic {
        kind: CriticKind::ScaledDot,
        bilinear: None,
    };

    for step in 0..=60 {
        let factor = Tensor::<2>::random([32, 4], Distribution::Normal(0.0, 1.0), &device);
        let noise =
            |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 0.3), &device);
        let series =
            (factor.clone().matmul(to_series.clone()) + noise([32, 128])).reshape([32, 8, 16]);
        let vector = factor.matmul(to_vector.clone()) + noise([32, 20]);

        let views = [model.series.forward(series), model.vector.forward(vector)];
        let out = objective.forward(&views, &mut rng)?;
        // A custom term: the series latent against its own feature map (a hand-made CR edge).
        let (own, penalty) = contrast(
            views[0].latent.clone().unsqueeze_dim(2),
            views[0].conv.clone(),
            dot,
            Estimator::InfoNce,
            Some(20.0),
            4e-2,
        )?;
        let loss = out.total + own + penalty;
        if step % 20 == 0 {
            let terms: Vec<String> = out
                .terms
                .iter()
                .map(|t| format!("{} {:.3}", t.term, t.loss.clone().into_scalar::<f32>()))
                .collect();
            println!(
                "step {step:>2}: loss {:.4} ({})",
                loss.clone().into_scalar::<f32>(),
                terms.join(", ")
            );
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    Ok(())
}
