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

/// `[m, n]` from parts that each write columns `range` as `[m, range.len()]` into the slice
/// they are given, split over `threads` threads (one part per thread; `threads` ≤ 1 runs one
/// part here). With one row (a decoding step) each part writes its columns of the result in
/// place, so a product allocates only its output; with more rows a part's columns are not
/// contiguous in the result, so each part fills a buffer that is then copied into place.
pub(crate) fn product_columns(
    m: usize,
    n: usize,
    threads: usize,
    part: impl Fn(Range<usize>, &mut [f32]) -> Result<()> + Sync,
) -> Result<Vec<f32>> {
    let mut y = vec![0f32; m * n];
    if threads <= 1 || n < 2 {
        part(0..n, &mut y)?;
        return Ok(y);
    }
    let chunk = n.div_ceil(threads);
    let ranges: Vec<Range<usize>> = (0..n).step_by(chunk).map(|s| s..(s + chunk).min(n)).collect();
    if m == 1 {
        let outs: Vec<Mutex<Option<&mut [f32]>>> = y.chunks_mut(chunk).map(|c| Mutex::new(Some(c))).collect();
        let done = run_parts(&ranges, |i| {
            let out = lock(&outs[i]).take();
            let out = out.ok_or_else(|| candle_core::Error::Msg("a product's part ran twice".into()))?;
            part(ranges[i].clone(), out)
        });
        drop(outs);
        done?;
        return Ok(y);
    }
    let buffers: Vec<Mutex<Vec<f32>>> = ranges
        .iter()
        .map(|r| Mutex::new(vec![0f32; m * r.len()]))
        .collect();
    run_parts(&ranges, |i| part(ranges[i].clone(), &mut lock(&buffers[i])))?;
    for (range, buffer) in ranges.iter().zip(buffers) {
        let p = buffer.into_inner().unwrap_or_else(|e| e.into_inner());
        let width = range.len();
        for r in 0..m {
            y[r * n + range.start..r * n + range.end].copy_from_slice(&p[r * width..(r + 1) * width]);
        }
    }
    Ok(y)
}

/// `run(i)` for every part `i` of `ranges` on candle's barrier pool; the first error, or an
/// error when a part did not run.
fn run_parts(ranges: &[Range<usize>], run: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    let results: Vec<Mutex<Option<Result<()>>>> = ranges.iter().map(|_| Mutex::new(None)).collect();
    candle_core::utils::barrier_pool().execute_chunked(ranges.len(), |parts| {
        for i in parts {
            *lock(&results[i]) = Some(run(i));
        }
    });
    for result in results {
        let result = result.into_inner().unwrap_or_else(|e| e.into_inner());
        result.unwrap_or_else(|| candle_core::bail!("a product's part did not run"))?;
    }
    Ok(())
}

/// The mutex's value; a part that panicked while holding it left nothing half-written that
/// matters (its result is an error or is overwritten).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
