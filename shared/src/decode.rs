//! Caption decoding strategies (greedy, beam search, nucleus sampling) over any step-wise model
//! with a KV cache, decoding a batch of images at once.

mod beam;
mod greedy;
mod nucleus;
#[cfg(test)]
mod toy;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use crate::{Error, Result};

pub use nucleus::{Cut, Nucleus};

/// A captioning model that extends a batch of rows by one token each call, caching what came
/// before. Steps are async because a browser GPU can only read results back asynchronously;
/// CPU models return ready futures and are driven by the blocking [`generate`].
// The decoding loops run on one thread (a wasm worker's futures are not Send), so the trait's
// futures carry no Send bound.
#[allow(async_fn_in_trait)]
pub trait StepModel {
    /// Number of rows currently held (one per image at the start).
    fn rows(&self) -> usize;
    /// Feeds one new token per row (tokens.len() == rows()) and returns the logits of the next
    /// token for each row, each of vocabulary length. The first call feeds the bos token after
    /// the visual prefix.
    async fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>>;
    /// Feeds tokens as [`StepModel::step`] does and returns each row's `k` most likely next
    /// tokens with the row's log-normaliser. The default reads the whole logits row; an engine
    /// whose logits stay on the device selects there and reads back only these.
    async fn step_top(&mut self, tokens: &[u32], k: usize) -> Result<Vec<TopTokens>> {
        let logits = step_checked(self, tokens).await?;
        Ok(logits.iter().map(|row| TopTokens::of_row(row, k)).collect())
    }
    /// Feeds tokens as [`StepModel::step`] does and returns each row's nucleus under `cut`.
    /// The default reads the whole logits row; an engine whose logits stay on the device narrows
    /// there and reads back only the candidates where they settle the nucleus.
    async fn step_nucleus(&mut self, tokens: &[u32], cut: &Cut) -> Result<Vec<Nucleus>> {
        let logits = step_checked(self, tokens).await?;
        Ok(logits.iter().map(|row| Nucleus::of_row(row, cut)).collect())
    }
    /// Rearranges the cached rows: new row i continues old row `rows[i]` (rows may repeat or be dropped).
    fn select_rows(&mut self, rows: &[usize]) -> Result<()>;
    /// Most steps the model has room for (GPT-2's positions left after the visual prefix);
    /// captions stop there even when `max_length` asks for more. `None`: no limit.
    fn max_steps(&self) -> Option<usize> {
        None
    }
}

/// A row's most likely next tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct TopTokens {
    /// The row's log-softmax normaliser.
    pub norm: LogNorm,
    /// (token, logit), highest logit first, the lower id first on ties; NaN logits never appear.
    pub best: Vec<(u32, f32)>,
}

impl TopTokens {
    /// The `k` best tokens of a logits row (whose length fits in u32).
    pub fn of_row(row: &[f32], k: usize) -> Self {
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.0.cmp(&b.0))
        };
        let best = if k <= SCAN_MAX_K {
            top_by_scan(row, k)
        } else {
            let mut best: Vec<(u32, f32)> = row
                .iter()
                .enumerate()
                .filter(|(_, x)| !x.is_nan())
                .map(|(i, &x)| (i as u32, x))
                .collect();
            if k < best.len() {
                best.select_nth_unstable_by(k, by_logit);
                best.truncate(k);
            }
            best.sort_by(by_logit);
            best
        };
        Self {
            norm: LogNorm::new(row),
            best,
        }
    }
}

/// Largest k whose best tokens are kept in a sorted list during one pass over the row (greedy
/// and beam search ask for a handful), instead of collecting and selecting over the whole
/// vocabulary every step.
const SCAN_MAX_K: usize = 32;

/// The `k` best (index, logit) of `row` in one pass, best first: higher logit, then lower
/// index; NaN skipped. The same list as collecting, selecting and sorting.
fn top_by_scan(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return best;
    }
    for (i, &x) in row.iter().enumerate() {
        // Indices rise, so an equal logit never beats a kept one; NaN fails every comparison.
        let beats_last = best.len() < k || best.last().is_some_and(|&(_, w)| x > w);
        if !beats_last || x.is_nan() {
            continue;
        }
        let at = best.partition_point(|&(_, w)| w >= x);
        best.insert(at, (i as u32, x));
        best.truncate(k);
    }
    best
}

