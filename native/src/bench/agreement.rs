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
#[derive(Debug, Clone, Copy, Default, PartialEq)]
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
    /// Images whose reference caption is decisive at every token.
    pub decisive_captions: usize,
    /// Of those, images whose greedy captions are identical.
    pub decisive_identical: usize,
    /// Sum over the positions of KL(reference || candidate), in nats.
    pub kl_sum: f64,
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

    /// Mean KL divergence of the candidate's next-token distributions from the reference's.
    pub fn mean_kl(&self) -> f64 {
        self.kl_sum / self.positions.max(1) as f64
    }
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "identical greedy captions {}/{} ({:.2} %), next-token top-1 agreement {:.2} % over {} positions \
             ({:.2} % over the {} where the reference leads by >= {DECISIVE_GAP} probability); \
             identical on {}/{} images whose reference leads by that much at every token; \
             mean KL {:.2e} nats",
            self.identical,
            self.images,
            100.0 * self.caption_rate(),
            100.0 * self.top1_rate(),
            self.positions,
            100.0 * self.decisive_same as f64 / self.decisive.max(1) as f64,
            self.decisive,
            self.decisive_identical,
            self.decisive_captions,
            self.mean_kl()
        )
    }
}

/// Next-token distributions of `model` along `caption` (bos first), one row per caption token.
fn teacher_forced_probs(model: &CaptionModel, pixels: &Tensor, caption: &[u32]) -> Result<Vec<Vec<f32>>> {
    let device = model.device();
    let mask = CaptionModel::frame_mask(&[1], 1, device)?;
    let visual = model.visual(pixels, &mask)?;
    let tokens = Tensor::new(caption, device)?.unsqueeze(0)?;
    let tokens_mask = Tensor::ones(tokens.dims(), DType::F32, device)?;
    let logits = model.text_logits(&visual, &tokens, &tokens_mask)?;
    // Position 0 predicts bos from the prefix alone: greedy never asks for it.
    let logits = logits.narrow(1, 1, caption.len() - 1)?.squeeze(0)?;
    Ok(candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?)
}

/// The arg-max of a distribution and its probability lead over the runner-up.
fn top_with_lead(row: &[f32]) -> (usize, f32) {
    let (mut best, mut first, mut second) = (0, f32::MIN, f32::MIN);
    for (i, &p) in row.iter().enumerate() {
        if p > first {
            (best, first, second) = (i, p, first);
        } else if p > second {
            second = p;
        }
    }
    (best, first - second)
}

/// KL(p || q) of two distributions, in nats (f64 sums; zero-probability terms of p add nothing).
fn kl(p: &[f32], q: &[f32]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(&p, _)| p > 0.0)
        .map(|(&p, &q)| f64::from(p) * (f64::from(p).ln() - f64::from(q.max(f32::MIN_POSITIVE)).ln()))
        .sum()
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
        let a = teacher_forced_probs(reference, &video, &caption)?;
        let b = teacher_forced_probs(candidate, &video, &caption)?;
        let tops: Vec<(usize, f32)> = a.iter().map(|row| top_with_lead(row)).collect();
        if tops.iter().all(|&(_, gap)| gap >= DECISIVE_GAP) {
            out.decisive_captions += 1;
            out.decisive_identical += usize::from(want == got);
        }
        for ((p, q), (want, gap)) in a.iter().zip(&b).zip(tops) {
            let same = top_with_lead(q).0 == want;
            out.positions += 1;
            out.top1_same += usize::from(same);
            out.kl_sum += kl(p, q);
            if gap >= DECISIVE_GAP {
                out.decisive += 1;
                out.decisive_same += usize::from(same);
            }
        }
    }
    Ok(out)
}
