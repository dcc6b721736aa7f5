//! `bench memory`: the machine's memory read bandwidth, the ceiling for decoding (every
//! generated token reads the text model's weights once): a streaming read over a buffer far
//! larger than the caches, on 1 thread and on N threads.

use std::time::Instant;

use anyhow::{ensure, Result};

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

/// Prints the read bandwidth of a `mb`-megabyte buffer on 1 thread and on `threads` threads.
pub fn bench_memory(mb: usize, threads: usize, iters: usize) -> Result<()> {
    ensure!(mb >= 64, "use a buffer of at least 64 MB, well beyond the caches");
    // Written once so that every page is mapped before timing.
    let buffer: Vec<u64> = (0..mb * 1_000_000 / 8).map(|i| i as u64).collect();
    println!("streaming read of {mb} MB, best of {iters} passes");
    let mut counts = vec![1];
    if threads > 1 {
        counts.push(threads);
    }
    for n in counts {
        println!(
            "{n} thread{}: {:.1} GB/s",
            if n == 1 { "" } else { "s" },
            read_bandwidth(&buffer, n, iters)
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
