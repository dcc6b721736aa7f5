//! Adam/AdamW on the CPU as two in-place passes per parameter: one updates both moments, one
//! the parameter. No tensor is created, so a step streams each parameter's memory a few times
//! instead of the ~15 whole-tensor temporaries of the op-by-op update.
//!
//! Bit-identical to [`super::update`]: every element goes through the very f32 operations
//! candle runs for that chain (a scalar op is candle's affine `x · mul + add`, its constants
//! rounded from f64 as candle rounds them; products and sums are never fused), in the same
//! order. The parameter pass recomputes the step from the stored moments, which are exactly the
//! values the op chain would use.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{ensure, Result};
use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Tensor};
use rayon::prelude::*;

use super::{AdamConfig, OptimizerKind};

/// Elements below which a pass stays on one thread (splitting costs more than it saves).
const PARALLEL_MIN: usize = 1 << 16;

/// In-place kernel calls so far in this process (the benchmark's op count: these create no
/// tensor, so candle's tensor counter does not see them).
static CALLS: AtomicUsize = AtomicUsize::new(0);

/// In-place optimizer kernel calls run so far.
pub fn kernel_calls() -> usize {
    CALLS.load(Ordering::Relaxed)
}

/// Whether a parameter can take the in-place path: f32 on the CPU.
pub fn applies(p: &Tensor) -> bool {
    p.device().is_cpu() && p.dtype() == DType::F32
}

/// Moments of a parameter of `n` elements as the in-place path holds them: one contiguous
/// `[2, n]` buffer, first moments then second.
pub fn pack(m: &Tensor, v: &Tensor) -> Result<Tensor> {
    Ok(Tensor::stack(&[m.flatten_all()?, v.flatten_all()?], 0)?.contiguous()?)
}

/// The moments of a packed buffer, as fresh tensors shaped like the parameter (copies: the
/// buffer keeps changing in place).
pub fn unpack(mv: &Tensor, shape: &candle_core::Shape) -> Result<(Tensor, Tensor)> {
    let part = |i: usize| -> Result<Tensor> { Ok(mv.get(i)?.reshape(shape)?.copy()?) };
    Ok((part(0)?, part(1)?))
}

/// The per-step scalars, rounded to f32 where candle rounds them.
#[derive(Debug, Clone, Copy)]
struct Scalars {
    kind: OptimizerKind,
    /// `p · (1 − lr·wd)` (AdamW) or `p · wd` (Adam's L2 term).
    decay: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    /// `1 / √(1 − β₂ᵗ)`.
    inv_sqrt_bc2: f32,
    eps: f32,
    /// `lr / (1 − β₁ᵗ)`.
    step_size: f32,
}

impl Scalars {
    fn new(c: AdamConfig, (bc1, bc2): (f64, f64), lr: f64) -> Self {
        let decay = match c.kind {
            OptimizerKind::AdamW => 1.0 - lr * c.weight_decay,
            OptimizerKind::Adam => c.weight_decay,
        };
        Self {
            kind: c.kind,
            decay: decay as f32,
            beta1: c.beta1 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
            eps: c.eps as f32,
            step_size: (lr / bc1) as f32,
        }
    }
}

/// candle's affine on one element: `x · mul + add`, never fused.
#[inline(always)]
fn affine(x: f32, mul: f32, add: f32) -> f32 {
    x * mul + add
}

/// Updates `p` (a `Var`'s tensor) in place from `grad`, and its packed moments `mv`.
pub fn step(c: AdamConfig, bias: (f64, f64), lr: f64, p: &Tensor, grad: &Tensor, mv: &Tensor) -> Result<()> {
    ensure!(
        applies(p) && grad.dtype() == DType::F32 && mv.dtype() == DType::F32,
        "the in-place optimizer takes f32 CPU tensors"
    );
    ensure!(
        grad.elem_count() == p.elem_count() && mv.elem_count() == 2 * p.elem_count(),
        "in-place optimizer: parameter of {} elements, gradient of {}, moments of {}",
        p.elem_count(),
        grad.elem_count(),
        mv.elem_count()
    );
    // A gradient is usually contiguous; a strided one is copied once.
    let grad = if grad.is_contiguous() {
        grad.clone()
    } else {
        grad.contiguous()?
    };
    let s = Scalars::new(c, bias, lr);
    mv.inplace_op3(&grad, p, &MomentsPass(s))?;
    p.inplace_op2(mv, &ParameterPass(s))?;
    CALLS.fetch_add(2, Ordering::Relaxed);
    Ok(())
}

