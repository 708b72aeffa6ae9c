//! The fused convolution against burn's, in value and gradients.

use super::products::{BLOCK_LIMIT, BLOCK_VALUES, KEEP_COLUMNS, KEEP_LIMIT};
use super::*;
use crate::test_util::{close, read};
use std::sync::atomic::Ordering::Relaxed;

/// Relative tolerance of the fused convolution against burn's.
const TOL: f32 = 1e-4;
use burn::module::Param;
use burn::nn::conv::{Conv2dConfig, Conv3dConfig};
use burn::tensor::{Device, Distribution};

/// (output, dx, dw) of the fused path and of burn's, with a random upstream gradient.
fn compare<const D: usize>(
    x: Tensor<D>,
    fused_path: impl Fn(Tensor<D>) -> Tensor<D>,
    generic: impl Fn(Tensor<D>) -> Tensor<D>,
    weight: impl Fn() -> Tensor<D>,
    what: &str,
) {
    let mut results = Vec::new();
    for fused in [true, false] {
        let xi = x.clone().require_grad();
        let y = if fused {
            fused_path(xi.clone())
        } else {
            generic(xi.clone())
        };
        let up = Tensor::<D>::ones(y.dims(), &y.device()).mul(y.clone().detach().cos()); // a fixed, non-uniform upstream gradient
        let g = (y.clone() * up).sum().backward();
        results.push((
            read(y),
            read(xi.grad(&g).unwrap()),
            read(weight().grad(&g).unwrap()),
        ));
    }
    close(&results[0].0, &results[1].0, TOL, &format!("{what} output"));
    close(&results[0].1, &results[1].1, TOL, &format!("{what} dx"));
    close(&results[0].2, &results[1].2, TOL, &format!("{what} dw"));
}

#[test]
fn fused_conv2d_equals_burns_in_value_and_gradients() {
    let device = Device::flex().autodiff();
    // (batch, c_in, c_out, h, w, kernel, stride, pad): the encoder's layers, odd sizes,
    // a 1x1 kernel, batch 1 (products in parallel), more samples than threads, samples
    // multiplied in groups of unequal size (9 samples of 3x3 outputs), and kernels that
    // cover the whole input (no unfolding) with an odd batch; stride 2 whose last read is the
    // sample's last value, and stride 3.
    let cases = [
        (9, 3, 4, 6, 6, 4, 2, 1),
        (7, 3, 5, 4, 4, 4, 1, 0),
        (3, 1, 4, 32, 32, 4, 2, 1),
        (5, 4, 6, 8, 8, 4, 2, 1),
        (2, 6, 3, 4, 4, 4, 1, 0),
        (1, 3, 5, 7, 9, 3, 2, 1),
        (4, 2, 3, 5, 6, 1, 1, 0),
        (3, 2, 2, 6, 5, 3, 1, 2),
        (2, 2, 3, 5, 5, 1, 2, 0),
        (2, 2, 3, 7, 8, 3, 3, 1),
    ];
    for (b, ci, co, h, w, k, s, p) in cases {
        let conv = Conv2dConfig::new([ci, co], [k, k])
            .with_stride([s, s])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_bias(false)
            .init(&device);
        let conv = Conv2d {
            weight: Param::from_tensor(conv.weight.val().require_grad()),
            ..conv
        };
        let x = Tensor::<4>::random([b, ci, h, w], Distribution::Normal(0.0, 1.0), &device);
        assert!(try_conv2d(&conv, &x).is_some(), "the fused path applies");
        let what = format!("2D b{b} {ci}->{co} {h}x{w} k{k} s{s} p{p}");
        let (fused, generic) = (|x| conv2d_forward(&conv, x), |x| conv.forward(x));
        compare(x, fused, generic, || conv.weight.val(), &what);
    }
}

