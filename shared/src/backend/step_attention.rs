//! `softmax(q kᵀ + bias) v` on the CPU for a decoding step (a few queries per head, nothing to
//! differentiate), computed straight on the tensors' memory. Through candle it was two batched
//! matmuls and a softmax per layer, each handed to a rayon worker and back (a thread handoff
//! apiece, ~30 a token), for a few thousand multiply-adds.

use candle_core::{DType, Device, Result, Tensor};

use super::candle::with_f32_slice as with_slice;

/// Most query positions per head taken here (a decoding step has 1; prefill and the image
/// encode keep candle's batched matmuls).
const MAX_QUERIES: usize = 8;

/// Whether [`attention`] takes these operands: f32 on the CPU, no gradient, few queries.
pub(crate) fn applies(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> bool {
    let all = [Some(q), Some(k), Some(v), bias];
    let ok = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && !t.track_op();
    q.rank() == 4 && q.dim(2).is_ok_and(|s| s <= MAX_QUERIES) && all.iter().flatten().all(|t| ok(t))
}

/// `a · b` in 8 lanes summed at the end (independent add chains, so it vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `softmax(q kᵀ + bias) v` per head: `q` [B, H, Sq, Dh] (already scaled), `k`, `v`
/// [B, H, Sk, Dh], `bias` broadcastable to [B, H, Sq, Sk] → [B, H, Sq, Dh].
pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (b, h, sq, dh) = q.dims4()?;
    let sk = k.dim(2)?;
    if k.dims4()? != (b, h, sk, dh) || v.dims4()? != (b, h, sk, dh) {
        candle_core::bail!(
            "attention of q {:?} over k {:?}, v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let bias = bias.map(|t| t.broadcast_as((b, h, sq, sk))).transpose()?;
    let mut out = vec![0f32; b * h * sq * dh];
    let mut scores = vec![0f32; sk];
    with_slice(q, |q| {
        with_slice(k, |k| {
            with_slice(v, |v| {
                let mut run = |bias: Option<&[f32]>| {
                    for (i, query) in q.chunks_exact(dh).enumerate() {
                        // Query i of head (row, head) = i / sq.
                        let head = i / sq;
                        let keys = &k[head * sk * dh..(head + 1) * sk * dh];
                        let values = &v[head * sk * dh..(head + 1) * sk * dh];
                        for (s, key) in scores.iter_mut().zip(keys.chunks_exact(dh)) {
                            *s = dot(query, key);
                        }
                        if let Some(bias) = bias {
                            for (s, &a) in scores.iter_mut().zip(&bias[i * sk..(i + 1) * sk]) {
                                *s += a;
                            }
                        }
                        softmax_in_place(&mut scores);
                        let o = &mut out[i * dh..(i + 1) * dh];
                        for (&p, value) in scores.iter().zip(values.chunks_exact(dh)) {
                            for (o, &x) in o.iter_mut().zip(value) {
                                *o += p * x;
                            }
                        }
                    }
                    Ok(())
                };
                match &bias {
                    Some(t) => with_slice(t, |bias| run(Some(bias))),
                    None => run(None),
                }
            })
        })
    })?;
    Tensor::from_vec(out, (b, h, sq, dh), &Device::Cpu)
}

/// Softmax of `s` in place: max subtracted, exponentials over their sum.
fn softmax_in_place(s: &mut [f32]) {
    let max = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0f32;
    for x in s.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in s.iter_mut() {
        *x /= sum;
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    /// Against candle's ops (matmul, bias, softmax, matmul) on random operands: one query per
    /// head with a key mask, and several queries with a bias broadcast over heads.
    #[test]
    fn equals_candles_ops_within_float_noise() {
        let dev = Device::Cpu;
        for (b, h, sq, sk, dh) in [(1, 12, 1, 37, 64), (5, 3, 4, 9, 20), (2, 2, 8, 64, 13)] {
            let q = Tensor::randn(0f32, 1.0, (b, h, sq, dh), &dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, (b, h, sk, dh), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (b, h, sk, dh), &dev).unwrap();
            // Row r hides its last r keys; every head shares the mask.
            let mask: Vec<f32> = (0..b * sq * sk)
                .map(|i| if i % sk >= sk - (i / (sq * sk)) { -1e9 } else { 0.0 })
                .collect();
            let bias = Tensor::from_vec(mask, (b, 1, sq, sk), &dev).unwrap();
            for bias in [None, Some(&bias)] {
                assert!(super::applies(&q, &k, &v, bias));
                let got = super::attention(&q, &k, &v, bias).unwrap();
                let mut scores = q.matmul(&k.t().unwrap()).unwrap();
                if let Some(bias) = bias {
                    scores = scores.broadcast_add(bias).unwrap();
                }
                let want = candle_nn::ops::softmax_last_dim(&scores)
                    .unwrap()
                    .matmul(&v)
                    .unwrap();
                assert_eq!(got.dims(), want.dims());
                let diff = (got - &want).unwrap().abs().unwrap().flatten_all().unwrap();
                let max = diff.max(0).unwrap().to_scalar::<f32>().unwrap();
                assert!(max < 1e-5, "[{b}, {h}, {sq}, {sk}, {dh}]: max difference {max}");
            }
        }
    }

    #[test]
    fn many_queries_or_a_gradient_keep_candles_path() {
        let dev = Device::Cpu;
        let k = Tensor::zeros((1, 2, 5, 8), candle_core::DType::F32, &dev).unwrap();
        let q = Tensor::zeros((1, 2, 9, 8), candle_core::DType::F32, &dev).unwrap();
        assert!(!super::applies(&q, &k, &k, None));
        let q = candle_core::Var::zeros((1, 2, 1, 8), candle_core::DType::F32, &dev).unwrap();
        assert!(!super::applies(q.as_tensor(), &k, &k, None));
    }
}
