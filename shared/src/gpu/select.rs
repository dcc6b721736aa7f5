//! Token selection on the device for beam search: each row's best logits, so that only
//! 2 + 2k values per row are read back instead of the whole vocabulary.

use candle_core::Result;

use super::device::{gpu_err, grid};
use super::kernels::Kernel;
use super::tensor::GpuTensor;

/// Most candidates per row the kernel is asked for (beam search uses 2 × width).
pub const MAX_TOP_K: usize = 256;

impl GpuTensor {
    /// For logits [rows, n]: per row [max, log-sum-exp, (index, value) × k], the k largest
    /// values first to last (the lower index first on ties, NaN never taken; index -1 and
    /// value 0 once a row runs out).
    pub fn top_k_rows(&self, k: usize) -> Result<GpuTensor> {
        let (rows, n) = match self.dims[..] {
            [rows, n] => (rows, n),
            ref d => return Err(gpu_err(format!("top-k of a {d:?} tensor (needs [rows, n])"))),
        };
        if k == 0 || k > MAX_TOP_K || n >= 1 << 24 {
            return Err(gpu_err(format!(
                "top-{k} of rows of {n}: k must be in 1..={MAX_TOP_K} and n below 2^24"
            )));
        }
        let out = GpuTensor::empty(&self.dev, &[rows, 2 + 2 * k])?;
        self.dev.dispatch(
            Kernel::TopK,
            "top_k",
            0,
            &[rows as u32, n as u32, k as u32],
            &[&self.buf, &out.buf],
            grid(rows),
        )?;
        Ok(out)
    }
}
