//! Matmuls and row gathers on f32, f16, q8_0 and q4_0 weights, the binding limit, and a
//! decode-step timing.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use caption_model::backend::{merge_heads, split_heads, CandleMatrix};
use caption_model::dropout::Dropout;
use caption_model::nn::Activation;

use super::*;

const LINEAR_SHAPES: &[(&[usize], usize)] = &[
    (&[1, 96], 96),
    (&[3, 37], 53),
    (&[7, 768], 130),
    (&[1, 8, 96], 3072),
    (&[9, 33], 65),
    (&[2, 35, 96], 130),
    (&[130, 768], 200),
    (&[3, 3072], 768),
];

/// Every [`LINEAR_SHAPES`] case with and without a bias: `weights(out, in, seed)` gives the
/// matrix the GPU holds (whose format must be `format`) and the f32 one the reference multiplies.
fn check_linear(
    d: &GpuDevice,
    seed: u64,
    format: &str,
    weights: impl Fn(usize, usize, u64) -> (Weight, Weight),
) {
    for (i, &(xd, out)) in LINEAR_SHAPES.iter().enumerate() {
        let s = seed + 10 * i as u64;
        let inp = *xd.last().unwrap();
        let (cx, gx) = pair(xd, s, d);
        let (on_gpu, reference) = weights(out, inp, s + 1);
        let (cb, gb) = pair(&[out], s + 2, d);
        let gm = <GpuTensor as Backend>::matrix_from_candle(on_gpu, d).unwrap();
        assert_eq!(gm.format_name(), format);
        for bias in [false, true] {
            let want =
                Backend::linear(&cx, &CandleMatrix::Candle(reference.clone()), bias.then_some(&cb)).unwrap();
            let got = Backend::linear(&gx, &gm, bias.then_some(&gb)).unwrap();
            assert_f32(
                &got,
                &want,
                &format!("linear {format} {xd:?} x {out} bias {bias}"),
            );
        }
    }
}

#[test]
fn linear_f32() {
    let Some(d) = dev() else { return };
    check_linear(&d, 10, "f32", |out, inp, seed| {
        let w = dense_weight(out, inp, seed).1;
        (w.clone(), w)
    });
    // A GPT-2 Conv1D weight arrives as a contiguous [in, out] tensor.
    let (cx, gx) = pair(&[5, 40], 41, &d);
    let wt = Tensor::from_vec(rand_vec(40 * 24, 0.5, 42), (40, 24), &Device::Cpu).unwrap();
    let gm = <GpuTensor as Backend>::matrix_from_candle(Weight::Dense(wt.clone()), &d).unwrap();
    let want = Backend::linear(&cx, &CandleMatrix::Candle(Weight::Dense(wt)), None).unwrap();
    assert_f32(
        &Backend::linear(&gx, &gm, None).unwrap(),
        &want,
        "linear conv1d layout",
    );
    // Wrong inner size is an error.
    assert!(Backend::linear(
        &gx,
        &<GpuTensor as Backend>::matrix_from_candle(dense_weight(3, 41, 1).1, &d).unwrap(),
        None
    )
    .is_err());
}

#[test]
fn linear_f16() {
    let Some(d) = dev() else { return };
    // Reference: the f16-rounded weights in f32.
    check_linear(&d, 500, "f16", |out, inp, seed| {
        let w16 = dense_weight(out, inp, seed).0.to_dtype(DType::F16).unwrap();
        let rounded = w16.to_dtype(DType::F32).unwrap().t().unwrap();
        (Weight::Dense(w16.t().unwrap()), Weight::Dense(rounded))
    });
}

/// x · W^T in f64, W given [out, in].
fn matmul_f64(x: &Tensor, w: &Tensor) -> Tensor {
    let x64 = x.to_dtype(DType::F64).unwrap();
    let inp = *x.dims().last().unwrap();
    let rows = x.elem_count() / inp;
    let y = x64
        .reshape((rows, inp))
        .unwrap()
        .matmul(&w.to_dtype(DType::F64).unwrap().t().unwrap())
        .unwrap();
    let mut dims = x.dims().to_vec();
    *dims.last_mut().unwrap() = w.dim(0).unwrap();
    y.reshape(dims).unwrap()
}

