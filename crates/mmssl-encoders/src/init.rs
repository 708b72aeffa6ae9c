//! Seeded parameter initialisation.
//!
//! Weights are drawn on the host from a caller-provided RNG and uploaded, so the same seed
//! gives the same weights on every backend (CPU, wgpu, CUDA) and regardless of other threads
//! using the device's own random generator.

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, RngExt};

/// The gain PyTorch's `calculate_gain("leaky_relu", slope)` gives: `sqrt(2 / (1 + slope^2))`.
pub fn leaky_relu_gain(slope: f64) -> f64 {
    (2.0 / (1.0 + slope * slope)).sqrt()
}

/// Xavier-uniform (Glorot and Bengio, AISTATS 2010) bound: `gain * sqrt(6 / (fan_in + fan_out))`.
pub fn xavier_bound(fan_in: usize, fan_out: usize, gain: f64) -> f64 {
    gain * (6.0 / (fan_in + fan_out) as f64).sqrt()
}

/// A parameter of `shape` with entries uniform in `[-bound, bound)`.
pub fn uniform_param<const D: usize, R: Rng + ?Sized>(
    shape: [usize; D],
    bound: f64,
    rng: &mut R,
    device: &Device,
) -> Param<Tensor<D>> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect();
    Param::from_data(TensorData::new(values, shape), device)
}

/// A `d x d` parameter `I + U(-noise, noise)`: a layer that starts close to the identity.
pub fn near_identity<R: Rng + ?Sized>(
    d: usize,
    noise: f64,
    rng: &mut R,
    device: &Device,
) -> Param<Tensor<2>> {
    eye_with_noise(d, d, noise, false, rng, device)
}

/// A `rows x cols` parameter of `U(-noise, noise)` entries with the identity on its diagonal:
/// added to the noise, or (`exact`) replacing it there, as AMDIM's and the authors' conv head
/// shortcut does (`uniform_(-0.01, 0.01)` then `masked_fill_(eye, 1)`).
pub fn eye_with_noise<R: Rng + ?Sized>(
    rows: usize,
    cols: usize,
    noise: f64,
    exact: bool,
    rng: &mut R,
    device: &Device,
) -> Param<Tensor<2>> {
    let values: Vec<f32> = (0..rows * cols)
        .map(|k| {
            let v = rng.random_range(-noise..noise);
            match (k / cols == k % cols, exact) {
                (true, true) => 1.0,
                (true, false) => (1.0 + v) as f32,
                (false, _) => v as f32,
            }
        })
        .collect();
    Param::from_data(TensorData::new(values, [rows, cols]), device)
}

/// Xavier-uniform weights for a convolution or linear weight of `shape`.
///
/// `fan_in` and `fan_out` follow PyTorch: for a convolution weight `[out, in, k...]`,
/// `fan_in = in * prod(k)` and `fan_out = out * prod(k)`; the bound only depends on their sum.
pub fn xavier_param<const D: usize, R: Rng + ?Sized>(
    shape: [usize; D],
    fan_in: usize,
    fan_out: usize,
    gain: f64,
    rng: &mut R,
    device: &Device,
) -> Param<Tensor<D>> {
    uniform_param(shape, xavier_bound(fan_in, fan_out, gain), rng, device)
}

/// Xavier-uniform weights for a convolution weight `[a, b, k...]` (either orientation).
pub fn xavier_conv<const D: usize, R: Rng + ?Sized>(
    shape: [usize; D],
    gain: f64,
    rng: &mut R,
    device: &Device,
) -> Param<Tensor<D>> {
    let receptive: usize = shape[2..].iter().product();
    xavier_param(
        shape,
        shape[1] * receptive,
        shape[0] * receptive,
        gain,
        rng,
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn gain_matches_pytorch() {
        // torch.nn.init.calculate_gain('leaky_relu', 0.2) = sqrt(2 / 1.04)
        assert!((leaky_relu_gain(0.2) - 1.386_750_490_563_073).abs() < 1e-12);
        assert!((leaky_relu_gain(0.0) - 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn xavier_weights_are_seeded_bounded_and_spread() {
        let device = Device::flex();
        let shape = [64, 32, 4, 4];
        let bound = xavier_bound(32 * 16, 64 * 16, 1.3);
        let w1 = xavier_conv(shape, 1.3, &mut StdRng::seed_from_u64(3), &device);
        let w2 = xavier_conv(shape, 1.3, &mut StdRng::seed_from_u64(3), &device);
        let v1 = w1.val().into_data().try_to_vec::<f32>().unwrap();
        let v2 = w2.val().into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v1, v2);
        assert!(v1.iter().all(|x| (x.abs() as f64) <= bound));
        // Uniform on [-b, b] has variance b^2 / 3.
        let var = v1.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v1.len() as f64;
        assert!((var / (bound * bound / 3.0) - 1.0).abs() < 0.05, "{var}");
    }
}
