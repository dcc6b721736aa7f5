//! BLEU as Hugging Face `evaluate`'s "bleu" metric computes it: sacrebleu's `Tokenizer13a`
//! (case-sensitive) and tensorflow/nmt's `compute_bleu` (corpus level, no smoothing).

use super::ngrams::NgramCounts;
use super::pyfloat::py_split;

/// The error `compute_bleu` raises when the candidates or references have no tokens at all.
pub const ZERO_DIVISION: &str = "ZeroDivisionError: float division by zero";

/// The fields `evaluate`'s "bleu" returns.
#[derive(Debug, Clone, PartialEq)]
pub struct HfBleu {
    /// Geometric mean of the precisions times the brevity penalty.
    pub bleu: f64,
    /// Clipped n-gram precision for each order 1..=max_order.
    pub precisions: Vec<f64>,
    /// `exp(1 - ref/hyp)` when the candidates are not longer than the references, else 1.
    pub brevity_penalty: f64,
    /// Candidate length over reference length.
    pub length_ratio: f64,
    /// Total candidate tokens.
    pub translation_length: usize,
    /// Total over images of the shortest reference's tokens.
    pub reference_length: usize,
}

/// `re.sub` of a two-character pattern `([A])([B])` (leftmost, non-overlapping), as Python does it.
fn sub_pairs(
    chars: &[char],
    first: fn(char) -> bool,
    second: fn(char) -> bool,
    out: fn(char, char) -> String,
) -> Vec<char> {
    let mut result = String::new();
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && first(chars[i]) && second(chars[i + 1]) {
            result.push_str(&out(chars[i], chars[i + 1]));
            i += 2;
        } else {
            result.push(chars[i]);
            i += 1;
        }
    }
    result.chars().collect()
}

/// `[\{-\~\[-\` -\&\(-\+\:-\@\/]`: symbols that always become separate tokens.
fn always_split(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn not_digit(c: char) -> bool {
    !c.is_ascii_digit()
}

fn period_comma(c: char) -> bool {
    c == '.' || c == ','
}

/// sacrebleu's `Tokenizer13a` (as vendored by `evaluate`), returning the token list.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let padded: Vec<char> = format!(" {line} ").chars().collect();
    let spaced: String = padded
        .iter()
        .map(|&c| {
            if always_split(c) {
                format!(" {c} ")
            } else {
                c.to_string()
            }
        })
        .collect();
    let chars: Vec<char> = spaced.chars().collect();
    let chars = sub_pairs(&chars, not_digit, period_comma, |a, b| format!("{a} {b} "));
    let chars = sub_pairs(&chars, period_comma, not_digit, |a, b| format!(" {a} {b}"));
    let chars = sub_pairs(&chars, is_digit, |c| c == '-', |a, b| format!("{a} {b} "));
    let text: String = chars.into_iter().collect();
    py_split(&text).into_iter().map(str::to_string).collect()
}

fn as_strs(tokens: &[String]) -> Vec<&str> {
    tokens.iter().map(String::as_str).collect()
}

/// tensorflow/nmt `compute_bleu` on tokenised text; `Err` where the original raises.
pub fn compute_bleu(
    references: &[Vec<Vec<String>>],
    translations: &[Vec<String>],
    max_order: usize,
) -> Result<HfBleu, String> {
    let mut matches = vec![0usize; max_order];
    let mut possible = vec![0usize; max_order];
    let (mut reference_length, mut translation_length) = (0, 0);
    for (refs, translation) in references.iter().zip(translations) {
        reference_length += refs
            .iter()
            .map(Vec::len)
            .min()
            .ok_or("ValueError: min() arg is an empty sequence")?;
        translation_length += translation.len();
        let mut merged = NgramCounts::default();
        for r in refs {
            merged.max_merge(&NgramCounts::new(&as_strs(r), max_order));
        }
        for (ngram, order, count) in NgramCounts::new(&as_strs(translation), max_order).iter() {
            matches[order - 1] += count.min(merged.get(ngram));
        }
        for (order, slot) in possible.iter_mut().enumerate() {
            *slot += (translation.len() + 1).saturating_sub(order + 1);
        }
    }
    let precisions: Vec<f64> = matches
        .iter()
        .zip(&possible)
        .map(|(&m, &p)| if p > 0 { m as f64 / p as f64 } else { 0.0 })
        .collect();
    let geo_mean = if precisions.iter().all(|&p| p > 0.0) {
        let weight = 1.0 / max_order as f64;
        precisions.iter().fold(0.0, |s, p| s + weight * p.ln()).exp()
    } else {
        0.0
    };
    if reference_length == 0 {
        return Err(ZERO_DIVISION.to_string());
    }
    let ratio = translation_length as f64 / reference_length as f64;
    let brevity_penalty = if ratio > 1.0 {
        1.0
    } else if ratio == 0.0 {
        return Err(ZERO_DIVISION.to_string());
    } else {
        (1.0 - 1.0 / ratio).exp()
    };
    Ok(HfBleu {
        bleu: geo_mean * brevity_penalty,
        precisions,
        brevity_penalty,
        length_ratio: ratio,
        translation_length,
        reference_length,
    })
}
