//! Reads the `cases.json` format and writes results laid out like `expected.json`.
//!
//! Left out, because nothing here computes them: METEOR (`METEOR`, `per_image.METEOR`) and
//! rouge-score's seeded bootstrap (`bootstrap_mid_fmeasure_seed0`). Key order is serde_json's.

use serde::Deserialize;
use serde_json::{json, Value};

use super::hf_bleu::HfBleu;
use super::rouge_score::LcsScore;
use super::{score_case, CaseScores, CocoScores, HfBleuScores, RougeScoreScores};

/// One case of `cases.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct CaseInput {
    /// Case identifier.
    pub id: String,
    /// One caption per image.
    pub candidates: Vec<String>,
    /// Reference captions per image.
    pub references: Vec<Vec<String>>,
}

#[derive(Deserialize)]
struct CasesFile {
    cases: Vec<CaseInput>,
}

fn coco_json(c: &CocoScores) -> Value {
    let b = &c.bleu;
    json!({
        "tokenized_candidates": c.tokenized_candidates,
        "tokenized_references": c.tokenized_references,
        "Bleu_1": b.scores[0], "Bleu_2": b.scores[1], "Bleu_3": b.scores[2], "Bleu_4": b.scores[3],
        "bleu_testlen": b.testlen,
        "bleu_reflen_closest": b.reflen,
        "ROUGE_L": c.rouge_l,
        "CIDEr": c.cider,
        "per_image": {
            "Bleu_1": b.per_image[0], "Bleu_2": b.per_image[1], "Bleu_3": b.per_image[2], "Bleu_4": b.per_image[3],
            "ROUGE_L": c.rouge_l_per_image,
            "CIDEr": c.cider_per_image,
        },
    })
}

fn hf_result_json(r: &Result<HfBleu, String>) -> Value {
    match r {
        Ok(b) => json!({
            "bleu": b.bleu,
            "precisions": b.precisions,
            "brevity_penalty": b.brevity_penalty,
            "length_ratio": b.length_ratio,
            "translation_length": b.translation_length,
            "reference_length": b.reference_length,
        }),
        Err(e) => json!({ "error": e }),
    }
}

fn hf_json(h: &HfBleuScores) -> Value {
    json!({
        "tokenized_candidates": h.tokenized_candidates,
        "tokenized_references": h.tokenized_references,
        "max_order_1": hf_result_json(&h.max_order_1),
        "max_order_4": hf_result_json(&h.max_order_4),
    })
}

/// rouge-score returns integer zeros when a side is empty; floats otherwise.
fn lcs_json(s: &LcsScore) -> Value {
    if s.empty {
        json!({ "precision": 0, "recall": 0, "fmeasure": 0 })
    } else {
        json!({ "precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure })
    }
}

fn rouge_json(r: &RougeScoreScores) -> Value {
    json!({
        "mean_fmeasure": r.mean_fmeasure,
        "per_image": r.per_image.iter().map(lcs_json).collect::<Vec<_>>(),
        "tokenized_candidates": r.tokenized_candidates,
        "tokenized_references": r.tokenized_references,
    })
}

/// One case laid out like an entry of `expected.json`'s `cases`.
pub fn case_json(id: &str, scores: &CaseScores) -> Value {
    json!({
        "id": id,
        "n_images": scores.n_images,
        "pycocoevalcap": coco_json(&scores.coco),
        "hf_evaluate_bleu": hf_json(&scores.hf_bleu),
        "rouge_score_rougeL": rouge_json(&scores.rouge_score),
    })
}

/// Scores every case of a `cases.json` document; the result is laid out like `expected.json`.
pub fn score_cases_json(cases_json: &str) -> Result<Value, String> {
    let file: CasesFile = serde_json::from_str(cases_json).map_err(|e| format!("cases JSON: {e}"))?;
    let cases = file
        .cases
        .iter()
        .map(|c| {
            score_case(&c.candidates, &c.references)
                .map(|s| case_json(&c.id, &s))
                .map_err(|e| format!("case {}: {e}", c.id))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "meta": {
            "generated_by": "native::metrics (Rust re-implementation)",
            "omitted": ["METEOR", "per_image.METEOR", "bootstrap_mid_fmeasure_seed0"],
        },
        "cases": cases,
    }))
}
