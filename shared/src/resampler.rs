//! Perceiver resampler: learned latents cross-attend to the CLIP tokens of every frame
//! (plus themselves), giving a fixed number of visual latents per video.

use candle_core::Tensor;

use crate::backend::{Backend, ModelVb};

use crate::config::ResamplerConfig;
use crate::nn::{attention, merge_heads, split_heads, FeedForward, LayerNorm, Linear, QueryKeys};
use crate::{Error, Result};

/// `resampler.layers.N.0`: attention of the latents over [media; latents].
#[derive(Debug, Clone)]
struct PerceiverAttention<T: Backend> {
    norm_media: LayerNorm<T>,
    norm_latents: LayerNorm<T>,
    to_q: Linear<T>,
    to_k: Linear<T>,
    to_v: Linear<T>,
    to_out: Linear<T>,
    heads: usize,
    scale: f64,
}

impl<T: Backend> PerceiverAttention<T> {
    fn new(dim: usize, cfg: &ResamplerConfig, vb: ModelVb<T>) -> candle_core::Result<Self> {
        let inner = cfg.heads * cfg.dim_head;
        Ok(Self {
            norm_media: LayerNorm::new(dim, 1e-5, vb.pp("norm_media"))?,
            norm_latents: LayerNorm::new(dim, 1e-5, vb.pp("norm_latents"))?,
            to_q: Linear::new(dim, inner, false, vb.pp("to_q"))?,
            to_k: Linear::new(dim, inner, false, vb.pp("to_k"))?,
            to_v: Linear::new(dim, inner, false, vb.pp("to_v"))?,
            to_out: Linear::new(inner, dim, false, vb.pp("to_out"))?,
            heads: cfg.heads,
            scale: (cfg.dim_head as f64).powf(-0.5),
        })
    }

    /// `media` [B, T·n, D], `latents` [B, m, D] → update for the latents [B, m, D]; `trace`
    /// (attention maps only) receives this layer's queries and keys over [media; latents].
    fn forward(
        &self,
        media: &T,
        latents: &T,
        trace: Option<&mut Vec<QueryKeys<T>>>,
    ) -> candle_core::Result<T> {
        let a = self.norm_media.forward(media)?;
        let l = self.norm_latents.forward(latents)?;
        let q = split_heads(&self.to_q.forward(&l)?.affine(self.scale, 0.0)?, self.heads)?;
        // Keys and values cover the media tokens and the latents; padded frames are not masked.
        let kv_in = T::cat(&[&a, &l], 1)?;
        let k = split_heads(&self.to_k.forward(&kv_in)?, self.heads)?;
        let v = split_heads(&self.to_v.forward(&kv_in)?, self.heads)?;
        if let Some(trace) = trace {
            trace.push(QueryKeys {
                q: q.clone(),
                k: k.clone(),
            });
        }
        self.to_out.forward(&merge_heads(&attention(&q, &k, &v, None)?)?)
    }
}

/// The resampler (`resampler.*`).
#[derive(Debug, Clone)]
pub struct PerceiverResampler<T: Backend = Tensor> {
    latents: T,
    time_pos_emb: T,
    layers: Vec<(PerceiverAttention<T>, FeedForward<T>)>,
    norm: LayerNorm<T>,
}

impl<T: Backend> PerceiverResampler<T> {
    /// Builds the resampler for model width `dim`.
    pub fn new(dim: usize, cfg: &ResamplerConfig, vb: ModelVb<T>) -> candle_core::Result<Self> {
        let layers = (0..cfg.depth)
            .map(|i| {
                let l = vb.pp("layers").pp(i);
                Ok((
                    PerceiverAttention::new(dim, cfg, l.pp("0"))?,
                    FeedForward::new(dim, cfg.ff_mult, cfg.activation, l.pp("1"))?,
                ))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            latents: vb.get((cfg.num_latents, dim), "latents")?,
            time_pos_emb: vb.get((cfg.num_time_embeds, 1, dim), "time_pos_emb")?,
            layers,
            norm: LayerNorm::new(dim, 1e-5, vb.pp("norm"))?,
        })
    }

    /// `features` [B, T, n, D] (padded frames already zero), `frame_mask` [B, T] (1 = real)
    /// → latents [B, m, D].
    pub fn forward(&self, features: &T, frame_mask: &T) -> Result<T> {
        self.run(features, frame_mask, None)
    }

    /// [`PerceiverResampler::forward`], also returning each layer's queries and keys over
    /// [media (T·n tokens, frame-major); latents] (the opt-in pass of attention maps).
    pub fn forward_traced(&self, features: &T, frame_mask: &T) -> Result<(T, Vec<QueryKeys<T>>)> {
        let mut trace = Vec::with_capacity(self.layers.len());
        let latents = self.run(features, frame_mask, Some(&mut trace))?;
        Ok((latents, trace))
    }

    /// The forward pass, keeping the attention layers' queries and keys in `trace` if given.
    fn run(&self, features: &T, frame_mask: &T, mut trace: Option<&mut Vec<QueryKeys<T>>>) -> Result<T> {
        let (b, t, n, d) = match features.dims()[..] {
            [b, t, n, d] => (b, t, n, d),
            ref other => {
                return Err(Error::Decode(format!(
                    "features must be [B, T, n, D], got {other:?}"
                )))
            }
        };
        let max_t = self.time_pos_emb.dim(0)?;
        if t > max_t {
            return Err(Error::Decode(format!(
                "{t} frames exceed the resampler's {max_t} time embeddings (model.resampler.num_time_embeds)"
            )));
        }
        let time = self.time_pos_emb.narrow(0, 0, t)?.reshape(&[1, t, 1, d])?;
        let time = time.broadcast_mul(&frame_mask.reshape(&[b, t, 1, 1])?)?;
        let media = features.broadcast_add(&time)?.reshape(&[b, t * n, d])?;
        let m = self.latents.dim(0)?;
        let mut z = self.latents.reshape(&[1, m, d])?.broadcast_as(&[b, m, d])?;
        for (attn, ff) in &self.layers {
            z = attn.forward(&media, &z, trace.as_deref_mut())?.add(&z)?;
            z = ff.forward(&z)?.add(&z)?;
        }
        Ok(self.norm.forward(&z)?)
    }
}
