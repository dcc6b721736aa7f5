//! A bridge-only checkpoint takes its backbones from the config's `pretrained_name`s: here
//! local directories in the Hugging Face layout (the same path serves hub downloads).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use caption_model::weights::{read_safetensors, save_checkpoint};
use caption_model::{CaptionModel, ModelConfig};
use native::load::load_model;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures")).join(rel)
}

#[test]
fn bridge_checkpoint_plus_hub_directories_reproduce_the_seed_logits() {
    let dev = Device::Cpu;
    let seed = fixture("seed/mlp_resampler");
    let mut cfg = ModelConfig::from_file(seed.join("config.json")).unwrap();
    // Backbone configs and weights now come from the hub-layout folders.
    cfg.vision.config = None;
    cfg.text.config = None;
    cfg.vision.pretrained_name = fixture("hub/clip").display().to_string();
    cfg.text.pretrained_name = fixture("hub/gpt2").display().to_string();
    let bridge: HashMap<String, Tensor> = read_safetensors(&seed.join("weights.safetensors"), &dev)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| cfg.is_trainable(k))
        .collect();
    assert_eq!(bridge.len(), 54);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("bridge.safetensors");
    save_checkpoint(&ckpt, &cfg, &bridge).unwrap();

    let model = load_model(&ckpt, None, &dev).unwrap();
    assert_eq!(
        model.config().text_config().unwrap().vocab_size,
        1000,
        "read from hub/gpt2/config.json"
    );
    let io = read_safetensors(&seed.join("io.safetensors"), &dev).unwrap();
    let lengths: Vec<usize> = io["video_length"]
        .to_vec1::<i64>()
        .unwrap()
        .iter()
        .map(|&l| l as usize)
        .collect();
    let mask = CaptionModel::frame_mask(&lengths, 3, &dev).unwrap();
    let tokens = io["tokens"].to_dtype(DType::U32).unwrap();
    let (_, logits) = model
        .forward(&io["video"], &mask, &tokens, &io["tokens_mask"])
        .unwrap();
    let diff = native::verify::max_abs_diff(&logits, &io["logits"]).unwrap();
    println!("bridge + hub backbones: logits max abs diff {diff:e}");
    assert!(diff < 1e-4);
}

#[test]
fn a_missing_backbone_is_a_clear_error() {
    let mut cfg = ModelConfig::from_file(fixture("seed/mlp_resampler/config.json")).unwrap();
    cfg.vision.pretrained_name = "/nonexistent/clip-dir/".into();
    cfg.vision.config = None;
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("empty.safetensors");
    save_checkpoint(&ckpt, &cfg, &HashMap::new()).unwrap();
    let err = format!("{:#}", load_model(&ckpt, None, &Device::Cpu).unwrap_err());
    assert!(err.contains("/nonexistent/clip-dir/"), "{err}");
}
