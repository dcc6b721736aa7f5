//! The training loop: data order, steps, validation, checkpoints and exact resume.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use caption_model::dropout::DropoutRng;
use caption_model::preprocess::PreprocessConfig;
use caption_model::weights::Quant;
use caption_model::{caption_loss, CaptionModel, ModelConfig};

use super::checkpoint::{self, LoopState};
use super::config::ProjectConfig;
use super::feed::{BatchFeed, BatchSource, FedBatch, StepJob};
use super::forward::{batch_logits, prepare, training_loss, TrainingLoss};
use super::init::initial_weights;
use super::optim::schedule::Schedule;
use super::optim::{Adam, AdamConfig, Moments};
use super::params::trainable_model;
use super::precision::{ComputeModel, Precision};
use super::qat::block_grid::check_grid;
use super::qat::distill::Teacher;
use super::qat::rounded::{quant_aware_scheme, RoundedModel};
use super::session::{fit_vocabulary, load_split, tokenizer_for, Split};
use crate::data::feature_cache::{self, FeatureCache};
use crate::data::{caption_index, epoch_order, step_seed, BatchBuilder, Dataset, Sample};
use crate::files::write_atomic;

/// A training run in progress.
pub struct Trainer {
    cfg: ProjectConfig,
    model: CaptionModel,
    opt: Adam,
    vars: BTreeMap<String, candle_core::Var>,
    /// Frozen tensors without a pretrained source, saved with every checkpoint.
    extra: BTreeMap<String, Tensor>,
    schedule: Schedule,
    state: LoopState,
    train: Arc<Dataset>,
    val: Option<Dataset>,
    builder: BatchBuilder,
    /// Compute precision, and the bf16 model builder when it is bf16.
    precision: Precision,
    /// Quantization-aware training's model builder (the export's rounding), if on.
    rounded: Option<RoundedModel>,
    /// The checkpoint a distillation run imitates, if any.
    teacher: Option<Teacher>,
    compute: Option<ComputeModel>,
    /// CLIP features of the training and validation samples, when the vision tower is frozen.
    cache: Option<Arc<FeatureCache>>,
    /// Dropout masks, reseeded every step so that a resumed run draws the same ones.
    dropout: DropoutRng,
    run_dir: PathBuf,
    total_steps: u64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, serde::Serialize)]
struct MetricLine<'a> {
    kind: &'a str,
    step: u64,
    epoch: u64,
    value: f64,
    lr: f64,
    samples_per_s: f64,
    /// Seconds the step waited for its batch (0 when it was prepared ahead in time).
    data_wait_s: f64,
}

/// The training split (which must have usable samples) and the validation split, if any.
fn training_splits(cfg: &ProjectConfig) -> Result<(Dataset, Option<Dataset>)> {
    let train = load_split(cfg, Split::Train)?;
    let val = load_split(cfg, Split::Validation).ok();
    if train.is_empty() {
        bail!("the training set has no usable samples");
    }
    Ok((train, val))
}

/// The feature cache's fingerprint when the run reads CLIP features from it (frozen tower).
fn cache_fingerprint(
    cfg: &ProjectConfig,
    model_cfg: &ModelConfig,
    tensors: &HashMap<String, Tensor>,
    pre: &PreprocessConfig,
    quant_aware: bool,
) -> Result<Option<String>> {
    let cached = feature_cache::enabled(
        &cfg.trainer.feature_cache,
        model_cfg.vision.trainable,
        quant_aware,
    )?;
    let settings = format!("{pre:?} {:?}", cfg.dataset.max_frames);
    cached
        .then(|| feature_cache::fingerprint(tensors, &settings))
        .transpose()
}