/// How each next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// The most likely token each step (first index on ties, NaN never chosen).
    Greedy,
    /// Beam search with Hugging Face's length-normalised stopping rule.
    Beam {
        /// Live beams and finished hypotheses kept per image; at least 1.
        width: usize,
    },
    /// Nucleus (top-p) sampling with an optional top-k cut.
    Nucleus {
        /// Divides the logits before the softmax; must be finite and > 0.
        temperature: f32,
        /// Probability mass the kept tokens must reach; in (0, 1].
        top_p: f32,
        /// Keeps only the k most likely tokens before the top-p cut; at least 1 when set.
        top_k: Option<usize>,
        /// Seed of the random generator, so the same seed gives the same captions.
        seed: u64,
    },
}

/// What to decode and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// The decoding strategy.
    pub strategy: Strategy,
    /// Most tokens generated per caption (after bos, eos included); at least 1.
    pub max_length: usize,
    /// Token fed first, right after the visual prefix.
    pub bos: u32,
    /// Token that ends a caption.
    pub eos: u32,
}

impl DecodeOptions {
    /// Checks the options, naming the first invalid one in an [`Error::Decode`].
    pub fn validate(&self) -> Result<()> {
        if self.max_length == 0 {
            return Err(Error::Decode("max_length must be at least 1".into()));
        }
        match self.strategy {
            Strategy::Greedy => Ok(()),
            Strategy::Beam { width: 0 } => Err(Error::Decode("beam width must be at least 1".into())),
            Strategy::Beam { .. } => Ok(()),
            Strategy::Nucleus {
                temperature,
                top_p,
                top_k,
                ..
            } => {
                // Written so that NaN fails every check.
                if !(temperature > 0.0 && temperature.is_finite()) {
                    return Err(Error::Decode(format!(
                        "temperature must be finite and > 0, got {temperature}"
                    )));
                }
                if !(top_p > 0.0 && top_p <= 1.0) {
                    return Err(Error::Decode(format!("top_p must be in (0, 1], got {top_p}")));
                }
                if top_k == Some(0) {
                    return Err(Error::Decode("top_k must be at least 1".into()));
                }
                Ok(())
            }
        }
    }
}

/// One decoded caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Token ids generated after bos, eos included if it was produced.
    pub tokens: Vec<u32>,
    /// Beam: summed log-prob / token count; greedy and nucleus: summed log-prob under the model.
    pub score: f32,
}

/// Decodes one caption per row the model holds, returned in the rows' original order. The model
/// must compute synchronously (every CPU model does); see [`generate_async`].
pub fn generate<M: StepModel>(model: &mut M, opts: &DecodeOptions) -> Result<Vec<Generated>> {
    ready(generate_async(model, opts))?
}

/// Runs a future that never waits (a CPU model's steps) to its end.
fn ready<F: Future>(f: F) -> Result<F::Output> {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(Error::Decode(
            "this model computes asynchronously: decode with generate_async".into(),
        )),
    }
}

/// [`generate`] for models whose steps wait (a GPU read back in the browser).
pub async fn generate_async<M: StepModel>(model: &mut M, opts: &DecodeOptions) -> Result<Vec<Generated>> {
    opts.validate()?;
    if model.rows() == 0 {
        return Ok(Vec::new());
    }
    let mut opts = opts.clone();
    if let Some(room) = model.max_steps() {
        if room == 0 {
            return Err(Error::Decode(
                "the visual prefix fills every position of GPT-2: no room for a caption".into(),
            ));
        }
        opts.max_length = opts.max_length.min(room);
    }
    let opts = &opts;
    match opts.strategy {
        Strategy::Greedy => greedy::generate(model, opts).await,
        Strategy::Beam { width } => beam::generate(model, opts, width).await,
        Strategy::Nucleus {
            temperature,
            top_p,
            top_k,
            seed,
        } => {
            let cut = Cut {
                temperature,
                top_p,
                top_k,
            };
            nucleus::generate(model, opts, &cut, seed).await
        }
    }
}

