//! Unfolding samples into columns (`im2col`) and folding column gradients back (`col2im`).

use super::Dims;

thread_local! {
    /// Per-thread buffer for one zero-padded sample (or its gradient).
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

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

    /// Runs `f` on this thread's zero-padded sample buffer, zeroed and sized for one padded
    /// sample.
    pub(super) fn with_padded(&self, f: impl FnOnce(&mut [f32])) {
        PADDED.with(|cell| {
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

    /// Calls `f(slot, read)` for every column slot of one sample (index into a column matrix of
    /// `ld` values per row, at column `col0`) with the index, in the sample's padded values,
    /// of the value the slot reads; each kernel row's slots are visited in order.
    #[inline(always)]
    pub(super) fn pairs(&self, ld: usize, col0: usize, mut f: impl FnMut(usize, usize)) {
        let channel = self.padded.iter().product::<usize>();
        let [od, oh, ow] = self.output;
        let [zs, ys, xs] = self.steps;
        let rows = self.kernel_rows.len();
        for c in 0..self.c_in {
            for (r, &base) in self.kernel_rows.iter().enumerate() {
                let mut slot = (c * rows + r) * ld + col0;
                for z in 0..od {
                    for y in 0..oh {
                        let read = c * channel + base + z * zs + y * ys;
                        for x in 0..ow {
                            f(slot, read + x * xs);
                            slot += 1;
                        }
                    }
                }
            }
        }
    }

    /// The strided reads of [`Unfold::im2col`] from the (padded) sample `xp`.
    pub(super) fn gather(&self, xp: &[f32], cols: &mut [f32], ld: usize, col0: usize) {
        self.pairs(ld, col0, |slot, read| cols[slot] = xp[read]);
    }

    /// Writes one sample's input gradient `dx` `[C, D, H, W]` from its column gradient (laid
    /// out as in [`Unfold::im2col`]), overwriting `dx`.
    pub(super) fn col2im(&self, dcols: &[f32], ld: usize, col0: usize, dx: &mut [f32]) {
        if self.pad == [0, 0, 0] {
            dx.fill(0.0);
            self.scatter(dcols, ld, col0, dx);
            return;
        }
        self.with_padded(|buf| {
            self.scatter(dcols, ld, col0, buf);
            self.rows_of(|src, dst, n| dx[src..src + n].copy_from_slice(&buf[dst..dst + n]));
        });
    }

    /// Adds the column gradient onto the (padded) sample gradient `dxp`.
    pub(super) fn scatter(&self, dcols: &[f32], ld: usize, col0: usize, dxp: &mut [f32]) {
        self.pairs(ld, col0, |slot, read| dxp[read] += dcols[slot]);
    }
}
