//! The original project's whole `config.yaml` (model, dataset, trainer) with Hydra-style
//! command-line overrides (`key.sub=value`, `+new.key=value`) and `${a.b}` interpolation.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use caption_model::ModelConfig;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Experiment name.
    pub name: String,
    /// `train` or `test`.
    pub mode: Mode,
    /// Checkpoint to start from (mandatory in test mode).
    pub pretrained_name: Option<String>,
    /// With `pretrained_name` in train mode: also restore optimizer, schedule and data position.
    #[serde(default)]
    pub resume_pretrained_state: bool,
    /// The model section.
    pub model: ModelConfig,
    /// Datasets.
    pub dataset: DatasetConfig,
    /// Training loop and evaluation.
    pub trainer: TrainerConfig,
    /// Hydra's own section: accepted and ignored (run directories come from `trainer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hydra: Option<Value>,
}

/// What `run` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Train (and validate).
    Train,
    /// Decode the test set and score it.
    Test,
}

/// `dataset:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// `coco`, `mlslt` or `jsonl`.
    pub name: String,
    /// Sign languages used by `mlslt`.
    #[serde(default)]
    pub sign_languages: Vec<String>,
    /// `gpt2` or a path to a tokenizer.json.
    #[serde(default = "default_tokenizer")]
    pub tokenizer: String,
    /// Training split.
    pub train_ds: SplitConfig,
    /// Validation split.
    pub validation_ds: SplitConfig,
    /// Test split.
    pub test_ds: SplitConfig,
    /// Frames kept per video (evenly sampled); all when absent.
    #[serde(default)]
    pub max_frames: Option<usize>,
}

fn default_tokenizer() -> String {
    "gpt2".into()
}

/// One split.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Folder of images or videos (`???` until given).
    pub visual_dir: Option<String>,
    /// Captions file (`???` until given).
    pub json_path: Option<String>,
    /// Samples per batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Loader threads.
    #[serde(default)]
    pub num_workers: usize,
    /// Shuffle every epoch.
    #[serde(default)]
    pub shuffle: bool,
}

fn default_batch() -> usize {
    32
}

/// `trainer:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerConfig {
    /// Epochs.
    pub epochs: usize,
    /// Root of the run directories.
    pub exp_dir: Option<String>,
    /// Run directory name under `exp_dir`.
    pub exp_name: String,
    /// Validate every n epochs.
    #[serde(default = "one")]
    pub check_val_every_n_epoch: usize,
    /// Test-mode decoding.
    pub test: TestConfig,
    /// Which checkpoints are kept.
    pub checkpoint_callback_params: CheckpointConfig,
    /// Seed of data order, caption choice and initialisation.
    #[serde(default)]
    pub seed: u64,
    /// What the model is trained on, in plain text for people: stored in every checkpoint and
    /// copied into an export's manifest (`native export --description` overrides it). When
    /// absent, the checkpoints say which dataset and caption file trained them.
    #[serde(default)]
    pub description: Option<String>,
    /// Stop after this many optimizer steps (for quick runs and tests).
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Also write `last.safetensors` every n optimizer steps (always at each epoch's end).
    #[serde(default)]
    pub save_every_n_steps: Option<u64>,
    /// `f32` or `bf16` (bf16 compute with f32 master weights; CUDA).
    #[serde(default = "default_precision")]
    pub precision: String,
    /// Cache frozen CLIP features: `auto` (when the vision tower is frozen), `true`, `false`.
    #[serde(default = "default_auto", deserialize_with = "bool_or_string")]
    pub feature_cache: String,
    /// Start value of fresh cross-attention gates (`alpha_attn`, `alpha_ffw`): the original's 0
    /// keeps a pretrained GPT-2 untouched at step 0, but with GPT-2 trained from scratch a
    /// closed gate starves the resampler of gradient, so such runs open it a little.
    #[serde(default)]
    pub gate_init: f32,
    /// Standard deviations of fresh tensors whose names contain the key (e.g.
    /// `position_embedding: 0.3`), replacing the Hugging Face / PyTorch init for them.
    #[serde(default)]
    pub init_std: BTreeMap<String, f32>,
    /// Quantization-aware training, `q8` or `q4`: each step's loss also counts the batch
    /// through the model with every tensor rounded as that export will store it
    /// (straight-through gradient) and the KL divergence of that rounded model's next-token
    /// distributions from the model's own, so that the export keeps the f32 model's captions.
    /// Off when absent.
    #[serde(default)]
    pub quant_aware: Option<String>,
    /// Distillation: a checkpoint whose next-token distributions the run's model learns to
    /// reproduce (KL divergence along the training captions), instead of the captions
    /// themselves; with `quant_aware`, through the export's rounding, so that the export of
    /// this run captions like that f32 checkpoint. Off when absent.
    #[serde(default)]
    pub distill_from: Option<String>,
    /// The grid quantization-aware training rounds to: `search` (the export's own scale search,
    /// redone every step), `fixed` (the searched scales of the starting weights, kept) or
    /// `learned` (those scales trained with the weights, LSQ-style). With `fixed`/`learned`
    /// the checkpoints carry the scales and the export writes its blocks with them.
    #[serde(default)]
    pub block_scales: super::qat::block_grid::BlockScales,
    /// The learned block scales' learning rate, as a multiple of the weights'.
    #[serde(default = "unit")]
    pub block_scale_lr: f64,
    /// Temperature of the distillation's distributions (Hinton et al.): above 1 the loss also
    /// weighs how the teacher ranks its unlikely tokens, which decides near-ties; the loss is
    /// scaled by its square so that gradients keep their size.
    #[serde(default = "unit")]
    pub distill_temperature: f64,
}

