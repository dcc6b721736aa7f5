//! Beam search over a batch of images, following Hugging Face's `early_stopping=False` rule.

use std::cmp::Ordering;

use super::{step_top_checked, DecodeOptions, Generated, StepModel, TopTokens};
use crate::{Error, Result};

/// A partial caption still being extended.
struct Beam {
    tokens: Vec<u32>,
    /// Summed log-prob of `tokens`.
    sum: f64,
}

/// The best finished captions of one image, at most `width` of them.
struct Hypotheses {
    width: usize,
    /// (length-normalised score, tokens) in the order they finished.
    items: Vec<(f64, Vec<u32>)>,
}

impl Hypotheses {
    fn new(width: usize) -> Self {
        Hypotheses {
            width,
            items: Vec::with_capacity(width + 1),
        }
    }

    fn worst(&self) -> f64 {
        self.items.iter().map(|h| h.0).fold(f64::INFINITY, f64::min)
    }

    /// Adds a finished caption with summed log-prob `sum` if it ranks among the best `width`.
    fn add(&mut self, tokens: Vec<u32>, sum: f64) {
        let score = sum / tokens.len() as f64;
        if self.items.len() < self.width || score > self.worst() {
            self.items.push((score, tokens));
            if self.items.len() > self.width {
                // Drop the worst; among equals the latest, so earlier hypotheses win ties.
                let mut worst = 0;
                for (i, h) in self.items.iter().enumerate() {
                    if h.0 <= self.items[worst].0 {
                        worst = i;
                    }
                }
                self.items.remove(worst);
            }
        }
    }

    /// HF's heuristic: done once full and the best live beam, scored at its current length,
    /// cannot beat the worst kept hypothesis.
    fn is_done(&self, best_live_sum: f64, len: usize) -> bool {
        self.items.len() >= self.width && self.worst() >= best_live_sum / len as f64
    }

    /// The best hypothesis, the earliest on ties.
    fn best(self) -> Option<(f64, Vec<u32>)> {
        self.items.into_iter().fold(None, |best, h| match best {
            Some(b) if b.0 >= h.0 => Some(b),
            _ => Some(h),
        })
    }
}

/// One way of extending a beam by a token.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    /// The beam's sum plus the token's log-prob.
    score: f64,
    /// Index of the beam within its image.
    beam: usize,
    logit: f32,
    token: u32,
}

/// Best first: higher score, then lower beam, then higher logit, then lower token id. The logit
/// key only matters where f64 rounding merged two different logits' scores; it makes a single
/// beam rank exactly like greedy's argmax. Candidates never hold NaN.
fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    b.score
        .partial_cmp(&a.score)
        .unwrap_or(Ordering::Equal)
        .then(a.beam.cmp(&b.beam))
        .then(b.logit.partial_cmp(&a.logit).unwrap_or(Ordering::Equal))
        .then(a.token.cmp(&b.token))
}

/// The best `count` candidates over all beams of one image, best first, from each beam's
/// `count` best tokens (enough: within a beam the score grows with the logit, and equal logits
/// rank by token id in both orders).
fn top_candidates(beams: &[Beam], rows: &[TopTokens], count: usize) -> Vec<Candidate> {
    let mut all = Vec::with_capacity(beams.len() * count);
    for (b, (beam, row)) in beams.iter().zip(rows).enumerate() {
        for &(token, logit) in &row.best {
            all.push(Candidate {
                score: beam.sum + row.norm.log_prob(logit),
                beam: b,
                logit,
                token,
            });
        }
    }
    if all.len() > count {
        all.select_nth_unstable_by(count - 1, rank);
        all.truncate(count);
    }
    all.sort_by(rank);
    all
}

/// The search state of one image.
struct Search {
    live: Vec<Beam>,
    hyps: Hypotheses,
    done: bool,
}

/// Beam search of `width` beams per image; rows are images × live beams, in image order.
pub(super) async fn generate<M: StepModel>(
    model: &mut M,
    opts: &DecodeOptions,
    width: usize,
) -> Result<Vec<Generated>> {
    let n = model.rows();
    let mut images: Vec<Search> = (0..n)
        .map(|_| Search {
            live: vec![Beam {
                tokens: Vec::new(),
                sum: 0.0,
            }],
            hyps: Hypotheses::new(width),
            done: false,
        })
        .collect();
    let mut feed = vec![opts.bos; n];
    for step in 1..=opts.max_length {
        // As in HF, 2 × width candidates always hold `width` non-eos ones when any exist.
        let logits = step_top_checked(model, &feed, 2 * width).await?;
        // Row of the model each next row continues, and the token it is fed.
        let mut select = Vec::with_capacity(feed.len());
        feed.clear();
        let mut offset = 0;
        for search in images.iter_mut().filter(|s| !s.done) {
            let rows = &logits[offset..offset + search.live.len()];
            let mut live = Vec::with_capacity(width);
            let mut parents = Vec::with_capacity(width);
            for (r, c) in top_candidates(&search.live, rows, 2 * width)
                .into_iter()
                .enumerate()
            {
                let parent = &search.live[c.beam];
                let mut tokens = Vec::with_capacity(parent.tokens.len() + 1);
                tokens.extend_from_slice(&parent.tokens);
                tokens.push(c.token);
                if c.token == opts.eos {
                    // HF keeps an eos only when it ranks among the top `width` candidates.
                    if r < width {
                        search.hyps.add(tokens, c.score);
                    }
                } else {
                    live.push(Beam { tokens, sum: c.score });
                    parents.push(offset + c.beam);
                    if live.len() == width {
                        break;
                    }
                }
            }
            offset += search.live.len();
            search.done = match live.first() {
                None => true,
                Some(_) if step == opts.max_length => true,
                // Live beams come best first, and all have `step` tokens.
                Some(best) => search.hyps.is_done(best.sum, step),
            };
            if step == opts.max_length {
                for beam in live.drain(..) {
                    search.hyps.add(beam.tokens, beam.sum);
                }
            }
            if !search.done {
                select.extend_from_slice(&parents);
                feed.extend(live.iter().map(|b| b.tokens[b.tokens.len() - 1]));
            }
            search.live = live;
        }
        if feed.is_empty() {
            break;
        }
        if select.len() != logits.len() || select.iter().enumerate().any(|(i, &r)| i != r) {
            model.select_rows(&select)?;
        }
    }
    images
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let (score, tokens) = s.hyps.best().ok_or_else(|| {
                Error::Decode(format!(
                    "beam search found no token for image {i}: every logit is NaN"
                ))
            })?;
            Ok(Generated {
                tokens,
                score: score as f32,
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "beam_tests.rs"]
mod tests;
