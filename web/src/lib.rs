//! The browser app's engine side: what the Web Worker runs (`src/bin/worker.rs`, wasm32 only)
//! and the plain Rust behind it, which also builds and tests natively.
//!
//! - [`engine`]: the seam between the page and a model implementation ([`engine::Engine`]):
//!   [`engine::ModelEngine`] runs the shared model on candle (wasm32 + SIMD128 in the browser)
//!   or on the WebGPU engine ([`engine::Backend::WebGpu`], the default where the browser has
//!   an adapter; `?backend=cpu` forces the CPU).
//! - [`settings`]: the page's decoding settings as [`caption_model::decode::DecodeOptions`].
//! - [`stream`]: a [`caption_model::decode::StepModel`] wrapper that reports the tokens of the
//!   leading row as they are generated (words appear as they come).
//! - [`scene`]: the synthetic scene renderer of `native synth`, for the "random scene" button.

pub mod engine;
pub mod scene;
pub mod settings;
pub mod stream;

#[cfg(target_arch = "wasm32")]
pub mod worker;
