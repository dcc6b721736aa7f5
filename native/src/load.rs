//! Loading a model for inference from whatever the user has: our checkpoint, the original's
//! safetensors or `.pt` with its config, or a bridge-only checkpoint plus hub backbones.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use caption_model::weights::{
    checkpoint_config, model_from_tensors, read_original_pt, read_safetensors_bytes,
};
use caption_model::{CaptionModel, ModelConfig};

use crate::hub;

/// Loads `checkpoint` (`.pt`/`.pth` = the original trainer's format, else safetensors). The
/// config comes from `config` when given, else from the checkpoint's metadata. Backbone
/// weights the checkpoint lacks are taken from the config's `pretrained_name`s.
pub fn load_model(checkpoint: &Path, config: Option<&Path>, device: &Device) -> Result<CaptionModel> {
    let is_pt = matches!(
        checkpoint.extension().and_then(|e| e.to_str()),
        Some("pt" | "pth")
    );
    let (mut tensors, stored) = if is_pt {
        (read_original_pt(checkpoint)?, None)
    } else {
        let bytes = std::fs::read(checkpoint).with_context(|| format!("reading {}", checkpoint.display()))?;
        let stored = checkpoint_config(&bytes).with_context(|| checkpoint.display().to_string())?;
        (
            read_safetensors_bytes(&bytes, device).with_context(|| checkpoint.display().to_string())?,
            stored,
        )
    };
    let cfg = match (config, stored) {
        (Some(path), _) => ModelConfig::from_file(path)?,
        (None, Some(cfg)) => cfg,
        (None, None) => anyhow::bail!(
            "{} carries no model config: pass --config with the config.yaml/config.json it was trained with",
            checkpoint.display()
        ),
    };
    // A training checkpoint also carries optimizer moments: inference has no use for them.
    tensors.retain(|k, _| !k.starts_with(crate::train::checkpoint::OPTIMIZER_PREFIX));
    let cfg = hub::complete_config(&cfg)?;
    let has_backbones = tensors.keys().any(|k| k.starts_with("vision_encoder."))
        && tensors
            .keys()
            .any(|k| k.starts_with("text_generator.lm.transformer.wte"));
    if !has_backbones {
        for (k, v) in hub::backbone_tensors(&cfg, device)? {
            tensors.entry(k).or_insert(v);
        }
    }
    model_from_tensors(&cfg, tensors, device).with_context(|| format!("loading {}", checkpoint.display()))
}