/// Quantization-aware training's rounded model, when `trainer.quant_aware` asks for one.
fn rounded_model(
    cfg: &ProjectConfig,
    model_cfg: &ModelConfig,
    tensors: &HashMap<String, Tensor>,
    quant_aware: Option<Quant>,
    scales: &[(String, Tensor)],
    device: &Device,
) -> Result<Option<RoundedModel>> {
    let decay = model_cfg.optimizer.clone().unwrap_or_default().weight_decay;
    check_grid(&cfg.trainer, quant_aware.is_some(), decay)?;
    quant_aware
        .map(|q| RoundedModel::new(model_cfg, tensors, q, (cfg.trainer.block_scales, scales), device))
        .transpose()
}

/// The optimizer (restored on resume), the schedule and where the loop starts and ends.
struct StepPlan {
    opt: Adam,
    schedule: Schedule,
    state: LoopState,
    total_steps: u64,
}

impl StepPlan {
    fn new(
        cfg: &ProjectConfig,
        model_cfg: &ModelConfig,
        vars: &BTreeMap<String, Var>,
        rounded: Option<&RoundedModel>,
        train_len: usize,
        resume: Option<(BTreeMap<String, Moments>, LoopState)>,
    ) -> Result<Self> {
        let ocfg = model_cfg.optimizer.clone().unwrap_or_default();
        let adam = AdamConfig::from_config(&ocfg)?;
        let scales: BTreeMap<_, _> = rounded.iter().flat_map(|r| r.trained_scales()).collect();
        let mut opt = Adam::new(adam, vars.clone().into_iter().chain(scales.clone()).collect())?;
        opt.scale_lr(scales.keys(), cfg.trainer.block_scale_lr);
        let per_epoch = train_len.div_ceil(cfg.dataset.train_ds.batch_size.max(1)) as u64;
        let total_steps = cfg
            .trainer
            .max_steps
            .unwrap_or(per_epoch * cfg.trainer.epochs as u64);
        let schedule = Schedule::from_config(&ocfg, total_steps)?;
        let state = match resume {
            Some((moments, state)) => {
                opt.restore(moments, state.step)?;
                state
            }
            None => LoopState::default(),
        };
        Ok(Self {
            opt,
            schedule,
            state,
            total_steps,
        })
    }
}

/// The CLIP features of every training and validation sample, computed where missing, in
/// `feature_cache/` beside the run.
fn fill_feature_cache(
    cfg: &ProjectConfig,
    run_dir: &Path,
    key: &str,
    model: &CaptionModel,
    builder: &BatchBuilder,
    (train, val): (&Dataset, Option<&Dataset>),
) -> Result<FeatureCache> {
    let root = run_dir.parent().unwrap_or(run_dir).join("feature_cache");
    let mut all: Vec<&Sample> = train.samples.iter().collect();
    all.extend(val.iter().flat_map(|v| &v.samples));
    FeatureCache::open_or_fill(&root, key, model, builder, &all, cfg.dataset.train_ds.batch_size)
}

