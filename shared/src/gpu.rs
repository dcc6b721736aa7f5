//! The WebGPU compute engine (feature `webgpu`): [`GpuTensor`] implements
//! [`crate::backend::Backend`] with WGSL kernels on wgpu, so the model's layers run on a GPU
//! natively (Vulkan) and, later, in the browser. Inference only: f32 activations, weights in
//! their stored precision (f32, f16, q8_0, q4_0) decoded inside the kernels.

mod backend;
mod device;
mod kernels;
mod layout;
mod matrix;
mod ops;
mod pool;
mod readback;
mod tensor;

pub use device::GpuDevice;
pub use matrix::{GpuMatrix, MatrixData};
pub use ops::ArgMax;
pub use pool::GpuBuffer;
pub use tensor::{GpuIds, GpuTensor};
