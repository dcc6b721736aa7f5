//! CLIP vision tower (Hugging Face `CLIPVisionModel`); the bridge reads its
//! `last_hidden_state`, i.e. the encoder output before `post_layernorm`.

use candle_core::Tensor;

use crate::backend::{Backend, ModelVb};
use serde::{Deserialize, Serialize};

use crate::nn::{attention, merge_heads, split_heads, Activation, LayerNorm, Linear, Weight};
use crate::{Error, Result};

/// Hugging Face `CLIPVisionConfig` (unknown keys ignored, as transformers does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    /// Width of the transformer.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Input image side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Input channels.
    pub num_channels: usize,
    /// Projection width of the full CLIP model (unused by the vision tower).
    pub projection_dim: usize,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        Self::vit_base_patch32()
    }
}

impl ClipVisionConfig {
    /// `openai/clip-vit-base-patch32`'s vision config.
    pub fn vit_base_patch32() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            num_channels: 3,
            projection_dim: 512,
        }
    }

    /// Reads a `CLIPVisionConfig` or a whole `CLIPConfig` (taking its `vision_config`).
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("CLIP config.json: {e}")))?;
        let vision = value.get("vision_config").cloned().unwrap_or(value);
        serde_json::from_value(vision).map_err(|e| Error::Config(format!("CLIP config.json: {e}")))
    }

    /// Tokens per frame: the class token plus one per patch.
    pub fn num_tokens(&self) -> usize {
        let side = self.image_size / self.patch_size;
        side * side + 1
    }

    /// Floating-point operations (a multiply-add counts two) of one image's forward pass: the
    /// patch embedding, and per layer the projections, the attention products and the MLP.
    pub fn forward_flops(&self) -> u64 {
        let (t, d, f) = (
            self.num_tokens() as u64,
            self.hidden_size as u64,
            self.intermediate_size as u64,
        );
        let patch = self.num_channels as u64 * (self.patch_size as u64).pow(2);
        let per_layer = t * (4 * d * d + 2 * d * f) + 2 * t * t * d;
        2 * ((t - 1) * patch * d + self.num_hidden_layers as u64 * per_layer)
    }

    /// Checks the sizes divide as the model needs.
    pub fn validate(&self) -> Result<()> {
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::Config(format!(
                "CLIP hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(Error::Config(format!(
                "CLIP image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            )));
        }
        Ok(())
    }
}

/// Self-attention with biases on every projection (CLIP's `self_attn`).
#[derive(Debug, Clone)]
struct ClipAttention<T: Backend> {
    q_proj: Linear<T>,
    k_proj: Linear<T>,
    v_proj: Linear<T>,
    out_proj: Linear<T>,
    heads: usize,
    scale: f64,
}

impl<T: Backend> ClipAttention<T> {
    fn new(cfg: &ClipVisionConfig, vb: ModelVb<T>) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            q_proj: Linear::new(d, d, true, vb.pp("q_proj"))?,
            k_proj: Linear::new(d, d, true, vb.pp("k_proj"))?,
            v_proj: Linear::new(d, d, true, vb.pp("v_proj"))?,
            out_proj: Linear::new(d, d, true, vb.pp("out_proj"))?,
            heads: cfg.num_attention_heads,
            scale: ((d / cfg.num_attention_heads) as f64).powf(-0.5),
        })
    }

    fn forward(&self, x: &T) -> candle_core::Result<T> {
        let q = split_heads(&self.q_proj.forward(x)?.affine(self.scale, 0.0)?, self.heads)?;
        let k = split_heads(&self.k_proj.forward(x)?, self.heads)?;
        let v = split_heads(&self.v_proj.forward(x)?, self.heads)?;
        self.out_proj
            .forward(&merge_heads(&attention(&q, &k, &v, None)?)?)
    }
}

/// One pre-LN encoder layer.
#[derive(Debug, Clone)]
struct ClipEncoderLayer<T: Backend> {
    layer_norm1: LayerNorm<T>,
    self_attn: ClipAttention<T>,
    layer_norm2: LayerNorm<T>,
    fc1: Linear<T>,
    act: Activation,
    fc2: Linear<T>,
}

