//! `bench train`: training throughput (images/s) of the full-size default model on random
//! weights, through the trainer's real data path: PNG files decoded and preprocessed (no
//! cache), or CLIP features read from the feature cache, then forward, loss, backward and AdamW.
//! Beside the time, the tensor ops of each phase are counted on the real path, and the old and
//! new training paths can be timed back to back in one run (`--paths old,new`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Result};
use candle_core::{DType, Device, Tensor};
use caption_model::preprocess::PreprocessConfig;
use caption_model::tokenizer::Tokenizer;
use caption_model::{caption_loss, ModelConfig};
use rand::{Rng, SeedableRng};

use crate::data::feature_cache::{self, FeatureCache};
use crate::data::{BatchBuilder, Sample, Visual};
use crate::train::forward::batch_logits;
use crate::train::optim::in_place::kernel_calls;
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
    /// Training paths to time, in this order.
    pub paths: Vec<TrainPath>,
}

/// A training path, for side-by-side timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainPath {
    /// Products with a frozen weight compute the input's gradient only; AdamW as the device
    /// runs it by default (flat groups on a GPU, tensor by tensor on the CPU).
    New,
    /// candle's plain products (both operands' gradients); AdamW tensor by tensor.
    Old,
}

impl std::str::FromStr for TrainPath {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "new" => Ok(Self::New),
            "old" => Ok(Self::Old),
            other => bail!("unknown training path `{other}` (old or new)"),
        }
    }
}

/// Tensor ops of one training step, phase by phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Batch assembly (decode or cache read, tokenizing) and the forward pass with the loss.
    pub forward: usize,
    /// `loss.backward()`.
    pub backward: usize,
    /// The optimizer step: tensors created plus in-place kernel calls.
    pub optimizer: usize,
}

impl OpCounts {
    /// All three phases.
    pub fn total(&self) -> usize {
        self.forward + self.backward + self.optimizer
    }
}

/// Tensors created so far in this process. candle numbers every tensor it creates (each op's
/// result, views included) from one global counter, so the difference over a phase counts the
/// tensor ops that phase ran, on the real code path. The probe tensor counts itself.
fn tensors_created() -> usize {
    let probe = Tensor::zeros(1, DType::U8, &Device::Cpu).map(|t| format!("{:?}", t.id()));
    // `TensorId(n)`: the counter's value is only reachable through Debug.
    probe
        .ok()
        .and_then(|s| {
            s.trim_start_matches("TensorId(")
                .trim_end_matches(')')
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Ops between two readings of [`tensors_created`] (the second probe not counted).
fn ops_since(start: usize) -> usize {
    tensors_created().saturating_sub(start + 1)
}

/// One measured setting.
#[derive(Debug, Clone)]
pub struct TrainBenchRow {
    /// Training path.
    pub path: TrainPath,
    /// Batch size.
    pub batch: usize,
    /// Whether CLIP features came from the cache.
    pub cached: bool,
    /// Median seconds per optimizer step.
    pub step_s: f64,
    /// Images per second at that step time.
    pub images_per_s: f64,
    /// Tensor ops of the last timed step.
    pub ops: OpCounts,
    /// Median seconds of each phase.
    pub phase_s: PhaseTimes,
}

/// Seconds spent in each phase of a step (the device synchronized at each phase's end).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseTimes {
    /// Batch assembly, forward and loss.
    pub forward: f64,
    /// `loss.backward()`.
    pub backward: f64,
    /// The optimizer step.
    pub optimizer: f64,
}

/// Times consecutive phases, waiting for the device at each phase's end.
struct PhaseClock<'d> {
    device: &'d Device,
    last: Instant,
}

impl<'d> PhaseClock<'d> {
    fn start(device: &'d Device) -> Self {
        Self {
            device,
            last: Instant::now(),
        }
    }

    /// Seconds since the previous phase ended.
    fn next(&mut self) -> Result<f64> {
        self.device.synchronize()?;
        let now = Instant::now();
        let s = (now - self.last).as_secs_f64();
        self.last = now;
        Ok(s)
    }
}

/// The median of `v` (sorted in place); 0 for none.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
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
    let setup = Setup {
        opts,
        model: &model,
        compute: compute.as_ref(),
        vars: &vars,
        builder: &builder,
        cache: &cache,
        samples: &refs,
    };
    let mut rows = Vec::new();
    for &batch in &opts.batch_sizes {
        for cached in [false, true] {
            for &path in &opts.paths {
                let row = setup.time(path, batch, cached)?;
                println!(
                    "{:3}  batch {batch:4}  {:17}  {:8.3} s/step  {:9.2} images/s  ops: forward {}, backward {}, optimizer {}, total {}  (s: {:.3} / {:.3} / {:.3})",
                    format!("{path:?}").to_lowercase(),
                    if cached {
                        "cached features"
                    } else {
                        "pixels (no cache)"
                    },
                    row.step_s,
                    row.images_per_s,
                    row.ops.forward,
                    row.ops.backward,
                    row.ops.optimizer,
                    row.ops.total(),
                    row.phase_s.forward,
                    row.phase_s.backward,
                    row.phase_s.optimizer
                );
                rows.push(row);
            }
        }
    }
    caption_model::backend::set_frozen_products(true);
    Ok(rows)
}

