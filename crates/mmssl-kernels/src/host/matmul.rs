//! The matrix products of the fused operations: [`matmul`] and [`matmul_strided`] through the
//! `gemm` crate, with operands and destinations read and written in place through their strides,
//! and parallel products cut into one single-threaded product per thread.

use rayon::prelude::*;

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
}
