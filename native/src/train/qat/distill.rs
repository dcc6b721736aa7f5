//! Distillation into an export (`trainer.distill_from`): the run's model learns to reproduce a
//! frozen teacher checkpoint's next-token distributions, through the export's rounding when
//! `trainer.quant_aware` is set. The teacher stays the f32 reference; what is trained is the
//! copy the export will round, so its q8/q4 folder captions like the teacher does.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use caption_model::weights::{var_builder, TensorStore};
use caption_model::{CaptionModel, ModelConfig};

use crate::data::{BatchBuilder, Sample};
use crate::train::config::ProjectConfig;
use crate::train::forward::{batch_logits, prepared_logits, Prepared, TrainingLoss};
use crate::train::init::initial_weights;

/// The frozen model a distillation run imitates.
pub struct Teacher {
    model: CaptionModel,
    temperature: f64,
}

impl Teacher {
    /// Loads `trainer.distill_from` (a training checkpoint) as the run's model config reads it.
    pub fn load(cfg: &ProjectConfig, model_cfg: &ModelConfig, device: &Device) -> Result<Option<Self>> {
        let Some(path) = &cfg.trainer.distill_from else {
            return Ok(None);
        };
        let temperature = cfg.trainer.distill_temperature;
        anyhow::ensure!(
            temperature.is_finite() && temperature > 0.0,
            "trainer.distill_temperature must be a positive number, not {temperature}"
        );
        let mut teacher_cfg = cfg.clone();
        teacher_cfg.pretrained_name = Some(path.clone());
        teacher_cfg.resume_pretrained_state = false;
        let (tensors, ..) = initial_weights(&teacher_cfg, model_cfg, device)
            .with_context(|| format!("loading the distillation teacher {path}"))?;
        let vb = var_builder(TensorStore::new(tensors), DType::F32, device);
        let model = CaptionModel::new(model_cfg, vb)?;
        Ok(Some(Self { model, temperature }))
    }

    /// The teacher's logits for a batch (no gradient), always from the pixels: the feature
    /// cache holds the student's tower's features, and the teacher's tower may differ. The
    /// student's own decoded pixels are reused when it has them.
    fn logits(
        &self,
        student_inputs: &Prepared,
        builder: &BatchBuilder,
        (samples, picks): (&[&Sample], &[usize]),
    ) -> Result<Option<Tensor>> {
        let out = match student_inputs {
            Prepared::Pixels(_) => Some(prepared_logits(&self.model, student_inputs, DType::F32)?),
            Prepared::Features { .. } => {
                batch_logits(&self.model, builder, None, samples, picks, DType::F32)?.0
            }
        };
        Ok(out.map(|o| o.logits.detach()))
    }

    /// The distillation loss of `student` (the rounded model under quantization-aware training)
    /// on a batch prepared for it: the mean KL divergence of its next-token distributions from
    /// the teacher's along the batch's captions.
    pub fn loss(
        &self,
        student: &CaptionModel,
        inputs: &Prepared,
        builder: &BatchBuilder,
        batch: (&[&Sample], &[usize]),
        dtype: DType,
    ) -> Result<TrainingLoss> {
        let out = prepared_logits(student, inputs, dtype)?;
        // The same samples: a sample unreadable for the student was unreadable for the teacher.
        let reference = self
            .logits(inputs, builder, batch)?
            .context("the teacher could read none of the batch the student read")?;
        let t = self.temperature;
        let loss = (kl_divergence(&(reference / t)?, &(out.logits / t)?, &out.tokens)? * (t * t))?;
        let value = f64::from(loss.to_scalar::<f32>()?);
        let rows = out.rows;
        Ok(TrainingLoss { loss, value, rows })
    }
}

/// Mean KL(p || q) over the caption positions (tokens ≠ 0): how far `candidate`'s next-token
/// distributions are from `reference`'s (not differentiated).
pub fn kl_divergence(reference: &Tensor, candidate: &Tensor, tokens: &Tensor) -> Result<Tensor> {
    let p = candle_nn::ops::log_softmax(&reference.detach(), D::Minus1)?;
    let q = candle_nn::ops::log_softmax(candidate, D::Minus1)?;
    let kl = (p.exp()? * (p - q)?)?.sum(D::Minus1)?;
    let mask = tokens.ne(0u32)?.to_dtype(DType::F32)?;
    Ok((kl * &mask)?
        .sum_all()?
        .div(&mask.sum_all()?.clamp(1f32, f32::MAX)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_is_zero_for_equal_rows_and_matches_the_definition_otherwise() {
        let dev = Device::Cpu;
        let p = Tensor::new(&[[[1f32, 2.0, 0.5], [0.0, 0.0, 3.0]]], &dev).unwrap();
        let q = Tensor::new(&[[[0.5f32, 2.5, 0.5], [9.0, 9.0, 9.0]]], &dev).unwrap();
        let tokens = Tensor::new(&[[4u32, 0]], &dev).unwrap();
        let same = kl_divergence(&p, &p, &tokens)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(same.abs() < 1e-7, "{same}");
        // Only the first position counts (the second is padding).
        let softmax = |x: [f64; 3]| {
            let s: f64 = x.iter().map(|v| v.exp()).sum();
            x.map(|v| v.exp() / s)
        };
        let (a, b) = (softmax([1.0, 2.0, 0.5]), softmax([0.5, 2.5, 0.5]));
        let want: f64 = a.iter().zip(&b).map(|(x, y)| x * (x / y).ln()).sum();
        let got = kl_divergence(&p, &q, &tokens)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((f64::from(got) - want).abs() < 1e-6, "{got} vs {want}");
    }
}
