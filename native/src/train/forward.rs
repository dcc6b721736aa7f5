//! One batch through the model for training and validation: from decoded pixels, or from the
//! CLIP feature cache when the vision tower is frozen.

use anyhow::Result;
use candle_core::{DType, Tensor};
use caption_model::{caption_loss, CaptionModel};

use super::qat::distill::kl_divergence;
use crate::data::feature_cache::FeatureCache;
use crate::data::{BatchBuilder, Sample, Skipped};

/// Logits `[B, L, V]`, the target ids `[B, L]` and the number of rows of a batch.
pub struct BatchOutput {
    /// Logits for the caption positions.
    pub logits: Tensor,
    /// Caption ids (0 = padding).
    pub tokens: Tensor,
    /// Rows that made it into the batch.
    pub rows: usize,
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
    let Some(cache) = cache else {
        let (batch, skipped) = builder.build(samples, picks)?;
        let Some(batch) = batch else {
            return Ok((None, skipped));
        };
        let video = batch.video.to_dtype(dtype)?;
        let frame_mask = batch.frame_mask.to_dtype(dtype)?;
        let (_, logits) = model.forward(&video, &frame_mask, &batch.tokens, &batch.tokens_mask)?;
        let rows = batch.lengths.len();
        let out = BatchOutput {
            logits: logits.to_dtype(DType::F32)?,
            tokens: batch.tokens,
            rows,
        };
        return Ok((Some(out), skipped));
    };
    let (cached, skipped) = cache.batch(samples, model.device())?;
    let Some(cached) = cached else {
        return Ok((None, skipped));
    };
    let captions: Vec<&str> = cached
        .kept
        .iter()
        .map(|&p| samples[p].captions[picks[p]].as_str())
        .collect();
    let (tokens, tokens_mask) = builder.token_batch(&captions)?;
    let frames = cached.features.dim(1)?;
    let frame_mask = CaptionModel::frame_mask(&cached.lengths, frames, model.device())?.to_dtype(dtype)?;
    let visual = model.visual_from_features(&cached.features.to_dtype(dtype)?, &frame_mask)?;
    let logits = model.text_logits(&visual, &tokens, &tokens_mask)?;
    let out = BatchOutput {
        logits: logits.to_dtype(DType::F32)?,
        tokens,
        rows: cached.kept.len(),
    };
    Ok((Some(out), skipped))
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

/// The caption loss of a batch, plus, under quantization-aware training, the loss of the same
/// batch through `rounded` (the model as its export will hold it) and how far the rounded
/// model's predictions are from the model's ([`kl_divergence`]).
pub fn training_loss(
    model: &CaptionModel,
    rounded: Option<&CaptionModel>,
    builder: &BatchBuilder,
    cache: Option<&FeatureCache>,
    (samples, picks): (&[&Sample], &[usize]),
    dtype: DType,
) -> Result<(Option<TrainingLoss>, Vec<Skipped>)> {
    let (out, skipped) = batch_logits(model, builder, cache, samples, picks, dtype)?;
    let Some(out) = out else {
        return Ok((None, skipped));
    };
    let loss = caption_loss(&out.logits, &out.tokens)?;
    let value = f64::from(loss.to_scalar::<f32>()?);
    let loss = match rounded {
        Some(rounded) => {
            // The same samples as above: a sample unreadable now was unreadable then.
            match batch_logits(rounded, builder, cache, samples, picks, dtype)?.0 {
                Some(r) => {
                    let kl = kl_divergence(&out.logits, &r.logits, &out.tokens)?;
                    ((loss + caption_loss(&r.logits, &r.tokens)?)? + kl)?
                }
                None => loss,
            }
        }
        None => loss,
    };
    let rows = out.rows;
    Ok((Some(TrainingLoss { loss, value, rows }), skipped))
}
