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

/// A matrix operand of [`matmul`]: values and the strides between columns and between rows, so
/// a transposed matrix is read in place.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    data: &'a [f32],
    col_stride: usize,
    row_stride: usize,
}

impl<'a> Operand<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Operand {
            data,
            col_stride: 1,
            row_stride: cols,
        }
    }

    /// The transpose of a row-major `[cols, rows]` matrix: a `[rows, cols]` operand.
    pub fn transposed(data: &'a [f32], rows: usize) -> Self {
        Operand {
            data,
            col_stride: rows,
            row_stride: 1,
        }
    }

    /// Index of the last element of an `[rows, cols]` view, or `None` for an empty one.
    fn reach(&self, rows: usize, cols: usize) -> Option<usize> {
        reach(rows, cols, self.row_stride, self.col_stride)
    }
}

/// Index of the last element of an `[rows, cols]` view with these strides, `None` if empty.
fn reach(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    (rows > 0 && cols > 0).then(|| (rows - 1) * row_stride + (cols - 1) * col_stride)
}

/// `dst [m, n] = scale lhs [m, k] x rhs [k, n]` (or `dst += ...` with `accumulate`), `dst`
/// row-major, through the `gemm` crate (the one burn's CPU backend uses), with its own threads
/// when `parallel`.
///
/// # Panics
/// If an operand is too short for its shape and strides.
pub fn matmul(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    scale: f32,
    accumulate: bool,
    parallel: bool,
) {
    matmul_strided(
        dst,
        (n, 1),
        (m, n, k),
        lhs,
        rhs,
        scale,
        accumulate,
        parallel,
    );
}

/// [`matmul`] into a destination with its own `(row, column)` strides: `dst[i * row + j *
/// column]` receives element `(i, j)`, so a product can be written transposed in place.
///
/// # Panics
/// If an operand or the destination is too short for its shape and strides, or if distinct
/// destination elements would share a slot (a zero stride with more than one row or column).
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided(
    dst: &mut [f32],
    (row_stride, col_stride): (usize, usize),
    (m, n, k): (usize, usize, usize),
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    scale: f32,
    accumulate: bool,
    parallel: bool,
) {
    assert!(
        reach(m, n, row_stride, col_stride).is_none_or(|last| last < dst.len()),
        "matmul: destination shorter than {m} x {n}"
    );
    assert!(
        (row_stride > 0 || m <= 1) && (col_stride > 0 || n <= 1),
        "matmul: a zero destination stride would alias elements"
    );
    let fits = |o: &Operand<'_>, r, c| o.reach(r, c).is_none_or(|last| last < o.data.len());
    assert!(
        fits(&lhs, m, k),
        "matmul: left operand shorter than {m} x {k}"
    );
    assert!(
        fits(&rhs, k, n),
        "matmul: right operand shorter than {k} x {n}"
    );
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assertions keep every index the shapes and strides reach inside the slices,
    // and `dst` is exclusively borrowed. Distinct (i, j) may still share a slot when the
    // strides overlap (e.g. row 1, column 1): the products are then summed in an unspecified
    // order, which is wrong but not undefined behaviour; callers pass disjoint layouts.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            col_stride as isize,
            row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    /// `d = lhs rhs` (no scaling, no accumulation, serial).
    fn product(d: &mut [f32], dims: (usize, usize, usize), lhs: Operand<'_>, rhs: Operand<'_>) {
        matmul(d, dims, lhs, rhs, 1.0, false, false);
    }
    use super::*;

    #[test]
    fn matmul_matches_a_loop_with_transposed_operands_and_accumulation() {
        let (m, n, k) = (3, 4, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect(); // [m, k]
        let bt: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect(); // [n, k]
        let mut want = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = 2.0 * (0..k).map(|q| a[i * k + q] * bt[j * k + q]).sum::<f32>();
            }
        }
        let mut got = vec![0.0f32; m * n];
        let (lhs, rhs) = (Operand::rows(&a, k), Operand::transposed(&bt, k));
        matmul(&mut got, (m, n, k), lhs, rhs, 2.0, false, true);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        matmul(&mut got, (m, n, k), lhs, rhs, 2.0, true, false);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - 2.0 * w).abs() < 1e-5, "accumulated {g} vs {}", 2.0 * w);
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
    fn a_strided_destination_receives_the_transposed_product() {
        let (m, n, k) = (3, 2, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 - 5.0).collect(); // [m, k]
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32).sqrt()).collect(); // [k, n]
        let mut row_major = vec![0.0f32; m * n];
        product(
            &mut row_major,
            (m, n, k),
            Operand::rows(&a, k),
            Operand::rows(&b, n),
        );
        // Element (i, j) to slot j * m + i: the transpose, row-major [n, m].
        let mut transposed = vec![0.0f32; m * n];
        matmul_strided(
            &mut transposed,
            (1, m),
            (m, n, k),
            Operand::rows(&a, k),
            Operand::rows(&b, n),
            1.0,
            false,
            false,
        );
        for i in 0..m {
            for j in 0..n {
                assert_eq!(transposed[j * m + i], row_major[i * n + j]);
            }
        }
    }

    #[test]
    #[should_panic(expected = "destination shorter")]
    fn a_short_strided_destination_is_refused() {
        // A 2 x 2 product into a strided destination needs 4 slots; 3 are given.
        let (a, mut d) = ([1.0f32; 4], [0.0f32; 3]);
        let (lhs, rhs) = (Operand::rows(&a, 1), Operand::rows(&a, 2));
        matmul_strided(&mut d, (1, 2), (2, 2, 1), lhs, rhs, 1.0, false, false);
    }

    #[test]
    #[should_panic(expected = "right operand shorter")]
    fn matmul_rejects_short_operands() {
        // The right operand of a (2 x 3) x (3 x 2) product needs 6 values; 5 are given.
        let (a, mut d) = ([1.0f32; 6], [0.0f32; 4]);
        product(
            &mut d,
            (2, 2, 3),
            Operand::rows(&a, 3),
            Operand::rows(&a[..5], 2),
        );
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
