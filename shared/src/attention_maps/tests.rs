//! The grid maths, and the maps of the shipped default model (`web/model`).

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

use super::*;
use crate::weights::{load_folder, FolderBytes, LoadedFolder};

#[test]
fn grids_sum_to_one_and_peak_at_the_largest_cell() {
    let g = Grid::normalised(2, 3, &[0.0, 1.0, 3.0, 0.0, 4.0, 2.0]).unwrap();
    assert_eq!(g.values, vec![0.0, 0.1, 0.3, 0.0, 0.4, 0.2]);
    assert_eq!(g.peak(), (1, 1));
    // All zero: uniform, not NaN.
    let z = Grid::normalised(1, 4, &[0.0; 4]).unwrap();
    assert_eq!(z.values, vec![0.25; 4]);
    assert!(Grid::normalised(2, 2, &[1.0; 3]).is_err());
    assert!(Grid::normalised(1, 2, &[1.0, -1.0]).is_err());
    assert!(Grid::normalised(1, 2, &[1.0, f32::NAN]).is_err());
}

/// CLS (first of each frame) is dropped; each frame's grid sums to 1 and the frames' shares
/// are their patch mass.
#[test]
fn token_maps_drop_cls_and_split_frames() {
    // Two frames of CLS + 2x1 patches.
    let scores = vec![vec![9.0, 1.0, 3.0, 9.0, 2.0, 2.0]];
    let maps = token_maps(&[7], &scores, 2, 2, 1).unwrap();
    let m = &maps[0];
    assert_eq!(m.token, 7);
    assert_eq!(m.frames[0].values, vec![0.25, 0.75]);
    assert_eq!(m.frames[1].values, vec![0.5, 0.5]);
    assert_eq!(m.frame_weights, vec![0.5, 0.5]);
    assert!(token_maps(&[7], &scores, 3, 2, 1).is_err());
    assert!(token_maps(&[7, 8], &scores, 2, 2, 1).is_err());
}

#[test]
fn method_names_round_trip() {
    for m in MapMethod::ALL {
        assert_eq!(m.name().parse::<MapMethod>().unwrap(), m);
    }
    assert!("attention".parse::<MapMethod>().is_err());
}

fn default_model() -> LoadedFolder {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web/model");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let (manifest, model, tokenizer) = (
        read("manifest.json"),
        read("model.safetensors"),
        read("tokenizer.json"),
    );
    load_folder(
        FolderBytes {
            manifest: &manifest,
            model: &model,
            tokenizer: &tokenizer,
        },
        &Device::Cpu,
    )
    .unwrap()
}

/// A seeded picture at the model's size (values in CLIP's normalised range).
fn picture(seed: u32, size: usize) -> Vec<f32> {
    (0..3 * size * size)
        .map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 16) % 200) as f32 / 100.0 - 1.0)
        .collect()
}

#[test]
fn grid_shape_comes_from_the_vision_config() {
    let m = default_model();
    // 48 px images, 16 px patches.
    assert_eq!(grid_shape(m.model.config()).unwrap(), (3, 3));
    let mut cfg = m.model.config().clone();
    cfg.vision.config.as_mut().unwrap().patch_size = 32;
    cfg.vision.config.as_mut().unwrap().image_size = 224;
    assert_eq!(grid_shape(&cfg).unwrap(), (7, 7));
}

