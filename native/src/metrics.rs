#![warn(missing_docs)]
//! Caption metrics that reproduce the reference implementations number for number.
//!
//! Three families, each mirroring one block of `shared/metrics/expected.json`:
//! - `pycocoevalcap` 1.2: PTB tokenisation ([`ptb`]), BLEU-1..4 ([`coco_bleu`]), ROUGE-L
//!   ([`coco_rouge`]) and CIDEr-D ([`cider`]). METEOR needs its Java jar and is not computed; the
//!   layout keeps room for it ([`CocoScores::meteor`] is always `None` and is left out of the JSON).
//! - Hugging Face `evaluate` "bleu" with max_order 1 and 4 ([`hf_bleu`]).
//! - `rouge-score` 0.1.2 ROUGE-L ([`rouge_score`]).
//!
//! Plus the original project's weighting of empty predictions ([`original`]) and the JSON layout
//! of `expected.json` ([`report`]).

pub mod cider;
pub mod coco_bleu;
pub mod coco_rouge;
pub mod evaluate;
pub mod hf_bleu;
pub mod ngrams;
pub mod original;
pub mod ptb;
mod ptb_chars;
mod ptb_macros;
mod ptb_pat;
mod ptb_rules;
mod ptb_words;
pub mod pyfloat;
pub mod report;
pub mod rouge_score;

pub use original::{original_scores, OriginalScores};
pub use report::score_cases_json;

use coco_bleu::CocoBleu;
use hf_bleu::HfBleu;
use rouge_score::LcsScore;

/// The `pycocoevalcap` block of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoScores {
    /// PTB-tokenised candidates, punctuation dropped.
    pub tokenized_candidates: Vec<String>,
    /// PTB-tokenised references per image.
    pub tokenized_references: Vec<Vec<String>>,
    /// BLEU-1..4, corpus and per image, with the length totals.
    pub bleu: CocoBleu,
    /// METEOR `(corpus, per image)`: never computed here (it needs the Java jar).
    pub meteor: Option<(f64, Vec<f64>)>,
    /// Mean ROUGE-L over images.
    pub rouge_l: f64,
    /// ROUGE-L per image.
    pub rouge_l_per_image: Vec<f64>,
    /// Mean CIDEr-D over images.
    pub cider: f64,
    /// CIDEr-D per image.
    pub cider_per_image: Vec<f64>,
}

/// The `hf_evaluate_bleu` block of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct HfBleuScores {
    /// `Tokenizer13a` tokens of each candidate.
    pub tokenized_candidates: Vec<Vec<String>>,
    /// `Tokenizer13a` tokens of each reference, per image.
    pub tokenized_references: Vec<Vec<Vec<String>>>,
    /// BLEU with max_order 1, or the error text the original raises.
    pub max_order_1: Result<HfBleu, String>,
    /// BLEU with max_order 4, or the error text the original raises.
    pub max_order_4: Result<HfBleu, String>,
}

/// The `rouge_score_rougeL` block of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct RougeScoreScores {
    /// Mean of the per-image F-measures (the deterministic figure to use).
    pub mean_fmeasure: f64,
    /// Best-reference precision, recall and F-measure per image.
    pub per_image: Vec<LcsScore>,
    /// rouge-score tokens of each candidate.
    pub tokenized_candidates: Vec<Vec<String>>,
    /// rouge-score tokens of each reference, per image.
    pub tokenized_references: Vec<Vec<Vec<String>>>,
}

/// All three metric blocks of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseScores {
    /// Number of images (candidates).
    pub n_images: usize,
    /// pycocoevalcap 1.2 scores.
    pub coco: CocoScores,
    /// Hugging Face `evaluate` BLEU.
    pub hf_bleu: HfBleuScores,
    /// rouge-score ROUGE-L.
    pub rouge_score: RougeScoreScores,
}

