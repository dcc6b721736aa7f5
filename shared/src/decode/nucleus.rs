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
mod tests {
    use super::super::toy::{logits, random, LogitsFn, ToyModel};
    use super::super::{generate, DecodeOptions, Generated, LogNorm, Strategy, TopTokens};
    use super::{Cut, Nucleus};

    fn run(f: &LogitsFn, images: usize, strategy: Strategy, max_length: usize) -> (Vec<Generated>, ToyModel) {
        let mut model = ToyModel::new(images, f.clone());
        let out = generate(
            &mut model,
            &DecodeOptions {
                strategy,
                max_length,
                bos: 9,
                eos: 0,
            },
        )
        .unwrap();
        (out, model)
    }

    fn nucleus_of(temperature: f32, top_p: f32, top_k: Option<usize>, seed: u64) -> Strategy {
        Strategy::Nucleus {
            temperature,
            top_p,
            top_k,
            seed,
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_captions() {
        let f = random(7, 6);
        let draw = |seed| run(&f, 3, nucleus_of(1.0, 0.9, None, seed), 8).0;
        let mut distinct = Vec::new();
        for seed in 0..10 {
            let out = draw(seed);
            assert_eq!(out, draw(seed), "seed {seed}");
            if !distinct.contains(&out) {
                distinct.push(out);
            }
        }
        // The seed is actually used.
        assert!(distinct.len() > 1);
    }

    #[test]
    fn a_tiny_top_p_or_top_k_one_is_greedy() {
        // exp() cannot tell 1e-30 from 0: only the logit order makes token 2 the top one.
        let tiny = logits(|_, _| vec![0.0, 0.0, 1e-30, 0.0]);
        for seed in 0..20 {
            let f = if seed == 0 { tiny.clone() } else { random(seed, 6) };
            let greedy = run(&f, 3, Strategy::Greedy, 8).0;
            assert_eq!(
                run(&f, 3, nucleus_of(1.3, 1e-6, None, seed), 8).0,
                greedy,
                "seed {seed}"
            );
            assert_eq!(
                run(&f, 3, nucleus_of(0.7, 1.0, Some(1), seed), 8).0,
                greedy,
                "seed {seed}"
            );
        }
    }

    #[test]
    fn samples_follow_the_renormalised_nucleus() {
        // Probabilities by token id; sorted: 3 (.35), 5 (.25), 1 (.2), 4 (.1), 0 (.06), 2 (.04).
        let probs = [0.06f64, 0.2, 0.04, 0.35, 0.1, 0.25];
        let f = logits(move |_, _| probs.iter().map(|p| p.ln() as f32).collect());
        let cases: [(f32, f32, Option<usize>, [f64; 6]); 3] = [
            // Mass .35 + .25 + .2 = .8 reaches .75: {3, 5, 1} renormalised by .8.
            (1.0, 0.75, None, [0.0, 0.25, 0.0, 0.4375, 0.0, 0.3125]),
            // p² ∝ .1225, .0625, ...; top-2 then renormalised by .185; both needed for .9.
            (0.5, 0.9, Some(2), [0.0, 0.0, 0.0, 0.66216, 0.0, 0.33784]),
            // √p = .5916, .5, .4472, ... of 2.3 in all; three reach half, renormalised by 1.5388.
            (2.0, 0.5, None, [0.0, 0.29062, 0.0, 0.38446, 0.0, 0.32492]),
        ];
        let draws = 20_000;
        for (temperature, top_p, top_k, expected) in cases {
            let strategy = |seed| nucleus_of(temperature, top_p, top_k, seed);
            let mut counts = [0usize; 6];
            for seed in 0..draws {
                let out = run(&f, 1, strategy(seed), 1).0;
                counts[out[0].tokens[0] as usize] += 1;
            }
            for (token, (&count, &p)) in counts.iter().zip(&expected).enumerate() {
                let freq = count as f64 / draws as f64;
                if p == 0.0 {
                    assert_eq!(
                        count, 0,
                        "token {token} is outside the nucleus at t={temperature} p={top_p}"
                    );
                } else {
                    assert!(
                        (freq - p).abs() < 0.015,
                        "token {token}: {freq} vs {p} at t={temperature} p={top_p}"
                    );
                }
            }
        }
    }

    #[test]
    fn stops_at_eos_or_max_length() {
        // Image 0 can only say 2 then eos; image 1 says 1 or 2 and never eos.
        let ninf = f32::NEG_INFINITY;
        let f = logits(move |image, history| match (image, history.len()) {
            (0, 1) => vec![ninf, ninf, 0.0, ninf],
            (0, _) => vec![0.0, ninf, ninf, ninf],
            _ => vec![ninf, 0.0, 0.0, ninf],
        });
        for seed in 0..5 {
            let (out, model) = run(&f, 2, nucleus_of(1.0, 1.0, None, seed), 5);
            assert_eq!(out[0].tokens, vec![2, 0]);
            assert_eq!(out[1].tokens.len(), 5);
            assert!(out[1].tokens.iter().all(|&t| t == 1 || t == 2));
            assert!((f64::from(out[1].score) - 5.0 * 0.5f64.ln()).abs() < 1e-6);
            assert_eq!(model.steps, vec![2, 2, 1, 1, 1]);
            assert_eq!(model.selects, vec![vec![1]]);
        }
    }

    /// The kept tokens of a row's nucleus with their weights.
    fn kept(row: &[f32], cut: &Cut) -> Vec<(u32, f64)> {
        Nucleus::of_row(row, cut)
            .kept
            .iter()
            .map(|e| (e.0, e.2))
            .collect()
    }

    #[test]
    fn the_nucleus_skips_nan_and_impossible_tokens() {
        let cut = Cut {
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
        };
        let got = kept(&[f32::NAN, 1.0, f32::NEG_INFINITY, 1.0, 0.0], &cut);
        assert_eq!(got, vec![(1, 1.0), (3, 1.0), (4, (-1.0f64).exp())]);
        let got = kept(&[1.0, f32::INFINITY, f32::INFINITY, f32::NAN], &cut);
        assert_eq!(got, vec![(1, 1.0), (2, 1.0)]);
        assert!(kept(&[f32::NAN, f32::NAN], &cut).is_empty());
        let cut = Cut {
            temperature: 1.0,
            top_p: 0.5,
            top_k: Some(3),
        };
        // Ties keep the lower index first; one token of mass 1/3 is short of half, two reach it.
        assert_eq!(kept(&[0.0, 0.0, 0.0, 0.0], &cut), vec![(0, 1.0), (1, 1.0)]);
    }

    #[test]
    fn sampling_walks_the_cumulative_mass() {
        let nucleus = Nucleus {
            norm: LogNorm::new(&[0.0, 0.0]),
            kept: vec![(3, 0.0, 1.0), (5, -1.0, 0.5), (7, f32::NEG_INFINITY, 0.0)],
        };
        let token = |u| nucleus.sample(u).map(|(t, _)| t);
        assert_eq!(token(0.0), Some(3));
        assert_eq!(token(0.66), Some(3));
        assert_eq!(token(0.67), Some(5));
        assert_eq!(token(0.999_999_999), Some(5));
        // Scored by the row's normaliser at temperature 1: logit -1 of a two-zero row.
        assert_eq!(nucleus.sample(0.9), Some((5, -1.0 - 2.0f64.ln())));
        let empty = Nucleus {
            norm: nucleus.norm,
            kept: Vec::new(),
        };
        assert_eq!(empty.sample(0.5), None);
    }

    /// `log Σ exp((x - max) / t)` over a row's non-NaN logits, as the GPU kernel reports it.
    fn tempered(row: &[f32], t: f32) -> f64 {
        let max = row
            .iter()
            .filter(|x| !x.is_nan())
            .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let sum: f64 = row
            .iter()
            .filter(|x| !x.is_nan())
            .map(|&x| ((f64::from(x) - f64::from(max)) / f64::from(t)).exp())
            .sum();
        sum.ln()
    }

    #[test]
    fn a_few_best_tokens_settle_a_peaked_nucleus_like_the_whole_row() {
        let mut settled = 0;
        let mut unsettled = 0;
        for seed in 0..200u32 {
            // Rows of 300 logits, some flat, some with a few tokens far ahead.
            let spread = [0.5f32, 2.0, 8.0][seed as usize % 3];
            let row: Vec<f32> = (0..300u32)
                .map(|i| {
                    let h = (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 1000;
                    let x = h as f32 / 1000.0 * spread;
                    if i % 97 == (seed % 7) {
                        x + spread
                    } else {
                        x
                    }
                })
                .collect();
            for (temperature, top_p, top_k) in [
                (1.0, 0.9, None),
                (0.5, 0.8, None),
                (1.5, 0.95, Some(8)),
                (1.0, 1.0, Some(20)),
            ] {
                let cut = Cut {
                    temperature,
                    top_p,
                    top_k,
                };
                let whole = Nucleus::of_row(&row, &cut);
                let asked = top_k.unwrap_or(16);
                let top = TopTokens::of_row(&row, asked);
                match Nucleus::of_best(&top, tempered(&row, temperature), asked, &cut) {
                    Some(from_best) => {
                        settled += 1;
                        assert_eq!(from_best, whole, "seed {seed}, {cut:?}");
                    }
                    None => {
                        unsettled += 1;
                        // Only a nucleus reaching past the candidates needs the whole row.
                        assert!(
                            top_k.is_none() && whole.kept.len() > asked,
                            "seed {seed}, {cut:?}"
                        );
                    }
                }
            }
        }
        // Both outcomes occur.
        assert!(
            settled > 100 && unsettled > 10,
            "{settled} settled, {unsettled} not"
        );
    }
}
