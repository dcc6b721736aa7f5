//! A VarBuilder backend over a model folder's tensors: dense entries are handed out as stored
//! (f16 widened), quantized entries as their raw blocks to `nn::Linear` (which multiplies with
//! them directly) and dequantized for every other use (embeddings, patch weights, latents).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::Init;

use super::quant::{decode_blocks, split_quantized, stored_name, Layout};
use super::TensorStore;

/// The first lookup that failed while a model was built, kept so that the loader can report
/// it as a folder error rather than as a generic build failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupFailure {
    /// No entry, dense or quantized, for this tensor.
    Missing(String),
    /// The entry's shape is not the one the model asks for.
    Shape {
        /// The tensor.
        name: String,
        /// What the model asks for.
        expected: Vec<usize>,
        /// What the folder holds.
        found: Vec<usize>,
    },
}

/// Named tensors of one model folder, with the stored layout of each quantized one.
#[derive(Clone)]
pub struct QuantStore {
    entries: TensorStore,
    /// Tensor name → layout, for quantized tensors only.
    layouts: Arc<HashMap<String, Layout>>,
    failure: Arc<Mutex<Option<LookupFailure>>>,
}

impl QuantStore {
    /// Wraps the folder's entries (`<name>` or `<name>.q8_0`/`.q4_0`) and the layout of each
    /// quantized tensor, by tensor name.
    pub fn new(entries: HashMap<String, Tensor>, layouts: HashMap<String, Layout>) -> Self {
        Self {
            entries: TensorStore::new(entries),
            layouts: Arc::new(layouts),
            failure: Arc::new(Mutex::new(None)),
        }
    }

    /// Entries no layer asked for, sorted.
    pub fn unused(&self) -> Vec<String> {
        self.entries.unused()
    }

    /// The first failed lookup, if any.
    pub fn failure(&self) -> Option<LookupFailure> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn fail(&self, failure: LookupFailure) -> candle_core::Error {
        let msg = match &failure {
            LookupFailure::Missing(n) => format!("missing tensor `{n}`"),
            LookupFailure::Shape {
                name,
                expected,
                found,
            } => {
                format!("tensor `{name}` has shape {found:?}, expected {expected:?}")
            }
        };
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(failure);
        }
        candle_core::Error::Msg(msg)
    }

    /// A quantized tensor dequantized to its state-dict shape.
    fn dequantize(&self, name: &str, layout: &Layout, dev: &Device) -> candle_core::Result<Tensor> {
        let stored = stored_name(name, layout.scheme);
        let raw = self
            .entries
            .lookup(&stored)
            .ok_or_else(|| self.fail(LookupFailure::Missing(stored.clone())))?;
        let bytes = raw.flatten_all()?.to_vec1::<u8>()?;
        decode_blocks(&bytes, layout)
            .map_err(|e| candle_core::Error::Msg(format!("`{stored}`: {e}")))?
            .to_device(dev)
    }
}

impl SimpleBackend for QuantStore {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let found = match (self.entries.peek_shape(name), self.layouts.get(name)) {
            (Some(found), _) => found,
            (None, Some(layout)) => layout.shape.clone(),
            (None, None) => return Err(self.fail(LookupFailure::Missing(name.to_string()))),
        };
        if found.as_slice() != s.dims() {
            return Err(self.fail(LookupFailure::Shape {
                name: name.to_string(),
                expected: s.dims().to_vec(),
                found,
            }));
        }
        match self.layouts.get(name) {
            Some(layout) if !self.entries.contains_tensor(name) => {
                self.dequantize(name, layout, dev)?.to_dtype(dtype)
            }
            _ => self.entries.get(s, name, h, dtype, dev),
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.layouts.get(name) {
            Some(layout) => self.dequantize(name, layout, dev)?.to_dtype(dtype),
            None => self.entries.get_unchecked(name, dtype, dev),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.entries.contains_tensor(name)
            || (split_quantized(name).is_none() && self.layouts.contains_key(name))
    }
}
