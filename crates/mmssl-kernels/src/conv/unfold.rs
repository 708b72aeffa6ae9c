//! Unfolding samples into columns (`im2col`) and folding column gradients back (`col2im`).

use super::Dims;
use std::ops::Range;

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

/// Set by a test to take the portable loops on a CPU with AVX2 too.
#[cfg(test)]
pub(super) static PORTABLE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether the unfolding runs its AVX2 versions (the CPU has AVX2; checked at run time).
#[cfg(target_arch = "x86_64")]
fn use_avx2() -> bool {
    #[cfg(test)]
    if PORTABLE.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx2")
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
    /// Offset in a padded channel, before the kernel row's own, of the first value each output
    /// line `(z, y)` reads.
    line_starts: Vec<usize>,
    /// Padded-input step between consecutive outputs of a line (the stride along the width).
    stride: usize,
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
        let [od, oh, _] = d.output;
        let line_starts = (0..od * oh)
            .map(|l| (l / oh) * sd * ph * pw + (l % oh) * sh * pw)
            .collect();
        Unfold {
            kernel_rows,
            output: d.output,
            line_starts,
            stride: sw,
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
        self.with_sample(x, |xp| self.gather(xp, cols, ld, col0));
    }

    /// Runs `f` on the sample `x` `[C, D, H, W]` as [`Unfold::gather`] reads it: `x` itself
    /// without padding, else a zero-padded copy.
    pub(super) fn with_sample<R>(&self, x: &[f32], f: impl FnOnce(&[f32]) -> R) -> R {
        if self.pad == [0, 0, 0] {
            return f(x);
        }
        let mut out = None;
        self.with_padded(|buf| {
            self.rows_of(|src, dst, n| buf[dst..dst + n].copy_from_slice(&x[src..src + n]));
            out = Some(f(buf));
        });
        out.expect("with_padded runs its closure")
    }

    /// Writes one sample's input gradient `dx` `[C, D, H, W]` from what `f` adds onto the
    /// zeroed (padded) gradient it is given with [`Unfold::scatter`] /
    /// [`Unfold::scatter_lines`]; overwrites `dx`.
    pub(super) fn fold_sample(&self, dx: &mut [f32], f: impl FnOnce(&mut [f32])) {
        if self.pad == [0, 0, 0] {
            dx.fill(0.0);
            f(dx);
            return;
        }
        self.with_padded_grad(|buf| {
            f(buf);
            self.rows_of(|src, dst, n| dx[src..src + n].copy_from_slice(&buf[dst..dst + n]));
        });
    }

    /// Output lines `(z, y)` of one sample; each is [`Unfold::line_len`] consecutive columns.
    pub(super) fn lines(&self) -> usize {
        self.line_starts.len()
    }

    /// Columns per output line: the output width `W'`.
    pub(super) fn line_len(&self) -> usize {
        self.output[2]
    }

    /// Calls `f(slot, read)` for every kernel row `(c, kz, ky, kx)` of one sample: its column
    /// row starts at `slot` (in a column matrix of `ld` values per row whose column `col0` is
    /// the first column unfolded), and output line `l` of it reads the sample's padded values
    /// from `read + line_starts[l]` on, every `stride`-th one.
    fn kernel_rows_of(&self, ld: usize, col0: usize, mut f: impl FnMut(usize, usize)) {
        let channel = self.padded.iter().product::<usize>();
        let rows = self.kernel_rows.len();
        for c in 0..self.c_in {
            for (r, &base) in self.kernel_rows.iter().enumerate() {
                f((c * rows + r) * ld + col0, c * channel + base);
            }
        }
    }

    /// The strided reads of [`Unfold::im2col`] from the (padded) sample `xp`.
    pub(super) fn gather(&self, xp: &[f32], cols: &mut [f32], ld: usize, col0: usize) {
        self.gather_lines(xp, cols, ld, col0, 0..self.lines());
    }

    /// [`Unfold::gather`] of the output `lines` only, the first line's first column at `col0`.
    ///
    /// Each line is copied whole at stride 1 and de-interleaved at stride 2 (the encoders'
    /// layers); at stride 2 on x86-64 with AVX2 (checked at run time) eight outputs at a time,
    /// and two lines at once where a line has four outputs.
    pub(super) fn gather_lines(
        &self,
        xp: &[f32],
        cols: &mut [f32],
        ld: usize,
        col0: usize,
        lines: Range<usize>,
    ) {
        let (ow, stride) = (self.output[2], self.stride);
        let starts = &self.line_starts[lines];
        let len = starts.len() * ow;
        #[cfg(target_arch = "x86_64")]
        if stride == 2 && use_avx2() {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { self.gather_s2_avx2(xp, cols, ld, col0, starts) };
        }
        self.kernel_rows_of(ld, col0, |slot, read| {
            let dst = &mut cols[slot..slot + len];
            for (d, &at) in dst.chunks_exact_mut(ow).zip(starts) {
                read_line(xp, read + at, stride, d);
            }
        });
    }

    /// Writes one sample's input gradient `dx` `[C, D, H, W]` from its column gradient (laid
    /// out as in [`Unfold::im2col`]), overwriting `dx`.
    pub(super) fn col2im(&self, dcols: &[f32], ld: usize, col0: usize, dx: &mut [f32]) {
        self.fold_sample(dx, |dxp| self.scatter(dcols, ld, col0, dxp));
    }

    /// Adds the column gradient onto the (padded) sample gradient `dxp`.
    pub(super) fn scatter(&self, dcols: &[f32], ld: usize, col0: usize, dxp: &mut [f32]) {
        self.scatter_lines(dcols, ld, col0, 0..self.lines(), dxp);
    }

    /// [`Unfold::scatter`] of the output `lines` only, the first line's first column at
    /// `col0`, vectorised like [`Unfold::gather_lines`].
    pub(super) fn scatter_lines(
        &self,
        dcols: &[f32],
        ld: usize,
        col0: usize,
        lines: Range<usize>,
        dxp: &mut [f32],
    ) {
        let (ow, stride) = (self.output[2], self.stride);
        let starts = &self.line_starts[lines];
        let len = starts.len() * ow;
        #[cfg(target_arch = "x86_64")]
        if stride == 2 && use_avx2() {
            // SAFETY: the CPU has AVX2 (checked above).
            return unsafe { self.scatter_s2_avx2(dcols, ld, col0, starts, dxp) };
        }
        self.kernel_rows_of(ld, col0, |slot, read| {
            let src = &dcols[slot..slot + len];
            for (g, &at) in src.chunks_exact(ow).zip(starts) {
                add_line(g, dxp, read + at, stride);
            }
        });
    }

    /// [`Unfold::gather_lines`] at stride 2, compiled for AVX2: every kernel row through
    /// [`gather_row_s2`], inlined here.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn gather_s2_avx2(
        &self,
        xp: &[f32],
        cols: &mut [f32],
        ld: usize,
        col0: usize,
        starts: &[usize],
    ) {
        let ow = self.output[2];
        let len = starts.len() * ow;
        self.kernel_rows_of(ld, col0, |slot, read| {
            // SAFETY: this function runs only where the CPU has AVX2.
            unsafe { gather_row_s2(xp, read, starts, ow, &mut cols[slot..slot + len]) };
        });
    }

    /// [`Unfold::scatter_lines`] at stride 2, compiled for AVX2, through [`scatter_row_s2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn scatter_s2_avx2(
        &self,
        dcols: &[f32],
        ld: usize,
        col0: usize,
        starts: &[usize],
        dxp: &mut [f32],
    ) {
        let ow = self.output[2];
        let len = starts.len() * ow;
        self.kernel_rows_of(ld, col0, |slot, read| {
            // SAFETY: this function runs only where the CPU has AVX2.
            unsafe { scatter_row_s2(&dcols[slot..slot + len], read, starts, ow, dxp) };
        });
    }
}

