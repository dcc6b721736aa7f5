#![cfg(feature = "webgpu")]
//! Every op of the WebGPU engine against the candle backend (the CPU reference), on random
//! inputs with odd sizes. Fails when no adapter is found (lavapipe runs them on the CPU),
//! unless `CAPTION_GPU_TESTS=skip`.

use std::sync::OnceLock;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use caption_model::backend::{merge_heads, split_heads, Backend, CandleMatrix, Weight};
use caption_model::dropout::{Dropout, DropoutRng};
use caption_model::gpu::{GpuDevice, GpuTensor};
use caption_model::nn::Activation;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The shared device, or `None` when the tests are switched off.
fn dev() -> Option<GpuDevice> {
    static DEV: OnceLock<Option<GpuDevice>> = OnceLock::new();
    DEV.get_or_init(|| {
        if std::env::var("CAPTION_GPU_TESTS").as_deref() == Ok("skip") {
            eprintln!("CAPTION_GPU_TESTS=skip: GPU tests skipped");
            return None;
        }
        let d = GpuDevice::new_blocking().expect("a WebGPU adapter (set CAPTION_GPU_TESTS=skip to skip)");
        let info = d.adapter_info();
        eprintln!(
            "adapter: {} ({:?}, {}), max binding {} bytes",
            info.name,
            info.backend,
            info.driver,
            d.max_binding_bytes()
        );
        Some(d)
    })
    .clone()
}

/// `n` uniform values in [-scale, scale) from a seeded generator.
fn rand_vec(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// The same random values on both backends.
fn pair(dims: &[usize], seed: u64, d: &GpuDevice) -> (Tensor, GpuTensor) {
    let n = dims.iter().product();
    let v = rand_vec(n, 1.0, seed);
    let c = Tensor::from_vec(v.clone(), dims, &Device::Cpu).unwrap();
    let g = GpuTensor::from_vec(&v, dims, d).unwrap();
    (c, g)
}

/// Asserts equal shapes and |got - want| <= atol + rtol |want| everywhere.
fn assert_close(got: &GpuTensor, want: &Tensor, rtol: f64, atol: f64, what: &str) {
    let g = Backend::to_candle(got).unwrap();
    assert_eq!(g.dims(), want.dims(), "{what}: shape");
    let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = want
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut worst = 0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (*a as f64 - *b as f64).abs();
        assert!(
            a.is_finite() && err <= atol + rtol * (*b as f64).abs(),
            "{what}: element {i}: got {a}, want {b}"
        );
        worst = worst.max(err);
    }
    eprintln!("{what}: max abs error {worst:.3e}");
}

/// The f32 tolerance.
fn assert_f32(got: &GpuTensor, want: &Tensor, what: &str) {
    assert_close(got, want, 1e-5, 1e-4, what);
}

#[test]
fn adapter_and_roundtrip() {
    let Some(d) = dev() else { return };
    let (c, g) = pair(&[3, 5, 7], 1, &d);
    assert_f32(&g, &c, "roundtrip");
    let like = g.clone();
    let g2 = <GpuTensor as Backend>::from_f32(vec![1.0, 2.0, 3.0], &[3], &like).unwrap();
    assert_eq!(g2.to_vec().unwrap(), vec![1.0, 2.0, 3.0]);
    let r = Backend::reshape(&g, &[15, 7]).unwrap();
    assert_f32(&r, &c.reshape((15, 7)).unwrap(), "reshape");
    assert!(Backend::reshape(&g, &[4, 4]).is_err());
    let ids = <GpuTensor as Backend>::ids(&[4, 0, 9], &[3], &d).unwrap();
    assert_eq!(ids.to_vec().unwrap(), vec![4, 0, 9]);
    // The awaitable readers (the browser's path) give the same values.
    assert_eq!(pollster::block_on(ids.to_vec_async()).unwrap(), vec![4, 0, 9]);
    let sum = Backend::add(&g, &g).unwrap();
    assert_eq!(
        pollster::block_on(sum.to_vec_async()).unwrap(),
        sum.to_vec().unwrap()
    );
}

