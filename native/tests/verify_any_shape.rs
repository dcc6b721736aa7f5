//! `verify` reads sizes from the directory it is given: a fixture of another shape (other
//! widths, heads, activations, freq, batch and frame counts, greedy length) written by our own
//! model runs through it. This checks generality only; parity is `verify.rs`'s job.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use caption_model::weights::{var_builder, RandomInit, ShapeRecorder};
use caption_model::{caption_loss, CaptionModel, ModelConfig};
use native::verify::verify_dir;

const CONFIG: &str = r#"{"model": {
  "enable_mapper": true, "enable_resampler_xattn": true,
  "vision": {"pretrained_name": "x", "config": {"hidden_size": 48, "intermediate_size": 80,
     "num_hidden_layers": 3, "num_attention_heads": 6, "image_size": 32, "patch_size": 8,
     "hidden_act": "gelu"}},
  "mapper": {"mapper_type": "transformer", "depth": 1, "heads": 3, "dim_feedforward": 40},
  "resampler": {"depth": 3, "dim_head": 8, "heads": 2, "num_latents": 5, "num_time_embeds": 6,
     "ff_mult": 2, "activation": "sqrelu"},
  "text": {"pretrained_name": "y",
     "xattn": {"dim_head": 12, "heads": 2, "ff_mult": 3, "activation": "relu", "freq": 3},
     "config": {"vocab_size": 97, "n_positions": 40, "n_embd": 48, "n_layer": 4, "n_head": 3,
        "bos_token_id": 96, "eos_token_id": 95}}}}"#;

#[test]
fn verify_handles_a_directory_of_another_shape() {
    let dev = Device::Cpu;
    let cfg = ModelConfig::from_str_any(CONFIG).unwrap();
    let model = CaptionModel::new(&cfg, var_builder(RandomInit::new(5), DType::F32, &dev)).unwrap();
    let recorder = ShapeRecorder::default();
    CaptionModel::new(&cfg, var_builder(recorder.clone(), DType::F32, &dev)).unwrap();
    // RandomInit's values depend only on the seed and the name: these are the model's weights.
    let vb = var_builder(RandomInit::new(5), DType::F32, &dev);
    let weights: HashMap<String, Tensor> = recorder
        .shapes()
        .into_iter()
        .map(|(name, shape)| (name.clone(), vb.get(shape, &name).unwrap()))
        .collect();

    let (b, t, l) = (3, 4, 6);
    let video = Tensor::randn(0f32, 1.0, (b, t, 3, 32, 32), &dev).unwrap();
    let lengths = [4usize, 2, 1];
    let mask = CaptionModel::frame_mask(&lengths, t, &dev).unwrap();
    let tokens = Tensor::new(
        &[
            [96u32, 5, 7, 95, 0, 0],
            [96, 1, 95, 0, 0, 0],
            [96, 3, 4, 5, 6, 95],
        ],
        &dev,
    )
    .unwrap();
    let tokens_mask = tokens.ne(0u32).unwrap().to_dtype(DType::F32).unwrap();
    let (visual, logits) = model.forward(&video, &mask, &tokens, &tokens_mask).unwrap();
    assert_eq!(logits.dims(), &[b, l, 97]);
    let loss = caption_loss(&logits, &tokens).unwrap().reshape(1).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), CONFIG).unwrap();
    candle_core::safetensors::save(&weights, dir.path().join("weights.safetensors")).unwrap();
    // Greedy tokens: seven steps, taken from a first verify pass with a placeholder.
    let mut io = HashMap::from([
        ("video".to_string(), video),
        (
            "video_length".to_string(),
            Tensor::new(&[4i64, 2, 1], &dev).unwrap(),
        ),
        ("tokens".to_string(), tokens.to_dtype(DType::I64).unwrap()),
        ("tokens_mask".to_string(), tokens_mask),
        ("mapped_prefix".to_string(), visual.prefix),
        ("resampled".to_string(), visual.latents.unwrap()),
        ("logits".to_string(), logits),
        ("loss".to_string(), loss),
        (
            "greedy_tokens_image0".to_string(),
            Tensor::zeros(8, DType::I64, &dev).unwrap(),
        ),
    ]);
    let io_path = dir.path().join("io.safetensors");
    candle_core::safetensors::save(&io, &io_path).unwrap();
    let first = verify_dir(dir.path(), &Device::Cpu).unwrap();
    assert!(first.checks.iter().all(|c| c.passed()), "{:?}", first.lines());
    let (_, produced) = first.greedy.unwrap();
    assert_eq!(produced[0], 96, "starts from the config's bos");
    assert!(produced.len() <= 8 && (produced.len() == 8 || produced.last() == Some(&95)));
    let ids: Vec<i64> = produced.iter().map(|&x| x as i64).collect();
    io.insert(
        "greedy_tokens_image0".into(),
        Tensor::new(ids.as_slice(), &dev).unwrap(),
    );
    candle_core::safetensors::save(&io, &io_path).unwrap();
    assert!(verify_dir(dir.path(), &Device::Cpu).unwrap().passed());
}
