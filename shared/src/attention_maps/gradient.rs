//! Gradient attribution: how much each CLIP token moves the log-probability of a generated
//! token, through every path the model has (the resampler and cross-attention, and the mapping
//! network's prefix). Needs a backward pass, so the candle engine (CPU) only.

use candle_core::{DType, IndexOp, Tensor, Var, D};

use crate::{CaptionModel, Result};

/// What a CLIP token's score is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// The L2 norm of the gradient over the token's features.
    Gradient,
    /// `|gradient · features|`: the first-order change of the log-probability when the token
    /// is zeroed.
    GradientInput,
}

/// Per caption token (`text[1..]`), a score per CLIP token of every frame, [T·n] frame-major.
/// `video` [1, T, C, H, W]; `text` is bos then the caption's tokens.
pub fn gradient_scores(
    model: &CaptionModel,
    video: &Tensor,
    text: &[u32],
    kind: Attribution,
) -> Result<Vec<Vec<f32>>> {
    let frames = video.dim(1)?;
    let device = model.device();
    let mask = CaptionModel::frame_mask(&[frames], frames, device)?;
    let features = model.encode_frames(video, &mask)?.detach();
    let (_, t, n, d) = features.dims4()?;
    let var = Var::from_tensor(&features)?;
    let visual = model.visual_from_features(var.as_tensor(), &mask)?;
    let ids = Tensor::new(text, device)?.unsqueeze(0)?;
    let ids_mask = Tensor::ones(ids.dims(), DType::F32, device)?;
    let logits = model.text_logits(&visual, &ids, &ids_mask)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let mut out = Vec::with_capacity(text.len().saturating_sub(1));
    for (i, &token) in text.iter().enumerate().skip(1) {
        let grads = logp.i((0, i, token as usize))?.backward()?;
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.reshape((t * n, d))?,
            // No path from the picture to this token: every CLIP token scores zero.
            None => Tensor::zeros((t * n, d), DType::F32, device)?,
        };
        let scores = match kind {
            Attribution::Gradient => g.sqr()?.sum(D::Minus1)?.sqrt()?,
            Attribution::GradientInput => g.mul(&features.reshape((t * n, d))?)?.sum(D::Minus1)?.abs()?,
        };
        out.push(scores.to_dtype(DType::F32)?.to_vec1::<f32>()?);
    }
    Ok(out)
}