/// A dense weight as the model hands it over: W^T [in, out] (a transposed view).
fn dense_weight(out: usize, inp: usize, seed: u64) -> (Tensor, Weight) {
    let w = Tensor::from_vec(rand_vec(out * inp, 0.5, seed), (out, inp), &Device::Cpu).unwrap();
    let wt = w.t().unwrap();
    (w, Weight::Dense(wt))
}

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

#[test]
fn linear_f32() {
    let Some(d) = dev() else { return };
    for (i, &(xd, out)) in LINEAR_SHAPES.iter().enumerate() {
        let inp = *xd.last().unwrap();
        let (cx, gx) = pair(xd, 10 + i as u64, &d);
        let (_, w) = dense_weight(out, inp, 20 + i as u64);
        let (cb, gb) = pair(&[out], 30 + i as u64, &d);
        let gm = <GpuTensor as Backend>::matrix_from_candle(w.clone(), &d).unwrap();
        for bias in [false, true] {
            let want = Backend::linear(&cx, &CandleMatrix::Candle(w.clone()), bias.then_some(&cb)).unwrap();
            let got = Backend::linear(&gx, &gm, bias.then_some(&gb)).unwrap();
            assert_f32(&got, &want, &format!("linear f32 {xd:?} x {out} bias {bias}"));
        }
    }
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
    for (i, &(xd, out)) in LINEAR_SHAPES.iter().enumerate() {
        let inp = *xd.last().unwrap();
        let (cx, gx) = pair(xd, 50 + i as u64, &d);
        let (w, _) = dense_weight(out, inp, 60 + i as u64);
        let w16 = w.to_dtype(DType::F16).unwrap();
        let gm = <GpuTensor as Backend>::matrix_from_candle(Weight::Dense(w16.t().unwrap()), &d).unwrap();
        assert_eq!(gm.format_name(), "f16");
        // Reference: the f16-rounded weights in f32.
        let wr = Weight::Dense(w16.to_dtype(DType::F32).unwrap().t().unwrap());
        let (cb, gb) = pair(&[out], 70 + i as u64, &d);
        let want = Backend::linear(&cx, &CandleMatrix::Candle(wr.clone()), Some(&cb)).unwrap();
        let got = Backend::linear(&gx, &gm, Some(&gb)).unwrap();
        assert_f32(&got, &want, &format!("linear f16 {xd:?} x {out}"));
    }
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
fn layer_norm() {
    let Some(d) = dev() else { return };
    for (i, dims) in [
        vec![1, 96],
        vec![3, 768],
        vec![7, 37],
        vec![2, 5, 3072],
        vec![300, 64],
    ]
    .iter()
    .enumerate()
    {
        let n = *dims.last().unwrap();
        // An offset mean checks the two-pass variance.
        let v: Vec<f32> = rand_vec(dims.iter().product(), 2.0, 500 + i as u64)
            .iter()
            .map(|x| x + 3.0)
            .collect();
        let cx = Tensor::from_vec(v.clone(), dims.as_slice(), &Device::Cpu).unwrap();
        let gx = GpuTensor::from_vec(&v, dims, &d).unwrap();
        let (cw, gw) = pair(&[n], 510 + i as u64, &d);
        let (cb, gb) = pair(&[n], 520 + i as u64, &d);
        let want = Backend::layer_norm(&cx, &cw, &cb, 1e-5).unwrap();
        let got = Backend::layer_norm(&gx, &gw, &gb, 1e-5).unwrap();
        assert_f32(&got, &want, &format!("layer_norm {dims:?}"));
    }
}

#[test]
fn activations() {
    let Some(d) = dev() else { return };
    let n = 4099;
    let v: Vec<f32> = rand_vec(n, 8.0, 600);
    let cx = Tensor::from_vec(v.clone(), n, &Device::Cpu).unwrap();
    let gx = GpuTensor::from_vec(&v, &[n], &d).unwrap();
    for act in [
        Activation::Gelu,
        Activation::GeluNew,
        Activation::QuickGelu,
        Activation::Relu,
        Activation::SqRelu,
        Activation::Tanh,
    ] {
        let want = Backend::activation(&cx, act).unwrap();
        let got = Backend::activation(&gx, act).unwrap();
        assert_f32(&got, &want, &format!("{act:?}"));
    }
    // Extremes stay finite.
    let big = GpuTensor::from_vec(&[-1e30, -100.0, 100.0, 1e30], &[4], &d).unwrap();
    for act in [
        Activation::Gelu,
        Activation::GeluNew,
        Activation::QuickGelu,
        Activation::Tanh,
    ] {
        let out = Backend::activation(&big, act).unwrap().to_vec().unwrap();
        assert!(out.iter().all(|x| x.is_finite()), "{act:?} on extremes: {out:?}");
    }
}

#[test]
fn binary_and_affine() {
    let Some(d) = dev() else { return };
    let (ca, ga) = pair(&[2, 3, 4, 5], 700, &d);
    let (cb, gb) = pair(&[2, 3, 4, 5], 701, &d);
    assert_f32(
        &Backend::add(&ga, &gb).unwrap(),
        &Backend::add(&ca, &cb).unwrap(),
        "add",
    );
    assert!(Backend::add(&ga, &pair(&[5], 0, &d).1).is_err());
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 3, 4, 5], &[5]),
        (&[2, 1, 4, 1], &[3, 1, 5]),
        (&[4, 1], &[1, 7]),
        (&[1], &[3, 2]),
        (&[2, 12, 7, 9], &[2, 1, 1, 9]),
        (&[3, 1000], &[1000]),
    ];
    for (i, &(a, b)) in cases.iter().enumerate() {
        let (ca, ga) = pair(a, 710 + i as u64, &d);
        let (cb, gb) = pair(b, 720 + i as u64, &d);
        let what = format!("{a:?} with {b:?}");
        assert_f32(
            &Backend::broadcast_add(&ga, &gb).unwrap(),
            &Backend::broadcast_add(&ca, &cb).unwrap(),
            &format!("add {what}"),
        );
        assert_f32(
            &Backend::broadcast_mul(&ga, &gb).unwrap(),
            &Backend::broadcast_mul(&ca, &cb).unwrap(),
            &format!("mul {what}"),
        );
        assert_f32(
            &Backend::broadcast_add(&gb, &ga).unwrap(),
            &Backend::broadcast_add(&cb, &ca).unwrap(),
            &format!("add swapped {what}"),
        );
    }
    assert!(Backend::broadcast_add(&pair(&[3, 4], 0, &d).1, &pair(&[3], 0, &d).1).is_err());
    let (cx, gx) = pair(&[7, 33], 730, &d);
    assert_f32(
        &Backend::affine(&gx, 0.125, -2.5).unwrap(),
        &Backend::affine(&cx, 0.125, -2.5).unwrap(),
        "affine",
    );
}

