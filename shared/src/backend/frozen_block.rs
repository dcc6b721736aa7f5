//! A frozen GPT-2 block under a tracked input as one graph node whose backward is written out
//! (the input's gradient only).
//!
//! With GPT-2 frozen, training still sends the gradient through its blocks (to the
//! cross-attention blocks and the visual prefix before them). candle's autograd spends about
//! four tensors per forward op there: for every operand of every node a zero tensor, an add,
//! and the op's own gradient ops, constants included. Here the block runs on the detached input
//! with the very ops the composed path runs (the same kernels, so the same values), keeps what
//! its backward needs (the input and the residual stream for the norms, q/k/v, the attention
//! probabilities, the MLP pre-activation, the dropout masks) and is attached to the graph by a
//! custom op whose forward hands back the computed output. Its backward is the block's dX as
//! about thirty tensor ops. Dropout masks are drawn in the same order and shapes as the composed
//! path, so a training run's curve does not depend on the path.

mod grads;

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Storage, Tensor};

use super::candle::{activation_differentiable, layer_norm_differentiable, softmax_differentiable};
use super::frozen::{frozen_matmul, frozen_products_enabled};
use super::{merge_heads, split_heads, CandleMatrix, Weight};
use crate::dropout::Dropout;
use crate::gpt2::Gpt2Block;
use crate::nn::{Activation, LayerNorm, Linear};

/// Whether frozen blocks take this path (on unless a test or benchmark turns it off).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the whole-block path for frozen GPT-2 blocks on or off for the whole process. It also
/// needs the frozen products ([`super::set_frozen_products`]`(false)` turns both off); off runs
/// the blocks through candle's autograd.
pub fn set_frozen_blocks(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// A linear map's frozen dense `W^T` [in, out] and bias.
#[derive(Clone)]
struct Dense {
    wt: Tensor,
    bias: Option<Tensor>,
}

/// A frozen layer norm: scale, shift, epsilon.
#[derive(Clone)]
struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

/// The block's weights, when every one is a dense, untracked tensor of the input's dtype.
#[derive(Clone)]
struct Weights {
    ln_1: Norm,
    c_attn: Dense,
    attn_proj: Dense,
    ln_2: Norm,
    c_fc: Dense,
    mlp_proj: Dense,
    act: Activation,
    heads: usize,
    scale: f64,
}

/// The frozen dense matrix of `l`, if it is one.
fn dense(l: &Linear<Tensor>, dtype: DType) -> Option<Dense> {
    let CandleMatrix::Candle(Weight::Dense(wt)) = l.weight() else {
        return None;
    };
    let bias = l.bias().cloned();
    let frozen = |t: &Tensor| !t.track_op() && t.dtype() == dtype;
    (frozen(wt) && bias.as_ref().is_none_or(frozen)).then(|| Dense { wt: wt.clone(), bias })
}

/// The frozen norm `n`, if it is one.
fn norm(n: &LayerNorm<Tensor>, dtype: DType) -> Option<Norm> {
    let (weight, bias, eps) = n.parts();
    let frozen = |t: &Tensor| !t.track_op() && t.dtype() == dtype;
    (frozen(weight) && frozen(bias)).then(|| Norm {
        weight: weight.clone(),
        bias: bias.clone(),
        eps,
    })
}

impl Weights {
    /// The block's weights if the whole-block path applies to `x`: switched on, a tracked f32/f64
    /// input on the CPU or a CUDA device, every weight frozen, an activation with a derivative here.
    fn of(block: &Gpt2Block<Tensor>, x: &Tensor) -> Option<Self> {
        let dtype = x.dtype();
        let on = ENABLED.load(Ordering::Relaxed) && frozen_products_enabled();
        let device = x.device().is_cpu() || x.device().is_cuda();
        if !(on && device && x.track_op() && matches!(dtype, DType::F32 | DType::F64)) {
            return None;
        }
        grads::has_derivative(block.act)?;
        Some(Self {
            ln_1: norm(&block.ln_1, dtype)?,
            c_attn: dense(&block.attn.c_attn, dtype)?,
            attn_proj: dense(&block.attn.c_proj, dtype)?,
            ln_2: norm(&block.ln_2, dtype)?,
            c_fc: dense(&block.c_fc, dtype)?,
            mlp_proj: dense(&block.c_proj, dtype)?,
            act: block.act,
            heads: block.attn.heads,
            scale: block.attn.scale,
        })
    }
}

/// The block over `x` as one graph node when it is frozen and `x` tracked (`None` otherwise:
/// the caller runs the composed ops).
pub(super) fn forward(block: &Gpt2Block<Tensor>, x: &Tensor, bias: &Tensor) -> Result<Option<Tensor>> {
    let Some(weights) = Weights::of(block, x) else {
        return Ok(None);
    };
    let drops = [&block.attn.attn_drop, &block.attn.resid_drop, &block.mlp_drop];
    let (out, saved) = run_detached(&weights, &x.detach(), bias, drops)?;
    let op = FrozenBlock { weights, saved, out };
    Ok(Some(x.apply_op1(op)?))
}

/// What the backward reads, kept from the forward.
struct Saved {
    /// The block's input (ln_1's input).
    x: Tensor,
    /// The residual stream after the attention branch (ln_2's input).
    x1: Tensor,
    /// Queries (scaled), keys and values, [B, H, S, Dh].
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Attention probabilities before and after their dropout, [B, H, S, S].
    probs: Tensor,
    probs_dropped: Tensor,
    /// The MLP's pre-activation.
    pre_act: Tensor,
    /// Keep-masks of the attention, residual and MLP dropouts (when active).
    masks: [Option<Tensor>; 3],
}

/// `x W + b` as [`super::Backend::linear`] runs it under a tracked input (the frozen product).
fn linear(x: &Tensor, l: &Dense) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (lead, last) = dims.split_at(dims.len() - 1);
    let rows: usize = lead.iter().product();
    let y = frozen_matmul(&x.reshape((rows, last[0]))?, &l.wt)?;
    let y = match &l.bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = lead.to_vec();
    out.push(y.dim(1)?);
    y.reshape(out)
}

