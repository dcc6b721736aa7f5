//! Training-time dropout: inactive by default (the fixtures' eval mode), the right rate and
//! scale when on, reproducible from its seed, and wired into GPT-2 and the transformer mapper.

mod common;

use candle_core::{DType, Device, Module, Tensor};
use caption_model::dropout::{Dropout, DropoutRng};
use caption_model::weights::{model_from_tensors, read_safetensors};
use caption_model::{CaptionModel, ModelConfig};
use common::{fixture, max_abs};

fn ones(n: usize) -> Tensor {
    Tensor::ones((n, 100), DType::F32, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn dropout_is_the_identity_until_enabled() {
    let x = ones(10);
    let y = Dropout::new(0.5).forward(&x).unwrap();
    assert_eq!(values(&y), values(&x));
}

#[test]
fn enabled_dropout_zeroes_p_of_the_elements_and_rescales_the_rest() {
    let rng = DropoutRng::new(7);
    let mut drop = Dropout::new(0.25);
    drop.enable(&rng);
    let y = values(&drop.forward(&ones(400)).unwrap());
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((zeros - 0.25).abs() < 0.01, "dropped fraction {zeros}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
}

#[test]
fn masks_repeat_after_a_reseed_and_differ_between_seeds() {
    let rng = DropoutRng::new(0);
    let mut drop = Dropout::new(0.5);
    drop.enable(&rng);
    let x = ones(20);
    rng.reseed(42);
    let a = values(&drop.forward(&x).unwrap());
    let b = values(&drop.forward(&x).unwrap());
    rng.reseed(42);
    let c = values(&drop.forward(&x).unwrap());
    assert_eq!(a, c, "the same seed gives the same mask");
    assert_ne!(a, b, "the next draw is another mask");
}

fn fixture_model(variant: &str) -> (CaptionModel, Tensor) {
    let dev = Device::Cpu;
    let dir = fixture(&format!("fixtures/seed/{variant}"));
    let cfg = ModelConfig::from_file(dir.join("config.json")).unwrap();
    let weights = read_safetensors(&dir.join("weights.safetensors"), &dev).unwrap();
    let model = model_from_tensors(&cfg, weights, &dev).unwrap();
    let io = read_safetensors(&dir.join("io.safetensors"), &dev).unwrap();
    (model, io["video"].clone())
}

/// Logits of the fixture's video with a fixed caption.
fn logits(model: &CaptionModel, video: &Tensor) -> Tensor {
    let (b, t) = (video.dim(0).unwrap(), video.dim(1).unwrap());
    let dev = Device::Cpu;
    let frame_mask = Tensor::ones((b, t), DType::F32, &dev).unwrap();
    let tokens = Tensor::new(&[999u32, 5, 17, 42, 999], &dev)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let tokens = tokens.repeat((b, 1)).unwrap();
    let tokens_mask = Tensor::ones(tokens.dims(), DType::F32, &dev).unwrap();
    model
        .forward(video, &frame_mask, &tokens, &tokens_mask)
        .unwrap()
        .1
}

#[test]
fn with_dropout_changes_training_logits_and_leaves_the_eval_model_alone() {
    // GPT-2's pdrops default to Hugging Face's 0.1 and the transformer mapper's to PyTorch's 0.1.
    let (model, video) = fixture_model("transformer_mapper_freq2");
    let eval = logits(&model, &video);
    let rng = DropoutRng::new(3);
    let train = model.with_dropout(&rng);
    rng.reseed(1);
    let a = logits(&train, &video);
    rng.reseed(1);
    let b = logits(&train, &video);
    assert_eq!(max_abs(&a, &b), 0.0, "same seed, same training forward");
    assert!(max_abs(&a, &eval) > 1e-3, "dropout left the logits unchanged");
    assert_eq!(
        max_abs(&logits(&model, &video), &eval),
        0.0,
        "the eval model must not drop"
    );
}