#[test]
fn layout_ops() {
    let Some(d) = dev() else { return };
    let (c, g) = pair(&[2, 3, 4, 5], 800, &d);
    for order in [[0, 2, 1, 3], [3, 1, 0, 2], [0, 1, 2, 3]] {
        assert_f32(
            &Backend::permute(&g, &order).unwrap(),
            &Backend::permute(&c, &order).unwrap(),
            &format!("permute {order:?}"),
        );
    }
    assert!(Backend::permute(&g, &[0, 0, 1, 2]).is_err());
    for (dim, start, len) in [(0, 1, 1), (1, 1, 2), (2, 0, 3), (3, 2, 3), (3, 4, 1)] {
        assert_f32(
            &Backend::narrow(&g, dim, start, len).unwrap(),
            &Backend::narrow(&c, dim, start, len).unwrap(),
            &format!("narrow {dim} {start} {len}"),
        );
    }
    assert!(Backend::narrow(&g, 3, 4, 2).is_err());
    for dim in 0..3 {
        let mut a = vec![2, 3, 4];
        let mut b = a.clone();
        a[dim] = 1;
        b[dim] = 5;
        let (ca, ga) = pair(&a, 810 + dim as u64, &d);
        let (cb, gb) = pair(&b, 820 + dim as u64, &d);
        let (cc, gc) = pair(&[2, 3, 4], 830 + dim as u64, &d);
        assert_f32(
            &<GpuTensor as Backend>::cat(&[&ga, &gb, &gc], dim).unwrap(),
            &<Tensor as Backend>::cat(&[&ca, &cb, &cc], dim).unwrap(),
            &format!("cat {dim}"),
        );
    }
    for (from, to) in [
        (vec![3, 1], vec![2, 3, 4]),
        (vec![1, 5], vec![4, 5]),
        (vec![7], vec![2, 1, 7]),
    ] {
        let (cf, gf) = pair(&from, 840, &d);
        assert_f32(
            &Backend::broadcast_as(&gf, &to).unwrap(),
            &Backend::broadcast_as(&cf, &to).unwrap(),
            &format!("broadcast_as {from:?} {to:?}"),
        );
    }
    assert!(Backend::broadcast_as(&pair(&[3, 2], 0, &d).1, &[3, 4]).is_err());
    let (c, g) = pair(&[5, 7, 3], 850, &d);
    let ids = [3u32, 0, 3, 4, 1];
    let cids = Tensor::from_slice(&ids, 5, &Device::Cpu).unwrap();
    let gids = <GpuTensor as Backend>::ids(&ids, &[5], &d).unwrap();
    assert_f32(
        &Backend::index_select(&g, &gids).unwrap(),
        &Backend::index_select(&c, &cids).unwrap(),
        "index_select",
    );
    // The attention layout helpers.
    let (c, g) = pair(&[2, 7, 96], 860, &d);
    let (ch, gh) = (split_heads(&c, 12).unwrap(), split_heads(&g, 12).unwrap());
    assert_f32(&gh, &ch, "split_heads");
    assert_f32(
        &merge_heads(&gh).unwrap(),
        &merge_heads(&ch).unwrap(),
        "merge_heads",
    );
}