impl Trainer {
    /// Prepares a run: datasets, initial (or resumed) weights, optimizer and schedule.
    pub fn new(cfg: ProjectConfig, device: &Device) -> Result<Self> {
        let run_dir = cfg.run_dir()?;
        // A bad trainer.description fails now, not at the first checkpoint.
        checkpoint::run_description(&cfg)?;
        let ckpt_dir = run_dir.join("checkpoints");
        std::fs::create_dir_all(&ckpt_dir).with_context(|| format!("creating {}", ckpt_dir.display()))?;
        let tokenizer = tokenizer_for(&cfg)?;
        let model_cfg = fit_vocabulary(&crate::hub::complete_config(&cfg.model)?, &cfg, &tokenizer)?;
        let (train, val) = training_splits(&cfg)?;
        let (tensors, extra, resume, scales) = initial_weights(&cfg, &model_cfg, device)?;
        let pre = PreprocessConfig::for_image_size(model_cfg.vision_config()?.image_size);
        let quant_aware = quant_aware_scheme(cfg.trainer.quant_aware.as_deref())?;
        let cache_key = cache_fingerprint(&cfg, &model_cfg, &tensors, &pre, quant_aware.is_some())?;
        let precision = Precision::parse(&cfg.trainer.precision)?;
        let rounded = rounded_model(&cfg, &model_cfg, &tensors, quant_aware, &scales, device)?;
        let teacher = Teacher::load(&cfg, &model_cfg, device)?;
        let compute = (precision == Precision::Bf16)
            .then(|| ComputeModel::new(&model_cfg, &tensors, device))
            .transpose()?;
        let (model, params) = trainable_model(&model_cfg, tensors, candle_core::DType::F32, device)?;
        let vars = params.vars();
        let plan = StepPlan::new(&cfg, &model_cfg, &vars, rounded.as_ref(), train.len(), resume)?;
        let builder =
            BatchBuilder::new(pre, tokenizer, device.clone()).with_max_frames(cfg.dataset.max_frames);
        let cache = match cache_key {
            Some(key) => Some(Arc::new(fill_feature_cache(
                &cfg,
                &run_dir,
                &key,
                &model,
                &builder,
                (&train, val.as_ref()),
            )?)),
            None => None,
        };
        let resolved = serde_yaml::to_string(&cfg)?;
        write_atomic(&run_dir.join("config.yaml"), resolved.as_bytes())?;
        let mut cfg = cfg;
        cfg.model = model_cfg;
        Ok(Self {
            cfg,
            model,
            opt: plan.opt,
            vars,
            extra,
            schedule: plan.schedule,
            state: plan.state,
            train: Arc::new(train),
            val,
            builder,
            precision,
            rounded,
            teacher,
            compute,
            cache,
            dropout: DropoutRng::new(0),
            run_dir,
            total_steps: plan.total_steps,
        })
    }

    /// Where the loop stands.
    pub fn state(&self) -> &LoopState {
        &self.state
    }

    /// The model being trained.
    pub fn model(&self) -> &CaptionModel {
        &self.model
    }

