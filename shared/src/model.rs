//! The whole captioning model: CLIP frames → (mapper prefix, resampler latents) → GPT-2.

use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;

use crate::backend::{Backend, ModelVb};

use crate::clip::ClipVisionTransformer;
use crate::config::ModelConfig;
use crate::dropout::DropoutRng;
use crate::fused;
use crate::gpt2::Gpt2;
use crate::mapper::Mapper;
use crate::nn::{causal_bias, key_bias};
use crate::resampler::PerceiverResampler;
use crate::{Error, Result};

/// The visual side of one batch: what GPT-2 needs to caption it.
#[derive(Debug, Clone)]
pub struct Visual<T: Backend = Tensor> {
    /// Prefix tokens, one per frame [B, T, D].
    pub prefix: T,
    /// Resampler output [B, m, D], when the resampler is enabled.
    pub latents: Option<T>,
    /// 1 for real frames, 0 for padding [B, T] (f32).
    pub frame_mask: T,
}

/// The captioning model (parameter names are the original project's), on backend `T`.
#[derive(Debug, Clone)]
pub struct CaptionModel<T: Backend = Tensor> {
    cfg: ModelConfig,
    vision: ClipVisionTransformer<T>,
    mapper: Option<Mapper<T>>,
    resampler: Option<PerceiverResampler<T>>,
    text: Gpt2<T>,
    device: T::Device,
}

impl<T: Backend> CaptionModel<T> {
    /// Builds the model on backend `T` from weights under `vb` (original `state_dict` names).
    pub fn load(cfg: &ModelConfig, vb: ModelVb<T>) -> Result<Self> {
        cfg.validate()?;
        let vcfg = cfg.vision_config()?;
        let tcfg = cfg.text_config()?;
        let d = vcfg.hidden_size;
        let build = || -> candle_core::Result<Self> {
            let vision = ClipVisionTransformer::new(&vcfg, vb.pp("vision_encoder.vision.vision_model"))?;
            let mapper = cfg
                .enable_mapper
                .then(|| Mapper::new(d, &cfg.mapper, vb.pp("mapper")))
                .transpose()?;
            let resampler = cfg
                .enable_resampler_xattn
                .then(|| PerceiverResampler::new(d, &cfg.resampler, vb.pp("resampler")))
                .transpose()?;
            let xattn = |i: usize| cfg.has_xattn(i).then(|| cfg.text.xattn.clone());
            let text = Gpt2::new(&tcfg, xattn, vb.pp("text_generator.lm"))?;
            Ok(Self {
                cfg: cfg.clone(),
                vision,
                mapper,
                resampler,
                text,
                device: vb.device().clone(),
            })
        };
        build().map_err(|e| Error::Weights(e.to_string()))
    }

    /// The model's config.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &T::Device {
        &self.device
    }

    /// The vision tower.
    pub fn vision(&self) -> &ClipVisionTransformer<T> {
        &self.vision
    }

    /// GPT-2 with its cross-attention blocks.
    pub fn text(&self) -> &Gpt2<T> {
        &self.text
    }

    /// Frame mask [B, T] from the real length of each video, typed like `like`.
    pub fn frame_mask_like(lengths: &[usize], frames: usize, like: &T) -> Result<T> {
        let data = mask_values(lengths, frames)?;
        Ok(T::from_f32(data, &[lengths.len(), frames], like)?)
    }

    /// CLIP tokens of every frame, `video` [B, T, C, H, W] → [B, T, n, D], padded frames zero.
    pub fn encode_frames(&self, video: &T, frame_mask: &T) -> Result<T> {
        let (b, t, c, h, w) = match video.dims()[..] {
            [b, t, c, h, w] => (b, t, c, h, w),
            ref other => {
                return Err(Error::Image(format!(
                    "video must be [B, T, C, H, W], got {other:?}"
                )))
            }
        };
        let size = self.vision.config().image_size;
        if h != size || w != size {
            return Err(Error::Image(format!(
                "frames are {w}x{h}, the vision tower takes {size}x{size}"
            )));
        }
        let feats = self.vision.forward(&video.reshape(&[b * t, c, h, w])?)?;
        let (n, d) = (feats.dim(1)?, feats.dim(2)?);
        Ok(feats
            .reshape(&[b, t, n, d])?
            .broadcast_mul(&frame_mask.reshape(&[b, t, 1, 1])?)?)
    }

    /// The resampler, when the model has one.
    pub fn resampler(&self) -> Option<&PerceiverResampler<T>> {
        self.resampler.as_ref()
    }

    /// Prefix tokens [B, T, D] from CLIP tokens `features` [B, T, n, D]: the mapper over each
    /// frame's mean token.
    pub fn prefix_from_features(&self, features: &T, frame_mask: &T) -> Result<T> {
        let mean = features.mean_dim(2)?;
        Ok(match &self.mapper {
            Some(m) => m.forward(&mean, frame_mask)?,
            None => mean,
        })
    }

    /// Prefix and latents from CLIP tokens `features` [B, T, n, D] (zero for padded frames).
    pub fn visual_from_features(&self, features: &T, frame_mask: &T) -> Result<Visual<T>> {
        let prefix = self.prefix_from_features(features, frame_mask)?;
        let latents = self
            .resampler
            .as_ref()
            .map(|r| r.forward(features, frame_mask))
            .transpose()?;
        Ok(Visual {
            prefix,
            latents,
            frame_mask: frame_mask.clone(),
        })
    }

    /// Prefix and latents of `video` [B, T, C, H, W].
    pub fn visual(&self, video: &T, frame_mask: &T) -> Result<Visual<T>> {
        self.visual_from_features(&self.encode_frames(video, frame_mask)?, frame_mask)
    }
}

