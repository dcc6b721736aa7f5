//! The CPU engine's product with a block-quantized matrix: `x W^T` with W decoded block by
//! block from its GGML q8_0/q4_0 bytes and the activations kept in f32. candle's own quantized
//! matmul also quantizes the activations to 8 bits; that adds more error than the weights'
//! quantization, and it turns float noise between engines (CPU vs GPU, x86 vs wasm) into
//! different captions, because an activation near a rounding boundary lands on either side.
//! Here both engines multiply the same weights with the same f32 activations; only the order of
//! the sums differs (about 1e-6 apart).

use std::ops::Range;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

use crate::backend::column_split::{self, thread_count};
use crate::backend::row_dots;

/// Values per GGML block.
const BLOCK: usize = 32;
/// Partial sums per (row, output column) of the fused dot: value j of every block is added
/// into lane j % 16, in block order, and the lanes are summed in order at the end. The order
/// is the same on every instruction set (one AVX-512 register, two AVX2 ones, four SIMD128
/// ones), so every build gives the same bits.
const LANES: usize = 16;
/// Rows of activations from which a product decodes tiles of W to f32 and multiplies them as a
/// dense matrix (the AVX-512 row dots, else candle's gemm; each weight is then decoded once for
/// many rows); fewer rows take the fused quant × activation dot.
const GEMM_MIN_ROWS: usize = 9;
/// Rows of activations the AVX2 fused dot holds in registers; more take the portable code.
#[cfg(target_arch = "x86_64")]
const AVX2_MAX_ROWS: usize = 8;
/// Weights decoded at a time for the AVX-512 dense path (256 KB of f32): the tile is written
/// and read back while it is in the core's L2 cache.
const CACHE_TILE_WEIGHTS: usize = 1 << 16;
/// Rows of activations the wasm SIMD128 fused dot holds in registers; more take the portable
/// code.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
const SIMD128_MAX_ROWS: usize = 8;
/// Weights decoded at a time on the gemm path (16 MB of f32), so that a large matrix (the tied
/// LM head) never exists whole in f32.
const TILE_WEIGHTS: usize = 1 << 22;

/// A [rows, cols] matrix in q8_0 or q4_0 blocks, with the scales widened to f32.
#[derive(Debug)]
pub struct BlockMatrix {
    rows: usize,
    cols: usize,
    /// One scale per block, row-major.
    scales: Vec<f32>,
    /// q8_0: 32 signed quants per block; q4_0: 16 bytes of nibbles per block.
    quants: Vec<u8>,
    q4: bool,
}

impl BlockMatrix {
    /// The blocks of a q8_0/q4_0 tensor [rows, cols]; None for any other format.
    pub fn from_qtensor(q: &QTensor) -> Result<Option<Self>> {
        let (rows, cols) = q.shape().dims2()?;
        let (q4, block_bytes) = match q.dtype() {
            GgmlDType::Q8_0 => (false, 34),
            GgmlDType::Q4_0 => (true, 18),
            _ => return Ok(None),
        };
        let data = q.data()?;
        let blocks = rows * cols / BLOCK;
        if !cols.is_multiple_of(BLOCK) || data.len() != blocks * block_bytes {
            candle_core::bail!(
                "{:?} matrix [{rows}, {cols}] with {} bytes of blocks",
                q.dtype(),
                data.len()
            );
        }
        let mut scales = Vec::with_capacity(blocks);
        let mut quants = Vec::with_capacity(blocks * (block_bytes - 2));
        for block in data.chunks_exact(block_bytes) {
            scales.push(half::f16::from_le_bytes([block[0], block[1]]).to_f32());
            quants.extend_from_slice(&block[2..]);
        }
        Ok(Some(Self {
            rows,
            cols,
            scales,
            quants,
            q4,
        }))
    }

