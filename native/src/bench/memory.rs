//! `bench memory`: the machine's memory read bandwidth, the ceiling for decoding (every
//! generated token reads the text model's weights once): a streaming read over a buffer far
//! larger than the caches, on 1 thread and on N threads. Also the f32 multiply-add peak, the
//! ceiling for the image encode (dense products over 50 tokens), and the rate of the q8/q4
//! block products alone over a token's worth of weights (what a decoding step cannot beat).

use std::time::Instant;

use anyhow::{ensure, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use caption_model::weights::BlockMatrix;

/// Sums `words` with eight independent accumulators, so the loop is bound by loads.
fn stream_sum(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        for (a, &w) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(w);
        }
    }
    let tail: u64 = chunks.remainder().iter().fold(0, |s, &w| s.wrapping_add(w));
    acc.iter().fold(tail, |s, &a| s.wrapping_add(a))
}

/// Best read bandwidth in GB/s (1e9 bytes/s) over `iters` passes of `buffer`, split in
/// `threads` equal parts read at once.
pub fn read_bandwidth(buffer: &[u64], threads: usize, iters: usize) -> f64 {
    let threads = threads.max(1);
    let part = buffer.len().div_ceil(threads);
    let mut best = f64::MAX;
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        let total = std::thread::scope(|s| {
            let handles: Vec<_> = buffer
                .chunks(part)
                .map(|c| s.spawn(move || stream_sum(c)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        });
        std::hint::black_box(total);
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::mem::size_of_val(buffer) as f64 / best / 1e9
}

/// Independent accumulators of the peak loop: enough to cover the multiply-add latency on
/// every port.
const PEAK_CHAINS: usize = 12;

/// f32 multiply-adds of `rounds` rounds over [`PEAK_CHAINS`] registers of the widest vectors the
/// CPU has (16 lanes with AVX-512F, 8 with AVX2+FMA, else scalar `mul_add`); returns the
/// lanes per register.
fn fma_rounds(rounds: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        /// The loop for one vector width: `run` compiled for `$features`, called where the CPU
        /// has them; evaluates to the lanes per register.
        macro_rules! vector_rounds {
            ($features:literal, $set1:ident, $fmadd:ident, $lanes:literal) => {{
                #[target_feature(enable = $features)]
                fn run(rounds: usize) {
                    let (a, b) = ($set1(0.999_999), $set1(1e-7));
                    let mut acc = [$set1(1.0); PEAK_CHAINS];
                    for _ in 0..rounds {
                        for r in acc.iter_mut() {
                            *r = $fmadd(*r, a, b);
                        }
                    }
                    std::hint::black_box(acc);
                }
                // SAFETY: the caller checked that the CPU has `$features`.
                unsafe { run(rounds) };
                $lanes
            }};
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            return vector_rounds!("avx512f", _mm512_set1_ps, _mm512_fmadd_ps, 16);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return vector_rounds!("avx2,fma", _mm256_set1_ps, _mm256_fmadd_ps, 8);
        }
    }
    let mut acc = [1f32; PEAK_CHAINS];
    for _ in 0..rounds {
        for r in acc.iter_mut() {
            *r = r.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    1
}

/// Best f32 GFLOP/s (a multiply-add counts two) of the multiply-add loop on `threads` threads
/// at once, over `iters` passes.
pub fn fma_peak(threads: usize, iters: usize) -> f64 {
    const ROUNDS: usize = 20_000_000;
    let threads = threads.max(1);
    let mut best = f64::MAX;
    let mut lanes = 1;
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        lanes = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| fma_rounds(ROUNDS))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(1))
                .max()
                .unwrap_or(1)
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    (threads * ROUNDS * PEAK_CHAINS * lanes * 2) as f64 / best / 1e9
}

/// Weights multiplied per generated token by the full-size default model (GPT-2's blocks, the
/// cross-attention blocks, the tied LM head), rounded to whole [`DOT_ROWS`] × [`DOT_COLS`]
/// matrices.
const TOKEN_WEIGHTS: usize = 146_000_000;
/// Shape of each matrix of the block-product pass: GPT-2's MLP up-projection.
const DOT_ROWS: usize = 3072;
const DOT_COLS: usize = 768;
/// Matrices in the block-product pass.
const DOT_MATRICES: usize = TOKEN_WEIGHTS.div_ceil(DOT_ROWS * DOT_COLS);

/// Best ms of one activation row through enough `dtype` matrices to hold a token's weights
/// (distinct copies, so they stream from memory as a decoding step's do), over `iters` passes,
/// with the bytes of their blocks and their weights.
fn block_pass_ms(dtype: GgmlDType, iters: usize) -> Result<(f64, usize, usize)> {
    let w = Tensor::randn(0f32, 0.02, (DOT_ROWS, DOT_COLS), &Device::Cpu)?;
    let q = QTensor::quantize(&w, dtype)?;
    let matrices = (0..DOT_MATRICES)
        .map(|_| BlockMatrix::from_qtensor(&q)?.ok_or_else(|| anyhow::anyhow!("{dtype:?} blocks")))
        .collect::<Result<Vec<_>>>()?;
    let x = Tensor::randn(0f32, 1.0, (1, DOT_COLS), &Device::Cpu)?;
    let mut best = f64::MAX;
    for _ in 0..iters.max(1) + 1 {
        let t = Instant::now();
        for m in &matrices {
            std::hint::black_box(m.forward(&x)?);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((
        best * 1e3,
        DOT_MATRICES * q.storage_size_in_bytes(),
        DOT_MATRICES * DOT_ROWS * DOT_COLS,
    ))
}

/// Prints the read bandwidth of a `mb`-megabyte buffer on 1 thread and on `threads` threads,
/// the multiply-add peak, and the rate of the block products alone.
pub fn bench_memory(mb: usize, threads: usize, iters: usize) -> Result<()> {
    ensure!(mb >= 64, "use a buffer of at least 64 MB, well beyond the caches");
    // Written once so that every page is mapped before timing.
    let buffer: Vec<u64> = (0..mb * 1_000_000 / 8).map(|i| i as u64).collect();
    println!("streaming read of {mb} MB, best of {iters} passes");
    let mut counts = vec![1];
    if threads > 1 {
        counts.push(threads);
    }
    for &n in &counts {
        println!(
            "{n} thread{}: {:.1} GB/s",
            if n == 1 { "" } else { "s" },
            read_bandwidth(&buffer, n, iters)
        );
    }
    println!(
        "f32 multiply-add peak (widest vectors, {PEAK_CHAINS} chains per thread), best of {iters} passes"
    );
    for &n in &counts {
        println!(
            "{n} thread{}: {:.1} GFLOP/s",
            if n == 1 { "" } else { "s" },
            fma_peak(n, iters)
        );
    }
    println!(
        "q8/q4 block products alone: one row through {:.0} M weights ({DOT_MATRICES} × \
         {DOT_ROWS}×{DOT_COLS}), {} CPU threads, best of {iters} passes",
        TOKEN_WEIGHTS as f64 / 1e6,
        candle_core::utils::get_num_threads()
    );
    for (label, dtype) in [("q8", GgmlDType::Q8_0), ("q4", GgmlDType::Q4_0)] {
        let (ms, bytes, weights) = block_pass_ms(dtype, iters)?;
        println!(
            "{label}: {ms:.2} ms, {:.1} G weights/s, reads {:.1} MB at {:.1} GB/s",
            weights as f64 / ms / 1e6,
            bytes as f64 / 1e6,
            bytes as f64 / ms / 1e6
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_reads_every_word() {
        let words: Vec<u64> = (1..=1001).collect();
        assert_eq!(stream_sum(&words), 1001 * 1002 / 2);
        assert_eq!(stream_sum(&[]), 0);
    }
}
