//! `verify`: runs a fixture directory (config.json, weights.safetensors, io.safetensors) through
//! the model and compares every output the fixture holds.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use caption_model::decode::{generate, DecodeOptions, Strategy};
use caption_model::weights::{model_from_tensors, read_safetensors};
use caption_model::{caption_loss, CaptionModel, Captioner, ModelConfig};

/// Absolute tolerance on activations and logits.
pub const ACTIVATION_TOL: f64 = 1e-4;
/// Relative tolerance on the loss.
pub const LOSS_REL_TOL: f64 = 1e-5;

/// One compared output.
#[derive(Debug, Clone)]
pub struct Check {
    /// Output name in io.safetensors.
    pub name: String,
    /// Max absolute difference (relative for the loss).
    pub diff: f64,
    /// Tolerance it must stay within.
    pub tol: f64,
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
                let kind = if c.name == "loss" {
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
    let model = model_from_tensors(&cfg, weights, &device)?;
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
        });
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
