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

/// How [`matmul`] stores its product: `dst = scale x product`, or `dst += scale x product`
/// with `accumulate`; with `parallel`, on every thread of the current rayon pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Store {
    /// The factor of the product.
    pub scale: f32,
    /// Add to the destination instead of overwriting it.
    pub accumulate: bool,
    /// Use every thread of the current rayon pool (else the calling thread only).
    pub parallel: bool,
}

impl Store {
    /// `dst = product`, on the calling thread.
    pub const SET: Store = Store {
        scale: 1.0,
        accumulate: false,
        parallel: false,
    };
    /// `dst += product`, on the calling thread.
    pub const ADD: Store = Store {
        scale: 1.0,
        accumulate: true,
        parallel: false,
    };

    /// The same with the product multiplied by `scale`.
    pub const fn scaled(self, scale: f32) -> Store {
        Store { scale, ..self }
    }

    /// The same on every thread of the current pool when `parallel`.
    pub const fn threads(self, parallel: bool) -> Store {
        Store { parallel, ..self }
    }
}

/// `dst [m, n] = scale lhs [m, k] x rhs [k, n]` (or `dst += ...`, as `store` says), `dst`
/// row-major, through the `gemm` crate (the one burn's CPU backend uses).
///
/// # Panics
/// If an operand is too short for its shape and strides.
pub fn matmul(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    store: Store,
) {
    matmul_strided(dst, (n, 1), (m, n, k), lhs, rhs, store);
}

/// [`matmul`] into a destination with its own `(row, column)` strides: `dst[i * row + j *
/// column]` receives element `(i, j)`, so a product can be written transposed in place.
///
/// # Panics
/// If an operand or the destination is too short for its shape and strides, or if distinct
/// destination elements would share a slot (a zero stride with more than one row or column).
pub fn matmul_strided(
    dst: &mut [f32],
    (row_stride, col_stride): (usize, usize),
    (m, n, k): (usize, usize, usize),
    lhs: Operand<'_>,
    rhs: Operand<'_>,
    store: Store,
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
    let product = Product {
        dst: dst.as_mut_ptr(),
        dst_strides: (row_stride, col_stride),
        lhs,
        rhs,
        k,
        store,
    };
    let threads = if store.parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let by_rows = m >= n;
    let long = if by_rows { m } else { n };
    let parts = threads.min(long / SPLIT_GRAIN);
    let disjoint = row_stride >= n * col_stride || col_stride >= m * row_stride;
    if parts < 2 || !disjoint || m * n * k < gemm::get_threading_threshold() {
        let parallelism = if store.parallel {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: the assertions keep every index the shapes and strides reach inside the
        // slices, and `dst` is exclusively borrowed. Distinct (i, j) may still share a slot when
        // the strides overlap (e.g. row 1, column 1): the products are then summed in an
        // unspecified order, which is wrong but not undefined behaviour; callers pass disjoint
        // layouts.
        unsafe { product.block((0, 0), (m, n), parallelism) };
        return;
    }
    // The longer side of the destination cut into one run per thread (whole 16-wide vectors),
    // each run a single-threaded product of its rows of `lhs` or its columns of `rhs`.
    let run = long.div_ceil(parts).next_multiple_of(16);
    (0..long.div_ceil(run)).into_par_iter().for_each(|r| {
        let (first, len) = (r * run, run.min(long - r * run));
        let (origin, size) = if by_rows {
            ((first, 0), (len, n))
        } else {
            ((0, first), (m, len))
        };
        // SAFETY: as above for the indices; the runs cover disjoint rows (or columns) and, with
        // `disjoint`, no two elements of the destination share a slot, so no two threads write
        // the same value.
        unsafe { product.block(origin, size, gemm::Parallelism::None) };
    });
}

/// Rows (or columns) of the destination below which a parallel [`matmul`] is not cut into one
/// single-threaded product per thread. gemm's own threads split the thin products of the
/// convolutions and InfoNCE (64 rows) badly: on a 2-core AVX-512 Xeon its two threads gave
/// 71-75 GFLOP/s on 64 x 4096 x 2048, below its single thread's ~100 (docs/performance.md,
/// item 17).
const SPLIT_GRAIN: usize = 64;

/// The operands of one [`matmul_strided`], shared by the threads that compute its blocks.
struct Product<'a> {
    dst: *mut f32,
    dst_strides: (usize, usize),
    lhs: Operand<'a>,
    rhs: Operand<'a>,
    k: usize,
    /// Its scale and accumulation (its `parallel` is the caller's to act on).
    store: Store,
}

