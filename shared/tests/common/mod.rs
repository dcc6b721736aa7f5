//! Paths to the team's read-only fixtures beside the repository.

use std::path::PathBuf;

/// `../shared/<rel>` seen from the repository root.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")).join(rel)
}
