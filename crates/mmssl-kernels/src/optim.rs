//! One pass of an Adam-family update (Adam's, RAdam's) over a parameter on burn's CPU backend.
//!
//! Written with burn's tensor operations, one step of RAdam over a parameter is about a dozen
//! passes over tensors the size of the parameter (each allocating its result), and burn's
//! element-wise operations run on one thread: in the 3D step (7.6 M parameters) that took
//! ~40 ms during which the second core had nothing to do. [`moment_step`] makes the same
//! arithmetic one parallel pass: read the parameter, its gradient and the two moments, write
//! the new three.
//!
//! The operations and their order are those of the generic path written with burn's tensor
//! operations (the scalars rounded to `f32` as burn rounds them), so the two give the same
//! values **to the bit**; mmssl's RAdam tests that.

use crate::host::{HostTensor, plain_primitive};
use burn::tensor::Tensor;
use burn_flex::Flex;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Values per parallel piece (and the size below which the pass stays on one thread).
const PIECE: usize = 1 << 14;

/// The coefficients of one step of an Adam-family update, with `g` the gradient:
///
/// ```text
/// g   <- g + weight_decay * p                          (when weight_decay != 0)
/// m'  =  beta_1 m + (1 - beta_1) g                     (m = 0 at the first step)
/// v'  =  beta_2 v + (1 - beta_2) g^2                   (v = 0 at the first step)
/// p'  =  p - scale m' / (sqrt(v') + epsilon)           (Direction::Adaptive)
/// p'  =  p - scale m'                                  (Direction::Momentum)
/// ```
///
/// The step size, bias corrections and RAdam's rectification are folded into `scale` by the
/// caller (Kingma & Ba, "Adam", ICLR 2015; Liu et al., "On the Variance of the Adaptive
/// Learning Rate and Beyond", ICLR 2020).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentStep {
    /// First-moment decay.
    pub beta_1: f64,
    /// Second-moment decay.
    pub beta_2: f64,
    /// L2 weight decay added to the gradient (0: none).
    pub weight_decay: f64,
    /// The denominator's guard (adaptive direction only).
    pub epsilon: f64,
    /// How the parameter moves.
    pub direction: Direction,
}

/// The direction a [`MomentStep`] moves the parameter in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Direction {
    /// `-scale * m' / (sqrt(v') + epsilon)`.
    Adaptive {
        /// The factor applied to the first moment.
        scale: f64,
    },
    /// `-scale * m'` (RAdam's un-rectified early steps).
    Momentum {
        /// The factor applied to the first moment.
        scale: f64,
    },
}

/// The scalars of a [`MomentStep`] as burn's operations use them (rounded to `f32`).
#[derive(Clone, Copy)]
struct Scalars {
    b1: f32,
    c1: f32,
    b2: f32,
    c2: f32,
    wd: Option<f32>,
    eps: f32,
    scale: f32,
    adaptive: bool,
}

impl Scalars {
    fn new(s: &MomentStep) -> Scalars {
        let (scale, adaptive) = match s.direction {
            Direction::Adaptive { scale } => (scale, true),
            Direction::Momentum { scale } => (scale, false),
        };
        Scalars {
            b1: s.beta_1 as f32,
            c1: (1.0 - s.beta_1) as f32,
            b2: s.beta_2 as f32,
            c2: (1.0 - s.beta_2) as f32,
            wd: (s.weight_decay != 0.0).then_some(s.weight_decay as f32),
            eps: s.epsilon as f32,
            scale: scale as f32,
            adaptive,
        }
    }
}

/// The new parameter, first moment and second moment after one [`MomentStep`], as one
/// parallel pass on the CPU backend. `moments` are the previous `(m, v)`, `None` at the first
/// step. `None` where it does not apply (another backend, not `f32`, shapes that differ): the
/// caller then takes burn's generic operations.
pub fn moment_step<const D: usize>(
    param: &Tensor<D>,
    grad: &Tensor<D>,
    moments: Option<(&Tensor<D>, &Tensor<D>)>,
    step: &MomentStep,
) -> Option<[Tensor<D>; 3]> {
    let host = |t: &Tensor<D>| HostTensor::new(&plain_primitive(t)?);
    let (p, g) = (host(param)?, host(grad)?);
    let previous = match moments {
        Some((m, v)) => Some((host(m)?, host(v)?)),
        None => None,
    };
    let shape = p.shape().clone();
    let same = |t: &HostTensor| t.shape() == &shape;
    if !same(&g) || previous.as_ref().is_some_and(|(m, v)| !same(m) || !same(v)) {
        return None;
    }
    let moments = previous.as_ref().map(|(m, v)| (m.values(), v.values()));
    let [p, m, v] = update(p.values(), g.values(), moments, &Scalars::new(step));
    let tensor = |values: Vec<f32>| {
        Tensor::from_primitive::<Flex>(HostTensor::from_vec(values, shape.clone()).into_flex())
    };
    Some([tensor(p), tensor(m), tensor(v)])
}

/// The pass itself on host slices: `[p', m', v']`.
fn update(p: &[f32], g: &[f32], moments: Option<(&[f32], &[f32])>, s: &Scalars) -> [Vec<f32>; 3] {
    let n = p.len();
    let mut out: [Vec<f32>; 3] = std::array::from_fn(|_| Vec::with_capacity(n));
    {
        let [po, mo, vo] = out.each_mut().map(|v| &mut v.spare_capacity_mut()[..n]);
        type Out<'a> = &'a mut [MaybeUninit<f32>];
        let piece = |i: usize, (po, (mo, vo)): (Out, (Out, Out))| {
            let r = i * PIECE..(i * PIECE + po.len());
            let prev = moments.map(|(m, v)| (&m[r.clone()], &v[r.clone()]));
            update_piece(&p[r.clone()], &g[r], prev, s, po, mo, vo);
        };
        if n <= PIECE {
            piece(0, (po, (mo, vo)));
        } else {
            po.par_chunks_mut(PIECE)
                .zip(mo.par_chunks_mut(PIECE).zip(vo.par_chunks_mut(PIECE)))
                .enumerate()
                .for_each(|(i, slices)| piece(i, slices));
        }
    }
    for v in &mut out {
        // SAFETY: `update_piece` wrote each of the first `n` values of every output.
        unsafe { v.set_len(n) };
    }
    out
}

