//! `x W^T` against a dense f32 weight, without a gradient, on an AVX-512 CPU: every output is
//! the dot product of a row of `x` with a row of `W`, computed in register tiles of 8 rows of
//! `x` by 3–4 rows of `W`.
//!
//! candle's gemm packs the weight matrix on every call and runs 8-lane (AVX2) kernels sized for
//! 16 rows: a decoding step's 1–8 rows left most of it idle (a beam of 5 cost 3× a single
//! caption's step), and even an image's 50 CLIP tokens reached a fifth of the FMA peak. Here
//! each output's weights are streamed once per block of 8 rows, over panels of
//! [`PANEL_COLUMNS`] outputs whose weights stay in the cache while every block passes, and the
//! output columns are split over the threads: 3–6× the gemm at 8 rows, 1.5–2.5× at 50, 1.3–1.6×
//! at 400 (measured, `BENCHMARKS.md`). The kernel wants `W` row by row ([out, in], PyTorch's
//! `Linear`); GPT-2's `Conv1D` weights ([in, out]) are laid out that way once, when the model
//! is built ([`output_rows`]): down the columns of [in, out] it reached half the bandwidth.
//! Products under a gradient (training) keep candle's gemm, which reads either layout.

use candle_core::{DType, Device, Result, Storage, Tensor};

use super::column_split;

/// Whether `x` [m, k] · `wt` [k, n] runs here: no gradient wanted, f32 on the CPU, `wt` the
/// transpose of a row-major `W` [n, k], and a CPU with AVX-512F. One row included, against
/// any weight: the gemm crate's AVX-512 kernels repack the whole matrix for it.
pub fn applies(x: &Tensor, wt: &Tensor) -> bool {
    available()
        && !x.track_op()
        && !wt.track_op()
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && x.dims().len() == 2
        && is_output_rows(wt)
}

/// `wt` [k, n] held as `W` [n, k] row by row, the layout [`product`] reads: a frozen f32
/// weight on the CPU that is not already is copied into it once (same size; the gemm that
/// products under a gradient use reads either layout).
pub fn output_rows(wt: &Tensor) -> Result<Tensor> {
    if available() && !wt.track_op() && !is_output_rows(wt) && wt.dims().len() == 2 {
        return wt.t()?.contiguous()?.t();
    }
    Ok(wt.clone())
}

/// Whether the CPU has the kernel's instructions (read once).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX512.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether `wt` [k, n] is an f32 CPU tensor whose transpose `W` [n, k] is row-major.
fn is_output_rows(wt: &Tensor) -> bool {
    match (wt.dims2(), wt.layout().stride()) {
        (Ok((k, _)), [1, s]) => *s == k && wt.device().is_cpu() && wt.dtype() == DType::F32,
        _ => false,
    }
}

/// `x` [m, k] · `wt` [k, n] → [m, n] (see [`applies`] for when it may be called).
pub fn product(x: &Tensor, wt: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (k2, n) = wt.dims2()?;
    if k != k2 || !available() || !is_output_rows(wt) {
        candle_core::bail!("row-dots product of [{m}, {k}] and [{k2}, {n}] {:?}", wt.layout());
    }
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let (storage, l) = wt.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("row-dots product of a weight that is not on the CPU");
    };
    let w = &cpu.as_slice::<f32>()?[l.start_offset()..l.start_offset() + k * n];
    let y = columns_in_parallel(&xs, m, k, w, n)?;
    Tensor::from_vec(y, (m, n), &Device::Cpu)
}

