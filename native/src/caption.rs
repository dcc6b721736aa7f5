//! `caption`: one caption per image, from files or folders.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Tensor;
use caption_model::backend::Backend;
use caption_model::decode::{generate, DecodeOptions};
use caption_model::preprocess::{preprocess_bytes, PreprocessConfig};
use caption_model::tokenizer::Tokenizer;
use caption_model::{CaptionModel, Captioner};
use serde::Serialize;

/// Extensions taken from a folder.
const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "gif"];

/// One image's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaptionResult {
    /// The image file.
    pub file: String,
    /// The caption, when it worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// Generated token ids (after bos).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<u32>,
    /// The decoder's score of the caption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// Why the image could not be captioned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Expands folders (non-recursively, image extensions only, sorted) and keeps files as given.
pub fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("reading folder {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// Captions `files` in batches of `batch_size`; a bad image gets an error, the rest go on.
pub fn caption_files<T: Backend>(
    model: &CaptionModel<T>,
    tokenizer: &Tokenizer,
    files: &[PathBuf],
    opts: &DecodeOptions,
    batch_size: usize,
    mut on_result: impl FnMut(&CaptionResult),
) -> Result<Vec<CaptionResult>> {
    let pre = PreprocessConfig::for_image_size(model.vision().config().image_size);
    let mut results = Vec::with_capacity(files.len());
    for chunk in files.chunks(batch_size.max(1)) {
        let mut ok: Vec<(usize, Vec<f32>)> = Vec::new();
        let mut batch: Vec<CaptionResult> = chunk.iter().map(|f| empty_result(f)).collect();
        for (i, file) in chunk.iter().enumerate() {
            match std::fs::read(file)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(preprocess_bytes(&b, &pre)?))
            {
                Ok(pixels) => ok.push((i, pixels)),
                Err(e) => batch[i].error = Some(format!("{e:#}")),
            }
        }
        if !ok.is_empty() {
            let generated = caption_pixels(
                model,
                &ok.iter().map(|(_, p)| p.as_slice()).collect::<Vec<_>>(),
                &pre,
                opts,
            )?;
            for ((i, _), g) in ok.iter().zip(generated) {
                batch[*i].caption = Some(tokenizer.decode_caption(&g.tokens)?);
                batch[*i].score = Some(g.score);
                batch[*i].tokens = g.tokens;
            }
        }
        for r in batch {
            on_result(&r);
            results.push(r);
        }
    }
    Ok(results)
}

fn empty_result(file: &Path) -> CaptionResult {
    CaptionResult {
        file: file.display().to_string(),
        caption: None,
        tokens: Vec::new(),
        score: None,
        error: None,
    }
}

/// Decodes captions for preprocessed images (CHW f32 each).
pub fn caption_pixels<T: Backend>(
    model: &CaptionModel<T>,
    images: &[&[f32]],
    pre: &PreprocessConfig,
    opts: &DecodeOptions,
) -> Result<Vec<caption_model::decode::Generated>> {
    let s = pre.image_size;
    let flat: Vec<f32> = images.iter().flat_map(|p| p.iter().copied()).collect();
    let pixels = Tensor::from_vec(flat, (images.len(), 1, 3, s, s), &candle_core::Device::Cpu)?;
    let video = T::from_candle(&pixels, model.device())?;
    let mask = CaptionModel::frame_mask_like(&vec![1; images.len()], 1, &video)?;
    let visual = model.visual(&video, &mask)?;
    let mut captioner = Captioner::new(model, &visual)?;
    Ok(generate(&mut captioner, opts)?)
}
