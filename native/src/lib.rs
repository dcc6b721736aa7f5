//! The command-line side of the captioning stack: verification against fixtures, captioning,
//! benchmarks (and, in later issues, training and export).

pub mod verify;