/// Checks the shapes every reference implementation assumes: one candidate and >= 1 reference per image.
pub fn validate(candidates: &[String], references: &[Vec<String>]) -> Result<(), String> {
    if candidates.is_empty() {
        return Err("no images: at least one candidate is needed".into());
    }
    if candidates.len() != references.len() {
        return Err(format!(
            "{} candidates but {} reference lists",
            candidates.len(),
            references.len()
        ));
    }
    match references.iter().position(Vec::is_empty) {
        Some(i) => Err(format!("image {i} has no reference")),
        None => Ok(()),
    }
}

/// The pycocoevalcap block: references and candidates are PTB-tokenised in separate runs, as there.
pub fn coco_scores(candidates: &[String], references: &[Vec<String>]) -> CocoScores {
    let refs_flat: Vec<&str> = references.iter().flatten().map(String::as_str).collect();
    let mut refs_tok = ptb::ptb_tokenize_batch(&refs_flat).into_iter();
    let tokenized_references: Vec<Vec<String>> = references
        .iter()
        .map(|rs| refs_tok.by_ref().take(rs.len()).collect())
        .collect();
    let cands: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let tokenized_candidates = ptb::ptb_tokenize_batch(&cands);
    let bleu = coco_bleu::coco_bleu(&tokenized_candidates, &tokenized_references);
    let (rouge_l, rouge_l_per_image) = coco_rouge::coco_rouge_l(&tokenized_candidates, &tokenized_references);
    let (cider, cider_per_image) = cider::cider_d(&tokenized_candidates, &tokenized_references);
    CocoScores {
        tokenized_candidates,
        tokenized_references,
        bleu,
        meteor: None,
        rouge_l,
        rouge_l_per_image,
        cider,
        cider_per_image,
    }
}

/// The Hugging Face BLEU block (max_order 1 and 4).
pub fn hf_bleu_scores(candidates: &[String], references: &[Vec<String>]) -> HfBleuScores {
    let tokenized_candidates: Vec<Vec<String>> =
        candidates.iter().map(|c| hf_bleu::tokenize_13a(c)).collect();
    let tokenized_references: Vec<Vec<Vec<String>>> = references
        .iter()
        .map(|rs| rs.iter().map(|r| hf_bleu::tokenize_13a(r)).collect())
        .collect();
    let bleu = |order| hf_bleu::compute_bleu(&tokenized_references, &tokenized_candidates, order);
    HfBleuScores {
        max_order_1: bleu(1),
        max_order_4: bleu(4),
        tokenized_candidates,
        tokenized_references,
    }
}

/// The rouge-score block.
pub fn rouge_score_scores(candidates: &[String], references: &[Vec<String>]) -> RougeScoreScores {
    let tokenized_candidates: Vec<Vec<String>> = candidates
        .iter()
        .map(|c| rouge_score::tokenize_rouge(c))
        .collect();
    let tokenized_references: Vec<Vec<Vec<String>>> = references
        .iter()
        .map(|rs| rs.iter().map(|r| rouge_score::tokenize_rouge(r)).collect())
        .collect();
    let per_image: Vec<LcsScore> = tokenized_candidates
        .iter()
        .zip(&tokenized_references)
        .map(|(c, rs)| rouge_score::score_multi(rs, c))
        .collect();
    let fs: Vec<f64> = per_image.iter().map(|s| s.fmeasure).collect();
    RougeScoreScores {
        mean_fmeasure: pyfloat::np_mean(&fs),
        per_image,
        tokenized_candidates,
        tokenized_references,
    }
}

/// Scores one case: `candidates[i]` is the caption of image `i`, `references[i]` its reference captions.
pub fn score_case(candidates: &[String], references: &[Vec<String>]) -> Result<CaseScores, String> {
    validate(candidates, references)?;
    Ok(CaseScores {
        n_images: candidates.len(),
        coco: coco_scores(candidates, references),
        hf_bleu: hf_bleu_scores(candidates, references),
        rouge_score: rouge_score_scores(candidates, references),
    })
}
