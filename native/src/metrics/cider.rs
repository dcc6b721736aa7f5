//! CIDEr-D as pycocoevalcap 1.2's `Cider` computes it: n = 4, sigma = 6, clipped tf-idf cosine with a
//! Gaussian length penalty, times 10, document frequencies taken from the case's own references.

use std::collections::HashMap;

use super::ngrams::NgramCounts;
use super::pyfloat::{np_mean, py_split};

const N: usize = 4;
const SIGMA: f64 = 6.0;

/// tf-idf vectors of one caption, per n-gram order, in insertion order.
struct Vector {
    vec: [Vec<(String, f64)>; N],
    lookup: [HashMap<String, f64>; N],
    norm: [f64; N],
    /// The reference counts *bigrams* here (`if n == 1`), a quirk kept on purpose.
    length: usize,
}

fn counts2vec(counts: &NgramCounts, df: &HashMap<String, usize>, ref_len: f64) -> Vector {
    let mut v = Vector {
        vec: Default::default(),
        lookup: Default::default(),
        norm: [0.0; N],
        length: 0,
    };
    for (ngram, order, tf) in counts.iter() {
        let n = order - 1;
        let doc_freq = (df.get(ngram).copied().unwrap_or(0) as f64).max(1.0).ln();
        let value = tf as f64 * (ref_len - doc_freq);
        v.norm[n] += value * value;
        v.vec[n].push((ngram.to_string(), value));
        v.lookup[n].insert(ngram.to_string(), value);
        if n == 1 {
            v.length += tf;
        }
    }
    v.norm.iter_mut().for_each(|x| *x = x.sqrt());
    v
}

fn sim(hyp: &Vector, reference: &Vector) -> [f64; N] {
    let delta = hyp.length as f64 - reference.length as f64;
    let penalty = std::f64::consts::E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
    std::array::from_fn(|n| {
        let mut val = 0.0;
        for (ngram, h) in &hyp.vec[n] {
            let r = reference.lookup[n].get(ngram).copied().unwrap_or(0.0);
            val += h.min(r) * r;
        }
        if hyp.norm[n] != 0.0 && reference.norm[n] != 0.0 {
            val /= hyp.norm[n] * reference.norm[n];
        }
        val * penalty
    })
}

/// Document frequency: in how many images' reference sets each n-gram occurs.
fn document_frequency(refs: &[Vec<NgramCounts>]) -> HashMap<String, usize> {
    let mut df = HashMap::new();
    for image in refs {
        let mut seen = std::collections::HashSet::new();
        for (ngram, _, _) in image.iter().flat_map(|c| c.iter()) {
            if seen.insert(ngram) {
                *df.entry(ngram.to_string()).or_insert(0) += 1;
            }
        }
    }
    df
}

/// `(CIDEr, per-image CIDEr)` of PTB-tokenised captions.
pub fn cider_d(candidates: &[String], references: &[Vec<String>]) -> (f64, Vec<f64>) {
    let cook = |s: &String| NgramCounts::new(&py_split(s), N);
    let refs: Vec<Vec<NgramCounts>> = references
        .iter()
        .map(|rs| rs.iter().map(cook).collect())
        .collect();
    let df = document_frequency(&refs);
    let ref_len = (refs.len() as f64).ln();
    let per_image: Vec<f64> = candidates
        .iter()
        .zip(&refs)
        .map(|(cand, image_refs)| {
            let hyp = counts2vec(&cook(cand), &df, ref_len);
            let mut score = [0.0; N];
            for r in image_refs {
                let s = sim(&hyp, &counts2vec(r, &df, ref_len));
                score.iter_mut().zip(s).for_each(|(acc, x)| *acc += x);
            }
            np_mean(&score) / image_refs.len() as f64 * 10.0
        })
        .collect();
    (np_mean(&per_image), per_image)
}
