//! Helpers shared by the fused CPU operations' tests.

use burn::tensor::Tensor;

/// The values of `t`, row-major.
pub(crate) fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Asserts `|a_i - b_i| <= tol max|b|` for every `i` (the scale floored at 1e-6).
pub(crate) fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}[{i}]: {x} vs {y} (scale {scale})"
        );
    }
}

/// `len` draws of a normal distribution with this `mean` and `std`, the same for the same
/// `seed` on every run (splitmix64 and Box-Muller; no global random state, which tests running
/// in parallel would share).
pub(crate) fn normal_values(len: usize, seed: u64, mean: f32, std: f32) -> Vec<f32> {
    let mut state = seed;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // In (0, 1]: never zero, so the logarithm below is finite.
        ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    (0..len)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            let n = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            mean + std * n as f32
        })
        .collect()
}
