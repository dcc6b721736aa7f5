//! Helpers shared by the integration tests: synthetic datasets and `native train` arguments.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use native::synth::word_tokenizer::write_word_tokenizer;
use native::synth::{generate_dataset, SynthOptions};

/// The repository's `configs/` folder.
pub fn configs() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"))
}

/// A file of `../shared` (the team's read-only data).
pub fn shared(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")).join(rel)
}

/// Overrides that take the backbones from the fixture hub-layout folders
/// (`../shared/fixtures/hub/{clip,gpt2}`).
pub fn fixture_backbones() -> [String; 2] {
    [
        format!(
            "model.vision.pretrained_name={}",
            shared("fixtures/hub/clip").display()
        ),
        format!(
            "model.text.pretrained_name={}",
            shared("fixtures/hub/gpt2").display()
        ),
    ]
}

/// Writes a synthetic image dataset (64 px) and its word-level tokenizer into `dir`.
pub fn synth_images(dir: &Path, train: usize, val: usize, test: usize, seed: u64) {
    let opts = SynthOptions {
        out: dir.to_path_buf(),
        train,
        val,
        test,
        videos_train: 0,
        videos_val: 0,
        videos_test: 0,
        size: 48,
        frames: 4,
        seed,
    };
    generate_dataset(&opts).unwrap();
    write_word_tokenizer(dir).unwrap();
}

/// `native train` arguments for `configs/synth.yaml` on the synthetic images in `data`,
/// writing under `exp`, followed by `extra` overrides.
pub fn synth_train_args(data: &Path, exp: &Path, extra: &[String]) -> Vec<String> {
    let d = |p: &str| data.join(p).display().to_string();
    let mut args = vec![
        "train".to_string(),
        "--config-path".into(),
        configs().display().to_string(),
        "--config-name".into(),
        "synth.yaml".into(),
        format!("trainer.exp_dir={}", exp.display()),
        format!("dataset.train_ds.visual_dir={}", d("images/train")),
        format!("dataset.train_ds.json_path={}", d("train.json")),
        format!("dataset.validation_ds.visual_dir={}", d("images/val")),
        format!("dataset.validation_ds.json_path={}", d("val.json")),
        format!("dataset.test_ds.visual_dir={}", d("images/test")),
        format!("dataset.test_ds.json_path={}", d("test.json")),
        format!("dataset.tokenizer={}", d("tokenizer.json")),
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs the `native` binary with `args`, panicking with its stderr when it fails.
pub fn run_native(args: &[String]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_native"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Trains on one thread on the synthetic data in `data` (`synth.yaml` plus `extra`), runs
/// under `exp`.
pub fn train_synth(data: &Path, exp: &Path, extra: &[String]) {
    let mut args = vec!["--threads".to_string(), "1".into()];
    args.extend(synth_train_args(data, exp, extra));
    run_native(&args);
}

/// step → value of the last `kind` line logged for each step of `run_dir/metrics.jsonl`.
pub fn logged(run_dir: &Path, kind: &str) -> BTreeMap<u64, f64> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == kind)
        .map(|v| (v["step"].as_u64().unwrap(), v["value"].as_f64().unwrap()))
        .collect()
}
pub mod batches;
pub mod http_zip;
pub mod scenes;

/// A fresh model of `configs/synth.yaml` with `overrides`: seeded weights (cross-attention
/// gates opened to 0.5) in `dtype`, its config and its trainable parameters.
pub fn fresh_synth_model(
    overrides: &[String],
    seed: u64,
    dtype: candle_core::DType,
) -> (
    caption_model::ModelConfig,
    caption_model::CaptionModel,
    native::train::TrainableParams,
) {
    use native::train::init::{initial_tensors, FreshInit};
    let cfg = native::train::config::ProjectConfig::load(&configs(), "synth.yaml", overrides).unwrap();
    let mcfg = cfg.model;
    let dev = candle_core::Device::Cpu;
    let fresh = FreshInit {
        seed,
        gate: 0.5,
        ..Default::default()
    };
    let tensors: std::collections::HashMap<_, _> = initial_tensors(&mcfg, Default::default(), &fresh, &dev)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.to_dtype(dtype).unwrap()))
        .collect();
    let (model, params) = native::train::trainable_model(&mcfg, tensors, dtype, &dev).unwrap();
    (mcfg, model, params)
}

/// Two captions of the synthetic vocabulary (the second one token shorter, padded) and their
/// mask in `dtype`.
pub fn two_captions(dtype: candle_core::DType) -> (candle_core::Tensor, candle_core::Tensor) {
    use candle_core::{Device, Tensor};
    let tokens = Tensor::new(&[[2u32, 5, 9, 11, 2], [2, 7, 3, 2, 0]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1f32, 1., 1., 1., 1.], [1., 1., 1., 1., 0.]], &Device::Cpu).unwrap();
    (tokens, mask.to_dtype(dtype).unwrap())
}
