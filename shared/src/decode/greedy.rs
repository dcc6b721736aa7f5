//! Greedy decoding, and the row-by-row loop it shares with nucleus sampling.

use super::nucleus::Cut;
use super::{step_nucleus_checked, step_top_checked, DecodeOptions, Generated, StepModel};
use crate::{Error, Result};

/// How each row's next token is picked.
pub(super) enum Pick<'a> {
    /// The most likely token (first index on ties), selected where the logits live.
    Argmax,
    /// A token sampled from the row's nucleus under the cut, at a uniform draw in [0, 1) from
    /// the function.
    Nucleus(Cut, Box<dyn FnMut() -> f64 + 'a>),
}

/// Greedy decoding: the argmax token each step.
pub(super) async fn generate<M: StepModel>(model: &mut M, opts: &DecodeOptions) -> Result<Vec<Generated>> {
    extend_rows(model, opts, Pick::Argmax).await
}

/// Each row's picked token and its log-prob (None: no token can be picked), for one step.
async fn pick_tokens<M: StepModel>(
    model: &mut M,
    feed: &[u32],
    pick: &mut Pick<'_>,
) -> Result<Vec<Option<(u32, f64)>>> {
    Ok(match pick {
        Pick::Argmax => step_top_checked(model, feed, 1)
            .await?
            .into_iter()
            .map(|top| top.best.first().map(|&(t, logit)| (t, top.norm.log_prob(logit))))
            .collect(),
        Pick::Nucleus(cut, draw) => step_nucleus_checked(model, feed, cut)
            .await?
            .iter()
            .map(|nucleus| nucleus.sample(draw()))
            .collect(),
    })
}

