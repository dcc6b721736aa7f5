//! candle's `Tensor` as a [`Backend`]: the CPU/CUDA engine, differentiable for training. The
//! fused kernels are used for inference and the differentiable ops when a gradient is tracked.

use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::{DType, Module, Result, Tensor, D};

use super::fast_activation;
use super::frozen::{frozen_matmul, is_frozen_product};
use super::frozen_block;
use super::row_dots;
use super::serial_layer_norm;
use super::step_attention;
use super::{Backend, KvCache, Weight};
use crate::dropout::Dropout;
use crate::fused;
use crate::gpt2::Gpt2Block;
use crate::nn::Activation;
use crate::weights::BlockMatrix;

/// Whether a computation involving these tensors must stay differentiable.
fn tracked(ts: &[&Tensor]) -> bool {
    ts.iter().any(|t| t.track_op())
}

/// Runs `f` on `t`'s values as one contiguous f32 slice of CPU memory (copied only when `t` is
/// a view): for the inference kernels that work on slices instead of tensor ops.
pub(super) fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("a slice kernel on a tensor that is not on the CPU");
    };
    let start = layout.start_offset();
    f(&cpu.as_slice::<f32>()?[start..start + t.elem_count()])
}

/// Softmax over the last dimension, fused when no gradient is needed.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    if tracked(&[x]) {
        softmax_differentiable(x)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// Softmax over the last dimension as a tracked input gets it (the values a frozen block's
/// forward must reproduce on a detached input).
pub(super) fn softmax_differentiable(x: &Tensor) -> Result<Tensor> {
    if fused::applies(x) {
        return fused::softmax_last(x);
    }
    candle_nn::ops::softmax(x, D::Minus1)
}

/// Layer norm as a tracked input gets it: the fused kernel on the CPU in f32/f64, the composed
/// ops elsewhere (half precision normalised in f32, as PyTorch's autocast does).
pub(super) fn layer_norm_differentiable(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    if fused::applies(x) && x.dtype() == weight.dtype() {
        return fused::layer_norm(x, weight, bias, eps);
    }
    let dtype = x.dtype();
    let x = match dtype {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    };
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.to_dtype(dtype)?.broadcast_mul(weight)?.broadcast_add(bias)
}

/// The fused kernel of an activation, where it has one.
fn fused_activation(act: Activation) -> Option<fused::Act> {
    match act {
        Activation::Gelu => Some(fused::Act::GeluErf),
        Activation::GeluNew => Some(fused::Act::GeluNew),
        Activation::QuickGelu => Some(fused::Act::QuickGelu),
        _ => None,
    }
}

/// An activation as a tracked input gets it (the fused kernel on the CPU in f32/f64).
pub(super) fn activation_differentiable(x: &Tensor, act: Activation) -> Result<Tensor> {
    match fused_activation(act) {
        Some(f) if fused::applies(x) => f.apply(x),
        _ => activation_plain(x, act),
    }
}

/// An activation through candle's own ops.
fn activation_plain(x: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluNew => x.gelu(),
        Activation::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
        Activation::Relu => x.relu(),
        Activation::SqRelu => x.relu()?.sqr(),
        Activation::Tanh => x.tanh(),
    }
}

/// A linear map's matrix on the candle engine.
#[derive(Debug, Clone)]
pub enum CandleMatrix {
    /// As the store gave it: dense `W^T`, or blocks for candle's quantized matmul (GPU devices).
    Candle(Weight),
    /// q8_0/q4_0 blocks on the CPU, multiplied with f32 activations ([`BlockMatrix`]).
    Blocks(Arc<BlockMatrix>),
}

impl Backend for Tensor {
    type Device = candle_core::Device;
    type Matrix = CandleMatrix;
    type Ids = Tensor;

    fn from_candle(t: &Tensor, _device: &Self::Device) -> Result<Self> {
        Ok(t.clone())
    }

