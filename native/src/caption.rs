//! `caption`: one caption per image or video, from files or folders.
//!
//! Images are captioned in batches; a video is one sample of several frames, chosen by the
//! rule the page follows ([`caption_model::frame_sampling`], decoded by
//! [`crate::data::decode_sampled`]) and masked as the datasets mask frames.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Tensor;
use caption_model::backend::Backend;
use caption_model::decode::{generate, DecodeOptions, Generated};
use caption_model::frame_sampling::{frame_count, model_max_frames};
use caption_model::preprocess::{preprocess_bytes, preprocess_rgb, PreprocessConfig};
use caption_model::tokenizer::Tokenizer;
use caption_model::{CaptionModel, Captioner};
use serde::Serialize;

use crate::data::{decode_sampled, FfmpegMissing};

/// Extensions taken from a folder as images.
const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "gif"];

/// Extensions taken as videos (from a folder, or given as a file).
pub const VIDEO_EXTENSIONS: [&str; 8] = ["mp4", "m4v", "mov", "webm", "mkv", "avi", "ogv", "mpg"];

/// One image's or video's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaptionResult {
    /// The image or video file.
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
    /// For a video: the seek time of each captioned frame, in seconds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frame_times: Vec<f64>,
    /// For a video: the stream index (presentation order) of each captioned frame.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frame_indices: Vec<usize>,
    /// Where `--attention-maps` wrote this file's maps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maps: Option<crate::maps::MapFiles>,
    /// Why the file could not be captioned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether `path` names a video by its extension.
pub fn is_video(path: &Path) -> bool {
    has_extension(path, &VIDEO_EXTENSIONS)
}

fn has_extension(path: &Path, list: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| list.contains(&e.to_ascii_lowercase().as_str()))
}

/// Expands folders (non-recursively, image extensions only, sorted) and keeps files as given.
pub fn collect_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    collect(inputs, &IMAGE_EXTENSIONS)
}

/// [`collect_inputs`], folders giving their videos too (by extension), for `caption`.
pub fn collect_media(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    collect(inputs, &[&IMAGE_EXTENSIONS[..], &VIDEO_EXTENSIONS[..]].concat())
}

