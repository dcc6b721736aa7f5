//! The fused ops of [`Backend`] written as the plain ops they stand for: what the candle engine
//! runs, and the reference the WebGPU engine's fused kernels are tested against (bit for bit).

use candle_core::Result;

use super::{merge_heads, split_heads, Backend, KvCache};
use crate::dropout::Dropout;
use crate::nn::{Activation, LayerNorm, Linear};

/// `act(linear(norm(x)))`.
pub fn norm_linear<T: Backend>(
    x: &T,
    norm: &LayerNorm<T>,
    linear: &Linear<T>,
    act: Option<Activation>,
) -> Result<T> {
    let y = linear.forward(&norm.forward(x)?)?;
    match act {
        Some(a) => a.forward(&y),
        None => Ok(y),
    }
}

/// `residual + dropout(linear(x)) * tanh(gate)` (without a gate, `residual + dropout(linear(x))`).
pub fn linear_residual<T: Backend>(
    x: &T,
    linear: &Linear<T>,
    residual: &T,
    gate: Option<&T>,
    drop: &Dropout,
) -> Result<T> {
    let y = linear.forward(x)?.dropout(drop)?;
    let y = match gate {
        Some(g) => y.broadcast_mul(&g.activation(Activation::Tanh)?)?,
        None => y,
    };
    residual.add(&y)
}

/// Self-attention from the fused projection `qkv` [B, S, 3·H·Dh]: the queries scaled by
/// `scale`, the keys and values appended to `cache` (when given), the heads merged [B, S, H·Dh].
pub fn self_attention<T: Backend>(
    qkv: &T,
    heads: usize,
    scale: f64,
    bias: &T,
    cache: Option<&mut KvCache<T>>,
    drop: &Dropout,
) -> Result<T> {
    let d = qkv.dim(2)? / 3;
    let q = split_heads(&qkv.narrow(2, 0, d)?.affine(scale, 0.0)?, heads)?;
    let k = split_heads(&qkv.narrow(2, d, d)?, heads)?;
    let v = split_heads(&qkv.narrow(2, 2 * d, d)?, heads)?;
    let (k, v) = match cache {
        Some(c) => c.append(k, v)?,
        None => (k, v),
    };
    merge_heads(&T::attention(&q, &k, &v, Some(bias), drop)?)
}

/// Attention of the queries `to_q(norm(x))` [B, S, H·Dh], scaled by `scale`, over keys and
/// values [B, H, m, Dh] (no mask), the heads merged [B, S, H·Dh].
pub fn cross_attention<T: Backend>(
    x: &T,
    norm: &LayerNorm<T>,
    to_q: &Linear<T>,
    heads: usize,
    scale: f64,
    kv: (&T, &T),
) -> Result<T> {
    let q = norm_linear(x, norm, to_q, None)?.affine(scale, 0.0)?;
    let mixed = T::attention(&split_heads(&q, heads)?, kv.0, kv.1, None, &Dropout::default())?;
    merge_heads(&mixed)
}