/// Summed log-prob (f64) of each row's `sequences[row]` following bos; the sums are exactly those
/// greedy (as f32) and beam search (divided by the length, as f32) report for the same tokens.
pub fn sequence_log_prob<M: StepModel>(model: &mut M, bos: u32, sequences: &[Vec<u32>]) -> Result<Vec<f64>> {
    ready(sequence_log_prob_async(model, bos, sequences))?
}

/// [`sequence_log_prob`] for models whose steps wait.
pub async fn sequence_log_prob_async<M: StepModel>(
    model: &mut M,
    bos: u32,
    sequences: &[Vec<u32>],
) -> Result<Vec<f64>> {
    if sequences.len() != model.rows() {
        return Err(Error::Decode(format!(
            "{} sequences for a model holding {} rows",
            sequences.len(),
            model.rows()
        )));
    }
    let mut sums = vec![0.0; sequences.len()];
    // Rows whose sequence is fully scored leave the batch, as in greedy decoding.
    let mut active: Vec<usize> = (0..sequences.len()).collect();
    let mut pos = 0;
    loop {
        let keep: Vec<usize> = (0..active.len())
            .filter(|&i| sequences[active[i]].len() > pos)
            .collect();
        if keep.is_empty() {
            return Ok(sums);
        }
        if keep.len() < active.len() {
            model.select_rows(&keep)?;
            active = keep.iter().map(|&i| active[i]).collect();
        }
        let feed: Vec<u32> = active
            .iter()
            .map(|&r| if pos == 0 { bos } else { sequences[r][pos - 1] })
            .collect();
        let logits = step_checked(model, &feed).await?;
        for (&r, row) in active.iter().zip(&logits) {
            let token = sequences[r][pos];
            let logit = row.get(token as usize).ok_or_else(|| {
                Error::Decode(format!(
                    "token {token} is outside the vocabulary of {}",
                    row.len()
                ))
            })?;
            sums[r] += LogNorm::new(row).log_prob(*logit);
        }
        pos += 1;
    }
}

/// Steps the model and checks that it returned one non-empty logits row per token fed.
async fn step_checked<M: StepModel + ?Sized>(model: &mut M, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
    let logits = one_per_token(model.step(tokens).await?, tokens, "logits rows")?;
    // Token ids are u32, so a vocabulary must fit in one.
    if let Some(bad) = logits
        .iter()
        .find(|r| r.is_empty() || u32::try_from(r.len()).is_err())
    {
        return Err(Error::Decode(format!(
            "model returned a logits row of length {}",
            bad.len()
        )));
    }
    Ok(logits)
}

/// Steps the model for each row's `k` best tokens and checks one entry came back per token fed.
async fn step_top_checked<M: StepModel>(model: &mut M, tokens: &[u32], k: usize) -> Result<Vec<TopTokens>> {
    one_per_token(model.step_top(tokens, k).await?, tokens, "rows of best tokens")
}

/// Steps the model for each row's nucleus and checks one came back per token fed.
async fn step_nucleus_checked<M: StepModel>(
    model: &mut M,
    tokens: &[u32],
    cut: &Cut,
) -> Result<Vec<Nucleus>> {
    one_per_token(model.step_nucleus(tokens, cut).await?, tokens, "nuclei")
}

/// `got`, if it holds one entry per token fed.
fn one_per_token<X>(got: Vec<X>, tokens: &[u32], what: &str) -> Result<Vec<X>> {
    if got.len() != tokens.len() {
        return Err(Error::Decode(format!(
            "model returned {} {what} for {} tokens",
            got.len(),
            tokens.len()
        )));
    }
    Ok(got)
}

