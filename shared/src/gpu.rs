//! The WebGPU compute engine (feature `webgpu`): [`GpuTensor`] implements
//! [`crate::backend::Backend`] with WGSL kernels on wgpu, so the model's layers run on a GPU
//! natively (Vulkan; lavapipe in the tests) and in the browser (wgpu's `webgpu` backend).
//!
//! Inference only: activations are f32, contiguous and row-major; weight matrices keep their
//! stored precision (f32, f16 packed in words, GGML q8_0 / q4_0 blocks) and are decoded
//! inside the matmul and gather kernels, so no shader feature (shader-f16) is needed.
//! Kernels are recorded into one open compute pass and submitted at a readback (or every 64
//! dispatches); intermediate buffers are recycled, bind groups cached by the buffers they
//! bind, and the parameters of a submission written at once (`device/dispatch.rs`). A
//! decoding step runs the fused ops (`fused.rs`): a few dispatches per block. Every buffer is
//! checked against the adapter's binding limits, whose full values are requested.

// In the browser wgpu's handles are not Send; the engine runs on one thread (a worker) there,
// and the same Arc-based types serve native threads.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

mod backend;
mod counters;
mod device;
mod fused;
mod kernels;
mod layout;
mod matrix;
mod ops;
mod pool;
mod readback;
mod select;
mod tensor;

pub use counters::GpuCounters;
pub use device::GpuDevice;
pub use matrix::{GpuMatrix, MatrixData};
pub use pool::GpuBuffer;
pub use tensor::{GpuIds, GpuTensor};
