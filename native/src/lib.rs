//! The command-line side of the captioning stack: verification against fixtures, captioning,
//! benchmarks, training and export.

pub mod bench;
pub mod caption;
pub mod cli;
pub mod data;
pub mod draw;
pub mod export;
pub mod files;
pub mod hub;
pub mod load;
pub mod maps;
pub mod metrics;
pub mod synth;
pub mod train;
pub mod verify;
