//! Words as they are generated: a [`StepModel`] wrapper that follows each row's tokens (through
//! beam reorderings) and reports the leading row's tokens before every step.

use caption_model::decode::{Cut, Nucleus, StepModel, TopTokens};
use caption_model::Result;

/// Wraps a step model; `on_tokens` sees row 0's tokens so far (bos excluded) at every step.
pub struct Streaming<'a, M: StepModel> {
    inner: M,
    rows: Vec<Vec<u32>>,
    started: bool,
    on_tokens: &'a mut dyn FnMut(&[u32]),
}

impl<'a, M: StepModel> Streaming<'a, M> {
    /// Starts following `inner`'s rows.
    pub fn new(inner: M, on_tokens: &'a mut dyn FnMut(&[u32])) -> Self {
        let rows = vec![Vec::new(); inner.rows()];
        Self {
            inner,
            rows,
            started: false,
            on_tokens,
        }
    }
}

impl<M: StepModel> Streaming<'_, M> {
    /// Records the tokens fed and reports row 0's caption so far.
    fn observe(&mut self, tokens: &[u32]) {
        if self.started {
            for (row, &t) in self.rows.iter_mut().zip(tokens) {
                row.push(t);
            }
            if let Some(first) = self.rows.first() {
                (self.on_tokens)(first);
            }
        }
        // The first call feeds bos, which is not part of the caption.
        self.started = true;
    }
}

impl<M: StepModel> StepModel for Streaming<'_, M> {
    fn rows(&self) -> usize {
        self.inner.rows()
    }

    async fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        self.observe(tokens);
        self.inner.step(tokens).await
    }

    async fn step_top(&mut self, tokens: &[u32], k: usize) -> Result<Vec<TopTokens>> {
        self.observe(tokens);
        self.inner.step_top(tokens, k).await
    }

    async fn step_nucleus(&mut self, tokens: &[u32], cut: &Cut) -> Result<Vec<Nucleus>> {
        self.observe(tokens);
        self.inner.step_nucleus(tokens, cut).await
    }

    fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        self.rows = rows.iter().map(|&r| self.rows[r].clone()).collect();
        self.inner.select_rows(rows)
    }

    fn max_steps(&self) -> Option<usize> {
        self.inner.max_steps()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caption_model::decode::{generate, DecodeOptions, Strategy};

    /// Prefers token (step + 1) until step 3, then eos (0); vocabulary of 8.
    struct Counter {
        rows: usize,
        step: usize,
    }

    impl StepModel for Counter {
        fn rows(&self) -> usize {
            self.rows
        }
        async fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
            self.step += 1;
            let best = if self.step > 3 { 0 } else { self.step };
            Ok(tokens
                .iter()
                .map(|_| (0..8).map(|i| if i == best { 1.0 } else { 0.0 }).collect())
                .collect())
        }
        fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
            self.rows = rows.len();
            Ok(())
        }
    }

    #[test]
    fn reports_growing_prefixes_and_changes_nothing() {
        for strategy in [Strategy::Greedy, Strategy::Beam { width: 2 }] {
            let opts = DecodeOptions {
                strategy,
                max_length: 10,
                bos: 7,
                eos: 0,
            };
            let plain = generate(&mut Counter { rows: 1, step: 0 }, &opts).unwrap();
            let mut seen: Vec<Vec<u32>> = Vec::new();
            let mut on = |t: &[u32]| seen.push(t.to_vec());
            let mut model = Streaming::new(Counter { rows: 1, step: 0 }, &mut on);
            let streamed = generate(&mut model, &opts).unwrap();
            assert_eq!(plain, streamed);
            assert_eq!(seen.first().unwrap(), &vec![1]);
            if opts.strategy == Strategy::Greedy {
                // Fed tokens only: the final eos is chosen, never fed.
                assert_eq!(seen, vec![vec![1], vec![1, 2], vec![1, 2, 3]]);
            }
        }
    }
}
