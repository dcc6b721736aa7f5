//! The fused ops of a decoding step (`Backend::norm_linear`, `linear_residual`,
//! `self_attention`, `cross_attention`): on the GPU each is one kernel, built from the plain
//! kernels' WGSL, so it must give the plain ops' bits (`backend::compose`, run on the GPU)
//! exactly, in every weight format, with the norm's rows held in workgroup memory or
//! normalised where read; and the candle engine's values within f32 tolerance.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use caption_model::backend::{compose, KvCache};
use caption_model::dropout::Dropout;
use caption_model::nn::{Activation, LayerNorm, Linear};

use super::*;

/// Asserts two GPU tensors hold the same bits.
fn assert_same_bits(got: &GpuTensor, want: &GpuTensor, what: &str) {
    assert_eq!(Backend::dims(got), Backend::dims(want), "{what}: shape");
    let (g, w) = (got.to_vec().unwrap(), want.to_vec().unwrap());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(a.is_finite(), "{what}: element {i} is {a}");
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{what}: element {i}: fused {a}, plain {b}"
        );
    }
}

/// A [dim] tensor on both engines.
fn vector(dim: usize, seed: u64, d: &GpuDevice) -> (Tensor, GpuTensor) {
    pair(&[dim], seed, d)
}

/// A layer norm with random scale and shift on both engines.
fn norm(dim: usize, seed: u64, d: &GpuDevice) -> (LayerNorm<Tensor>, LayerNorm<GpuTensor>) {
    let (cg, gg) = vector(dim, seed, d);
    let (cb, gb) = vector(dim, seed + 1, d);
    (
        LayerNorm::from_parts(cg, cb, 1e-5),
        LayerNorm::from_parts(gg, gb, 1e-5),
    )
}

/// A linear map [out, inp] on the GPU in `format` (f32, f16, q8_0, q4_0), optionally with a
/// bias, and the f32 map with the same values (the rounded ones) on the CPU.
fn linear(
    out: usize,
    inp: usize,
    format: &str,
    bias: bool,
    seed: u64,
    d: &GpuDevice,
) -> (Linear<Tensor>, Linear<GpuTensor>) {
    let w = dense_weight(out, inp, seed).0;
    let gpu_weight = match format {
        "f32" => Weight::Dense(w.t().unwrap()),
        "f16" => Weight::Dense(w.to_dtype(DType::F16).unwrap().t().unwrap()),
        q => {
            let dtype = if q == "q8_0" {
                GgmlDType::Q8_0
            } else {
                GgmlDType::Q4_0
            };
            Weight::Quantized(QMatMul::QTensor(std::sync::Arc::new(
                QTensor::quantize(&w, dtype).unwrap(),
            )))
        }
    };
    let exact = match &gpu_weight {
        Weight::Dense(t) => t.to_dtype(DType::F32).unwrap(),
        Weight::Quantized(QMatMul::QTensor(q)) => q.dequantize(&Device::Cpu).unwrap().t().unwrap(),
        Weight::Quantized(_) => unreachable!("built as blocks"),
    };
    let (cb, gb) = vector(out, seed + 1, d);
    let g = Linear::from_weight(gpu_weight, bias.then_some(gb), d).unwrap();
    assert_eq!(g.weight().format_name(), format);
    let c = Linear::from_weight(Weight::Dense(exact), bias.then_some(cb), &Device::Cpu).unwrap();
    (c, g)
}

const FORMATS: [&str; 4] = ["f32", "f16", "q8_0", "q4_0"];

#[test]
fn norm_linear_gives_the_plain_ops_bits() {
    let Some(d) = dev() else { return };
    // 3 x 96 and 5 x 768 values fit the kernel's workgroup copy of the normalised rows; 8 x 768
    // do not; over 8192 outputs the norm is a kernel of its own.
    for (rows, width, out) in [
        (1, 96, 72),
        (3, 96, 40),
        (5, 768, 24),
        (8, 768, 16),
        (2, 64, 8200),
    ] {
        let (cx, gx) = pair(&[rows, 1, width], 1400 + rows as u64, &d);
        let (cn, gn) = norm(width, 1410, &d);
        for format in FORMATS {
            for (bias, act) in [
                (true, None),
                (false, Some(Activation::GeluNew)),
                (true, Some(Activation::Gelu)),
            ] {
                let what = format!("norm_linear {format} [{rows}, {width}] -> {out} bias {bias} {act:?}");
                let (cl, gl) = linear(out, width, format, bias, 1420, &d);
                let fused = gx.norm_linear(&gn, &gl, act).unwrap();
                assert_same_bits(&fused, &compose::norm_linear(&gx, &gn, &gl, act).unwrap(), &what);
                assert_close(
                    &fused,
                    &compose::norm_linear(&cx, &cn, &cl, act).unwrap(),
                    1e-4,
                    1e-4,
                    &what,
                );
            }
        }
    }
}

