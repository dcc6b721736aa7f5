//! `verify`: runs a fixture directory (config.json, weights.safetensors, io.safetensors) through
//! the model and compares every output the fixture holds.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use caption_model::decode::{generate, DecodeOptions, Strategy};
use caption_model::weights::{model_from_tensors, read_safetensors};
use caption_model::{caption_loss, CaptionModel, Captioner, ModelConfig};

use crate::train::{trainable_model, Adam, AdamConfig};

/// Absolute tolerance on activations and logits.
pub const ACTIVATION_TOL: f64 = 1e-4;
/// Relative tolerance on the loss.
pub const LOSS_REL_TOL: f64 = 1e-5;
/// Relative tolerance on gradients and updated parameters (max |diff| / max |expected|, per tensor).
pub const TRAIN_REL_TOL: f64 = 1e-5;

/// One compared output.
#[derive(Debug, Clone)]
pub struct Check {
    /// Output name in io.safetensors.
    pub name: String,
    /// Max absolute difference (relative for the loss).
    pub diff: f64,
    /// Tolerance it must stay within.
    pub tol: f64,
    /// Whether `diff` is relative (max |diff| / max |expected|) rather than absolute.
    pub relative: bool,
}

impl Check {
    /// Whether the difference is within tolerance (NaN fails).
    pub fn passed(&self) -> bool {
        self.diff <= self.tol
    }
}

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Numeric comparisons.
    pub checks: Vec<Check>,
    /// Expected and produced greedy tokens (bos first), when the fixture has them.
    pub greedy: Option<(Vec<u32>, Vec<u32>)>,
}

impl Report {
    /// Whether every comparison passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed) && self.greedy.as_ref().is_none_or(|(e, g)| e == g)
    }

    /// Human-readable lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .checks
            .iter()
            .map(|c| {
                let kind = if c.relative {
                    "max rel diff"
                } else {
                    "max abs diff"
                };
                let verdict = if c.passed() { "ok" } else { "FAIL" };
                format!(
                    "{:<14} {kind} {:.3e} (tol {:.0e})  {verdict}",
                    c.name, c.diff, c.tol
                )
            })
            .collect();
        if let Some((e, g)) = &self.greedy {
            let verdict = if e == g { "equal  ok" } else { "DIFFERENT  FAIL" };
            out.push(format!(
                "{:<14} {verdict}\n  expected {e:?}\n  produced {g:?}",
                "greedy tokens"
            ));
        }
        out
    }
}

/// Max |a - b| over two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.dims() != b.dims() {
        bail!("shape {:?} differs from expected {:?}", a.dims(), b.dims());
    }
    let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?
        .abs()?
        .flatten_all()?
        .max(0)?;
    Ok(d.to_scalar::<f64>()?)
}

fn get<'a>(io: &'a HashMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    io.get(name)
        .with_context(|| format!("io.safetensors has no `{name}`"))
}

/// Integer tensor → Vec<u32>.
fn ids(t: &Tensor) -> Result<Vec<u32>> {
    Ok(t.to_dtype(DType::I64)?
        .flatten_all()?
        .to_vec1::<i64>()?
        .into_iter()
        .map(|x| x as u32)
        .collect())
}

/// Runs the fixture in `dir` and compares its outputs.
pub fn verify_dir(dir: &Path) -> Result<Report> {
    let device = Device::Cpu;
    let cfg = ModelConfig::from_file(dir.join("config.json"))?;
    let weights = read_safetensors(&dir.join("weights.safetensors"), &device)?;
    let model = model_from_tensors(&cfg, weights.clone(), &device)?;
    let io = read_safetensors(&dir.join("io.safetensors"), &device)?;
    let video = get(&io, "video")?;
    let (b, t) = (video.dim(0)?, video.dim(1)?);
    let lengths: Vec<usize> = match io.get("video_length") {
        Some(l) => ids(l)?.into_iter().map(|x| x as usize).collect(),
        None => vec![t; b],
    };
    let frame_mask = CaptionModel::frame_mask(&lengths, t, &device)?;
    let tokens = get(&io, "tokens")?.to_dtype(DType::U32)?;
    let tokens_mask = match io.get("tokens_mask") {
        Some(m) => m.clone(),
        None => Tensor::ones(tokens.dims(), DType::F32, &device)?,
    };
    let (visual, logits) = model.forward(video, &frame_mask, &tokens, &tokens_mask)?;
    let mut checks = Vec::new();
    let mut compare = |name: &str, got: &Tensor| -> Result<()> {
        if let Some(expected) = io.get(name) {
            let diff = max_abs_diff(got, expected).with_context(|| format!("comparing `{name}`"))?;
            checks.push(Check {
                name: name.into(),
                diff,
                tol: ACTIVATION_TOL,
                relative: false,
            });
        }
        Ok(())
    };
    compare("mapped_prefix", &visual.prefix)?;
    if let Some(latents) = &visual.latents {
        compare("resampled", latents)?;
    }
    compare("logits", &logits)?;
    if let Some(expected) = io.get("loss") {
        let got = caption_loss(&logits, &tokens)?.to_scalar::<f32>()? as f64;
        let want = expected.flatten_all()?.to_vec1::<f32>()?[0] as f64;
        checks.push(Check {
            name: "loss".into(),
            diff: (got - want).abs() / want.abs().max(1e-12),
            tol: LOSS_REL_TOL,
            relative: true,
        });
    }
    if io.keys().any(|k| k.starts_with("grad.")) {
        checks.extend(train_step_checks(
            &cfg,
            weights,
            &io,
            (video, &frame_mask, &tokens, &tokens_mask),
        )?);
    }
    let greedy = match io.get("greedy_tokens_image0") {
        Some(expected) => {
            let expected = ids(expected)?;
            let steps = expected.len().saturating_sub(1).max(1);
            Some((expected, greedy_image0(&model, video, steps)?))
        }
        None => None,
    };
    Ok(Report { checks, greedy })
}

