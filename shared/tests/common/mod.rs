//! Paths to the team's read-only fixtures beside the repository.

use std::path::PathBuf;

use candle_core::Tensor;

/// `../shared/<rel>` seen from the repository root.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")).join(rel)
}

/// Max |a - b| over two tensors of the same shape.
#[allow(dead_code)] // Not every test file compares tensors.
pub fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let d = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    d.to_scalar::<f32>().unwrap()
}