    /// Runs to the end (epochs or `max_steps`), validating and checkpointing on the way.
    pub fn run(&mut self) -> Result<()> {
        let bs = self.cfg.dataset.train_ds.batch_size.max(1);
        let epochs = self.cfg.trainer.epochs as u64;
        let seed = self.cfg.trainer.seed;
        let bar = indicatif::ProgressBar::new(self.total_steps).with_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_position(self.state.step);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run_dir.join("metrics.jsonl"))?;
        while self.state.epoch < epochs && self.state.step < self.total_steps {
            let order = if self.cfg.dataset.train_ds.shuffle {
                epoch_order(self.train.len(), seed, self.state.epoch)
            } else {
                (0..self.train.len()).collect()
            };
            let batches: Vec<&[usize]> = order.chunks(bs).collect();
            let jobs = batches[self.state.batch_in_epoch.min(batches.len())..]
                .iter()
                .map(|idx| self.job(idx))
                .collect();
            let workers = self.cfg.dataset.train_ds.num_workers;
            let mut feed = BatchFeed::start(self.batch_source(), jobs, workers);
            while self.state.batch_in_epoch < batches.len() && self.state.step < self.total_steps {
                let started = Instant::now();
                let fed = feed
                    .next_batch()?
                    .context("the batch feed ended before the epoch did")?;
                let waited = fed.waited.as_secs_f64();
                let loss = self.train_step(fed)?;
                self.state.batch_in_epoch += 1;
                if let Some((loss, n)) = loss {
                    let lr = self.schedule.lr(self.state.step - 1);
                    let rate = n as f64 / started.elapsed().as_secs_f64();
                    bar.set_position(self.state.step);
                    bar.set_message(format!("loss {loss:.4}  lr {lr:.2e}  {rate:.1} img/s"));
                    let line = MetricLine {
                        kind: "train_loss",
                        step: self.state.step,
                        epoch: self.state.epoch,
                        value: loss,
                        lr,
                        samples_per_s: rate,
                        data_wait_s: waited,
                    };
                    writeln!(log, "{}", serde_json::to_string(&line)?)?;
                    if self
                        .cfg
                        .trainer
                        .save_every_n_steps
                        .is_some_and(|n| n > 0 && self.state.step.is_multiple_of(n))
                    {
                        self.save_last()?;
                    }
                }
            }
            feed.shut()?;
            if self.state.batch_in_epoch >= batches.len() {
                self.state.epoch += 1;
                self.state.batch_in_epoch = 0;
                let every = self.cfg.trainer.check_val_every_n_epoch.max(1) as u64;
                if self.state.epoch.is_multiple_of(every) {
                    self.validate_and_keep(&mut log)?;
                }
            }
            self.save_last()?;
        }
        bar.finish_and_clear();
        self.save_last()
    }

    /// The samples of a step and the caption drawn for each, a pure function of (seed, epoch,
    /// position), so that a resumed run draws the same.
    fn job(&self, idx: &[usize]) -> StepJob {
        let picks = idx
            .iter()
            .map(|&i| {
                let n = self.train.samples[i].captions.len();
                caption_index(self.cfg.trainer.seed, self.state.epoch, i, n)
            })
            .collect();
        StepJob {
            idx: idx.to_vec(),
            picks,
        }
    }

    /// Where the step's batches are prepared from (host tensors; the step moves them).
    fn batch_source(&self) -> BatchSource {
        BatchSource {
            data: Arc::clone(&self.train),
            builder: self.builder.clone().on_device(Device::Cpu),
            cache: self.cache.clone(),
        }
    }

    /// One optimizer step on a fed batch; None when every sample was unreadable.
    fn train_step(&mut self, fed: FedBatch) -> Result<Option<(f64, usize)>> {
        self.state.skipped += fed.skipped.len();
        for s in &fed.skipped {
            eprintln!("warning: skipped {}: {}", s.entry, s.reason);
        }
        let Some(inputs) = fed.inputs else {
            return Ok(None);
        };
        let bf16 = self.compute.as_ref().map(|c| c.model(&self.vars)).transpose()?;
        let seed = step_seed(self.cfg.trainer.seed, self.state.step);
        self.dropout.reseed(seed);
        if !self.model.device().is_cpu() {
            self.model.device().set_seed(seed)?;
        }
        let model = &bf16.as_ref().unwrap_or(&self.model).with_dropout(&self.dropout);
        let rounded = self.rounded.as_ref().map(|r| r.model(&self.vars)).transpose()?;
        let rounded = rounded.map(|r| r.with_dropout(&self.dropout));
        let dtype = self.precision.dtype();
        let TrainingLoss { loss, value, rows } = match &self.teacher {
            Some(teacher) => {
                let samples: Vec<_> = fed.job.idx.iter().map(|&i| &self.train.samples[i]).collect();
                let student = rounded.as_ref().unwrap_or(model);
                let batch = (&samples[..], &fed.job.picks[..]);
                teacher.loss(student, &inputs, &self.builder, batch, dtype)?
            }
            None => training_loss(model, rounded.as_ref(), &inputs, dtype)?,
        };
        if !value.is_finite() {
            bail!("the loss is {value} at step {} (epoch {}): stopping before the update would corrupt the weights", self.state.step, self.state.epoch);
        }
        let grads = loss.backward()?;
        let lr = self.schedule.lr(self.state.step);
        self.opt.step(&grads, lr)?;
        self.state.step += 1;
        Ok(Some((value, rows)))
    }

    /// Mean caption loss over a dataset (no gradient); in a distillation run, the mean KL
    /// divergence of the student (rounded under quantization-aware training) from the teacher.
    pub fn loss_on(&self, data: &Dataset) -> Result<f64> {
        let bs = self.cfg.dataset.validation_ds.batch_size.max(1);
        let (mut sum, mut n) = (0.0, 0usize);
        let bf16 = self.compute.as_ref().map(|c| c.model(&self.vars)).transpose()?;
        let rounded = match &self.teacher {
            Some(_) => self.rounded.as_ref().map(|r| r.model(&self.vars)).transpose()?,
            None => None,
        };
        let model = rounded.as_ref().or(bf16.as_ref()).unwrap_or(&self.model);
        let dtype = self.precision.dtype();
        let order: Vec<usize> = (0..data.len()).collect();
        for idx in order.chunks(bs) {
            let samples: Vec<_> = idx.iter().map(|&i| &data.samples[i]).collect();
            let picks = vec![0; samples.len()];
            let cache = self.cache.as_deref();
            let (loss, rows) = match &self.teacher {
                Some(teacher) => {
                    let (Some(inputs), _) = prepare(&self.builder, cache, &samples, &picks, model.device())?
                    else {
                        continue;
                    };
                    let out = teacher.loss(model, &inputs, &self.builder, (&samples, &picks), dtype)?;
                    (out.value, out.rows)
                }
                None => {
                    let (Some(out), _) = batch_logits(model, &self.builder, cache, &samples, &picks, dtype)?
                    else {
                        continue;
                    };
                    let loss = caption_loss(&out.logits, &out.tokens)?.to_scalar::<f32>()?;
                    (f64::from(loss), out.rows)
                }
            };
            sum += loss * rows as f64;
            n += rows;
        }
        anyhow::ensure!(n > 0, "no readable samples to compute a loss on");
        Ok(sum / n as f64)
    }

    fn validate_and_keep(&mut self, log: &mut std::fs::File) -> Result<()> {
        let monitor = self.cfg.trainer.checkpoint_callback_params.monitor.clone();
        let data = match (monitor.as_str(), &self.val) {
            ("val_loss", Some(v)) => v,
            ("val_loss", None) => bail!("monitor val_loss needs dataset.validation_ds"),
            _ => &self.train,
        };
        let value = self.loss_on(data)?;
        let line = MetricLine {
            kind: &monitor,
            step: self.state.step,
            epoch: self.state.epoch,
            value,
            lr: self.schedule.lr(self.state.step),
            samples_per_s: 0.0,
            data_wait_s: 0.0,
        };
        writeln!(log, "{}", serde_json::to_string(&line)?)?;
        log.flush()?;
        // Curves are a convenience: a plotting failure must not stop the run.
        if let Err(e) = super::plot::plot_run(&self.run_dir.join("metrics.jsonl"), &self.run_dir) {
            eprintln!("warning: could not draw the training curves: {e:#}");
        }
        let k = self.cfg.trainer.checkpoint_callback_params.save_top_k;
        let name = format!(
            "{}--{monitor}={value:.4}-epoch={}.safetensors",
            self.cfg.name, self.state.epoch
        );
        let dir = self.run_dir.join("checkpoints");
        self.state.best.push((value, name.clone()));
        self.state.best.sort_by(|a, b| a.0.total_cmp(&b.0));
        if self.state.best.iter().take(k).any(|(_, n)| n == &name) {
            let description = checkpoint::run_description(&self.cfg)?;
            checkpoint::save(
                &dir.join(&name),
                self.model.config(),
                &self.weights(),
                None,
                description.as_deref(),
            )?;
        }
        for (_, dropped) in self.state.best.drain(k.min(self.state.best.len())..) {
            let _ = std::fs::remove_file(dir.join(dropped));
        }
        Ok(())
    }

    /// Tensors worth saving: the trained ones and the frozen ones without a pretrained source
    /// (pretrained backbones come back from `pretrained_name` when the checkpoint is loaded).
    fn weights(&self) -> BTreeMap<String, Tensor> {
        let mut out = self.extra.clone();
        out.extend(self.vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())));
        out.extend(self.rounded.iter().flat_map(RoundedModel::scale_tensors));
        out
    }

    fn save_last(&self) -> Result<()> {
        let path = self.run_dir.join("checkpoints").join("last.safetensors");
        let moments = self.opt.state()?;
        checkpoint::save(
            &path,
            self.model.config(),
            &self.weights(),
            Some((&moments, &self.state)),
            checkpoint::run_description(&self.cfg)?.as_deref(),
        )
    }
}