/// The largest difference and its tensor's name (NaN counts as the largest).
fn worst(diffs: impl Iterator<Item = Result<(f64, String)>>) -> Result<(f64, String)> {
    let mut out = (0.0f64, String::new());
    for d in diffs {
        let (d, name) = d?;
        if d.is_nan() || d > out.0 {
            out = (d, name);
        }
    }
    Ok(out)
}

/// max |a - b| / max |b| for one tensor.
fn rel_diff(got: &Tensor, want: &Tensor) -> Result<f64> {
    let scale = want
        .to_dtype(DType::F64)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f64>()?;
    Ok(max_abs_diff(got, want)? / scale.max(1e-30))
}

/// One training step (loss → gradients → one AdamW step with the fixture's settings) compared
/// with `grad.<name>` and `after_adamw.<name>`: the worst tensor of each.
fn train_step_checks(
    cfg: &ModelConfig,
    weights: HashMap<String, Tensor>,
    io: &HashMap<String, Tensor>,
    (video, frame_mask, tokens, tokens_mask): (&Tensor, &Tensor, &Tensor, &Tensor),
) -> Result<Vec<Check>> {
    // In f64 the comparison measures the reference's own float32 rounding, not ours as well.
    let f64 = |t: &Tensor| t.to_dtype(DType::F64);
    let (model, params) = trainable_model(cfg, weights, DType::F64, video.device())?;
    let (_, logits) = model.forward(&f64(video)?, &f64(frame_mask)?, tokens, &f64(tokens_mask)?)?;
    let grads = caption_loss(&logits, tokens)?.backward()?;
    let vars = params.vars();
    let expected: Vec<&str> = io.keys().filter_map(|k| k.strip_prefix("grad.")).collect();
    for name in &expected {
        anyhow::ensure!(
            vars.contains_key(*name),
            "`{name}` has a gradient in the fixture but is not trainable here"
        );
    }
    anyhow::ensure!(
        vars.len() == expected.len(),
        "{} trainable tensors here, {} in the fixture",
        vars.len(),
        expected.len()
    );
    let grad_diffs = vars.iter().map(|(name, var)| {
        let got = grads
            .get(var.as_tensor())
            .with_context(|| format!("no gradient reached `{name}`"))?;
        Ok((rel_diff(got, get(io, &format!("grad.{name}"))?)?, name.clone()))
    });
    let worst_grad = worst(grad_diffs)?;
    let adam = AdamConfig::default();
    // The update is checked on the fixture's own gradients: where a gradient is float noise
    // around zero (e.g. a key bias, which softmax ignores), AdamW's first step turns the noise
    // into a step of up to lr, so the reference's noise cannot be reproduced from ours.
    let mut opt = Adam::new(adam, vars.clone())?;
    opt.step_with(
        |name, var| {
            io.get(&format!("grad.{name}"))
                .and_then(|g| g.to_dtype(var.dtype()).ok())
        },
        1e-3,
    )?;
    let param_diffs = vars.iter().filter_map(|(name, var)| {
        let want = io.get(&format!("after_adamw.{name}"))?;
        Some(rel_diff(var.as_tensor(), want).map(|d| (d, name.clone())))
    });
    let worst_param = worst(param_diffs)?;
    Ok(vec![
        Check {
            name: format!("grad ({} tensors; worst {})", vars.len(), worst_grad.1),
            diff: worst_grad.0,
            tol: TRAIN_REL_TOL,
            relative: true,
        },
        Check {
            name: format!("after_adamw (on fixture grads; worst {})", worst_param.1),
            diff: worst_param.0,
            tol: TRAIN_REL_TOL,
            relative: true,
        },
    ])
}

/// The original's greedy decode on the first frame of sample 0 for `steps` tokens, bos first.
fn greedy_image0(model: &CaptionModel, video: &Tensor, steps: usize) -> Result<Vec<u32>> {
    let tcfg = model.config().text_config()?;
    let image = video.narrow(0, 0, 1)?.narrow(1, 0, 1)?;
    let mask = CaptionModel::frame_mask(&[1], 1, model.device())?;
    let visual = model.visual(&image, &mask)?;
    let mut captioner = Captioner::new(model, &visual)?;
    let opts = DecodeOptions {
        strategy: Strategy::Greedy,
        max_length: steps,
        bos: tcfg.bos_token_id,
        eos: tcfg.eos_token_id,
    };
    let mut out = vec![tcfg.bos_token_id];
    out.extend(generate(&mut captioner, &opts)?.remove(0).tokens);
    Ok(out)
}