#[test]
fn mean_dim() {
    let Some(d) = dev() else { return };
    let (c, g) = pair(&[3, 5, 7], 900, &d);
    for dim in 0..3 {
        assert_f32(
            &Backend::mean_dim(&g, dim).unwrap(),
            &Backend::mean_dim(&c, dim).unwrap(),
            &format!("mean_dim {dim}"),
        );
    }
    let (c, g) = pair(&[2, 257, 768], 901, &d);
    assert_f32(
        &Backend::mean_dim(&g, 1).unwrap(),
        &Backend::mean_dim(&c, 1).unwrap(),
        "mean_dim tokens",
    );
}

#[test]
fn attention() {
    let Some(d) = dev() else { return };
    let none = Dropout::new(0.1);
    for (i, &(b, h, sq, sk, dh)) in [
        (2, 3, 1, 5, 64),
        (1, 12, 7, 77, 64),
        (2, 2, 9, 9, 32),
        (1, 1, 3, 130, 100),
    ]
    .iter()
    .enumerate()
    {
        let s = 900 + 10 * i as u64;
        let (cq, gq) = pair(&[b, h, sq, dh], s, &d);
        let (ck, gk) = pair(&[b, h, sk, dh], s + 1, &d);
        let (cv, gv) = pair(&[b, h, sk, dh], s + 2, &d);
        let what = format!("attention {:?}", (b, h, sq, sk, dh));
        let want = <Tensor as Backend>::attention(&cq, &ck, &cv, None, &none).unwrap();
        assert_f32(
            &<GpuTensor as Backend>::attention(&gq, &gk, &gv, None, &none).unwrap(),
            &want,
            &what,
        );
        // A causal-style mask [B, 1, Sq, Sk] with the most negative f32; the last query row of
        // the first batch entry fully masked (it must stay finite).
        let mut mask = vec![0f32; b * sq * sk];
        for bi in 0..b {
            for qi in 0..sq {
                for kj in 0..sk {
                    if kj > qi + sk - sq || (bi == 0 && qi == sq - 1) {
                        mask[(bi * sq + qi) * sk + kj] = f32::MIN;
                    }
                }
            }
        }
        let cm = Tensor::from_vec(mask.clone(), (b, 1, sq, sk), &Device::Cpu).unwrap();
        let gm = GpuTensor::from_vec(&mask, &[b, 1, sq, sk], &d).unwrap();
        let want = <Tensor as Backend>::attention(&cq, &ck, &cv, Some(&cm), &none).unwrap();
        let got = <GpuTensor as Backend>::attention(&gq, &gk, &gv, Some(&gm), &none).unwrap();
        assert_f32(&got, &want, &format!("{what} masked"));
        // A key-padding bias [1, 1, 1, Sk].
        let (cp, gp) = pair(&[1, 1, 1, sk], s + 3, &d);
        let want = <Tensor as Backend>::attention(&cq, &ck, &cv, Some(&cp), &none).unwrap();
        let got = <GpuTensor as Backend>::attention(&gq, &gk, &gv, Some(&gp), &none).unwrap();
        assert_f32(&got, &want, &format!("{what} key bias"));
    }
    // Active dropout is refused (inference only).
    let mut drop = Dropout::new(0.1);
    drop.enable(&DropoutRng::new(0));
    let (_, g) = pair(&[1, 1, 2, 4], 990, &d);
    assert!(<GpuTensor as Backend>::attention(&g, &g, &g, None, &drop).is_err());
    assert!(Backend::dropout(&g, &drop).is_err());
    assert_f32(
        &Backend::dropout(&g, &none).unwrap(),
        &Backend::to_candle(&g).unwrap(),
        "dropout off",
    );
}

