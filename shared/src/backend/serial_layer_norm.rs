//! Layer norm of a few rows for inference on the CPU, on the calling thread. candle-nn's kernel
//! hands even a single row to rayon, whose workers fall asleep between a decoding step's ~50
//! norms: every norm then waited for a worker to wake and for itself to be woken again (two
//! context switches, each far longer than the norm). The arithmetic is candle-nn's, in the
//! same order, so the values are the same to the bit.

use candle_core::{DType, Result, Tensor, D};

use super::candle::with_f32_slice;

/// Values (rows × width) up to which the norm runs here; larger inputs (a batch of images'
/// CLIP tokens) keep candle-nn's kernel, which splits the rows over the threads.
const MAX_SERIAL_VALUES: usize = 64 * 1024;

/// Whether `x` (no gradient, f32 on the CPU, small) is normalised here with the f32 `weight`
/// and `bias`.
pub(crate) fn applies(x: &Tensor, weight: &Tensor, bias: &Tensor) -> bool {
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && !t.track_op();
    f32_cpu(x)
        && f32_cpu(weight)
        && f32_cpu(bias)
        && x.elem_count() <= MAX_SERIAL_VALUES
        && x.dims()
            .last()
            .is_some_and(|&d| d > 0 && weight.elem_count() == d && bias.elem_count() == d)
}

/// `(x - mean) / sqrt(var + eps) * weight + bias` over the last dimension of `x` (see
/// [`applies`] for when it may be called).
pub(crate) fn forward(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    let width = x.dim(D::Minus1)?;
    let y = with_f32_slice(x, |xs| {
        with_f32_slice(weight, |w| {
            with_f32_slice(bias, |b| Ok(normalise(xs, w, b, width, eps)))
        })
    })?;
    Tensor::from_vec(y, x.shape(), x.device())
}

/// Each row of `width` values of `x` normalised: the mean and variance from running f32 sums of
/// the values and their squares, as candle-nn computes them.
fn normalise(x: &[f32], weight: &[f32], bias: &[f32], width: usize, eps: f32) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for (src, dst) in x.chunks_exact(width).zip(y.chunks_exact_mut(width)) {
        let (mut sum, mut sum2) = (0f32, 0f32);
        for &v in src {
            sum += v;
            sum2 += v * v;
        }
        let mean = sum / width as f32;
        let var = sum2 / width as f32 - mean * mean;
        let inv_std = (var + eps).sqrt().recip();
        for ((d, &s), (&w, &b)) in dst.iter_mut().zip(src).zip(weight.iter().zip(bias)) {
            *d = (s - mean) * inv_std * w + b;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::{Rng, SeedableRng};

    fn random(shape: &[usize], seed: u64, scale: f32, shift: f32) -> Tensor {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale) + shift).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// One row, a step's rows and an image's tokens, widths of GPT-2, of the resampler and a
    /// ragged one, inputs far from zero mean: the same bits as candle-nn's kernel.
    #[test]
    fn gives_candle_nn_bits() {
        for (i, shape) in [[1, 1, 768], [1, 5, 768], [1, 50, 768], [1, 3, 37], [4, 1, 1]]
            .iter()
            .enumerate()
        {
            let width = shape[2];
            let x = random(shape, i as u64, 3.0, 10.0 * i as f32);
            let (w, b) = (
                random(&[width], 100 + i as u64, 1.0, 1.0),
                random(&[width], 200 + i as u64, 1.0, 0.0),
            );
            assert!(applies(&x, &w, &b));
            let want: Vec<f32> = candle_nn::ops::layer_norm(&x, &w, &b, 1e-5)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let got = forward(&x, &w, &b, 1e-5).unwrap();
            assert_eq!(got.dims(), shape);
            let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "shape {shape:?}");
        }
    }

    #[test]
    fn refuses_what_it_does_not_compute() {
        let (w, b) = (random(&[8], 1, 1.0, 0.0), random(&[8], 2, 1.0, 0.0));
        assert!(
            !applies(&random(&[2, 4], 3, 1.0, 0.0), &w, &b),
            "width differs from the weight"
        );
        assert!(
            !applies(&random(&[9000, 8], 3, 1.0, 0.0), &w, &b),
            "too large to run serially"
        );
        let tracked = candle_core::Var::from_tensor(&random(&[2, 8], 3, 1.0, 0.0)).unwrap();
        assert!(!applies(tracked.as_tensor(), &w, &b));
        let half = random(&[2, 8], 3, 1.0, 0.0).to_dtype(DType::F16).unwrap();
        assert!(!applies(&half, &w, &b));
    }
}
