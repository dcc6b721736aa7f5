//! Toy step models for the decoding tests: the logits are a function of the image and of every
//! token fed to its row so far, so a wrong `select_rows` shows up as wrong captions.

use std::rc::Rc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::StepModel;
use crate::{Error, Result};

/// Next-token logits given the image and the tokens fed so far (bos first).
pub type LogitsFn = Rc<dyn Fn(usize, &[u32]) -> Vec<f32>>;

/// A step model that records how it was driven.
pub struct ToyModel {
    /// Per row: its image and the tokens fed to it.
    rows: Vec<(usize, Vec<u32>)>,
    logits: LogitsFn,
    /// Batch size of each `step` call.
    pub steps: Vec<usize>,
    /// Argument of each `select_rows` call.
    pub selects: Vec<Vec<usize>>,
}

impl ToyModel {
    /// A model holding one row for each of images `0..images`.
    pub fn new(images: usize, logits: LogitsFn) -> Self {
        Self::with_images((0..images).collect(), logits)
    }

    /// A model holding one row per listed image id.
    pub fn with_images(images: Vec<usize>, logits: LogitsFn) -> Self {
        let rows = images.into_iter().map(|i| (i, Vec::new())).collect();
        ToyModel {
            rows,
            logits,
            steps: Vec::new(),
            selects: Vec::new(),
        }
    }

    /// Tokens fed so far to the row now at `row`.
    pub fn history(&self, row: usize) -> Vec<u32> {
        self.rows[row].1.clone()
    }
}

impl StepModel for ToyModel {
    fn rows(&self) -> usize {
        self.rows.len()
    }

    async fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        if tokens.len() != self.rows.len() {
            return Err(Error::Config(format!(
                "toy: {} tokens for {} rows",
                tokens.len(),
                self.rows.len()
            )));
        }
        self.steps.push(tokens.len());
        let logits = &self.logits;
        Ok(self
            .rows
            .iter_mut()
            .zip(tokens)
            .map(|((image, history), &t)| {
                history.push(t);
                logits(*image, history)
            })
            .collect())
    }

    fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        if let Some(bad) = rows.iter().find(|&&r| r >= self.rows.len()) {
            return Err(Error::Config(format!("toy: no row {bad}")));
        }
        self.selects.push(rows.to_vec());
        self.rows = rows.iter().map(|&r| self.rows[r].clone()).collect();
        Ok(())
    }
}

/// Wraps a closure as a [`LogitsFn`].
pub fn logits(f: impl Fn(usize, &[u32]) -> Vec<f32> + 'static) -> LogitsFn {
    Rc::new(f)
}

/// Logits ln p(next | last token fed) from a table of probabilities indexed by the last token.
pub fn bigram(probs: Vec<Vec<f64>>) -> LogitsFn {
    Rc::new(move |_, history| {
        let last = history[history.len() - 1] as usize;
        probs[last].iter().map(|&p| p.ln() as f32).collect()
    })
}

/// Each image follows its script of tokens (a clear favourite over 10 tokens), then eos (0).
pub fn script(scripts: Vec<Vec<u32>>) -> LogitsFn {
    Rc::new(move |image, history| {
        let next = scripts[image].get(history.len() - 1).copied().unwrap_or(0);
        let mut logits = vec![0.0; 10];
        logits[next as usize] = 3.0;
        logits
    })
}

/// Pseudo-random logits over `vocab` tokens, a fixed function of (seed, image, history); every
/// logit is a multiple of 0.5 in [-2, 2] so exact ties are common.
pub fn random(seed: u64, vocab: usize) -> LogitsFn {
    Rc::new(move |image, history| {
        // FNV-1a over the context, so every context gets its own stream.
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
        for x in std::iter::once(image as u64).chain(history.iter().map(|&t| u64::from(t))) {
            h = (h ^ x).wrapping_mul(0x0100_0000_01b3);
        }
        let mut rng = StdRng::seed_from_u64(h);
        (0..vocab)
            .map(|_| f32::from(rng.random_range(-4i8..=4)) * 0.5)
            .collect()
    })
}
