//! Splitting a product's output columns over the CPU threads. The parts run on candle's barrier
//! pool, whose workers spin a while before they sleep: a decoding step makes ~70 products a
//! token, a few tenths of a millisecond apart, and waking a sleeping rayon worker for each cost
//! more than the second thread gave (one thread was as fast as two).

use std::ops::Range;
use std::sync::Mutex;

use candle_core::Result;

/// Multiply-adds below which a product stays on the calling thread. A decoding step's 768×768
/// and 768×384 matrices are split too: once their weights are prefetched (see the block
/// matrices) the second thread gains more than the hand-off costs (`BENCHMARKS.md`).
const MIN_SPLIT_WORK: usize = 1 << 18;

/// Threads for a product of `work` multiply-adds: one unless it is large (and never on wasm32,
/// which has no threads here).
pub(crate) fn thread_count(work: usize) -> usize {
    if cfg!(target_arch = "wasm32") || work < MIN_SPLIT_WORK {
        return 1;
    }
    // candle counts physical cores by reading /proc/cpuinfo on every call: once is enough.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::barrier_pool().n_workers() + 1)
}

/// `[m, n]` from parts that each compute columns `range` as `[m, range.len()]`, split over
/// `threads` threads (one part per thread; `threads` ≤ 1 runs one part here).
pub(crate) fn product_columns(
    m: usize,
    n: usize,
    threads: usize,
    part: impl Fn(Range<usize>) -> Result<Vec<f32>> + Sync,
) -> Result<Vec<f32>> {
    if threads <= 1 || n < 2 {
        return part(0..n);
    }
    let chunk = n.div_ceil(threads);
    let ranges: Vec<Range<usize>> = (0..n).step_by(chunk).map(|s| s..(s + chunk).min(n)).collect();
    let slots: Vec<Mutex<Option<Result<Vec<f32>>>>> = ranges.iter().map(|_| Mutex::new(None)).collect();
    candle_core::utils::barrier_pool().execute_chunked(ranges.len(), |parts| {
        for i in parts {
            let out = part(ranges[i].clone());
            *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
        }
    });
    let mut y = vec![0f32; m * n];
    for (range, slot) in ranges.iter().zip(slots) {
        let p = slot
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(|| candle_core::bail!("a product's part did not run"))?;
        let width = range.len();
        for r in 0..m {
            y[r * n + range.start..r * n + range.end].copy_from_slice(&p[r * width..(r + 1) * width]);
        }
    }
    Ok(y)
}
