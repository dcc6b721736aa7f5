//! `bench train`: training throughput (images/s) of the full-size default model on random
//! weights, through the trainer's real data path: PNG files decoded and preprocessed (no
//! cache), or CLIP features read from the feature cache, then forward, loss, backward and AdamW.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Result};
use candle_core::{DType, Device};
use caption_model::preprocess::PreprocessConfig;
use caption_model::tokenizer::Tokenizer;
use caption_model::{caption_loss, ModelConfig};
use rand::{Rng, SeedableRng};

use crate::data::feature_cache::{self, FeatureCache};
use crate::data::{BatchBuilder, Sample, Visual};
use crate::train::forward::batch_logits;
use crate::train::optim::{Adam, AdamConfig};
use crate::train::precision::{ComputeModel, Precision};
use crate::train::{init, params::trainable_model};

/// What `bench train` measures.
#[derive(Debug, Clone)]
pub struct TrainBenchOptions {
    /// Batch sizes to time.
    pub batch_sizes: Vec<usize>,
    /// Timed steps per setting (after one warm-up step).
    pub steps: usize,
    /// Tokens per caption, bos and eos included.
    pub tokens: usize,
    /// Device to train on.
    pub device: Device,
    /// Compute precision (bf16 keeps f32 master weights).
    pub precision: Precision,
}

/// One measured setting.
#[derive(Debug, Clone)]
pub struct TrainBenchRow {
    /// Batch size.
    pub batch: usize,
    /// Whether CLIP features came from the cache.
    pub cached: bool,
    /// Median seconds per optimizer step.
    pub step_s: f64,
    /// Images per second at that step time.
    pub images_per_s: f64,
}

/// A caption of exactly `tokens` GPT-2 tokens once framed as `<bos> caption <eos>`.
fn caption_of(tok: &Tokenizer, tokens: usize) -> Result<String> {
    ensure!(tokens >= 4, "captions need at least 4 tokens");
    let words = [
        "a", "dog", "runs", "on", "the", "green", "grass", "near", "red", "house",
    ];
    // Framing adds bos, the lone space before eos, and eos.
    let caption: Vec<&str> = (0..tokens - 3).map(|i| words[i % words.len()]).collect();
    let caption = caption.join(" ");
    let n = tok.encode_caption(&caption)?.len();
    ensure!(n == tokens, "benchmark caption has {n} tokens, wanted {tokens}");
    Ok(caption)
}

/// Writes `n` random-noise 224×224 PNGs under `dir` and returns them as samples.
fn noise_samples(dir: &Path, n: usize, caption: &str) -> Result<Vec<Sample>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    (0..n)
        .map(|i| {
            let path = dir.join(format!("{i:05}.png"));
            let img = image::RgbImage::from_fn(224, 224, |_, _| image::Rgb(rng.random::<[u8; 3]>()));
            img.save(&path)?;
            Ok(Sample {
                visual: Visual::Image(path),
                captions: vec![caption.to_string()],
                id: i.to_string(),
            })
        })
        .collect()
}

/// Runs the training benchmark and returns its rows (also printed as they come).
pub fn bench_train(opts: &TrainBenchOptions) -> Result<Vec<TrainBenchRow>> {
    ensure!(opts.steps > 0, "--steps must be at least 1");
    let device = &opts.device;
    let cfg = ModelConfig::default();
    let started = Instant::now();
    let tensors = init::initial_tensors(&cfg, HashMap::new(), &init::FreshInit::default(), device)?;
    let key = feature_cache::fingerprint(&tensors, "bench")?;
    let compute = (opts.precision == Precision::Bf16)
        .then(|| ComputeModel::new(&cfg, &tensors, device))
        .transpose()?;
    let (model, params) = trainable_model(&cfg, tensors, DType::F32, device)?;
    let vars = params.vars();
    let adam = AdamConfig::default();
    let mut opt = Adam::new(adam, vars.clone())?;
    println!(
        "full-size default model, random weights, {} trainable tensors, {:?} on {:?}; built in {:.1} s",
        vars.len(),
        opts.precision,
        device,
        started.elapsed().as_secs_f64()
    );
    let tok = Tokenizer::gpt2()?;
    let caption = caption_of(&tok, opts.tokens)?;
    let builder = BatchBuilder::new(PreprocessConfig::for_image_size(224), tok, device.clone());
    let tmp = tempfile::tempdir()?;
    let largest = opts.batch_sizes.iter().copied().max().unwrap_or(1);
    let samples = noise_samples(tmp.path(), largest, &caption)?;
    let refs: Vec<&Sample> = samples.iter().collect();
    let t0 = Instant::now();
    let cache = FeatureCache::open_or_fill(&tmp.path().join("cache"), &key, &model, &builder, &refs, 32)?;
    println!(
        "feature cache of {} images filled in {:.1} s ({:.1} images/s)",
        cache.len(),
        t0.elapsed().as_secs_f64(),
        cache.len() as f64 / t0.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    for &batch in &opts.batch_sizes {
        for cached in [false, true] {
            let picks = vec![0; batch];
            let mut times = Vec::new();
            for step in 0..=opts.steps {
                let t = Instant::now();
                let bf16 = compute.as_ref().map(|c| c.model(&vars)).transpose()?;
                let step_model = bf16.as_ref().unwrap_or(&model);
                let cache = cached.then_some(&cache);
                let dtype = opts.precision.dtype();
                let (out, skipped) =
                    batch_logits(step_model, &builder, cache, &refs[..batch], &picks, dtype)?;
                ensure!(skipped.is_empty(), "benchmark images were skipped");
                let out = out.ok_or_else(|| anyhow::anyhow!("empty benchmark batch"))?;
                let loss = caption_loss(&out.logits, &out.tokens)?;
                let grads = loss.backward()?;
                opt.step(&grads, 1e-5)?;
                device.synchronize()?;
                if step > 0 {
                    times.push(t.elapsed().as_secs_f64());
                }
            }
            times.sort_by(f64::total_cmp);
            let step_s = times[times.len() / 2];
            let row = TrainBenchRow {
                batch,
                cached,
                step_s,
                images_per_s: batch as f64 / step_s,
            };
            println!(
                "batch {batch:4}  {:17}  {:8.3} s/step  {:9.1} images/s",
                if cached {
                    "cached features"
                } else {
                    "pixels (no cache)"
                },
                row.step_s,
                row.images_per_s
            );
            rows.push(row);
        }
    }
    Ok(rows)
}
