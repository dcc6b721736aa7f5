//! The fused CPU kernels (used when training) against candle's composed operations: the same
//! values forward, and gradients that agree with candle's autodiff through the composed form.

use candle_core::{DType, Device, Tensor, Var, D};
use caption_model::fused::{self, Act};

/// Inputs spanning GELU's curved region and its tails.
fn input(dtype: DType) -> Var {
    let v: Vec<f64> = (0..6 * 40)
        .map(|i| ((i * 37 % 240) as f64 - 120.0) / 23.0)
        .collect();
    Var::from_tensor(
        &Tensor::from_vec(v, (6, 40), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap(),
    )
    .unwrap()
}

/// Gradient of `sum(f(x) * w)` with respect to `x`, for a fixed weighting `w` with as many
/// elements as `f(x)`.
fn grad_of(x: &Var, w: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> (Tensor, Tensor) {
    let y = f(x.as_tensor());
    let w = w.reshape(y.shape()).unwrap().to_dtype(x.dtype()).unwrap();
    let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    (y, grads.get(x.as_tensor()).unwrap().clone())
}

/// A weighting for outputs shaped like the input: a slow wave through both signs.
fn wave() -> Tensor {
    Tensor::arange(0.0, 240.0, &Device::Cpu)
        .unwrap()
        .affine(0.01, -1.0)
        .unwrap()
        .sin()
        .unwrap()
}

/// Max |a - b|, panicking on a NaN or an infinity in either (see `caption_model::compare`).
fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    caption_model::compare::max_abs_diff(a, b).unwrap_or_else(|e| panic!("{e}"))
}

/// candle's composed form of an activation.
type Composed = fn(&Tensor) -> Tensor;

#[test]
fn activations_match_candle_forward_and_backward() {
    let composed: [(Act, Composed); 3] = [
        (Act::GeluNew, |x| x.gelu().unwrap()),
        (Act::GeluErf, |x| x.gelu_erf().unwrap()),
        (Act::QuickGelu, |x| {
            (x * candle_nn::ops::sigmoid(&(x * 1.702).unwrap()).unwrap()).unwrap()
        }),
    ];
    for (act, reference) in composed {
        for dtype in [DType::F32, DType::F64] {
            let x = input(dtype);
            let (y, g) = grad_of(&x, &wave(), |t| act.apply(t).unwrap());
            let (y_ref, g_ref) = grad_of(&x, &wave(), reference);
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            assert!(max_abs_diff(&y, &y_ref) <= tol, "{act:?} {dtype:?} forward");
            // candle's GELU backwards round their constants to 6 digits; the fused ones are
            // exact (native/tests/grad_check.rs checks them against finite differences).
            let gtol = match (act, dtype) {
                (Act::QuickGelu, _) => tol,
                (_, DType::F32) => 2e-5,
                _ => 1e-6,
            };
            let d = max_abs_diff(&g, &g_ref);
            assert!(d <= gtol, "{act:?} {dtype:?} backward differs by {d}");
            assert!(
                g.abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
                    > 0.1
            );
        }
    }
}

#[test]
fn softmax_matches_candle_forward_and_backward() {
    for dtype in [DType::F32, DType::F64] {
        let x = input(dtype);
        let (y, g) = grad_of(&x, &wave(), |t| fused::softmax_last(t).unwrap());
        let (y_ref, g_ref) = grad_of(&x, &wave(), |t| candle_nn::ops::softmax(t, D::Minus1).unwrap());
        let tol = if dtype == DType::F32 { 1e-6 } else { 1e-14 };
        assert!(max_abs_diff(&y, &y_ref) <= tol, "{dtype:?} forward");
        assert!(max_abs_diff(&g, &g_ref) <= tol, "{dtype:?} backward");
    }
}

#[test]
fn layer_norm_matches_the_composed_form_for_input_weight_and_bias() {
    for dtype in [DType::F32, DType::F64] {
        let x = input(dtype);
        let dev = Device::Cpu;
        let weight = Var::from_tensor(
            &Tensor::arange(0.0, 40.0, &dev)
                .unwrap()
                .affine(0.05, 0.3)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let bias = Var::from_tensor(
            &Tensor::arange(0.0, 40.0, &dev)
                .unwrap()
                .affine(-0.02, 0.1)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let composed = |t: &Tensor| {
            let mean = t.mean_keepdim(D::Minus1).unwrap();
            let c = t.broadcast_sub(&mean).unwrap();
            let var = c.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
            let n = c.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap()).unwrap();
            n.broadcast_mul(weight.as_tensor())
                .unwrap()
                .broadcast_add(bias.as_tensor())
                .unwrap()
        };
        let fused_ln = |t: &Tensor| fused::layer_norm(t, weight.as_tensor(), bias.as_tensor(), 1e-5).unwrap();
        let run = |f: &dyn Fn(&Tensor) -> Tensor| {
            let y = f(x.as_tensor());
            let w = y.ones_like().unwrap().cumsum(1).unwrap().sin().unwrap();
            let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let g = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
            (y, g(&x), g(&weight), g(&bias))
        };
        let (a, b) = (run(&fused_ln), run(&composed));
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        for (name, p, q) in [
            ("y", &a.0, &b.0),
            ("dx", &a.1, &b.1),
            ("dw", &a.2, &b.2),
            ("db", &a.3, &b.3),
        ] {
            let d = max_abs_diff(p, q);
            assert!(d <= tol, "{dtype:?} {name} differs by {d}");
        }
    }
}

#[test]
fn nll_rows_match_log_softmax_and_gather() {
    for dtype in [DType::F32, DType::F64] {
        let x = input(dtype);
        let targets = Tensor::new(&[3u32, 0, 39, 17, 8, 21], &Device::Cpu).unwrap();
        let w = Tensor::new(&[0.5f64, -1.0, 2.0, 0.0, 1.5, -0.25], &Device::Cpu).unwrap();
        let (y, g) = grad_of(&x, &w, |t| fused::nll_rows(t, &targets).unwrap());
        let (y_ref, g_ref) = grad_of(&x, &w, |t| {
            let logp = candle_nn::ops::log_softmax(t, D::Minus1).unwrap();
            logp.gather(&targets.unsqueeze(1).unwrap(), 1)
                .unwrap()
                .squeeze(1)
                .unwrap()
                .neg()
                .unwrap()
        });
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        assert!(max_abs_diff(&y, &y_ref) <= tol, "{dtype:?} forward");
        assert!(max_abs_diff(&g, &g_ref) <= tol, "{dtype:?} backward");
    }
    let x = input(DType::F32);
    let outside = Tensor::new(&[3u32, 0, 40, 17, 8, 21], &Device::Cpu).unwrap();
    let err = fused::nll_rows(x.as_tensor(), &outside).unwrap_err().to_string();
    assert!(
        err.contains("target id 40 is outside the 40-word vocabulary"),
        "{err}"
    );
}
