//! Elementwise, layout, normalisation and attention ops, and buffer reuse.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use caption_model::backend::{merge_heads, split_heads, CandleMatrix};
use caption_model::dropout::{Dropout, DropoutRng};
use caption_model::nn::Activation;

use super::*;

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
