//! Quantization-aware training's second model: every tensor an export rounds (to q8/q4 blocks,
//! or to f16) rounded the same way (`weights::quant::round_trip`). Frozen tensors are rounded
//! once; trained ones at every step through the straight-through estimator: the forward pass
//! sees the rounded values, the gradient reaches the f32 weights as if nothing were rounded.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var};
use caption_model::weights::block_scales::{scale_name, searched_scales};
use caption_model::weights::quant::{plan, round_trip, BLOCK};
use caption_model::weights::{var_builder, Quant, TensorStore};
use caption_model::{CaptionModel, ModelConfig};

use super::block_grid::{round_to_grid, BlockScales};

/// The export scheme quantization-aware training rounds to: `trainer.quant_aware`, q8 or q4.
pub fn quant_aware_scheme(setting: Option<&str>) -> Result<Option<Quant>> {
    match setting.map(str::parse::<Quant>).transpose()? {
        Some(Quant::F32 | Quant::F16) => {
            bail!("trainer.quant_aware rounds to q8 or q4; f32 and f16 need no training")
        }
        quant => Ok(quant),
    }
}

/// The frozen tensors, rounded once, from which the rounded model is rebuilt every step.
pub struct RoundedModel {
    cfg: ModelConfig,
    quant: Quant,
    frozen: HashMap<String, Tensor>,
    /// Block scales of the trained matrices (checkpoint name, scales) by tensor name, when the
    /// grid is kept.
    scales: BTreeMap<String, (String, Var)>,
    grid: BlockScales,
    device: Device,
}

impl RoundedModel {
    /// Rounds the tensors of `all` that the config freezes as an export in `quant` would; with
    /// a kept `grid`, the trained matrices get block scales: `loaded` ones (a checkpoint's, by
    /// checkpoint name) where they fit, else the export's search on their starting values.
    pub fn new(
        cfg: &ModelConfig,
        all: &HashMap<String, Tensor>,
        quant: Quant,
        (grid, loaded): (BlockScales, &[(String, Tensor)]),
        device: &Device,
    ) -> Result<Self> {
        let frozen = all
            .iter()
            .filter(|(n, _)| !cfg.is_trainable(n))
            .map(|(n, t)| Ok((n.clone(), round_trip(n, t, quant)?)))
            .collect::<Result<_>>()?;
        let loaded: HashMap<&str, &Tensor> = loaded.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut scales = BTreeMap::new();
        let trained = all.iter().filter(|(n, _)| cfg.is_trainable(n));
        for (name, t) in trained.filter(|_| grid != BlockScales::Search) {
            let layout = plan(name, t.dims(), quant);
            let Some(key) = scale_name(name, layout.scheme) else {
                continue;
            };
            let want = [layout.matrix[0], layout.matrix[1] / BLOCK];
            let s = match loaded.get(key.as_str()) {
                Some(s) if s.dims() == want => (*s).clone(),
                _ => searched_scales(t, &layout)?,
            };
            scales.insert(name.clone(), (key, Var::from_tensor(&s.to_device(device)?)?));
        }
        Ok(Self {
            cfg: cfg.clone(),
            quant,
            frozen,
            scales,
            grid,
            device: device.clone(),
        })
    }

    /// The block scales the optimizer trains (by checkpoint name): all of them when learned.
    pub fn trained_scales(&self) -> BTreeMap<String, Var> {
        match self.grid {
            BlockScales::Learned => self.scales.values().cloned().collect(),
            _ => BTreeMap::new(),
        }
    }

    /// Every kept block scale as a checkpoint entry (what the export writes its blocks with).
    pub fn scale_tensors(&self) -> BTreeMap<String, Tensor> {
        self.scales
            .values()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// The model over the rounded frozen tensors and the rounded current weights.
    pub fn model(&self, vars: &BTreeMap<String, Var>) -> Result<CaptionModel> {
        let mut tensors = self.frozen.clone();
        for (name, var) in vars {
            let w = var.as_tensor();
            let rounded = match self.scales.get(name) {
                Some((_, s)) => {
                    let s = match self.grid {
                        BlockScales::Learned => s.as_tensor().clone(),
                        _ => s.as_tensor().detach(),
                    };
                    round_to_grid(w, &s, &plan(name, w.dims(), self.quant))?
                }
                None => straight_through(name, w, self.quant)?,
            };
            tensors.insert(name.clone(), rounded);
        }
        let vb = var_builder(TensorStore::new(tensors), DType::F32, &self.device);
        Ok(CaptionModel::new(&self.cfg, vb)?)
    }
}

/// `w` (the state-dict tensor `name`) rounded as an export in `quant` would, with the rounding
/// invisible to the gradient.
pub fn straight_through(name: &str, w: &Tensor, quant: Quant) -> Result<Tensor> {
    let rounded = round_trip(name, &w.detach(), quant)?;
    Ok((w + (rounded - w)?.detach())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forward_sees_the_blocks_and_the_gradient_passes_straight_through() {
        let w: Vec<f32> = (0..64 * 3)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let w = Var::from_tensor(&Tensor::from_vec(w, (3, 64), &Device::Cpu).unwrap()).unwrap();
        for quant in [Quant::Q8, Quant::Q4] {
            let name = "mapper.mlp.0.weight";
            let rounded = straight_through(name, w.as_tensor(), quant).unwrap();
            let want = round_trip(name, w.as_tensor(), quant).unwrap();
            assert_eq!(rounded.to_vec2::<f32>().unwrap(), want.to_vec2::<f32>().unwrap());
            assert_ne!(
                rounded.to_vec2::<f32>().unwrap(),
                w.as_tensor().to_vec2::<f32>().unwrap()
            );
            // d(sum(rounded * c))/dw = c: the rounding is invisible to the gradient.
            let c = Tensor::arange(0f32, 192.0, &Device::Cpu)
                .unwrap()
                .reshape((3, 64))
                .unwrap();
            let grads = (rounded * &c).unwrap().sum_all().unwrap().backward().unwrap();
            let g = grads.get(w.as_tensor()).unwrap();
            assert_eq!(g.to_vec2::<f32>().unwrap(), c.to_vec2::<f32>().unwrap());
        }
        assert!(quant_aware_scheme(Some("f16")).is_err());
        assert!(quant_aware_scheme(Some("q3")).is_err());
        assert_eq!(quant_aware_scheme(Some("q4")).unwrap(), Some(Quant::Q4));
        assert_eq!(quant_aware_scheme(None).unwrap(), None);
    }
}
