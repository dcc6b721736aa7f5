//! CPU kernels with a hand-written backward pass for the training hot spots: GELU variants,
//! softmax over the last dimension, layer norm and the cross-entropy of the LM head.
//!
//! candle differentiates these through their elementwise definitions (a GELU backward is a
//! dozen tensor ops with two `powf`s), which made the backward pass three times the forward on
//! the small models trained on the CPU. The layers call these only when a gradient is tracked
//! on a CPU f32/f64 tensor; inference and other devices keep candle's own kernels.
//! `native/tests/grad_check.rs` checks every backward here against finite differences in f64.

use std::ops::{Add, Div, Mul, Neg, Sub};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};

/// Whether `x` should take the fused path: a tracked f32/f64 tensor on the CPU.
pub fn applies(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// The float types the kernels run on.
trait Real:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self> + Neg<Output = Self>
{
    fn c(v: f64) -> Self;
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn erf(self) -> Self;
    fn sqrt(self) -> Self;
    fn ln(self) -> Self;
}

impl Real for f32 {
    fn c(v: f64) -> Self {
        v as f32
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn erf(self) -> Self {
        candle_core::cpu::erf::erf_f32(self)
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
}

impl Real for f64 {
    fn c(v: f64) -> Self {
        v
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn erf(self) -> Self {
        candle_core::cpu::erf::erf_f64(self)
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
}

/// The contiguous elements of a storage under its layout.
fn slice<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused kernels take contiguous tensors".into()))?;
    Ok(&s.as_slice::<T>()?[start..end])
}

/// Runs `f32_fn` or `f64_fn` on the storage's element type.
macro_rules! by_dtype {
    ($s:expr, $name:expr, |$t:ident| $body:expr) => {
        match $s {
            CpuStorage::F32(_) => {
                type $t = f32;
                CpuStorage::F32($body)
            }
            CpuStorage::F64(_) => {
                type $t = f64;
                CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: f32 or f64 only", $name),
        }
    };
}

mod cross_entropy;
mod layer_norm;
pub use cross_entropy::nll_rows;
pub use layer_norm::layer_norm;

/// A GELU-like activation with a fused backward pass.
#[derive(Debug, Clone, Copy)]
pub enum Act {
    /// Tanh-approximated GELU.
    GeluNew,
    /// Exact (erf) GELU.
    GeluErf,
    /// `x * sigmoid(1.702 x)`.
    QuickGelu,
}

const SQRT_TWO_OVER_PI: f64 = 0.797_884_560_802_865_4;

impl Act {
    fn value<T: Real>(self, x: T) -> T {
        let half = T::c(0.5);
        match self {
            Act::GeluNew => {
                half * x
                    * (T::c(1.0) + (T::c(SQRT_TWO_OVER_PI) * x * (T::c(1.0) + T::c(0.044715) * x * x)).tanh())
            }
            Act::GeluErf => (((x * T::c(std::f64::consts::FRAC_1_SQRT_2)).erf()) + T::c(1.0)) * half * x,
            Act::QuickGelu => x * (T::c(1.0) / ((-(x * T::c(1.702))).exp() + T::c(1.0))),
        }
    }

    fn slope<T: Real>(self, x: T) -> T {
        let (one, half) = (T::c(1.0), T::c(0.5));
        match self {
            Act::GeluNew => {
                let inner = T::c(SQRT_TWO_OVER_PI) * (x + T::c(0.044715) * x * x * x);
                let t = inner.tanh();
                let d_inner = T::c(SQRT_TWO_OVER_PI) * (one + T::c(3.0 * 0.044715) * x * x);
                half * (one + t) + half * x * (one - t * t) * d_inner
            }
            Act::GeluErf => {
                let cdf = half * (one + (x * T::c(std::f64::consts::FRAC_1_SQRT_2)).erf());
                let pdf = (-(half * x * x)).exp() * T::c(0.398_942_280_401_432_7);
                cdf + x * pdf
            }
            Act::QuickGelu => {
                let s = one / ((-(x * T::c(1.702))).exp() + one);
                s + T::c(1.702) * x * s * (one - s)
            }
        }
    }

    /// The activation of `x`, differentiable through the fused backward.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1(ActOp(self))
    }
}

struct ActOp(Act);

impl CustomOp1 for ActOp {
    fn name(&self) -> &'static str {
        "fused-activation"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let act = self.0;
        let out = by_dtype!(s, self.name(), |T| slice::<T>(s, l)?
            .iter()
            .map(|&x| act.value(x))
            .collect());
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            arg.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &ActGrad(self.0))?,
        ))
    }
}

/// `grad * act'(x)`.
struct ActGrad(Act);

impl CustomOp2 for ActGrad {
    fn name(&self) -> &'static str {
        "fused-activation-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let act = self.0;
        let out = by_dtype!(xs, self.name(), |T| {
            let g = slice::<T>(gs, gl)?;
            slice::<T>(xs, xl)?
                .iter()
                .zip(g)
                .map(|(&x, &g)| g * act.slope(x))
                .collect()
        });
        Ok((out, xl.shape().clone()))
    }
}

/// The length of the last dimension of a layout.
fn last_dim(l: &Layout) -> Result<usize> {
    l.dims()
        .last()
        .copied()
        .filter(|&d| d > 0)
        .ok_or_else(|| candle_core::Error::Msg("empty last dimension".into()))
}

/// Softmax over the last dimension with a fused backward.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "fused-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = last_dim(l)?;
        let out = by_dtype!(s, self.name(), |T| {
            let mut out: Vec<T> = Vec::with_capacity(l.shape().elem_count());
            for row in slice::<T>(s, l)?.chunks(n) {
                let max = row.iter().fold(row[0], |m, &v| m.max(v));
                let start = out.len();
                let mut sum = T::c(0.0);
                for &v in row {
                    let e = (v - max).exp();
                    sum += e;
                    out.push(e);
                }
                out[start..].iter_mut().for_each(|e| *e /= sum);
            }
            out
        });
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(
            res.contiguous()?
                .apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?,
        ))
    }
}

/// `y * (g - sum(g * y))` per row.
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "fused-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let n = last_dim(yl)?;
        let out = by_dtype!(ys, self.name(), |T| {
            let g = slice::<T>(gs, gl)?;
            let mut out = Vec::with_capacity(g.len());
            for (y, g) in slice::<T>(ys, yl)?.chunks(n).zip(g.chunks(n)) {
                let dot = y.iter().zip(g).fold(T::c(0.0), |acc, (&y, &g)| acc + y * g);
                out.extend(y.iter().zip(g).map(|(&y, &g)| y * (g - dot)));
            }
            out
        });
        Ok((out, yl.shape().clone()))
    }
}
