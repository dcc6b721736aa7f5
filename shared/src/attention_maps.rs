//! Where each word looked: per generated token, a map over each frame's patch grid.
//!
//! Computed only when asked, for a caption already decoded: the decoding path is untouched
//! (the traced passes are separate functions). Two families of methods:
//! - **rollout** ([`MapMethod::Rollout`], [`MapMethod::RolloutLast`]): the token's gated
//!   cross-attention weights over the resampler's latents, composed with the latents' rollout
//!   through the resampler's layers down to the CLIP tokens (CLS dropped). Plain ops and
//!   asynchronous reads, so every engine runs it ([`rollout_maps_async`]).
//! - **gradient** ([`MapMethod::Gradient`], [`MapMethod::GradientInput`]): attribution of the
//!   token's log-probability to the CLIP patch tokens, through every path (the mapping
//!   network's prefix too); needs a backward pass, so the candle engine only ([`word_maps`]).
//!
//! Every grid is `image_size / patch_size` square (3×3 for the shipped 48 px model, 7×7 for
//! ViT-B/32 at 224), its values ≥ 0 summing to 1; a clip has one grid per frame, and each
//! frame's share of the token's whole map in [`TokenMap::frame_weights`].

mod gradient;
pub mod rollout;
mod trace;
mod words;

use std::fmt;
use std::str::FromStr;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::{CaptionModel, Error, ModelConfig, Result};
pub use gradient::Attribution;
use rollout::{latent_weights, resampler_rollout, through_latents, LayerMix};
pub use trace::{trace, AttentionTrace};
pub use words::{token_texts, TokenText};

/// How a token's map is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MapMethod {
    /// Cross-attention weights averaged over the blocks, through the resampler's rollout.
    Rollout,
    /// The last cross-attention block's weights, through the resampler's rollout.
    RolloutLast,
    /// The gradient's norm per CLIP patch token (candle engine only).
    Gradient,
    /// `|gradient · input|` per CLIP patch token (candle engine only).
    GradientInput,
}

impl MapMethod {
    /// Every method, in the order benchmarks list them.
    pub const ALL: [MapMethod; 4] = [
        MapMethod::Rollout,
        MapMethod::RolloutLast,
        MapMethod::Gradient,
        MapMethod::GradientInput,
    ];

    /// The method's name on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            MapMethod::Rollout => "rollout",
            MapMethod::RolloutLast => "rollout-last",
            MapMethod::Gradient => "gradient",
            MapMethod::GradientInput => "gradient-input",
        }
    }

    /// Whether it needs a backward pass (the candle engine only).
    pub fn needs_gradient(self) -> bool {
        matches!(self, MapMethod::Gradient | MapMethod::GradientInput)
    }
}

impl fmt::Display for MapMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MapMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        MapMethod::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<&str> = MapMethod::ALL.iter().map(|m| m.name()).collect();
            Error::Config(format!("unknown map method `{s}` (one of: {})", names.join(", ")))
        })
    }
}

/// A map over one frame's patch grid: `rows × cols` values, row-major, ≥ 0, summing to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Patch rows (top to bottom).
    pub rows: usize,
    /// Patch columns (left to right).
    pub cols: usize,
    /// `rows · cols` weights, row after row.
    pub values: Vec<f32>,
}

impl Grid {
    /// A grid from non-negative scores, scaled to sum to 1 (uniform when they sum to 0).
    pub fn normalised(rows: usize, cols: usize, scores: &[f32]) -> Result<Self> {
        if scores.len() != rows * cols || scores.is_empty() {
            return Err(Error::Decode(format!(
                "a {rows}x{cols} grid needs {} scores, got {}",
                rows * cols,
                scores.len()
            )));
        }
        if let Some(bad) = scores.iter().find(|s| !s.is_finite() || **s < 0.0) {
            return Err(Error::Decode(format!(
                "a map score is {bad}: scores must be finite and >= 0"
            )));
        }
        let total: f64 = scores.iter().map(|&s| f64::from(s)).sum();
        let values = if total > 0.0 {
            scores.iter().map(|&s| (f64::from(s) / total) as f32).collect()
        } else {
            vec![1.0 / scores.len() as f32; scores.len()]
        };
        Ok(Self { rows, cols, values })
    }

    /// The cell with the largest value, (row, column); the first one on ties.
    pub fn peak(&self) -> (usize, usize) {
        let mut best = 0;
        for (i, v) in self.values.iter().enumerate() {
            if *v > self.values[best] {
                best = i;
            }
        }
        (best / self.cols, best % self.cols)
    }
}

/// One generated token's map: a grid per frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenMap {
    /// The token id.
    pub token: u32,
    /// One grid per frame (one for a picture).
    pub frames: Vec<Grid>,
    /// Each frame's share of the token's map before the per-frame grids were normalised
    /// (sums to 1; `[1.0]` for a picture).
    pub frame_weights: Vec<f32>,
}

/// The patch grid of the model's frames, (rows, cols): `image_size / patch_size` each way.
pub fn grid_shape(cfg: &ModelConfig) -> Result<(usize, usize)> {
    let v = cfg.vision_config()?;
    if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
        return Err(Error::Config(format!(
            "image_size {} is not a multiple of patch_size {}",
            v.image_size, v.patch_size
        )));
    }
    let side = v.image_size / v.patch_size;
    Ok((side, side))
}

