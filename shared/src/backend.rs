//! The engine seam inside the model: every layer (CLIP, GPT-2, resampler, cross-attention,
//! mapper) is written once, generic over a [`Backend`] tensor type. candle's `Tensor` is one
//! backend (CPU/CUDA, differentiable, used for training); the WebGPU engine (`gpu`, feature
//! `webgpu`) is another. Weights are always read through candle's `VarBuilder` (from a
//! checkpoint or a model folder) and handed to the backend once, with [`Backend::from_candle`]
//! and [`Backend::matrix_from_candle`].
//!
//! Shapes are row-major; every op returns a new tensor (a backend may share storage).

mod candle;
pub(crate) mod column_split;
pub mod compose;
mod fast_activation;
mod frozen;
mod frozen_block;
mod kv_cache;
pub(crate) mod row_dots;
mod serial_layer_norm;
mod step_attention;
mod vb;

use std::fmt::Debug;

use candle_core::{Result, Tensor};

pub use self::candle::{softmax_last, CandleMatrix};
pub use self::frozen::set_frozen_products;
pub use self::frozen_block::set_frozen_blocks;
pub use self::kv_cache::KvCache;
use crate::decode::{Cut, Nucleus, TopTokens};
use crate::dropout::Dropout;
use crate::gpt2::Gpt2Block;
pub use crate::nn::Weight;
use crate::nn::{Activation, LayerNorm, Linear};
pub use vb::ModelVb;

/// A tensor type the model can run on, with the operations the layers use.
// One thread drives a model (a wasm worker's futures are not Send): no Send bound on futures.
#[allow(async_fn_in_trait)]
pub trait Backend: Clone + Debug + Sized {
    /// Where this backend's tensors live.
    type Device: Clone + Debug;
    /// A linear map's matrix as this backend holds it (dense or block-quantized).
    type Matrix: Clone + Debug;
    /// Integer ids (token ids, row indices) as this backend takes them.
    type Ids: Clone + Debug;

    /// A candle tensor (a weight read through the VarBuilder) on this backend.
    fn from_candle(t: &Tensor, device: &Self::Device) -> Result<Self>;
    /// A linear map's matrix (see [`Weight`]) on this backend.
    fn matrix_from_candle(w: Weight, device: &Self::Device) -> Result<Self::Matrix>;
    /// The token embedding as a gather table and the tied LM head's matrix: `dense` is the
    /// embedding [vocab, d], `head` the head's weight as the store holds it (maybe quantized).
    /// A backend may use one copy for both.
    fn tied_embedding(
        dense: &Tensor,
        head: Weight,
        device: &Self::Device,
    ) -> Result<(Self::Matrix, Self::Matrix)>;
    /// An embedding table that is not tied to the head: `dense` [vocab, d].
    fn embedding(dense: &Tensor, device: &Self::Device) -> Result<Self::Matrix>;
    /// A tensor of `dims` from f32 values, with the dtype and device of `like`.
    fn from_f32(data: Vec<f32>, dims: &[usize], like: &Self) -> Result<Self>;
    /// Ids of shape `dims` on `device`.
    fn ids(ids: &[u32], dims: &[usize], device: &Self::Device) -> Result<Self::Ids>;
    /// The values, as an f32 candle tensor on the CPU (read back from the device).
    fn to_candle(&self) -> Result<Tensor>;
    /// The device this tensor lives on.
    fn device(&self) -> Self::Device;
    /// The shape.
    fn dims(&self) -> Vec<usize>;

    /// Size of dimension `i`.
    fn dim(&self, i: usize) -> Result<usize> {
        let dims = self.dims();
        dims.get(i)
            .copied()
            .ok_or_else(|| candle_core::Error::Msg(format!("dimension {i} of a rank-{} tensor", dims.len())))
    }