impl<T: Backend> ClipEncoderLayer<T> {
    fn new(cfg: &ClipVisionConfig, vb: ModelVb<T>) -> candle_core::Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        Ok(Self {
            layer_norm1: LayerNorm::new(d, eps, vb.pp("layer_norm1"))?,
            self_attn: ClipAttention::new(cfg, vb.pp("self_attn"))?,
            layer_norm2: LayerNorm::new(d, eps, vb.pp("layer_norm2"))?,
            fc1: Linear::new(d, cfg.intermediate_size, true, vb.pp("mlp.fc1"))?,
            act: cfg.hidden_act,
            fc2: Linear::new(cfg.intermediate_size, d, true, vb.pp("mlp.fc2"))?,
        })
    }

    fn forward(&self, x: &T) -> candle_core::Result<T> {
        let x = x.add(&self.self_attn.forward(&self.layer_norm1.forward(x)?)?)?;
        let h = self
            .act
            .forward(&self.fc1.forward(&self.layer_norm2.forward(&x)?)?)?;
        x.add(&self.fc2.forward(&h)?)
    }
}

/// The vision tower, built at `vision_model` (its weights: `embeddings.*`, `pre_layrnorm`,
/// `encoder.layers.N.*`, `post_layernorm`).
#[derive(Debug, Clone)]
pub struct ClipVisionTransformer<T: Backend = Tensor> {
    class_embedding: T,
    patch_embedding: Linear<T>,
    position_embedding: T,
    pre_layrnorm: LayerNorm<T>,
    layers: Vec<ClipEncoderLayer<T>>,
    post_layernorm: LayerNorm<T>,
    cfg: ClipVisionConfig,
}

impl<T: Backend> ClipVisionTransformer<T> {
    /// Builds the tower from weights under `vb` (the `vision_model` prefix).
    pub fn new(cfg: &ClipVisionConfig, vb: ModelVb<T>) -> candle_core::Result<Self> {
        let (d, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
        let emb = vb.pp("embeddings");
        let patch = emb.vb().get((d, c, p, p), "patch_embedding.weight")?;
        let enc = vb.pp("encoder.layers");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| ClipEncoderLayer::new(cfg, enc.pp(i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            class_embedding: emb.get(d, "class_embedding")?,
            // The stride-p convolution is a matmul over flattened patches: [c·p·p, d].
            patch_embedding: Linear::from_weight(
                Weight::Dense(patch.reshape((d, c * p * p))?.t()?),
                None,
                vb.device(),
            )?,
            position_embedding: emb.get((cfg.num_tokens(), d), "position_embedding.weight")?,
            pre_layrnorm: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("pre_layrnorm"))?,
            layers,
            post_layernorm: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("post_layernorm"))?,
            cfg: cfg.clone(),
        })
    }

    /// The config the tower was built with.
    pub fn config(&self) -> &ClipVisionConfig {
        &self.cfg
    }

    /// `pixel_values` [N, C, H, W] → `last_hidden_state` [N, tokens, D] (no post-layernorm).
    pub fn forward(&self, pixel_values: &T) -> candle_core::Result<T> {
        let dims = pixel_values.dims();
        let (n, c, h, w) = match dims[..] {
            [n, c, h, w] => (n, c, h, w),
            _ => candle_core::bail!("pixel values must be [N, C, H, W], got {dims:?}"),
        };
        let p = self.cfg.patch_size;
        let (gh, gw) = (h / p, w / p);
        let d = self.cfg.hidden_size;
        let patches = pixel_values
            .reshape(&[n, c, gh, p, gw, p])?
            .permute(&[0, 2, 4, 1, 3, 5])?
            .reshape(&[n * gh * gw, c * p * p])?;
        let patches = self
            .patch_embedding
            .forward(&patches)?
            .reshape(&[n, gh * gw, d])?;
        let class = self
            .class_embedding
            .reshape(&[1, 1, d])?
            .broadcast_as(&[n, 1, d])?;
        let x = T::cat(&[&class, &patches], 1)?.broadcast_add(&self.position_embedding)?;
        let mut x = self.pre_layrnorm.forward(&x)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        Ok(x)
    }

    /// CLIP's `pooler_output`: post-layernorm of the class token of `last_hidden_state`.
    pub fn pooled(&self, last_hidden_state: &T) -> candle_core::Result<T> {
        let d = last_hidden_state.dims();
        self.post_layernorm
            .forward(&last_hidden_state.narrow(1, 0, 1)?.reshape(&[d[0], d[2]])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ViT-B/32 at 224 px is the often-quoted 4.4 G multiply-adds per image (50 tokens, 12
    /// layers of width 768): 4,408,418,304 counted by hand, two operations each.
    #[test]
    fn vit_b32_forward_is_4_4_g_multiply_adds() {
        assert_eq!(
            ClipVisionConfig::vit_base_patch32().forward_flops(),
            2 * 4_408_418_304
        );
    }
}
