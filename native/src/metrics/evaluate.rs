//! Test mode: caption a dataset split, write the predictions, and score them with the
//! original's figures and the COCO caption metrics.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use caption_model::decode::{generate, DecodeOptions, Strategy};
use caption_model::preprocess::PreprocessConfig;
use caption_model::tokenizer::Tokenizer;
use caption_model::{CaptionModel, Captioner};
use serde::Serialize;

use crate::data::{BatchBuilder, Dataset};
use crate::metrics::{coco_scores, original_scores};
use crate::train::config::{ProjectConfig, TestConfig};

/// One prediction, as written to `predictions.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// The image or video file.
    pub file: String,
    /// The generated caption.
    pub prediction: String,
    /// The reference captions.
    pub references: Vec<String>,
}

/// The scores of a test run.
#[derive(Debug, Clone, Serialize)]
pub struct TestScores {
    /// Images or videos captioned.
    pub n: usize,
    /// The original's BLEU-1 (HF evaluate, empty predictions weighted out).
    pub bleu1: f64,
    /// The original's BLEU-4.
    pub bleu4: f64,
    /// The original's ROUGE-L (rouge-score, mean F).
    pub rouge_l: f64,
    /// COCO BLEU-1..4 (PTB tokens).
    pub coco_bleu: [f64; 4],
    /// COCO CIDEr-D.
    pub coco_cider: f64,
    /// COCO ROUGE-L.
    pub coco_rouge_l: f64,
}

/// Decoder options from `trainer.test`.
pub fn decode_options(t: &TestConfig, model: &CaptionModel, seed: u64) -> Result<DecodeOptions> {
    let strategy = match t.decoding_strategy.as_str() {
        "greedy" => Strategy::Greedy,
        "beam" => Strategy::Beam { width: t.beam_width },
        "nucleus" => Strategy::Nucleus {
            temperature: t.temperature,
            top_p: t.top_p,
            top_k: t.top_k,
            seed,
        },
        other => anyhow::bail!("unknown trainer.test.decoding_strategy `{other}` (greedy, nucleus or beam)"),
    };
    let text = model.config().text_config()?;
    Ok(DecodeOptions {
        strategy,
        max_length: t.max_length,
        bos: text.bos_token_id,
        eos: text.eos_token_id,
    })
}

/// Captions every readable sample of `data` (up to `trainer.test.limit_batches` batches).
pub fn predict(
    model: &CaptionModel,
    tokenizer: &Tokenizer,
    data: &Dataset,
    cfg: &ProjectConfig,
    device: &Device,
) -> Result<Vec<Prediction>> {
    let t = &cfg.trainer.test;
    let opts = decode_options(t, model, cfg.trainer.seed)?;
    let pre = PreprocessConfig::for_image_size(model.vision().config().image_size);
    let builder =
        BatchBuilder::new(pre, tokenizer.clone(), device.clone()).with_max_frames(cfg.dataset.max_frames);
    let bs = cfg.dataset.test_ds.batch_size.max(1);
    let order: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::new();
    for (b, idx) in order.chunks(bs).enumerate() {
        if t.limit_batches.is_some_and(|l| b >= l) {
            break;
        }
        let samples: Vec<_> = idx.iter().map(|&i| &data.samples[i]).collect();
        let (batch, skipped) = builder.build(&samples, &vec![0; samples.len()])?;
        for s in skipped {
            eprintln!("warning: skipped {}: {}", s.entry, s.reason);
        }
        let Some(batch) = batch else { continue };
        let visual = model.visual(&batch.video, &batch.frame_mask)?;
        let mut captioner = Captioner::new(model, &visual)?;
        for (row, g) in batch.kept.iter().zip(generate(&mut captioner, &opts)?) {
            let sample = samples[*row];
            out.push(Prediction {
                file: sample.visual.path().display().to_string(),
                prediction: tokenizer.decode_caption(&g.tokens)?,
                references: sample.captions.clone(),
            });
        }
    }
    Ok(out)
}

/// Scores predictions with both metric families.
pub fn score(predictions: &[Prediction]) -> Result<TestScores> {
    let cands: Vec<String> = predictions.iter().map(|p| p.prediction.clone()).collect();
    let refs: Vec<Vec<String>> = predictions.iter().map(|p| p.references.clone()).collect();
    let original = original_scores(&cands, &refs).map_err(anyhow::Error::msg)?;
    let coco = coco_scores(&cands, &refs);
    Ok(TestScores {
        n: predictions.len(),
        bleu1: original.bleu1,
        bleu4: original.bleu4,
        rouge_l: original.rouge_l,
        coco_bleu: coco.bleu.scores,
        coco_cider: coco.cider,
        coco_rouge_l: coco.rouge_l,
    })
}

/// Writes `predictions.json` and `test_scores.json` into `dir` (atomically).
pub fn write_results(dir: &Path, predictions: &[Prediction], scores: &TestScores) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::files::write_atomic(
        &dir.join("predictions.json"),
        serde_json::to_string_pretty(predictions)?.as_bytes(),
    )?;
    crate::files::write_atomic(
        &dir.join("test_scores.json"),
        serde_json::to_string_pretty(scores)?.as_bytes(),
    )?;
    Ok(())
}
