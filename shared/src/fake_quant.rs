//! Quantization-aware training: inside [`scoped`], every dense matrix a linear layer multiplies
//! on the candle engine is replaced by its q8/q4 block round trip (exactly what an exported
//! folder will hold), with the straight-through estimator: the forward pass sees the quantized
//! weights, the gradient reaches the f32 weights as if nothing were rounded. The setting is
//! thread-local, like an autocast scope, so the layers need no extra state.

use std::cell::Cell;

use candle_core::{DType, Device, Result, Tensor};

use crate::weights::quant::{encode, qtensor_from_bytes, Layout};
use crate::weights::{Quant, Scheme};

thread_local! {
    static ACTIVE: Cell<Option<Quant>> = const { Cell::new(None) };
}

/// Runs `f` with linear layers fake-quantized to `quant` (None: as stored), restoring the
/// previous setting afterwards, also when `f` panics.
pub fn scoped<R>(quant: Option<Quant>, f: impl FnOnce() -> R) -> R {
    /// Puts the previous setting back when dropped.
    struct Restore(Option<Quant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ACTIVE.with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(ACTIVE.with(|a| a.replace(quant)));
    f()
}

/// The fake quantization in force on this thread.
pub fn active() -> Option<Quant> {
    ACTIVE.with(Cell::get)
}

/// `wt` = W^T [in, out], as a linear layer holds it, with W's rows quantized to `quant` in
/// blocks along `in` and decoded, the gradient passed straight through to `wt`. Unchanged where
/// an export keeps the matrix unquantized (f32/f16, or `in` not a multiple of 32).
pub fn apply(wt: &Tensor, quant: Quant) -> Result<Tensor> {
    let scheme = match quant {
        Quant::Q8 => Scheme::Q8_0,
        Quant::Q4 => Scheme::Q4_0,
        Quant::F32 | Quant::F16 => return Ok(wt.clone()),
    };
    let (inp, out) = wt.dims2()?;
    if !inp.is_multiple_of(32) {
        return Ok(wt.clone());
    }
    let w = wt.detach().t()?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
    let layout = Layout {
        scheme,
        transposed: false,
        matrix: vec![out, inp],
        shape: vec![out, inp],
    };
    let msg = |e: crate::Error| candle_core::Error::Msg(format!("fake quantization: {e}"));
    let bytes = encode(&w, &layout).map_err(msg)?;
    let blocks = qtensor_from_bytes(&bytes, scheme, out, inp, &Device::Cpu).map_err(msg)?;
    let rounded = blocks
        .dequantize(&Device::Cpu)?
        .t()?
        .to_device(wt.device())?
        .to_dtype(wt.dtype())?;
    wt + (rounded - wt)?.detach()
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;

    #[test]
    fn the_forward_sees_the_blocks_and_the_gradient_passes_straight_through() {
        let w: Vec<f32> = (0..64 * 3)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let w = Var::from_tensor(&Tensor::from_vec(w, (3, 64), &Device::Cpu).unwrap()).unwrap();
        let wt = w.as_tensor().t().unwrap();
        for quant in [Quant::Q8, Quant::Q4] {
            let fq = scoped(Some(quant), || {
                assert_eq!(active(), Some(quant));
                apply(&wt, quant).unwrap()
            });
            assert_eq!(active(), None);
            // The forward values are the export's blocks, decoded.
            let layout = crate::weights::quant::plan("m.weight", &[3, 64], quant);
            let bytes = encode(w.as_tensor(), &layout).unwrap();
            let want = qtensor_from_bytes(&bytes, layout.scheme, 3, 64, &Device::Cpu)
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap();
            let got = fq.t().unwrap();
            assert_eq!(got.to_vec2::<f32>().unwrap(), want.to_vec2::<f32>().unwrap());
            assert_ne!(
                got.to_vec2::<f32>().unwrap(),
                w.as_tensor().to_vec2::<f32>().unwrap()
            );
            // d(sum(fq * c))/dw = c: the rounding is invisible to the gradient.
            let c = Tensor::arange(0f32, 192.0, &Device::Cpu)
                .unwrap()
                .reshape((64, 3))
                .unwrap();
            let grads = (fq * &c).unwrap().sum_all().unwrap().backward().unwrap();
            let g = grads.get(w.as_tensor()).unwrap();
            assert_eq!(
                g.to_vec2::<f32>().unwrap(),
                c.t().unwrap().to_vec2::<f32>().unwrap()
            );
        }
        // Rows of 40 values are not blocks: the export keeps them dense, and so does this.
        let odd = Tensor::ones((40, 2), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(
            apply(&odd, Quant::Q4).unwrap().to_vec2::<f32>().unwrap(),
            odd.to_vec2::<f32>().unwrap()
        );
    }
}
