//! Weight files: the original's safetensors/`.pt` state dicts, Hugging Face hub backbones,
//! and our own checkpoint (safetensors with the config in its metadata).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::config::ModelConfig;
use crate::{Error, Result};

/// Prefix of the vision tower in the original's names.
pub const VISION_PREFIX: &str = "vision_encoder.vision.";
/// Prefix of GPT-2's transformer in the original's names.
pub const TEXT_PREFIX: &str = "text_generator.lm.transformer.";
/// The tied LM head's name in the original's state dict.
pub const LM_HEAD: &str = "text_generator.lm.lm_head.weight";
/// `format` metadata value of our checkpoints.
pub const CHECKPOINT_FORMAT: &str = "caption-model";
/// Version of our checkpoint layout.
pub const CHECKPOINT_VERSION: &str = "1";

/// All tensors of a safetensors file.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    read_safetensors_bytes(&bytes, device).map_err(|e| Error::Weights(format!("{}: {e}", path.display())))
}

/// All tensors of a safetensors buffer.
pub fn read_safetensors_bytes(bytes: &[u8], device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load_buffer(bytes, device).map_err(|e| Error::Weights(e.to_string()))
}

/// The `model_state_dict` of a checkpoint written by the original trainer (`torch.save` zip).
/// Only tensor data is read; the pickle is interpreted, never executed.
pub fn read_original_pt(path: &Path) -> Result<HashMap<String, Tensor>> {
    let tensors = candle_core::pickle::read_all_with_key(path, Some("model_state_dict")).map_err(|e| {
        Error::Weights(format!(
            "{}: not a readable PyTorch checkpoint: {e}",
            path.display()
        ))
    })?;
    if tensors.is_empty() {
        return Err(Error::Weights(format!(
            "{}: no `model_state_dict` tensors found",
            path.display()
        )));
    }
    Ok(tensors.into_iter().collect())
}

/// Renames a hub `CLIPModel`/`CLIPVisionModel` file's tensors to the original's names,
/// keeping only the vision tower.
pub fn clip_hub_to_original(tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .filter(|(k, _)| k.starts_with("vision_model."))
        .map(|(k, v)| (format!("{VISION_PREFIX}{k}"), v))
        .collect()
}

/// Renames a hub GPT-2 file's tensors (with or without the `transformer.` prefix) to the
/// original's names: block `i` goes under `h.i.lm_block` when it has cross-attention. The
/// legacy causal-mask buffers and a stored tied `lm_head` are dropped.
pub fn gpt2_hub_to_original(tensors: HashMap<String, Tensor>, cfg: &ModelConfig) -> HashMap<String, Tensor> {
    tensors
        .into_iter()
        .filter_map(|(k, v)| {
            let k = k.strip_prefix("transformer.").unwrap_or(&k).to_string();
            if k.ends_with(".attn.bias") || k.ends_with(".attn.masked_bias") || k == "lm_head.weight" {
                return None;
            }
            let renamed = match k.strip_prefix("h.").and_then(|r| r.split_once('.')) {
                Some((i, rest)) if i.parse::<usize>().is_ok_and(|i| cfg.has_xattn(i)) => {
                    format!("{TEXT_PREFIX}h.{i}.lm_block.{rest}")
                }
                _ => format!("{TEXT_PREFIX}{k}"),
            };
            Some((renamed, v))
        })
        .collect()
}

/// Writes our checkpoint: the tensors plus the model config as JSON in the metadata. The file
/// is written beside the target and renamed into place, so a crash never leaves half a file.
pub fn save_checkpoint(path: &Path, cfg: &ModelConfig, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let config = serde_json::to_string(cfg).map_err(|e| Error::Config(e.to_string()))?;
    let metadata = HashMap::from([
        ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
        ("format_version".to_string(), CHECKPOINT_VERSION.to_string()),
        ("model_config".to_string(), config),
    ]);
    let tmp = path.with_extension("safetensors.tmp");
    let cpu: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_device(&Device::Cpu)?)))
        .collect::<candle_core::Result<_>>()?;
    safetensors::serialize_to_file(&cpu, Some(metadata), &tmp)
        .map_err(|e| Error::Weights(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The model config stored in one of our checkpoints, or None for a plain safetensors file.
pub fn checkpoint_config(bytes: &[u8]) -> Result<Option<ModelConfig>> {
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| Error::Weights(e.to_string()))?;
    let Some(meta) = meta.metadata() else {
        return Ok(None);
    };
    if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return Ok(None);
    }
    match meta.get("format_version").map(String::as_str) {
        Some(CHECKPOINT_VERSION) => {}
        other => {
            return Err(Error::Weights(format!(
                "checkpoint format version {other:?} is not supported (expected {CHECKPOINT_VERSION})"
            )))
        }
    }
    let cfg = meta
        .get("model_config")
        .ok_or_else(|| Error::Weights("checkpoint metadata has no model_config".into()))?;
    ModelConfig::from_str_any(cfg).map(Some)
}
