//! The WebGPU engine against the candle backend (the CPU reference): every op on random inputs
//! with odd sizes, the matmuls in every weight format, token selection, and whole fixture
//! models from exported folders. Runs on whatever adapter wgpu finds (lavapipe in CI, on the
//! CPU); fails when there is none, unless `CAPTION_GPU_TESTS=skip`, which skips every test
//! with one line saying so. Needs the `webgpu` feature (`required-features` in Cargo.toml).

#[path = "../common/mod.rs"]
mod common;
mod fused;
mod matmul;
mod model;
mod ops;
mod select;
mod steps;

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use caption_model::backend::{Backend, Weight};
use caption_model::gpu::{GpuDevice, GpuTensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The shared device, or `None` when the tests are switched off (the caller's skip recorded).
fn dev() -> Option<GpuDevice> {
    static DEV: OnceLock<Option<GpuDevice>> = OnceLock::new();
    let dev = DEV
        .get_or_init(|| {
            if std::env::var("CAPTION_GPU_TESTS").as_deref() == Ok("skip") {
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
        .clone();
    if dev.is_none() {
        caption_model::test_skip::skip("CAPTION_GPU_TESTS=skip, the WebGPU engine is not tested");
    }
    dev
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
    assert!(!g.dims().contains(&0), "{what}: nothing to compare");
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
            a.is_finite() && b.is_finite() && err <= atol + rtol * (*b as f64).abs(),
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

/// A dense weight as the model hands it over: W^T [in, out] (a transposed view).
fn dense_weight(out: usize, inp: usize, seed: u64) -> (Tensor, Weight) {
    let w = Tensor::from_vec(rand_vec(out * inp, 0.5, seed), (out, inp), &Device::Cpu).unwrap();
    let wt = w.t().unwrap();
    (w, Weight::Dense(wt))
}
