//! The pass over one row of the score matrix: clipping, the log-sum-exp over the negatives,
//! the softplus over the positives and the derivatives, with fast `exp` and `tanh`.

/// What the row pass of one operation shares across its rows.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowConsts {
    /// Target locations per sample (a row's positives are its sample's block of columns).
    pub(super) lt: usize,
    /// Clipping constant `c`, if any.
    pub(super) clip: Option<f32>,
    /// Positives per anchor set `P`, the loss's normaliser.
    pub(super) positives: f32,
    /// The penalty's slope: `dpenalty/dr = kappa r`.
    pub(super) kappa: f32,
}

/// One anchor row: `(sum of softplus over its positives, sum of r^2)`; fills
/// `dloss/dr + kappa r` (the penalty's derivative is `kappa r`).
/// `scratch` holds the row's clipped scores and exponentials (grown as needed, reused across
/// rows).
///
/// On x86-64 with AVX2 and FMA (checked at run time) the same code is compiled for 8-lane
/// vectors; otherwise for the SSE2 baseline.
pub(super) fn row(
    raw: &[f32],
    dloss: Option<&mut [f32]>,
    scratch: &mut Vec<f32>,
    sample: usize,
    consts: RowConsts,
) -> (f64, f64) {
    if scratch.len() < 2 * raw.len() {
        scratch.resize(2 * raw.len(), 0.0);
    }
    let (scores, exps) = scratch.split_at_mut(raw.len());
    let exps = &mut exps[..raw.len()];
    let bufs = RowBufs(raw, dloss, scores, exps);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { row_avx2(bufs, sample, consts) };
    }
    row_generic::<false>(bufs, sample, consts)
}

/// One row's slices, in this order: its raw scores, their derivatives (when wanted), and room
/// for its clipped scores and for their exponentials (each as long as the raw scores).
struct RowBufs<'a>(
    &'a [f32],
    Option<&'a mut [f32]>,
    &'a mut [f32],
    &'a mut [f32],
);

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn row_avx2(bufs: RowBufs<'_>, sample: usize, consts: RowConsts) -> (f64, f64) {
    row_generic::<true>(bufs, sample, consts)
}

/// Lanes of the vectorised reductions (independent partial sums / maxima).
const LANES: usize = 16;

/// Clipped scores of `raw` into `scores`; returns `(sum of raw^2, max of the scores)`, in one
/// pass with lane-wise partial sums and maxima.
#[inline(always)]
fn clip_pass<const FMA: bool>(raw: &[f32], scores: &mut [f32], clip: Option<f32>) -> (f32, f32) {
    let (mut sq, mut mx) = ([0.0f32; LANES], [f32::NEG_INFINITY; LANES]);
    let score = |r: f32| match clip {
        Some(c) => c * fast_tanh::<FMA>(r * (1.0 / c)),
        None => r,
    };
    let whole = raw.len() / LANES * LANES;
    for (rc, sc) in raw[..whole]
        .chunks_exact(LANES)
        .zip(scores[..whole].chunks_exact_mut(LANES))
    {
        for k in 0..LANES {
            let s = score(rc[k]);
            sc[k] = s;
            sq[k] += rc[k] * rc[k];
            mx[k] = if s > mx[k] { s } else { mx[k] };
        }
    }
    let (mut tail_sq, mut tail_mx) = (0.0f32, f32::NEG_INFINITY);
    for (r, s) in raw[whole..].iter().zip(&mut scores[whole..]) {
        *s = score(*r);
        tail_sq += r * r;
        tail_mx = tail_mx.max(*s);
    }
    let max = mx.iter().fold(tail_mx, |m, &v| m.max(v));
    (sq.iter().sum::<f32>() + tail_sq, max)
}