#[test]
fn greedy_pick_with_log_sum_exp() {
    let Some(d) = dev() else { return };
    let (rows, vocab) = (3, 50257);
    let mut v = rand_vec(rows * vocab, 10.0, 1000);
    // Row 0: a tie at 7 and 40000 (first wins); row 1: maximum at the last index.
    v[7] = 20.0;
    v[40000] = 20.0;
    v[vocab + vocab - 1] = 30.0;
    let g = GpuTensor::from_vec(&v, &[rows, vocab], &d).unwrap();
    // Per row: max, lse, best id, best value.
    let top = g.top_k_rows(1).unwrap().to_vec().unwrap();
    for r in 0..rows {
        let row = &v[r * vocab..(r + 1) * vocab];
        let (mut bi, mut bv) = (0, row[0]);
        for (j, &x) in row.iter().enumerate() {
            if x > bv {
                (bi, bv) = (j, x);
            }
        }
        let lse = bv as f64 + row.iter().map(|&x| ((x - bv) as f64).exp()).sum::<f64>().ln();
        let got = &top[4 * r..4 * r + 4];
        assert_eq!(got[2] as usize, bi, "row {r}");
        assert_eq!((got[0], got[3]), (bv, bv), "row {r} max");
        assert!(
            (got[1] as f64 - lse).abs() < 1e-4,
            "row {r} lse {} vs {lse}",
            got[1]
        );
    }
    assert_eq!(top[2], 7.0);
    assert_eq!(top[4 + 2] as usize, vocab - 1);
}

#[test]
fn two_dimensional_grids() {
    let Some(d) = dev() else { return };
    // More than 65535 workgroups of 256 threads.
    let n = 65535 * 256 + 1000;
    let v: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
    let g = GpuTensor::from_vec(&v, &[n], &d).unwrap();
    let out = Backend::affine(&g, 2.0, 1.0).unwrap().to_vec().unwrap();
    assert!(out
        .iter()
        .enumerate()
        .all(|(i, &x)| x == 2.0 * (i % 1000) as f32 + 1.0));
    // More than 65535 rows of layer norm (one workgroup per row).
    let rows = 70000;
    let (c, g) = pair(&[rows, 3], 1100, &d);
    let (cw, gw) = pair(&[3], 1101, &d);
    let (cb, gb) = pair(&[3], 1102, &d);
    assert_close(
        &Backend::layer_norm(&g, &gw, &gb, 1e-5).unwrap(),
        &Backend::layer_norm(&c, &cw, &cb, 1e-5).unwrap(),
        1e-4,
        1e-3,
        "layer_norm 70000 rows",
    );
}