    /// Block `b` of W decoded into `w` (each weight is scale times quant, exact in f32).
    #[inline(always)]
    fn decode_block(&self, b: usize, w: &mut [f32]) {
        let d = self.scales[b];
        if self.q4 {
            let bytes = &self.quants[b * 16..b * 16 + 16];
            for (j, &byte) in bytes.iter().enumerate() {
                w[j] = d * ((byte & 0x0F) as i32 - 8) as f32;
                w[j + 16] = d * ((byte >> 4) as i32 - 8) as f32;
            }
        } else {
            for (o, &q) in w.iter_mut().zip(&self.quants[b * 32..b * 32 + 32]) {
                *o = d * (q as i8) as f32;
            }
        }
    }

    /// Output rows `rows` of W decoded into `out` [rows.len(), cols], split over threads when
    /// the tile is large (the gemm that follows is parallel; a serial decode would idle them).
    fn decode_rows(&self, rows: Range<usize>, out: &mut [f32]) {
        let first = rows.start * self.cols / BLOCK;
        let threads = thread_count(out.len());
        if threads > 1 {
            let per_chunk = out.len().div_ceil(threads).next_multiple_of(BLOCK);
            out.par_chunks_mut(per_chunk).enumerate().for_each(|(c, part)| {
                self.decode_blocks(first + c * per_chunk / BLOCK, part);
            });
        } else {
            self.decode_blocks(first, out);
        }
    }

