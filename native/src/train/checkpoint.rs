//! Training checkpoints: one safetensors file holds the weights (our checkpoint format), the
//! optimizer moments (`optimizer.m.<name>`, `optimizer.v.<name>`) and the loop state (JSON in
//! the metadata). One file, renamed into place, so a kill at any moment leaves either the old
//! or the new checkpoint, never a mix.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use caption_model::weights::{
    check_description, CHECKPOINT_DESCRIPTION_KEY, CHECKPOINT_FORMAT, CHECKPOINT_VERSION,
};
use caption_model::ModelConfig;
use serde::{Deserialize, Serialize};

use super::config::ProjectConfig;
use super::optim::Moments;

/// Prefix of optimizer tensors inside a training checkpoint.
pub const OPTIMIZER_PREFIX: &str = "optimizer.";

/// Where the loop stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// Optimizer steps taken (= scheduler steps).
    pub step: u64,
    /// Current epoch (0-based).
    pub epoch: u64,
    /// Batches of the current epoch already consumed.
    pub batch_in_epoch: usize,
    /// Kept best checkpoints: (monitored value, file name), best first.
    pub best: Vec<(f64, String)>,
    /// Samples skipped as unreadable so far.
    pub skipped: usize,
}

/// A training checkpoint in memory.
pub struct TrainingCheckpoint {
    /// Model tensors by original name.
    pub weights: HashMap<String, Tensor>,
    /// Optimizer moments by parameter name (empty for a weights-only checkpoint).
    pub moments: BTreeMap<String, Moments>,
    /// Loop state, when the file has one.
    pub state: Option<LoopState>,
}

/// The description a run's checkpoints carry: `trainer.description`, or else the dataset's
/// name and training caption file (e.g. "Trained on the coco dataset (train2017.json)."). An
/// explicit description that [`check_description`] refuses is an error; a generated one that
/// it refuses (an odd file name) is left out.
pub fn run_description(cfg: &ProjectConfig) -> Result<Option<String>> {
    if let Some(d) = &cfg.trainer.description {
        check_description(d).map_err(|e| anyhow::anyhow!("trainer.description: {e}"))?;
        return Ok(Some(d.clone()));
    }
    let file = cfg
        .dataset
        .train_ds
        .json_path
        .as_deref()
        .and_then(|p| Path::new(p).file_name())
        .map(|f| format!(" ({})", f.to_string_lossy()))
        .unwrap_or_default();
    let generated = format!("Trained on the {} dataset{file}.", cfg.dataset.name);
    Ok(check_description(&generated).is_ok().then_some(generated))
}

/// Writes weights (+ optimizer state, + a description for people) atomically: a temporary
/// file beside `path`, then rename.
pub fn save(
    path: &Path,
    cfg: &ModelConfig,
    weights: &BTreeMap<String, Tensor>,
    optimizer: Option<(&BTreeMap<String, Moments>, &LoopState)>,
    description: Option<&str>,
) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (k, v) in weights {
        tensors.insert(k.clone(), v.to_device(&Device::Cpu)?.to_dtype(DType::F32)?);
    }
    let mut metadata = HashMap::from([
        ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
        ("format_version".to_string(), CHECKPOINT_VERSION.to_string()),
        ("model_config".to_string(), serde_json::to_string(cfg)?),
    ]);
    if let Some(d) = description {
        metadata.insert(CHECKPOINT_DESCRIPTION_KEY.to_string(), d.to_string());
    }
    if let Some((moments, state)) = optimizer {
        for (k, m) in moments {
            tensors.insert(
                format!("{OPTIMIZER_PREFIX}m.{k}"),
                m.m.to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
            );
            tensors.insert(
                format!("{OPTIMIZER_PREFIX}v.{k}"),
                m.v.to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
            );
        }
        metadata.insert("training_state".to_string(), serde_json::to_string(state)?);
    }
    let tmp = path.with_extension("safetensors.partial");
    safetensors::serialize_to_file(&tensors, Some(metadata), &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    // fsync before the rename so that a power cut cannot expose an empty file under the name.
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// Reads a training checkpoint (any of our checkpoints; optimizer parts when present).
pub fn load(path: &Path, device: &Device) -> Result<TrainingCheckpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    load_bytes(&bytes, device)
}

/// [`load`] of a file's bytes. The header's size claims are checked against the buffer
/// before any tensor is allocated.
pub fn load_bytes(bytes: &[u8], device: &Device) -> Result<TrainingCheckpoint> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)?;
    let state = match meta.metadata().as_ref().and_then(|m| m.get("training_state")) {
        Some(s) => Some(serde_json::from_str(s).context("training_state metadata")?),
        None => None,
    };
    let all = caption_model::weights::read_safetensors_bytes(bytes, device)?;
    let (mut weights, mut m, mut v) = (HashMap::new(), HashMap::new(), HashMap::new());
    for (k, t) in all {
        if let Some(name) = k.strip_prefix(&format!("{OPTIMIZER_PREFIX}m.")) {
            m.insert(name.to_string(), t);
        } else if let Some(name) = k.strip_prefix(&format!("{OPTIMIZER_PREFIX}v.")) {
            v.insert(name.to_string(), t);
        } else {
            weights.insert(k, t);
        }
    }
    let mut moments = BTreeMap::new();
    for (name, m) in m {
        let v = v
            .remove(&name)
            .with_context(|| format!("checkpoint has optimizer.m.{name} but no optimizer.v"))?;
        moments.insert(name, Moments { m, v });
    }
    Ok(TrainingCheckpoint {
        weights,
        moments,
        state,
    })
}