/// Extends every row by the token `pick` picks until it picks eos or `max_length` tokens are
/// generated. Rows that finish are dropped from the model so later steps run on the live rows
/// only; scores are summed model log-probs.
pub(super) async fn extend_rows<M: StepModel>(
    model: &mut M,
    opts: &DecodeOptions,
    mut pick: Pick<'_>,
) -> Result<Vec<Generated>> {
    let n = model.rows();
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut sums = vec![0.0f64; n];
    // Original index of each row the model holds now.
    let mut active: Vec<usize> = (0..n).collect();
    let mut feed = vec![opts.bos; n];
    for step in 1..=opts.max_length {
        let picked = pick_tokens(model, &feed, &mut pick).await?;
        let mut keep = Vec::with_capacity(active.len());
        for (pos, (&r, choice)) in active.iter().zip(picked).enumerate() {
            let (token, log_prob) = choice.ok_or_else(|| {
                Error::Decode(format!("no token can be chosen for row {r}: every logit is NaN"))
            })?;
            sums[r] += log_prob;
            tokens[r].push(token);
            if token != opts.eos {
                keep.push(pos);
            }
        }
        if step == opts.max_length || keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            model.select_rows(&keep)?;
            active = keep.iter().map(|&pos| active[pos]).collect();
        }
        feed = active.iter().map(|&r| tokens[r][tokens[r].len() - 1]).collect();
    }
    Ok(tokens
        .into_iter()
        .zip(sums)
        .map(|(tokens, sum)| Generated {
            tokens,
            score: sum as f32,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::toy::{bigram, logits, script, ToyModel};
    use super::super::{generate, sequence_log_prob, DecodeOptions, Strategy};
    use crate::Error;

    fn greedy(max_length: usize) -> DecodeOptions {
        DecodeOptions {
            strategy: Strategy::Greedy,
            max_length,
            bos: 9,
            eos: 0,
        }
    }

    #[test]
    fn follows_the_argmax_until_eos() {
        // bos(9) -> 2 (.6), 2 -> 3 (.5), 3 -> eos (.7).
        let mut probs = vec![vec![0.1, 0.1, 0.1, 0.1]; 10];
        probs[9] = vec![0.2, 0.1, 0.6, 0.1];
        probs[2] = vec![0.1, 0.2, 0.2, 0.5];
        probs[3] = vec![0.7, 0.1, 0.1, 0.1];
        let mut model = ToyModel::new(1, bigram(probs.clone()));
        let out = generate(&mut model, &greedy(10)).unwrap();
        assert_eq!(out[0].tokens, vec![2, 3, 0]);
        let expected = (0.6f64 * 0.5 * 0.7).ln();
        assert!(
            (f64::from(out[0].score) - expected).abs() < 1e-6,
            "{}",
            out[0].score
        );
        assert_eq!(model.steps, vec![1, 1, 1]);
        assert_eq!(model.history(0), vec![9, 2, 3]);
        // The score is exactly the model's log-prob of the tokens.
        let mut again = ToyModel::new(1, bigram(probs));
        let lp = sequence_log_prob(&mut again, 9, &[vec![2, 3, 0]]).unwrap();
        assert_eq!(out[0].score, lp[0] as f32);
    }

    #[test]
    fn stops_at_max_length() {
        // 1 -> 2 -> 1 -> ... never reaches eos.
        let f = script(vec![vec![1, 2, 1, 2, 1, 2, 1, 2]]);
        let mut model = ToyModel::new(1, f.clone());
        assert_eq!(
            generate(&mut model, &greedy(5)).unwrap()[0].tokens,
            vec![1, 2, 1, 2, 1]
        );
        assert_eq!(model.steps.len(), 5);
        let mut model = ToyModel::new(1, f);
        assert_eq!(generate(&mut model, &greedy(1)).unwrap()[0].tokens, vec![1]);
        assert_eq!(model.steps, vec![1]);
    }

    #[test]
    fn ties_pick_the_first_index_and_nan_is_never_chosen() {
        let rows: Vec<Vec<f32>> = vec![
            vec![1.0, 3.0, 3.0, 0.5],
            vec![f32::NAN, -1.0, 5.0, 5.0, f32::NAN],
            vec![f32::NAN, f32::NEG_INFINITY, f32::NEG_INFINITY],
            vec![-0.0, 0.0, f32::NAN],
        ];
        let n = rows.len();
        let mut model = ToyModel::new(n, logits(move |image, _| rows[image].clone()));
        let out = generate(&mut model, &greedy(1)).unwrap();
        let firsts: Vec<u32> = out.iter().map(|g| g.tokens[0]).collect();
        assert_eq!(firsts, vec![1, 2, 1, 0]);
        let expected = [
            -(2.0 + (-2.0f64).exp() + (-2.5f64).exp()).ln(),
            -(2.0 + (-6.0f64).exp()).ln(),
        ];
        for (g, e) in out.iter().zip(expected) {
            assert!((f64::from(g.score) - e).abs() < 1e-6, "{} vs {e}", g.score);
        }
        // All -inf (or ±0) ties share the mass equally.
        assert_eq!(out[2].score, -(2.0f64.ln() as f32));
        assert_eq!(out[3].score, -(2.0f64.ln() as f32));
    }

    #[test]
    fn rows_finish_at_different_steps_and_the_batch_shrinks() {
        // Image 0 needs 3 steps, image 1 one, image 2 two; image 3 hits max_length.
        let f = script(vec![vec![5, 6, 0], vec![0], vec![7, 0], vec![4, 4, 4, 4, 4]]);
        let mut model = ToyModel::new(4, f);
        let out = generate(&mut model, &greedy(4)).unwrap();
        let tokens: Vec<Vec<u32>> = out.into_iter().map(|g| g.tokens).collect();
        assert_eq!(tokens, vec![vec![5, 6, 0], vec![0], vec![7, 0], vec![4, 4, 4, 4]]);
        assert_eq!(model.steps, vec![4, 3, 2, 1]);
        assert_eq!(model.selects, vec![vec![0, 2, 3], vec![0, 2], vec![1]]);
        assert_eq!(model.history(0), vec![9, 4, 4, 4]);
    }

    #[test]
    fn all_nan_logits_are_a_decode_error() {
        let mut model = ToyModel::new(
            2,
            logits(|image, _| {
                if image == 1 {
                    vec![f32::NAN; 3]
                } else {
                    vec![1.0, 0.0, 0.0]
                }
            }),
        );
        assert!(matches!(generate(&mut model, &greedy(3)), Err(Error::Decode(_))));
    }

    #[test]
    fn an_empty_batch_never_steps() {
        let mut model = ToyModel::new(0, logits(|_, _| vec![0.0]));
        assert!(generate(&mut model, &greedy(3)).unwrap().is_empty());
        assert!(model.steps.is_empty());
    }
}