/// `dst[x] = xp[s + x stride]` for every `x`: one output line of a kernel row.
#[inline(always)]
fn read_line(xp: &[f32], s: usize, stride: usize, dst: &mut [f32]) {
    let n = dst.len();
    match stride {
        1 => dst.copy_from_slice(&xp[s..s + n]),
        // The pair after the last read may pass the end of the sample.
        2 => match xp.get(s..s + 2 * n) {
            Some(src) => {
                for (d, pair) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = pair[0];
                }
            }
            None => {
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = xp[s + 2 * x];
                }
            }
        },
        _ => {
            for (x, d) in dst.iter_mut().enumerate() {
                *d = xp[s + x * stride];
            }
        }
    }
}

/// `dxp[s + x stride] += g[x]` for every `x`: the adjoint of [`read_line`].
#[inline(always)]
fn add_line(g: &[f32], dxp: &mut [f32], s: usize, stride: usize) {
    let n = g.len();
    match stride {
        1 => {
            for (d, &v) in dxp[s..s + n].iter_mut().zip(g) {
                *d += v;
            }
        }
        2 => match dxp.get_mut(s..s + 2 * n) {
            // Whole pairs, the second value plus zero, so that the loop loads and stores whole
            // vectors (a gradient of -0 becomes +0, the same number).
            Some(pairs) => {
                for (pair, &v) in pairs.chunks_exact_mut(2).zip(g) {
                    pair[0] += v;
                    pair[1] += 0.0;
                }
            }
            None => {
                for (x, &v) in g.iter().enumerate() {
                    dxp[s + 2 * x] += v;
                }
            }
        },
        _ => {
            for (x, &v) in g.iter().enumerate() {
                dxp[s + x * stride] += v;
            }
        }
    }
}