    fn matrix_from_candle(w: Weight, device: &Self::Device) -> Result<CandleMatrix> {
        match w {
            Weight::Quantized(QMatMul::QTensor(ref q)) if device.is_cpu() => {
                if let Some(b) = BlockMatrix::from_qtensor(q)? {
                    return Ok(CandleMatrix::Blocks(Arc::new(b)));
                }
                Ok(CandleMatrix::Candle(w))
            }
            // Laid out for the decoding steps' few-rows products.
            Weight::Dense(wt) => Ok(CandleMatrix::Candle(Weight::Dense(row_dots::output_rows(&wt)?))),
            w => Ok(CandleMatrix::Candle(w)),
        }
    }

    fn tied_embedding(
        dense: &Tensor,
        head: Weight,
        device: &Self::Device,
    ) -> Result<(CandleMatrix, CandleMatrix)> {
        // Gathers read the dense table; the head keeps the store's blocks when quantized.
        Ok((
            CandleMatrix::Candle(Weight::Dense(dense.t()?)),
            Self::matrix_from_candle(head, device)?,
        ))
    }

    fn embedding(dense: &Tensor, _device: &Self::Device) -> Result<CandleMatrix> {
        Ok(CandleMatrix::Candle(Weight::Dense(dense.t()?)))
    }

    fn from_f32(data: Vec<f32>, dims: &[usize], like: &Self) -> Result<Self> {
        Tensor::from_vec(data, dims, like.device())?.to_dtype(like.dtype())
    }

    fn ids(ids: &[u32], dims: &[usize], device: &Self::Device) -> Result<Tensor> {
        Tensor::from_slice(ids, dims, device)
    }

    fn to_candle(&self) -> Result<Tensor> {
        self.to_dtype(DType::F32)?.to_device(&candle_core::Device::Cpu)
    }

    fn device(&self) -> Self::Device {
        Tensor::device(self).clone()
    }

    fn dims(&self) -> Vec<usize> {
        Tensor::dims(self).to_vec()
    }

    fn reshape(&self, dims: &[usize]) -> Result<Self> {
        Tensor::reshape(self, dims)
    }

    fn permute(&self, order: &[usize]) -> Result<Self> {
        Tensor::permute(self, order)?.contiguous()
    }

    fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Self> {
        Tensor::narrow(self, dim, start, len)
    }

    fn cat(parts: &[&Self], dim: usize) -> Result<Self> {
        Tensor::cat(parts, dim)
    }

    fn broadcast_as(&self, dims: &[usize]) -> Result<Self> {
        Tensor::broadcast_as(self, dims)?.contiguous()
    }

    fn index_select(&self, ids: &Tensor) -> Result<Self> {
        Tensor::index_select(self, ids, 0)
    }

    fn gather_rows(table: &CandleMatrix, ids: &Tensor) -> Result<Self> {
        let table = match table {
            CandleMatrix::Candle(Weight::Dense(wt)) => wt.t()?,
            CandleMatrix::Candle(Weight::Quantized(q)) => match q {
                QMatMul::QTensor(q) => q.dequantize(ids.device())?,
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.clone(),
            },
            // Tables are built dense (`tied_embedding`, `embedding`).
            CandleMatrix::Blocks(_) => candle_core::bail!("embedding rows from a block matrix"),
        };
        let mut dims = ids.dims().to_vec();
        dims.push(table.dim(1)?);
        table.index_select(&ids.flatten_all()?, 0)?.reshape(dims)
    }

    fn add(&self, other: &Self) -> Result<Self> {
        self + other
    }

    fn broadcast_add(&self, other: &Self) -> Result<Self> {
        Tensor::broadcast_add(self, other)
    }

    fn broadcast_mul(&self, other: &Self) -> Result<Self> {
        Tensor::broadcast_mul(self, other)
    }

    fn affine(&self, mul: f64, add: f64) -> Result<Self> {
        Tensor::affine(self, mul, add)
    }

