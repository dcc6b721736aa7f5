//! The `model:` section of the original project's `config.yaml`, typed.
//!
//! Every section rejects unknown keys (naming them) so that a typo never silently falls back to a
//! default. The backbone configs (`vision.config`, `text.config`) are Hugging Face files and keep
//! Hugging Face's leniency: they carry dozens of keys that do not concern the model.

use serde::{Deserialize, Serialize};

use crate::clip::ClipVisionConfig;
use crate::gpt2::Gpt2Config;
use crate::nn::Activation;
use crate::{Error, Result};

/// The whole `model:` section: which bridge halves exist and how they are shaped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Whether the mapping network (one prefix token per frame) is used.
    pub enable_mapper: bool,
    /// Whether the perceiver resampler and the gated cross-attention blocks are used.
    pub enable_resampler_xattn: bool,
    /// The CLIP vision tower.
    pub vision: VisionSection,
    /// The mapping network.
    pub mapper: MapperConfig,
    /// The perceiver resampler.
    pub resampler: ResamplerConfig,
    /// GPT-2 and its gated cross-attention blocks.
    pub text: TextSection,
    /// Optimiser and schedule (used by the trainer; kept here because the original nests it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<OptimizerConfig>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            enable_mapper: true,
            enable_resampler_xattn: true,
            vision: VisionSection::default(),
            mapper: MapperConfig::default(),
            resampler: ResamplerConfig::default(),
            text: TextSection::default(),
            optimizer: Some(OptimizerConfig::default()),
        }
    }
}

/// `model.vision`: which CLIP to use and whether it trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisionSection {
    /// Hub id or local directory of the CLIP weights.
    pub pretrained_name: String,
    /// Whether the vision tower is trained.
    pub trainable: bool,
    /// Inline backbone config; when absent, a preset for `pretrained_name` or its config.json.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ClipVisionConfig>,
}

impl Default for VisionSection {
    fn default() -> Self {
        Self {
            pretrained_name: CLIP_VIT_B32.into(),
            trainable: false,
            config: None,
        }
    }
}

/// Hub id of the default vision tower.
pub const CLIP_VIT_B32: &str = "openai/clip-vit-base-patch32";
/// Hub id of the default text generator.
pub const GPT2: &str = "gpt2";

/// Kind of mapping network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MapperType {
    /// Linear → tanh → Linear.
    Mlp,
    /// A post-norm PyTorch `nn.TransformerEncoder` over the frames.
    Transformer,
}

/// `model.mapper`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapperConfig {
    /// `mlp` or `transformer`.
    pub mapper_type: MapperType,
    /// Transformer layers.
    pub depth: usize,
    /// Transformer heads.
    pub heads: usize,
    /// Transformer feed-forward width.
    pub dim_feedforward: usize,
    /// MLP hidden width.
    pub mlp_dim: usize,
    /// Whether the mapper trains.
    pub trainable: bool,
    /// Transformer dropout while training (PyTorch's `TransformerEncoderLayer` default, 0.1).
    pub dropout: f32,
}

impl Default for MapperConfig {
    fn default() -> Self {
        Self {
            mapper_type: MapperType::Mlp,
            depth: 8,
            heads: 8,
            dim_feedforward: 2048,
            mlp_dim: 512,
            trainable: true,
            dropout: 0.1,
        }
    }
}

/// `model.resampler`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResamplerConfig {
    /// Number of (attention, feed-forward) layers.
    pub depth: usize,
    /// Size of one attention head.
    pub dim_head: usize,
    /// Attention heads.
    pub heads: usize,
    /// Learned latent vectors (the resampler's output length).
    pub num_latents: usize,
    /// Maximum number of frames (rows of the time embedding).
    pub num_time_embeds: usize,
    /// Feed-forward width multiplier.
    pub ff_mult: usize,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Whether the resampler trains.
    pub trainable: bool,
}

impl Default for ResamplerConfig {
    fn default() -> Self {
        Self {
            depth: 4,
            dim_head: 64,
            heads: 6,
            num_latents: 64,
            num_time_embeds: 500,
            ff_mult: 1,
            activation: Activation::Gelu,
            trainable: true,
        }
    }
}

/// `model.text`: GPT-2 and the gated cross-attention inserted into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextSection {
    /// Hub id or local directory of the GPT-2 weights.
    pub pretrained_name: String,
    /// Whether GPT-2 trains.
    pub trainable: bool,
    /// Whether the (tied) lm_head trains.
    pub trainable_lm_head: bool,
    /// Gated cross-attention blocks.
    pub xattn: XattnConfig,
    /// Inline backbone config; when absent, a preset for `pretrained_name` or its config.json.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Gpt2Config>,
}

impl Default for TextSection {
    fn default() -> Self {
        Self {
            pretrained_name: GPT2.into(),
            trainable: false,
            trainable_lm_head: false,
            xattn: XattnConfig::default(),
            config: None,
        }
    }
}

/// `model.text.xattn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XattnConfig {
    /// Size of one attention head.
    pub dim_head: usize,
    /// Attention heads.
    pub heads: usize,
    /// Informational: the latents come from the resampler.
    pub num_latents: usize,
    /// Feed-forward width multiplier.
    pub ff_mult: usize,
    /// Feed-forward activation.
    pub activation: Activation,
    /// A cross-attention block precedes every `freq`-th GPT-2 block.
    pub freq: usize,
}

