//! The captioning model: frozen CLIP ViT vision tower and GPT-2 joined by a perceiver
//! resampler with gated cross-attention and a mapping network (candle).

pub mod attention_maps;
pub mod backend;
pub mod captioner;
pub mod clip;
pub mod compare;
pub mod config;
pub mod decode;
pub mod dropout;
pub mod error;
mod fast_exp;
pub mod frame_sampling;
pub mod fused;
pub mod gpt2;
#[cfg(feature = "webgpu")]
pub mod gpu;
pub mod mapper;
pub mod model;
pub mod nn;
pub mod preprocess;
pub mod resampler;
pub mod synth;
#[cfg(not(target_arch = "wasm32"))]
pub mod test_skip;
pub mod tokenizer;
pub mod weights;
pub mod xattn;

pub use captioner::Captioner;
pub use config::ModelConfig;
pub use error::{Error, Result};
pub use model::{caption_loss, CaptionModel, Visual};
