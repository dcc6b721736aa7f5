//! Training: trainable parameters, the optimiser, and one training step.

pub mod optim;
pub mod params;

pub use optim::{Adam, AdamConfig, OptimizerKind};
pub use params::{trainable_model, TrainableParams};
