//! Plumbing shared by mmssl's fused operations on burn's CPU backend (`flex`): the fused batch
//! norm, activation and convolution here, and the fused InfoNCE.
//!
//! A fused operation takes its tensors down to the backend primitive ([`autodiff_primitive`],
//! [`plain_primitive`]), reads them in place as [`HostTensor`]s, multiplies with [`matmul`] and
//! hands a [`HostTensor`] back to burn. Anything that is not an `f32` tensor on `flex` gives
//! `None`, and the caller takes burn's generic path.

use burn::tensor::{DType, Shape, Tensor, TensorData};
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_backend::BackendTypes;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

mod matmul;

pub use matmul::{Operand, Store, matmul, matmul_strided};

/// burn's CPU backend with autodiff, as `Device::flex().autodiff()` creates it.
pub type AdFlex = burn_autodiff::Autodiff<Flex, NoCheckpointing>;
/// A float tensor primitive of [`AdFlex`].
pub type AdTensor = <AdFlex as BackendTypes>::FloatTensorPrimitive;

/// The autodiff CPU primitive of `x`, if `x` is an `f32` tensor on `Device::flex().autodiff()`.
pub fn autodiff_primitive<const D: usize>(x: &Tensor<D>) -> Option<AdTensor> {
    let p = x.clone().try_into_primitive::<AdFlex>().ok()?;
    (p.primitive().dtype() == DType::F32).then_some(p)
}

/// The CPU primitive of `x`, if `x` is an `f32` tensor on `Device::flex()` (no autodiff).
pub fn plain_primitive<const D: usize>(x: &Tensor<D>) -> Option<FlexTensor> {
    let p = x.clone().try_into_primitive::<Flex>().ok()?;
    (p.dtype() == DType::F32).then_some(p)
}

/// A contiguous `f32` CPU tensor whose values are read in place: made without a copy from a
/// tensor that is already contiguous, and cheap to clone (the storage is shared).
#[derive(Debug, Clone)]
pub struct HostTensor(FlexTensor);

impl HostTensor {
    /// `t` as a contiguous tensor (copied only if it is a strided view); `None` unless `f32`.
    pub fn new(t: &FlexTensor) -> Option<Self> {
        if t.dtype() != DType::F32 {
            return None;
        }
        let c = t.to_contiguous();
        c.as_slice::<f32>()?;
        Some(HostTensor(c))
    }

    /// A tensor of `shape` holding `values` (row-major).
    pub fn from_vec(values: Vec<f32>, shape: impl Into<Shape>) -> Self {
        HostTensor(FlexTensor::from_data(TensorData::new(values, shape)))
    }

    /// The values, row-major.
    pub fn values(&self) -> &[f32] {
        self.0
            .as_slice::<f32>()
            .expect("a HostTensor is contiguous f32 by construction")
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        self.0.layout().shape()
    }

    /// The backend tensor, for handing back to burn.
    pub fn into_flex(self) -> FlexTensor {
        self.0
    }
}

/// `len` zeros; a large buffer is zeroed by all of rayon's threads (a serial `vec![0.0; len]`
/// left the other core idle for ~10% of a 2D step across the fused operations' buffers).
pub fn zeros(len: usize) -> Vec<f32> {
    const PIECE: usize = 1 << 15;
    if len < 2 * PIECE {
        return vec![0.0; len];
    }
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(PIECE)
        .for_each(|piece| piece.fill(std::mem::MaybeUninit::new(0.0)));
    // SAFETY: the first `len` values were all just written.
    unsafe { v.set_len(len) };
    v
}

/// A vector of `len` values written by `fill`, without zeroing them first: the outputs of the
/// element-wise passes (activations, batch norm), which write every value anyway; zeroing
/// them first was a pass over memory of its own (~2% of a 2D step). `fill` receives the
/// vector's `len` slots and may spread them over rayon's threads.
///
/// # Safety
/// `fill` must write every one of the `len` slots (through [`std::mem::MaybeUninit::write`]).
pub unsafe fn filled(len: usize, fill: impl FnOnce(&mut [std::mem::MaybeUninit<f32>])) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    fill(&mut v.spare_capacity_mut()[..len]);
    // SAFETY: the caller's `fill` wrote every one of the first `len` values.
    unsafe { v.set_len(len) };
    v
}