fn unit() -> f64 {
    1.0
}

fn one() -> usize {
    1
}

/// Reads `true`/`false` (YAML booleans) or a word as a string.
fn bool_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Flag(bool),
        Word(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::Flag(b) => b.to_string(),
        Either::Word(w) => w,
    })
}

fn default_precision() -> String {
    "f32".into()
}

fn default_auto() -> String {
    "auto".into()
}

/// `trainer.test`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    /// `greedy`, `nucleus` or `beam`.
    pub decoding_strategy: String,
    /// Most tokens per caption.
    pub max_length: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// Optional top-k before top-p.
    pub top_k: Option<usize>,
    /// Beam width.
    pub beam_width: usize,
    /// Decode only this many batches.
    pub limit_batches: Option<usize>,
}

/// `trainer.checkpoint_callback_params`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// `val_loss` or `train_loss`.
    pub monitor: String,
    /// Best checkpoints kept (besides `last`).
    pub save_top_k: usize,
}

impl ProjectConfig {
    /// Reads `dir/name`, applies `overrides` (`a.b=v`; `+a.b=v` adds a key), resolves `${..}`.
    pub fn load(dir: &Path, name: &str, overrides: &[String]) -> Result<Self> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_yaml(&text, overrides).with_context(|| format!("in {}", path.display()))
    }

    /// [`ProjectConfig::load`] from text.
    pub fn from_yaml(text: &str, overrides: &[String]) -> Result<Self> {
        let mut root: Value = serde_yaml::from_str(text)?;
        for o in overrides {
            apply_override(&mut root, o)?;
        }
        let snapshot = root.clone();
        // Hydra's section refers to Hydra's run-time keys (`hydra.job.num`): left as written.
        let hydra = root.as_mapping_mut().and_then(|m| m.remove("hydra"));
        let mut budget = INTERPOLATION_BUDGET;
        resolve_interpolations(&mut root, &snapshot, 0, &mut budget)?;
        if let (Some(h), Some(m)) = (hydra, root.as_mapping_mut()) {
            m.insert("hydra".into(), h);
        }
        mark_missing(&mut root);
        let cfg: ProjectConfig = serde_yaml::from_value(root)?;
        // A backbone named by a local folder or hub id brings its config.json, read when the
        // run starts (`hub::complete_config`, which validates the whole); until then only a
        // config whose backbones are known can be checked.
        if cfg.model.vision_config().is_ok() && cfg.model.text_config().is_ok() {
            cfg.model.validate()?;
        }
        Ok(cfg)
    }

    /// The run directory: `exp_dir/exp_name`.
    pub fn run_dir(&self) -> Result<std::path::PathBuf> {
        let exp_dir = self
            .trainer
            .exp_dir
            .as_deref()
            .context("trainer.exp_dir is not set (give trainer.exp_dir=...)")?;
        Ok(Path::new(exp_dir).join(&self.trainer.exp_name))
    }
}

