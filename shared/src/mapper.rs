//! Mapping network: one visual prefix token per frame from the frame's mean CLIP token.

use candle_core::Tensor;

use crate::backend::{Backend, ModelVb};

use crate::config::{MapperConfig, MapperType};
use crate::dropout::{Dropout, DropoutRng};
use crate::nn::{attention_with_dropout, merge_heads, split_heads, Activation, LayerNorm, Linear, Weight};

/// One PyTorch `nn.TransformerEncoderLayer` (post-norm, ReLU, batch_first).
#[derive(Debug, Clone)]
struct EncoderLayer<T: Backend> {
    in_proj: Linear<T>,
    out_proj: Linear<T>,
    linear1: Linear<T>,
    linear2: Linear<T>,
    norm1: LayerNorm<T>,
    norm2: LayerNorm<T>,
    heads: usize,
    scale: f64,
    /// PyTorch's dropouts: on the attention weights, after self-attention, inside and after
    /// the feed-forward block.
    drops: [Dropout; 4],
}

impl<T: Backend> EncoderLayer<T> {
    fn new(dim: usize, cfg: &MapperConfig, vb: ModelVb<T>) -> candle_core::Result<Self> {
        let attn = vb.pp("self_attn");
        let in_w = attn.vb().get((3 * dim, dim), "in_proj_weight")?;
        let in_b = attn.get(3 * dim, "in_proj_bias")?;
        Ok(Self {
            in_proj: Linear::from_weight(Weight::Dense(in_w.t()?), Some(in_b), vb.device())?,
            out_proj: Linear::new(dim, dim, true, attn.pp("out_proj"))?,
            linear1: Linear::new(dim, cfg.dim_feedforward, true, vb.pp("linear1"))?,
            linear2: Linear::new(cfg.dim_feedforward, dim, true, vb.pp("linear2"))?,
            norm1: LayerNorm::new(dim, 1e-5, vb.pp("norm1"))?,
            norm2: LayerNorm::new(dim, 1e-5, vb.pp("norm2"))?,
            heads: cfg.heads,
            scale: ((dim / cfg.heads) as f64).powf(-0.5),
            drops: std::array::from_fn(|_| Dropout::new(cfg.dropout)),
        })
    }

    /// `x` [B, T, D]; `bias` [B, 1, 1, T] hides padded frames as keys.
    fn forward(&self, x: &T, bias: &T) -> candle_core::Result<T> {
        let qkv = self.in_proj.forward(x)?;
        let d = qkv.dim(2)? / 3;
        let q = split_heads(&qkv.narrow(2, 0, d)?.affine(self.scale, 0.0)?, self.heads)?;
        let k = split_heads(&qkv.narrow(2, d, d)?, self.heads)?;
        let v = split_heads(&qkv.narrow(2, 2 * d, d)?, self.heads)?;
        let [attn_drop, drop1, ff_drop, drop2] = &self.drops;
        let mixed = attention_with_dropout(&q, &k, &v, Some(bias), attn_drop)?;
        let attn = self.out_proj.forward(&merge_heads(&mixed)?)?.dropout(drop1)?;
        let x = self.norm1.forward(&x.add(&attn)?)?;
        let h = self
            .linear1
            .forward(&x)?
            .activation(Activation::Relu)?
            .dropout(ff_drop)?;
        let ff = self.linear2.forward(&h)?.dropout(drop2)?;
        self.norm2.forward(&x.add(&ff)?)
    }
}

/// The mapper (`mapper._mapper.*`).
#[derive(Debug, Clone)]
pub struct Mapper<T: Backend = Tensor>(MapperKind<T>);

#[derive(Debug, Clone)]
enum MapperKind<T: Backend> {
    /// `_mapper.0` Linear → tanh → `_mapper.2` Linear; padded frames give zero tokens.
    Mlp { fc1: Linear<T>, fc2: Linear<T> },
    /// `_mapper.layers.N`: transformer encoder over frames; padded frames are NOT zeroed.
    Transformer(Vec<EncoderLayer<T>>),
}

impl<T: Backend> Mapper<T> {
    /// Builds the mapper for model width `dim`.
    pub fn new(dim: usize, cfg: &MapperConfig, vb: ModelVb<T>) -> candle_core::Result<Self> {
        let vb = vb.pp("_mapper");
        Ok(Mapper(match cfg.mapper_type {
            MapperType::Mlp => MapperKind::Mlp {
                fc1: Linear::new(dim, cfg.mlp_dim, true, vb.pp("0"))?,
                fc2: Linear::new(cfg.mlp_dim, dim, true, vb.pp("2"))?,
            },
            MapperType::Transformer => MapperKind::Transformer(
                (0..cfg.depth)
                    .map(|i| EncoderLayer::new(dim, cfg, vb.pp("layers").pp(i)))
                    .collect::<candle_core::Result<Vec<_>>>()?,
            ),
        }))
    }

    /// Switches on the transformer's dropout (training), drawing masks from `rng`.
    pub fn enable_dropout(&mut self, rng: &DropoutRng) {
        if let MapperKind::Transformer(layers) = &mut self.0 {
            for d in layers.iter_mut().flat_map(|l| l.drops.iter_mut()) {
                d.enable(rng);
            }
        }
    }

    /// `mean_tokens` [B, T, D] (per-frame mean of the CLIP tokens), `frame_mask` [B, T]
    /// → prefix tokens [B, T, D].
    pub fn forward(&self, mean_tokens: &T, frame_mask: &T) -> candle_core::Result<T> {
        match &self.0 {
            MapperKind::Mlp { fc1, fc2 } => {
                let h = Activation::Tanh.forward(&fc1.forward(mean_tokens)?)?;
                let mask = frame_mask.dims();
                fc2.forward(&h)?
                    .broadcast_mul(&frame_mask.reshape(&[mask[0], mask[1], 1])?)
            }
            MapperKind::Transformer(layers) => {
                let bias = frame_mask.key_bias()?;
                let mut x = mean_tokens.clone();
                for layer in layers {
                    x = layer.forward(&x, &bias)?;
                }
                Ok(x)
            }
        }
    }
}