#[test]
fn linear_residual_gives_the_plain_ops_bits() {
    let Some(d) = dev() else { return };
    let (rows, inp, out) = (5, 128, 96);
    let (cx, gx) = pair(&[rows, 1, inp], 1500, &d);
    let (cr, gr) = pair(&[rows, 1, out], 1501, &d);
    let (cg, gg) = pair(&[1], 1502, &d);
    let none = Dropout::default();
    for format in FORMATS {
        for (bias, gated) in [(true, false), (false, true), (true, true)] {
            let what = format!("linear_residual {format} bias {bias} gated {gated}");
            let (cl, gl) = linear(out, inp, format, bias, 1510, &d);
            let fused = gx.linear_residual(&gl, &gr, gated.then_some(&gg), &none).unwrap();
            let plain = compose::linear_residual(&gx, &gl, &gr, gated.then_some(&gg), &none).unwrap();
            assert_same_bits(&fused, &plain, &what);
            let want = compose::linear_residual(&cx, &cl, &cr, gated.then_some(&cg), &none).unwrap();
            assert_close(&fused, &want, 1e-4, 1e-4, &what);
        }
    }
}

/// An additive causal mask [B, 1, s, keys] for `s` new queries after `keys - s` cached keys.
fn causal(b: usize, s: usize, keys: usize) -> Vec<f32> {
    (0..b * s * keys)
        .map(|n| {
            let (i, j) = ((n / keys) % s, n % keys);
            if j > keys - s + i {
                f32::MIN
            } else {
                0.0
            }
        })
        .collect()
}

#[test]
fn self_attention_appends_to_the_cache_in_place() {
    let Some(d) = dev() else { return };
    let (b, heads, dh) = (2, 4, 16);
    let width = 3 * heads * dh;
    let scale = 0.25;
    let none = Dropout::default();
    let (mut fused_cache, mut plain_cache) = (KvCache::default(), KvCache::default());
    let mut cpu_cache = KvCache::<Tensor>::default();
    // A 62-position prefix, then single steps: the cache (64 positions at first) grows once.
    let mut keys = 0;
    for (step, s) in [62, 1, 1, 1, 1].into_iter().enumerate() {
        keys += s;
        let (cq, gq) = pair(&[b, s, width], 1600 + step as u64, &d);
        let mask = causal(b, s, keys);
        let cm = Tensor::from_vec(mask.clone(), (b, 1, s, keys), &Device::Cpu).unwrap();
        let gm = GpuTensor::from_vec(&mask, &[b, 1, s, keys], &d).unwrap();
        let what = format!("self-attention step {step} ({s} new, {keys} keys)");
        let fused = GpuTensor::self_attention(&gq, heads, scale, &gm, Some(&mut fused_cache), &none).unwrap();
        let plain = compose::self_attention(&gq, heads, scale, &gm, Some(&mut plain_cache), &none).unwrap();
        assert_same_bits(&fused, &plain, &what);
        let want = compose::self_attention(&cq, heads, scale, &cm, Some(&mut cpu_cache), &none).unwrap();
        assert_close(&fused, &want, 1e-5, 1e-5, &what);
        assert_eq!(fused_cache.len(), keys, "{what}: positions cached");
    }
}

#[test]
fn cross_attention_gives_the_plain_ops_bits() {
    let Some(d) = dev() else { return };
    let (b, heads, dh, latents, width) = (2, 4, 24, 7, 96);
    let (cx, gx) = pair(&[b, 1, width], 1700, &d);
    let (cn, gn) = norm(width, 1701, &d);
    let (ck, gk) = pair(&[b, heads, latents, dh], 1702, &d);
    let (cv, gv) = pair(&[b, heads, latents, dh], 1703, &d);
    for format in FORMATS {
        let what = format!("cross-attention {format}");
        let (cl, gl) = linear(heads * dh, width, format, false, 1710, &d);
        let scale = 1.0 / (dh as f64).sqrt();
        let fused = GpuTensor::cross_attention(&gx, &gn, &gl, heads, scale, (&gk, &gv)).unwrap();
        let plain = compose::cross_attention(&gx, &gn, &gl, heads, scale, (&gk, &gv)).unwrap();
        assert_same_bits(&fused, &plain, &what);
        let want = compose::cross_attention(&cx, &cn, &cl, heads, scale, (&ck, &cv)).unwrap();
        assert_close(&fused, &want, 1e-4, 1e-4, &what);
    }
}