/// One piece: writes every value of `po`, `mo` and `vo` (all as long as `p`).
fn update_piece(
    p: &[f32],
    g: &[f32],
    moments: Option<(&[f32], &[f32])>,
    s: &Scalars,
    po: &mut [MaybeUninit<f32>],
    mo: &mut [MaybeUninit<f32>],
    vo: &mut [MaybeUninit<f32>],
) {
    for i in 0..p.len() {
        let mut gi = g[i];
        if let Some(wd) = s.wd {
            gi += p[i] * wd;
        }
        let (m, v) = match moments {
            Some((m, v)) => (m[i] * s.b1 + gi * s.c1, v[i] * s.b2 + (gi * gi) * s.c2),
            None => (gi * s.c1, (gi * gi) * s.c2),
        };
        let delta = if s.adaptive {
            (m * s.scale) / (v.sqrt() + s.eps)
        } else {
            m * s.scale
        };
        po[i].write(p[i] - delta);
        mo[i].write(m);
        vo[i].write(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::normal_values;
    use burn::tensor::Device;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Hand-computed one-element steps: first step (no moments), later step with weight decay,
    /// and the momentum direction.
    #[test]
    fn one_element_by_hand() {
        let device = Device::flex();
        let t = |x: f32| Tensor::<1>::from_floats([x], &device);
        let adaptive = MomentStep {
            beta_1: 0.5,
            beta_2: 0.75,
            weight_decay: 0.0,
            epsilon: 0.0,
            direction: Direction::Adaptive { scale: 0.25 },
        };
        // m = 0.5 * 2 = 1, v = 0.25 * 4 = 1, p = 1 - 0.25 * 1 / 1 = 0.75.
        let [p, m, v] = moment_step(&t(1.0), &t(2.0), None, &adaptive).unwrap();
        assert_eq!([values(p), values(m), values(v)], [[0.75], [1.0], [1.0]]);
        // g = 1 + 0.5 * 2 = 2; m = 0.5 * 2 + 0.5 * 2 = 2; v = 0.75 * 4 + 0.25 * 4 = 4;
        // p = 2 - 0.25 * 2 / 2 = 1.75.
        let decayed = MomentStep {
            weight_decay: 0.5,
            ..adaptive
        };
        let [p, m, v] = moment_step(&t(2.0), &t(1.0), Some((&t(2.0), &t(4.0))), &decayed).unwrap();
        assert_eq!([values(p), values(m), values(v)], [[1.75], [2.0], [4.0]]);
        // Momentum: p = 1 - 0.25 * 1.
        let momentum = MomentStep {
            direction: Direction::Momentum { scale: 0.25 },
            ..adaptive
        };
        let [p, ..] = moment_step(&t(1.0), &t(2.0), None, &momentum).unwrap();
        assert_eq!(values(p), [0.75]);
    }

    /// A parameter split into many parallel pieces (with a short last one) gives the values of
    /// a plain loop, to the bit.
    #[test]
    fn parallel_pieces_match_a_loop() {
        let device = Device::flex();
        let n = 3 * PIECE + 123;
        let r = |seed| Tensor::<1>::from_floats(&normal_values(n, seed, 0.0, 1.0)[..], &device);
        let (p, g, m) = (r(1), r(2), r(3));
        let v = r(4).abs();
        let step = MomentStep {
            beta_1: 0.9,
            beta_2: 0.999,
            weight_decay: 1e-2,
            epsilon: 1e-8,
            direction: Direction::Adaptive { scale: 3e-3 },
        };
        let got = moment_step(&p, &g, Some((&m, &v)), &step)
            .unwrap()
            .map(values);
        let [p, g, m, v] = [p, g, m, v].map(values);
        let s = Scalars::new(&step);
        for i in [0, 1, PIECE - 1, PIECE, 2 * PIECE + 7, n - 1] {
            let gi = g[i] + p[i] * s.wd.unwrap();
            let mi = m[i] * s.b1 + gi * s.c1;
            let vi = v[i] * s.b2 + (gi * gi) * s.c2;
            let pi = p[i] - (mi * s.scale) / (vi.sqrt() + s.eps);
            assert_eq!([got[0][i], got[1][i], got[2][i]], [pi, mi, vi], "at {i}");
        }
    }

    #[test]
    fn mismatched_shapes_and_other_backends_fall_back() {
        let device = Device::flex();
        let step = MomentStep {
            beta_1: 0.9,
            beta_2: 0.999,
            weight_decay: 0.0,
            epsilon: 1e-8,
            direction: Direction::Momentum { scale: 1.0 },
        };
        let a = Tensor::<1>::from_floats([1.0, 2.0], &device);
        let b = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device);
        assert!(moment_step(&a, &b, None, &step).is_none());
        assert!(moment_step(&a, &a, Some((&a, &b)), &step).is_none());
        // An autodiff tensor is not a plain CPU one: the generic path takes it.
        let tracked = Tensor::<1>::from_floats([1.0, 2.0], &device.autodiff());
        assert!(moment_step(&tracked, &tracked, None, &step).is_none());
        assert!(moment_step(&a, &a, None, &step).is_some());
    }
}
