//! [`ModelVb`]: candle's `VarBuilder` paired with the backend the layers are built for.

use candle_core::{Result, Shape, Tensor};
use candle_nn::VarBuilder;

use super::Backend;

/// Where a layer's weights come from (a `VarBuilder` prefix) and the backend's device they go to.
#[derive(Clone)]
pub struct ModelVb<'a, T: Backend> {
    vb: VarBuilder<'a>,
    device: T::Device,
}

impl<'a> ModelVb<'a, Tensor> {
    /// Builds candle tensors on the VarBuilder's own device.
    pub fn candle(vb: VarBuilder<'a>) -> Self {
        let device = vb.device().clone();
        Self { vb, device }
    }
}

impl<'a, T: Backend> ModelVb<'a, T> {
    /// Reads weights from `vb` (any candle device) and hands them to `device`.
    pub fn new(vb: VarBuilder<'a>, device: T::Device) -> Self {
        Self { vb, device }
    }

    /// The builder for the weights under `name`.
    pub fn pp(&self, name: impl ToString) -> Self {
        Self {
            vb: self.vb.pp(name),
            device: self.device.clone(),
        }
    }

    /// The tensor `name` of shape `shape`, on the backend.
    pub fn get(&self, shape: impl Into<Shape>, name: &str) -> Result<T> {
        T::from_candle(&self.vb.get(shape, name)?, &self.device)
    }

    /// The underlying VarBuilder.
    pub fn vb(&self) -> &VarBuilder<'a> {
        &self.vb
    }

    /// The backend's device.
    pub fn device(&self) -> &T::Device {
        &self.device
    }
}
