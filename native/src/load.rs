//! Loading a model for inference from whatever the user has: an exported model folder, our
//! checkpoint, the original's safetensors or `.pt` with its config, or a bridge-only checkpoint
//! plus hub backbones.

use std::path::Path;

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use caption_model::backend::Backend;
use caption_model::tokenizer::Tokenizer;
use caption_model::weights::block_scales::split_block_scales;
use caption_model::weights::{
    checkpoint_config, load_folder, model_from_tensors, parse_manifest, read_original_pt,
    read_safetensors_bytes, FolderBytes, LoadedFolder, MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE,
};
use caption_model::{CaptionModel, ModelConfig};

use crate::hub;

/// Loads `checkpoint` (`.pt`/`.pth` = the original trainer's format, else safetensors). The
/// config comes from `config` when given, else from the checkpoint's metadata. Backbone
/// weights the checkpoint lacks are taken from the config's `pretrained_name`s.
pub fn load_model(checkpoint: &Path, config: Option<&Path>, device: &Device) -> Result<CaptionModel> {
    let (cfg, tensors) = load_tensors(checkpoint, config, device)?;
    // Trained block scales only matter to an export in their scheme.
    let (tensors, _scales): (HashMap<_, _>, _) = split_block_scales(tensors);
    model_from_tensors(&cfg, tensors, device).with_context(|| format!("loading {}", checkpoint.display()))
}

/// The completed config and every tensor the model needs, read as [`load_model`] reads them.
pub fn load_tensors(
    checkpoint: &Path,
    config: Option<&Path>,
    device: &Device,
) -> Result<(ModelConfig, HashMap<String, Tensor>)> {
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
    let has_vision = tensors.keys().any(|k| k.starts_with("vision_encoder."));
    let has_text = tensors
        .keys()
        .any(|k| k.starts_with("text_generator.lm.transformer.wte"));
    let scratch = |name: &str| crate::train::init::is_scratch(name);
    if (!has_vision && scratch(&cfg.vision.pretrained_name))
        || (!has_text && scratch(&cfg.text.pretrained_name))
    {
        anyhow::bail!(
            "{} lacks the weights of a backbone trained from scratch (`scratch` has nothing to load \
             them from); a checkpoint fine-tuned before this was fixed lost its frozen tower: \
             take those tensors from the checkpoint it started from",
            checkpoint.display()
        );
    }
    if !(has_vision && has_text) {
        for (k, v) in hub::backbone_tensors(&cfg, device)? {
            tensors.entry(k).or_insert(v);
        }
    }
    Ok((cfg, tensors))
}

/// Whether `path` is an exported model folder (a directory with a manifest.json).
pub fn is_model_folder(path: &Path) -> bool {
    path.is_dir() && path.join(MANIFEST_FILE).is_file()
}

/// Reads, checks and loads an exported model folder.
pub fn load_folder_dir(dir: &Path, device: &Device) -> Result<LoadedFolder> {
    read_folder_dir(dir, |files| load_folder(files, device))
}

/// Reads an exported model folder and loads it with `load` (onto any engine).
pub fn read_folder_dir<T: Backend>(
    dir: &Path,
    load: impl FnOnce(FolderBytes) -> caption_model::Result<LoadedFolder<T>>,
) -> Result<LoadedFolder<T>> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()))
    };
    let manifest = read(MANIFEST_FILE)?;
    let tokenizer_file = parse_manifest(&manifest)
        .map(|m| m.tokenizer)
        .unwrap_or_else(|_| TOKENIZER_FILE.to_string());
    let (model, tokenizer) = (read(MODEL_FILE)?, read(&tokenizer_file)?);
    let files = FolderBytes {
        manifest: &manifest,
        model: &model,
        tokenizer: &tokenizer,
    };
    load(files).with_context(|| format!("loading {}", dir.display()))
}

/// A model from an exported folder (with its tokenizer) or from a checkpoint (no tokenizer).
pub fn load_any(
    path: &Path,
    config: Option<&Path>,
    device: &Device,
) -> Result<(CaptionModel, Option<Tokenizer>)> {
    if is_model_folder(path) {
        anyhow::ensure!(
            config.is_none(),
            "{} is a model folder: it carries its config, drop --config",
            path.display()
        );
        let folder = load_folder_dir(path, device)?;
        return Ok((folder.model, Some(folder.tokenizer)));
    }
    Ok((load_model(path, config, device)?, None))
}
