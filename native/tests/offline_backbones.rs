//! The original `config.yaml`, untouched but for overrides, trains offline with backbones in
//! local Hugging Face-layout folders (`../shared/fixtures/hub/{clip,gpt2}`): the model config is
//! completed from their config.json when the run starts, not refused when the file is read.

mod common;

use std::path::Path;
use std::process::Command;

use native::train::config::ProjectConfig;

/// The original config's overrides for the fixture backbones and the synthetic set in `data`.
fn overrides(data: &Path, exp: &Path) -> Vec<String> {
    let d = |p: &str| data.join(p).display().to_string();
    let mut over = common::fixture_backbones().to_vec();
    over.extend([
        format!("trainer.exp_dir={}", exp.display()),
        format!("dataset.train_ds.visual_dir={}", d("images/train")),
        format!("dataset.train_ds.json_path={}", d("train.json")),
        format!("dataset.validation_ds.visual_dir={}", d("images/val")),
        format!("dataset.validation_ds.json_path={}", d("val.json")),
        "+trainer.max_steps=2".into(),
    ]);
    over
}

/// `native train` with the original config and `extra` overrides.
fn train(over: &[String]) -> std::process::Output {
    let mut args = vec![
        "--threads".to_string(),
        "1".into(),
        "train".into(),
        "--config-path".into(),
        common::shared("original").display().to_string(),
        "--config-name".into(),
        "config.yaml".into(),
    ];
    args.extend_from_slice(over);
    Command::new(env!("CARGO_BIN_EXE_native"))
        .args(&args)
        .output()
        .unwrap()
}

#[test]
fn local_backbone_folders_train_with_the_original_config() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, exp) = (tmp.path().join("data"), tmp.path().join("runs"));
    common::synth_images(&data, 8, 4, 0, 2);
    let over = overrides(&data, &exp);

    // Reading the file no longer needs the backbones' configs.
    let cfg = ProjectConfig::load(&common::shared("original"), "config.yaml", &over).unwrap();
    assert!(cfg.model.vision.config.is_none() && cfg.model.text.config.is_none());

    // GPT-2's tokenizer (50257 ids) against the fixture GPT-2's 1000-token vocabulary: refused
    // in words before any step.
    let out = train(&over);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("dataset.tokenizer=gpt2 has 50257 tokens")
            && stderr.contains("has a vocabulary of 1000"),
        "{stderr}"
    );

    // With a tokenizer of its own the embedding is resized to it and the run trains.
    let mut over = over;
    over.push(format!(
        "dataset.tokenizer={}",
        data.join("tokenizer.json").display()
    ));
    let out = train(&over);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("trained 2 steps"));
    let last = cfg.run_dir().unwrap().join("checkpoints/last.safetensors");
    assert!(last.is_file(), "{}", last.display());
}
