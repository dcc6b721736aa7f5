//! Nucleus (top-p) sampling with temperature and an optional top-k cut, from a seeded RNG.

use std::cmp::Ordering;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::greedy::{extend_rows, Pick};
use super::{DecodeOptions, Generated, StepModel};
use crate::Result;

/// Which tokens may be sampled, and how their logits are sharpened.
pub(super) struct Cut {
    /// Divides the logits; finite and > 0.
    pub temperature: f32,
    /// Mass the kept tokens must reach; in (0, 1].
    pub top_p: f32,
    /// Keep only this many most likely tokens first; at least 1.
    pub top_k: Option<usize>,
}

/// Samples each row's next token from its nucleus; one RNG draw per live row per step, rows in
/// their original order, so the same seed gives the same captions.
pub(super) async fn generate<M: StepModel>(
    model: &mut M,
    opts: &DecodeOptions,
    cut: &Cut,
    seed: u64,
) -> Result<Vec<Generated>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let choose = move |row: &[f32]| Ok(sample(&nucleus(row, cut), rng.random::<f64>()));
    extend_rows(model, opts, Pick::FromRow(Box::new(choose))).await
}

/// The kept tokens, most likely first, with unnormalised probabilities (the largest is 1).
/// NaN logits are never kept; at least one token is whenever any logit is not NaN.
fn nucleus(row: &[f32], cut: &Cut) -> Vec<(usize, f64)> {
    let t = f64::from(cut.temperature);
    let mut order: Vec<(usize, f64)> = row
        .iter()
        .enumerate()
        .filter(|(_, x)| !x.is_nan())
        .map(|(i, &x)| (i, f64::from(x) / t))
        .collect();
    // Ordering by scaled logit rather than by probability keeps logits distinct where exp() would
    // merge them, so the first token is exactly greedy's argmax (first index on ties).
    let by_logit = |a: &(usize, f64), b: &(usize, f64)| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(Ordering::Equal)
            .then(a.0.cmp(&b.0))
    };
    if let Some(k) = cut.top_k.filter(|&k| k < order.len()) {
        order.select_nth_unstable_by(k, by_logit);
        order.truncate(k);
    }
    order.sort_by(by_logit);
    let Some(&(_, max)) = order.first() else {
        return order;
    };
    for entry in &mut order {
        entry.1 = if max.is_infinite() {
            // The softmax's limit: uniform over the logits equal to the infinite max.
            if entry.1 == max {
                1.0
            } else {
                0.0
            }
        } else {
            (entry.1 - max).exp()
        };
    }
    // Summed in the kept order so that top_p = 1 reaches the total exactly.
    let total: f64 = order.iter().map(|e| e.1).sum();
    let target = f64::from(cut.top_p) * total;
    let mut mass = 0.0;
    let mut keep = 0;
    for entry in &order {
        mass += entry.1;
        keep += 1;
        if mass >= target {
            break;
        }
    }
    order.truncate(keep);
    order
}

/// Token at `u` ∈ [0, 1) of the renormalised nucleus; None if the nucleus is empty.
fn sample(nucleus: &[(usize, f64)], u: f64) -> Option<usize> {
    let total: f64 = nucleus.iter().map(|e| e.1).sum();
    let u = u * total;
    let mut mass = 0.0;
    for &(token, p) in nucleus {
        mass += p;
        // Strict, so a token of zero probability is never drawn.
        if u < mass {
            return Some(token);
        }
    }
    // Rounding can leave u at the total: the last token (never of zero probability) takes it.
    nucleus.last().map(|e| e.0)
}

#[cfg(test)]
#[path = "nucleus_tests.rs"]
mod tests;