/// Maps for `tokens` (the generated tokens after bos, as the decoder returns them; eos
/// included if wanted) of the picture or clip `frames` (preprocessed CHW f32 each, as the
/// captioner took them), by `method`. The candle engine: every method.
pub fn word_maps(
    model: &CaptionModel,
    frames: &[&[f32]],
    tokens: &[u32],
    method: MapMethod,
) -> Result<Vec<TokenMap>> {
    let video = frames_tensor(model.config(), frames)?;
    let text = with_bos(model.config(), tokens)?;
    let (rows, cols) = grid_shape(model.config())?;
    let scores = match method {
        MapMethod::Gradient | MapMethod::GradientInput => {
            let kind = if method == MapMethod::Gradient {
                Attribution::Gradient
            } else {
                Attribution::GradientInput
            };
            gradient::gradient_scores(model, &video, &text, kind)?
        }
        MapMethod::Rollout | MapMethod::RolloutLast => {
            let traced = ready(trace(model, &video, &text))??;
            rollout_scores(&traced, tokens.len(), method)?
        }
    };
    token_maps(tokens, &scores, frames.len(), rows, cols)
}

/// [`word_maps`] for the rollout methods on any engine (the WebGPU engine included: its reads
/// are asynchronous); the gradient methods are refused (they need candle's backward).
pub async fn rollout_maps_async<T: Backend>(
    model: &CaptionModel<T>,
    frames: &[&[f32]],
    tokens: &[u32],
    method: MapMethod,
) -> Result<Vec<TokenMap>> {
    if method.needs_gradient() {
        return Err(Error::Config(format!(
            "the {method} map needs a backward pass: compute it with word_maps on the CPU engine"
        )));
    }
    let video = T::from_candle(&frames_tensor(model.config(), frames)?, model.device())?;
    let text = with_bos(model.config(), tokens)?;
    let (rows, cols) = grid_shape(model.config())?;
    let traced = trace(model, &video, &text).await?;
    let scores = rollout_scores(&traced, tokens.len(), method)?;
    token_maps(tokens, &scores, frames.len(), rows, cols)
}

/// Per token, its rollout relevance over every CLIP token of every frame, [T·n] frame-major.
pub fn rollout_scores(traced: &AttentionTrace, tokens: usize, method: MapMethod) -> Result<Vec<Vec<f32>>> {
    let mix = match method {
        MapMethod::Rollout => LayerMix::Mean,
        MapMethod::RolloutLast => LayerMix::Last,
        other => return Err(Error::Config(format!("{other} is not a rollout method"))),
    };
    let m = traced.resampler.first().map_or(0, |w| w.rows);
    let media = traced.resampler.first().map_or(0, |w| w.cols.saturating_sub(m));
    let relevance = resampler_rollout(&traced.resampler, media)?;
    // Generated token k is predicted at bos's position plus k.
    (0..tokens)
        .map(|k| {
            through_latents(
                &latent_weights(&traced.xattn, traced.prefix + k, mix)?,
                &relevance,
            )
        })
        .collect()
}

/// Turns per-token scores over [T·n] CLIP tokens (CLS first in each frame) into maps: CLS
/// dropped, one normalised grid per frame, each frame's share kept.
pub fn token_maps(
    tokens: &[u32],
    scores: &[Vec<f32>],
    frames: usize,
    rows: usize,
    cols: usize,
) -> Result<Vec<TokenMap>> {
    if scores.len() != tokens.len() {
        return Err(Error::Decode(format!(
            "{} score rows for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let n = rows * cols + 1;
    tokens
        .iter()
        .zip(scores)
        .map(|(&token, s)| {
            if s.len() != frames * n {
                return Err(Error::Decode(format!(
                    "{} scores for {frames} frames of {n} CLIP tokens (CLS + {rows}x{cols} patches)",
                    s.len()
                )));
            }
            let patches: Vec<&[f32]> = s.chunks_exact(n).map(|f| &f[1..]).collect();
            let mass: Vec<f32> = patches.iter().map(|p| p.iter().sum()).collect();
            Ok(TokenMap {
                token,
                frames: patches
                    .iter()
                    .map(|p| Grid::normalised(rows, cols, p))
                    .collect::<Result<_>>()?,
                frame_weights: Grid::normalised(1, frames, &mass)?.values,
            })
        })
        .collect()
}

/// `frames` (CHW f32 at the model's image size) as one sample [1, T, 3, S, S] on the CPU.
fn frames_tensor(cfg: &ModelConfig, frames: &[&[f32]]) -> Result<Tensor> {
    let s = cfg.vision_config()?.image_size;
    let each = 3 * s * s;
    if frames.is_empty() {
        return Err(Error::Decode("attention maps need at least one frame".into()));
    }
    if let Some(bad) = frames.iter().find(|f| f.len() != each) {
        return Err(Error::Decode(format!(
            "a frame has {} values, the model takes 3x{s}x{s} = {each}",
            bad.len()
        )));
    }
    let flat: Vec<f32> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    Ok(Tensor::from_vec(flat, (1, frames.len(), 3, s, s), &Device::Cpu)?)
}

/// bos, then `tokens`, checked against the vocabulary.
fn with_bos(cfg: &ModelConfig, tokens: &[u32]) -> Result<Vec<u32>> {
    let t = cfg.text_config()?;
    if tokens.is_empty() {
        return Err(Error::Decode("attention maps need at least one token".into()));
    }
    if let Some(bad) = tokens.iter().find(|&&id| id as usize >= t.vocab_size) {
        return Err(Error::Decode(format!(
            "token {bad} is outside the vocabulary of {}",
            t.vocab_size
        )));
    }
    Ok(std::iter::once(t.bos_token_id)
        .chain(tokens.iter().copied())
        .collect())
}

/// Runs a future that never waits (the candle engine's reads) to its end.
fn ready<F: std::future::Future>(f: F) -> Result<F::Output> {
    let mut f = std::pin::pin!(f);
    match f
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(v) => Ok(v),
        std::task::Poll::Pending => Err(Error::Decode(
            "this engine reads asynchronously: use rollout_maps_async".into(),
        )),
    }
}

#[cfg(test)]
mod tests;