// SAFETY: the threads write disjoint blocks of `dst` (see `matmul_strided`) and only read the
// operands.
unsafe impl Sync for Product<'_> {}

impl Product<'_> {
    /// `dst[origin.., ..size] (+)= scale lhs[origin.0 .., :] x rhs[:, origin.1 ..]`.
    ///
    /// # Safety
    /// The block's elements must lie inside the destination and the operands, and no other
    /// thread may write them meanwhile.
    unsafe fn block(
        &self,
        (i0, j0): (usize, usize),
        (m, n): (usize, usize),
        parallelism: gemm::Parallelism,
    ) {
        let (rs, cs) = self.dst_strides;
        let (
            lhs,
            rhs,
            Store {
                scale, accumulate, ..
            },
        ) = (self.lhs, self.rhs, self.store);
        // SAFETY: the caller's contract; the offsets stay inside the checked reaches.
        unsafe {
            gemm::gemm(
                m,
                n,
                self.k,
                self.dst.add(i0 * rs + j0 * cs),
                cs as isize,
                rs as isize,
                accumulate,
                lhs.data.as_ptr().add(i0 * lhs.row_stride),
                lhs.col_stride as isize,
                lhs.row_stride as isize,
                rhs.data.as_ptr().add(j0 * rhs.col_stride),
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
}

#[cfg(test)]
mod tests {
    /// `d = lhs rhs` (no scaling, no accumulation, serial).
    fn product(d: &mut [f32], dims: (usize, usize, usize), lhs: Operand<'_>, rhs: Operand<'_>) {
        matmul(d, dims, lhs, rhs, Store::SET);
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
        matmul(
            &mut got,
            (m, n, k),
            lhs,
            rhs,
            Store::SET.scaled(2.0).threads(true),
        );
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        matmul(&mut got, (m, n, k), lhs, rhs, Store::ADD.scaled(2.0));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - 2.0 * w).abs() < 1e-5, "accumulated {g} vs {}", 2.0 * w);
        }
    }

    #[test]
    fn a_parallel_product_cut_per_thread_equals_the_serial_one_to_the_bit() {
        // Above gemm's threading threshold and long enough to cut, on a pool of 3 threads: by
        // rows (m > n) and by columns (n > m), into row-major and transposed destinations,
        // with scaling and accumulation. Every element is one single-threaded sum over k in
        // gemm's order either way, so the values are identical; and they match a loop.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (m, n, k) in [(200, 70, 64), (70, 300, 48), (130, 130, 40)] {
            assert!(m * n * k >= gemm::get_threading_threshold());
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            let (lhs, rhs) = (Operand::rows(&a, k), Operand::rows(&b, n));
            for strides in [(n, 1), (1, m)] {
                let start: Vec<f32> = (0..m * n).map(|i| (i % 7) as f32).collect();
                let run = |parallel: bool, accumulate: bool| {
                    let mut d = start.clone();
                    pool.install(|| {
                        matmul_strided(
                            &mut d,
                            strides,
                            (m, n, k),
                            lhs,
                            rhs,
                            Store {
                                scale: 0.5,
                                accumulate,
                                parallel,
                            },
                        )
                    });
                    d
                };
                for accumulate in [false, true] {
                    let (serial, cut) = (run(false, accumulate), run(true, accumulate));
                    assert!(
                        serial
                            .iter()
                            .zip(&cut)
                            .all(|(s, c)| s.to_bits() == c.to_bits()),
                        "{m}x{n}x{k}, strides {strides:?}, accumulate {accumulate}"
                    );
                    for (i, j) in [(0, 0), (m - 1, n - 1), (m / 2, n / 3), (m - 1, 0)] {
                        let dot: f32 = (0..k).map(|q| a[i * k + q] * b[q * n + j]).sum();
                        let slot = i * strides.0 + j * strides.1;
                        let want = 0.5 * dot + if accumulate { start[slot] } else { 0.0 };
                        assert!(
                            (cut[slot] - want).abs() < 1e-4,
                            "({i}, {j}): {} vs {want}",
                            cut[slot]
                        );
                    }
                }
            }
        }
    }

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
            Store::SET,
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
        matmul_strided(&mut d, (1, 2), (2, 2, 1), lhs, rhs, Store::SET);
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
