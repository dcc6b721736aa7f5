//! ROUGE-L as pycocoevalcap 1.2's `Rouge` computes it (beta 1.2, best precision and recall separately).

use super::pyfloat::np_mean;

const BETA: f64 = 1.2;

/// Length of the longest common subsequence of two token lists.
pub fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    for x in a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        prev = cur;
    }
    prev[b.len()]
}

/// One image's score. Tokens come from `str.split(" ")`, so an empty caption is one empty token.
fn image_score(candidate: &str, references: &[String]) -> f64 {
    let cand: Vec<&str> = candidate.split(' ').collect();
    let (mut prec_max, mut rec_max) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for reference in references {
        let toks: Vec<&str> = reference.split(' ').collect();
        let lcs = lcs_len(&toks, &cand) as f64;
        prec_max = prec_max.max(lcs / cand.len() as f64);
        rec_max = rec_max.max(lcs / toks.len() as f64);
    }
    if prec_max != 0.0 && rec_max != 0.0 {
        let beta2 = BETA.powf(2.0);
        ((1.0 + beta2) * prec_max * rec_max) / (rec_max + beta2 * prec_max)
    } else {
        0.0
    }
}

/// `(ROUGE_L, per-image ROUGE_L)` of PTB-tokenised captions.
pub fn coco_rouge_l(candidates: &[String], references: &[Vec<String>]) -> (f64, Vec<f64>) {
    let per_image: Vec<f64> = candidates
        .iter()
        .zip(references)
        .map(|(c, r)| image_score(c, r))
        .collect();
    (np_mean(&per_image), per_image)
}
