//! Unfolding samples into columns (`im2col`) and folding column gradients back (`col2im`).

use super::Dims;

thread_local! {
    /// Per-thread buffer for one zero-padded sample, with the geometry whose borders it holds
    /// zeroed: the unfolding writes only the interior, so a buffer last used for the same
    /// geometry needs no clearing.
    static PADDED: std::cell::RefCell<(Vec<f32>, Option<PadKey>)> =
        const { std::cell::RefCell::new((Vec::new(), None)) };
    /// Per-thread buffer for one zero-padded sample's gradient (cleared at every use: the
    /// column gradients are added onto it, borders included).
    static PADDED_GRAD: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What fixes which values of a padded sample buffer are padding: channels, input sizes and
/// padding per axis.
type PadKey = (usize, [usize; 3], [usize; 3]);

/// The unfolding of samples into columns `[K, P]` within a column matrix. Each sample is first
/// copied into a zero-padded buffer, so that every column row is a plain strided read (no
/// padding cases, which as many one-value fills cost more than the reads); the reads of one
/// input channel are computed once per operation and replayed for every channel and sample.
pub(super) struct Unfold {
    /// Offset in a padded channel of the first value each kernel row `(kz, ky, kx)` reads.
    kernel_rows: Vec<usize>,
    /// Output sizes `(D', H', W')`.
    output: [usize; 3],
    /// Padded-input strides between consecutive outputs along `(D', H', W')`.
    steps: [usize; 3],
    c_in: usize,
    /// Input sizes `(D, H, W)` and padded ones.
    input: [usize; 3],
    padded: [usize; 3],
    pad: [usize; 3],
}

impl Unfold {
    pub(super) fn new(d: &Dims) -> Unfold {
        let [kd, kh, kw] = d.g.kernel;
        let [sd, sh, sw] = d.g.stride;
        let pad = d.g.padding;
        let padded = [0, 1, 2].map(|a| d.input[a] + 2 * pad[a]);
        let [_, ph, pw] = padded;
        let mut kernel_rows = Vec::with_capacity(kd * kh * kw);
        for kz in 0..kd {
            for ky in 0..kh {
                for kx in 0..kw {
                    kernel_rows.push((kz * ph + ky) * pw + kx);
                }
            }
        }
        Unfold {
            kernel_rows,
            output: d.output,
            steps: [sd * ph * pw, sh * pw, sw],
            c_in: d.c_in,
            input: d.input,
            padded,
            pad,
        }
    }

    pub(super) fn padded_len(&self) -> usize {
        self.c_in * self.padded.iter().product::<usize>()
    }

    /// Calls `f(source offset, padded offset, length)` for every input row of one sample.
    pub(super) fn rows_of(&self, mut f: impl FnMut(usize, usize, usize)) {
        let [id, ih, iw] = self.input;
        let [pd, ph, pw] = self.padded;
        let [zd, zh, zw] = self.pad;
        for c in 0..self.c_in {
            for z in 0..id {
                for y in 0..ih {
                    let src = ((c * id + z) * ih + y) * iw;
                    let dst = ((c * pd + z + zd) * ph + y + zh) * pw + zw;
                    f(src, dst, iw);
                }
            }
        }
    }

    /// Runs `f` on this thread's padded sample buffer, sized for one padded sample, whose
    /// padding is zero; the interior holds whatever the last call left there.
    fn with_padded(&self, f: impl FnOnce(&mut [f32])) {
        let key = (self.c_in, self.input, self.pad);
        PADDED.with(|cell| {
            let mut guard = cell.borrow_mut();
            let (buf, held) = &mut *guard;
            if *held != Some(key) || buf.len() != self.padded_len() {
                buf.clear();
                buf.resize(self.padded_len(), 0.0);
                *held = Some(key);
            }
            f(buf);
        });
    }

    /// Runs `f` on this thread's padded gradient buffer, zeroed and sized for one padded
    /// sample.
    fn with_padded_grad(&self, f: impl FnOnce(&mut [f32])) {
        PADDED_GRAD.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            buf.resize(self.padded_len(), 0.0);
            f(&mut buf);
        });
    }

    /// Unfolds one sample `x` `[C, D, H, W]` into `cols`, a matrix of `ld` values per row, at
    /// column `col0`; every slot is written, so a reused buffer needs no clearing.
    pub(super) fn im2col(&self, x: &[f32], cols: &mut [f32], ld: usize, col0: usize) {
        if self.pad == [0, 0, 0] {
            self.gather(x, cols, ld, col0);
            return;
        }
        self.with_padded(|buf| {
            self.rows_of(|src, dst, n| buf[dst..dst + n].copy_from_slice(&x[src..src + n]));
            self.gather(buf, cols, ld, col0);
        });
    }

    /// Calls `f(slot, read)` for every run of consecutive column slots of one sample: the
    /// slots `slot..slot + W'` (indices into a column matrix of `ld` values per row, at column
    /// `col0`) read the sample's padded values at `read, read + s, ..., read + (W' - 1) s`, for
    /// the output width `W'` and the stride `s` along the width.
    #[inline(always)]
    fn runs(&self, ld: usize, col0: usize, mut f: impl FnMut(usize, usize)) {
        let channel = self.padded.iter().product::<usize>();
        let [od, oh, ow] = self.output;
        let [zs, ys, _] = self.steps;
        let rows = self.kernel_rows.len();
        for c in 0..self.c_in {
            for (r, &base) in self.kernel_rows.iter().enumerate() {
                let mut slot = (c * rows + r) * ld + col0;
                for z in 0..od {
                    for y in 0..oh {
                        f(slot, c * channel + base + z * zs + y * ys);
                        slot += ow;
                    }
                }
            }
        }
    }

    /// The strided reads of [`Unfold::im2col`] from the (padded) sample `xp`.
    ///
    /// Runs are copied whole for the unit stride and de-interleaved for stride 2 (the
    /// encoders' layers), which the compiler turns into vector loads and shuffles; on x86-64
    /// with AVX2 (checked at run time) the same code is compiled for 8-lane vectors.
    pub(super) fn gather(&self, xp: &[f32], cols: &mut [f32], ld: usize, col0: usize) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports the feature the function is compiled for.
            return unsafe { self.gather_avx2(xp, cols, ld, col0) };
        }
        self.gather_generic(xp, cols, ld, col0);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn gather_avx2(&self, xp: &[f32], cols: &mut [f32], ld: usize, col0: usize) {
        self.gather_generic(xp, cols, ld, col0);
    }

    #[inline(always)]
    fn gather_generic(&self, xp: &[f32], cols: &mut [f32], ld: usize, col0: usize) {
        let (ow, xs) = (self.output[2], self.steps[2]);
        match xs {
            1 => self.runs(ld, col0, |slot, read| {
                cols[slot..slot + ow].copy_from_slice(&xp[read..read + ow]);
            }),
            2 => self.runs(ld, col0, |slot, read| {
                let dst = &mut cols[slot..slot + ow];
                // The pair after the last read may pass the end of the sample.
                match xp.get(read..read + 2 * ow) {
                    Some(src) => {
                        for (d, pair) in dst.iter_mut().zip(src.chunks_exact(2)) {
                            *d = pair[0];
                        }
                    }
                    None => {
                        for (x, d) in dst.iter_mut().enumerate() {
                            *d = xp[read + 2 * x];
                        }
                    }
                }
            }),
            _ => self.runs(ld, col0, |slot, read| {
                for (x, d) in cols[slot..slot + ow].iter_mut().enumerate() {
                    *d = xp[read + x * xs];
                }
            }),
        }
    }

    /// Writes one sample's input gradient `dx` `[C, D, H, W]` from its column gradient (laid
    /// out as in [`Unfold::im2col`]), overwriting `dx`.
    pub(super) fn col2im(&self, dcols: &[f32], ld: usize, col0: usize, dx: &mut [f32]) {
        if self.pad == [0, 0, 0] {
            dx.fill(0.0);
            self.scatter(dcols, ld, col0, dx);
            return;
        }
        self.with_padded_grad(|buf| {
            self.scatter(dcols, ld, col0, buf);
            self.rows_of(|src, dst, n| dx[src..src + n].copy_from_slice(&buf[dst..dst + n]));
        });
    }

    /// Adds the column gradient onto the (padded) sample gradient `dxp`, vectorised like
    /// [`Unfold::gather`].
    pub(super) fn scatter(&self, dcols: &[f32], ld: usize, col0: usize, dxp: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports the feature the function is compiled for.
            return unsafe { self.scatter_avx2(dcols, ld, col0, dxp) };
        }
        self.scatter_generic(dcols, ld, col0, dxp);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn scatter_avx2(&self, dcols: &[f32], ld: usize, col0: usize, dxp: &mut [f32]) {
        self.scatter_generic(dcols, ld, col0, dxp);
    }

    #[inline(always)]
    fn scatter_generic(&self, dcols: &[f32], ld: usize, col0: usize, dxp: &mut [f32]) {
        let (ow, xs) = (self.output[2], self.steps[2]);
        match xs {
            1 => self.runs(ld, col0, |slot, read| {
                let src = &dcols[slot..slot + ow];
                for (d, &g) in dxp[read..read + ow].iter_mut().zip(src) {
                    *d += g;
                }
            }),
            2 => self.runs(ld, col0, |slot, read| {
                let src = &dcols[slot..slot + ow];
                let end = read + 2 * ow;
                if end <= dxp.len() {
                    // Whole pairs, the second value plus zero, so that the loop loads and
                    // stores whole vectors (a gradient of -0 becomes +0, the same number).
                    for (pair, &g) in dxp[read..end].chunks_exact_mut(2).zip(src) {
                        pair[0] += g;
                        pair[1] += 0.0;
                    }
                } else {
                    for (x, &g) in src.iter().enumerate() {
                        dxp[read + 2 * x] += g;
                    }
                }
            }),
            _ => self.runs(ld, col0, |slot, read| {
                for (x, &g) in dcols[slot..slot + ow].iter().enumerate() {
                    dxp[read + x * xs] += g;
                }
            }),
        }
    }
}
