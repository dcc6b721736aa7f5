//! Initial weights for training: pretrained backbones where the config names them, fresh
//! values (initialised as the original's modules initialise themselves) everywhere else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use caption_model::weights::block_scales::split_block_scales;
use caption_model::weights::{var_builder, ShapeRecorder};
use caption_model::{CaptionModel, ModelConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::checkpoint::{self, LoopState};
use super::config::ProjectConfig;
use super::optim::Moments;

/// How a fresh tensor is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Init {
    Zeros,
    Ones,
    /// Every element equal to this value.
    Constant(f32),
    /// Normal with this standard deviation.
    Normal(f32),
    /// Uniform in ±bound (PyTorch's default `Linear` init, kaiming-uniform with a = √5).
    Uniform(f32),
}

/// The run's choices for fresh tensors.
#[derive(Debug, Clone, Default)]
pub struct FreshInit {
    /// Seed of every draw (with the tensor's name).
    pub seed: u64,
    /// Start value of the cross-attention gates.
    pub gate: f32,
    /// Normal(std) for the tensors whose names contain a key.
    pub std: BTreeMap<String, f32>,
}

/// What the initialisation of fresh tensors depends on besides their names.
#[derive(Debug, Clone)]
struct InitRules {
    /// Start value of the cross-attention gates.
    gate: f32,
    /// Explicit standard deviations by name fragment.
    std: BTreeMap<String, f32>,
    /// CLIP hidden size and depth (its init scales with both).
    clip_dim: usize,
    clip_layers: usize,
    /// GPT-2 depth (scales the residual projections).
    gpt2_layers: usize,
}

impl InitRules {
    /// The init of a parameter, by its original name and shape.
    fn init_for(&self, name: &str, shape: &[usize]) -> Init {
        if let Some((_, &std)) = self.std.iter().find(|(key, _)| name.contains(key.as_str())) {
            return Init::Normal(std);
        }
        let leaf = name.rsplit('.').next().unwrap_or(name);
        let bridge =
            name.starts_with("mapper.") || name.starts_with("resampler.") || name.contains(".xattn_block.");
        if leaf == "alpha_attn" || leaf == "alpha_ffw" {
            // Flamingo's gates start closed (0) so a pretrained LM is untouched at step 0; an LM
            // trained from scratch needs them ajar, or the visual path never gets a gradient.
            return Init::Constant(self.gate);
        }
        if leaf == "latents" || leaf == "time_pos_emb" {
            return Init::Normal(1.0);
        }
        if name.starts_with("vision_encoder.") {
            return self.clip_init(name, leaf, shape);
        }
        if shape.len() == 1 {
            let is_bias = leaf == "bias" || leaf.ends_with("_bias");
            return match (is_bias, bridge) {
                (true, true) => Init::Uniform(1.0 / (shape[0] as f32).sqrt()),
                (true, false) => Init::Zeros,
                (false, _) => Init::Ones,
            };
        }
        if bridge {
            let fan_in: usize = shape[1..].iter().product();
            Init::Uniform(1.0 / (fan_in as f32).sqrt())
        } else if name.ends_with("c_proj.weight") {
            // GPT-2 scales the projections into the residual stream by 1/sqrt(2 * n_layer).
            Init::Normal(0.02 / (2.0 * self.gpt2_layers as f32).sqrt())
        } else {
            Init::Normal(0.02)
        }
    }

    /// Hugging Face `CLIPPreTrainedModel._init_weights` (initializer_factor 1).
    fn clip_init(&self, name: &str, leaf: &str, shape: &[usize]) -> Init {
        let d = self.clip_dim as f32;
        let depth = (2.0 * self.clip_layers as f32).sqrt();
        match leaf {
            "class_embedding" => Init::Normal(d.powf(-0.5)),
            "bias" => Init::Zeros,
            "weight" if shape.len() == 1 => Init::Ones,
            _ if name.ends_with("self_attn.out_proj.weight") => Init::Normal(d.powf(-0.5)),
            _ if name.contains("self_attn.") => Init::Normal(d.powf(-0.5) / depth),
            _ if name.ends_with("mlp.fc1.weight") => Init::Normal((2.0 * d).powf(-0.5)),
            _ if name.ends_with("mlp.fc2.weight") => Init::Normal(d.powf(-0.5) / depth),
            _ => Init::Normal(0.02),
        }
    }
}

/// `n` draws from N(0, std²) (Box–Muller: two uniforms give one normal).
pub fn normal_values(rng: &mut StdRng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let (u1, u2) = (rng.random::<f32>().max(f32::MIN_POSITIVE), rng.random::<f32>());
            std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
}

