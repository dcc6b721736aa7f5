//! The opt-in traced pass: the model run once over the picture (or clip) and a caption that is
//! already decoded, keeping the queries and keys of the resampler's layers and of the gated
//! cross-attention blocks, read back and turned into head-averaged weights on the host.
//! Generic over the engine: only plain [`Backend`] ops and asynchronous reads.

use super::rollout::{head_mean_weights, Matrix};
use crate::backend::Backend;
use crate::nn::QueryKeys;
use crate::{CaptionModel, Error, Result};

/// The attention weights a rollout composes, for one picture or clip and one caption.
#[derive(Debug, Clone)]
pub struct AttentionTrace {
    /// Each resampler layer's weights [m, T·n + m]: the latents over [media; latents].
    pub resampler: Vec<Matrix>,
    /// Each cross-attention block's weights [S, m]: every text position over the latents.
    pub xattn: Vec<Matrix>,
    /// Text positions before bos (the prefix: one per frame).
    pub prefix: usize,
}

/// Runs `model` over `video` [1, T, C, H, W] and `text` (bos, then the caption's tokens),
/// keeping the attention weights.
pub async fn trace<T: Backend>(model: &CaptionModel<T>, video: &T, text: &[u32]) -> Result<AttentionTrace> {
    let frames = video.dim(1)?;
    let mask = CaptionModel::frame_mask_like(&[frames], frames, video)?;
    let features = model.encode_frames(video, &mask)?;
    let resampler = model.resampler().ok_or_else(|| {
        Error::Config(
            "attention rollout needs the resampler and its cross-attention (enable_resampler_xattn)".into(),
        )
    })?;
    let (latents, resampler_qk) = resampler.forward_traced(&features, &mask)?;
    let prefix = model.prefix_from_features(&features, &mask)?;
    let gpt2 = model.text();
    let ids = T::ids(text, &[1, text.len()], model.device())?;
    let x = T::cat(&[&prefix, &gpt2.embed(&ids)?], 1)?;
    let s = x.dim(1)?;
    let causal = (0..s)
        .flat_map(|i| (0..s).map(move |j| if j > i { f32::MIN } else { 0.0 }))
        .collect();
    let bias = T::from_f32(causal, &[1, 1, s, s], &x)?;
    let media = gpt2.media_kv(&latents)?;
    let (_, xattn_qk) = gpt2.forward_blocks_traced(&x, &bias, &media)?;
    Ok(AttentionTrace {
        resampler: read_weights(&resampler_qk).await?,
        xattn: read_weights(&xattn_qk).await?,
        prefix: prefix.dim(1)?,
    })
}

/// Head-averaged weights of each traced layer (batch row 0).
async fn read_weights<T: Backend>(layers: &[QueryKeys<T>]) -> Result<Vec<Matrix>> {
    let mut out = Vec::with_capacity(layers.len());
    for qk in layers {
        let dims = qk.q.dims();
        let (heads, dh) = match dims[..] {
            [1, h, _, dh] => (h, dh),
            _ => {
                return Err(Error::Decode(format!(
                    "traced queries of shape {dims:?}, expected [1, H, S, Dh]"
                )))
            }
        };
        let q = qk.q.to_vec_async().await?;
        let k = qk.k.to_vec_async().await?;
        out.push(head_mean_weights(&q, &k, heads, dh)?);
    }
    Ok(out)
}