impl Default for XattnConfig {
    fn default() -> Self {
        Self {
            dim_head: 64,
            heads: 6,
            num_latents: 64,
            ff_mult: 1,
            activation: Activation::Gelu,
            freq: 1,
        }
    }
}

/// `model.optimizer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// `adamw` or `adam`.
    pub name: String,
    /// Base learning rate.
    pub lr: f64,
    /// Adam betas.
    pub betas: [f64; 2],
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Learning-rate schedule.
    pub scheduler: SchedulerConfig,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            name: "adamw".into(),
            lr: 1e-4,
            betas: [0.9, 0.98],
            weight_decay: 1e-3,
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// `model.optimizer.scheduler`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// `Linear` (warmup then constant) or `CosineAnnealing`.
    pub name: String,
    /// Warmup steps; takes precedence over the ratio.
    pub warmup_steps: Option<u64>,
    /// Warmup as a fraction of all steps.
    pub warmup_ratio: Option<f64>,
    /// Floor of the learning rate.
    pub min_lr: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            name: "Linear".into(),
            warmup_steps: None,
            warmup_ratio: Some(0.1),
            min_lr: 1e-6,
        }
    }
}

impl ModelConfig {
    /// Parses a JSON or YAML document that is either the whole original config (with a `model:`
    /// key) or the model section itself. The sizes are cross-checked when both backbone configs
    /// are known; a backbone named by a directory or hub id is checked once its config.json is
    /// read (see [`ModelConfig::validate`]).
    pub fn from_str_any(text: &str) -> Result<Self> {
        let value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        let section = match value.get("model") {
            Some(model) => model.clone(),
            None => value,
        };
        let cfg: ModelConfig =
            serde_yaml::from_value(section).map_err(|e| Error::Config(format!("model section: {e}")))?;
        if cfg.vision_config().is_ok() && cfg.text_config().is_ok() {
            cfg.validate()?;
        }
        Ok(cfg)
    }

    /// Reads [`ModelConfig::from_str_any`] from a file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_str_any(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// The vision backbone config: inline, else the preset for the default hub id.
    pub fn vision_config(&self) -> Result<ClipVisionConfig> {
        match (&self.vision.config, self.vision.pretrained_name.as_str()) {
            (Some(c), _) => Ok(c.clone()),
            (None, CLIP_VIT_B32) => Ok(ClipVisionConfig::vit_base_patch32()),
            (None, other) => Err(Error::Config(format!(
                "model.vision.config is missing and `{other}` has no built-in preset; \
                 give the config inline or load it from the backbone's config.json"
            ))),
        }
    }

    /// The text backbone config: inline, else the preset for the default hub id.
    pub fn text_config(&self) -> Result<Gpt2Config> {
        match (&self.text.config, self.text.pretrained_name.as_str()) {
            (Some(c), _) => Ok(c.clone()),
            (None, GPT2) => Ok(Gpt2Config::gpt2()),
            (None, other) => Err(Error::Config(format!(
                "model.text.config is missing and `{other}` has no built-in preset; \
                 give the config inline or load it from the backbone's config.json"
            ))),
        }
    }

    /// Whether GPT-2 block `i` is preceded by a gated cross-attention block.
    pub fn has_xattn(&self, layer: usize) -> bool {
        self.enable_resampler_xattn && layer.is_multiple_of(self.text.xattn.freq)
    }

    /// Whether the parameter of this (original) name is trained under the config's flags.
    pub fn is_trainable(&self, name: &str) -> bool {
        if name.starts_with("mapper.") {
            self.mapper.trainable
        } else if name.starts_with("resampler.") {
            self.resampler.trainable
        } else if name.contains(".xattn_block.") {
            true
        } else if name.starts_with("vision_encoder.") {
            self.vision.trainable
        } else if name == "text_generator.lm.lm_head.weight" {
            self.text.trainable_lm_head
        } else if name == "text_generator.lm.transformer.wte.weight" {
            // A tied head is the token embedding: training the head trains wte.
            let tied = self.text_config().map(|t| t.tie_word_embeddings).unwrap_or(true);
            self.text.trainable || (tied && self.text.trainable_lm_head)
        } else {
            self.text.trainable
        }
    }

    /// Checks the cross-field constraints the model relies on.
    pub fn validate(&self) -> Result<()> {
        let v = self.vision_config()?;
        let t = self.text_config()?;
        let bad = |m: String| Err(Error::Config(m));
        if v.hidden_size != t.n_embd {
            return bad(format!(
                "the CLIP hidden size ({}) must equal the GPT-2 embedding size ({})",
                v.hidden_size, t.n_embd
            ));
        }
        if self.text.xattn.freq == 0 {
            return bad("model.text.xattn.freq must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.mapper.dropout) {
            return Err(Error::Config(format!(
                "model.mapper.dropout ({}) must lie in [0, 1)",
                self.mapper.dropout
            )));
        }
        if self.mapper.mapper_type == MapperType::Transformer
            && (self.mapper.heads == 0 || !v.hidden_size.is_multiple_of(self.mapper.heads))
        {
            return bad(format!(
                "model.mapper.heads ({}) must divide the hidden size ({})",
                self.mapper.heads, v.hidden_size
            ));
        }
        v.validate()?;
        t.validate()
    }
}
