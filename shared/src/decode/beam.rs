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
mod tests {
    use super::super::toy::{bigram, logits, random, script, LogitsFn, ToyModel};
    use super::super::{generate, sequence_log_prob, DecodeOptions, Generated, Strategy};
    use super::Hypotheses;
    use crate::Error;

    fn run(f: &LogitsFn, images: usize, strategy: Strategy, max_length: usize, bos: u32) -> Vec<Generated> {
        let mut model = ToyModel::new(images, f.clone());
        generate(
            &mut model,
            &DecodeOptions {
                strategy,
                max_length,
                bos,
                eos: 0,
            },
        )
        .unwrap()
    }

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() < 1e-6
    }

    /// Logits ln p where p depends on the whole caption so far (bos excluded); uniform elsewhere.
    fn tree(vocab: usize, table: Vec<(Vec<u32>, Vec<f64>)>) -> LogitsFn {
        logits(move |_, history| {
            let probs = table
                .iter()
                .find(|(h, _)| h[..] == history[1..])
                .map(|(_, p)| p.clone());
            let probs = probs.unwrap_or_else(|| vec![1.0 / vocab as f64; vocab]);
            probs.iter().map(|&p| p.ln() as f32).collect()
        })
    }

    #[test]
    fn width_one_equals_greedy() {
        let mut models: Vec<(LogitsFn, u32)> = vec![
            (
                bigram(vec![
                    vec![0.1, 0.6, 0.3],
                    vec![0.2, 0.3, 0.5],
                    vec![0.4, 0.4, 0.2],
                    vec![0.0, 0.5, 0.5],
                ]),
                3,
            ),
            (
                script(vec![vec![5, 6, 0], vec![0], vec![7, 7, 7, 7, 7, 7, 7, 7, 7]]),
                9,
            ),
            // Ties everywhere, so the tie-breaking of both must agree.
            (
                logits(|image, h| vec![if h.len() > 3 + image { 2.0 } else { 0.5 }, 2.0, 2.0, 1.0, 2.0]),
                9,
            ),
            (
                logits(|_, _| vec![f32::NAN, f32::NEG_INFINITY, -0.0, 0.0, f32::NAN]),
                9,
            ),
            // In f64, 1e-30 - lse == 0 - lse: only the logit itself tells token 2 is greedy's pick.
            (logits(|_, _| vec![0.0, 0.0, 1e-30, 0.0]), 9),
        ];
        models.extend((0..30).map(|seed| (random(seed, 6), 6)));
        for (i, (f, bos)) in models.iter().enumerate() {
            let greedy = run(f, 3, Strategy::Greedy, 8, *bos);
            let beam = run(f, 3, Strategy::Beam { width: 1 }, 8, *bos);
            let tokens: Vec<Vec<u32>> = greedy.iter().map(|g| g.tokens.clone()).collect();
            let lp = sequence_log_prob(&mut ToyModel::new(3, f.clone()), *bos, &tokens).unwrap();
            assert_eq!((greedy.len(), beam.len(), lp.len()), (3, 3, 3), "model {i}");
            for ((g, b), lp) in greedy.iter().zip(&beam).zip(lp) {
                assert_eq!(g.tokens, b.tokens, "model {i}");
                assert_eq!(g.score, lp as f32, "model {i}");
                assert_eq!(b.score, (lp / g.tokens.len() as f64) as f32, "model {i}");
            }
        }
    }

    #[test]
    fn width_three_beats_greedy_whose_first_choice_ends_badly() {
        // eos 0, A 1, B 2, C 3, bos 4. Greedy takes A (.5) then eos (.3): ln .15 over 2 tokens.
        // Beam keeps B (.4), whose eos (.9) gives ln .36 over 2 tokens. At step 3 the finished set is
        // {B eos, A B eos, A eos} and the best live beam A C A (.04) cannot beat A eos: done.
        let f = bigram(vec![
            vec![0.25, 0.25, 0.25, 0.25, 0.0],
            vec![0.3, 0.25, 0.25, 0.2, 0.0],
            vec![0.9, 0.04, 0.03, 0.03, 0.0],
            vec![0.2, 0.4, 0.3, 0.1, 0.0],
            vec![0.01, 0.5, 0.4, 0.09, 0.0],
        ]);
        let greedy = run(&f, 1, Strategy::Greedy, 10, 4);
        assert_eq!(greedy[0].tokens, vec![1, 0]);
        assert!(close(greedy[0].score, 0.15f64.ln()));
        let mut model = ToyModel::new(1, f.clone());
        let opts = DecodeOptions {
            strategy: Strategy::Beam { width: 3 },
            max_length: 10,
            bos: 4,
            eos: 0,
        };
        let beam = generate(&mut model, &opts).unwrap();
        assert_eq!(beam[0].tokens, vec![2, 0]);
        assert!(close(beam[0].score, 0.36f64.ln() / 2.0));
        assert!(beam[0].score > greedy[0].score / 2.0);
        assert_eq!(model.steps, vec![1, 3, 3]);
        assert_eq!(model.selects, vec![vec![0, 0, 0], vec![0, 0, 0]]);
        // Cut at 3 tokens, the same hypotheses are finished.
        assert_eq!(run(&f, 1, Strategy::Beam { width: 3 }, 3, 4), beam);
    }

    #[test]
    fn at_max_length_live_beams_count_as_finished() {
        // eos never happens; 2 then 1 (.4 × .9) beats greedy's 1 then 1 (.6 × .5).
        let f = bigram(vec![
            vec![0.0, 0.5, 0.5, 0.0],
            vec![0.0, 0.5, 0.5, 0.0],
            vec![0.0, 0.9, 0.1, 0.0],
            vec![0.0, 0.6, 0.4, 0.0],
        ]);
        assert_eq!(run(&f, 1, Strategy::Greedy, 2, 3)[0].tokens, vec![1, 1]);
        let beam = run(&f, 1, Strategy::Beam { width: 2 }, 2, 3);
        assert_eq!(beam[0].tokens, vec![2, 1]);
        assert!(close(beam[0].score, 0.36f64.ln() / 2.0));
    }

    #[test]
    fn an_eos_ranked_below_width_is_not_a_hypothesis() {
        // eos 0, P 1, Q 2, Z 3, W 4, Y 5. Step 2 ranks P Z, P eos, Q eos, P W: Q eos is third, so
        // it is dropped (as in HF). Kept, it would fill the two hypotheses and stop the search at
        // step 3 with P eos; dropped, the search goes on to P Z Y eos, which scores higher.
        let f = tree(
            6,
            vec![
                (vec![], vec![0.0, 0.7, 0.3, 0.0, 0.0, 0.0]),
                (vec![1], vec![0.43, 0.0, 0.0, 0.51, 0.06, 0.0]),
                (vec![2], vec![0.87, 0.0, 0.0, 0.0, 0.13, 0.0]),
                (vec![1, 3], vec![0.0, 0.2, 0.25, 0.0, 0.25, 0.3]),
                (vec![1, 3, 5], vec![0.95, 0.0, 0.0, 0.0, 0.05, 0.0]),
            ],
        );
        let mut model = ToyModel::new(1, f);
        let opts = DecodeOptions {
            strategy: Strategy::Beam { width: 2 },
            max_length: 10,
            bos: 6,
            eos: 0,
        };
        let beam = generate(&mut model, &opts).unwrap();
        assert_eq!(beam[0].tokens, vec![1, 3, 5, 0]);
        assert!(close(beam[0].score, (0.7f64 * 0.51 * 0.3 * 0.95).ln() / 4.0));
        assert_eq!(model.steps, vec![1, 2, 2, 2]);
        assert_eq!(model.selects, vec![vec![0, 0], vec![0, 0], vec![0, 0]]);
    }

    #[test]
    fn equal_scores_prefer_the_lower_beam() {
        // Every caption of the same length is equally likely; ranking by beam before token keeps
        // both children of beam 0 (tokens 1 and 2), never beam 1's.
        let f = logits(|_, _| vec![f32::NEG_INFINITY, 0.0, 0.0]);
        let mut model = ToyModel::new(1, f);
        let opts = DecodeOptions {
            strategy: Strategy::Beam { width: 2 },
            max_length: 3,
            bos: 3,
            eos: 0,
        };
        let beam = generate(&mut model, &opts).unwrap();
        assert_eq!(beam[0].tokens, vec![1, 1, 1]);
        assert!(close(beam[0].score, 0.5f64.ln()));
        assert_eq!(model.selects, vec![vec![0, 0], vec![0, 0]]);
    }

    #[test]
    fn a_batch_of_images_decodes_as_each_image_alone() {
        for seed in 0..10 {
            let f = random(100 + seed, 7);
            let mut model = ToyModel::new(4, f.clone());
            let opts = DecodeOptions {
                strategy: Strategy::Beam { width: 3 },
                max_length: 6,
                bos: 7,
                eos: 0,
            };
            let batch = generate(&mut model, &opts).unwrap();
            assert_eq!(batch.len(), 4, "seed {seed}");
            for (image, got) in batch.iter().enumerate() {
                let mut alone = ToyModel::with_images(vec![image], f.clone());
                assert_eq!(
                    &generate(&mut alone, &opts).unwrap()[0],
                    got,
                    "seed {seed} image {image}"
                );
            }
            assert!(model.steps.iter().all(|&rows| rows <= 12));
            assert!(model.selects.iter().all(|s| s.len() <= 12));
        }
    }

    #[test]
    fn all_nan_logits_are_a_decode_error() {
        let f = logits(|_, _| vec![f32::NAN; 4]);
        let mut model = ToyModel::new(2, f);
        let opts = DecodeOptions {
            strategy: Strategy::Beam { width: 2 },
            max_length: 3,
            bos: 3,
            eos: 0,
        };
        assert!(matches!(generate(&mut model, &opts), Err(Error::Decode(_))));
    }

    #[test]
    fn hypotheses_keep_the_best_width_and_earlier_ones_win_ties() {
        let mut h = Hypotheses::new(2);
        h.add(vec![1], -1.0);
        assert!(!h.is_done(-10.0, 1), "not full yet");
        h.add(vec![1, 2], -3.0);
        assert_eq!(h.worst(), -1.5);
        h.add(vec![1, 2, 3], -3.0);
        assert_eq!(h.worst(), -1.0, "-1.5 was dropped");
        h.add(vec![4], -1.0);
        assert!(h.is_done(-2.0, 2));
        assert!(!h.is_done(-1.9, 2));
        assert_eq!(h.best(), Some((-1.0, vec![1])));
    }
}
