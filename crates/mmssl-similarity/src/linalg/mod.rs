//! The small linear-algebra interface the metrics are written against: thin QR, thin SVD and
//! the symmetric eigendecomposition, on `f64` ndarray matrices.
//!
//! Two implementations sit behind [`LinalgBackend`]:
//! - [`LinalgBackend::Faer`] (always available): the pure-Rust [faer](https://docs.rs/faer)
//!   crate, so a default build links no system library;
//! - `LinalgBackend::Lapack` (cargo feature `lapack`): LAPACK through `ndarray-linalg` over a
//!   system OpenBLAS (Debian: `libopenblas-dev`).
//!
//! Both give the same metric values to about 1e-10 (tested); decompositions themselves agree up
//! to the usual sign freedom of singular and eigen vectors.

mod faer_impl;
mod jacobi;

pub use jacobi::jacobi_eigh;
#[cfg(feature = "lapack")]
mod lapack_impl;

use crate::error::Result;
use ndarray::{Array1, Array2, ArrayView2};

/// A thin singular value decomposition `a = u * diag(s) * vt`.
#[derive(Debug, Clone)]
pub struct Svd {
    /// Left singular vectors, `m x k` with `k = min(m, n)`, orthonormal columns.
    pub u: Array2<f64>,
    /// Singular values, `k`, non-negative and non-increasing.
    pub s: Array1<f64>,
    /// Right singular vectors transposed, `k x n`, orthonormal rows.
    pub vt: Array2<f64>,
}

/// A symmetric eigendecomposition `a = vectors * diag(values) * vectors^T`.
#[derive(Debug, Clone)]
pub struct Eigh {
    /// Eigenvalues in non-decreasing order.
    pub values: Array1<f64>,
    /// Orthonormal eigenvectors as columns, in the order of `values`.
    pub vectors: Array2<f64>,
}

/// Which implementation of the decompositions to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinalgBackend {
    /// Pure Rust (faer). The default unless the `lapack` feature is enabled.
    Faer,
    /// LAPACK through ndarray-linalg (cargo feature `lapack`).
    #[cfg(feature = "lapack")]
    Lapack,
}

impl Default for LinalgBackend {
    /// LAPACK when the `lapack` feature is on, faer otherwise.
    fn default() -> Self {
        #[cfg(feature = "lapack")]
        {
            LinalgBackend::Lapack
        }
        #[cfg(not(feature = "lapack"))]
        {
            LinalgBackend::Faer
        }
    }
}

impl LinalgBackend {
    /// Every backend compiled into this build.
    pub fn available() -> Vec<LinalgBackend> {
        vec![
            LinalgBackend::Faer,
            #[cfg(feature = "lapack")]
            LinalgBackend::Lapack,
        ]
    }

    /// Thin QR of an `m x n` matrix with `m >= n`: `q` is `m x n` with orthonormal columns,
    /// `r` is `n x n` upper triangular, `a = q * r`.
    pub fn thin_qr(self, a: ArrayView2<f64>) -> Result<(Array2<f64>, Array2<f64>)> {
        match self {
            LinalgBackend::Faer => Ok(faer_impl::thin_qr(a)),
            #[cfg(feature = "lapack")]
            LinalgBackend::Lapack => lapack_impl::thin_qr(a),
        }
    }

    /// Thin SVD of an `m x n` matrix (see [`Svd`]).
    pub fn svd(self, a: ArrayView2<f64>) -> Result<Svd> {
        match self {
            LinalgBackend::Faer => faer_impl::svd(a),
            #[cfg(feature = "lapack")]
            LinalgBackend::Lapack => lapack_impl::svd(a),
        }
    }

    /// Singular values only, non-increasing.
    pub fn singular_values(self, a: ArrayView2<f64>) -> Result<Array1<f64>> {
        match self {
            LinalgBackend::Faer => faer_impl::singular_values(a),
            #[cfg(feature = "lapack")]
            LinalgBackend::Lapack => lapack_impl::singular_values(a),
        }
    }

    /// Eigendecomposition of a symmetric matrix (only its lower triangle is read).
    pub fn eigh(self, a: ArrayView2<f64>) -> Result<Eigh> {
        match self {
            LinalgBackend::Faer => faer_impl::eigh(a),
            #[cfg(feature = "lapack")]
            LinalgBackend::Lapack => lapack_impl::eigh(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    fn random(m: usize, n: usize, seed: u64) -> Array2<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((m, n), |_| rng.random_range(-1.0..1.0))
    }

    fn max_abs_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn qr_reconstructs_with_orthonormal_q_and_triangular_r() {
        let a = random(40, 7, 1);
        for backend in LinalgBackend::available() {
            let (q, r) = backend.thin_qr(a.view()).unwrap();
            assert_eq!(q.dim(), (40, 7));
            assert_eq!(r.dim(), (7, 7));
            assert!(max_abs_diff(&q.dot(&r), &a) < 1e-12, "{backend:?}");
            assert!(max_abs_diff(&q.t().dot(&q), &Array2::eye(7)) < 1e-12);
            for i in 0..7 {
                for j in 0..i {
                    assert_eq!(r[[i, j]], 0.0);
                }
            }
        }
    }

    #[test]
    fn svd_reconstructs_sorted_and_orthonormal() {
        for (m, n) in [(30, 6), (6, 30), (9, 9)] {
            let a = random(m, n, 2);
            for backend in LinalgBackend::available() {
                let svd = backend.svd(a.view()).unwrap();
                let k = m.min(n);
                assert_eq!(svd.u.dim(), (m, k));
                assert_eq!(svd.vt.dim(), (k, n));
                let rec = (&svd.u * &svd.s).dot(&svd.vt);
                assert!(max_abs_diff(&rec, &a) < 1e-12, "{backend:?} {m}x{n}");
                assert!(svd.s.windows(2).into_iter().all(|w| w[0] >= w[1]));
                assert!(max_abs_diff(&svd.u.t().dot(&svd.u), &Array2::eye(k)) < 1e-12);
                let sv = backend.singular_values(a.view()).unwrap();
                assert!((&sv - &svd.s).iter().all(|x| x.abs() < 1e-12));
            }
        }
    }

    #[test]
    fn eigh_reconstructs_ascending() {
        let x = random(12, 12, 3);
        let a = &x + &x.t();
        for backend in LinalgBackend::available() {
            let e = backend.eigh(a.view()).unwrap();
            let rec = (&e.vectors * &e.values).dot(&e.vectors.t());
            assert!(max_abs_diff(&rec, &a) < 1e-12, "{backend:?}");
            assert!(e.values.windows(2).into_iter().all(|w| w[0] <= w[1]));
        }
    }

    /// The spectrum of a known matrix: diag(3, 2, 1) rotated.
    #[test]
    fn known_spectrum() {
        let (q, _) = LinalgBackend::Faer.thin_qr(random(3, 3, 4).view()).unwrap();
        let a = q
            .dot(&Array2::from_diag(&ndarray::arr1(&[3.0, 2.0, 1.0])))
            .dot(&q.t());
        for backend in LinalgBackend::available() {
            let s = backend.singular_values(a.view()).unwrap();
            assert!((s[0] - 3.0).abs() < 1e-12 && (s[1] - 2.0).abs() < 1e-12);
            assert!((s[2] - 1.0).abs() < 1e-12);
            let e = backend.eigh(a.view()).unwrap();
            assert!((e.values[0] - 1.0).abs() < 1e-12 && (e.values[2] - 3.0).abs() < 1e-12);
        }
    }
}
