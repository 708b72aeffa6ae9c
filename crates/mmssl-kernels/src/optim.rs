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
use burn::tensor::{DType, Tensor};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

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

/// What [`moment_step`] gives back where it does not apply: the tensors it was handed.
#[derive(Debug)]
pub struct Unfused<const D: usize> {
    /// The parameter.
    pub param: Tensor<D>,
    /// The previous moments `(m, v)`, if any.
    pub moments: Option<(Tensor<D>, Tensor<D>)>,
}

/// The new parameter, first moment and second moment after one [`MomentStep`], as one
/// parallel pass on the CPU backend. `moments` are the previous `(m, v)`, `None` at the first
/// step. The parameter and the moments are updated **in place** where this holds their only
/// reference (the optimiser's case: no new buffers, no page faults), in copies otherwise, so a
/// tensor shared elsewhere is never changed. Where it does not apply (another backend, not
/// `f32`, shapes that differ) the tensors come back in [`Unfused`] for burn's generic
/// operations (boxed: a tensor handle is large).
pub fn moment_step<const D: usize>(
    param: Tensor<D>,
    grad: &Tensor<D>,
    moments: Option<(Tensor<D>, Tensor<D>)>,
    step: &MomentStep,
) -> Result<[Tensor<D>; 3], Box<Unfused<D>>> {
    let dims = param.dims();
    let fits = |t: &Tensor<D>| t.dims() == dims && plain_primitive(t).is_some();
    let applies = fits(&param) && moments.as_ref().is_none_or(|(m, v)| fits(m) && fits(v));
    let Some(g) = plain_primitive(grad).filter(|_| applies && grad.dims() == dims) else {
        return Err(Box::new(Unfused { param, moments }));
    };
    let g = HostTensor::new(&g).expect("an f32 flex tensor");
    // Checked above: each converts (and the primitives taken for the checks are gone).
    let own = |t: Tensor<D>| whole(t.try_into_primitive::<Flex>().expect("an f32 flex tensor"));
    let first = moments.is_none();
    let (m, v) = match moments {
        Some((m, v)) => (own(m), own(v)),
        // Read as zeros by nothing: the first step ignores the previous moments.
        None => {
            let zeros = || whole(FlexTensor::zeros(dims.into(), DType::F32));
            (zeros(), zeros())
        }
    };
    let mut out = [own(param), m, v];
    {
        // Copied first where shared (copy on write); in place otherwise.
        let [p, m, v] = out.each_mut().map(|t| t.storage_mut::<f32>());
        update(p, g.values(), m, v, first, &Scalars::new(step));
    }
    Ok(out.map(Tensor::from_primitive::<Flex>))
}

/// `t` holding exactly its own values, contiguously from the start of its storage (copied into
/// such a tensor if it is a view), so that its storage is its values.
fn whole(t: FlexTensor) -> FlexTensor {
    let n = t.layout().shape().num_elements();
    if t.layout().contiguous_offsets() == Some((0, n)) && t.bytes().len() == 4 * n {
        return t;
    }
    let h = HostTensor::new(&t).expect("an f32 flex tensor");
    HostTensor::from_vec(h.values().to_vec(), h.shape().clone()).into_flex()
}

/// The update of one value: `(p', m', v')` from `p`, `g` and the previous moments.
#[inline(always)]
fn one(p: f32, g: f32, previous: Option<(f32, f32)>, s: &Scalars) -> (f32, f32, f32) {
    let mut g = g;
    if let Some(wd) = s.wd {
        g += p * wd;
    }
    let (m, v) = match previous {
        Some((m, v)) => (m * s.b1 + g * s.c1, v * s.b2 + (g * g) * s.c2),
        None => (g * s.c1, (g * g) * s.c2),
    };
    let delta = if s.adaptive {
        (m * s.scale) / (v.sqrt() + s.eps)
    } else {
        m * s.scale
    };
    (p - delta, m, v)
}

/// [`one`] over the parameter and both moments in place (`first`: the moments' values are not
/// read), in parallel pieces.
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], first: bool, s: &Scalars) {
    match first {
        true => update_with::<true>(p, g, m, v, s),
        false => update_with::<false>(p, g, m, v, s),
    }
}

