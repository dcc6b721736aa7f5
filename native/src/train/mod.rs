//! Training: config, initial weights, trainable parameters, the optimiser and the schedule.

pub mod init;
pub mod optim;
pub mod params;
pub mod project;
pub mod schedule;

pub use optim::{Adam, AdamConfig, OptimizerKind};
pub use params::{trainable_model, TrainableParams};
