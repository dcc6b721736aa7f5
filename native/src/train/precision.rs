//! bf16 mixed precision: the optimizer keeps f32 master weights; each step runs a bf16 copy of
//! the model whose trainable tensors are casts of the masters. A cast is differentiable, so
//! the gradients arrive on the f32 masters in f32, as with PyTorch's `bf16-mixed`.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var};
use caption_model::weights::{var_builder, TensorStore};
use caption_model::{CaptionModel, ModelConfig};

/// The compute precision of a run (`trainer.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Everything in f32.
    F32,
    /// bf16 compute, f32 master weights and optimizer state.
    Bf16,
}

impl Precision {
    /// Parses `f32`, `32`, `bf16` or `bf16-mixed` (Lightning's spelling).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "f32" | "32" | "32-true" => Ok(Self::F32),
            "bf16" | "bf16-mixed" => Ok(Self::Bf16),
            other => bail!("trainer.precision is `{other}`: use f32 or bf16"),
        }
    }

    /// The dtype the model computes in.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }
}

/// The frozen tensors, cast once, from which the bf16 compute model is rebuilt every step.
pub struct ComputeModel {
    cfg: ModelConfig,
    frozen: HashMap<String, Tensor>,
    device: Device,
}

impl ComputeModel {
    /// Keeps the tensors of `all` that the config freezes, cast to bf16.
    pub fn new(cfg: &ModelConfig, all: &HashMap<String, Tensor>, device: &Device) -> Result<Self> {
        let frozen = all
            .iter()
            .filter(|(n, _)| !cfg.is_trainable(n))
            .map(|(n, t)| Ok((n.clone(), t.to_dtype(DType::BF16)?)))
            .collect::<Result<_>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            frozen,
            device: device.clone(),
        })
    }

    /// A bf16 model over the frozen tensors and bf16 casts of the current master weights.
    pub fn model(&self, vars: &BTreeMap<String, Var>) -> Result<CaptionModel> {
        let mut tensors = self.frozen.clone();
        for (name, var) in vars {
            tensors.insert(name.clone(), var.as_tensor().to_dtype(DType::BF16)?);
        }
        let vb = var_builder(TensorStore::new(tensors), DType::BF16, &self.device);
        Ok(CaptionModel::new(&self.cfg, vb)?)
    }
}
