//! Backbone weights by name: a local directory (config.json + model.safetensors) always works;
//! any other name is fetched from the Hugging Face hub (cached) when the network allows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use caption_model::clip::ClipVisionConfig;
use caption_model::gpt2::Gpt2Config;
use caption_model::weights::{clip_hub_to_original, gpt2_hub_to_original, read_safetensors};
use caption_model::ModelConfig;

/// The two files of a backbone.
#[derive(Debug, Clone)]
pub struct BackboneFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
}

/// Finds a backbone: `name` is a local directory, or a hub id downloaded into the hub cache.
pub fn resolve(name: &str) -> Result<BackboneFiles> {
    let dir = Path::new(name);
    if dir.is_dir() {
        let files = BackboneFiles {
            config: dir.join("config.json"),
            weights: dir.join("model.safetensors"),
        };
        for f in [&files.config, &files.weights] {
            anyhow::ensure!(f.is_file(), "backbone directory {name} has no {}", f.display());
        }
        return Ok(files);
    }
    let download = || -> std::result::Result<BackboneFiles, hf_hub::api::sync::ApiError> {
        let repo = hf_hub::api::sync::Api::new()?.model(name.to_string());
        Ok(BackboneFiles {
            config: repo.get("config.json")?,
            weights: repo.get("model.safetensors")?,
        })
    };
    download().with_context(|| {
        format!("`{name}` is not a local directory and could not be fetched from the Hugging Face hub")
    })
}

/// Fills in the backbone configs the model config leaves out, from the backbones' config.json.
pub fn complete_config(cfg: &ModelConfig) -> Result<ModelConfig> {
    let mut cfg = cfg.clone();
    if cfg.vision_config().is_err() {
        let files = resolve(&cfg.vision.pretrained_name)?;
        let text =
            std::fs::read_to_string(&files.config).with_context(|| files.config.display().to_string())?;
        cfg.vision.config = Some(ClipVisionConfig::from_hf_json(&text)?);
    }
    if cfg.text_config().is_err() {
        let files = resolve(&cfg.text.pretrained_name)?;
        let text =
            std::fs::read_to_string(&files.config).with_context(|| files.config.display().to_string())?;
        cfg.text.config = Some(Gpt2Config::from_hf_json(&text)?);
    }
    cfg.validate()?;
    Ok(cfg)
}

/// CLIP vision weights from `model.vision.pretrained_name`, in the original's names.
pub fn vision_tensors(cfg: &ModelConfig, device: &Device) -> Result<HashMap<String, Tensor>> {
    let clip = resolve(&cfg.vision.pretrained_name)?;
    Ok(clip_hub_to_original(read_safetensors(&clip.weights, device)?))
}

/// GPT-2 weights from `model.text.pretrained_name`, in the original's names.
pub fn text_tensors(cfg: &ModelConfig, device: &Device) -> Result<HashMap<String, Tensor>> {
    let gpt2 = resolve(&cfg.text.pretrained_name)?;
    Ok(gpt2_hub_to_original(
        read_safetensors(&gpt2.weights, device)?,
        cfg,
    ))
}

/// Both backbones.
pub fn backbone_tensors(cfg: &ModelConfig, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut tensors = vision_tensors(cfg, device)?;
    tensors.extend(text_tensors(cfg, device)?);
    Ok(tensors)
}