/// One kernel row's output lines at stride 2 with AVX2: line `l` of `dst` (`ow` values each)
/// reads `xp` from `read + starts[l]`; eight outputs at a time, two lines at once when `ow` is 4.
///
/// # Safety
/// The CPU must have AVX2 (inlined into functions compiled for it).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn gather_row_s2(xp: &[f32], read: usize, starts: &[usize], ow: usize, dst: &mut [f32]) {
    if ow == 4 {
        let mut pairs = dst.chunks_exact_mut(8);
        let mut at = starts.chunks_exact(2);
        for (d, s) in (&mut pairs).zip(&mut at) {
            let (a, b) = (read + s[0], read + s[1]);
            match (xp.get(a..a + 8), xp.get(b..b + 8)) {
                // SAFETY: the caller guarantees AVX2.
                (Some(sa), Some(sb)) => unsafe { two_lines_of_four_avx2(sa, sb, d) },
                _ => {
                    let (da, db) = d.split_at_mut(4);
                    read_line(xp, a, 2, da);
                    read_line(xp, b, 2, db);
                }
            }
        }
        if let (Some(&s), d) = (at.remainder().first(), pairs.into_remainder()) {
            read_line(xp, read + s, 2, d);
        }
        return;
    }
    for (d, &s) in dst.chunks_exact_mut(ow).zip(starts) {
        match xp.get(read + s..read + s + 2 * ow) {
            // SAFETY: the caller guarantees AVX2.
            Some(src) => unsafe { even_lanes_avx2(src, d) },
            None => read_line(xp, read + s, 2, d),
        }
    }
}

/// The adjoint of [`gather_row_s2`]: adds one kernel row's column gradient `src` onto the
/// padded sample gradient `dxp`.
///
/// # Safety
/// The CPU must have AVX2 (inlined into functions compiled for it).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn scatter_row_s2(src: &[f32], read: usize, starts: &[usize], ow: usize, dxp: &mut [f32]) {
    if ow == 4 {
        let mut pairs = src.chunks_exact(8);
        let mut at = starts.chunks_exact(2);
        for (g, s) in (&mut pairs).zip(&mut at) {
            let (a, b) = (read + s[0], read + s[1]);
            if a + 8 <= dxp.len() && b + 8 <= dxp.len() {
                // SAFETY: the caller guarantees AVX2.
                unsafe { add_two_lines_of_four_avx2(g, dxp, a, b) };
            } else {
                add_line(&g[..4], dxp, a, 2);
                add_line(&g[4..], dxp, b, 2);
            }
        }
        if let Some(&s) = at.remainder().first() {
            add_line(pairs.remainder(), dxp, read + s, 2);
        }
        return;
    }
    for (g, &s) in src.chunks_exact(ow).zip(starts) {
        match dxp.get_mut(read + s..read + s + 2 * ow) {
            // SAFETY: the caller guarantees AVX2.
            Some(d) => unsafe { add_even_lanes_avx2(g, d) },
            None => add_line(g, dxp, read + s, 2),
        }
    }
}

