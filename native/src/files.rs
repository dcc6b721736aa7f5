//! Writing files so that a crash never leaves a half-written one behind.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to a temporary sibling (`<name>.part`) and renames it over `path`, so
/// readers never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", Path::new(&tmp).display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}
