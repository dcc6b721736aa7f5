//! Trained block scales: quantized blocks whose f16 scales come from training instead of the
//! exporter's own search.
//!
//! Quantization-aware training with `trainer.block_scales` keeps one scale per 32-value block
//! of every quantized matrix and rounds the weights to that grid. Its checkpoints carry them
//! as `<name>.q4_0_scale` / `<name>.q8_0_scale` (`[rows, cols / 32]`, the matrix layout of
//! [`super::quant::plan`], f32 holding the f16 value), and an export in that scheme writes the
//! blocks with them: level = clamp(round(value × (1 / scale))), exactly what training computed.
//! The bytes are ordinary GGML blocks; only the choice of scale differs.

use candle_core::{DType, Device, Tensor};
use half::f16;

use super::q4_search::push_block;
use super::quant::{encode, Layout, Scheme, BLOCK};
use crate::{Error, Result};

/// The checkpoint name of the block scales of tensor `name` in `scheme`.
pub fn scale_name(name: &str, scheme: Scheme) -> Option<String> {
    scheme.suffix().map(|s| format!("{name}.{s}_scale"))
}

/// Whether a checkpoint tensor name is a block-scale entry.
pub fn is_scale_name(name: &str) -> bool {
    Scheme::QUANTIZED.into_iter().filter_map(|s| s.suffix()).any(|s| {
        name.strip_suffix("_scale")
            .is_some_and(|n| n.ends_with(&format!(".{s}")))
    })
}

/// Splits the block-scale entries off a list of checkpoint tensors: (model tensors, scales).
pub fn split_block_scales<I, C>(tensors: I) -> (C, Vec<(String, Tensor)>)
where
    I: IntoIterator<Item = (String, Tensor)>,
    C: Default + Extend<(String, Tensor)>,
{
    let (mut model, mut scales) = (C::default(), Vec::new());
    for (name, t) in tensors {
        if is_scale_name(&name) {
            scales.push((name, t));
        } else {
            model.extend([(name, t)]);
        }
    }
    (model, scales)
}

/// The lowest and highest level of a quantized scheme (`Q4_0`: -8..=7; `Q8_0`: ±127, as GGML
/// writes it).
pub fn level_range(scheme: Scheme) -> Result<(f32, f32)> {
    match scheme {
        Scheme::Q4_0 => Ok((-8.0, 7.0)),
        Scheme::Q8_0 => Ok((-127.0, 127.0)),
        other => Err(Error::Weights(format!("{other:?} has no block scales"))),
    }
}

/// The scales the exporter itself would choose for `t` (state-dict tensor) under `layout`,
/// `[rows, cols / 32]`; an all-zero block gets the smallest normal f16 so that dividing by it
/// stays finite (its levels are 0 whatever the scale).
pub fn searched_scales(t: &Tensor, layout: &Layout) -> Result<Tensor> {
    level_range(layout.scheme)?; // only the block schemes have scales
    let block_bytes = layout.scheme.row_bytes(BLOCK).unwrap_or(BLOCK);
    let bytes = encode(t, layout)?;
    let scales: Vec<f32> = bytes
        .chunks_exact(block_bytes)
        .map(|b| match f16::from_le_bytes([b[0], b[1]]).to_f32() {
            0.0 => f16::MIN_POSITIVE.to_f32(),
            d => d,
        })
        .collect();
    let (rows, cols) = (layout.matrix[0], layout.matrix[1]);
    Ok(Tensor::from_vec(scales, (rows, cols / BLOCK), &Device::Cpu)?)
}

