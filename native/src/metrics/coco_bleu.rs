//! BLEU-1..4 as pycocoevalcap 1.2's `BleuScorer` computes it (`option='closest'`).

use super::ngrams::NgramCounts;
use super::pyfloat::py_split;

const N: usize = 4;
/// Added to every match count "so that if guess is 0 still return 0".
const TINY: f64 = 1e-15;
/// Added to every denominator to avoid division by zero.
const SMALL: f64 = 1e-9;

/// Corpus-level and per-image BLEU of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CocoBleu {
    /// `Bleu_1`..`Bleu_4` over the whole case.
    pub scores: [f64; N],
    /// `per_image.Bleu_1`..`Bleu_4`.
    pub per_image: [Vec<f64>; N],
    /// Total candidate length (`bleu_testlen`).
    pub testlen: usize,
    /// Total of the closest reference lengths (`bleu_reflen_closest`).
    pub reflen: usize,
}

/// One image's statistics (`cook_test` output).
struct Comps {
    testlen: usize,
    reflen: usize,
    guess: [usize; N],
    correct: [usize; N],
}

/// The closest reference length; ties go to the shorter reference (Python tuple `min`).
fn closest_reflen(reflens: &[usize], testlen: usize) -> usize {
    reflens
        .iter()
        .map(|&l| (l.abs_diff(testlen), l))
        .min()
        .map_or(0, |(_, l)| l)
}

fn cook(candidate: &str, references: &[String]) -> Comps {
    let mut maxcounts = NgramCounts::default();
    let mut reflens = Vec::new();
    for reference in references {
        let words = py_split(reference);
        reflens.push(words.len());
        maxcounts.max_merge(&NgramCounts::new(&words, N));
    }
    let words = py_split(candidate);
    let testlen = words.len();
    let mut correct = [0; N];
    for (ngram, order, count) in NgramCounts::new(&words, N).iter() {
        correct[order - 1] += maxcounts.get(ngram).min(count);
    }
    let guess = std::array::from_fn(|k| (testlen + 1).saturating_sub(k + 1));
    Comps {
        testlen,
        reflen: closest_reflen(&reflens, testlen),
        guess,
        correct,
    }
}

/// Geometric-mean BLEU for each order with the brevity penalty, exactly in the scorer's float order.
fn bleu_from(correct: &[usize; N], guess: &[usize; N], testlen: usize, reflen: usize) -> [f64; N] {
    let mut out = [0.0; N];
    let mut bleu = 1.0;
    for k in 0..N {
        bleu *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
        // Opaque exponent: LLVM would turn `powf(0.5)` into `sqrt`, which can differ from C `pow` by 1 ulp.
        out[k] = bleu.powf(std::hint::black_box(1.0 / (k as f64 + 1.0)));
    }
    let ratio = (testlen as f64 + TINY) / (reflen as f64 + SMALL);
    if ratio < 1.0 {
        let penalty = (1.0 - 1.0 / ratio).exp();
        out.iter_mut().for_each(|b| *b *= penalty);
    }
    out
}

/// BLEU of PTB-tokenised candidates (one per image) against their tokenised references.
pub fn coco_bleu(candidates: &[String], references: &[Vec<String>]) -> CocoBleu {
    let mut per_image: [Vec<f64>; N] = Default::default();
    let (mut testlen, mut reflen) = (0, 0);
    let (mut guess, mut correct) = ([0; N], [0; N]);
    for (candidate, refs) in candidates.iter().zip(references) {
        let c = cook(candidate, refs);
        testlen += c.testlen;
        reflen += c.reflen;
        for k in 0..N {
            guess[k] += c.guess[k];
            correct[k] += c.correct[k];
        }
        let scores = bleu_from(&c.correct, &c.guess, c.testlen, c.reflen);
        for (list, s) in per_image.iter_mut().zip(scores) {
            list.push(s);
        }
    }
    CocoBleu {
        scores: bleu_from(&correct, &guess, testlen, reflen),
        per_image,
        testlen,
        reflen,
    }
}