/// Every method gives one 3x3 grid per frame per token, each summing to 1, and the rollout's
/// weights come from the same model the decoder runs: the traced pass's logits equal
/// `text_logits`.
#[test]
fn every_method_maps_every_token_of_a_clip() {
    let m = default_model();
    let model = &m.model;
    let (a, b) = (picture(1, 48), picture(2, 48));
    let tokens = [5, 9, 12];
    for method in MapMethod::ALL {
        let maps = word_maps(model, &[&a, &b], &tokens, method).unwrap();
        assert_eq!(maps.len(), 3, "{method}");
        for (map, &tok) in maps.iter().zip(&tokens) {
            assert_eq!(map.token, tok);
            assert_eq!(map.frames.len(), 2);
            let w: f32 = map.frame_weights.iter().sum();
            assert!((w - 1.0).abs() < 1e-5, "{method}: frame weights sum {w}");
            for g in &map.frames {
                assert_eq!((g.rows, g.cols), (3, 3));
                let s: f32 = g.values.iter().sum();
                assert!((s - 1.0).abs() < 1e-5, "{method}: grid sums to {s}");
                assert!(g.values.iter().all(|v| *v >= 0.0));
            }
        }
        // Not a constant map: the picture matters.
        let g = &maps[0].frames[0].values;
        assert!(
            g.iter().any(|v| (v - g[0]).abs() > 1e-4),
            "{method}: flat map {g:?}"
        );
    }
    // Refusals in words.
    assert!(word_maps(model, &[], &tokens, MapMethod::Rollout).is_err());
    assert!(word_maps(model, &[&a[1..]], &tokens, MapMethod::Rollout).is_err());
    assert!(word_maps(model, &[&a], &[999], MapMethod::Rollout).is_err());
    let generic = ready(rollout_maps_async(model, &[&a], &tokens, MapMethod::Gradient)).unwrap();
    assert!(generic.is_err());
}

#[test]
fn the_traced_pass_is_the_decoders_model() {
    let m = default_model();
    let model = &m.model;
    let a = picture(3, 48);
    let video = frames_tensor(model.config(), &[&a]).unwrap();
    let text = with_bos(model.config(), &[5, 9, 12]).unwrap();
    let mask = CaptionModel::frame_mask(&[1], 1, &Device::Cpu).unwrap();
    let visual = model.visual(&video, &mask).unwrap();
    let ids = Tensor::new(&text[..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let ones = Tensor::ones(ids.dims(), DType::F32, &Device::Cpu).unwrap();
    let want = model.text_logits(&visual, &ids, &ones).unwrap();
    // The traced pass over the same input: its hidden states give the same logits.
    let features = model.encode_frames(&video, &mask).unwrap();
    let (latents, layers) = model
        .resampler()
        .unwrap()
        .forward_traced(&features, &mask)
        .unwrap();
    assert_eq!(layers.len(), model.config().resampler.depth);
    let prefix = model.prefix_from_features(&features, &mask).unwrap();
    let x = Tensor::cat(&[&prefix, &model.text().embed(&ids).unwrap()], 1).unwrap();
    let s = x.dim(1).unwrap();
    let bias = crate::nn::causal_bias(s, s, 0, DType::F32, &Device::Cpu).unwrap();
    let media = model.text().media_kv(&latents).unwrap();
    let (hidden, xattn) = model.text().forward_blocks_traced(&x, &bias, &media).unwrap();
    assert_eq!(xattn.len(), 2);
    // Position T-1 predicts bos, as in text_logits.
    let start = prefix.dim(1).unwrap() - 1;
    let got = model
        .text()
        .norm_logits(&hidden.narrow(1, start, text.len()).unwrap())
        .unwrap();
    let diff = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    // And the rollout's latent weights are probability rows.
    let traced = ready(trace(
        model,
        &frames_tensor(model.config(), &[&a]).unwrap(),
        &text,
    ))
    .unwrap()
    .unwrap();
    for w in traced.xattn.iter().chain(&traced.resampler) {
        for r in 0..w.rows {
            let s: f32 = w.row(r).iter().sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
    }
}

/// The shipped model's word-level tokenizer: one token per word, eos without text.
#[test]
fn tokens_get_their_words() {
    let m = default_model();
    let ids = m.tokenizer.encode("a red circle on the left").unwrap();
    let mut tokens = ids.clone();
    tokens.push(m.tokenizer.eos());
    let t = token_texts(&m.tokenizer, &tokens).unwrap();
    let words: Vec<&str> = t.iter().map(|t| t.word.as_str()).collect();
    assert_eq!(words, ["a", "red", "circle", "on", "the", "left", ""]);
    assert_eq!(t[2].word_index, 2);
    assert_eq!(t[2].text, "circle");
}
