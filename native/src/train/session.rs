//! What a run reads from its config: the tokenizer and the dataset splits.

use std::path::Path;

use anyhow::{Context, Result};
use caption_model::tokenizer::Tokenizer;

use super::project::{required, ProjectConfig, SplitConfig};
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
    let data = load_dataset(format, Path::new(json), Path::new(&visual), &cfg.dataset.sign_languages)
        .with_context(|| format!("loading dataset.{key}"))?;
    if !data.skipped.is_empty() {
        eprintln!("dataset.{key}: {}", skipped_summary(&data.skipped, 5));
    }
    Ok(data)
}
