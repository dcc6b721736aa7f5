//! Gated cross-attention block (Flamingo style): text positions attend to the resampler's
//! visual latents, each residual branch scaled by `tanh(alpha)`.

use candle_core::Tensor;

use crate::backend::{Backend, ModelVb};

use crate::backend::compose::norm_linear;
use crate::config::XattnConfig;
use crate::dropout::Dropout;
use crate::nn::{split_heads, FeedForward, LayerNorm, Linear, QueryKeys};

/// Keys and values of the visual latents for one block, [B, H, m, Dh] each. Computed once per
/// caption: the latents do not change while tokens are generated.
#[derive(Debug, Clone)]
pub struct MediaKv<T: Backend = Tensor> {
    k: T,
    v: T,
}

impl<T: Backend> MediaKv<T> {
    /// Keeps/duplicates batch rows: new row i is old row `rows[i]`.
    pub fn select_rows(&self, rows: &T::Ids) -> candle_core::Result<Self> {
        Ok(Self {
            k: self.k.index_select(rows)?,
            v: self.v.index_select(rows)?,
        })
    }
}

/// `h.N.xattn_block`: `attn.{layer_norm,to_q,to_kv,to_out}`, `ffw.{0,1,3}`, `alpha_attn`, `alpha_ffw`.
#[derive(Debug, Clone)]
pub struct GatedCrossAttention<T: Backend = Tensor> {
    layer_norm: LayerNorm<T>,
    to_q: Linear<T>,
    to_kv: Linear<T>,
    to_out: Linear<T>,
    heads: usize,
    scale: f64,
    ffw: FeedForward<T>,
    alpha_attn: T,
    alpha_ffw: T,
}

impl<T: Backend> GatedCrossAttention<T> {
    /// Builds the block for model width `dim`.
    pub fn new(dim: usize, cfg: &XattnConfig, vb: ModelVb<T>) -> candle_core::Result<Self> {
        let inner = cfg.heads * cfg.dim_head;
        let attn = vb.pp("attn");
        Ok(Self {
            layer_norm: LayerNorm::new(dim, 1e-5, attn.pp("layer_norm"))?,
            to_q: Linear::new(dim, inner, false, attn.pp("to_q"))?,
            to_kv: Linear::new(dim, 2 * inner, false, attn.pp("to_kv"))?,
            to_out: Linear::new(inner, dim, false, attn.pp("to_out"))?,
            heads: cfg.heads,
            scale: (cfg.dim_head as f64).powf(-0.5),
            ffw: FeedForward::new(dim, cfg.ff_mult, cfg.activation, vb.pp("ffw"))?,
            alpha_attn: vb.get(1, "alpha_attn")?,
            alpha_ffw: vb.get(1, "alpha_ffw")?,
        })
    }

    /// Projects the latents [B, m, D] to this block's keys and values.
    pub fn media_kv(&self, latents: &T) -> candle_core::Result<MediaKv<T>> {
        let kv = self.to_kv.forward(latents)?;
        let inner = kv.dim(2)? / 2;
        Ok(MediaKv {
            k: split_heads(&kv.narrow(2, 0, inner)?, self.heads)?,
            v: split_heads(&kv.narrow(2, inner, inner)?, self.heads)?,
        })
    }

    /// The queries of every position of `x` [B, S, D] and the latents' keys: what this block's
    /// attention weights are made of (read only by attention maps, outside the fused path).
    pub fn query_keys(&self, x: &T, media: &MediaKv<T>) -> candle_core::Result<QueryKeys<T>> {
        let q = norm_linear(x, &self.layer_norm, &self.to_q, None)?.affine(self.scale, 0.0)?;
        Ok(QueryKeys {
            q: split_heads(&q, self.heads)?,
            k: media.k.clone(),
        })
    }

    /// Updates every position of `x` [B, S, D] with gated attention over the latents, then the
    /// gated feed-forward.
    pub fn forward(&self, x: &T, media: &MediaKv<T>) -> candle_core::Result<T> {
        let mixed = T::cross_attention(
            x,
            &self.layer_norm,
            &self.to_q,
            self.heads,
            self.scale,
            (&media.k, &media.v),
        )?;
        let x = mixed.linear_residual(&self.to_out, x, Some(&self.alpha_attn), &Dropout::default())?;
        self.ffw.forward_gated(&x, &self.alpha_ffw)
    }
}