    /// Consecutive blocks from `first` decoded into `out` (a whole number of blocks).
    fn decode_blocks(&self, first: usize, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.decode_blocks_avx2(first, out) };
        }
        for (i, w) in out.chunks_exact_mut(BLOCK).enumerate() {
            self.decode_block(first + i, w);
        }
    }

    /// [`BlockMatrix::decode_blocks`] in AVX2 registers: the same products (scale times quant,
    /// both exact in f32), so the same bits.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn decode_blocks_avx2(&self, first: usize, out: &mut [f32]) {
        use std::arch::x86_64::*;
        assert!((first + out.len() / BLOCK) * BLOCK <= self.rows * self.cols);
        for (i, w) in out.chunks_exact_mut(BLOCK).enumerate() {
            let block = first + i;
            let d = _mm256_set1_ps(self.scales[block]);
            // SAFETY: the assert above keeps the block inside the matrix.
            let q = unsafe { self.quants_i8(block) };
            for (k, v) in q.iter().enumerate() {
                let f = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(*v)));
                // SAFETY: `w` holds 32 floats, k < 4.
                unsafe { _mm256_storeu_ps(w.as_mut_ptr().add(8 * k), f) };
            }
        }
    }

    /// Output columns `range` of `x W^T` for few rows of `x`: each block decoded once, then
    /// multiplied with every row in 16 lanes summed at the end. The lanes fix the order of the
    /// sums, so every instruction set gives the same bits; AVX2 only makes it wider.
    /// Written to `y` as [m, range.len()].
    fn fused_part(&self, x: &[f32], m: usize, range: Range<usize>, y: &mut [f32]) {
        assert!(
            y.len() >= m * range.len(),
            "{} outputs for [{m}, {}]",
            y.len(),
            range.len()
        );
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let wide = std::arch::is_x86_feature_detected!("avx512f");
            // SAFETY: the CPU has AVX2, and AVX-512F where `wide` says so.
            return unsafe { self.fused_part_avx2(x, m, range, wide, y) };
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        if m <= SIMD128_MAX_ROWS {
            return self.fused_part_simd128(x, m, range, y);
        }
        self.fused_part_portable(x, m, range, y)
    }

    /// [`BlockMatrix::fused_part`] in wasm SIMD128 registers (the browser's CPU engine): the
    /// portable code's 16 lanes as four 4-lane registers, multiplied and added in the same order
    /// (wasm SIMD has no fused multiply-add), so the bits are the portable ones. Several output
    /// columns run side by side when there are few rows, as on x86.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn fused_part_simd128(&self, x: &[f32], m: usize, range: Range<usize>, y: &mut [f32]) {
        let width = range.len();
        assert!(x.len() >= m * self.cols && range.end <= self.rows);
        let mut c = 0;
        while c < width {
            let o = range.start + c;
            c += match (m, width - c) {
                (1, 4..) => self.columns_simd128::<4>(x, m, o, &mut y[c..], width),
                (1..=3, 2..) => self.columns_simd128::<2>(x, m, o, &mut y[c..], width),
                _ => self.columns_simd128::<1>(x, m, o, &mut y[c..], width),
            };
        }
    }

    /// Output columns `o..o + G` of `x W^T` for the `m` (at most [`SIMD128_MAX_ROWS`]) rows of
    /// `x`, written to `y[r * width + g]`; returns G.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn columns_simd128<const G: usize>(
        &self,
        x: &[f32],
        m: usize,
        o: usize,
        y: &mut [f32],
        width: usize,
    ) -> usize {
        use std::arch::wasm32::*;
        let per_row = self.cols / BLOCK;
        // The 16 lanes as four registers: weights 4j..4j + 4 go to register j % 4.
        let mut acc = [[[f32x4_splat(0.0); 4]; G]; SIMD128_MAX_ROWS];
        for b in 0..per_row {
            let w: [[v128; 8]; G] = std::array::from_fn(|g| self.block_simd128((o + g) * per_row + b));
            for (r, lanes) in acc.iter_mut().enumerate().take(m) {
                let xs = &x[r * self.cols + b * BLOCK..r * self.cols + (b + 1) * BLOCK];
                for j in 0..8 {
                    let x4 = load4(&xs[4 * j..]);
                    for (lane, wg) in lanes.iter_mut().zip(&w) {
                        lane[j % 4] = f32x4_add(lane[j % 4], f32x4_mul(wg[j], x4));
                    }
                }
            }
        }
        for (r, lanes) in acc.iter().enumerate().take(m) {
            for (g, lane) in lanes.iter().enumerate() {
                let mut v = [0f32; LANES];
                for (four, reg) in v.chunks_exact_mut(4).zip(lane) {
                    four.copy_from_slice(&[
                        f32x4_extract_lane::<0>(*reg),
                        f32x4_extract_lane::<1>(*reg),
                        f32x4_extract_lane::<2>(*reg),
                        f32x4_extract_lane::<3>(*reg),
                    ]);
                }
                y[r * width + g] = v.iter().sum();
            }
        }
        G
    }

    /// Block `block`'s 32 weights as eight 4-lane registers in order (quants sign-extended,
    /// converted, times the scale: the portable decode's exact products).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    fn block_simd128(&self, block: usize) -> [std::arch::wasm32::v128; 8] {
        use std::arch::wasm32::*;
        let d = f32x4_splat(self.scales[block]);
        let (first, second) = if self.q4 {
            let bytes = load16(&self.quants[block * 16..]);
            let eight = i8x16_splat(8);
            (
                i8x16_sub(v128_and(bytes, u8x16_splat(0x0F)), eight),
                i8x16_sub(u8x16_shr(bytes, 4), eight),
            )
        } else {
            (
                load16(&self.quants[block * 32..]),
                load16(&self.quants[block * 32 + 16..]),
            )
        };
        let mut out = [f32x4_splat(0.0); 8];
        for (h, sixteen) in [first, second].into_iter().enumerate() {
            for (q, eight) in [i16x8_extend_low_i8x16(sixteen), i16x8_extend_high_i8x16(sixteen)]
                .into_iter()
                .enumerate()
            {
                out[4 * h + 2 * q] = f32x4_mul(d, f32x4_convert_i32x4(i32x4_extend_low_i16x8(eight)));
                out[4 * h + 2 * q + 1] = f32x4_mul(d, f32x4_convert_i32x4(i32x4_extend_high_i16x8(eight)));
            }
        }
        out
    }

    /// [`BlockMatrix::fused_part`] in AVX2 registers: a block's 32 weights decoded with a few
    /// vector instructions (nibbles or bytes sign-extended to i32, converted, times the scale),
    /// then per row the portable code's 16 lanes as two registers, multiplied and added in the
    /// same order (separate multiply and add, never fused), so the bits are the portable ones.
    /// Each lane's sum is a chain of dependent adds, so several output columns run side by side
    /// (independent chains) when there are few rows.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    /// With `wide` (the CPU has AVX-512F, checked by the caller), two columns share a 16-lane
    /// register.
    fn fused_part_avx2(&self, x: &[f32], m: usize, range: Range<usize>, wide: bool, y: &mut [f32]) {
        if m > AVX2_MAX_ROWS {
            return self.fused_part_portable(x, m, range, y);
        }
        let width = range.len();
        assert!(x.len() >= m * self.cols);
        // Output columns side by side (independent add chains): 4 for one row (8 with AVX-512),
        // 2 for two or three (4 with AVX-512), else 1 (2 with AVX-512).
        let mut c = 0;
        while c < width {
            let o = range.start + c;
            // SAFETY (AVX-512 arms): the caller checked the CPU has AVX-512F for `wide`.
            c += match (wide, m, width - c) {
                (true, 1, 8..) => unsafe { self.columns_avx512::<8>(x, m, o, &mut y[c..], width) },
                (true, ..=3, 4..) => unsafe { self.columns_avx512::<4>(x, m, o, &mut y[c..], width) },
                (true, _, 2..) => unsafe { self.columns_avx512::<2>(x, m, o, &mut y[c..], width) },
                (true, ..) => unsafe { self.columns_avx512::<1>(x, m, o, &mut y[c..], width) },
                (_, 1, 4..) => self.columns_avx2::<4>(x, m, o, &mut y[c..], width),
                (_, ..=3, 2..) => self.columns_avx2::<2>(x, m, o, &mut y[c..], width),
                _ => self.columns_avx2::<1>(x, m, o, &mut y[c..], width),
            };
        }
    }

    /// Output columns `o..o + G` of `x W^T` for the `m` (at most [`AVX2_MAX_ROWS`]) rows of `x`,
    /// written to `y[r * width + g]` for row r and column g; returns G.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn columns_avx2<const G: usize>(
        &self,
        x: &[f32],
        m: usize,
        o: usize,
        y: &mut [f32],
        width: usize,
    ) -> usize {
        use std::arch::x86_64::*;
        let per_row = self.cols / BLOCK;
        let block_bytes = if self.q4 { 16 } else { 32 };
        assert!((o + G) * per_row * block_bytes <= self.quants.len() && m * self.cols <= x.len());
        // The 16 lanes as two registers: weights 8k..8k + 8 go to register k % 2.
        let mut acc = [[[_mm256_setzero_ps(); 2]; G]; AVX2_MAX_ROWS];
        for b in 0..per_row {
            self.prefetch_next_columns(o + G, G, b);
            let mut w = [[_mm256_setzero_ps(); 4]; G];
            for (g, wg) in w.iter_mut().enumerate() {
                let block = (o + g) * per_row + b;
                let d = _mm256_set1_ps(self.scales[block]);
                // SAFETY: the assert above keeps the block inside `quants`.
                let q = unsafe { self.quants_i8(block) };
                // Eight i8 quants → eight f32 weights: sign-extend, convert, scale.
                *wg = q.map(|v| _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))));
            }
            for (r, lanes) in acc.iter_mut().enumerate().take(m) {
                // SAFETY: row r's block b lies inside `x` (asserted above).
                let xs = unsafe { x.as_ptr().add(r * self.cols + b * BLOCK) };
                for k in 0..4 {
                    // SAFETY: as above.
                    let xk = unsafe { _mm256_loadu_ps(xs.add(8 * k)) };
                    for (lane, wg) in lanes.iter_mut().zip(&w) {
                        lane[k % 2] = _mm256_add_ps(lane[k % 2], _mm256_mul_ps(wg[k], xk));
                    }
                }
            }
        }
        for (r, lanes) in acc.iter().enumerate().take(m) {
            for (g, lane) in lanes.iter().enumerate() {
                let mut v = [0f32; LANES];
                // SAFETY: `v` holds 16 floats.
                unsafe {
                    _mm256_storeu_ps(v.as_mut_ptr(), lane[0]);
                    _mm256_storeu_ps(v.as_mut_ptr().add(8), lane[1]);
                }
                y[r * width + g] = v.iter().sum();
            }
        }
        G
    }

    /// Asks for the `b`-th slice of the blocks of the `count` columns from `first` (the next
    /// group a kernel will read) while the current group is computed: the weights stream from
    /// memory once per token, and the hardware prefetcher alone left a decoding step's many
    /// small matrices waiting on memory (the products took 1.25× as long, `BENCHMARKS.md`).
    /// The `b`-th slice of `count` blocks' bytes is taken, so one pass over a group's blocks
    /// covers the next group; addresses past the matrix are harmless (a prefetch never faults).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn prefetch_next_columns(&self, first: usize, count: usize, b: usize) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let per_row = self.cols / BLOCK;
        let block_bytes = if self.q4 { 16 } else { 32 };
        let slice = count * block_bytes;
        let quants = self
            .quants
            .as_ptr()
            .wrapping_add(first * per_row * block_bytes + b * slice);
        for line in (0..slice).step_by(64) {
            // SAFETY: a prefetch reads nothing and never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(quants.wrapping_add(line).cast()) };
        }
        // The scales: `count` f32 per slice, a 64-byte line every 16 / count slices.
        if (b * count) % 16 < count {
            let scales = self.scales.as_ptr().wrapping_add(first * per_row + b * count);
            // SAFETY: as above.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(scales.cast()) };
        }
    }

    /// Block `block`'s 32 quants as four registers of eight i8 each (in the low 8 bytes), in
    /// the order of the block's values; q4 nibbles are unpacked and offset by -8.
    ///
    /// # Safety
    /// The CPU has AVX2 and `block` is inside the matrix.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn quants_i8(&self, block: usize) -> [std::arch::x86_64::__m128i; 4] {
        use std::arch::x86_64::*;
        // SAFETY: the caller keeps `block` inside `quants`.
        unsafe {
            if self.q4 {
                let bytes = _mm_loadu_si128(self.quants.as_ptr().add(block * 16).cast());
                let (mask, eight) = (_mm_set1_epi8(0x0F), _mm_set1_epi8(8));
                let lo = _mm_sub_epi8(_mm_and_si128(bytes, mask), eight);
                let hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), eight);
                [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)]
            } else {
                let p = self.quants.as_ptr().add(block * 32);
                let (a, c) = (_mm_loadu_si128(p.cast()), _mm_loadu_si128(p.add(16).cast()));
                [a, _mm_srli_si128(a, 8), c, _mm_srli_si128(c, 8)]
            }
        }
    }

    /// Output columns `o..o + C` like [`BlockMatrix::columns_avx2`], each column's 16 lanes in
    /// one register. A q4 block is decoded by table: the scale times -8..=7 is computed once
    /// (the same exact products as the portable decode), then each nibble picks its weight with
    /// one permute, so a block costs a handful of instructions.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2")]
    fn columns_avx512<const C: usize>(
        &self,
        x: &[f32],
        m: usize,
        o: usize,
        y: &mut [f32],
        width: usize,
    ) -> usize {
        use std::arch::x86_64::*;
        let per_row = self.cols / BLOCK;
        let block_bytes = if self.q4 { 16 } else { 32 };
        assert!((o + C) * per_row * block_bytes <= self.quants.len() && m * self.cols <= x.len());
        let nibble_values = _mm512_setr_ps(
            -8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0,
        );
        let mut acc = [[_mm512_setzero_ps(); C]; AVX2_MAX_ROWS];
        for b in 0..per_row {
            self.prefetch_next_columns(o + C, C, b);
            let mut w = [[_mm512_setzero_ps(); 2]; C];
            for (c, wc) in w.iter_mut().enumerate() {
                let block = (o + c) * per_row + b;
                let d = _mm512_set1_ps(self.scales[block]);
                // SAFETY: the assert above keeps the block inside `quants`.
                *wc = unsafe {
                    if self.q4 {
                        let table = _mm512_mul_ps(d, nibble_values);
                        let bytes = _mm_loadu_si128(self.quants.as_ptr().add(block * 16).cast());
                        // The permute reads the low 4 bits: values 0..16 are the low nibbles.
                        let idx = _mm512_cvtepu8_epi32(bytes);
                        [
                            _mm512_permutexvar_ps(idx, table),
                            _mm512_permutexvar_ps(_mm512_srli_epi32(idx, 4), table),
                        ]
                    } else {
                        let p = self.quants.as_ptr().add(block * 32);
                        let lo = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()));
                        let hi = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(16).cast()));
                        [
                            _mm512_mul_ps(d, _mm512_cvtepi32_ps(lo)),
                            _mm512_mul_ps(d, _mm512_cvtepi32_ps(hi)),
                        ]
                    }
                };
            }
            for (r, lanes) in acc.iter_mut().enumerate().take(m) {
                // SAFETY: row r's block b lies inside `x` (asserted above).
                let xs = unsafe { x.as_ptr().add(r * self.cols + b * BLOCK) };
                for h in 0..2 {
                    // SAFETY: as above.
                    let xh = unsafe { _mm512_loadu_ps(xs.add(LANES * h)) };
                    for (lane, wc) in lanes.iter_mut().zip(&w) {
                        *lane = _mm512_add_ps(*lane, _mm512_mul_ps(wc[h], xh));
                    }
                }
            }
        }
        for (r, lanes) in acc.iter().enumerate().take(m) {
            for (c, lane) in lanes.iter().enumerate() {
                let mut v = [0f32; LANES];
                // SAFETY: `v` holds 16 floats.
                unsafe { _mm512_storeu_ps(v.as_mut_ptr(), *lane) };
                y[r * width + c] = v.iter().sum();
            }
        }
        C
    }

    /// [`BlockMatrix::fused_part`] for the build's baseline instruction set.
    #[inline(always)]
    fn fused_part_portable(&self, x: &[f32], m: usize, range: Range<usize>, y: &mut [f32]) {
        let per_row = self.cols / BLOCK;
        let width = range.len();
        let mut w = [0f32; BLOCK];
        let mut acc = vec![[0f32; LANES]; m];
        for (c, o) in range.enumerate() {
            acc.fill([0.0; LANES]);
            for b in 0..per_row {
                self.decode_block(o * per_row + b, &mut w);
                for (r, lanes) in acc.iter_mut().enumerate() {
                    let xs = &x[r * self.cols + b * BLOCK..r * self.cols + (b + 1) * BLOCK];
                    for (w16, x16) in w.chunks_exact(LANES).zip(xs.chunks_exact(LANES)) {
                        for l in 0..LANES {
                            lanes[l] += w16[l] * x16[l];
                        }
                    }
                }
            }
            for (r, lanes) in acc.iter().enumerate() {
                y[r * width + c] = lanes.iter().sum();
            }
        }
    }

    /// Output columns `range` of `x W^T` for `x` [m, cols], written to `y` as
    /// [m, range.len()], decoding at most `tile_weights` weights at a time on the gemm path.
    fn product_part(
        &self,
        x: &[f32],
        m: usize,
        range: Range<usize>,
        tile_weights: usize,
        y: &mut [f32],
    ) -> Result<()> {
        let width = range.len();
        if m >= GEMM_MIN_ROWS && row_dots::available() {
            // Many rows on AVX-512: decode a cache-sized tile of W at a time on this thread and
            // dot its rows with every row of x while it is in the cache.
            let tile_rows = (tile_weights.min(CACHE_TILE_WEIGHTS) / self.cols).max(1);
            let mut w = vec![0f32; tile_rows.min(width) * self.cols];
            for start in range.clone().step_by(tile_rows) {
                let rows = start..(start + tile_rows).min(range.end);
                let tile = &mut w[..rows.len() * self.cols];
                self.decode_blocks(rows.start * self.cols / BLOCK, tile);
                let out = &mut y[start - range.start..];
                row_dots::product_into(x, m, self.cols, tile, rows.len(), out, width);
            }
            return Ok(());
        }
        if m >= GEMM_MIN_ROWS {
            // Many rows: decode each tile of W once and multiply it as a dense matrix.
            let x = Tensor::from_slice(x, (m, self.cols), &Device::Cpu)?;
            let tile_rows = (tile_weights / self.cols).max(1);
            let mut w = vec![0f32; tile_rows.min(width) * self.cols];
            let mut parts = Vec::new();
            for start in range.clone().step_by(tile_rows) {
                let rows = start..(start + tile_rows).min(range.end);
                let tile = &mut w[..rows.len() * self.cols];
                self.decode_rows(rows.clone(), tile);
                let tile = Tensor::from_slice(tile, (rows.len(), self.cols), &Device::Cpu)?.t()?;
                parts.push(if row_dots::applies(&x, &tile) {
                    row_dots::product(&x, &tile)?
                } else {
                    x.matmul(&tile)?
                });
            }
            let product = Tensor::cat(&parts, 1)?.flatten_all()?.to_vec1::<f32>()?;
            y[..product.len()].copy_from_slice(&product);
            return Ok(());
        }
        self.fused_part(x, m, range, y);
        Ok(())
    }

    /// The whole of W decoded, transposed: `W^T` [cols, rows] (a differentiable product
    /// multiplies it; see the candle engine's `linear`).
    pub fn dense_t(&self) -> Result<Tensor> {
        let mut w = vec![0f32; self.rows * self.cols];
        self.decode_rows(0..self.rows, &mut w);
        Tensor::from_vec(w, (self.rows, self.cols), &candle_core::Device::Cpu)?.t()
    }

    /// `x W^T` for `x` [m, cols] (f32, on the CPU) → [m, rows].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.product(x, TILE_WEIGHTS)
    }

    /// [`BlockMatrix::forward`] with the gemm path's tile size given.
    fn product(&self, x: &Tensor, tile_weights: usize) -> Result<Tensor> {
        let (m, k) = x.dims2()?;
        if k != self.cols {
            candle_core::bail!("[{m}, {k}] times a [{}, {}]^T block matrix", self.rows, self.cols);
        }
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        // candle's gemm parallelises inside; the fused and AVX-512 dense paths split W's rows
        // over the threads.
        let threads = if m >= GEMM_MIN_ROWS && !row_dots::available() {
            1
        } else {
            thread_count(m * self.rows * self.cols)
        };
        let y = column_split::product_columns(m, self.rows, threads, |range, out| {
            self.product_part(&xs, m, range, tile_weights, out)
        })?;
        Tensor::from_vec(y, (m, self.rows), x.device())
    }
}