fn linear_quantized(dtype: GgmlDType, seed: u64) {
    let Some(d) = dev() else { return };
    let shapes: &[(&[usize], usize)] = &[
        (&[1, 32], 1),
        (&[3, 96], 53),
        (&[7, 768], 130),
        (&[8, 96], 3072),
        (&[9, 64], 65),
        (&[2, 35, 768], 130),
    ];
    for (i, &(xd, out)) in shapes.iter().enumerate() {
        let inp = *xd.last().unwrap();
        let (cx, gx) = pair(xd, seed + i as u64, &d);
        let (w, _) = dense_weight(out, inp, seed + 100 + i as u64);
        let q = QTensor::quantize(&w, dtype).unwrap();
        let wdeq = q.dequantize(&Device::Cpu).unwrap();
        let weight = Weight::Quantized(QMatMul::from_qtensor(q).unwrap());
        let gm = <GpuTensor as Backend>::matrix_from_candle(weight.clone(), &d).unwrap();
        let got = Backend::linear(&gx, &gm, None).unwrap();
        // Exact reference: the dequantized weights in f64.
        let exact = matmul_f64(&cx, &wdeq);
        assert_close(
            &got,
            &exact,
            1e-5,
            1e-4,
            &format!("linear {dtype:?} {xd:?} x {out} vs f64"),
        );
        // candle's kernel also quantizes the activations (to q8): only loosely equal.
        let loose = Backend::linear(&cx, &CandleMatrix::Candle(weight.clone()), None).unwrap();
        let scale = (inp as f64).sqrt() * 0.5;
        assert_close(
            &got,
            &loose,
            0.0,
            0.05 * scale,
            &format!("linear {dtype:?} {xd:?} x {out} vs candle"),
        );
    }
}

#[test]
fn linear_q8_0() {
    linear_quantized(GgmlDType::Q8_0, 200);
}

#[test]
fn linear_q4_0() {
    linear_quantized(GgmlDType::Q4_0, 300);
}

#[test]
fn gather_rows_all_formats() {
    let Some(d) = dev() else { return };
    let (vocab, width) = (50257, 64);
    let dense = Tensor::from_vec(rand_vec(vocab * width, 1.0, 400), (vocab, width), &Device::Cpu).unwrap();
    let ids = [0u32, 50256, 17, 17, 4242, 1];
    let cids = Tensor::from_slice(&ids, (2, 3), &Device::Cpu).unwrap();
    let gids = <GpuTensor as Backend>::ids(&ids, &[2, 3], &d).unwrap();
    // f32 table (untied embedding).
    let table = <GpuTensor as Backend>::embedding(&dense, &d).unwrap();
    let want = <Tensor as Backend>::gather_rows(
        &<Tensor as Backend>::embedding(&dense, &Device::Cpu).unwrap(),
        &cids,
    )
    .unwrap();
    assert_f32(
        &<GpuTensor as Backend>::gather_rows(&table, &gids).unwrap(),
        &want,
        "gather f32",
    );
    // f16 table.
    let d16 = dense.to_dtype(DType::F16).unwrap();
    let t16 = <GpuTensor as Backend>::embedding(&d16, &d).unwrap();
    let want16 = want.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap();
    assert_f32(
        &<GpuTensor as Backend>::gather_rows(&t16, &gids).unwrap(),
        &want16,
        "gather f16",
    );
    // Quantized tables, tied to the head: gathers decode the head's blocks.
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
        let q = QTensor::quantize(&dense, dtype).unwrap();
        let deq = q.dequantize(&Device::Cpu).unwrap();
        let head = Weight::Quantized(QMatMul::from_qtensor(q).unwrap());
        let (ct, _) = <Tensor as Backend>::tied_embedding(&deq, head.clone(), &Device::Cpu).unwrap();
        let (gt, gh) = <GpuTensor as Backend>::tied_embedding(&deq, head, &d).unwrap();
        let want = <Tensor as Backend>::gather_rows(&ct, &cids).unwrap();
        let got = <GpuTensor as Backend>::gather_rows(&gt, &gids).unwrap();
        assert_f32(&got, &want, &format!("gather {dtype:?}"));
        // The same table as the tied head: logits over the full vocabulary.
        let (cx, gx) = pair(&[2, width], 401, &d);
        let exact = matmul_f64(&cx, &deq);
        let logits = Backend::linear(&gx, &gh, None).unwrap();
        assert_close(&logits, &exact, 1e-5, 1e-4, &format!("tied head {dtype:?}"));
    }
}