#[test]
fn buffer_limits_are_reported() {
    let Some(d) = dev() else { return };
    let limit = d.max_binding_bytes();
    let err = d.check_size(limit + 4, "a test matrix").unwrap_err().to_string();
    assert!(
        err.contains("a test matrix") && err.contains(&(limit + 4).to_string()),
        "{err}"
    );
    assert!(d.check_size(limit, "fits").is_ok());
}

/// A small residual block (layer norm, linear, activation, linear, residual add) run many
/// times, so that intermediate buffers are dropped and recycled between steps.
fn block<T: Backend>(x: &T, ln: (&T, &T), w1: &T::Matrix, w2: &T::Matrix, b1: &T) -> candle_core::Result<T> {
    let h = x.layer_norm(ln.0, ln.1, 1e-5)?;
    let h = h.linear(w1, Some(b1))?.activation(Activation::GeluNew)?;
    x.add(&h.linear(w2, None)?)
}

#[test]
fn recycled_buffers_in_a_long_chain() {
    let Some(d) = dev() else { return };
    let (cx, gx) = pair(&[1, 5, 96], 1200, &d);
    let (cg, gg) = pair(&[96], 1201, &d);
    let (cb, gb) = pair(&[96], 1202, &d);
    let (cb1, gb1) = pair(&[384], 1203, &d);
    let (_, w1) = dense_weight(384, 96, 1204);
    let w2 = Weight::Quantized(
        QMatMul::from_qtensor(QTensor::quantize(&dense_weight(96, 384, 1205).0, GgmlDType::Q8_0).unwrap())
            .unwrap(),
    );
    let gw1 = <GpuTensor as Backend>::matrix_from_candle(w1.clone(), &d).unwrap();
    let gw2 = <GpuTensor as Backend>::matrix_from_candle(w2.clone(), &d).unwrap();
    // The reference uses the dequantized second matrix (candle's q8 kernel rounds activations).
    let w2c = match &w2 {
        Weight::Quantized(QMatMul::QTensor(q)) => {
            Weight::Dense(q.dequantize(&Device::Cpu).unwrap().t().unwrap())
        }
        _ => unreachable!(),
    };
    let (mut c, mut g) = (cx, gx);
    for step in 0..40 {
        c = block(
            &c,
            (&cg, &cb),
            &CandleMatrix::Candle(w1.clone()),
            &CandleMatrix::Candle(w2c.clone()),
            &cb1,
        )
        .unwrap();
        g = block(&g, (&gg, &gb), &gw1, &gw2, &gb1).unwrap();
        if step % 10 == 9 {
            assert_close(&g, &c, 1e-4, 1e-3, &format!("chain step {step}"));
        }
    }
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
        let width = x.dims()[2];
        x.reshape(&[1, width])
            .unwrap()
            .top_k_rows(1)
            .unwrap()
            .to_vec()
            .unwrap()
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
        let width = x.dims()[2];
        x.reshape(&[1, width])
            .unwrap()
            .top_k_rows(1)
            .unwrap()
            .to_vec()
            .unwrap();
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

/// The weights of one GPT-2-style block on some backend.
struct BlockWeights<T: Backend> {
    ln: (T, T),
    qkv: T::Matrix,
    qkv_b: T,
    proj: T::Matrix,
    fc: T::Matrix,
    out: T::Matrix,
}

impl<T: Backend> BlockWeights<T> {
    /// The same random weights (q4_0 for the MLP's second matrix) on `device`.
    fn new(dm: usize, device: &T::Device) -> Self {
        let t = |dims: &[usize], seed: u64| {
            let c = Tensor::from_vec(rand_vec(dims.iter().product(), 0.5, seed), dims, &Device::Cpu).unwrap();
            T::from_candle(&c, device).unwrap()
        };
        let m = |w: Weight| T::matrix_from_candle(w, device).unwrap();
        let q4 = QTensor::quantize(&dense_weight(dm, 4 * dm, 1305).0, GgmlDType::Q4_0).unwrap();
        Self {
            ln: (t(&[dm], 1300), t(&[dm], 1301)),
            qkv: m(dense_weight(3 * dm, dm, 1302).1),
            qkv_b: t(&[3 * dm], 1303),
            proj: m(Weight::Dense(
                dense_weight(dm, dm, 1304)
                    .0
                    .to_dtype(DType::F16)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .t()
                    .unwrap(),
            )),
            fc: m(dense_weight(4 * dm, dm, 1306).1),
            // Dequantized, so that candle's reference does not round the activations.
            out: m(Weight::Dense(q4.dequantize(&Device::Cpu).unwrap().t().unwrap())),
        }
    }
}

/// A pre-norm transformer block with causal self-attention, written once for any backend.
fn transformer_block<T: Backend>(x: &T, w: &BlockWeights<T>, heads: usize) -> candle_core::Result<T> {
    let d = x.dims();
    let (s, dm) = (d[1], d[2]);
    let h = x
        .layer_norm(&w.ln.0, &w.ln.1, 1e-5)?
        .linear(&w.qkv, Some(&w.qkv_b))?;
    let scale = 1.0 / ((dm / heads) as f64).sqrt();
    let q = split_heads(&h.narrow(2, 0, dm)?, heads)?.affine(scale, 0.0)?;
    let k = split_heads(&h.narrow(2, dm, dm)?, heads)?;
    let v = split_heads(&h.narrow(2, 2 * dm, dm)?, heads)?;
    let mask: Vec<f32> = (0..s * s)
        .map(|i| if i % s > i / s { f32::MIN } else { 0.0 })
        .collect();
    let mask = T::from_f32(mask, &[1, 1, s, s], x)?;
    let a = T::attention(&q, &k, &v, Some(&mask), &Dropout::new(0.1))?;
    let x = x.add(&merge_heads(&a)?.linear(&w.proj, None)?)?;
    let h = x
        .layer_norm(&w.ln.0, &w.ln.1, 1e-5)?
        .linear(&w.fc, None)?
        .activation(Activation::GeluNew)?;
    x.add(&h.linear(&w.out, None)?)
}

#[test]
fn transformer_block_matches_candle() {
    let Some(d) = dev() else { return };
    let (cx, gx) = pair(&[2, 7, 96], 1310, &d);
    let cw = BlockWeights::<Tensor>::new(96, &Device::Cpu);
    let gw = BlockWeights::<GpuTensor>::new(96, &d);
    let want = transformer_block(&cx, &cw, 4).unwrap();
    let got = transformer_block(&gx, &gw, 4).unwrap();
    assert_close(&got, &want, 1e-4, 1e-4, "transformer block");
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
        assert!(res.is_ok());
    }
}