    /// Same values, new shape (same element count).
    fn reshape(&self, dims: &[usize]) -> Result<Self>;
    /// Dimensions reordered: output dim i is input dim `order[i]` (materialised).
    fn permute(&self, order: &[usize]) -> Result<Self>;
    /// `len` entries of dimension `dim` from `start`.
    fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Self>;
    /// Concatenation along `dim` (all other dimensions equal).
    fn cat(parts: &[&Self], dim: usize) -> Result<Self>;
    /// Repeats size-1 dimensions (and adds leading ones) up to `dims` (materialised).
    fn broadcast_as(&self, dims: &[usize]) -> Result<Self>;
    /// Rows `ids` (rank 1) of dimension 0, repeats allowed.
    fn index_select(&self, ids: &Self::Ids) -> Result<Self>;
    /// Rows `ids` (any shape) of the table [vocab, d] → [ids dims.., d].
    fn gather_rows(table: &Self::Matrix, ids: &Self::Ids) -> Result<Self>;

    /// Elementwise sum of two tensors of the same shape.
    fn add(&self, other: &Self) -> Result<Self>;
    /// Sum with numpy broadcasting (shapes aligned on the right; size-1 or missing dims repeat).
    fn broadcast_add(&self, other: &Self) -> Result<Self>;
    /// Product with numpy broadcasting.
    fn broadcast_mul(&self, other: &Self) -> Result<Self>;
    /// `x * mul + add`.
    fn affine(&self, mul: f64, add: f64) -> Result<Self>;
    /// Mean over dimension `dim`, which is removed.
    fn mean_dim(&self, dim: usize) -> Result<Self>;

    /// `x W^T + b` over the last dimension (any leading dims).
    fn linear(&self, w: &Self::Matrix, bias: Option<&Self>) -> Result<Self>;
    /// Layer normalisation over the last dimension.
    fn layer_norm(&self, weight: &Self, bias: &Self, eps: f64) -> Result<Self>;
    /// An activation function, elementwise.
    fn activation(&self, act: Activation) -> Result<Self>;
    /// `softmax(q k^T + bias) v` per head: `q` [B, H, Sq, Dh] (already scaled), `k`, `v`
    /// [B, H, Sk, Dh]; `bias` broadcastable to [B, H, Sq, Sk] (0 or a very negative number);
    /// `drop` on the probabilities (training only; an inference backend refuses an active one).
    fn attention(q: &Self, k: &Self, v: &Self, bias: Option<&Self>, drop: &Dropout) -> Result<Self>;
    /// Dropout (the identity unless the trainer switched it on).
    fn dropout(&self, drop: &Dropout) -> Result<Self>;

    // Fused ops: each stands for a few plain ops (the `compose` module, their default) that a
    // GPU engine runs as one kernel, so that a decoding step is a few dispatches per block.

    /// `act(linear(norm(x)))`: a layer norm and the linear map it feeds.
    fn norm_linear(
        &self,
        norm: &LayerNorm<Self>,
        linear: &Linear<Self>,
        act: Option<Activation>,
    ) -> Result<Self> {
        compose::norm_linear(self, norm, linear, act)
    }

    /// `residual + dropout(linear(x)) * tanh(gate)` (no gate: `residual + dropout(linear(x))`):
    /// a residual branch's output projection.
    fn linear_residual(
        &self,
        linear: &Linear<Self>,
        residual: &Self,
        gate: Option<&Self>,
        drop: &Dropout,
    ) -> Result<Self> {
        compose::linear_residual(self, linear, residual, gate, drop)
    }

    /// Self-attention from the fused projection `qkv` [B, S, 3·H·Dh] (queries, keys, values):
    /// queries scaled by `scale`, keys and values appended to `cache` when given, `bias`
    /// broadcastable to [B, H, S, keys]; the heads merged, [B, S, H·Dh].
    fn self_attention(
        qkv: &Self,
        heads: usize,
        scale: f64,
        bias: &Self,
        cache: Option<&mut KvCache<Self>>,
        drop: &Dropout,
    ) -> Result<Self> {
        compose::self_attention(qkv, heads, scale, bias, cache, drop)
    }

