//! VarBuilder backends: a strict named-tensor store, a shape recorder and a seeded random init.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::quant::split_quantized;

/// Named tensors with shape checks that name the tensor, and a record of which were used so
/// that leftovers (a sign of a config that does not fit the weights) can be reported.
/// Clones share the record, so the caller can ask for leftovers after the model is built.
#[derive(Clone)]
pub struct TensorStore {
    tensors: Arc<HashMap<String, Tensor>>,
    used: Arc<Mutex<HashSet<String>>>,
}

impl TensorStore {
    /// Wraps a name → tensor map.
    pub fn new(tensors: HashMap<String, Tensor>) -> Self {
        Self {
            tensors: Arc::new(tensors),
            used: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Names present in the store that no layer asked for, sorted.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        let mut names: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The tensors some layer asked for, by name.
    pub fn used_tensors(&self) -> BTreeMap<String, Tensor> {
        let used = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        used.into_iter()
            .filter_map(|n| self.tensors.get(&n).map(|t| (n, t.clone())))
            .collect()
    }

    /// The shape of a stored tensor, without marking it used.
    pub(super) fn peek_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.dims().to_vec())
    }

    /// A stored tensor, marked used.
    pub(super) fn lookup(&self, name: &str) -> Option<&Tensor> {
        let t = self.tensors.get(name)?;
        if let Ok(mut used) = self.used.lock() {
            used.insert(name.to_string());
        }
        Some(t)
    }
}

impl SimpleBackend for TensorStore {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.lookup(name).ok_or_else(|| {
            candle_core::Error::Msg(format!("missing tensor `{name}` (expected shape {:?})", s.dims()))
        })?;
        if t.shape() != &s {
            return Err(candle_core::Error::Msg(format!(
                "tensor `{name}` has shape {:?}, expected {:?}",
                t.dims(),
                s.dims()
            )));
        }
        t.to_device(dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self
            .lookup(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor `{name}`")))?;
        t.to_device(dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// Records the name and shape of every tensor a model asks for, handing out zeros: builds a
/// model's parameter inventory without any weights file.
#[derive(Default, Clone)]
pub struct ShapeRecorder {
    shapes: Arc<Mutex<BTreeMap<String, Vec<usize>>>>,
}

impl ShapeRecorder {
    /// The recorded name → shape map.
    pub fn shapes(&self) -> BTreeMap<String, Vec<usize>> {
        self.shapes.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl SimpleBackend for ShapeRecorder {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if let Ok(mut shapes) = self.shapes.lock() {
            shapes.insert(name.to_string(), s.dims().to_vec());
        }
        Tensor::zeros(s, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::Msg(format!(
            "shape recorder cannot guess the shape of `{name}`"
        )))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        // Claiming a quantized entry would make `nn::Linear` ask for raw blocks.
        split_quantized(name).is_none()
    }
}

/// Seeded random weights shaped like a trained model's (for benchmarks and size tests):
/// norms' weights near 1, biases near 0, matrices N(0, 0.02²)-like, gates 0.1.
pub struct RandomInit {
    seed: u64,
}

impl RandomInit {
    /// Random weights from `seed`; every tensor's values depend only on the seed and its name.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// The tensor `name` of shape `dims` (f32).
    pub fn tensor(&self, name: &str, dims: &[usize], device: &Device) -> candle_core::Result<Tensor> {
        let n = dims.iter().product();
        Tensor::from_vec(self.values(name, n, dims), dims, device)
    }

    /// Values for one tensor.
    fn values(&self, name: &str, n: usize, dims: &[usize]) -> Vec<f32> {
        let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = StdRng::seed_from_u64(self.seed ^ name_hash);
        let uniform = |rng: &mut StdRng, scale: f32| (rng.random::<f32>() * 2.0 - 1.0) * scale;
        if name.ends_with("alpha_attn") || name.ends_with("alpha_ffw") {
            vec![0.1; n]
        } else if dims.len() == 1 && name.ends_with("weight") {
            (0..n).map(|_| 1.0 + uniform(&mut rng, 0.1)).collect()
        } else if dims.len() == 1 {
            (0..n).map(|_| uniform(&mut rng, 0.02)).collect()
        } else {
            // Uniform with the standard deviation of N(0, 0.02²): cheap and bounded.
            (0..n).map(|_| uniform(&mut rng, 0.0346)).collect()
        }
    }
}

impl SimpleBackend for RandomInit {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let values = self.values(name, s.elem_count(), s.dims());
        Tensor::from_vec(values, s, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::Msg(format!(
            "random init cannot guess the shape of `{name}`"
        )))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        split_quantized(name).is_none()
    }
}

/// A VarBuilder over any of the backends above.
pub fn var_builder<B: SimpleBackend + 'static>(
    backend: B,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
}