fn collect(inputs: &[PathBuf], extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("reading folder {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_extension(p, extensions))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// Captions image files in batches of `batch_size`, videos with the default frame count (see
/// [`caption_media`]).
pub fn caption_files<T: Backend>(
    model: &CaptionModel<T>,
    tokenizer: &Tokenizer,
    files: &[PathBuf],
    opts: &DecodeOptions,
    batch_size: usize,
    on_result: impl FnMut(&CaptionResult),
) -> Result<Vec<CaptionResult>> {
    caption_media(model, tokenizer, files, opts, batch_size, None, on_result)
}

/// Captions `files` in input order: runs of images in batches of `batch_size`, each video
/// (by extension, [`is_video`]) as one sample of [`frame_count`]`(frames, model max)` frames.
/// A bad file gets an error and the rest go on; a missing ffmpeg stops everything.
pub fn caption_media<T: Backend>(
    model: &CaptionModel<T>,
    tokenizer: &Tokenizer,
    files: &[PathBuf],
    opts: &DecodeOptions,
    batch_size: usize,
    frames: Option<usize>,
    mut on_result: impl FnMut(&CaptionResult),
) -> Result<Vec<CaptionResult>> {
    let count = frame_count(frames, model_max_frames(model.config()));
    let mut results = Vec::with_capacity(files.len());
    let mut rest = files;
    while let Some(first) = rest.first() {
        let batch = if is_video(first) {
            rest = &rest[1..];
            vec![caption_video(model, tokenizer, first, count, opts)?]
        } else {
            let n = rest
                .iter()
                .take(batch_size.max(1))
                .take_while(|f| !is_video(f))
                .count();
            let (images, tail) = rest.split_at(n);
            rest = tail;
            caption_images(model, tokenizer, images, opts)?
        };
        for r in batch {
            on_result(&r);
            results.push(r);
        }
    }
    Ok(results)
}

/// One video as one sample of `count` frames; errors of the file go into the result.
fn caption_video<T: Backend>(
    model: &CaptionModel<T>,
    tokenizer: &Tokenizer,
    file: &Path,
    count: usize,
    opts: &DecodeOptions,
) -> Result<CaptionResult> {
    let pre = PreprocessConfig::for_image_size(model.vision().config().image_size);
    let mut result = empty_result(file);
    let video = match decode_sampled(file, count) {
        Ok(v) => v,
        Err(e) if e.downcast_ref::<FfmpegMissing>().is_some() => return Err(e),
        Err(e) => {
            result.error = Some(format!("{e:#}"));
            return Ok(result);
        }
    };
    let pixels = match video.frames.iter().map(|f| preprocess_rgb(f, &pre)).collect() {
        Ok(p) => p,
        Err(caption_model::Error::Config(m)) => anyhow::bail!("preprocess config: {m}"),
        Err(e) => {
            result.error = Some(format!("{}: {e}", file.display()));
            return Ok(result);
        }
    };
    let pixels: Vec<Vec<f32>> = pixels;
    let frames: Vec<&[f32]> = pixels.iter().map(Vec::as_slice).collect();
    let generated = caption_samples(model, &[frames], &pre, opts)?;
    fill(&mut result, tokenizer, generated.into_iter().next())?;
    result.frame_times = video.times;
    result.frame_indices = video.indices;
    Ok(result)
}

/// A batch of images, each one frame; errors of a file go into its result.
fn caption_images<T: Backend>(
    model: &CaptionModel<T>,
    tokenizer: &Tokenizer,
    files: &[PathBuf],
    opts: &DecodeOptions,
) -> Result<Vec<CaptionResult>> {
    let pre = PreprocessConfig::for_image_size(model.vision().config().image_size);
    let mut ok: Vec<(usize, Vec<f32>)> = Vec::new();
    let mut batch: Vec<CaptionResult> = files.iter().map(|f| empty_result(f)).collect();
    for (i, file) in files.iter().enumerate() {
        match std::fs::read(file)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(preprocess_bytes(&b, &pre)?))
        {
            Ok(pixels) => ok.push((i, pixels)),
            Err(e) => batch[i].error = Some(format!("{e:#}")),
        }
    }
    if !ok.is_empty() {
        let images: Vec<&[f32]> = ok.iter().map(|(_, p)| p.as_slice()).collect();
        let generated = caption_pixels(model, &images, &pre, opts)?;
        for ((i, _), g) in ok.iter().zip(generated) {
            fill(&mut batch[*i], tokenizer, Some(g))?;
        }
    }
    Ok(batch)
}

/// Writes a generated caption into `result`.
fn fill(result: &mut CaptionResult, tokenizer: &Tokenizer, generated: Option<Generated>) -> Result<()> {
    let g = generated.context("the decoder returned no caption")?;
    result.caption = Some(tokenizer.decode_caption(&g.tokens)?);
    result.score = Some(g.score);
    result.tokens = g.tokens;
    Ok(())
}

fn empty_result(file: &Path) -> CaptionResult {
    CaptionResult {
        file: file.display().to_string(),
        caption: None,
        tokens: Vec::new(),
        score: None,
        frame_times: Vec::new(),
        frame_indices: Vec::new(),
        maps: None,
        error: None,
    }
}

/// Decodes captions for preprocessed images (CHW f32 each), one sample of one frame each.
pub fn caption_pixels<T: Backend>(
    model: &CaptionModel<T>,
    images: &[&[f32]],
    pre: &PreprocessConfig,
    opts: &DecodeOptions,
) -> Result<Vec<Generated>> {
    let samples: Vec<Vec<&[f32]>> = images.iter().map(|p| vec![*p]).collect();
    caption_samples(model, &samples, pre, opts)
}

/// Decodes captions for samples of preprocessed frames (CHW f32 each, at least one per
/// sample): zero-padded to the longest sample with the frame mask hiding the padding, as the
/// datasets batch them.
pub fn caption_samples<T: Backend>(
    model: &CaptionModel<T>,
    samples: &[Vec<&[f32]>],
    pre: &PreprocessConfig,
    opts: &DecodeOptions,
) -> Result<Vec<Generated>> {
    let s = pre.image_size;
    let frame = 3 * s * s;
    let t = samples.iter().map(Vec::len).max().unwrap_or(1);
    let mut flat = vec![0f32; samples.len() * t * frame];
    for (b, sample) in samples.iter().enumerate() {
        for (i, pixels) in sample.iter().enumerate() {
            anyhow::ensure!(
                pixels.len() == frame,
                "a frame has {} values, expected {frame}",
                pixels.len()
            );
            let at = (b * t + i) * frame;
            flat[at..at + frame].copy_from_slice(pixels);
        }
    }
    let pixels = Tensor::from_vec(flat, (samples.len(), t, 3, s, s), &candle_core::Device::Cpu)?;
    let video = T::from_candle(&pixels, model.device())?;
    let lengths: Vec<usize> = samples.iter().map(Vec::len).collect();
    let mask = CaptionModel::frame_mask_like(&lengths, t, &video)?;
    let visual = model.visual(&video, &mask)?;
    let mut captioner = Captioner::new(model, &visual)?;
    Ok(generate(&mut captioner, opts)?)
}