    /// A whole GPT-2 block over `x` [B, S, D] (`cache` when generating). The default is the
    /// plain composition of the fused ops above; candle runs a frozen block under a tracked
    /// input as one graph node with a hand-written backward (`frozen_block`).
    fn gpt2_block(
        block: &Gpt2Block<Self>,
        x: &Self,
        bias: &Self,
        cache: Option<&mut KvCache<Self>>,
    ) -> Result<Self> {
        block.forward_composed(x, bias, cache)
    }

    /// Keeps/duplicates the cache's batch rows: new row i is old row `rows[i]` (`ids` holds
    /// the same on the device). The default copies the selected rows.
    fn select_cache_rows(cache: &mut KvCache<Self>, rows: &[usize], ids: &Self::Ids) -> Result<()> {
        let _ = rows;
        cache.select_rows(ids)
    }

    /// Attention of the queries `to_q(norm(x))` scaled by `scale` over `kv` ([B, H, m, Dh]
    /// each, no mask); the heads merged, [B, S, H·Dh].
    fn cross_attention(
        x: &Self,
        norm: &LayerNorm<Self>,
        to_q: &Linear<Self>,
        heads: usize,
        scale: f64,
        kv: (&Self, &Self),
    ) -> Result<Self> {
        compose::cross_attention(x, norm, to_q, heads, scale, kv)
    }

    /// The values, flattened row-major, read back without blocking (a browser GPU must wait
    /// for the read; the default reads synchronously).
    async fn to_vec_async(&self) -> Result<Vec<f32>> {
        // A bf16 model's logits are read as f32 (a no-op for f32 tensors).
        self.to_candle()?
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()
    }

    /// For logits [R, V]: each row's `k` best tokens and its log-normaliser. The default reads
    /// the rows back and selects on the host; a GPU engine selects on the device and reads
    /// back only the winners.
    async fn top_tokens(&self, k: usize) -> Result<Vec<TopTokens>> {
        Ok(top_tokens_of_rows(&self.to_vec_async().await?, self.dim(1)?, k))
    }

    /// For logits [R, V]: each row's nucleus under `cut`. The default reads the rows back; a
    /// GPU engine narrows on the device and reads back only the candidates.
    async fn nucleus_rows(&self, cut: &Cut) -> Result<Vec<Nucleus>> {
        let v = self.dim(1)?.max(1);
        let flat = self.to_vec_async().await?;
        Ok(flat.chunks(v).map(|row| Nucleus::of_row(row, cut)).collect())
    }

    /// A keep-mask [B, Sk] (1 = visible) as an additive attention bias [B, 1, 1, Sk]: hidden
    /// keys get the most negative f32, so a row with every key hidden stays finite.
    fn key_bias(&self) -> Result<Self> {
        let keep = self.to_candle()?.to_vec2::<f32>()?;
        let (b, sk) = (keep.len(), keep.first().map_or(0, Vec::len));
        let data = keep
            .iter()
            .flatten()
            .map(|&k| (1.0 - k) * f32::MIN + 0.0)
            .collect();
        Self::from_f32(data, &[b, 1, 1, sk], self)
    }
}

/// Splits [B, S, H*Dh] into heads: [B, H, S, Dh].
pub fn split_heads<T: Backend>(x: &T, heads: usize) -> Result<T> {
    let d = x.dims();
    let (b, s, hd) = (d[0], d[1], d[2]);
    x.reshape(&[b, s, heads, hd / heads])?.permute(&[0, 2, 1, 3])
}

/// Merges heads back: [B, H, S, Dh] → [B, S, H*Dh].
pub fn merge_heads<T: Backend>(x: &T) -> Result<T> {
    let d = x.dims();
    let (b, h, s, dh) = (d[0], d[1], d[2], d[3]);
    x.permute(&[0, 2, 1, 3])?.reshape(&[b, s, h * dh])
}

/// Each row's `k` best tokens, from logits rows of length `v` laid end to end.
pub fn top_tokens_of_rows(flat: &[f32], v: usize, k: usize) -> Vec<TopTokens> {
    flat.chunks(v.max(1))
        .map(|row| TopTokens::of_row(row, k))
        .collect()
}
