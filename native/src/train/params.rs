//! Parameters for training: trainable tensors become candle `Var`s, frozen ones stay plain
//! tensors (no gradient is computed for them).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::Init;
use caption_model::weights::{var_builder, TensorStore};
use caption_model::{CaptionModel, ModelConfig};

/// The trainable parameters of a model, by original name.
#[derive(Clone, Default)]
pub struct TrainableParams {
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
}

impl TrainableParams {
    /// Name → variable, sorted by name.
    pub fn vars(&self) -> BTreeMap<String, Var> {
        self.vars.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// A VarBuilder backend over loaded tensors that turns the config's trainable ones into `Var`s.
struct TrainingBackend {
    store: TensorStore,
    cfg: ModelConfig,
    params: TrainableParams,
}

impl SimpleBackend for TrainingBackend {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.store.get(s, name, h, dtype, dev)?;
        if !self.cfg.is_trainable(name) {
            return Ok(t);
        }
        let mut vars = self
            .params
            .vars
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned lock".into()))?;
        // A tensor asked for twice (none today) must stay one variable.
        let var = match vars.get(name) {
            Some(v) => v.clone(),
            None => {
                let v = Var::from_tensor(&t)?;
                vars.insert(name.to_string(), v.clone());
                v
            }
        };
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.store.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.store.contains_tensor(name)
    }
}

/// Builds a model whose trainable parameters (per the config's flags) are variables.
pub fn trainable_model(
    cfg: &ModelConfig,
    tensors: HashMap<String, Tensor>,
    dtype: DType,
    device: &Device,
) -> anyhow::Result<(CaptionModel, TrainableParams)> {
    let params = TrainableParams::default();
    let backend = TrainingBackend {
        store: TensorStore::new(tensors),
        cfg: cfg.clone(),
        params: params.clone(),
    };
    let model = CaptionModel::new(cfg, var_builder(backend, dtype, device))?;
    Ok((model, params))
}
