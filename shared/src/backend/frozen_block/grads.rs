//! The backward pieces of a frozen block's norms, activation and softmax: the fused CPU kernels
//! (`crate::fused`) where they apply, the same formulas as tensor ops elsewhere (CUDA).

use candle_core::{Result, Tensor, D};

use crate::fused::{self, Act};
use crate::nn::Activation;

/// The fused kernel standing for `act`, whose derivative both paths below know.
pub(super) fn has_derivative(act: Activation) -> Option<Act> {
    match act {
        Activation::Gelu => Some(Act::GeluErf),
        Activation::GeluNew => Some(Act::GeluNew),
        Activation::QuickGelu => Some(Act::QuickGelu),
        _ => None,
    }
}

/// `grad * act'(x)`.
pub(super) fn activation(act: Activation, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
    let Some(kernel) = has_derivative(act) else {
        candle_core::bail!("frozen block: no derivative for {act:?}");
    };
    if fused::applies(x) {
        return kernel.grad(x, grad);
    }
    composed::activation(kernel, x, grad)
}

/// The softmax input's gradient from its output `y` and the output's gradient.
pub(super) fn softmax(y: &Tensor, grad: &Tensor) -> Result<Tensor> {
    if fused::applies(y) {
        return fused::softmax_grad(y, grad);
    }
    composed::softmax(y, grad)
}

/// The layer norm input's gradient (scale `weight`) from the output's.
pub(super) fn layer_norm(x: &Tensor, weight: &Tensor, grad: &Tensor, eps: f64) -> Result<Tensor> {
    if fused::applies(x) {
        return fused::layer_norm_dx(x, weight, grad, eps);
    }
    composed::layer_norm(x, weight, grad, eps)
}

/// The same derivatives as whole-tensor ops (any device).
mod composed {
    use super::*;

    const SQRT_TWO_OVER_PI: f64 = 0.797_884_560_802_865_4;
    const INV_SQRT_TWO_PI: f64 = 0.398_942_280_401_432_7;

    /// `grad * act'(x)`.
    pub(super) fn activation(act: Act, x: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let slope = match act {
            Act::GeluNew => {
                // 0.5 (1 + t) + 0.5 x (1 - t²) c (1 + 3·0.044715 x²), t = tanh(c (x + 0.044715 x³))
                let x2 = x.sqr()?;
                let t = ((x * &x2)?.affine(0.044715, 0.0)? + x)?
                    .affine(SQRT_TWO_OVER_PI, 0.0)?
                    .tanh()?;
                let d_inner = x2.affine(SQRT_TWO_OVER_PI * 3.0 * 0.044715, SQRT_TWO_OVER_PI)?;
                let outer = (x * t.sqr()?.affine(-1.0, 1.0)?)?.affine(0.5, 0.0)?;
                (t.affine(0.5, 0.5)? + (outer * d_inner)?)?
            }
            Act::GeluErf => {
                // Φ(x) + x φ(x)
                let cdf = x
                    .affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)?
                    .erf()?
                    .affine(0.5, 0.5)?;
                let pdf = x.sqr()?.affine(-0.5, 0.0)?.exp()?.affine(INV_SQRT_TWO_PI, 0.0)?;
                (cdf + (x * pdf)?)?
            }
            Act::QuickGelu => {
                // s + 1.702 x s (1 - s), s = sigmoid(1.702 x)
                let s = candle_nn::ops::sigmoid(&x.affine(1.702, 0.0)?)?;
                let ds = (&s * s.affine(-1.0, 1.0)?)?;
                (&s + (x * ds)?.affine(1.702, 0.0)?)?
            }
        };
        grad * slope
    }

    /// `y (g - Σ g y)` per row.
    pub(super) fn softmax(y: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let dot = (grad * y)?.sum_keepdim(D::Minus1)?;
        y * grad.broadcast_sub(&dot)?
    }

    /// `rstd (g w - mean(g w) - x̂ mean(g w x̂))` per row.
    pub(super) fn layer_norm(x: &Tensor, weight: &Tensor, grad: &Tensor, eps: f64) -> Result<Tensor> {
        let centered = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let rstd = (centered.sqr()?.mean_keepdim(D::Minus1)? + eps)?
            .sqrt()?
            .recip()?;
        let x_hat = centered.broadcast_mul(&rstd)?;
        let gw = grad.broadcast_mul(weight)?;
        let mean_gw = gw.mean_keepdim(D::Minus1)?;
        let mean_gwx = (&gw * &x_hat)?.mean_keepdim(D::Minus1)?;
        gw.broadcast_sub(&mean_gw)?
            .sub(&x_hat.broadcast_mul(&mean_gwx)?)?
            .broadcast_mul(&rstd)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::compare::{compare, max_abs};

    /// A deterministic f64 tensor of `dims` with values spread over about [-3, 3].
    fn wave(dims: &[usize], phase: f64) -> Tensor {
        let n: usize = dims.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|i| 3.0 * (i as f64 * 0.7 + phase).sin() * (i as f64 * 0.13).cos())
            .collect();
        Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
    }

    /// Relative difference of the composed formula's result from the fused kernel's.
    fn relative(plain: &Tensor, fused: &Tensor) -> f64 {
        assert!(max_abs(fused).unwrap() > 0.1, "a vacuous comparison");
        compare(plain, fused).unwrap().relative()
    }

    /// The composed formulas (what a CUDA device runs) agree with the fused CPU kernels.
    #[test]
    fn composed_derivatives_match_the_fused_kernels() {
        let (x, g) = (wave(&[3, 5, 16], 0.3), wave(&[3, 5, 16], 1.1));
        for act in [Activation::GeluNew, Activation::Gelu, Activation::QuickGelu] {
            let kernel = has_derivative(act).unwrap();
            let fused = kernel.grad(&x, &g).unwrap();
            let plain = composed::activation(kernel, &x, &g).unwrap();
            assert!(relative(&plain, &fused) < 1e-12, "{act:?}");
        }
        let y = candle_nn::ops::softmax_last_dim(&x).unwrap();
        let (fused, plain) = (
            fused::softmax_grad(&y, &g).unwrap(),
            composed::softmax(&y, &g).unwrap(),
        );
        assert!(relative(&plain, &fused) < 1e-12, "softmax");
        let w = wave(&[16], 2.0);
        let fused = fused::layer_norm_dx(&x, &w, &g, 1e-5).unwrap();
        let plain = composed::layer_norm(&x, &w, &g, 1e-5).unwrap();
        assert!(relative(&plain, &fused) < 1e-12, "layer norm");
    }
}