/// 1 for the first `length` of `frames` entries per row, 0 after; lengths must be in 1..=frames.
fn mask_values(lengths: &[usize], frames: usize) -> Result<Vec<f32>> {
    if let Some(bad) = lengths.iter().find(|&&l| l == 0 || l > frames) {
        return Err(Error::Decode(format!(
            "video length {bad} is outside 1..={frames}"
        )));
    }
    Ok(lengths
        .iter()
        .flat_map(|&l| (0..frames).map(move |t| if t < l { 1.0 } else { 0.0 }))
        .collect())
}

impl CaptionModel {
    /// Builds the model from weights under `vb`, named as in the original's `state_dict`.
    pub fn new(cfg: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        Self::load(cfg, ModelVb::candle(vb))
    }

    /// This model with its training-time dropout switched on (GPT-2's, the transformer
    /// mapper's), drawing masks from `rng`; it shares the weights.
    pub fn with_dropout(&self, rng: &DropoutRng) -> Self {
        let mut m = self.clone();
        m.text.enable_dropout(rng);
        if let Some(mapper) = &mut m.mapper {
            mapper.enable_dropout(rng);
        }
        m
    }

    /// Frame mask [B, T] (f32) from the real length of each video.
    pub fn frame_mask(lengths: &[usize], frames: usize, device: &Device) -> Result<Tensor> {
        let data = mask_values(lengths, frames)?;
        Ok(Tensor::from_vec(data, (lengths.len(), frames), device)?)
    }

    /// Logits [B, L, V] for the text positions, `logits[:, i]` predicting `tokens[:, i]`.
    /// `tokens` [B, L] (u32/i64 ids), `tokens_mask` [B, L] (1 = real token).
    pub fn text_logits(&self, visual: &Visual, tokens: &Tensor, tokens_mask: &Tensor) -> Result<Tensor> {
        let (_, t, _) = visual.prefix.dims3()?;
        let l = tokens.dim(1)?;
        let x = Tensor::cat(&[&visual.prefix, &self.text.embed(tokens)?], 1)?;
        let dtype = visual.prefix.dtype();
        let keep = Tensor::cat(
            &[&visual.frame_mask.to_dtype(dtype)?, &tokens_mask.to_dtype(dtype)?],
            1,
        )?;
        let bias = key_bias(&keep)?.broadcast_add(&causal_bias(t + l, t + l, 0, dtype, &self.device)?)?;
        let media = match &visual.latents {
            Some(lat) => self.text.media_kv(lat)?,
            None => Vec::new(),
        };
        let hidden = self.text.forward_embeds(&x, 0, &bias, &media, None)?;
        // Position T-1 predicts the first token, even for videos with fewer real frames.
        Ok(self.text.logits(&hidden.narrow(1, t - 1, l)?)?)
    }

    /// The full forward pass: video [B, T, C, H, W] + tokens → (visual, logits).
    pub fn forward(
        &self,
        video: &Tensor,
        frame_mask: &Tensor,
        tokens: &Tensor,
        tokens_mask: &Tensor,
    ) -> Result<(Visual, Tensor)> {
        let visual = self.visual(video, frame_mask)?;
        let logits = self.text_logits(&visual, tokens, tokens_mask)?;
        Ok((visual, logits))
    }
}

/// Cross-entropy of `logits` [B, L, V] against `tokens` [B, L], averaged over the positions
/// whose target is not 0 (the original's `ignore_index=0`).
pub fn caption_loss(logits: &Tensor, tokens: &Tensor) -> Result<Tensor> {
    let (b, l, v) = logits.dims3()?;
    let targets = tokens.to_dtype(DType::U32)?.reshape(b * l)?;
    let logits = logits.reshape((b * l, v))?;
    let nll = if logits.track_op() && fused::applies(&logits) {
        fused::nll_rows(&logits, &targets)?
    } else {
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?.neg()?
    };
    let keep = targets.ne(0u32)?.to_dtype(nll.dtype())?;
    let count = keep.sum_all()?;
    Ok(nll.mul(&keep)?.sum_all()?.broadcast_div(&count)?)
}
