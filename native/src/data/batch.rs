//! Turning samples into model inputs: frames decoded and CLIP-preprocessed on a few threads,
//! zero-padded to the longest video, captions tokenised and padded to the longest caption.

use candle_core::{Device, Tensor};
use caption_model::preprocess::PreprocessConfig;
use caption_model::tokenizer::Tokenizer;
use caption_model::CaptionModel;

use super::fetch::Loaded;
use super::{Sample, Skipped};

/// Model inputs for a batch of B samples.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Frames `[B, T, 3, S, S]` f32, CLIP-normalised; T is the longest sample (1 for images)
    /// and frames at `t >= lengths[b]` are zero.
    pub video: Tensor,
    /// Real frame count of each sample (1 for an image).
    pub lengths: Vec<usize>,
    /// `[B, T]` f32: 1 for real frames, 0 for padding (as `CaptionModel::frame_mask`).
    pub frame_mask: Tensor,
    /// Caption ids `[B, L]` u32, L the longest caption of the batch, padded with 0.
    pub tokens: Tensor,
    /// `[B, L]` f32: 1 for real tokens, 0 for padding.
    pub tokens_mask: Tensor,
    /// The caption each row was trained on, for logs.
    pub captions: Vec<String>,
    /// The sample id of each row, for logs.
    pub ids: Vec<String>,
    /// Position of each row in the `samples` given to [`BatchBuilder::build`].
    pub kept: Vec<usize>,
    /// Warnings for rows that are usable but damaged (a video that decoded only partly).
    pub warnings: Vec<String>,
}

/// Builds [`Batch`]es: preprocessing settings, tokenizer, target device and limits.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    pub(super) pre: PreprocessConfig,
    pub(super) tokenizer: Tokenizer,
    pub(super) device: Device,
    pub(super) max_frames: Option<usize>,
    pub(super) max_tokens: Option<usize>,
    pub(super) threads: usize,
}