    fn mean_dim(&self, dim: usize) -> Result<Self> {
        self.mean(dim)
    }

    fn linear(&self, w: &CandleMatrix, bias: Option<&Self>) -> Result<Self> {
        // Flatten leading dims so one 2-D GEMM runs instead of a batched one.
        let dims = Tensor::dims(self).to_vec();
        let (lead, last) = dims.split_at(dims.len() - 1);
        let rows: usize = lead.iter().product();
        let x = Tensor::reshape(self, (rows, last[0]))?;
        let y = match w {
            // A frozen weight under a tracked input: the backward computes dX only.
            CandleMatrix::Candle(Weight::Dense(w)) if is_frozen_product(&x, w) => frozen_matmul(&x, w)?,
            // No gradient: W's rows dotted with x's in AVX-512 register tiles (faster than the gemm).
            CandleMatrix::Candle(Weight::Dense(w)) if row_dots::applies(&x, w) => row_dots::product(&x, w)?,
            CandleMatrix::Candle(Weight::Dense(w)) => x.matmul(w)?,
            // The quantized kernels read the activations as one contiguous f32 block.
            CandleMatrix::Candle(Weight::Quantized(q)) => q.forward(&x.contiguous()?)?,
            // A gradient through a quantized layer (attention maps' attribution): the kernels
            // below have no backward, so W is decoded and multiplied by candle's matmul.
            CandleMatrix::Blocks(b) if x.track_op() => x.matmul(&b.dense_t()?.to_dtype(x.dtype())?)?,
            CandleMatrix::Blocks(b) => b.forward(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype())?,
        };
        let y = match bias {
            Some(b) => Tensor::broadcast_add(&y, b)?,
            None => y,
        };
        let mut out = lead.to_vec();
        out.push(y.dim(1)?);
        Tensor::reshape(&y, out)
    }

    fn layer_norm(&self, weight: &Self, bias: &Self, eps: f64) -> Result<Self> {
        let x = self;
        if serial_layer_norm::applies(x, weight, bias) {
            return serial_layer_norm::forward(x, weight, bias, eps as f32);
        }
        // candle's fused kernel has no backward pass: use it only when no gradient is needed.
        if x.is_contiguous() && x.dtype() == DType::F32 && !tracked(&[x, weight, bias]) {
            return candle_nn::ops::layer_norm(x, weight, bias, eps as f32);
        }
        layer_norm_differentiable(x, weight, bias, eps)
    }

    fn activation(&self, act: Activation) -> Result<Self> {
        if tracked(&[self]) {
            activation_differentiable(self, act)
        } else if let Some(y) = fast_activation::apply(self, act)? {
            Ok(y)
        } else {
            activation_plain(self, act)
        }
    }

    fn gpt2_block(
        block: &Gpt2Block<Self>,
        x: &Self,
        bias: &Self,
        cache: Option<&mut KvCache<Self>>,
    ) -> Result<Self> {
        // Training with GPT-2 frozen: one graph node with a hand-written backward.
        if cache.is_none() {
            if let Some(y) = frozen_block::forward(block, x, bias)? {
                return Ok(y);
            }
        }
        block.forward_composed(x, bias, cache)
    }

    fn attention(q: &Self, k: &Self, v: &Self, bias: Option<&Self>, drop: &Dropout) -> Result<Self> {
        if !drop.is_active() && step_attention::applies(q, k, v, bias) {
            return step_attention::attention(q, k, v, bias);
        }
        let scores = q.matmul(&k.t()?)?;
        let scores = match bias {
            Some(b) => Tensor::broadcast_add(&scores, b)?,
            None => scores,
        };
        drop.forward(&softmax_last(&scores)?)?.matmul(v)
    }

    fn dropout(&self, drop: &Dropout) -> Result<Self> {
        drop.forward(self)
    }

    fn key_bias(&self) -> Result<Self> {
        crate::nn::key_bias(self)
    }
}