#[test]
fn a_matrix_over_the_binding_limit_is_refused_by_name() {
    let Some(d) = dev() else { return };
    // GPT-2's f32 token embedding: 154 MB, over WebGPU's default 128 MiB binding.
    let (vocab, width) = (50257, 768);
    let bytes = (vocab * width * 4) as u64;
    let table = Tensor::zeros((vocab, width), DType::F32, &Device::Cpu).unwrap();
    let res = <GpuTensor as Backend>::embedding(&table, &d);
    if bytes > d.max_binding_bytes() {
        let err = res.unwrap_err().to_string();
        eprintln!("{err}");
        assert!(
            err.contains(&bytes.to_string()) && err.contains("max_storage_buffer_binding_size"),
            "{err}"
        );
        // Its f16 copy fits.
        let half = table.to_dtype(DType::F16).unwrap();
        assert!(<GpuTensor as Backend>::embedding(&half, &d).is_ok());
    } else {
        res.unwrap();
        caption_model::test_skip::skip(
            "this adapter binds over 154 MB, so the refusal of a larger matrix is untested",
        );
    }
}

/// The greedy pick of a [1, 1, width] hidden state (as the decode loop reads it back).
fn greedy_pick(x: &GpuTensor) -> Vec<f32> {
    let width = x.dims()[2];
    x.reshape(&[1, width])
        .unwrap()
        .top_k_rows(1, 1.0)
        .unwrap()
        .to_vec()
        .unwrap()
}

/// Timing of a GPT-2-small-shaped decode step (12 layers, one token, q8_0 weights, a
/// 64-token key cache): `cargo test ... -- --ignored --nocapture bench`. Not a correctness
/// test; on lavapipe it measures the CPU rasteriser, on a GPU mostly dispatch overhead.
#[test]
#[ignore]
fn bench_decode_step() {
    let Some(d) = dev() else { return };
    let (dm, heads, ctx) = (768, 12, 64);
    let q8 = |out: usize, inp: usize, seed: u64| {
        let w = dense_weight(out, inp, seed).0;
        let q = Weight::Quantized(
            QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap(),
        );
        <GpuTensor as Backend>::matrix_from_candle(q, &d).unwrap()
    };
    let (qkv, proj, fc, out) = (
        q8(3 * dm, dm, 1),
        q8(dm, dm, 2),
        q8(4 * dm, dm, 3),
        q8(dm, 4 * dm, 4),
    );
    let (_, ln_w) = pair(&[dm], 5, &d);
    let (_, ln_b) = pair(&[dm], 6, &d);
    let (_, kc) = pair(&[1, heads, ctx, dm / heads], 7, &d);
    let (_, x0) = pair(&[1, 1, dm], 8, &d);
    let none = Dropout::new(0.0);
    let step = |x: &GpuTensor| {
        let mut x = x.clone();
        for _ in 0..12 {
            let h = Backend::layer_norm(&x, &ln_w, &ln_b, 1e-5).unwrap();
            let h = Backend::linear(&h, &qkv, None).unwrap();
            let q = split_heads(&Backend::narrow(&h, 2, 0, dm).unwrap(), heads).unwrap();
            let a = <GpuTensor as Backend>::attention(&q, &kc, &kc, None, &none).unwrap();
            let a = Backend::linear(&merge_heads(&a).unwrap(), &proj, None).unwrap();
            x = Backend::add(&x, &a).unwrap();
            let h = Backend::layer_norm(&x, &ln_w, &ln_b, 1e-5).unwrap();
            let h =
                Backend::activation(&Backend::linear(&h, &fc, None).unwrap(), Activation::GeluNew).unwrap();
            x = Backend::add(&x, &Backend::linear(&h, &out, None).unwrap()).unwrap();
        }
        greedy_pick(&x)
    };
    step(&x0);
    // The same step's other kernels alone (what the matmuls cost is the difference).
    let t = std::time::Instant::now();
    for _ in 0..10 {
        let mut x = x0.clone();
        for _ in 0..12 {
            let h = Backend::layer_norm(&x, &ln_w, &ln_b, 1e-5).unwrap();
            let h = Backend::activation(&h, Activation::GeluNew).unwrap();
            let q = split_heads(
                &Backend::narrow(&Backend::cat(&[&h, &h, &h], 2).unwrap(), 2, 0, dm).unwrap(),
                heads,
            )
            .unwrap();
            let a = <GpuTensor as Backend>::attention(&q, &kc, &kc, None, &none).unwrap();
            x = Backend::add(&x, &merge_heads(&a).unwrap()).unwrap();
            x = Backend::add(&x, &Backend::layer_norm(&x, &ln_w, &ln_b, 1e-5).unwrap()).unwrap();
        }
        greedy_pick(&x);
    }
    eprintln!(
        "decode step without matmuls: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / 10.0
    );
    let n = 10;
    let t = std::time::Instant::now();
    for _ in 0..n {
        step(&x0);
    }
    eprintln!(
        "decode step (12 layers, q8_0, 1 token): {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
