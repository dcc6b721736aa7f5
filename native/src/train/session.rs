//! What a run reads from its config: the tokenizer and the dataset splits.

use std::path::Path;

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::Tensor;
use caption_model::tokenizer::Tokenizer;
use caption_model::ModelConfig;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::config::{required, ProjectConfig, SplitConfig};
use crate::data::{load_dataset, skipped_summary, Dataset, DatasetFormat};

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `dataset.train_ds`.
    Train,
    /// `dataset.validation_ds`.
    Validation,
    /// `dataset.test_ds`.
    Test,
}

impl Split {
    fn key(self) -> &'static str {
        match self {
            Split::Train => "train_ds",
            Split::Validation => "validation_ds",
            Split::Test => "test_ds",
        }
    }

    fn section(self, cfg: &ProjectConfig) -> &SplitConfig {
        match self {
            Split::Train => &cfg.dataset.train_ds,
            Split::Validation => &cfg.dataset.validation_ds,
            Split::Test => &cfg.dataset.test_ds,
        }
    }
}

/// `dataset.tokenizer`: `gpt2` (built in) or a tokenizer.json path.
pub fn tokenizer_for(cfg: &ProjectConfig) -> Result<Tokenizer> {
    match cfg.dataset.tokenizer.as_str() {
        "gpt2" => Ok(Tokenizer::gpt2()?),
        path => Tokenizer::from_file(path).with_context(|| format!("dataset.tokenizer={path}")),
    }
}

/// Loads one split, printing what was skipped.
pub fn load_split(cfg: &ProjectConfig, split: Split) -> Result<Dataset> {
    let s = split.section(cfg);
    let key = split.key();
    let json = required(&s.json_path, &format!("dataset.{key}.json_path"))?;
    let format: DatasetFormat = cfg.dataset.name.parse()?;
    let visual = match format {
        DatasetFormat::Jsonl => s.visual_dir.clone().unwrap_or_default(),
        _ => required(&s.visual_dir, &format!("dataset.{key}.visual_dir"))?.to_string(),
    };
    let data = load_dataset(
        format,
        Path::new(json),
        Path::new(&visual),
        &cfg.dataset.sign_languages,
    )
    .with_context(|| format!("loading dataset.{key}"))?;
    if !data.skipped.is_empty() {
        eprintln!("dataset.{key}: {}", skipped_summary(&data.skipped, 5));
    }
    Ok(data)
}

/// With a custom tokenizer, the text model's vocabulary, bos and eos follow it, and the token
/// embedding (the tied head) is made trainable, as the original does.
pub fn fit_vocabulary(model: &ModelConfig, cfg: &ProjectConfig, tok: &Tokenizer) -> Result<ModelConfig> {
    if cfg.dataset.tokenizer == "gpt2" {
        // The backbone's own vocabulary stays; GPT-2's ids must fit it.
        let rows = model.text_config()?.vocab_size;
        anyhow::ensure!(
            tok.vocab_size() <= rows,
            "dataset.tokenizer=gpt2 has {} tokens but the text backbone `{}` has a vocabulary of {rows}: \
             give dataset.tokenizer=<tokenizer.json> of that vocabulary (the model's embedding is then \
             resized to it, as the original does), or a GPT-2 backbone",
            tok.vocab_size(),
            model.text.pretrained_name
        );
        return Ok(model.clone());
    }
    let mut model = model.clone();
    let mut text = model.text_config()?;
    text.vocab_size = tok.vocab_size();
    text.bos_token_id = tok.bos();
    text.eos_token_id = tok.eos();
    model.text.config = Some(text);
    model.text.trainable_lm_head = true;
    model.validate()?;
    Ok(model)
}

/// Resizes a loaded token embedding (and an untied head) to the config's vocabulary: rows kept
/// up to the new size, new rows drawn from N(0, 0.02²) as GPT-2 initialises embeddings.
pub fn resize_embeddings(loaded: &mut HashMap<String, Tensor>, model: &ModelConfig, seed: u64) -> Result<()> {
    let vocab = model.text_config()?.vocab_size;
    for name in [
        "text_generator.lm.transformer.wte.weight",
        "text_generator.lm.lm_head.weight",
    ] {
        let Some(t) = loaded.get(name) else { continue };
        let (rows, dim) = t.dims2()?;
        if rows == vocab {
            continue;
        }
        let kept = t.narrow(0, 0, rows.min(vocab))?;
        let resized = if vocab > rows {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x005e_ed0f_e7e5);
            let n = (vocab - rows) * dim;
            let fresh = super::init::normal_values(&mut rng, n, 0.02);
            let fresh = Tensor::from_vec(fresh, (vocab - rows, dim), t.device())?.to_dtype(t.dtype())?;
            Tensor::cat(&[&kept, &fresh], 0)?
        } else {
            kept
        };
        loaded.insert(name.to_string(), resized);
    }
    Ok(())
}