/// `t` (state-dict tensor) as `layout`'s blocks with the given scales (`[rows, cols / 32]`,
/// read as f16).
pub fn encode_with_scales(t: &Tensor, layout: &Layout, scales: &Tensor) -> Result<Vec<u8>> {
    let (lo, hi) = level_range(layout.scheme)?;
    let (rows, cols) = (layout.matrix[0], layout.matrix[1]);
    if scales.dims() != [rows, cols / BLOCK] {
        return Err(Error::Weights(format!(
            "block scales {:?} do not fit a [{rows}, {cols}] matrix (want [{rows}, {}])",
            scales.dims(),
            cols / BLOCK
        )));
    }
    let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let t = if layout.transposed { t.t()? } else { t };
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    let scales = scales
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut out = Vec::with_capacity(values.len() / BLOCK * (2 + BLOCK));
    for (block, &s) in values.chunks_exact(BLOCK).zip(&scales) {
        let d = f16::from_f32(s);
        let d32 = d.to_f32();
        if !d32.is_finite() || d32 == 0.0 {
            return Err(Error::Weights(format!(
                "a block scale of {s} cannot be stored as f16"
            )));
        }
        // The same f32 arithmetic as training's forward pass (and the search's): multiply by
        // the reciprocal, clamp, round.
        let inv = 1.0 / d32;
        let levels: [i8; BLOCK] = std::array::from_fn(|i| (block[i] * inv).clamp(lo, hi).round() as i8);
        match layout.scheme {
            Scheme::Q4_0 => push_block(&mut out, d, &levels),
            _ => {
                out.extend_from_slice(&d.to_le_bytes());
                out.extend(levels.iter().map(|&l| l as u8));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::quant::{decode_blocks, plan, round_trip, Quant};

    fn matrix(rows: usize, cols: usize) -> Tensor {
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 3000.0)
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn scale_names_are_recognised_and_split_off() {
        let n = scale_name("a.weight", Scheme::Q4_0).unwrap();
        assert_eq!(n, "a.weight.q4_0_scale");
        assert!(is_scale_name(&n) && is_scale_name("a.weight.q8_0_scale"));
        assert!(!is_scale_name("a.weight") && !is_scale_name("a.q4_0") && !is_scale_name("x_scale"));
        assert_eq!(scale_name("a", Scheme::F16), None);
        let t = Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap();
        let (model, scales): (Vec<_>, _) =
            split_block_scales([("a.weight".to_string(), t.clone()), (n.clone(), t)]);
        assert_eq!(model.len(), 1);
        assert_eq!(scales[0].0, n);
    }

    #[test]
    fn the_searched_scales_reproduce_the_exporters_own_blocks() {
        // q4 exactly (the search rounds with the stored f16 scale), also for a GPT-2 Conv1D
        // weight (quantized transposed); q8 within one level where GGML rounded with the f32
        // scale before storing it as f16.
        for (name, quant) in [
            ("mapper.mlp.0.weight", Quant::Q4),
            ("text_generator.lm.transformer.h.0.mlp.c_fc.weight", Quant::Q4),
            ("mapper.mlp.0.weight", Quant::Q8),
        ] {
            let t = matrix(64, 96);
            let layout = plan(name, t.dims(), quant);
            let scales = searched_scales(&t, &layout).unwrap();
            assert_eq!(scales.dims(), [layout.matrix[0], layout.matrix[1] / BLOCK]);
            let ours = decode_blocks(&encode_with_scales(&t, &layout, &scales).unwrap(), &layout).unwrap();
            let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let theirs = round_trip(name, &t, quant).unwrap();
            let theirs = theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            if quant == Quant::Q4 {
                assert_eq!(ours, theirs, "{name}");
                continue;
            }
            let step = scales
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let differ = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
            assert!(
                differ * 50 < ours.len(),
                "{differ} of {} values differ",
                ours.len()
            );
            assert!(ours
                .iter()
                .zip(&theirs)
                .all(|(a, b)| (a - b).abs() <= step * 1.001));
        }
    }

    #[test]
    fn given_scales_set_the_grid_and_clamp_the_levels() {
        let t = matrix(2, 32);
        let layout = plan("mapper.mlp.0.weight", t.dims(), Quant::Q4);
        // A scale of 0.01: values beyond ±0.08 clamp to the end levels.
        let scales = Tensor::full(0.01f32, (2, 1), &Device::Cpu).unwrap();
        let back = decode_blocks(&encode_with_scales(&t, &layout, &scales).unwrap(), &layout).unwrap();
        let d = f16::from_f32(0.01).to_f32();
        let want: Vec<f32> = t
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| (v * (1.0 / d)).clamp(-8.0, 7.0).round() * d)
            .collect();
        assert_eq!(back.flatten_all().unwrap().to_vec1::<f32>().unwrap(), want);
        let wrong = Tensor::full(0.01f32, (1, 2), &Device::Cpu).unwrap();
        assert!(encode_with_scales(&t, &layout, &wrong).is_err());
        let zero = Tensor::zeros((2, 1), DType::F32, &Device::Cpu).unwrap();
        assert!(encode_with_scales(&t, &layout, &zero).is_err());
    }
}
