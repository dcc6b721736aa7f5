//! Config parsing: the original's files are accepted as they are, mistakes are named.

mod common;

use caption_model::config::MapperType;
use caption_model::nn::Activation;
use caption_model::ModelConfig;
use common::fixture;

#[test]
fn original_config_yaml_is_accepted() {
    let cfg = ModelConfig::from_file(fixture("original/config.yaml")).unwrap();
    assert!(cfg.enable_mapper && cfg.enable_resampler_xattn);
    assert_eq!(cfg.resampler.num_time_embeds, 500);
    assert_eq!(cfg.text.xattn.heads, 6);
    let opt = cfg.optimizer.clone().unwrap();
    assert_eq!((opt.lr, opt.weight_decay, opt.betas), (1e-4, 1e-3, [0.9, 0.98]));
    assert_eq!(opt.scheduler.warmup_ratio, Some(0.1));
    assert_eq!(cfg.vision_config().unwrap().patch_size, 32);
    assert_eq!(cfg.text_config().unwrap().vocab_size, 50257);
}

#[test]
fn fixture_configs_carry_inline_backbones() {
    let cfg = ModelConfig::from_file(fixture("fixtures/seed/transformer_mapper_freq2/config.json")).unwrap();
    assert_eq!(cfg.mapper.mapper_type, MapperType::Transformer);
    assert_eq!(cfg.text.xattn.freq, 2);
    assert!(cfg.has_xattn(0) && !cfg.has_xattn(1));
    let v = cfg.vision_config().unwrap();
    assert_eq!(
        (v.hidden_size, v.patch_size, v.hidden_act),
        (64, 16, Activation::QuickGelu)
    );
    let t = cfg.text_config().unwrap();
    assert_eq!(
        (t.vocab_size, t.bos_token_id, t.activation_function),
        (1000, 999, Activation::GeluNew)
    );
}

#[test]
fn unknown_keys_are_named() {
    let err = ModelConfig::from_str_any("model:\n  resampler:\n    depht: 3\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("depht"), "{err}");
    let err = ModelConfig::from_str_any("model:\n  enable_maper: true\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("enable_maper"), "{err}");
}

#[test]
fn inconsistent_sizes_are_refused() {
    let err = ModelConfig::from_str_any(
        "vision: {pretrained_name: x, config: {hidden_size: 64, num_attention_heads: 4, image_size: 64, patch_size: 16}}\n\
         text: {pretrained_name: y, config: {n_embd: 32, n_head: 4}}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("64") && err.contains("32"), "{err}");
    let cfg = ModelConfig::from_str_any("vision: {pretrained_name: my-clip}\n").unwrap();
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("my-clip"), "{err}");
}
