//! The original trainer's `.pt` checkpoint and our own checkpoint format.

mod common;

use candle_core::{DType, Device, Tensor};
use caption_model::weights::{load_model, read_original_pt, read_safetensors, save_checkpoint, WeightSource};
use caption_model::{CaptionModel, ModelConfig};
use common::{fixture, max_abs};

fn seed_config() -> ModelConfig {
    ModelConfig::from_file(fixture("fixtures/seed/mlp_resampler/config.json")).unwrap()
}

fn checkpoint_logits(model: &CaptionModel) -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    let io = read_safetensors(&fixture("fixtures/seed_checkpoint/io.safetensors"), &dev).unwrap();
    let tokens = io["tokens"].to_dtype(DType::U32).unwrap();
    let mask = CaptionModel::frame_mask(&[1], 1, &dev).unwrap();
    let tokens_mask = Tensor::ones(tokens.dims(), DType::F32, &dev).unwrap();
    let (_, logits) = model.forward(&io["video"], &mask, &tokens, &tokens_mask).unwrap();
    (logits, io["logits"].clone())
}

#[test]
fn original_pt_checkpoint_reproduces_its_logits() {
    let pt = fixture("fixtures/seed_checkpoint/mlp_resampler-epoch3.pt");
    let model = load_model(WeightSource::OriginalPt(&pt), Some(&seed_config()), &Device::Cpu).unwrap();
    let (got, want) = checkpoint_logits(&model);
    let d = max_abs(&got, &want);
    println!(".pt checkpoint logits max abs diff {d:e}");
    assert!(d < 1e-4);
}

#[test]
fn pt_without_config_is_a_clear_error() {
    let pt = fixture("fixtures/seed_checkpoint/mlp_resampler-epoch3.pt");
    let err = load_model(WeightSource::OriginalPt(&pt), None, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("config"), "{err}");
}

#[test]
fn our_checkpoint_round_trips_with_its_config() {
    let pt = fixture("fixtures/seed_checkpoint/mlp_resampler-epoch3.pt");
    let tensors = read_original_pt(&pt).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_checkpoint(&path, &seed_config(), &tensors).unwrap();
    // Our own format loses nothing: every tensor and the logits are bit-identical to the
    // `.pt`'s; only the reference comparison carries a float tolerance.
    let saved = read_safetensors(&path, &Device::Cpu).unwrap();
    assert_eq!(saved.len(), tensors.len());
    for (name, t) in &tensors {
        assert_eq!(max_abs(&saved[name], t), 0.0, "{name}");
    }
    let model = load_model(WeightSource::Safetensors(&path), None, &Device::Cpu).unwrap();
    assert_eq!(model.config(), &seed_config());
    let direct = load_model(WeightSource::OriginalPt(&pt), Some(&seed_config()), &Device::Cpu).unwrap();
    let (got, want) = checkpoint_logits(&model);
    assert_eq!(max_abs(&got, &checkpoint_logits(&direct).0), 0.0);
    assert!(max_abs(&got, &want) < 1e-4);
}

#[test]
fn wrong_shape_and_missing_tensor_name_the_tensor() {
    let dev = Device::Cpu;
    let path = fixture("fixtures/seed/mlp_resampler/weights.safetensors");
    let mut tensors = read_safetensors(&path, &dev).unwrap();
    let name = "resampler.latents";
    tensors.insert(name.into(), Tensor::zeros((7, 64), DType::F32, &dev).unwrap());
    let err = caption_model::weights::model_from_tensors(&seed_config(), tensors.clone(), &dev)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(name) && err.contains("[7, 64]") && err.contains("[8, 64]"),
        "{err}"
    );
    tensors.remove(name);
    let err = caption_model::weights::model_from_tensors(&seed_config(), tensors, &dev)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing tensor `resampler.latents`") && err.contains("[8, 64]"),
        "{err}"
    );
}

#[test]
fn weights_of_another_config_are_refused() {
    // mlp_resampler weights have a cross-attention block at h.1, which freq 2 does not expect.
    let mut cfg = seed_config();
    cfg.text.xattn.freq = 2;
    let path = fixture("fixtures/seed/mlp_resampler/weights.safetensors");
    let err = load_model(WeightSource::Safetensors(&path), Some(&cfg), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("h.1"), "{err}");
}