/// Applies one `key.sub=value` override; the value is parsed as YAML (`null`, `1e-3`, `[a, b]`).
pub fn apply_override(root: &mut Value, item: &str) -> Result<()> {
    let (key, raw) = item
        .split_once('=')
        .with_context(|| format!("override `{item}` is not key=value"))?;
    let (add, key) = match key.strip_prefix('+') {
        Some(k) => (true, k),
        None => (false, key),
    };
    let value: Value = serde_yaml::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    anyhow::ensure!(
        parts.len() <= 32,
        "override `{item}`: a key of {} levels (at most 32)",
        parts.len()
    );
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let map = node
            .as_mapping_mut()
            .with_context(|| format!("override `{key}`: `{}` is not a section", parts[..i].join(".")))?;
        let k = Value::String(part.to_string());
        if !map.contains_key(&k) {
            if !add {
                bail!(
                    "override `{key}`: there is no key `{}` (use +{key}=... to add one)",
                    parts[..=i].join(".")
                );
            }
            let fresh = if i + 1 == parts.len() {
                Value::Null
            } else {
                Value::Mapping(Mapping::new())
            };
            map.insert(k.clone(), fresh);
        }
        node = map.get_mut(&k).context("key vanished")?;
    }
    *node = value;
    Ok(())
}

/// Looks up a dotted path.
fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |v, p| v.get(p))
}

/// Work [`resolve_interpolations`] may do in all: one unit per value visited and per 16 bytes
/// of text produced. References to references multiply (`b: [${a}, ${a}]`, `c: [${b}, ${b}]`,
/// ...), so a small crafted file could otherwise expand beyond any memory.
const INTERPOLATION_BUDGET: usize = 1 << 22;

fn charge(budget: &mut usize, units: usize) -> Result<()> {
    *budget = budget.checked_sub(units).with_context(|| {
        format!("interpolations expand to more than {INTERPOLATION_BUDGET} values (references multiplying?)")
    })?;
    Ok(())
}

/// Replaces `${a.b}` in strings with the value at that path (whole-string references keep the
/// referenced value's type).
fn resolve_interpolations(node: &mut Value, root: &Value, depth: usize, budget: &mut usize) -> Result<()> {
    anyhow::ensure!(depth < 16, "interpolation nested too deeply (a cycle?)");
    charge(budget, 1)?;
    match node {
        Value::String(s) if s.contains("${") => {
            let whole = s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
            if whole {
                let path = &s[2..s.len() - 1];
                let mut v = lookup(root, path)
                    .with_context(|| format!("`${{{path}}}` refers to no key"))?
                    .clone();
                resolve_interpolations(&mut v, root, depth + 1, budget)?;
                *node = v;
            } else {
                let mut out = String::new();
                let mut rest = s.as_str();
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let end = rest[start..].find('}').context("unclosed `${`")? + start;
                    let path = &rest[start + 2..end];
                    let v = lookup(root, path).with_context(|| format!("`${{{path}}}` refers to no key"))?;
                    let text = serde_yaml::to_string(v)?;
                    charge(budget, text.len() / 16)?;
                    out.push_str(text.trim());
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                *node = Value::String(out);
            }
        }
        Value::Mapping(m) => {
            for (_, v) in m.iter_mut() {
                resolve_interpolations(v, root, depth, budget)?;
            }
        }
        Value::Sequence(seq) => {
            for v in seq {
                resolve_interpolations(v, root, depth, budget)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// OmegaConf's `???` (mandatory, not yet given) becomes null; the command that needs the value
/// reports it by name.
fn mark_missing(node: &mut Value) {
    match node {
        Value::String(s) if s == "???" => *node = Value::Null,
        Value::Mapping(m) => m.iter_mut().for_each(|(_, v)| mark_missing(v)),
        Value::Sequence(s) => s.iter_mut().for_each(mark_missing),
        _ => {}
    }
}

/// The value of a split path that must be given, or an error naming the key.
pub fn required<'a>(value: &'a Option<String>, key: &str) -> Result<&'a str> {
    value
        .as_deref()
        .with_context(|| format!("`{key}` is mandatory here (???): give {key}=..."))
}
