//! `native bench`: measured figures that BENCHMARKS.md quotes: ms per caption on the CPU and
//! WebGPU engines, training throughput, and how closely a quantized folder's captions follow
//! its f32 reference.

pub mod agreement;
pub mod batch;
pub mod caption;
pub mod curves;
pub mod memory;
pub mod pointing;
pub mod train;
#[cfg(feature = "webgpu")]
pub mod webgpu;

pub use caption::{bench_caption, time_captions};
#[cfg(feature = "webgpu")]
pub use webgpu::bench_webgpu;
