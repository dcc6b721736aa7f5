//! The original project's evaluation figures (ORIGINAL-MODEL.md section 7).
//!
//! Predictions that are empty after stripping whitespace are dropped; BLEU-1 and BLEU-4 (Hugging
//! Face `evaluate` "bleu") and ROUGE-L (rouge-score's mean F-measure, the deterministic form of
//! `evaluate`'s "rouge") are computed on the remaining images against all their references, and each
//! is multiplied by (non-empty predictions / all predictions).

use super::pyfloat::py_strip;
use super::{hf_bleu_scores, rouge_score_scores, validate};

/// The original's three headline numbers, already weighted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OriginalScores {
    /// Weighted BLEU with max_order 1.
    pub bleu1: f64,
    /// Weighted BLEU with max_order 4.
    pub bleu4: f64,
    /// Weighted rouge-score ROUGE-L mean F-measure.
    pub rouge_l: f64,
    /// Number of non-empty predictions that were scored.
    pub kept: usize,
    /// Number of predictions in all.
    pub total: usize,
}

/// Scores as the original reported them; all zero when every prediction is empty.
///
/// Errors on malformed input, or where `compute_bleu` itself would raise (no tokens left).
pub fn original_scores(candidates: &[String], references: &[Vec<String>]) -> Result<OriginalScores, String> {
    validate(candidates, references)?;
    let keep: Vec<usize> = (0..candidates.len())
        .filter(|&i| !py_strip(&candidates[i]).is_empty())
        .collect();
    let (kept, total) = (keep.len(), candidates.len());
    if kept == 0 {
        return Ok(OriginalScores {
            bleu1: 0.0,
            bleu4: 0.0,
            rouge_l: 0.0,
            kept,
            total,
        });
    }
    let cands: Vec<String> = keep.iter().map(|&i| candidates[i].clone()).collect();
    let refs: Vec<Vec<String>> = keep.iter().map(|&i| references[i].clone()).collect();
    let bleu = hf_bleu_scores(&cands, &refs);
    let weight = kept as f64 / total as f64;
    Ok(OriginalScores {
        bleu1: bleu.max_order_1?.bleu * weight,
        bleu4: bleu.max_order_4?.bleu * weight,
        rouge_l: rouge_score_scores(&cands, &refs).mean_fmeasure * weight,
        kept,
        total,
    })
}