/// What every timed setting shares.
struct Setup<'a> {
    opts: &'a TrainBenchOptions,
    model: &'a caption_model::CaptionModel,
    compute: Option<&'a ComputeModel>,
    vars: &'a std::collections::BTreeMap<String, candle_core::Var>,
    builder: &'a BatchBuilder,
    cache: &'a FeatureCache,
    samples: &'a [&'a Sample],
}

impl Setup<'_> {
    /// Median step time of one setting over the timed steps (after a warm-up step), with a
    /// fresh optimizer on `path`, and the op counts of its last step.
    fn time(&self, path: TrainPath, batch: usize, cached: bool) -> Result<TrainBenchRow> {
        caption_model::backend::set_frozen_products(path == TrainPath::New);
        let mut opt = Adam::new(AdamConfig::default(), self.vars.clone())?;
        if path == TrainPath::Old {
            opt = opt.per_tensor()?;
        }
        let picks = vec![0; batch];
        let device = &self.opts.device;
        let (mut times, mut ops) = (Vec::new(), OpCounts::default());
        let mut phases: [Vec<f64>; 3] = Default::default();
        for step in 0..=self.opts.steps {
            let t = Instant::now();
            let mut lap = PhaseClock::start(device);
            let start = tensors_created();
            let bf16 = self.compute.map(|c| c.model(self.vars)).transpose()?;
            let step_model = bf16.as_ref().unwrap_or(self.model);
            let cache = cached.then_some(self.cache);
            let dtype = self.opts.precision.dtype();
            let (out, skipped) = batch_logits(
                step_model,
                self.builder,
                cache,
                &self.samples[..batch],
                &picks,
                dtype,
            )?;
            ensure!(skipped.is_empty(), "benchmark images were skipped");
            let out = out.ok_or_else(|| anyhow::anyhow!("empty benchmark batch"))?;
            let loss = caption_loss(&out.logits, &out.tokens)?;
            ops.forward = ops_since(start);
            let forward_s = lap.next()?;
            let start = tensors_created();
            let grads = loss.backward()?;
            ops.backward = ops_since(start);
            let backward_s = lap.next()?;
            let (start, kernels) = (tensors_created(), kernel_calls());
            opt.step(&grads, 1e-5)?;
            // In-place passes create no tensor: their calls are counted apart and added.
            ops.optimizer = ops_since(start) + (kernel_calls() - kernels);
            let optimizer_s = lap.next()?;
            if step > 0 {
                times.push(t.elapsed().as_secs_f64());
                for (v, s) in phases.iter_mut().zip([forward_s, backward_s, optimizer_s]) {
                    v.push(s);
                }
            }
        }
        let [forward, backward, optimizer] = phases.map(|mut v| median(&mut v));
        let step_s = median(&mut times);
        Ok(TrainBenchRow {
            path,
            batch,
            cached,
            step_s,
            images_per_s: batch as f64 / step_s,
            ops,
            phase_s: PhaseTimes {
                forward,
                backward,
                optimizer,
            },
        })
    }
}