/// Draws a tensor; values depend only on the seed and the name.
fn draw(name: &str, shape: &[usize], seed: u64, rules: &InitRules, device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = StdRng::seed_from_u64(seed ^ hash);
    let values: Vec<f32> = match rules.init_for(name, shape) {
        Init::Zeros => vec![0.0; n],
        Init::Constant(c) => vec![c; n],
        Init::Ones => vec![1.0; n],
        Init::Uniform(b) => (0..n).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * b).collect(),
        Init::Normal(std) => normal_values(&mut rng, n, std),
    };
    Ok(Tensor::from_vec(values, shape, device)?)
}

/// Every tensor of a model of `cfg`: taken from `loaded` when present (with its shape checked
/// later by the model), freshly initialised as `fresh_init` says otherwise.
pub fn initial_tensors(
    cfg: &ModelConfig,
    mut loaded: HashMap<String, Tensor>,
    fresh_init: &FreshInit,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let seed = fresh_init.seed;
    let rules = InitRules {
        gate: fresh_init.gate,
        std: fresh_init.std.clone(),
        clip_dim: cfg.vision_config()?.hidden_size,
        clip_layers: cfg.vision_config()?.num_hidden_layers,
        gpt2_layers: cfg.text_config()?.n_layer,
    };
    let recorder = ShapeRecorder::default();
    CaptionModel::new(cfg, var_builder(recorder.clone(), DType::F32, device))?;
    let mut out = HashMap::new();
    for (name, shape) in recorder.shapes() {
        let t = match loaded.remove(&name) {
            Some(t) => t,
            None => draw(&name, &shape, seed, &rules, device)?,
        };
        out.insert(name, t);
    }
    Ok(out)
}

/// Initial weights, the frozen tensors that only a checkpoint can restore, when resuming the
/// optimizer moments and loop state, and the checkpoint's trained block scales (if any).
pub type Initial = (
    HashMap<String, Tensor>,
    BTreeMap<String, Tensor>,
    Option<(BTreeMap<String, Moments>, LoopState)>,
    Vec<(String, Tensor)>,
);

/// The weights a run starts from (see [`Initial`]).
pub fn initial_weights(cfg: &ProjectConfig, model_cfg: &ModelConfig, device: &Device) -> Result<Initial> {
    let mut loaded = HashMap::new();
    if !is_scratch(&model_cfg.vision.pretrained_name) {
        loaded.extend(crate::hub::vision_tensors(model_cfg, device)?);
    }
    if !is_scratch(&model_cfg.text.pretrained_name) {
        loaded.extend(crate::hub::text_tensors(model_cfg, device)?);
    }
    let from_hub: HashSet<String> = loaded.keys().cloned().collect();
    let (mut resume, mut scales) = (None, Vec::new());
    if let Some(path) = &cfg.pretrained_name {
        let ckpt = checkpoint::load(Path::new(path), device)?;
        let (weights, kept): (HashMap<_, _>, _) = split_block_scales(ckpt.weights);
        loaded.extend(weights);
        scales = kept;
        if cfg.resume_pretrained_state {
            let state = ckpt
                .state
                .with_context(|| format!("{path} has no training state to resume"))?;
            resume = Some((ckpt.moments, state));
        }
    }
    super::session::resize_embeddings(&mut loaded, model_cfg, cfg.trainer.seed)?;
    let fresh_init = FreshInit {
        seed: cfg.trainer.seed,
        gate: cfg.trainer.gate_init,
        std: cfg.trainer.init_std.clone(),
    };
    let tensors = initial_tensors(model_cfg, loaded, &fresh_init, device)?;
    // Frozen tensors not from the hub (fresh, or from a checkpoint of a scratch backbone) exist
    // only here: checkpoints must carry them.
    let extra = tensors
        .iter()
        .filter(|(n, _)| !model_cfg.is_trainable(n) && !from_hub.contains(*n))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    Ok((tensors, extra, resume, scales))
}

/// A backbone trained from scratch (no pretrained weights).
pub fn is_scratch(name: &str) -> bool {
    name.is_empty() || name == "scratch"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_overrides_apply_to_names_containing_the_key_only() {
        let rules = InitRules {
            gate: 0.0,
            std: BTreeMap::from([("position_embedding".to_string(), 0.3)]),
            clip_dim: 96,
            clip_layers: 2,
            gpt2_layers: 2,
        };
        let clip_pos = "vision_encoder.vision.vision_model.embeddings.position_embedding.weight";
        assert_eq!(rules.init_for(clip_pos, &[10, 96]), Init::Normal(0.3));
        // GPT-2's position table keeps its own init, as does CLIP's patch embedding.
        assert_eq!(
            rules.init_for("text_generator.lm.transformer.wpe.weight", &[48, 96]),
            Init::Normal(0.02)
        );
        let patch = "vision_encoder.vision.vision_model.embeddings.patch_embedding.weight";
        assert_eq!(rules.init_for(patch, &[96, 3, 16, 16]), Init::Normal(0.02));
    }
}
