//! The CPU engine's product with a block-quantized matrix: `x W^T` with W decoded block by
//! block from its GGML q8_0/q4_0 bytes and the activations kept in f32. candle's own quantized
//! matmul also quantizes the activations to 8 bits; that adds more error than the weights'
//! quantization, and it turns float noise between engines (CPU vs GPU, x86 vs wasm) into
//! different captions, because an activation near a rounding boundary lands on either side.
//! Here both engines compute the same sum of the same f32 products.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Result, Tensor};

/// Values per GGML block.
const BLOCK: usize = 32;

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

    /// Block `b`'s 32 weights (scale times quant, exact in f32).
    fn decode(&self, b: usize, out: &mut [f32; BLOCK]) {
        let d = self.scales[b];
        if self.q4 {
            let bytes = &self.quants[b * 16..b * 16 + 16];
            for (j, &byte) in bytes.iter().enumerate() {
                out[j] = d * ((byte & 0x0F) as i32 - 8) as f32;
                out[j + 16] = d * ((byte >> 4) as i32 - 8) as f32;
            }
        } else {
            for (o, &q) in out.iter_mut().zip(&self.quants[b * 32..b * 32 + 32]) {
                *o = d * (q as i8) as f32;
            }
        }
    }

    /// Output columns `range` of `x W^T` for `x` [m, cols], written to `y` [m, range.len()].
    fn product_part(&self, x: &[f32], m: usize, range: std::ops::Range<usize>, y: &mut [f32]) {
        let per_row = self.cols / BLOCK;
        let width = range.len();
        let mut w = [0f32; BLOCK];
        for (c, o) in range.enumerate() {
            for b in 0..per_row {
                self.decode(o * per_row + b, &mut w);
                for r in 0..m {
                    let xs = &x[r * self.cols + b * BLOCK..r * self.cols + (b + 1) * BLOCK];
                    let dot: f32 = w.iter().zip(xs).map(|(a, b)| a * b).sum();
                    y[r * width + c] += dot;
                }
            }
        }
    }

    /// `x W^T` for `x` [m, cols] (f32, on the CPU) → [m, rows].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (m, k) = x.dims2()?;
        if k != self.cols {
            candle_core::bail!("[{m}, {k}] times a [{}, {}]^T block matrix", self.rows, self.cols);
        }
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let threads = thread_count(m * self.rows * self.cols);
        let chunk = self.rows.div_ceil(threads);
        let parts: Vec<(std::ops::Range<usize>, Vec<f32>)> = if threads == 1 {
            let mut y = vec![0f32; m * self.rows];
            self.product_part(&xs, m, 0..self.rows, &mut y);
            vec![(0..self.rows, y)]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..self.rows)
                    .step_by(chunk)
                    .map(|start| {
                        let range = start..(start + chunk).min(self.rows);
                        let xs = &xs;
                        s.spawn(move || {
                            let mut y = vec![0f32; m * range.len()];
                            self.product_part(xs, m, range.clone(), &mut y);
                            (range, y)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .map_err(|_| candle_core::Error::Msg("a matmul thread panicked".into()))
                    })
                    .collect::<Result<_>>()
            })?
        };
        let mut y = vec![0f32; m * self.rows];
        for (range, part) in parts {
            let width = range.len();
            for r in 0..m {
                y[r * self.rows + range.start..r * self.rows + range.end]
                    .copy_from_slice(&part[r * width..(r + 1) * width]);
            }
        }
        Tensor::from_vec(y, (m, self.rows), x.device())
    }
}

/// Threads for a product of `work` multiply-adds: one unless it is large (and never on wasm32,
/// which has no threads here).
fn thread_count(work: usize) -> usize {
    if cfg!(target_arch = "wasm32") || work < 1 << 20 {
        return 1;
    }
    candle_core::utils::get_num_threads().clamp(1, 64)
}