/// [`update`] compiled for each value of `FIRST`, so that the loop has no branch to vectorise
/// around.
fn update_with<const FIRST: bool>(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    s: &Scalars,
) {
    type Mut<'a> = &'a mut [f32];
    let piece = |((p, g), (m, v)): ((Mut, &[f32]), (Mut, Mut))| {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let previous = if FIRST { None } else { Some((*m, *v)) };
            (*p, *m, *v) = one(*p, g, previous, s);
        }
    };
    if p.len() <= PIECE {
        return piece(((p, g), (m, v)));
    }
    p.par_chunks_mut(PIECE)
        .zip(g.par_chunks(PIECE))
        .zip(m.par_chunks_mut(PIECE).zip(v.par_chunks_mut(PIECE)))
        .for_each(piece);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::plain_primitive;
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
        let [p, m, v] = moment_step(t(1.0), &t(2.0), None, &adaptive).unwrap();
        assert_eq!([values(p), values(m), values(v)], [[0.75], [1.0], [1.0]]);
        // g = 1 + 0.5 * 2 = 2; m = 0.5 * 2 + 0.5 * 2 = 2; v = 0.75 * 4 + 0.25 * 4 = 4;
        // p = 2 - 0.25 * 2 / 2 = 1.75.
        let decayed = MomentStep {
            weight_decay: 0.5,
            ..adaptive
        };
        let [p, m, v] = moment_step(t(2.0), &t(1.0), Some((t(2.0), t(4.0))), &decayed).unwrap();
        assert_eq!([values(p), values(m), values(v)], [[1.75], [2.0], [4.0]]);
        // Momentum: p = 1 - 0.25 * 1.
        let momentum = MomentStep {
            direction: Direction::Momentum { scale: 0.25 },
            ..adaptive
        };
        let [p, ..] = moment_step(t(1.0), &t(2.0), None, &momentum).unwrap();
        assert_eq!(values(p), [0.75]);
    }

    /// A parameter split into many parallel pieces (with a short last one) gives the values of
    /// a plain loop, to the bit, whether its tensors are updated in place (held only here) or
    /// into new ones (shared: the shared copies keep their values); at the first step too.
    #[test]
    fn parallel_pieces_in_place_or_not_match_a_loop() {
        let device = Device::flex();
        let n = 3 * PIECE + 123;
        let r = |seed| Tensor::<1>::from_floats(&normal_values(n, seed, 0.0, 1.0)[..], &device);
        let step = MomentStep {
            beta_1: 0.9,
            beta_2: 0.999,
            weight_decay: 1e-2,
            epsilon: 1e-8,
            direction: Direction::Adaptive { scale: 3e-3 },
        };
        let s = Scalars::new(&step);
        let [p, g, m, v] = [r(1), r(2), r(3), r(4).abs()].map(values);
        let expect = |i: usize, first: bool| {
            let gi = g[i] + p[i] * s.wd.unwrap();
            let (mi, vi) = match first {
                true => (gi * s.c1, (gi * gi) * s.c2),
                false => (m[i] * s.b1 + gi * s.c1, v[i] * s.b2 + (gi * gi) * s.c2),
            };
            [p[i] - (mi * s.scale) / (vi.sqrt() + s.eps), mi, vi]
        };
        let address = |t: &Tensor<1>| plain_primitive(t).unwrap().bytes().as_ptr() as usize;
        let grad = r(2);
        for (first, shared) in [(false, false), (false, true), (true, false), (true, true)] {
            let (param, moments) = (r(1), (!first).then(|| (r(3), r(4).abs())));
            let before = [
                address(&param),
                moments.as_ref().map_or(0, |(m, _)| address(m)),
            ];
            let kept = shared.then(|| (param.clone(), moments.clone()));
            let out = moment_step(param, &grad, moments, &step).unwrap();
            let after = [address(&out[0]), address(&out[1])];
            let what = format!("first step {first}, shared {shared}");
            assert_eq!(after[0] == before[0], !shared, "{what}: parameter in place");
            if !first {
                assert_eq!(after[1] == before[1], !shared, "{what}: moment in place");
            }
            let got = out.map(values);
            for i in [0, 1, PIECE - 1, PIECE, 2 * PIECE + 7, n - 1] {
                let want = expect(i, first);
                assert_eq!([got[0][i], got[1][i], got[2][i]], want, "{what}, at {i}");
            }
            if let Some((param, moments)) = kept {
                assert_eq!(
                    values(param),
                    p,
                    "{what}: the shared parameter is unchanged"
                );
                if let Some((m0, _)) = moments {
                    assert_eq!(values(m0), m, "{what}: the shared moment is unchanged");
                }
            }
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
        assert!(moment_step(a.clone(), &b, None, &step).is_err());
        let back = moment_step(a.clone(), &a, Some((a.clone(), b.clone())), &step).unwrap_err();
        // The tensors come back as they were.
        assert_eq!(values(back.param), [1.0, 2.0]);
        assert_eq!(
            back.moments.map(|(_, v)| values(v)),
            Some(vec![1.0, 2.0, 3.0])
        );
        // An autodiff tensor is not a plain CPU one: the generic path takes it.
        let tracked = Tensor::<1>::from_floats([1.0, 2.0], &device.autodiff());
        assert!(moment_step(tracked.clone(), &tracked, None, &step).is_err());
        assert!(moment_step(a.clone(), &a, None, &step).is_ok());
    }
}