/// `x` times a dropout keep-mask, if one was drawn.
fn masked(x: &Tensor, mask: &Option<Tensor>) -> Result<Tensor> {
    match mask {
        Some(m) => x * m,
        None => Ok(x.clone()),
    }
}

/// The block on a detached input, op for op as `Gpt2Block::forward_composed` runs it on a
/// tracked one (so the values are the same), drawing the dropout masks in its order.
fn run_detached(w: &Weights, x: &Tensor, bias: &Tensor, drops: [&Dropout; 3]) -> Result<(Tensor, Saved)> {
    // Attention branch: compose::norm_linear, self_attention, linear_residual.
    let norm_1 = layer_norm_differentiable(x, &w.ln_1.weight, &w.ln_1.bias, w.ln_1.eps)?;
    let qkv = linear(&norm_1, &w.c_attn)?;
    let d = qkv.dim(2)? / 3;
    let q = split_heads(&qkv.narrow(2, 0, d)?.affine(w.scale, 0.0)?, w.heads)?;
    let k = split_heads(&qkv.narrow(2, d, d)?, w.heads)?;
    let v = split_heads(&qkv.narrow(2, 2 * d, d)?, w.heads)?;
    let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
    let probs = softmax_differentiable(&scores)?;
    let attn_mask = drops[0].mask(&probs)?;
    let probs_dropped = masked(&probs, &attn_mask)?;
    let mixed = merge_heads(&probs_dropped.matmul(&v)?)?;
    let branch = linear(&mixed, &w.attn_proj)?;
    let resid_mask = drops[1].mask(&branch)?;
    let x1 = (x + masked(&branch, &resid_mask)?)?;
    // MLP branch.
    let norm_2 = layer_norm_differentiable(&x1, &w.ln_2.weight, &w.ln_2.bias, w.ln_2.eps)?;
    let pre_act = linear(&norm_2, &w.c_fc)?;
    let branch = linear(&activation_differentiable(&pre_act, w.act)?, &w.mlp_proj)?;
    let mlp_mask = drops[2].mask(&branch)?;
    let out = (&x1 + masked(&branch, &mlp_mask)?)?;
    let saved = Saved {
        x: x.clone(),
        x1,
        q,
        k,
        v,
        probs,
        probs_dropped,
        pre_act,
        masks: [attn_mask, resid_mask, mlp_mask],
    };
    Ok((out, saved))
}

