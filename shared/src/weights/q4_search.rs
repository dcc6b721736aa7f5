//! GGML `Q4_0` blocks with an error-minimising scale.
//!
//! GGML's reference quantizer maps the block's largest-magnitude value to -8 and rounds the
//! rest, which wastes most of the 16 levels on the one extreme value of a bell-shaped block.
//! Here each block tries a few clipping points and a least-squares refit of the scale, and
//! keeps the one with the smallest squared error (the scale as it will be stored, in f16). The
//! bytes are ordinary `Q4_0` blocks: every reader, candle's kernels included, decodes them
//! unchanged.

use half::f16;

use super::quant::BLOCK;

/// Bytes of one `Q4_0` block: an f16 scale and 16 bytes of nibbles.
pub const Q4_0_BYTES: usize = 2 + BLOCK / 2;

/// Where the largest-magnitude value lands, in quantization steps: 8 is GGML's choice;
/// beyond 8 it is clipped to -8, trading its error for finer steps for the rest.
const CLIP_POINTS: [f32; 9] = [7.0, 7.5, 8.0, 8.5, 9.0, 9.5, 10.0, 11.0, 12.0];

/// The levels of `x` under scale `d` (already rounded to f16), in -8..=7.
fn levels(x: &[f32], d: f32) -> [i8; BLOCK] {
    let inv = if d != 0.0 { 1.0 / d } else { 0.0 };
    std::array::from_fn(|i| (x[i] * inv).round().clamp(-8.0, 7.0) as i8)
}

/// Squared error of `x` against `d * q`.
fn sse(x: &[f32], d: f32, q: &[i8; BLOCK]) -> f32 {
    x.iter().zip(q).map(|(&v, &l)| (v - d * l as f32).powi(2)).sum()
}

/// A scale as stored (f16) and read back.
fn stored(d: f32) -> f32 {
    f16::from_f32(d).to_f32()
}

/// The best (scale, levels) for one block of 32 values.
fn best_block(x: &[f32]) -> (f32, [i8; BLOCK]) {
    let extreme = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    if extreme == 0.0 {
        return (0.0, [0; BLOCK]);
    }
    let mut best = (f32::INFINITY, 0.0, [0i8; BLOCK]);
    for t in CLIP_POINTS {
        let d = stored(-extreme / t);
        let q = levels(x, d);
        // Least-squares scale for these levels, then the levels for that scale.
        let (num, den) = x.iter().zip(&q).fold((0f32, 0f32), |(n, dd), (&v, &l)| {
            (n + v * l as f32, dd + (l as f32).powi(2))
        });
        let refit = if den > 0.0 { stored(num / den) } else { d };
        for d in [d, refit] {
            let q = levels(x, d);
            let e = sse(x, d, &q);
            if e < best.0 {
                best = (e, d, q);
            }
        }
    }
    (best.1, best.2)
}

/// `values` (a whole number of 32-value blocks, row-major) as `Q4_0` block bytes; large
/// matrices are split over the CPU's threads (natively).
pub fn quantize_q4_0(values: &[f32]) -> Vec<u8> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let blocks = values.len() / BLOCK;
        if threads > 1 && blocks >= 4096 {
            let per = blocks.div_ceil(threads) * BLOCK;
            return std::thread::scope(|s| {
                let parts: Vec<_> = values
                    .chunks(per)
                    .map(|part| s.spawn(move || quantize_serial(part)))
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            });
        }
    }
    quantize_serial(values)
}

fn quantize_serial(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / BLOCK * Q4_0_BYTES);
    for block in values.chunks_exact(BLOCK) {
        let (d, q) = best_block(block);
        push_block(&mut out, f16::from_f32(d), &q);
    }
    out
}

/// Appends one `Q4_0` block: the scale, then the levels (-8..=7) as nibbles.
pub(super) fn push_block(out: &mut Vec<u8>, d: f16, q: &[i8; BLOCK]) {
    out.extend_from_slice(&d.to_le_bytes());
    // GGML packs value j in the low nibble and value j + 16 in the high one, biased by 8.
    for j in 0..BLOCK / 2 {
        let lo = (q[j] + 8) as u8;
        let hi = (q[j + BLOCK / 2] + 8) as u8;
        out.push(lo | (hi << 4));
    }
}