/// Four f32 from the front of `v` (at least four long) as one SIMD128 register.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn load4(v: &[f32]) -> std::arch::wasm32::v128 {
    assert!(v.len() >= 4);
    // SAFETY: four f32 are in bounds (asserted); v128 loads need no alignment.
    unsafe { std::arch::wasm32::v128_load(v.as_ptr().cast()) }
}

/// Sixteen bytes from the front of `v` (at least sixteen long) as one SIMD128 register.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn load16(v: &[u8]) -> std::arch::wasm32::v128 {
    assert!(v.len() >= 16);
    // SAFETY: sixteen bytes are in bounds (asserted); v128 loads need no alignment.
    unsafe { std::arch::wasm32::v128_load(v.as_ptr().cast()) }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::BlockMatrix;

    /// A random [rows, cols] matrix quantized to `dtype`, its blocks, and the dequantized values.
    fn quantized(rows: usize, cols: usize, dtype: GgmlDType, seed: u64) -> (BlockMatrix, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        let w = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let dense = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
        let blocks = BlockMatrix::from_qtensor(&q).unwrap().unwrap();
        (blocks, dense.to_vec1().unwrap())
    }

    /// The differentiable path multiplies `dense_t`: exactly the dequantized W, transposed.
    #[test]
    fn dense_t_is_the_dequantized_matrix_transposed() {
        let (rows, cols) = (40, 64);
        for (dtype, seed) in [(GgmlDType::Q8_0, 3), (GgmlDType::Q4_0, 4)] {
            let (blocks, dense) = quantized(rows, cols, dtype, seed);
            let t = blocks.dense_t().unwrap();
            assert_eq!(t.dims(), &[cols, rows]);
            let t = t.to_vec2::<f32>().unwrap();
            for o in 0..rows {
                for j in 0..cols {
                    assert_eq!(t[j][o], dense[o * cols + j], "{dtype:?} [{o}, {j}]");
                }
            }
        }
    }

    #[test]
    fn every_path_multiplies_the_dequantized_weights() {
        let (rows, cols) = (700, 512);
        for (dtype, seed) in [(GgmlDType::Q8_0, 1), (GgmlDType::Q4_0, 2)] {
            let (blocks, dense) = quantized(rows, cols, dtype, seed);
            // 1, 3 and 8 rows take the fused dot (3 × 700 × 512 is large enough for threads); 9,
            // 21 and 50 decoded tiles, whole or 37 rows of W at a time (multiplied by the AVX-512
            // row dots where the CPU has them, else candle's gemm).
            for (m, tile_weights) in [
                (1, super::TILE_WEIGHTS),
                (3, super::TILE_WEIGHTS),
                (8, super::TILE_WEIGHTS),
                (9, super::TILE_WEIGHTS),
                (21, 37 * cols),
                (50, 37 * cols),
            ] {
                let mut rng = StdRng::seed_from_u64(seed * 100 + m as u64);
                let x: Vec<f32> = (0..m * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
                let xt = Tensor::from_slice(&x, (m, cols), &Device::Cpu).unwrap();
                let got = blocks.product(&xt, tile_weights).unwrap();
                assert_eq!(got.dims(), &[m, rows]);
                let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for r in 0..m {
                    for o in 0..rows {
                        let want: f64 = (0..cols)
                            .map(|j| f64::from(x[r * cols + j]) * f64::from(dense[o * cols + j]))
                            .sum();
                        let g = f64::from(got[r * rows + o]);
                        assert!(
                            (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "{dtype:?} m={m} [{r}, {o}]: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_mismatched_product_is_refused() {
        let (blocks, _) = quantized(4, 64, GgmlDType::Q8_0, 3);
        let x = Tensor::zeros((2, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = blocks.forward(&x).unwrap_err().to_string();
        assert!(err.contains("[2, 32] times a [4, 64]^T"), "{err}");
    }

    #[test]
    fn the_fused_dot_gives_the_same_bits_on_every_instruction_set() {
        // Without AVX2 both sides would be the portable build: nothing would be compared.
        #[cfg(target_arch = "x86_64")]
        let wide_path = std::arch::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        let wide_path = false;
        if !wide_path {
            crate::test_skip::skip("no AVX2 here, so the wide fused dot is untested");
            return;
        }
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
            let (blocks, _) = quantized(35, 256, dtype, 4);
            // 1 row runs 8 columns side by side (AVX2: 4), 2-3 rows 4 (2), more rows 2 (1); 9
            // rows fall back to the portable code. 35 columns leave a remainder for every
            // grouping.
            for m in [1, 2, 3, 5, 7, 8, 9] {
                let mut rng = StdRng::seed_from_u64(5 + m as u64);
                let x: Vec<f32> = (0..m * 256).map(|_| rng.random_range(-2.0..2.0)).collect();
                // The dispatching entry (AVX-512 or AVX2, as the CPU has them), and the AVX2
                // code alone, against the baseline build.
                let run = |f: &dyn Fn(&mut [f32])| {
                    let mut y = vec![f32::NAN; m * 35];
                    f(&mut y);
                    y
                };
                let portable = run(&|y| blocks.fused_part_portable(&x, m, 0..35, y));
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                let wide = run(&|y| blocks.fused_part(&x, m, 0..35, y));
                assert_eq!(bits(&wide), bits(&portable), "{dtype:?}, {m} rows");
                #[cfg(target_arch = "x86_64")]
                {
                    // SAFETY: `wide_path` checked AVX2; `false` keeps AVX-512 out.
                    let avx2 = run(&|y| unsafe { blocks.fused_part_avx2(&x, m, 0..35, false, y) });
                    assert_eq!(bits(&avx2), bits(&portable), "{dtype:?}, {m} rows, AVX2 only");
                }
            }
        }
    }
}
