//! GELU (tanh and erf forms) and QuickGELU for inference on the CPU, written so that the
//! compiler vectorises them: a polynomial exp (Cephes' expf) instead of libm's scalar
//! `tanhf`/`erff`/`expf` calls, which took about a tenth of a quantized decoding step. Within
//! 1e-6 (relative, plus 1e-6 absolute) of the exact functions; training keeps candle's ops.

use candle_core::{DType, Device, Result, Tensor};

use super::candle::with_f32_slice;
use super::column_split;
use crate::fast_exp::exp;
use crate::nn::Activation;

/// Rough cost of one activation in multiply-adds, for the decision to split over threads.
const COST: usize = 16;

/// erf(z) by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7).
#[inline(always)]
fn erf(z: f32) -> f32 {
    let a = z.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly =
        t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    (1.0 - poly * exp(-a * a)).copysign(z)
}

/// GPT-2's "gelu_new": 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))), as x · sigmoid(2u).
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    let u = C * (x + 0.044_715 * x * x * x);
    x / (1.0 + exp(-2.0 * u))
}

/// The exact GELU: 0.5 x (1 + erf(x / √2)).
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// CLIP's QuickGELU: x · sigmoid(1.702 x).
#[inline(always)]
fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + exp(-1.702 * x))
}

/// `f` over a slice into `y`, in a loop the compiler vectorises (`f` inlined into it).
fn map(x: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32) {
    for (y, &v) in y.iter_mut().zip(x) {
        *y = f(v);
    }
}

/// `act` over `x` when it is an f32 CPU tensor without a gradient and this module has the
/// function; None otherwise (the caller uses candle's ops).
pub(crate) fn apply(x: &Tensor, act: Activation) -> Result<Option<Tensor>> {
    let ours = matches!(
        act,
        Activation::GeluNew | Activation::Gelu | Activation::QuickGelu
    );
    if !ours || !x.device().is_cpu() || x.dtype() != DType::F32 || x.track_op() {
        return Ok(None);
    }
    let out = with_f32_slice(x, |values| {
        // Large inputs (the image encode's) are split over the threads, as candle's ops are.
        let threads = column_split::thread_count(values.len() * COST);
        column_split::product_columns(1, values.len(), threads, |range, y| {
            let part = &values[range];
            // One monomorphised loop per function, so each inlines.
            match act {
                Activation::GeluNew => map(part, y, gelu_tanh),
                Activation::Gelu => map(part, y, gelu_erf),
                _ => map(part, y, quick_gelu),
            }
            Ok(())
        })
    })?;
    Tensor::from_vec(out, x.shape(), &Device::Cpu).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the exact functions in f64 over [-12, 12] (and beyond, where they saturate).
    #[test]
    fn within_a_millionth_of_the_exact_functions() {
        type Exact = Box<dyn Fn(f64) -> f64>;
        let cases: [(Activation, Exact); 3] = [
            (
                Activation::GeluNew,
                Box::new(|x: f64| {
                    let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3));
                    0.5 * x * (1.0 + u.tanh())
                }),
            ),
            (
                Activation::Gelu,
                Box::new(|x: f64| 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt()))),
            ),
            (
                Activation::QuickGelu,
                Box::new(|x: f64| x / (1.0 + (-1.702 * x).exp())),
            ),
        ];
        let xs: Vec<f32> = (-24_000..=24_000)
            .map(|i| i as f32 * 5e-4)
            .chain([-100.0, -30.0, 30.0, 100.0, 0.0])
            .collect();
        let t = Tensor::from_slice(&xs, xs.len(), &Device::Cpu).unwrap();
        for (act, exact) in &cases {
            let got = apply(&t, *act).unwrap().unwrap().to_vec1::<f32>().unwrap();
            for (&x, &g) in xs.iter().zip(&got) {
                let want = exact(f64::from(x));
                let err = (f64::from(g) - want).abs();
                assert!(
                    err <= 1e-6 * (1.0 + want.abs()),
                    "{act:?}({x}) = {g}, exact {want}"
                );
            }
        }
    }

    #[test]
    fn other_activations_and_tracked_inputs_keep_candles_ops() {
        let t = Tensor::ones(4, DType::F32, &Device::Cpu).unwrap();
        assert!(apply(&t, Activation::Relu).unwrap().is_none());
        let v = candle_core::Var::ones(4, DType::F32, &Device::Cpu).unwrap();
        assert!(apply(v.as_tensor(), Activation::GeluNew).unwrap().is_none());
        assert!(apply(&t.to_dtype(DType::F64).unwrap(), Activation::GeluNew)
            .unwrap()
            .is_none());
    }
}
