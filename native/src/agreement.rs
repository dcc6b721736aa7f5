//! How closely a (quantized) model follows a reference: identical greedy captions, and top-1
//! agreement of next-token predictions along the reference's own greedy caption.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use caption_model::decode::{DecodeOptions, Strategy};
use caption_model::preprocess::{preprocess_bytes, PreprocessConfig};
use caption_model::CaptionModel;

use crate::caption::caption_pixels;

/// Counts over a set of images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Agreement {
    /// Images compared.
    pub images: usize,
    /// Images whose greedy captions are identical.
    pub identical: usize,
    /// Next-token predictions compared (one per token of the reference caption).
    pub positions: usize,
    /// Of those, predictions whose arg-max is the same.
    pub top1_same: usize,
    /// Positions where the reference is decisive: its top probability leads the runner-up by
    /// at least [`DECISIVE_GAP`] (a near-tie flips under any perturbation).
    pub decisive: usize,
    /// Of those, predictions whose arg-max is the same.
    pub decisive_same: usize,
}

/// Probability lead of the reference's top token that makes a position decisive.
pub const DECISIVE_GAP: f32 = 0.1;

impl Agreement {
    /// Fraction of identical captions.
    pub fn caption_rate(&self) -> f64 {
        self.identical as f64 / self.images.max(1) as f64
    }

    /// Fraction of agreeing next-token predictions.
    pub fn top1_rate(&self) -> f64 {
        self.top1_same as f64 / self.positions.max(1) as f64
    }
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "identical greedy captions {}/{} ({:.2} %), next-token top-1 agreement {:.2} % over {} positions \
             ({:.2} % over the {} where the reference leads by >= {DECISIVE_GAP} probability)",
            self.identical,
            self.images,
            100.0 * self.caption_rate(),
            100.0 * self.top1_rate(),
            self.positions,
            100.0 * self.decisive_same as f64 / self.decisive.max(1) as f64,
            self.decisive
        )
    }
}

/// Arg-max next-token ids of `model` along `caption` (bos first), one per caption token, with
/// the probability lead of the top token over the runner-up.
fn teacher_forced_argmax(model: &CaptionModel, pixels: &Tensor, caption: &[u32]) -> Result<Vec<(u32, f32)>> {
    let device = model.device();
    let mask = CaptionModel::frame_mask(&[1], 1, device)?;
    let visual = model.visual(pixels, &mask)?;
    let tokens = Tensor::new(caption, device)?.unsqueeze(0)?;
    let tokens_mask = Tensor::ones(tokens.dims(), DType::F32, device)?;
    let logits = model.text_logits(&visual, &tokens, &tokens_mask)?;
    // Position 0 predicts bos from the prefix alone: greedy never asks for it.
    let logits = logits.narrow(1, 1, caption.len() - 1)?.squeeze(0)?;
    let probs = candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?;
    Ok(probs
        .iter()
        .map(|row| {
            let (mut best, mut first, mut second) = (0, f32::MIN, f32::MIN);
            for (i, &p) in row.iter().enumerate() {
                if p > first {
                    (best, first, second) = (i as u32, p, first);
                } else if p > second {
                    second = p;
                }
            }
            (best, first - second)
        })
        .collect())
}

/// Compares greedy decoding of `candidate` with `reference` on `files` (one image each).
pub fn agreement(
    reference: &CaptionModel,
    candidate: &CaptionModel,
    files: &[PathBuf],
    max_length: usize,
) -> Result<Agreement> {
    let pre = PreprocessConfig::for_image_size(reference.vision().config().image_size);
    let t = reference.config().text_config()?;
    let opts = DecodeOptions {
        strategy: Strategy::Greedy,
        max_length,
        bos: t.bos_token_id,
        eos: t.eos_token_id,
    };
    let mut out = Agreement::default();
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let pixels = preprocess_bytes(&bytes, &pre).with_context(|| file.display().to_string())?;
        let want = caption_pixels(reference, &[&pixels], &pre, &opts)?
            .remove(0)
            .tokens;
        let got = caption_pixels(candidate, &[&pixels], &pre, &opts)?
            .remove(0)
            .tokens;
        out.images += 1;
        out.identical += usize::from(want == got);
        let s = pre.image_size;
        let video = Tensor::from_vec(pixels, (1, 1, 3, s, s), reference.device())?;
        let mut caption = vec![opts.bos];
        caption.extend(&want);
        let a = teacher_forced_argmax(reference, &video, &caption)?;
        let b = teacher_forced_argmax(candidate, &video, &caption)?;
        for ((want, gap), (got, _)) in a.iter().zip(&b) {
            out.positions += 1;
            out.top1_same += usize::from(want == got);
            if *gap >= DECISIVE_GAP {
                out.decisive += 1;
                out.decisive_same += usize::from(want == got);
            }
        }
    }
    Ok(out)
}