#[test]
fn fused_conv3d_equals_burns_in_value_and_gradients() {
    let device = Device::flex().autodiff();
    // One output line per column block, so that every sample is unfolded, multiplied and
    // folded back in several blocks; with the columns kept from the forward, then recomputed
    // in the backward (the 2D test keeps them, in one block per sample).
    BLOCK_LIMIT.store(1, Relaxed);
    for keep in [KEEP_COLUMNS, 0] {
        KEEP_LIMIT.store(keep, Relaxed);
        for (b, ci, co, n, k, s, p) in [
            (2, 1, 3, 8, 4, 2, 1),
            (1, 2, 4, 5, 3, 2, 1),
            (3, 2, 2, 4, 4, 1, 0),
        ] {
            let conv = Conv3dConfig::new([ci, co], [k, k, k])
                .with_stride([s, s, s])
                .with_padding(PaddingConfig3d::Explicit(p, p, p))
                .with_bias(false)
                .init(&device);
            let x = Tensor::<5>::random(
                [b, ci, n, n + 1, n + 2],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            assert!(try_conv3d(&conv, &x).is_some(), "the fused path applies");
            let what = format!("3D b{b} {ci}->{co} {n} k{k} s{s} p{p} keep {keep}");
            let (fused, generic) = (|x| conv3d_forward(&conv, x), |x| conv.forward(x));
            compare(x, fused, generic, || conv.weight.val(), &what);
        }
    }
    KEEP_LIMIT.store(KEEP_COLUMNS, Relaxed);
    BLOCK_LIMIT.store(BLOCK_VALUES, Relaxed);
}

#[test]
fn kept_columns_are_recycled_and_stale_values_do_not_leak_into_results() {
    // A length no other test uses, so a parallel test cannot take the buffer.
    let len = 12_345;
    let mut first = Recycled::take(len);
    first.fill(7.0);
    let address = first.as_ptr();
    drop(first);
    let again = Recycled::take(len);
    assert_eq!(again.as_ptr(), address, "the dropped buffer is reused");
    assert_eq!(again.len(), len);
    drop(again);

    // Two identical steps: the second unfolds into the first one's recycled columns.
    let device = Device::flex().autodiff();
    let conv = Conv2dConfig::new([3, 4], [4, 4])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(&device);
    let x = Tensor::<4>::random([5, 3, 10, 10], Distribution::Normal(0.0, 1.0), &device);
    let step = || {
        let xi = x.clone().require_grad();
        let y = conv2d_forward(&conv, xi.clone());
        let g = (y.clone() * y.clone()).sum().backward();
        (read(y), read(xi.grad(&g).unwrap()))
    };
    let (a, b) = (step(), step());
    assert_eq!(a, b);
}

#[test]
fn inference_on_the_plain_device_matches_and_unsupported_layers_fall_back() {
    let device = Device::flex();
    let conv = Conv2dConfig::new([2, 3], [4, 4])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(&device);
    let x = Tensor::<4>::random([2, 2, 8, 8], Distribution::Default, &device);
    close(
        &read(conv2d_forward(&conv, x.clone())),
        &read(conv.forward(x.clone())),
        TOL,
        "plain",
    );
    // With a bias the fused path does not apply; the result is still burn's.
    let biased = Conv2dConfig::new([2, 3], [3, 3]).init(&device);
    assert!(try_conv2d(&biased, &x).is_none());
    assert_eq!(
        read(conv2d_forward(&biased, x.clone())),
        read(biased.forward(x))
    );
}

/// im2col by its definition: row `(c, kz, ky, kx)`, column `(oz, oy, ox)` holds the input at
/// `o s + k - pad` per axis, or zero outside the input.
fn naive_im2col(x: &[f32], d: &Dims) -> Vec<f32> {
    let (k, p) = (d.k(), d.p());
    let mut cols = vec![0.0f32; k * p];
    visit(d, |row, col, at| {
        if let Some(i) = at {
            cols[row * p + col] = x[i];
        }
    });
    cols
}

/// Calls `f(row, column, input index or None where the slot reads padding)` for every slot of
/// one sample's columns.
fn visit(d: &Dims, mut f: impl FnMut(usize, usize, Option<usize>)) {
    let [kd, kh, kw] = d.g.kernel;
    let [od, oh, ow] = d.output;
    let [id, ih, iw] = d.input;
    let coord = |o: usize, k: usize, a: usize, n: usize| {
        let v = (o * d.g.stride[a] + k) as isize - d.g.padding[a] as isize;
        (v >= 0 && (v as usize) < n).then_some(v as usize)
    };
    for c in 0..d.c_in {
        for (r, (z, y, x)) in (0..kd)
            .flat_map(|z| (0..kh).flat_map(move |y| (0..kw).map(move |x| (z, y, x))))
            .enumerate()
        {
            let row = c * kd * kh * kw + r;
            for (col, (a, b, e)) in (0..od)
                .flat_map(|a| (0..oh).flat_map(move |b| (0..ow).map(move |e| (a, b, e))))
                .enumerate()
            {
                let at = match (coord(a, z, 0, id), coord(b, y, 1, ih), coord(e, x, 2, iw)) {
                    (Some(i), Some(j), Some(l)) => Some(((c * id + i) * ih + j) * iw + l),
                    _ => None,
                };
                f(row, col, at);
            }
        }
    }
}

#[test]
fn unfolding_and_folding_match_their_definitions_across_geometries_on_one_thread() {
    // In this order on one thread: the second geometry has the first's padded length
    // (6 x 6) with its padding elsewhere, so a padded buffer reused without clearing would
    // leak the first sample's values into the second's padding. Then strides 1, 2 (with a
    // last read at the sample's end) and 3, in 2D and 3D, rows of 18 and 17 outputs at
    // stride 2 (eight at a time with AVX2, then the rest), and rows of four (two lines at a
    // time with AVX2: an even and an odd number of lines, the last pair at the sample's end,
    // pairs across depth planes).
    // (input [B, C, D, H, W], kernel, stride, padding)
    type Case = ([usize; 5], [usize; 3], [usize; 3], [usize; 3]);
    let geometries: [Case; 13] = [
        ([1, 2, 1, 4, 4], [1, 3, 3], [1, 1, 1], [0, 1, 1]),
        ([1, 2, 1, 2, 2], [1, 3, 3], [1, 1, 1], [0, 2, 2]),
        ([1, 3, 1, 9, 7], [1, 4, 4], [1, 2, 2], [0, 1, 1]),
        ([1, 2, 1, 5, 5], [1, 1, 1], [1, 2, 2], [0, 0, 0]),
        ([1, 2, 1, 8, 7], [1, 3, 3], [1, 3, 3], [0, 1, 1]),
        ([1, 2, 6, 5, 7], [4, 4, 4], [2, 2, 2], [1, 1, 1]),
        ([1, 1, 5, 6, 5], [3, 2, 3], [1, 2, 3], [1, 0, 2]),
        ([1, 2, 1, 3, 37], [1, 4, 4], [1, 2, 2], [0, 1, 1]),
        ([1, 2, 1, 2, 33], [1, 1, 1], [1, 2, 2], [0, 0, 0]),
        ([1, 2, 1, 5, 8], [1, 4, 4], [1, 2, 2], [0, 1, 1]),
        ([1, 2, 1, 7, 8], [1, 4, 4], [1, 2, 2], [0, 1, 1]),
        ([1, 2, 1, 3, 7], [1, 1, 1], [1, 2, 2], [0, 0, 0]),
        ([1, 2, 4, 5, 8], [4, 4, 4], [2, 2, 2], [1, 1, 1]),
    ];
    // With AVX2 where the CPU has it, then the portable loops.
    for portable in [false, true] {
        super::unfold::PORTABLE.store(portable, Relaxed);
        for &(input, kernel, stride, padding) in &geometries {
            check_unfolding(input, kernel, stride, padding, portable);
        }
    }
    super::unfold::PORTABLE.store(false, Relaxed);
}

/// [`Unfold::im2col`] and [`Unfold::col2im`] of one geometry against their definitions.
fn check_unfolding(
    input: [usize; 5],
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    portable: bool,
) {
    let g = Geometry {
        kernel,
        stride,
        padding,
    };
    let d = Dims::new(input, 3, g).expect("valid geometry");
    let what = format!("{input:?} k{kernel:?} s{stride:?} p{padding:?} portable {portable}");
    let x: Vec<f32> = (0..d.in_len())
        .map(|i| 1.0 + (i as f32 * 0.731).sin())
        .collect();
    let unfold = super::unfold::Unfold::new(&d);
    let (k, p) = (d.k(), d.p());
    // Two samples side by side in one matrix, the second at column p: both must land.
    let mut cols = vec![f32::NAN; k * 2 * p];
    unfold.im2col(&x, &mut cols, 2 * p, 0);
    unfold.im2col(&x, &mut cols, 2 * p, p);
    let want = naive_im2col(&x, &d);
    for row in 0..k {
        for half in [0, p] {
            assert_eq!(
                &cols[row * 2 * p + half..row * 2 * p + half + p],
                &want[row * p..(row + 1) * p],
                "{what}: im2col row {row}"
            );
        }
    }
    // col2im is the adjoint: every slot adds onto the input value it reads.
    let dcols: Vec<f32> = (0..k * 2 * p).map(|i| (i as f32 * 0.377).cos()).collect();
    let mut dx = vec![f32::NAN; d.in_len()];
    unfold.col2im(&dcols, 2 * p, p, &mut dx);
    let mut want_dx = vec![0.0f32; d.in_len()];
    visit(&d, |row, col, at| {
        if let Some(i) = at {
            want_dx[i] += dcols[row * 2 * p + p + col];
        }
    });
    close(&dx, &want_dx, 1e-6, &format!("{what}: col2im"));
}

/// The weight gradient's partial sums transposed in one pass equal their sum, added in order,
/// transposed by index, to the bit: one part and three, below and above the size that runs in
/// parallel, with sizes that are not multiples of the sixteen-row blocks.
#[test]
fn transposed_sum_of_partials_matches_by_index() {
    use super::products::transpose_sum;
    use crate::host::sum_in_order;
    use crate::test_util::normal_values;
    for (rows, cols) in [(5, 3), (37, 19), (1000, 77), (4099, 33)] {
        let parts: Vec<Vec<f32>> = (0..3)
            .map(|s| normal_values(rows * cols, 7 + s, 0.0, 1.0))
            .collect();
        for used in [1, 3] {
            let views: Vec<&[f32]> = parts[..used].iter().map(|p| &p[..]).collect();
            let got = transpose_sum(&views, rows, cols);
            let sum = sum_in_order(parts[..used].to_vec(), rows * cols);
            assert_eq!(got.len(), rows * cols);
            for r in 0..rows {
                for c in 0..cols {
                    let (g, w) = (got[c * rows + r], sum[r * cols + c]);
                    assert!(
                        g.to_bits() == w.to_bits(),
                        "{rows}x{cols} ({used}) at {r},{c}"
                    );
                }
            }
        }
    }
    assert!(transpose_sum(&[], 0, 4).is_empty());
}
