//! Rounding to a kept grid of block scales (`trainer.block_scales=fixed|learned`).
//!
//! The export's own q4 search picks each block's scale from the weights, so a small change of
//! one weight can move the whole block's grid; under the straight-through estimator that makes
//! the rounded loss rough. Keeping the scales (the searched ones of the starting weights)
//! gives every weight a fixed grid to settle on, and `learned` also trains them (LSQ, Esser et
//! al. 2020: the gradient reaches the scale through `level × scale`). The export writes its
//! blocks with these scales (`caption_model::weights::block_scales`), so the folder holds
//! exactly what training computed with.

use anyhow::bail;
use candle_core::{DType, Tensor};
use caption_model::weights::block_scales::level_range;
use caption_model::weights::quant::{Layout, BLOCK};
use serde::{Deserialize, Serialize};

use crate::train::config::TrainerConfig;

/// Where quantization-aware training's block scales come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockScales {
    /// The export's scale search, redone on the current weights every step.
    #[default]
    Search,
    /// The searched scales of the starting weights, kept for the whole run.
    Fixed,
    /// Those scales, trained with the weights.
    Learned,
}

/// Refuses block-scale settings that cannot work: a kept grid without quantization-aware
/// training, learned scales under weight decay, a learning-rate multiple that is not a
/// number ≥ 0.
pub fn check_grid(trainer: &TrainerConfig, quant_aware: bool, weight_decay: f64) -> anyhow::Result<()> {
    let grid = trainer.block_scales;
    if grid != BlockScales::Search && !quant_aware {
        bail!("trainer.block_scales={grid:?} rounds to a q8/q4 grid: set trainer.quant_aware too");
    }
    if grid == BlockScales::Learned && weight_decay != 0.0 {
        // Decay would pull every scale towards zero, i.e. the grid onto a point.
        bail!("trainer.block_scales=learned needs model.optimizer.weight_decay=0");
    }
    let lr = trainer.block_scale_lr;
    if !(lr.is_finite() && lr >= 0.0) {
        bail!("trainer.block_scale_lr must be a number >= 0, not {lr}");
    }
    Ok(())
}

/// `w` (a state-dict tensor) rounded to the grid `scales` (`[rows, cols / 32]` in `layout`'s
/// matrix), as the export with those scales stores it: each scale read as f16, level =
/// clamp(round(w × (1 / scale))), value = level × scale. The gradient passes straight through
/// the rounding to `w` (zero where the level is clamped) and, LSQ-style, to `scales`.
pub fn round_to_grid(w: &Tensor, scales: &Tensor, layout: &Layout) -> anyhow::Result<Tensor> {
    let (lo, hi) = level_range(layout.scheme)?;
    let (rows, cols) = (layout.matrix[0], layout.matrix[1]);
    let m = if layout.transposed { w.t()? } else { w.clone() };
    let m = m.reshape((rows, cols / BLOCK, BLOCK))?;
    // The scale as the f16 the folder stores, its rounding invisible to the gradient.
    let stored = scales.detach().to_dtype(DType::F16)?.to_dtype(DType::F32)?;
    let s = (scales + (stored - scales)?.detach())?.unsqueeze(2)?;
    let x = m.broadcast_mul(&s.recip()?)?.clamp(lo, hi)?;
    let levels = (&x + (x.round()? - &x)?.detach())?;
    let back = levels.broadcast_mul(&s)?.reshape((rows, cols))?;
    let back = if layout.transposed {
        back.t()?
    } else {
        back.reshape(layout.shape.as_slice())?
    };
    Ok(back)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use caption_model::weights::block_scales::{encode_with_scales, searched_scales};
    use caption_model::weights::quant::{decode_blocks, plan, Quant};

    fn values(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 3000.0)
            .collect()
    }

    #[test]
    fn the_forward_is_what_the_export_with_those_scales_decodes_to() {
        for (name, shape, quant) in [
            ("mapper.mlp.0.weight", vec![8, 64], Quant::Q4),
            ("mapper.mlp.0.weight", vec![8, 64], Quant::Q8),
            // Quantized transposed.
            (
                "text_generator.lm.transformer.h.0.mlp.c_fc.weight",
                vec![64, 8],
                Quant::Q4,
            ),
            // A convolution: [out, in, kh, kw] → [out, in·kh·kw].
            (
                "vision_encoder.vision.vision_model.embeddings.patch_embedding.weight",
                vec![4, 2, 4, 4],
                Quant::Q4,
            ),
        ] {
            let n = shape.iter().product();
            let w = Tensor::from_vec(values(n), shape.as_slice(), &Device::Cpu).unwrap();
            let layout = plan(name, w.dims(), quant);
            // Searched scales, nudged so that they are not what the search would pick.
            let scales = (searched_scales(&w, &layout).unwrap() * 1.07).unwrap();
            let ours = round_to_grid(&w, &scales, &layout).unwrap();
            let export = encode_with_scales(&w, &layout, &scales).unwrap();
            let theirs = decode_blocks(&export, &layout).unwrap();
            assert_eq!(ours.dims(), w.dims());
            assert_eq!(
                ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "{name} {quant}"
            );
        }
    }

    #[test]
    fn gradients_pass_to_unclamped_weights_and_reach_the_scales_lsq_style() {
        let layout = plan("mapper.mlp.0.weight", &[1, 32], Quant::Q4);
        let mut v = values(32);
        v[0] = 1.0; // far beyond the grid: clamped to 7 levels
        let w = Var::from_tensor(&Tensor::from_vec(v.clone(), (1, 32), &Device::Cpu).unwrap()).unwrap();
        let d = 0.03125f32; // exact in f16; every value but the first stays inside ±8 levels
        let s = Var::from_tensor(&Tensor::full(d, (1, 1), &Device::Cpu).unwrap()).unwrap();
        let out = round_to_grid(w.as_tensor(), s.as_tensor(), &layout).unwrap();
        let grads = out.sum_all().unwrap().backward().unwrap();
        let grad = |v: &Var| {
            let g = grads.get(v.as_tensor()).unwrap();
            g.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let gw = grad(&w);
        assert_eq!(gw[0], 0.0);
        assert!(gw[1..].iter().all(|&g| g == 1.0), "{gw:?}");
        // d(sum level·s)/ds = Σ (level − w/s) inside the grid, + the clamped level outside.
        let want: f32 = v
            .iter()
            .map(|&x| {
                let r = x * (1.0 / d);
                if r > 7.0 {
                    7.0
                } else {
                    r.round() - r
                }
            })
            .sum();
        let gs = grad(&s);
        assert!((gs[0] - want).abs() < 1e-3, "{} vs {want}", gs[0]);
    }
}
