//! CPU kernels with a hand-written backward pass for the training hot spots: GELU variants,
//! softmax over the last dimension, layer norm and the cross-entropy of the LM head.
//!
//! candle differentiates these through their elementwise definitions (a GELU backward is a
//! dozen tensor ops with two `powf`s), which made the backward pass three times the forward on
//! the small models trained on the CPU. The layers call these only when a gradient is tracked
//! on a CPU f32/f64 tensor; inference and other devices keep candle's own kernels.
//! `native/tests/grad_check.rs` checks every backward here against finite differences in f64.

use candle_core::{DType, Result, Shape, Tensor};

use kernel::{map_rows, nth_row, Arg, Kernel, Op, Real};

/// Whether `x` should take the fused path: a tracked f32/f64 tensor on the CPU.
pub fn applies(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

mod cross_entropy;
mod kernel;
mod layer_norm;
pub use cross_entropy::nll_rows;
pub use layer_norm::layer_norm;
pub(crate) use layer_norm::layer_norm_dx;

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
        x.contiguous()?.apply_op1(Op(self))
    }
}

impl Kernel<1> for Act {
    const NAME: &'static str = "fused-activation";

    fn fwd<T: Real>(&self, [x]: [Arg; 1]) -> Result<(Vec<T>, Shape)> {
        let out = x.slice::<T>()?.iter().map(|&v| self.value(v)).collect();
        Ok((out, x.shape().clone()))
    }

    fn bwd(&self, [arg]: [&Tensor; 1], _res: &Tensor, grad: &Tensor) -> Result<[Option<Tensor>; 1]> {
        Ok([Some(self.grad(arg, grad)?)])
    }
}

impl Act {
    /// `grad * act'(x)`: the input's gradient from the output's (no graph recorded).
    pub(crate) fn grad(self, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
        x.contiguous()?
            .apply_op2_no_bwd(&grad.contiguous()?, &Op(ActGrad(self)))
    }
}

/// `grad * act'(x)`.
struct ActGrad(Act);

impl Kernel<2> for ActGrad {
    const NAME: &'static str = "fused-activation-grad";

    fn fwd<T: Real>(&self, [x, g]: [Arg; 2]) -> Result<(Vec<T>, Shape)> {
        let g = g.slice::<T>()?;
        let out = x
            .slice::<T>()?
            .iter()
            .zip(g)
            .map(|(&x, &g)| g * self.0.slope(x))
            .collect();
        Ok((out, x.shape().clone()))
    }
}

/// Softmax over the last dimension with a fused backward.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Op(Softmax))
}

struct Softmax;

impl Kernel<1> for Softmax {
    const NAME: &'static str = "fused-softmax";

    fn fwd<T: Real>(&self, [x]: [Arg; 1]) -> Result<(Vec<T>, Shape)> {
        let n = x.last_dim()?;
        let out = map_rows(x.slice::<T>()?, n, n, |_, row, out| {
            let max = row.iter().fold(row[0], |m, &v| m.max(v));
            let start = out.len();
            let mut sum = T::c(0.0);
            for &v in row {
                let e = (v - max).exp();
                sum += e;
                out.push(e);
            }
            out[start..].iter_mut().for_each(|e| *e /= sum);
            Ok(())
        })?;
        Ok((out, x.shape().clone()))
    }

    fn bwd(&self, _args: [&Tensor; 1], res: &Tensor, grad: &Tensor) -> Result<[Option<Tensor>; 1]> {
        Ok([Some(softmax_grad(res, grad)?)])
    }
}

/// The softmax input's gradient from its output `y` and the output's gradient (no graph
/// recorded).
pub(crate) fn softmax_grad(y: &Tensor, grad: &Tensor) -> Result<Tensor> {
    y.contiguous()?
        .apply_op2_no_bwd(&grad.contiguous()?, &Op(SoftmaxGrad))
}

/// `y * (g - sum(g * y))` per row.
struct SoftmaxGrad;

impl Kernel<2> for SoftmaxGrad {
    const NAME: &'static str = "fused-softmax-grad";

    fn fwd<T: Real>(&self, [y, g]: [Arg; 2]) -> Result<(Vec<T>, Shape)> {
        let n = y.last_dim()?;
        let g = g.slice::<T>()?;
        let out = map_rows(y.slice::<T>()?, n, n, |i, y, out| {
            let g = nth_row(g, i, n);
            let dot = y.iter().zip(g).fold(T::c(0.0), |acc, (&y, &g)| acc + y * g);
            out.extend(y.iter().zip(g).map(|(&y, &g)| y * (g - dot)));
            Ok(())
        })?;
        Ok((out, y.shape().clone()))
    }
}
