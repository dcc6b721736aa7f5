//! Training: config, initial weights, trainable parameters, the optimiser, the schedule and
//! the loop with checkpoints and exact resume.

pub mod bench;
pub mod block_grid;
pub mod checkpoint;
pub mod distill;
pub mod evaluate;
pub mod feature_cache;
pub mod forward;
pub mod init;
pub mod optim;
pub mod params;
pub mod plot;
pub mod precision;
pub mod project;
pub mod rounded;
pub mod run;
pub mod schedule;
pub mod session;
pub mod vocab;

pub use optim::{Adam, AdamConfig, OptimizerKind};
pub use params::{trainable_model, TrainableParams};
