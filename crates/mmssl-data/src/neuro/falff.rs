//! ALFF and fALFF maps from a 4D resting-state BOLD series.
//!
//! For each voxel's time series `x_0 .. x_{T-1}` (TR seconds apart):
//!
//! 1. the mean is removed and, optionally (default on), the least-squares linear trend;
//! 2. the amplitude spectrum is taken with a real FFT without zero-padding:
//!    `a_k = 2 |X_k| / T` for `0 < k < T/2` and `a_k = |X_k| / T` at the Nyquist bin `k = T/2`
//!    (even `T`), so a sinusoid `A cos(2 pi f_k t + phi)` on bin `k` has `a_k = A`; bin `k` is
//!    the frequency `f_k = k / (T * TR)`;
//! 3. **ALFF** (Zang et al., "Altered baseline brain activity in children with ADHD revealed by
//!    resting-state functional MRI", Brain Dev 29:83-91, 2007) is the mean of `a_k` over the
//!    bins with `low <= f_k <= high` (default 0.01-0.1 Hz), as in REST/DPABI;
//!    [`AlffReduction::Sum`] gives the sum instead;
//! 4. **fALFF** (Zou et al., "An improved approach to detection of amplitude of low-frequency
//!    fluctuation (ALFF) for resting-state fMRI: fractional ALFF", J Neurosci Methods
//!    172:137-141, 2008) is the sum of `a_k` over the band divided by the sum over all bins
//!    `k = 1 ..= floor(T/2)` (DC excluded); it lies in `[0, 1]`. A voxel with no fluctuation
//!    (a residual RMS after step 1 below 1e-6 of its largest absolute value, i.e. at the level
//!    of `f32` rounding) gets 0 for both.
//!
//! The TR comes from the header (`pixdim[4]` in seconds, see [`crate::read_nifti`]) unless
//! [`FalffConfig::tr`] overrides it. The outputs are 3D volumes on the input's grid.

use crate::error::{DataError, Result};
use crate::neuro::volume::Volume;
use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

/// Residual RMS (relative to the series' largest absolute value) below which a voxel counts
/// as flat: about ten `f32` rounding steps.
const FLAT: f64 = 1e-6;

/// How ALFF reduces the amplitudes of the band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlffReduction {
    /// Mean amplitude over the band's bins (Zang et al. 2007; REST/DPABI).
    Mean,
    /// Sum of the band's amplitudes.
    Sum,
}

/// Settings of [`falff`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FalffConfig {
    /// The low-frequency band `[low, high]` in Hz, inclusive (0.01-0.1).
    pub band: [f64; 2],
    /// Remove the least-squares linear trend as well as the mean (true).
    pub detrend: bool,
    /// Repetition time in seconds overriding the header's (none).
    pub tr: Option<f64>,
    /// Mean or sum of the band's amplitudes for ALFF (mean).
    pub alff: AlffReduction,
}

impl Default for FalffConfig {
    fn default() -> Self {
        FalffConfig {
            band: [0.01, 0.1],
            detrend: true,
            tr: None,
            alff: AlffReduction::Mean,
        }
    }
}

/// The ALFF and fALFF maps of a series, on its grid.
#[derive(Debug, Clone, PartialEq)]
pub struct FalffMaps {
    /// Amplitude of low-frequency fluctuation (the series' units).
    pub alff: Volume,
    /// Fractional ALFF, in `[0, 1]`.
    pub falff: Volume,
    /// The TR used, in seconds.
    pub tr: f64,
    /// The number of frequency bins inside the band.
    pub band_bins: usize,
}

/// Computes ALFF and fALFF of every voxel of the 4D series `bold` (see the module docs).
pub fn falff(bold: &Volume, config: &FalffConfig) -> Result<FalffMaps> {
    let t = bold.frames();
    if t < 4 {
        return Err(DataError::format(
            bold.source(),
            format!("fALFF needs a 4D series of at least 4 frames, this one has {t}"),
        ));
    }
    let tr = match config.tr.or(bold.tr()) {
        Some(tr) if tr.is_finite() && tr > 0.0 => tr,
        Some(tr) => {
            return Err(DataError::InvalidParameter {
                name: "tr",
                value: tr.to_string(),
                reason: "the repetition time must be a positive number of seconds".into(),
            });
        }
        None => {
            return Err(DataError::format(
                bold.source(),
                "the header gives no repetition time (pixdim[4] with time units); pass one",
            ));
        }
    };
    let [low, high] = config.band;
    if !(low.is_finite() && high.is_finite() && 0.0 <= low && low <= high) {
        return Err(DataError::InvalidParameter {
            name: "band",
            value: format!("{:?}", config.band),
            reason: "a frequency band [low, high] in Hz with 0 <= low <= high".into(),
        });
    }
    let half = t / 2;
    let df = 1.0 / (t as f64 * tr);
    let in_band: Vec<bool> = (0..=half)
        .map(|k| {
            let f = k as f64 * df;
            k > 0 && f >= low - 1e-12 * df && f <= high + 1e-12 * df
        })
        .collect();
    let band_bins = in_band.iter().filter(|&&b| b).count();
    if band_bins == 0 {
        return Err(DataError::format(
            bold.source(),
            format!(
                "no frequency bin lies in {low}-{high} Hz: with {t} frames at TR {tr} s the \
                 bins are {df:.5} Hz apart up to {:.5} Hz",
                half as f64 * df
            ),
        ));
    }
    let n = bold.frame_len();
    let data = bold.data();
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(t);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let (mut alff, mut frac) = (vec![0f32; n], vec![0f32; n]);
    // Centred time axis for detrending.
    let tc: Vec<f64> = (0..t).map(|i| i as f64 - (t as f64 - 1.0) / 2.0).collect();
    let stt: f64 = tc.iter().map(|v| v * v).sum();
    for v in 0..n {
        for (i, x) in input.iter_mut().enumerate() {
            *x = data[v + i * n] as f64;
        }
        let mean = input.iter().sum::<f64>() / t as f64;
        let peak = input.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let slope = if config.detrend {
            input.iter().zip(&tc).map(|(x, c)| x * c).sum::<f64>() / stt
        } else {
            0.0
        };
        for (x, c) in input.iter_mut().zip(&tc) {
            *x -= mean + slope * c;
        }
        // A residual at the level of f32 rounding of the stored values is no fluctuation.
        let rms = (input.iter().map(|x| x * x).sum::<f64>() / t as f64).sqrt();
        if rms <= FLAT * peak {
            continue;
        }
        fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch)
            .map_err(|e| DataError::format(bold.source(), format!("FFT failed: {e}")))?;
        let (mut band, mut total) = (0.0f64, 0.0f64);
        for (k, c) in spectrum.iter().enumerate().skip(1) {
            let scale = if 2 * k == t { 1.0 } else { 2.0 };
            let a = scale * c.norm() / t as f64;
            total += a;
            if in_band[k] {
                band += a;
            }
        }
        if total > 0.0 {
            alff[v] = match config.alff {
                AlffReduction::Mean => band / band_bins as f64,
                AlffReduction::Sum => band,
            } as f32;
            frac[v] = (band / total).clamp(0.0, 1.0) as f32;
        }
    }
    let [x, y, z] = bold.shape();
    let three = |data: Vec<f32>| -> Result<Volume> {
        let v = Volume::new(data, [x, y, z], *bold.affine(), bold.source())?;
        v.with_voxel_size(bold.voxel_size())
    };
    Ok(FalffMaps {
        alff: three(alff)?,
        falff: three(frac)?,
        tr,
        band_bins,
    })
}
