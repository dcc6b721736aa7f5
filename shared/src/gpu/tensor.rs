//! GPU tensors (f32, contiguous row-major) and id vectors.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use super::device::{gpu_err, GpuDevice};
use super::pool::GpuBuffer;

/// An f32 tensor in a storage buffer, contiguous row-major; clones share the buffer
/// (tensors are never written after their kernel ran, so sharing is safe).
#[derive(Clone)]
pub struct GpuTensor {
    pub(crate) buf: Arc<GpuBuffer>,
    pub(crate) dims: Vec<usize>,
    pub(crate) dev: GpuDevice,
}

/// u32 ids (token ids, row indices) in a storage buffer.
#[derive(Clone)]
pub struct GpuIds {
    pub(crate) buf: Arc<GpuBuffer>,
    pub(crate) dims: Vec<usize>,
    pub(crate) dev: GpuDevice,
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuTensor{:?}", self.dims)
    }
}

impl std::fmt::Debug for GpuIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuIds{:?}", self.dims)
    }
}

/// Elements in a tensor of `dims`, checked to be addressable by the kernels' u32 indices.
pub(crate) fn elem_count(dims: &[usize]) -> Result<usize> {
    let n: usize = dims.iter().product();
    if n > u32::MAX as usize {
        return Err(gpu_err(format!("tensor {dims:?} has more than 2^32 elements")));
    }
    Ok(n)
}

impl GpuTensor {
    /// An uninitialised tensor of `dims` (every kernel writes all of its output).
    pub(crate) fn empty(dev: &GpuDevice, dims: &[usize]) -> Result<Self> {
        let n = elem_count(dims)?;
        let buf = dev.storage(n as u64 * 4, &format!("an f32 tensor {dims:?}"))?;
        Ok(Self {
            buf,
            dims: dims.to_vec(),
            dev: dev.clone(),
        })
    }

    /// A tensor of `dims` holding `data` (row-major).
    pub fn from_vec(data: &[f32], dims: &[usize], dev: &GpuDevice) -> Result<Self> {
        let n = elem_count(dims)?;
        if data.len() != n {
            return Err(gpu_err(format!("{} values for a tensor {dims:?}", data.len())));
        }
        let buf = dev.upload(bytemuck::cast_slice(data), &format!("an f32 tensor {dims:?}"))?;
        Ok(Self {
            buf,
            dims: dims.to_vec(),
            dev: dev.clone(),
        })
    }

    /// A tensor of `dims` holding `data` that lives about as long as a decoding step (an
    /// attention mask): its buffer is recycled (see [`GpuDevice::upload_transient`]).
    pub(crate) fn transient(data: &[f32], dims: &[usize], dev: &GpuDevice) -> Result<Self> {
        let n = elem_count(dims)?;
        if data.len() != n {
            return Err(gpu_err(format!("{} values for a tensor {dims:?}", data.len())));
        }
        let buf = dev.upload_transient(bytemuck::cast_slice(data), &format!("an f32 tensor {dims:?}"))?;
        Ok(Self {
            buf,
            dims: dims.to_vec(),
            dev: dev.clone(),
        })
    }

    /// Elements.
    pub fn elem_count(&self) -> usize {
        self.dims.iter().product()
    }

    /// The values, read back (blocks until the GPU has run every recorded kernel).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let bytes = self.dev.read(&self.buf, self.elem_count() as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The values, read back without blocking (what the browser needs).
    pub async fn to_vec_async(&self) -> Result<Vec<f32>> {
        let bytes = self
            .dev
            .read_async(&self.buf, self.elem_count() as u64 * 4)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The values as an f32 candle tensor on the CPU.
    pub fn to_cpu(&self) -> Result<Tensor> {
        Tensor::from_vec(self.to_vec()?, self.dims.as_slice(), &candle_core::Device::Cpu)
    }

    /// Errors unless `other` lives on the same device.
    pub(crate) fn same_device(&self, other: &GpuDevice) -> Result<()> {
        if self.dev.same_device(other) {
            Ok(())
        } else {
            Err(gpu_err("tensors on different GPU devices"))
        }
    }
}

impl GpuIds {
    /// Ids of shape `dims` on `dev`.
    pub fn new(ids: &[u32], dims: &[usize], dev: &GpuDevice) -> Result<Self> {
        let n = elem_count(dims)?;
        if ids.len() != n {
            return Err(gpu_err(format!("{} ids for shape {dims:?}", ids.len())));
        }
        // Ids are a step's input: a recycled buffer (see `GpuDevice::upload_transient`).
        let buf = dev.upload_transient(ids, &format!("ids {dims:?}"))?;
        Ok(Self {
            buf,
            dims: dims.to_vec(),
            dev: dev.clone(),
        })
    }

    /// The shape.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The ids, read back.
    pub fn to_vec(&self) -> Result<Vec<u32>> {
        let n: usize = self.dims.iter().product();
        let bytes = self.dev.read(&self.buf, n as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The ids, read back without blocking (what the browser needs).
    pub async fn to_vec_async(&self) -> Result<Vec<u32>> {
        let n: usize = self.dims.iter().product();
        let bytes = self.dev.read_async(&self.buf, n as u64 * 4).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}
