//! Token selection on the device: each row's best logits for greedy decoding, beam search and
//! nucleus sampling, so that only 3 + 2k values per row are read back instead of the whole
//! vocabulary.

use candle_core::Result;

use super::device::{gpu_err, grid};
use super::kernels::Kernel;
use super::tensor::GpuTensor;
use crate::decode::{Cut, LogNorm, Nucleus, TopTokens};

/// Most candidates per row the kernel is asked for (beam search uses 2 × width).
pub const MAX_TOP_K: usize = 256;

/// Candidates read back per row for nucleus sampling without a top-k cut: a trained captioner's
/// nucleus is usually a handful of tokens; one reaching past these reads the whole row.
pub const NUCLEUS_CANDIDATES: usize = 64;

impl GpuTensor {
    /// For logits [rows, n]: per row [max, log-sum-exp, log Σ exp((x - max) / temperature),
    /// (index, value) × k], the k largest values first to last (the lower index first on ties,
    /// NaN never taken; index -1 and value 0 once a row runs out).
    pub fn top_k_rows(&self, k: usize, temperature: f32) -> Result<GpuTensor> {
        let (rows, n) = match self.dims[..] {
            [rows, n] => (rows, n),
            ref d => return Err(gpu_err(format!("top-k of a {d:?} tensor (needs [rows, n])"))),
        };
        if k == 0 || k > MAX_TOP_K || n >= 1 << 24 {
            return Err(gpu_err(format!(
                "top-{k} of rows of {n}: k must be in 1..={MAX_TOP_K} and n below 2^24"
            )));
        }
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(gpu_err(format!(
                "temperature {temperature} is not finite and > 0"
            )));
        }
        let out = GpuTensor::empty(&self.dev, &[rows, 3 + 2 * k])?;
        self.dev.dispatch(
            Kernel::TopK,
            "top_k",
            0,
            &[rows as u32, n as u32, k as u32, (1.0 / temperature).to_bits()],
            &[&self.buf, &out.buf],
            grid(rows),
        )?;
        Ok(out)
    }

    /// Each row's `k` best tokens and normaliser, with its tempered mass (see
    /// [`GpuTensor::top_k_rows`]), selected on the device.
    async fn read_top_rows(&self, k: usize, temperature: f32) -> Result<Vec<(TopTokens, f64)>> {
        let flat = self.top_k_rows(k, temperature)?.to_vec_async().await?;
        Ok(flat
            .chunks(3 + 2 * k)
            .map(|r| {
                let best = r[3..]
                    .chunks(2)
                    .filter(|p| p[0] >= 0.0)
                    .map(|p| (p[0] as u32, p[1]))
                    .collect();
                let norm = LogNorm::from_parts(r[0].into(), r[1].into());
                (TopTokens { norm, best }, r[2].into())
            })
            .collect())
    }

    /// Each row's `k` (1..=[`MAX_TOP_K`]) best tokens, selected on the device.
    pub async fn top_tokens_on_device(&self, k: usize) -> Result<Vec<TopTokens>> {
        let rows = self.read_top_rows(k, 1.0).await?;
        Ok(rows.into_iter().map(|(top, _)| top).collect())
    }

    /// Each row's nucleus from its best candidates alone, None where they do not settle it
    /// (every row when the top-k cut is over [`MAX_TOP_K`]).
    pub async fn nucleus_from_best(&self, cut: &Cut) -> Result<Vec<Option<Nucleus>>> {
        let asked = cut.top_k.unwrap_or(NUCLEUS_CANDIDATES);
        if asked > MAX_TOP_K {
            return Ok(vec![None; self.dims[0]]);
        }
        let rows = self.read_top_rows(asked, cut.temperature).await?;
        Ok(rows
            .iter()
            .map(|(top, tempered)| Nucleus::of_best(top, *tempered, asked, cut))
            .collect())
    }

    /// Each row's nucleus: from the device's candidates where they settle it, else from the
    /// whole rows, read back once for the step.
    pub async fn nucleus_on_device(&self, cut: &Cut) -> Result<Vec<Nucleus>> {
        let settled = self.nucleus_from_best(cut).await?;
        if settled.iter().all(Option::is_some) {
            return Ok(settled.into_iter().flatten().collect());
        }
        let flat = self.to_vec_async().await?;
        let v = self.dims[1].max(1);
        Ok(settled
            .into_iter()
            .zip(flat.chunks(v))
            .map(|(nucleus, row)| nucleus.unwrap_or_else(|| Nucleus::of_row(row, cut)))
            .collect())
    }
}
