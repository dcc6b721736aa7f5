//! The captioning model: frozen CLIP ViT vision tower and GPT-2 joined by a perceiver
//! resampler with gated cross-attention and a mapping network (candle).

pub mod error;

pub use error::{Error, Result};