/// The largest non-NaN logit and Σ e^(x - max) over the non-NaN logits (the sum is 0 when the
/// max is infinite or there is none: the caller then takes the softmax's limit), each term a
/// vectorisable f32 exponential (about 1e-7 relative; libm's f64 exp over a 50 257-token row
/// took a tenth of a q4 decoding step) summed in 8 f64 lanes. Compiled for AVX-512 or AVX2
/// where the CPU has them (the baseline build has SSE2 only, and the row is read every step):
/// the same operations in the same order, so the same bits on every path.
fn max_and_sum_exp(row: &[f32]) -> (f32, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { max_and_sum_exp_avx512(row) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { max_and_sum_exp_avx2(row) };
        }
    }
    max_and_sum_exp_plain(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn max_and_sum_exp_avx512(row: &[f32]) -> (f32, f64) {
    max_and_sum_exp_plain(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn max_and_sum_exp_avx2(row: &[f32]) -> (f32, f64) {
    max_and_sum_exp_plain(row)
}

/// [`max_and_sum_exp`] in portable code, inlined into each instruction set's copy.
#[inline(always)]
fn max_and_sum_exp_plain(row: &[f32]) -> (f32, f64) {
    // The max in 16 independent lanes so that it vectorises; NaN is never greater, so it is
    // skipped (the max of a set does not depend on the order it is read in).
    let mut top = [f32::NEG_INFINITY; 16];
    let chunks = row.chunks_exact(16);
    let mut max = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    for c in chunks {
        for l in 0..16 {
            top[l] = if c[l] > top[l] { c[l] } else { top[l] };
        }
    }
    for t in top {
        max = if t > max { t } else { max };
    }
    if max.is_infinite() {
        return (max, 0.0);
    }
    // e^(x - max) of a block of values into a buffer first (a plain loop over the block, which
    // the compiler vectorises; interleaved with the f64 sums it stayed scalar), then the sums.
    let term = |x: f32| {
        if x.is_nan() {
            0.0
        } else {
            crate::fast_exp::exp(x - max)
        }
    };
    let mut lanes = [0f64; 8];
    let whole = row.len() / 8 * 8;
    let mut terms = [0f32; 256];
    for block in row[..whole].chunks(terms.len()) {
        let terms = &mut terms[..block.len()];
        for (t, &x) in terms.iter_mut().zip(block) {
            *t = term(x);
        }
        for c in terms.chunks_exact(8) {
            for l in 0..8 {
                lanes[l] += f64::from(c[l]);
            }
        }
    }
    let tail: f64 = row[whole..].iter().map(|&x| f64::from(term(x))).sum();
    (max, lanes.iter().sum::<f64>() + tail)
}

/// Log-softmax normaliser of one logits row, in f64; every strategy scores tokens through it so
/// their scores agree to the bit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogNorm {
    /// Largest non-NaN logit.
    max: f64,
    /// log p of a token with logit `x` is `x - lse` when `max` is finite.
    lse: f64,
}

impl LogNorm {
    /// A normaliser computed elsewhere (on a GPU): the largest logit and the log-sum-exp.
    pub fn from_parts(max: f64, lse: f64) -> Self {
        Self { max, lse }
    }

    /// The largest logit and the log-sum-exp.
    pub fn parts(&self) -> (f64, f64) {
        (self.max, self.lse)
    }

    /// Computes the normaliser; NaN logits count as impossible tokens.
    pub fn new(row: &[f32]) -> Self {
        let (max_f32, sum) = max_and_sum_exp(row);
        let max = f64::from(max_f32);
        if max.is_infinite() {
            // The limit of the softmax: uniform over the logits equal to the (infinite) max.
            let ties = row.iter().filter(|&&x| f64::from(x) == max).count().max(1);
            return LogNorm {
                max,
                lse: (ties as f64).ln(),
            };
        }
        LogNorm {
            max,
            lse: max + sum.ln(),
        }
    }

    /// Log-probability of a token whose logit is `x`.
    pub fn log_prob(&self, x: f32) -> f64 {
        let x = f64::from(x);
        if x.is_nan() {
            f64::NEG_INFINITY
        } else if self.max.is_infinite() {
            if x == self.max {
                -self.lse
            } else {
                f64::NEG_INFINITY
            }
        } else {
            x - self.lse
        }
    }
}

#[cfg(test)]
mod tests;
