//! One batch through the model for training and validation: from decoded pixels, or from the
//! CLIP feature cache when the vision tower is frozen.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use caption_model::{caption_loss, CaptionModel};

use super::qat::distill::kl_divergence;
use crate::data::feature_cache::{CachedBatch, FeatureCache};
use crate::data::{Batch, BatchBuilder, Sample, Skipped};

/// Logits `[B, L, V]`, the target ids `[B, L]` and the number of rows of a batch.
pub struct BatchOutput {
    /// Logits for the caption positions.
    pub logits: Tensor,
    /// Caption ids (0 = padding).
    pub tokens: Tensor,
    /// Rows that made it into the batch.
    pub rows: usize,
}

/// A batch's inputs, read and converted on the host, ready for a model on any device.
pub enum Prepared {
    /// Decoded, preprocessed frames and the caption ids.
    Pixels(Batch),
    /// CLIP features from the cache and the caption ids `[B, L]` with their mask.
    Features {
        /// The cached features.
        cached: CachedBatch,
        /// Caption ids (0 = padding).
        tokens: Tensor,
        /// 1 for real tokens.
        tokens_mask: Tensor,
    },
}

impl Prepared {
    /// Rows that made it into the batch.
    pub fn rows(&self) -> usize {
        match self {
            Self::Pixels(b) => b.lengths.len(),
            Self::Features { cached, .. } => cached.kept.len(),
        }
    }
}

/// Reads, decodes and tokenises `samples` (captions `picks`) into tensors on `device`: frames
/// through `builder`, or CLIP features from `cache`. Samples that cannot be read are returned
/// as skipped; the inputs are `None` when none is left.
pub fn prepare(
    builder: &BatchBuilder,
    cache: Option<&FeatureCache>,
    samples: &[&Sample],
    picks: &[usize],
    device: &Device,
) -> Result<(Option<Prepared>, Vec<Skipped>)> {
    let Some(cache) = cache else {
        let (batch, skipped) = builder.build(samples, picks)?;
        return Ok((batch.map(Prepared::Pixels), skipped));
    };
    let (cached, skipped) = cache.batch(samples, device)?;
    let Some(cached) = cached else {
        return Ok((None, skipped));
    };
    let captions: Vec<&str> = cached
        .kept
        .iter()
        .map(|&p| samples[p].captions[picks[p]].as_str())
        .collect();
    let (tokens, tokens_mask) = builder.token_batch(&captions)?;
    let prepared = Prepared::Features {
        cached,
        tokens,
        tokens_mask,
    };
    Ok((Some(prepared), skipped))
}

/// Runs prepared inputs through `model`, whose weights are `dtype` (inputs are moved to its
/// device and cast to it; logits come back in f32).
pub fn prepared_logits(model: &CaptionModel, inputs: &Prepared, dtype: DType) -> Result<BatchOutput> {
    let device = model.device();
    let (logits, tokens) = match inputs {
        Prepared::Pixels(batch) => {
            let video = batch.video.to_device(device)?.to_dtype(dtype)?;
            let frame_mask = batch.frame_mask.to_device(device)?.to_dtype(dtype)?;
            let tokens = batch.tokens.to_device(device)?;
            let tokens_mask = batch.tokens_mask.to_device(device)?;
            let (_, logits) = model.forward(&video, &frame_mask, &tokens, &tokens_mask)?;
            (logits, tokens)
        }
        Prepared::Features {
            cached,
            tokens,
            tokens_mask,
        } => {
            let (tokens, tokens_mask) = (tokens.to_device(device)?, tokens_mask.to_device(device)?);
            let frames = cached.features.dim(1)?;
            let frame_mask = CaptionModel::frame_mask(&cached.lengths, frames, device)?.to_dtype(dtype)?;
            let features = cached.features.to_device(device)?.to_dtype(dtype)?;
            let visual = model.visual_from_features(&features, &frame_mask)?;
            (model.text_logits(&visual, &tokens, &tokens_mask)?, tokens)
        }
    };
    Ok(BatchOutput {
        logits: logits.to_dtype(DType::F32)?,
        tokens,
        rows: inputs.rows(),
    })
}

/// Runs `samples` (captions `picks`) through `model`, whose weights are `dtype` (inputs are cast
/// to it, logits come back in f32); samples that cannot be read are returned as skipped, and
/// the output is `None` when none is left.
pub fn batch_logits(
    model: &CaptionModel,
    builder: &BatchBuilder,
    cache: Option<&FeatureCache>,
    samples: &[&Sample],
    picks: &[usize],
    dtype: DType,
) -> Result<(Option<BatchOutput>, Vec<Skipped>)> {
    let (inputs, skipped) = prepare(builder, cache, samples, picks, model.device())?;
    let out = inputs.map(|i| prepared_logits(model, &i, dtype)).transpose()?;
    Ok((out, skipped))
}

/// A training batch's loss: the differentiable total and the f32 model's caption loss.
pub struct TrainingLoss {
    /// What the optimizer minimises.
    pub loss: Tensor,
    /// The caption loss of the model as it is (what the log reports).
    pub value: f64,
    /// Rows that made it into the batch.
    pub rows: usize,
}

/// The caption loss of prepared inputs, plus, under quantization-aware training, the loss of
/// the same inputs through `rounded` (the model as its export will hold it) and how far the
/// rounded model's predictions are from the model's ([`kl_divergence`]).
pub fn training_loss(
    model: &CaptionModel,
    rounded: Option<&CaptionModel>,
    inputs: &Prepared,
    dtype: DType,
) -> Result<TrainingLoss> {
    let out = prepared_logits(model, inputs, dtype)?;
    let loss = caption_loss(&out.logits, &out.tokens)?;
    let value = f64::from(loss.to_scalar::<f32>()?);
    let loss = match rounded {
        Some(rounded) => {
            let r = prepared_logits(rounded, inputs, dtype)?;
            let kl = kl_divergence(&out.logits, &r.logits, &out.tokens)?;
            ((loss + caption_loss(&r.logits, &r.tokens)?)? + kl)?
        }
        None => loss,
    };
    Ok(TrainingLoss {
        loss,
        value,
        rows: out.rows,
    })
}