/// `exps = e^{scores - shift}`; returns their sum, in one pass.
#[inline(always)]
fn exp_pass<const FMA: bool>(scores: &[f32], exps: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let whole = scores.len() / LANES * LANES;
    for (sc, ec) in scores[..whole]
        .chunks_exact(LANES)
        .zip(exps[..whole].chunks_exact_mut(LANES))
    {
        for k in 0..LANES {
            let e = fast_exp::<FMA>(sc[k] - shift);
            ec[k] = e;
            acc[k] += e;
        }
    }
    let mut tail = 0.0f32;
    for (s, e) in scores[whole..].iter().zip(&mut exps[whole..]) {
        *e = fast_exp::<FMA>(s - shift);
        tail += *e;
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn row_generic<const FMA: bool>(bufs: RowBufs<'_>, sample: usize, consts: RowConsts) -> (f64, f64) {
    let RowConsts {
        lt,
        clip,
        positives,
        kappa,
    } = consts;
    let RowBufs(raw, dloss, scores, exps) = bufs;
    let pos = sample * lt..(sample + 1) * lt;
    let (n, (p0, p1)) = (raw.len(), (pos.start, pos.end));
    if let Some(c) = clip.filter(|&c| c <= MAX_FIXED_SHIFT_CLIP) {
        return clipped_row::<FMA>(RowBufs(raw, dloss, scores, exps), pos, c, consts);
    }
    // Clipped scores, sum of squares and the maximum over the negatives (every column outside
    // the sample's block), then the exponentials and their sum over the negatives.
    let (sq_a, max_a) = clip_pass::<FMA>(&raw[..p0], &mut scores[..p0], clip);
    let (sq_p, _) = clip_pass::<FMA>(&raw[p0..p1], &mut scores[p0..p1], clip);
    let (sq_b, max_b) = clip_pass::<FMA>(&raw[p1..], &mut scores[p1..n], clip);
    let square = (sq_a + sq_p + sq_b) as f64;
    let neg_max = max_a.max(max_b);
    let sum = exp_pass::<FMA>(&scores[..p0], &mut exps[..p0], neg_max)
        + exp_pass::<FMA>(&scores[p1..n], &mut exps[p1..n], neg_max);
    let (loss, weight) =
        positive_terms::<FMA>(&scores[pos.clone()], &mut exps[pos.clone()], neg_max, sum);
    if let Some(d) = dloss {
        // e^{S - lse} = e^{S - max} / sum, for the negatives.
        let w = weight / positives / sum;
        match clip {
            Some(c) => {
                let inv_c = 1.0 / c;
                let terms = d.iter_mut().zip(&exps[..n]).zip(&scores[..n]).zip(raw);
                for (((d, &e), &s), &r) in terms {
                    let u = s * inv_c;
                    *d = w * e * (1.0 - u * u) + kappa * r;
                }
            }
            None => {
                for ((d, &e), &r) in d.iter_mut().zip(&exps[..n]).zip(raw) {
                    *d = w * e + kappa * r;
                }
            }
        }
        positive_derivatives(d, raw, scores, exps, pos, consts);
    }
    (loss, square)
}

/// Largest clipping constant for which [`clipped_row`] shifts the exponentials by `c` instead
/// of the row's maximum: clipped scores lie in `[-c, c]`, so `e^{S - c} >= e^{-2c} >= e^{-60}`
/// stays a normal `f32` and no term overflows.
const MAX_FIXED_SHIFT_CLIP: f32 = 30.0;

/// [`row_generic`] for clipped scores with `c` (= `consts.clip`) `<= MAX_FIXED_SHIFT_CLIP`: the exponentials are
/// shifted by `c` (an upper bound of every clipped score) rather than by the row's maximum,
/// which needs no pass of its own, so one pass over the negatives computes the clipped score,
/// the square, the exponential, its sum and the unscaled derivative `e^{S - c} (1 - (S/c)^2)`
/// (into `dloss`, or into the scratch when no derivatives are wanted); a second pass scales it
/// by the row's weight and adds the penalty's derivative.
#[inline(always)]
fn clipped_row<const FMA: bool>(
    bufs: RowBufs<'_>,
    pos: std::ops::Range<usize>,
    c: f32,
    consts: RowConsts,
) -> (f64, f64) {
    let RowBufs(raw, dloss, scores, exps) = bufs;
    let RowConsts {
        positives, kappa, ..
    } = consts;
    let (n, (p0, p1)) = (raw.len(), (pos.start, pos.end));
    let mut out = dloss;
    let (sq_p, _) = clip_pass::<FMA>(&raw[p0..p1], &mut scores[p0..p1], Some(c));
    let (sq_a, sum_a) =
        negatives_pass::<FMA>(&raw[..p0], out.as_deref_mut().map(|o| &mut o[..p0]), c);
    let (sq_b, sum_b) =
        negatives_pass::<FMA>(&raw[p1..], out.as_deref_mut().map(|o| &mut o[p1..n]), c);
    let (square, sum) = ((sq_a + sq_p + sq_b) as f64, sum_a + sum_b);
    let (loss, weight) =
        positive_terms::<FMA>(&scores[pos.clone()], &mut exps[pos.clone()], c, sum);
    if let Some(out) = out {
        let w = weight / positives / sum;
        for (d, &r) in out.iter_mut().zip(raw) {
            *d = w * *d + kappa * r;
        }
        positive_derivatives(out, raw, scores, exps, pos, consts);
    }
    (loss, square)
}

/// Over negatives: `(sum of raw^2, sum of e^{S - c})` with `S = c tanh(raw / c)`, writing
/// `e^{S - c} (1 - (S/c)^2)` into `out` when given.
#[inline(always)]
fn negatives_pass<const FMA: bool>(raw: &[f32], out: Option<&mut [f32]>, c: f32) -> (f32, f32) {
    let (mut sq, mut acc) = ([0.0f32; LANES], [0.0f32; LANES]);
    let inv_c = 1.0 / c;
    let term = |r: f32| {
        let t = fast_tanh::<FMA>(r * inv_c);
        let e = fast_exp::<FMA>(c * t - c);
        (e, e * (1.0 - t * t))
    };
    let whole = raw.len() / LANES * LANES;
    let (mut tail_sq, mut tail) = (0.0f32, 0.0f32);
    match out {
        Some(out) => {
            for (rc, oc) in raw[..whole]
                .chunks_exact(LANES)
                .zip(out[..whole].chunks_exact_mut(LANES))
            {
                for k in 0..LANES {
                    let (e, slope) = term(rc[k]);
                    oc[k] = slope;
                    sq[k] += rc[k] * rc[k];
                    acc[k] += e;
                }
            }
            for (r, o) in raw[whole..].iter().zip(&mut out[whole..]) {
                let (e, slope) = term(*r);
                *o = slope;
                tail_sq += r * r;
                tail += e;
            }
        }
        None => {
            for rc in raw[..whole].chunks_exact(LANES) {
                for k in 0..LANES {
                    sq[k] += rc[k] * rc[k];
                    acc[k] += term(rc[k]).0;
                }
            }
            for r in &raw[whole..] {
                tail_sq += r * r;
                tail += term(*r).0;
            }
        }
    }
    (
        sq.iter().sum::<f32>() + tail_sq,
        acc.iter().sum::<f32>() + tail,
    )
}

/// The positives' loss terms for `lse = shift + ln(sum)`: returns `(sum of softplus(lse - S),
/// sum of sigmoid(lse - S))` and keeps each sigmoid in `sigmoids`. With `x = lse - S` and
/// `e = e^{-|x|}`: `softplus(x) = max(x, 0) + ln(1 + e)`, `sigmoid(x) = 1 / (1 + e)` or
/// `e / (1 + e)`.
#[inline(always)]
fn positive_terms<const FMA: bool>(
    scores: &[f32],
    sigmoids: &mut [f32],
    shift: f32,
    sum: f32,
) -> (f64, f32) {
    let lse = shift + sum.ln();
    let (mut loss, mut weight) = (0.0f64, 0.0f32);
    for (&s, sig) in scores.iter().zip(sigmoids) {
        let x = lse - s;
        let e = fast_exp::<FMA>(-x.abs());
        loss += (x.max(0.0) + e.ln_1p()) as f64;
        *sig = if x >= 0.0 { 1.0 } else { e } / (1.0 + e);
        weight += *sig;
    }
    (loss, weight)
}

/// `dloss/dr + kappa r` at the positives: `-(1/P) sigmoid(lse - S) dS/dr + kappa r`, from the
/// sigmoids [`positive_terms`] kept.
#[inline(always)]
fn positive_derivatives(
    d: &mut [f32],
    raw: &[f32],
    scores: &[f32],
    sigmoids: &[f32],
    pos: std::ops::Range<usize>,
    consts: RowConsts,
) {
    let RowConsts {
        clip,
        positives,
        kappa,
        ..
    } = consts;
    for j in pos {
        let s = scores[j];
        let slope = clip.map_or(1.0, |c| 1.0 - (s / c) * (s / c));
        d[j] = -sigmoids[j] / positives * slope + kappa * raw[j];
    }
}

/// `a b + c`: one fused multiply-add when `FMA` (in code compiled for CPUs that have it),
/// else a product and a sum (`mul_add` without the instruction is a slow library call).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `e^x` for `x <= 0` down to underflow, branch-free so loops over it vectorise: Cody-Waite
/// reduction `x = k ln 2 + r`, `|r| <= ln 2 / 2`, and a degree-6 Taylor polynomial for `e^r`
/// (relative error below 2e-7).
#[inline(always)]
fn fast_exp<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const SHIFTER: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let shifted = madd::<FMA>(x, LOG2E, SHIFTER);
    let k = shifted - SHIFTER;
    let r = madd::<FMA>(-k, LN2_LO, madd::<FMA>(-k, LN2_HI, x));
    let mut p = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = madd::<FMA>(p, r, c);
    }
    // The integer k sits in the low mantissa bits of `shifted` (its ulp is 1): taking it from
    // the bits, rather than with a float-to-int cast (saturating in Rust, which does not
    // vectorise), keeps the whole function in vector registers. k is in [-126, 127].
    let k_int = shifted.to_bits().wrapping_sub(SHIFTER.to_bits()) as i32;
    p * f32::from_bits(((k_int + 127) as u32) << 23)
}

