//! `verify`: runs a fixture directory (config.json, weights.safetensors, io.safetensors) through
//! the model and compares every output the fixture holds.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use caption_model::compare::compare;
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
    /// Why the values could not be compared (a NaN or an infinity, named); a failure.
    pub problem: Option<String>,
}

impl Check {
    /// A check of `name` from a comparison's outcome: its difference, or its problem.
    fn new(name: String, outcome: Result<f64>, tol: f64, relative: bool) -> Self {
        let (diff, problem) = match outcome {
            Ok(d) => (d, None),
            Err(e) => (f64::NAN, Some(format!("{e:#}"))),
        };
        Check {
            name,
            diff,
            tol,
            relative,
            problem,
        }
    }

    /// Whether the values compared and the difference is within tolerance (NaN fails).
    pub fn passed(&self) -> bool {
        self.problem.is_none() && self.diff <= self.tol
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
                match &c.problem {
                    Some(p) => format!("{:<14} {p}  {verdict}", c.name),
                    None => format!(
                        "{:<14} {kind} {:.3e} (tol {:.0e})  {verdict}",
                        c.name, c.diff, c.tol
                    ),
                }
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

/// Max |a - b| over two tensors of the same shape; a NaN or infinity in either is an error
/// that names it.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok(compare(a, b)?.max_abs)
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
pub fn verify_dir(dir: &Path, device: &Device) -> Result<Report> {
    let device = device.clone();
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
            checks.push(Check::new(
                name.into(),
                max_abs_diff(got, expected),
                ACTIVATION_TOL,
                false,
            ));
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
        let diff = if got.is_finite() && want.is_finite() {
            Ok((got - want).abs() / want.abs().max(1e-12))
        } else {
            Err(anyhow::anyhow!("loss {got} (expected {want}) is not finite"))
        };
        checks.push(Check::new("loss".into(), diff, LOSS_REL_TOL, true));
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

/// The worst of per-tensor relative differences as one check: the first tensor that could not
/// be compared (a NaN, named), else the largest difference, with its tensor's name.
fn worst(what: &str, count: usize, tol: f64, diffs: impl Iterator<Item = (String, Result<f64>)>) -> Check {
    let mut out = (0.0f64, String::new());
    for (name, d) in diffs {
        match d {
            Ok(d) if d > out.0 || out.1.is_empty() => out = (d, name),
            Ok(_) => {}
            Err(e) => {
                let e = e.context(format!("`{name}`"));
                return Check::new(format!("{what} ({count} tensors)"), Err(e), tol, true);
            }
        }
    }
    Check::new(
        format!("{what} ({count} tensors; worst {})", out.1),
        Ok(out.0),
        tol,
        true,
    )
}

/// max |a - b| / max |b| for one tensor (NaN-proof, see [`compare`]).
fn rel_diff(got: &Tensor, want: &Tensor) -> Result<f64> {
    Ok(compare(got, want)?.relative())
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
        let diff = grads
            .get(var.as_tensor())
            .with_context(|| format!("no gradient reached `{name}`"))
            .and_then(|got| rel_diff(got, get(io, &format!("grad.{name}"))?));
        (name.clone(), diff)
    });
    let grad_check = worst("grad", vars.len(), TRAIN_REL_TOL, grad_diffs);
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
        Some((name.clone(), rel_diff(var.as_tensor(), want)))
    });
    let param_check = worst("after_adamw", vars.len(), TRAIN_REL_TOL, param_diffs);
    Ok(vec![grad_check, param_check])
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