/// The contiguous f32 elements of a storage under `l`.
fn elems<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("in-place optimizer: expected contiguous f32"),
    }
}

/// [`elems`], mutable.
fn elems_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&mut v[a..b]),
        _ => candle_core::bail!("in-place optimizer: expected contiguous f32"),
    }
}

/// Chunk length that splits `n` elements over candle's threads (all of it below the cut-off).
fn chunk_len(n: usize) -> usize {
    let threads = candle_core::utils::get_num_threads().max(1);
    if n < PARALLEL_MIN || threads == 1 {
        n.max(1)
    } else {
        n.div_ceil(threads)
    }
}

/// Both moments from the gradient: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²` (Adam adds
/// `wd·p` to `g` first).
struct MomentsPass(Scalars);

impl InplaceOp3 for MomentsPass {
    fn name(&self) -> &'static str {
        "adam-moments"
    }

    fn cpu_fwd(
        &self,
        mv: &mut CpuStorage,
        mv_l: &Layout,
        grad: &CpuStorage,
        grad_l: &Layout,
        p: &CpuStorage,
        p_l: &Layout,
    ) -> candle_core::Result<()> {
        let s = self.0;
        let (grad, p) = (elems(grad, grad_l)?, elems(p, p_l)?);
        let (m, v) = elems_mut(mv, mv_l)?.split_at_mut(grad.len());
        let chunk = chunk_len(grad.len());
        m.par_chunks_mut(chunk)
            .zip(v.par_chunks_mut(chunk))
            .zip(grad.par_chunks(chunk).zip(p.par_chunks(chunk)))
            .for_each(|((m, v), (grad, p))| match s.kind {
                OptimizerKind::AdamW => moments::<false>(&s, m, v, grad, p),
                OptimizerKind::Adam => moments::<true>(&s, m, v, grad, p),
            });
        Ok(())
    }
}

/// The parameter from the new moments: `p ← p·(1 − lr·wd) − (lr/bc₁)·m / (√v/√bc₂ + ε)`
/// (Adam: no decay factor).
struct ParameterPass(Scalars);

impl InplaceOp2 for ParameterPass {
    fn name(&self) -> &'static str {
        "adam-parameters"
    }

    fn cpu_fwd(
        &self,
        p: &mut CpuStorage,
        p_l: &Layout,
        mv: &CpuStorage,
        mv_l: &Layout,
    ) -> candle_core::Result<()> {
        let s = self.0;
        let p = elems_mut(p, p_l)?;
        let (m, v) = elems(mv, mv_l)?.split_at(p.len());
        let chunk = chunk_len(p.len());
        p.par_chunks_mut(chunk)
            .zip(m.par_chunks(chunk).zip(v.par_chunks(chunk)))
            .for_each(|(p, (m, v))| match s.kind {
                OptimizerKind::AdamW => parameters::<true>(&s, p, m, v),
                OptimizerKind::Adam => parameters::<false>(&s, p, m, v),
            });
        Ok(())
    }
}

/// One chunk of the moments pass; `L2` adds Adam's `wd·p` to the gradient. Indexed over
/// slices of one length, so the loop compiles to vector instructions.
#[inline(always)]
fn moments<const L2: bool>(s: &Scalars, m: &mut [f32], v: &mut [f32], grad: &[f32], p: &[f32]) {
    let n = m.len();
    let (v, grad, p) = (&mut v[..n], &grad[..n], &p[..n]);
    for i in 0..n {
        let g = if L2 {
            grad[i] + affine(p[i], s.decay, 0.0)
        } else {
            grad[i]
        };
        m[i] = affine(m[i], s.beta1, 0.0) + affine(g, s.one_minus_beta1, 0.0);
        v[i] = affine(v[i], s.beta2, 0.0) + affine(g * g, s.one_minus_beta2, 0.0);
    }
}

/// One chunk of the parameter pass; `DECAY` applies AdamW's decoupled decay.
#[inline(always)]
fn parameters<const DECAY: bool>(s: &Scalars, p: &mut [f32], m: &[f32], v: &[f32]) {
    let n = p.len();
    let (m, v) = (&m[..n], &v[..n]);
    for i in 0..n {
        let kept = if DECAY { affine(p[i], s.decay, 0.0) } else { p[i] };
        let denom = affine(affine(v[i].sqrt(), s.inv_sqrt_bc2, 0.0), 1.0, s.eps);
        p[i] = kept - affine(m[i] / denom, s.step_size, 0.0);
    }
}
