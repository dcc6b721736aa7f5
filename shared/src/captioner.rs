//! Step-wise generation state: the model side of [`crate::decode::StepModel`], with the GPT-2
//! KV cache and the cross-attention keys/values of the visual latents computed once.

use candle_core::{DType, Tensor};

use crate::decode::StepModel;
use crate::gpt2::KvCache;
use crate::model::{CaptionModel, Visual};
use crate::nn::{causal_bias, key_bias};
use crate::xattn::MediaKv;
use crate::Result;

/// Generation state over a batch of rows (images × beams).
pub struct Captioner<'m> {
    model: &'m CaptionModel,
    /// Prefix tokens, consumed by the first step.
    prefix: Option<Tensor>,
    media: Vec<Option<MediaKv>>,
    /// Keys visible to new queries [R, S]: the frame mask, then 1 for every fed token.
    keep: Tensor,
    cache: Vec<KvCache>,
    pos: usize,
    rows: usize,
}

impl<'m> Captioner<'m> {
    /// Starts generation for the rows of `visual`.
    pub fn new(model: &'m CaptionModel, visual: &Visual) -> Result<Self> {
        let media = match &visual.latents {
            Some(lat) => model.text().media_kv(lat)?,
            None => Vec::new(),
        };
        Ok(Self {
            model,
            prefix: Some(visual.prefix.clone()),
            media,
            keep: visual.frame_mask.to_dtype(visual.prefix.dtype())?,
            cache: model.text().new_cache(),
            pos: 0,
            rows: visual.prefix.dim(0)?,
        })
    }
}

impl StepModel for Captioner<'_> {
    fn rows(&self) -> usize {
        self.rows
    }

    fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        let device = self.model.device();
        let ids = Tensor::from_slice(tokens, (tokens.len(), 1), device)?;
        let emb = self.model.text().embed(&ids)?;
        let ones = Tensor::ones((tokens.len(), 1), self.keep.dtype(), device)?;
        self.keep = Tensor::cat(&[&self.keep, &ones], 1)?;
        let (x, bias) = match self.prefix.take() {
            // First step: the whole prefix plus bos, causally masked.
            Some(prefix) => {
                let x = Tensor::cat(&[&prefix, &emb], 1)?;
                let s = x.dim(1)?;
                let bias = key_bias(&self.keep)?.broadcast_add(&causal_bias(s, s, 0, x.dtype(), device)?)?;
                (x, bias)
            }
            // Later steps: one query that may see every cached key.
            None => (emb, key_bias(&self.keep)?),
        };
        let s = x.dim(1)?;
        let hidden =
            self.model
                .text()
                .forward_embeds(&x, self.pos, &bias, &self.media, Some(&mut self.cache))?;
        self.pos += s;
        let last = hidden.narrow(1, s - 1, 1)?.squeeze(1)?;
        Ok(self.model.text().logits(&last)?.to_dtype(DType::F32)?.to_vec2()?)
    }

    fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::from_vec(idx, rows.len(), self.model.device())?;
        for c in &mut self.cache {
            c.select_rows(&idx)?;
        }
        self.media = self
            .media
            .iter()
            .map(|m| m.as_ref().map(|m| m.select_rows(&idx)).transpose())
            .collect::<candle_core::Result<_>>()?;
        self.keep = self.keep.index_select(&idx, 0)?;
        if let Some(p) = self.prefix.take() {
            self.prefix = Some(p.index_select(&idx, 0)?);
        }
        self.rows = rows.len();
        Ok(())
    }
}
