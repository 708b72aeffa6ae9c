//! Linear centred kernel alignment (Kornblith et al., "Similarity of Neural Network
//! Representations Revisited", ICML 2019; eq. 2 of Fedorov et al., ISBI 2021), and its
//! debiased form built on the unbiased HSIC estimator of Song et al. (JMLR 2012).

use crate::error::{Result, SimilarityError};
use crate::prepare::centred_pair;
use ndarray::{Array1, Array2, ArrayView2, Axis};

/// Linear CKA: `||B^T A||_F^2 / (||A^T A||_F ||B^T B||_F)` on column-centred A and B.
///
/// Invariant to orthogonal transforms and isotropic scaling of either side, in `[0, 1]`.
///
/// ```
/// use ndarray::array;
/// let a = array![[1.0, 2.0], [0.5, -1.0], [3.0, 0.0], [1.0, 1.0]];
/// let cka = mmssl_similarity::linear_cka(a.view(), (&a * 3.0).view()).unwrap();
/// assert!((cka - 1.0).abs() < 1e-12);
/// ```
pub fn linear_cka(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<f64> {
    let (ac, bc) = centred_pair("linear CKA", 2, a, b)?;
    let cross = frob2(&bc.t().dot(&ac));
    let norm_a = frob2(&ac.t().dot(&ac)).sqrt();
    let norm_b = frob2(&bc.t().dot(&bc)).sqrt();
    Ok(cross / (norm_a * norm_b))
}

/// Debiased linear CKA: linear CKA with each HSIC replaced by its unbiased estimator
/// (Song et al. 2012, as used by Kornblith et al. 2019). Needs `n >= 4`.
///
/// With kernels `K = A A^T`, `L = B B^T` of centred data and `K~`, `L~` their copies with
/// zeroed diagonals, the estimator is
/// `[tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3))`,
/// which, because centred data gives `K 1 = 0`, reduces to
/// `||A^T B||_F^2 - n/(n-2) <k, l> + ||A||_F^2 ||B||_F^2 / ((n-1)(n-2))` (times
/// `1/(n(n-3))`), with `k`, `l` the squared row norms: computed here in `O(n d^2)`, never
/// forming an `n x n` matrix. Unlike linear CKA it can be slightly negative for unrelated
/// representations.
pub fn linear_cka_debiased(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<f64> {
    let (ac, bc) = centred_pair("debiased linear CKA", 4, a, b)?;
    let n = ac.nrows();
    let ka = row_norms2(&ac);
    let kb = row_norms2(&bc);
    let hsic = |xty2: f64, kx: &Array1<f64>, ky: &Array1<f64>| {
        let nf = n as f64;
        let sx = kx.sum();
        let sy = ky.sum();
        (xty2 - nf / (nf - 2.0) * kx.dot(ky) + sx * sy / ((nf - 1.0) * (nf - 2.0)))
            / (nf * (nf - 3.0))
    };
    let h_ab = hsic(frob2(&ac.t().dot(&bc)), &ka, &kb);
    let h_aa = hsic(frob2(&ac.t().dot(&ac)), &ka, &ka);
    let h_bb = hsic(frob2(&bc.t().dot(&bc)), &kb, &kb);
    for (matrix, value) in [("A", h_aa), ("B", h_bb)] {
        if value <= 0.0 || !value.is_finite() {
            return Err(SimilarityError::DebiasedUndefined { matrix, value, n });
        }
    }
    Ok(h_ab / (h_aa * h_bb).sqrt())
}

fn frob2(m: &Array2<f64>) -> f64 {
    m.iter().map(|x| x * x).sum()
}

fn row_norms2(m: &Array2<f64>) -> Array1<f64> {
    m.map_axis(Axis(1), |r| r.dot(&r))
}