/// The gradient through a frozen linear map: `g Wᵀ` over the last dimension.
fn linear_back(g: &Tensor, l: &Dense) -> Result<Tensor> {
    let dims = g.dims().to_vec();
    let (lead, last) = dims.split_at(dims.len() - 1);
    let rows: usize = lead.iter().product();
    let dx = g.reshape((rows, last[0]))?.matmul(&l.wt.t()?)?;
    let mut out = lead.to_vec();
    out.push(dx.dim(1)?);
    dx.reshape(out)
}

/// The op attaching a block's precomputed output to the graph.
struct FrozenBlock {
    weights: Weights,
    saved: Saved,
    out: Tensor,
}

impl FrozenBlock {
    /// The output's layout, which must cover its whole storage (what `try_clone` copies).
    fn out_layout(&self) -> Result<(Layout, Shape)> {
        let l = self.out.layout().clone();
        if !l.is_contiguous() || l.start_offset() != 0 {
            candle_core::bail!("frozen block: the output is not a whole contiguous tensor");
        }
        Ok((l, self.out.shape().clone()))
    }

    /// dX from dY: the MLP branch, then the attention branch, each with its residual.
    fn backward(&self, g: &Tensor) -> Result<Tensor> {
        let (w, s) = (&self.weights, &self.saved);
        let g = g.contiguous()?;
        // out = x1 + drop(act(ln_2(x1) W_fc + b) W_proj + b)
        let d_act = linear_back(&masked(&g, &s.masks[2])?, &w.mlp_proj)?;
        let d_pre = grads::activation(w.act, &s.pre_act, &d_act)?;
        let d_norm_2 = linear_back(&d_pre, &w.c_fc)?;
        let g1 = (&g + grads::layer_norm(&s.x1, &w.ln_2.weight, &d_norm_2, w.ln_2.eps)?)?;
        // x1 = x + drop(merge(drop(softmax(q kᵀ + bias)) v) W_proj + b), [q k v] = ln_1(x) W_attn + b
        let d_mixed = linear_back(&masked(&g1, &s.masks[1])?, &w.attn_proj)?;
        let d_heads = split_heads(&d_mixed, w.heads)?;
        let d_probs = masked(&d_heads.matmul(&s.v.t()?)?, &s.masks[0])?;
        let d_v = s.probs_dropped.t()?.matmul(&d_heads)?;
        let d_scores = grads::softmax(&s.probs, &d_probs)?;
        let d_q = d_scores.matmul(&s.k)?.affine(w.scale, 0.0)?;
        let d_k = d_scores.t()?.matmul(&s.q)?;
        let d_qkv = Tensor::cat(
            &[&merge_heads(&d_q)?, &merge_heads(&d_k)?, &merge_heads(&d_v)?],
            2,
        )?;
        let d_norm_1 = linear_back(&d_qkv, &w.c_attn)?;
        g1 + grads::layer_norm(&s.x, &w.ln_1.weight, &d_norm_1, w.ln_1.eps)?
    }
}

impl CustomOp1 for FrozenBlock {
    fn name(&self) -> &'static str {
        "frozen-gpt2-block"
    }

    fn cpu_fwd(&self, _x: &CpuStorage, _l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (layout, shape) = self.out_layout()?;
        match &*self.out.storage_and_layout().0 {
            Storage::Cpu(s) => Ok((s.try_clone(&layout)?, shape)),
            _ => candle_core::bail!("frozen block: the output is not on the CPU"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _x: &candle_core::CudaStorage,
        _l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (layout, shape) = self.out_layout()?;
        match &*self.out.storage_and_layout().0 {
            Storage::Cuda(s) => Ok((s.try_clone(&layout)?, shape)),
            _ => candle_core::bail!("frozen block: the output is not on the GPU"),
        }
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.backward(grad)?))
    }
}
