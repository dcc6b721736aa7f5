//! Nucleus (top-p) sampling with temperature and an optional top-k cut, from a seeded RNG.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::greedy::{extend_rows, Pick};
use super::{DecodeOptions, Generated, LogNorm, StepModel, TopTokens};
use crate::Result;

/// Which tokens may be sampled, and how their logits are sharpened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cut {
    /// Divides the logits; finite and > 0.
    pub temperature: f32,
    /// Mass the kept tokens must reach; in (0, 1].
    pub top_p: f32,
    /// Keep only this many most likely tokens first; at least 1.
    pub top_k: Option<usize>,
}

/// One row's nucleus: the tokens sampling may draw, most likely first.
#[derive(Debug, Clone, PartialEq)]
pub struct Nucleus {
    /// The row's log-softmax normaliser (temperature 1), which scores the drawn token.
    pub norm: LogNorm,
    /// (token, logit, weight): the weight is the tempered probability unnormalised so that the
    /// most likely token's is 1.
    pub kept: Vec<(u32, f32, f64)>,
}

impl Nucleus {
    /// The nucleus of a whole logits row (whose length fits in u32). NaN logits are never kept;
    /// at least one token is whenever any logit is not NaN.
    pub fn of_row(row: &[f32], cut: &Cut) -> Self {
        let k = cut.top_k.unwrap_or(row.len());
        let best = TopTokens::of_row(row, k).best;
        let kept = keep(best, cut, None).unwrap_or_default();
        Self {
            norm: LogNorm::new(row),
            kept,
        }
    }

    /// The nucleus from a row's `asked` best tokens (`top`) and `tempered`, the log of the
    /// row's tempered mass `Σ exp((x - max) / t)`, as a GPU computes them; None when these
    /// candidates do not settle it (the nucleus reaches past them), so the whole row is needed.
    pub fn of_best(top: &TopTokens, tempered: f64, asked: usize, cut: &Cut) -> Option<Self> {
        let mut best = top.best.clone();
        // The candidates hold every token that may be kept: the row ran out, or the top-k cut
        // is within them; then the mass is theirs, summed exactly as on the host.
        let complete = best.len() < asked || cut.top_k.is_some_and(|k| k <= best.len());
        if let Some(k) = cut.top_k {
            best.truncate(k);
        }
        let total = (!complete).then(|| tempered.exp());
        Some(Self {
            norm: top.norm,
            kept: keep(best, cut, total)?,
        })
    }

    /// The token at `u` ∈ [0, 1) of the renormalised nucleus, with its log-prob under the
    /// model; None if the nucleus is empty.
    pub fn sample(&self, u: f64) -> Option<(u32, f64)> {
        let total: f64 = self.kept.iter().map(|e| e.2).sum();
        let u = u * total;
        let mut mass = 0.0;
        // Rounding can leave u at the total: the last token (never of zero weight) takes it.
        let &(token, logit, _) = self
            .kept
            .iter()
            // Strict, so a token of zero weight is never drawn.
            .find(|e| {
                mass += e.2;
                u < mass
            })
            .or(self.kept.last())?;
        Some((token, self.norm.log_prob(logit)))
    }
}

/// The shortest prefix of `best` (sorted, most likely first) whose tempered mass reaches
/// `top_p` of `total` (None: of their own sum). None when `total` is given and the prefix would
/// reach past `best`, or when the largest logit is infinite (the mass is then not a sum of
/// exponentials that `total` can describe).
fn keep(best: Vec<(u32, f32)>, cut: &Cut, total: Option<f64>) -> Option<Vec<(u32, f32, f64)>> {
    let t = f64::from(cut.temperature);
    let Some(&(_, first)) = best.first() else {
        return Some(Vec::new());
    };
    let max = f64::from(first) / t;
    if max.is_infinite() && total.is_some() {
        return None;
    }
    let weighted: Vec<(u32, f32, f64)> = best
        .into_iter()
        .map(|(token, x)| {
            let s = f64::from(x) / t;
            let w = if max.is_infinite() {
                // The softmax's limit: uniform over the logits equal to the infinite max.
                f64::from(u8::from(s == max))
            } else {
                (s - max).exp()
            };
            (token, x, w)
        })
        .collect();
    // Summed in the kept order so that top_p = 1 reaches the candidates' own total exactly.
    let target = f64::from(cut.top_p) * total.unwrap_or_else(|| weighted.iter().map(|e| e.2).sum());
    let mut mass = 0.0;
    match weighted.iter().position(|e| {
        mass += e.2;
        mass >= target
    }) {
        Some(last) => Some(weighted[..=last].to_vec()),
        None if total.is_some() => None,
        None => Some(weighted),
    }
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
    let draw = move || rng.random::<f64>();
    extend_rows(model, opts, Pick::Nucleus(*cut, Box::new(draw))).await
}

#[cfg(test)]
#[path = "nucleus_tests.rs"]
mod tests;
