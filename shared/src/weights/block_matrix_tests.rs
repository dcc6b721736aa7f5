use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::BlockMatrix;

/// A random [rows, cols] matrix quantized to `dtype`, its blocks, and the dequantized values.
fn quantized(rows: usize, cols: usize, dtype: GgmlDType, seed: u64) -> (BlockMatrix, Vec<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&w, dtype).unwrap();
    let dense = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
    let blocks = BlockMatrix::from_qtensor(&q).unwrap().unwrap();
    (blocks, dense.to_vec1().unwrap())
}

#[test]
fn every_path_multiplies_the_dequantized_weights() {
    let (rows, cols) = (700, 512);
    for (dtype, seed) in [(GgmlDType::Q8_0, 1), (GgmlDType::Q4_0, 2)] {
        let (blocks, dense) = quantized(rows, cols, dtype, seed);
        // 1 and 3 rows take the fused dot (3 × 700 × 512 is large enough for threads); 8 and
        // 21 the gemm over tiles, whole or 37 rows of W at a time.
        for (m, tile_weights) in [
            (1, super::TILE_WEIGHTS),
            (3, super::TILE_WEIGHTS),
            (8, super::TILE_WEIGHTS),
            (21, 37 * cols),
        ] {
            let mut rng = StdRng::seed_from_u64(seed * 100 + m as u64);
            let x: Vec<f32> = (0..m * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
            let xt = Tensor::from_slice(&x, (m, cols), &Device::Cpu).unwrap();
            let got = blocks.product(&xt, tile_weights).unwrap();
            assert_eq!(got.dims(), &[m, rows]);
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for r in 0..m {
                for o in 0..rows {
                    let want: f64 = (0..cols)
                        .map(|j| f64::from(x[r * cols + j]) * f64::from(dense[o * cols + j]))
                        .sum();
                    let g = f64::from(got[r * rows + o]);
                    assert!(
                        (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{dtype:?} m={m} [{r}, {o}]: {g} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_mismatched_product_is_refused() {
    let (blocks, _) = quantized(4, 64, GgmlDType::Q8_0, 3);
    let x = Tensor::zeros((2, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = blocks.forward(&x).unwrap_err().to_string();
    assert!(err.contains("[2, 32] times a [4, 64]^T"), "{err}");
}

#[test]
fn the_fused_dot_gives_the_same_bits_on_every_instruction_set() {
    for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
        let (blocks, _) = quantized(33, 256, dtype, 4);
        let mut rng = StdRng::seed_from_u64(5);
        let x: Vec<f32> = (0..3 * 256).map(|_| rng.random_range(-2.0..2.0)).collect();
        // The dispatching entry (AVX2 where the CPU has it) against the baseline build.
        let wide = blocks.fused_part(&x, 3, 0..33);
        let portable = blocks.fused_part_portable(&x, 3, 0..33);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&wide), bits(&portable), "{dtype:?}");
    }
}
