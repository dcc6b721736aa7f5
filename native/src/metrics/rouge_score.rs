//! ROUGE-L as Google's `rouge-score` 0.1.2 computes it (`RougeScorer(["rougeL"]).score_multi`).

use super::coco_rouge::lcs_len;

/// Precision, recall and F-measure of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LcsScore {
    /// LCS length over candidate length.
    pub precision: f64,
    /// LCS length over reference length.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub fmeasure: f64,
    /// True when a side had no tokens; the original then returns integer zeros (`0`, not `0.0`).
    pub empty: bool,
}

/// rouge-score's default tokenizer: lower-case, runs outside `[a-z0-9]` become spaces, split.
pub fn tokenize_rouge(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// `_score_lcs(target, prediction)`.
pub fn score_lcs(target: &[String], prediction: &[String]) -> LcsScore {
    if target.is_empty() || prediction.is_empty() {
        return LcsScore {
            precision: 0.0,
            recall: 0.0,
            fmeasure: 0.0,
            empty: true,
        };
    }
    let lcs = lcs_len(target, prediction) as f64;
    let precision = lcs / prediction.len() as f64;
    let recall = lcs / target.len() as f64;
    let fmeasure = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    LcsScore {
        precision,
        recall,
        fmeasure,
        empty: false,
    }
}

/// `score_multi`: the reference with the largest F-measure, the first one on ties (`np.argmax`).
pub fn score_multi(targets: &[Vec<String>], prediction: &[String]) -> LcsScore {
    let mut best: Option<LcsScore> = None;
    for target in targets {
        let s = score_lcs(target, prediction);
        if best.is_none_or(|b| s.fmeasure > b.fmeasure) {
            best = Some(s);
        }
    }
    best.unwrap_or(LcsScore {
        precision: 0.0,
        recall: 0.0,
        fmeasure: 0.0,
        empty: true,
    })
}