/// `tanh(x) = sign(x) (1 - e^{-2|x|}) / (1 + e^{-2|x|})`, through [`fast_exp`] (absolute error
/// below 3e-7).
#[inline(always)]
fn fast_tanh<const FMA: bool>(x: f32) -> f32 {
    let e = fast_exp::<FMA>(-2.0 * x.abs());
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_fast_exp_and_tanh<const FMA: bool>() {
        let mut worst_exp = 0.0f32;
        let mut worst_tanh = 0.0f32;
        for i in 0..=200_000 {
            let x = -80.0 + i as f32 * 0.0005;
            let (e, want) = (fast_exp::<FMA>(x), x.exp());
            worst_exp = worst_exp.max(((e - want) / want).abs());
            let y = x / 4.0;
            worst_tanh = worst_tanh.max((fast_tanh::<FMA>(y) - y.tanh()).abs());
        }
        assert!(
            worst_exp < 5e-7,
            "FMA {FMA}: exp relative error {worst_exp}"
        );
        assert!(
            worst_tanh < 5e-7,
            "FMA {FMA}: tanh absolute error {worst_tanh}"
        );
        assert!(fast_exp::<FMA>(-200.0) < 1e-37);
        assert_eq!(fast_tanh::<FMA>(0.0), 0.0);
        assert!((fast_tanh::<FMA>(30.0) - 1.0).abs() < 1e-7);
        assert!((fast_tanh::<FMA>(-30.0) + 1.0).abs() < 1e-7);
    }

    #[test]
    fn fast_exp_and_tanh_match_the_standard_library() {
        // The fused multiply-add variant is exact arithmetic on every CPU (mul_add is
        // emulated where the instruction is missing), only slower there.
        check_fast_exp_and_tanh::<false>();
        check_fast_exp_and_tanh::<true>();
    }
}
