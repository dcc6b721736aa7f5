//! Products with a frozen weight: `x · W` whose backward pass computes the input's gradient
//! only.
//!
//! candle's matmul backward computes the gradient of both operands whatever they are, so every
//! frozen CLIP and GPT-2 weight (the tied 50257-row LM head among them) had its gradient
//! computed and thrown away: about a third of a training step's backward arithmetic. Here the
//! weight is held by the op instead of being one of its operands, so it never enters the
//! gradient graph, and the backward is the single product `dY · Wᵀ`. The forward is the very
//! storage-level GEMM `Tensor::matmul` runs, so values are bit-identical to the plain path.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

/// Whether products with a frozen weight take this path (on unless a benchmark turns it off).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the frozen-weight products on or off for the whole process: off restores candle's
/// plain product (both gradients), which `bench train --paths old,new` times side by side.
/// Off also runs frozen GPT-2 blocks through candle's autograd (see [`super::set_frozen_blocks`]).
pub fn set_frozen_products(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the frozen-weight products are switched on.
pub(super) fn frozen_products_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether `x · w` should be a frozen product: a tracked input, an untracked weight.
pub fn is_frozen_product(x: &Tensor, w: &Tensor) -> bool {
    x.track_op() && !w.track_op() && frozen_products_enabled()
}

/// `x · wt` for a 2-D `x` [m, k] and a frozen `wt` [k, n] (any strides `matmul` accepts).
pub fn frozen_matmul(x: &Tensor, wt: &Tensor) -> Result<Tensor> {
    x.apply_op1(FrozenProduct { wt: wt.clone() })
}

/// The op: the weight is captured, the input is the op's only argument.
struct FrozenProduct {
    wt: Tensor,
}

impl FrozenProduct {
    /// (batch, m, n, k) and the output shape for an input of layout `l`.
    fn dims(&self, l: &Layout) -> Result<((usize, usize, usize, usize), Shape)> {
        let (m, k) = l.shape().dims2()?;
        let (k2, n) = self.wt.dims2()?;
        if k != k2 {
            candle_core::bail!("frozen product: input [{m}, {k}] against weight [{k2}, {n}]");
        }
        Ok(((1, m, n, k), Shape::from((m, n))))
    }
}

impl CustomOp1 for FrozenProduct {
    fn name(&self) -> &'static str {
        "frozen-product"
    }

    fn cpu_fwd(&self, x: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (bmnk, shape) = self.dims(l)?;
        let (w, wl) = self.wt.storage_and_layout();
        match &*w {
            Storage::Cpu(w) => Ok((x.matmul(w, bmnk, l, wl)?, shape)),
            _ => candle_core::bail!("frozen product: the weight is not on the CPU"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (bmnk, shape) = self.dims(l)?;
        let (w, wl) = self.wt.storage_and_layout();
        match &*w {
            Storage::Cuda(w) => Ok((x.matmul(w, bmnk, l, wl)?, shape)),
            _ => candle_core::bail!("frozen product: the weight is not on the GPU"),
        }
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.wt.t()?)?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};

    use super::*;

    #[test]
    fn same_values_and_input_gradient_and_no_weight_gradient() {
        let dev = Device::Cpu;
        for dtype in [DType::F32, DType::F64] {
            let x = Var::from_tensor(
                &Tensor::randn(0f32, 1.0, (5, 7), &dev)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            // A transposed view, as the model holds its matrices (W^T of a [n, k] weight).
            let w = Tensor::randn(0f32, 1.0, (3, 7), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let wt = w.t().unwrap();
            let wave = Tensor::arange(0.0, 15.0, &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap()
                .reshape((5, 3))
                .unwrap();
            let run = |y: Tensor| {
                let loss = (y.sin().unwrap() * &wave).unwrap().sum_all().unwrap();
                (y, loss.backward().unwrap())
            };
            let (y_plain, g_plain) = run(x.matmul(&wt).unwrap());
            let (y_frozen, g_frozen) = run(frozen_matmul(&x, &wt).unwrap());
            let bits = |t: &Tensor| {
                t.to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            };
            assert_eq!(bits(&y_frozen), bits(&y_plain), "{dtype:?} forward");
            let (dx, dx_plain) = (
                g_frozen.get(x.as_tensor()).unwrap(),
                g_plain.get(x.as_tensor()).unwrap(),
            );
            assert_eq!(bits(dx), bits(dx_plain), "{dtype:?} input gradient");
            // candle's own product computes (and stores) the frozen weight's gradient too.
            assert!(g_plain.get(&wt).is_some());
            assert!(g_frozen.get(&wt).is_none() && g_frozen.get(&w).is_none());
        }
    }

    #[test]
    fn mismatched_shapes_are_refused() {
        let dev = Device::Cpu;
        let x = Var::zeros((2, 4), DType::F32, &dev).unwrap();
        let wt = Tensor::zeros((5, 3), DType::F32, &dev).unwrap();
        let err = frozen_matmul(&x, &wt).unwrap_err().to_string();
        assert!(err.contains("input [2, 4] against weight [5, 3]"), "{err}");
    }
}