/// `dst[i] = src[2 i]` for every `i` (`src` holds at least `2 dst.len()` values), eight at a
/// time: two loads, one in-lane shuffle of the even values and one cross-lane permutation.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn even_lanes_avx2(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = dst.len();
    assert!(src.len() >= 2 * n);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `2 i + 16 <= 2 n <= src.len()` and `i + 8 <= dst.len()`.
        unsafe {
            let a = _mm256_loadu_ps(src.as_ptr().add(2 * i));
            let b = _mm256_loadu_ps(src.as_ptr().add(2 * i + 8));
            // [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pairs in the order (0, 2, 1, 3).
            let even = _mm256_shuffle_ps::<0x88>(a, b);
            let even = _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(even)));
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), even);
        }
        i += 8;
    }
    for j in i..n {
        dst[j] = src[2 * j];
    }
}

/// `dst[2 i] += src[i]` for every `i` (`dst` holds at least `2 src.len()` values), eight at a
/// time; the odd values in between get `+ 0.0` (a gradient of -0 becomes +0, the same number).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_even_lanes_avx2(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len();
    assert!(dst.len() >= 2 * n);
    let zero = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= src.len()` and `2 i + 16 <= dst.len()`.
        unsafe {
            let g = _mm256_loadu_ps(src.as_ptr().add(i));
            // [g0 0 g1 0 | g4 0 g5 0] and [g2 0 g3 0 | g6 0 g7 0], then whole 128-bit lanes.
            let (lo, hi) = (_mm256_unpacklo_ps(g, zero), _mm256_unpackhi_ps(g, zero));
            let first = _mm256_permute2f128_ps::<0x20>(lo, hi);
            let second = _mm256_permute2f128_ps::<0x31>(lo, hi);
            let d = dst.as_mut_ptr().add(2 * i);
            _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), first));
            _mm256_storeu_ps(d.add(8), _mm256_add_ps(_mm256_loadu_ps(d.add(8)), second));
        }
        i += 8;
    }
    for j in i..n {
        dst[2 * j] += src[j];
    }
}

/// `d[0..4]` = the even values of `a[0..8]`, `d[4..8]` = those of `b[0..8]`: two output lines of
/// four at stride 2, in one shuffle and one permutation.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn two_lines_of_four_avx2(a: &[f32], b: &[f32], d: &mut [f32]) {
    use std::arch::x86_64::*;
    assert!(a.len() >= 8 && b.len() >= 8 && d.len() >= 8);
    // SAFETY: eight values each, asserted above.
    unsafe {
        let (va, vb) = (_mm256_loadu_ps(a.as_ptr()), _mm256_loadu_ps(b.as_ptr()));
        let even = _mm256_shuffle_ps::<0x88>(va, vb);
        let even = _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(even)));
        _mm256_storeu_ps(d.as_mut_ptr(), even);
    }
}

/// `dst[a + 2 x] += g[x]` and `dst[b + 2 x] += g[4 + x]` for `x < 4` (the values in between get
/// `+ 0.0`); the two windows of eight are updated one after the other, so they may overlap.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_two_lines_of_four_avx2(g: &[f32], dst: &mut [f32], a: usize, b: usize) {
    use std::arch::x86_64::*;
    assert!(g.len() >= 8 && a + 8 <= dst.len() && b + 8 <= dst.len());
    let zero = _mm256_setzero_ps();
    // SAFETY: eight values of `g`, and the windows `a..a + 8`, `b..b + 8` of `dst`, asserted.
    unsafe {
        let v = _mm256_loadu_ps(g.as_ptr());
        let (lo, hi) = (_mm256_unpacklo_ps(v, zero), _mm256_unpackhi_ps(v, zero));
        let first = _mm256_permute2f128_ps::<0x20>(lo, hi);
        let second = _mm256_permute2f128_ps::<0x31>(lo, hi);
        let pa = dst.as_mut_ptr().add(a);
        _mm256_storeu_ps(pa, _mm256_add_ps(_mm256_loadu_ps(pa), first));
        let pb = dst.as_mut_ptr().add(b);
        _mm256_storeu_ps(pb, _mm256_add_ps(_mm256_loadu_ps(pb), second));
    }
}