/// The `n` output columns split over the threads (one part when the product is small), as
/// `y` [m, n].
fn columns_in_parallel(x: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> Result<Vec<f32>> {
    let threads = column_split::thread_count(m * k * n);
    column_split::product_columns(m, n, threads, |range, y| {
        let width = range.len();
        columns(x, m, k, w, range, y, width);
        Ok(())
    })
}

/// `x` [m, k] times the transpose of a row-major `W` [n, k] given as a slice, on the calling
/// thread, into `y` (m rows of `ldy` values, the first n of each written): for a caller that
/// splits the work itself (the block matrices' decoded tiles). Returns false, writing
/// nothing, when the CPU lacks AVX-512F.
pub(crate) fn product_into(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    y: &mut [f32],
    ldy: usize,
) -> bool {
    if !available() {
        return false;
    }
    columns(x, m, k, w, 0..n, y, ldy);
    true
}

/// Output columns `cols` of `x W^T` into `y` (m rows of `ldy` values). More rows than a
/// register tile holds go in blocks of [`TILE_ROWS`] over panels of [`PANEL_COLUMNS`] columns,
/// so that a panel's weights come from memory once and from the cache for the other blocks.
fn columns(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    cols: std::ops::Range<usize>,
    y: &mut [f32],
    ldy: usize,
) {
    assert!(x.len() >= m * k && w.len() >= cols.end * k);
    assert!(ldy >= cols.len() && y.len() >= (m - 1) * ldy + cols.len());
    assert!(available(), "row-dots product without AVX-512F");
    let width = ldy;
    for panel in (cols.start..cols.end).step_by(PANEL_COLUMNS) {
        let panel = panel..(panel + PANEL_COLUMNS).min(cols.end);
        for first in (0..m).step_by(TILE_ROWS) {
            let rows = (m - first).min(TILE_ROWS);
            let xs = &x[first * k..(first + rows) * k];
            let ys = &mut y[first * width + panel.start - cols.start..];
            tile(xs, rows, k, w, panel.clone(), ys, width);
        }
    }
}

/// Rows of `x` one kernel call holds in registers.
const TILE_ROWS: usize = 8;
/// Output columns whose weights stay in the cache while every block of rows passes (196 KB
/// of f32 weights at 768 inputs).
const PANEL_COLUMNS: usize = 64;

/// One register tile: `rows` (at most [`TILE_ROWS`]) rows of `x` against columns `cols`,
/// into `y` (rows of `ldy` values), dispatched on the row count so the accumulators are a
/// fixed tile.
fn tile(
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    cols: std::ops::Range<usize>,
    y: &mut [f32],
    ldy: usize,
) {
    assert!(x.len() >= rows * k && w.len() >= cols.end * k);
    assert!(y.len() >= (rows - 1) * ldy + cols.len() && ldy >= cols.len());
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! by_rows {
            ($($rows:literal)*) => {
                match rows {
                    // SAFETY: AVX-512F checked by the caller; the bounds are asserted above.
                    $($rows => unsafe { x86::dots::<$rows>(x, k, w, cols, y, ldy) },)*
                    _ => unreachable!("at most {TILE_ROWS} rows"),
                }
            };
        }
        by_rows!(1 2 3 4 5 6 7 8);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    /// Output columns per pass of [`dots`]: as many as the 32 registers allow beside the
    /// rows' accumulators.
    const fn dot_group(rows: usize) -> usize {
        if rows <= 4 {
            4
        } else {
            3
        }
    }

    /// `W` [n, k] row-major: y[r][j] = x_r · W_j, each 16-value piece of `W_j` loaded once and
    /// multiplied with every row, the 16 lanes summed at the end.
    ///
    /// # Safety
    /// AVX-512F; `x` holds [M, k], `w` holds rows `cols` of [n, k], `y` holds M rows of `ldy`
    /// (at least `cols.len()`) values.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots<const M: usize>(
        x: &[f32],
        k: usize,
        w: &[f32],
        cols: Range<usize>,
        y: &mut [f32],
        ldy: usize,
    ) {
        let mut j = cols.start;
        while j < cols.end {
            let left = cols.end - j;
            let out = &mut y[j - cols.start..];
            // SAFETY: forwarded; each group stays inside `cols`.
            j += unsafe {
                match (dot_group(M), left) {
                    (4, 4..) => group::<M, 4>(x, k, w, j, out, ldy),
                    (3, 3..) => group::<M, 3>(x, k, w, j, out, ldy),
                    (_, 2..) => group::<M, 2>(x, k, w, j, out, ldy),
                    _ => group::<M, 1>(x, k, w, j, out, ldy),
                }
            };
        }
    }

    /// Columns `j..j + G` for the M rows into `y[r * ldy + c]`; returns G. Constant tile sizes
    /// keep every accumulator in a register.
    ///
    /// # Safety
    /// As [`dots`], with rows `j..j + G` of `W` inside `w`.
    #[target_feature(enable = "avx512f")]
    unsafe fn group<const M: usize, const G: usize>(
        x: &[f32],
        k: usize,
        w: &[f32],
        j: usize,
        y: &mut [f32],
        ldy: usize,
    ) -> usize {
        let mut acc = [[_mm512_setzero_ps(); G]; M];
        let full = k / 16 * 16;
        let mut kk = 0;
        while kk < k {
            // The last piece of a row whose length is not a multiple of 16 is masked.
            let mask: __mmask16 = if kk < full { 0xFFFF } else { (1u16 << (k - kk)) - 1 };
            let mut wv = [_mm512_setzero_ps(); G];
            for (c, v) in wv.iter_mut().enumerate() {
                // SAFETY: row j + c of W, values kk..kk + 16 (masked past k), inside `w`.
                let p = unsafe { w.as_ptr().add((j + c) * k + kk) };
                *v = unsafe { _mm512_maskz_loadu_ps(mask, p) };
                // The next column group's row, a group ahead: W streams from memory.
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(G * k).cast());
            }
            for (r, a) in acc.iter_mut().enumerate() {
                // SAFETY: row r of x, values kk..kk + 16 (masked past k).
                let xv = unsafe { _mm512_maskz_loadu_ps(mask, x.as_ptr().add(r * k + kk)) };
                for (lane, v) in a.iter_mut().zip(&wv) {
                    *lane = _mm512_fmadd_ps(xv, *v, *lane);
                }
            }
            kk += 16;
        }
        for (r, a) in acc.iter().enumerate() {
            for (c, lane) in a.iter().enumerate() {
                y[r * ldy + c] = _mm512_reduce_add_ps(*lane);
            }
        }
        G
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Row counts inside, at and past a register tile, weights in either layout (an [in, out] one laid out by
    /// [`output_rows`]), ragged sizes (k not a multiple of 16, n not a multiple of any tile,
    /// products large enough to split over threads), against candle's matmul within the f32
    /// rounding of a k-term sum.
    #[test]
    fn matches_candle_for_every_row_count_and_layout() {
        if !available() {
            crate::test_skip::skip("the CPU has no AVX-512F");
            return;
        }
        for (k, n) in [(37, 45), (768, 2304), (100, 1000)] {
            let w = Tensor::from_vec(random(k * n, 1), (n, k), &Device::Cpu).unwrap();
            for wt in [w.t().unwrap(), w.t().unwrap().contiguous().unwrap()] {
                let wt = output_rows(&wt).unwrap();
                for m in (1..=9).chain([15, 16, 17, 50, 400]) {
                    let x = Tensor::from_vec(random(m * k, m as u64), (m, k), &Device::Cpu).unwrap();
                    assert!(applies(&x, &wt));
                    let want: Vec<f32> = x.matmul(&wt).unwrap().flatten_all().unwrap().to_vec1().unwrap();
                    let got: Vec<f32> = product(&x, &wt)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap();
                    let tol = 1e-5 * (k as f32).sqrt() * 4.0;
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        assert!((a - b).abs() <= tol, "m={m} k={k} n={n} [{i}]: {a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_tracked_inputs_and_strided_weights() {
        let w = Tensor::from_vec(random(64 * 32, 2), (64, 32), &Device::Cpu).unwrap();
        let x = Tensor::from_vec(random(32, 3), (1, 32), &Device::Cpu).unwrap();
        // A column slice of W^T has neither dimension contiguous; an [in, out] weight is not
        // read in place.
        let strided = w.narrow(1, 0, 16).unwrap().t().unwrap();
        assert!(!applies(&x.narrow(1, 0, 16).unwrap(), &strided));
        let input_rows = w.t().unwrap().contiguous().unwrap();
        assert!(!applies(&x, &input_rows));
        assert_eq!(applies(&x, &output_rows(&input_rows).unwrap()), available());
        let var = candle_core::Var::from_tensor(&x).unwrap();
        assert!(!applies(var.as_tensor(), &w.t().unwrap()));
    }
}