#[test]
fn top_k_rows_rank_like_the_host() {
    let Some(d) = dev() else { return };
    let (rows, vocab, k) = (4, 50257, 10);
    // Few distinct values, so that ties are everywhere; row 2 has NaNs among its best; row 3
    // has only 5 non-NaN values.
    let mut v: Vec<f32> = rand_vec(rows * vocab, 10.0, 1001)
        .iter()
        .map(|x| (x * 0.5).round())
        .collect();
    v[2 * vocab + 3] = f32::NAN;
    v[2 * vocab + 9] = f32::NAN;
    for (j, x) in v[3 * vocab..].iter_mut().enumerate() {
        *x = if j < 5 { j as f32 } else { f32::NAN };
    }
    let g = GpuTensor::from_vec(&v, &[rows, vocab], &d).unwrap();
    let top = g.top_k_rows(k).unwrap().to_vec().unwrap();
    for r in 0..rows {
        let want = caption_model::decode::TopTokens::of_row(&v[r * vocab..(r + 1) * vocab], k);
        let got = &top[r * (2 + 2 * k)..(r + 1) * (2 + 2 * k)];
        let (max, lse) = want.norm.parts();
        assert_eq!(got[0] as f64, max, "row {r} max");
        assert!(
            (got[1] as f64 - lse).abs() < 1e-4,
            "row {r} lse {} vs {lse}",
            got[1]
        );
        let pairs: Vec<(u32, f32)> = got[2..]
            .chunks(2)
            .filter(|p| p[0] >= 0.0)
            .map(|p| (p[0] as u32, p[1]))
            .collect();
        assert_eq!(pairs, want.best, "row {r}");
    }
}
