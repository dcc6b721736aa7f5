//! [`Backend`] for [`GpuTensor`]: the model's layers running on WebGPU.

use candle_core::{DType, Result, Tensor};

use super::device::{gpu_err, GpuDevice};
use super::matrix::GpuMatrix;
use super::select::MAX_TOP_K;
use super::tensor::{GpuIds, GpuTensor};
use crate::backend::{top_tokens_of_rows, Backend, KvCache, Weight};
use crate::decode::{Cut, Nucleus, TopTokens};
use crate::dropout::Dropout;
use crate::nn::{Activation, LayerNorm, Linear};

impl Backend for GpuTensor {
    type Device = GpuDevice;
    type Matrix = GpuMatrix;
    type Ids = GpuIds;

    fn from_candle(t: &Tensor, device: &GpuDevice) -> Result<Self> {
        let vals = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        GpuTensor::from_vec(&vals, t.dims(), device)
    }

    fn matrix_from_candle(w: Weight, device: &GpuDevice) -> Result<GpuMatrix> {
        GpuMatrix::from_weight(&w, device)
    }

    fn tied_embedding(dense: &Tensor, head: Weight, device: &GpuDevice) -> Result<(GpuMatrix, GpuMatrix)> {
        // One copy serves both: the head's blocks when quantized (the dense table is their
        // expansion), else the dense table.
        let m = match head {
            Weight::Quantized(_) => GpuMatrix::from_weight(&head, device)?,
            Weight::Dense(_) => GpuMatrix::from_dense(dense, device)?,
        };
        Ok((m.clone(), m))
    }

    fn embedding(dense: &Tensor, device: &GpuDevice) -> Result<GpuMatrix> {
        GpuMatrix::from_dense(dense, device)
    }

    fn from_f32(data: Vec<f32>, dims: &[usize], like: &Self) -> Result<Self> {
        GpuTensor::transient(&data, dims, &like.dev)
    }

    fn ids(ids: &[u32], dims: &[usize], device: &GpuDevice) -> Result<GpuIds> {
        GpuIds::new(ids, dims, device)
    }

    fn to_candle(&self) -> Result<Tensor> {
        self.to_cpu()
    }

    fn device(&self) -> GpuDevice {
        self.dev.clone()
    }

    fn dims(&self) -> Vec<usize> {
        self.dims.clone()
    }

    fn reshape(&self, dims: &[usize]) -> Result<Self> {
        // Contiguous storage: a new shape shares the buffer.
        if dims.iter().product::<usize>() != self.elem_count() {
            return Err(gpu_err(format!("reshape of {:?} to {dims:?}", self.dims)));
        }
        Ok(GpuTensor {
            buf: self.buf.clone(),
            dims: dims.to_vec(),
            dev: self.dev.clone(),
        })
    }

    fn permute(&self, order: &[usize]) -> Result<Self> {
        GpuTensor::permute(self, order)
    }

    fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Self> {
        GpuTensor::narrow(self, dim, start, len)
    }

    fn cat(parts: &[&Self], dim: usize) -> Result<Self> {
        GpuTensor::cat(parts, dim)
    }

    fn broadcast_as(&self, dims: &[usize]) -> Result<Self> {
        GpuTensor::broadcast_as(self, dims)
    }

    fn index_select(&self, ids: &GpuIds) -> Result<Self> {
        GpuTensor::index_select(self, ids)
    }

    fn gather_rows(table: &GpuMatrix, ids: &GpuIds) -> Result<Self> {
        GpuTensor::gather_rows(table, ids)
    }

    fn add(&self, other: &Self) -> Result<Self> {
        GpuTensor::add(self, other)
    }

    fn broadcast_add(&self, other: &Self) -> Result<Self> {
        GpuTensor::broadcast_add(self, other)
    }

    fn broadcast_mul(&self, other: &Self) -> Result<Self> {
        GpuTensor::broadcast_mul(self, other)
    }

    fn affine(&self, mul: f64, add: f64) -> Result<Self> {
        GpuTensor::affine(self, mul, add)
    }

