//! Loading weights into the model from every supported source, and exported model folders.

mod block_matrix;
pub mod block_scales;
mod folder;
mod formats;
mod manifest;
mod pt;
pub mod q4_search;
pub mod quant;
mod quant_store;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

pub use block_matrix::BlockMatrix;
pub use folder::{
    export_folder, load_folder, load_folder_on, parse_manifest, sha256_hex, verify_folder, ExportedFolder,
    FolderBytes, LoadedFolder,
};
pub use formats::*;
pub use manifest::*;
pub use quant::{Quant, Scheme};
pub use quant_store::{LookupFailure, QuantStore};
pub use store::{var_builder, RandomInit, ShapeRecorder, TensorStore};

use crate::config::ModelConfig;
use crate::model::CaptionModel;
use crate::{Error, Result};

/// Builds the model from tensors named as in the original's state dict. Every tensor must be
/// used (the tied `lm_head` excepted), so weights that do not fit the config are refused.
pub fn model_from_tensors(
    cfg: &ModelConfig,
    tensors: HashMap<String, Tensor>,
    device: &Device,
) -> Result<CaptionModel> {
    Ok(build_checked(cfg, tensors, device)?.0)
}

/// The tensors a model of `cfg` uses, checked as [`model_from_tensors`] checks them (a stored
/// tied `lm_head` is dropped): what an export needs to write.
pub fn model_tensors(
    cfg: &ModelConfig,
    tensors: HashMap<String, Tensor>,
    device: &Device,
) -> Result<BTreeMap<String, Tensor>> {
    Ok(build_checked(cfg, tensors, device)?.1.used_tensors())
}

/// Every tensor of a model of `cfg`, with [`RandomInit`]'s seeded values (for benchmarks and
/// size checks of exports).
pub fn random_tensors(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let recorder = ShapeRecorder::default();
    CaptionModel::new(cfg, var_builder(recorder.clone(), DType::F32, device))?;
    let init = RandomInit::new(seed);
    recorder
        .shapes()
        .into_iter()
        .map(|(name, shape)| {
            let t = init.tensor(&name, &shape, device)?;
            Ok((name, t))
        })
        .collect()
}

fn build_checked(
    cfg: &ModelConfig,
    tensors: HashMap<String, Tensor>,
    device: &Device,
) -> Result<(CaptionModel, TensorStore)> {
    let store = TensorStore::new(tensors);
    let model = CaptionModel::new(cfg, var_builder(store.clone(), DType::F32, device))?;
    let tied = cfg.text_config()?.tie_word_embeddings;
    let unused: Vec<String> = store
        .unused()
        .into_iter()
        .filter(|n| !(tied && n == LM_HEAD))
        .collect();
    if !unused.is_empty() {
        return Err(Error::Weights(format!(
            "{} tensor(s) do not belong to a model of this config, e.g. `{}`",
            unused.len(),
            unused[0]
        )));
    }
    Ok((model, store))
}

/// Where a model's weights come from.
#[derive(Debug, Clone)]
pub enum WeightSource<'a> {
    /// Our checkpoint (config in the metadata) or, with a config, the original's safetensors.
    Safetensors(&'a Path),
    /// The original trainer's `.pt` checkpoint (needs a config).
    OriginalPt(&'a Path),
}

/// Loads a model from a weights file. `cfg` is required unless the file is one of our
/// checkpoints (which carry their config); when both are present the given config wins.
pub fn load_model(source: WeightSource, cfg: Option<&ModelConfig>, device: &Device) -> Result<CaptionModel> {
    let (tensors, stored) = match source {
        WeightSource::Safetensors(path) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let stored =
                checkpoint_config(&bytes).map_err(|e| Error::Weights(format!("{}: {e}", path.display())))?;
            let tensors = read_safetensors_bytes(&bytes, device)
                .map_err(|e| Error::Weights(format!("{}: {e}", path.display())))?;
            (tensors, stored)
        }
        WeightSource::OriginalPt(path) => (read_original_pt(path)?, None),
    };
    let cfg = match (cfg, stored.as_ref()) {
        (Some(c), _) => c,
        (None, Some(c)) => c,
        (None, None) => {
            return Err(Error::Config(
                "these weights carry no model config: pass the config (config.yaml or config.json) too"
                    .into(),
            ))
        }
    };
    model_from_tensors(cfg, tensors, device)
}
