//! Paths to the team's read-only fixtures beside the repository.

use std::path::PathBuf;

use candle_core::Tensor;

/// `../shared/<rel>` seen from the repository root.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")).join(rel)
}

/// Max |a - b| over two tensors of the same shape; panics naming a NaN or an infinity in either
/// (candle's own `max` skips a NaN that is not first).
#[allow(dead_code)] // Not every test file compares tensors.
pub fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    match caption_model::compare::max_abs_diff(a, b) {
        Ok(d) => d as f32,
        Err(e) => panic!("{e}"),
    }
}
