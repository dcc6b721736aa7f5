//! Step-wise generation state: the model side of [`crate::decode::StepModel`], with the GPT-2
//! KV cache and the cross-attention keys/values of the visual latents computed once. Generic
//! over the [`Backend`], so the CPU and GPU engines decode through the same code.

use candle_core::Tensor;

use crate::backend::Backend;
use crate::decode::{Cut, Nucleus, StepModel, TopTokens};
use crate::gpt2::KvCache;
use crate::model::{CaptionModel, Visual};
use crate::xattn::MediaKv;
use crate::Result;

/// Generation state over a batch of rows (images × beams).
pub struct Captioner<'m, T: Backend = Tensor> {
    model: &'m CaptionModel<T>,
    /// Prefix tokens, consumed by the first step.
    prefix: Option<T>,
    media: Vec<Option<MediaKv<T>>>,
    /// The frame mask [R, T], until the first step reads it into `keep` (a browser GPU can
    /// only read back asynchronously, so the constructor does not).
    frame_mask: Option<T>,
    /// Keys visible to new queries, per row: the frame mask, then 1 for every fed token.
    keep: Vec<Vec<f32>>,
    rows: usize,
    /// The row of `visual` each row decodes (beam search copies rows): the media keys and
    /// values are selected again only when this changes.
    origin: Vec<usize>,
    cache: Vec<KvCache<T>>,
    pos: usize,
    /// Tokens that fit after the prefix in GPT-2's positions.
    max_steps: usize,
}

impl<'m, T: Backend> Captioner<'m, T> {
    /// Starts generation for the rows of `visual`.
    pub fn new(model: &'m CaptionModel<T>, visual: &Visual<T>) -> Result<Self> {
        let media = match &visual.latents {
            Some(lat) => model.text().media_kv(lat)?,
            None => Vec::new(),
        };
        Ok(Self {
            model,
            prefix: Some(visual.prefix.clone()),
            media,
            frame_mask: Some(visual.frame_mask.clone()),
            keep: Vec::new(),
            rows: visual.prefix.dim(0)?,
            origin: (0..visual.prefix.dim(0)?).collect(),
            cache: model.text().new_cache(),
            pos: 0,
            max_steps: model
                .config()
                .text_config()?
                .n_positions
                .saturating_sub(visual.prefix.dim(1)?),
        })
    }

    /// Reads the frame mask into `keep`, once.
    async fn read_frame_mask(&mut self) -> Result<()> {
        if let Some(mask) = self.frame_mask.take() {
            let frames = mask.dim(1)?.max(1);
            let values = mask.to_vec_async().await?;
            self.keep = values.chunks(frames).map(<[f32]>::to_vec).collect();
        }
        Ok(())
    }

    /// The additive attention bias for `s` new queries over every key so far,
    /// [R, 1, s, keys]: hidden keys (padded frames) and, among the new positions, later ones
    /// get the most negative f32 (their sum saturates to -inf, as candle's sum of the two
    /// masks does).
    fn bias(&self, s: usize, like: &T) -> Result<T> {
        let keys = self.keep.first().map_or(0, Vec::len);
        let first_new = keys - s;
        let mut data = Vec::with_capacity(self.keep.len() * s * keys);
        for row in &self.keep {
            for i in 0..s {
                for (j, &k) in row.iter().enumerate() {
                    let hidden_key = (1.0 - k) * f32::MIN + 0.0;
                    let future = if j > first_new + i { f32::MIN } else { 0.0 };
                    data.push(hidden_key + future);
                }
            }
        }
        Ok(T::from_f32(data, &[self.keep.len(), 1, s, keys], like)?)
    }

    /// Feeds one token per row; the next-token logits [R, V], left on the device.
    fn next_logits(&mut self, tokens: &[u32]) -> Result<T> {
        let device = self.model.device();
        let ids = T::ids(tokens, &[tokens.len(), 1], device)?;
        let emb = self.model.text().embed(&ids)?;
        for row in &mut self.keep {
            row.push(1.0);
        }
        let x = match self.prefix.take() {
            // First step: the whole prefix plus bos, causally masked.
            Some(prefix) => T::cat(&[&prefix, &emb], 1)?,
            // Later steps: one query that may see every cached key.
            None => emb,
        };
        let s = x.dim(1)?;
        let bias = self.bias(s, &x)?;
        let text = self.model.text();
        let hidden = text.forward_blocks(&x, self.pos, &bias, &self.media, Some(&mut self.cache))?;
        self.pos += s;
        let d = hidden.dim(2)?;
        // Only the last position's logits are wanted: the final norm runs on that row alone.
        let last = hidden.narrow(1, s - 1, 1)?.reshape(&[tokens.len(), d])?;
        Ok(text.norm_logits(&last)?)
    }
}

impl<T: Backend> StepModel for Captioner<'_, T> {
    fn rows(&self) -> usize {
        self.rows
    }

    fn max_steps(&self) -> Option<usize> {
        Some(self.max_steps)
    }

    async fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        self.read_frame_mask().await?;
        let logits = self.next_logits(tokens)?;
        let v = logits.dim(1)?;
        let flat = logits.to_vec_async().await?;
        Ok(flat.chunks(v.max(1)).map(<[f32]>::to_vec).collect())
    }

    async fn step_top(&mut self, tokens: &[u32], k: usize) -> Result<Vec<TopTokens>> {
        self.read_frame_mask().await?;
        let logits = self.next_logits(tokens)?;
        Ok(logits.top_tokens(k).await?)
    }

    async fn step_nucleus(&mut self, tokens: &[u32], cut: &Cut) -> Result<Vec<Nucleus>> {
        self.read_frame_mask().await?;
        let logits = self.next_logits(tokens)?;
        Ok(logits.nucleus_rows(cut).await?)
    }

    fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        if let Some(bad) = rows.iter().find(|&&r| r >= self.rows) {
            return Err(crate::Error::Decode(format!(
                "row {bad} selected from {} rows",
                self.rows
            )));
        }
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = T::ids(&idx, &[rows.len()], self.model.device())?;
        for c in &mut self.cache {
            T::select_cache_rows(c, rows, &idx)?;
        }
        let origin: Vec<usize> = rows.iter().map(|&r| self.origin[r]).collect();
        // Beams of one image share its media rows: a step that keeps each row's image keeps them.
        if origin != self.origin {
            self.media = self
                .media
                .iter()
                .map(|m| m.as_ref().map(|m| m.select_rows(&idx)).transpose())
                .collect::<candle_core::Result<_>>()?;
            self.origin = origin;
        }
        match self.frame_mask.take() {
            Some(mask) => self.frame_mask = Some(mask.index_select(&idx)?),
            None => self.keep = rows.iter().map(|&r| self.keep[r].clone()).collect(),
        }
        self.rows = rows.len();
        if let Some(p) = self.prefix.take() {
            self.prefix = Some(p.index_select(&idx)?);
        }
        Ok(())
    }
}