    fn mean_dim(&self, dim: usize) -> Result<Self> {
        GpuTensor::mean_dim(self, dim)
    }

    fn linear(&self, w: &GpuMatrix, bias: Option<&Self>) -> Result<Self> {
        GpuTensor::linear(self, w, bias)
    }

    fn layer_norm(&self, weight: &Self, bias: &Self, eps: f64) -> Result<Self> {
        GpuTensor::layer_norm(self, weight, bias, eps)
    }

    fn activation(&self, act: Activation) -> Result<Self> {
        GpuTensor::activation(self, act)
    }

    fn attention(q: &Self, k: &Self, v: &Self, bias: Option<&Self>, drop: &Dropout) -> Result<Self> {
        inference_only(drop)?;
        GpuTensor::attention(q, k, v, bias)
    }

    fn key_bias(&self) -> Result<Self> {
        // On the device (no readback): (1 - keep) * f32::MIN, exact for a 0/1 mask.
        let (b, sk) = match self.dims[..] {
            [b, sk] => (b, sk),
            ref d => return Err(gpu_err(format!("a key mask must be [B, Sk], got {d:?}"))),
        };
        self.affine(-1.0, 1.0)?
            .affine(f32::MIN as f64, 0.0)?
            .reshape(&[b, 1, 1, sk])
    }

    async fn to_vec_async(&self) -> Result<Vec<f32>> {
        GpuTensor::to_vec_async(self).await
    }

    async fn top_tokens(&self, k: usize) -> Result<Vec<TopTokens>> {
        if k == 0 || k > MAX_TOP_K {
            let v = self.dim(1)?;
            return Ok(top_tokens_of_rows(&GpuTensor::to_vec_async(self).await?, v, k));
        }
        // Greedy (k = 1) and beam search: chosen on the device; 3 + 2k values per row return.
        self.top_tokens_on_device(k).await
    }

    async fn nucleus_rows(&self, cut: &Cut) -> Result<Vec<Nucleus>> {
        self.nucleus_on_device(cut).await
    }

    fn norm_linear(
        &self,
        norm: &LayerNorm<Self>,
        linear: &Linear<Self>,
        act: Option<Activation>,
    ) -> Result<Self> {
        GpuTensor::norm_linear_fused(self, norm, linear, act)
    }

    fn linear_residual(
        &self,
        linear: &Linear<Self>,
        residual: &Self,
        gate: Option<&Self>,
        drop: &Dropout,
    ) -> Result<Self> {
        inference_only(drop)?;
        GpuTensor::linear_residual_fused(self, linear, residual, gate)
    }

    fn self_attention(
        qkv: &Self,
        heads: usize,
        scale: f64,
        bias: &Self,
        cache: Option<&mut KvCache<Self>>,
        drop: &Dropout,
    ) -> Result<Self> {
        inference_only(drop)?;
        match cache {
            Some(c) => GpuTensor::self_attention_cached(qkv, heads, scale, bias, c),
            None => crate::backend::compose::self_attention(qkv, heads, scale, bias, None, drop),
        }
    }

    fn select_cache_rows(cache: &mut KvCache<Self>, rows: &[usize], _ids: &GpuIds) -> Result<()> {
        GpuTensor::select_cache_rows(cache, rows)
    }

    fn cross_attention(
        x: &Self,
        norm: &LayerNorm<Self>,
        to_q: &Linear<Self>,
        heads: usize,
        scale: f64,
        kv: (&Self, &Self),
    ) -> Result<Self> {
        GpuTensor::cross_attention_fused(x, norm, to_q, heads, scale, kv)
    }

    fn dropout(&self, drop: &Dropout) -> Result<Self> {
        inference_only(drop)?;
        Ok(self.clone())
    }
}

/// Errors when `drop` is switched on: the engine runs inference only.
fn inference_only(drop: &Dropout) -> Result<()> {
    if drop.is_active() {
        return Err(gpu_err(
            "the WebGPU engine is inference-only: dropout is switched on",
        ));
    }
    Ok(())
}
