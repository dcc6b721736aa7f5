//! The browser app, in Rust on both sides of the Web Worker: the page (`src/bin/page.rs`,
//! [`page`]), the worker that runs the model (`src/bin/worker.rs`, [`worker`]), the messages
//! between them ([`protocol`]) and the plain Rust behind them, which also builds and tests
//! natively.
//!
//! - [`engine`]: the seam between the page and a model implementation ([`engine::Engine`]):
//!   [`engine::ModelEngine`] runs the shared model on candle (wasm32 + SIMD128 in the browser)
//!   or on the WebGPU engine ([`protocol::Backend::WebGpu`], the default where the browser has
//!   an adapter; `?backend=cpu` forces the CPU).
//! - [`settings`]: the page's decoding settings as [`caption_model::decode::DecodeOptions`].
//! - [`stream`]: a [`caption_model::decode::StepModel`] wrapper that reports the tokens of the
//!   leading row as they are generated (words appear as they come).
//! - [`scene`]: the synthetic scene renderer of `native synth`, for the "random scene" button.
//! - [`protocol`]: the page ↔ worker messages (serde types, defined once for both sides).
//! - `page` (wasm32): the page's controls, model files and worker bridge (web-sys, gloo).
//! - `worker` (wasm32): the worker's message loop.

// The model's side (feature `engine`); the page builds without it, so its wasm cannot hold
// model code.
#[cfg(feature = "engine")]
pub mod engine;
#[cfg(feature = "engine")]
pub mod scene;
#[cfg(feature = "engine")]
pub mod stream;
#[cfg(all(target_arch = "wasm32", feature = "engine"))]
pub mod worker;

pub mod protocol;
pub mod settings;

#[cfg(target_arch = "wasm32")]
pub mod page;
