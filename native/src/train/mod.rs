//! Training: the original's configuration ([`config`]), what a run reads ([`session`]),
//! initial weights and checkpoints ([`init`], [`checkpoint`]), trainable parameters and mixed
//! precision ([`params`], [`precision`]), the optimizer and its schedules ([`optim`]), the loop
//! with exact resume, its batches prepared ahead and its curves ([`run`], [`feed`], [`forward`],
//! [`plot`]), and quantization-aware
//! training with distillation ([`qat`]). The CLIP feature cache lives with the data
//! (`crate::data::feature_cache`), test mode with the metrics (`crate::metrics::evaluate`).

pub mod checkpoint;
pub mod config;
pub mod feed;
pub mod forward;
pub mod heap;
pub mod init;
pub mod optim;
pub mod params;
pub mod plot;
pub mod precision;
pub mod qat;
pub mod run;
pub mod session;

pub use optim::{Adam, AdamConfig, OptimizerKind};
pub use params::{trainable_model, TrainableParams};