impl BatchBuilder {
    /// A builder with every frame kept, no token limit, and one loading thread per core
    /// (at most 8).
    pub fn new(pre: PreprocessConfig, tokenizer: Tokenizer, device: Device) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
        Self {
            pre,
            tokenizer,
            device,
            max_frames: None,
            max_tokens: None,
            threads,
        }
    }

    /// Keeps at most `max_frames` evenly spaced frames per video (see
    /// [`super::sample_indices`]); `None` keeps all. A cap bounds memory (a batch holds
    /// B x T preprocessed frames) and should not exceed the model's `num_time_embeds`.
    pub fn with_max_frames(mut self, max_frames: Option<usize>) -> Self {
        self.max_frames = max_frames;
        self
    }

    /// Truncates captions to `max_tokens` ids (at least 2), keeping the leading bos and ending
    /// with eos; `None` keeps them whole.
    pub fn with_max_tokens(mut self, max_tokens: Option<usize>) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// The same builder, creating its tensors on `device`.
    pub fn on_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Number of threads decoding the samples of a batch (at least 1).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The preprocessing settings.
    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.pre
    }

    /// The device the tensors are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Token ids of `caption` as trained: `encode_caption` (bos, caption, eos), truncated to
    /// `max_tokens` with the last id replaced by eos.
    pub fn caption_tokens(&self, caption: &str) -> anyhow::Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode_caption(caption)?;
        if let Some(max) = self.max_tokens {
            anyhow::ensure!(max >= 2, "max_tokens must be at least 2 (bos and eos), got {max}");
            if ids.len() > max {
                ids.truncate(max - 1);
                ids.push(self.tokenizer.eos());
            }
        }
        Ok(ids)
    }

    /// Caption ids `[B, L]` (u32, padded with 0) and their mask `[B, L]` (f32), as in [`Batch`].
    pub fn token_batch(&self, captions: &[&str]) -> anyhow::Result<(Tensor, Tensor)> {
        let ids = captions
            .iter()
            .map(|c| self.caption_tokens(c))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let l = ids.iter().map(Vec::len).max().unwrap_or(1);
        let mut tokens = vec![0u32; ids.len() * l];
        let mut mask = vec![0f32; ids.len() * l];
        for (row, row_ids) in ids.iter().enumerate() {
            tokens[row * l..row * l + row_ids.len()].copy_from_slice(row_ids);
            mask[row * l..row * l + row_ids.len()].fill(1.0);
        }
        Ok((
            Tensor::from_vec(tokens, (ids.len(), l), &self.device)?,
            Tensor::from_vec(mask, (ids.len(), l), &self.device)?,
        ))
    }

    /// Builds a batch of `samples`, row b using caption `caption_pick[b]` of sample b.
    ///
    /// Samples whose file cannot be read or decoded (or whose caption cannot be tokenised)
    /// are left out and returned as [`Skipped`]; the batch holds the others, in order (see
    /// [`Batch::kept`]), or is `None` when none is left. Errors are reserved for problems
    /// that no later batch would escape: `caption_pick` of the wrong length or out of range,
    /// an invalid preprocessing config or `max_tokens`, ffmpeg not installed
    /// ([`FfmpegMissing`](super::FfmpegMissing)), or a tensor that cannot be created on the device.
    pub fn build(
        &self,
        samples: &[&Sample],
        caption_pick: &[usize],
    ) -> anyhow::Result<(Option<Batch>, Vec<Skipped>)> {
        anyhow::ensure!(
            samples.len() == caption_pick.len(),
            "{} samples but {} caption choices",
            samples.len(),
            caption_pick.len()
        );
        for (s, &pick) in samples.iter().zip(caption_pick) {
            anyhow::ensure!(
                pick < s.captions.len(),
                "caption {pick} of sample {} which has {} caption(s)",
                s.id,
                s.captions.len()
            );
        }
        if let Some(max) = self.max_tokens {
            anyhow::ensure!(max >= 2, "max_tokens must be at least 2 (bos and eos), got {max}");
        }
        let loaded = self.load_all(samples, caption_pick)?;

        let mut skipped = Vec::new();
        let mut rows = Vec::new();
        for (pos, item) in loaded.into_iter().enumerate() {
            match item {
                Loaded::Ok {
                    frames,
                    tokens,
                    warning,
                } => rows.push((pos, frames, tokens, warning)),
                Loaded::Bad(reason) => skipped.push(Skipped {
                    entry: samples[pos].id.clone(),
                    reason,
                }),
            }
        }
        if rows.is_empty() {
            return Ok((None, skipped));
        }

        let b = rows.len();
        let t = rows.iter().map(|r| r.1.len()).max().unwrap_or(1);
        let l = rows.iter().map(|r| r.2.len()).max().unwrap_or(1);
        let frame_len = self.pre.output_len();
        let mut video = vec![0f32; b * t * frame_len];
        let mut tokens = vec![0u32; b * l];
        let mut tokens_mask = vec![0f32; b * l];
        let mut lengths = Vec::with_capacity(b);
        let (mut captions, mut ids, mut kept, mut warnings) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (row, (pos, frames, row_tokens, warning)) in rows.into_iter().enumerate() {
            for (f, frame) in frames.iter().enumerate() {
                let at = (row * t + f) * frame_len;
                video[at..at + frame_len].copy_from_slice(frame);
            }
            let at = row * l;
            tokens[at..at + row_tokens.len()].copy_from_slice(&row_tokens);
            tokens_mask[at..at + row_tokens.len()].fill(1.0);
            lengths.push(frames.len());
            captions.push(samples[pos].captions[caption_pick[pos]].clone());
            ids.push(samples[pos].id.clone());
            kept.push(pos);
            warnings.extend(warning);
        }
        let s = self.pre.image_size;
        let batch = Batch {
            video: Tensor::from_vec(video, (b, t, 3, s, s), &self.device)?,
            frame_mask: CaptionModel::frame_mask(&lengths, t, &self.device)?,
            lengths,
            tokens: Tensor::from_vec(tokens, (b, l), &self.device)?,
            tokens_mask: Tensor::from_vec(tokens_mask, (b, l), &self.device)?,
            captions,
            ids,
            kept,
            warnings,
        };
        Ok((Some(batch), skipped))
    }
}