/// The element-wise sum of `parts` (each `len` values), added in the order given: parallel
/// loops keep one partial sum per fixed run of work and add them here, so that the result is
/// the same on every run. `len` zeros when there are no parts.
pub fn sum_in_order<T>(parts: impl IntoIterator<Item = Vec<T>>, len: usize) -> Vec<T>
where
    T: Copy + Default + std::ops::AddAssign,
{
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_else(|| vec![T::default(); len]);
    for part in parts {
        for (a, &v) in total.iter_mut().zip(&part) {
            *a += v;
        }
    }
    total
}

/// A buffer of `f32`s that goes back to a process-wide pool when dropped, and is taken from it
/// again by the next [`Recycled::take`] of the same length: the fused operations' large
/// intermediates kept from forward to backward (convolution columns, InfoNCE score matrices)
/// are then neither allocated nor zeroed again every step. The contents of a taken buffer are
/// unspecified (zeros when new, stale values when recycled): for buffers that are overwritten
/// whole.
#[derive(Debug)]
pub struct Recycled(Vec<f32>);

/// Buffers of dropped [`Recycled`]s.
static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// Most values the pool holds (1 GiB); a buffer beyond it is freed.
const POOL_LIMIT: usize = 1 << 28;

impl Recycled {
    /// A buffer of `len` values: a pooled one of that length if any, else new (zeroed).
    pub fn take(len: usize) -> Recycled {
        let mut pool = POOL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match pool.iter().position(|v| v.len() == len) {
            Some(i) => Recycled(pool.swap_remove(i)),
            None => {
                drop(pool);
                Recycled(zeros(len))
            }
        }
    }
}

impl std::ops::Deref for Recycled {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Recycled {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if buf.is_empty() {
            return;
        }
        let mut pool = POOL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held: usize = pool.iter().map(Vec::len).sum();
        if held + buf.len() <= POOL_LIMIT {
            pool.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_holds_what_its_fill_wrote() {
        for len in [0, 1, 5, 40_000] {
            // SAFETY: every slot is written.
            let v = unsafe {
                filled(len, |slots| {
                    slots
                        .par_chunks_mut(1000)
                        .enumerate()
                        .for_each(|(p, piece)| {
                            for (i, s) in piece.iter_mut().enumerate() {
                                s.write((p * 1000 + i) as f32);
                            }
                        })
                })
            };
            assert_eq!(v, (0..len).map(|i| i as f32).collect::<Vec<_>>());
        }
    }

    #[test]
    fn partial_sums_add_element_wise_and_none_give_zeros() {
        let parts = vec![vec![1.0f32, 2.0], vec![0.5, -1.0], vec![0.25, 4.0]];
        assert_eq!(sum_in_order(parts, 2), vec![1.75, 5.0]);
        assert_eq!(sum_in_order(Vec::<Vec<f64>>::new(), 3), vec![0.0; 3]);
    }

    #[test]
    fn zeros_are_zeros_at_every_size() {
        for len in [0, 1, 1000, (1 << 16) - 1, 1 << 16, 3 * (1 << 15) + 7] {
            let z = zeros(len);
            assert_eq!(z.len(), len);
            assert!(z.iter().all(|&v| v.to_bits() == 0), "len {len}");
        }
    }

    #[test]
    fn host_tensors_read_strided_views_and_refuse_other_dtypes() {
        let t = FlexTensor::from_data(TensorData::new(
            vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0],
            [2, 3],
        ));
        let h = HostTensor::new(&t.transpose(0, 1)).unwrap();
        assert_eq!(h.values(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(h.shape().dims::<2>(), [3, 2]);
        let ints = FlexTensor::from_data(TensorData::new(vec![1i64, 2], [2]));
        assert!(HostTensor::new(&ints).is_none());
    }
}
