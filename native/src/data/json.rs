//! Reading caption files: errors name the file, line and column, and ids may be numbers or
//! strings.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::error::Category;

/// An entry id written as a JSON number (COCO) or string (MLSLT); compared by its text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Id {
    /// A number, kept as written.
    Num(serde_json::Number),
    /// A string.
    Str(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => f.write_str(s),
        }
    }
}

/// Parses `bytes` (the contents of the file at `path`, named in errors) as `T`.
pub(super) fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> anyhow::Result<T> {
    // A UTF-8 byte order mark (some Windows editors write one) is not JSON; skip it.
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    serde_json::from_slice(text).map_err(|e| json_error(path, 0, &e))
}

/// Parses one line of a JSON Lines file; `line_no` is 1-based and reported as the line.
pub(super) fn parse_line<T: DeserializeOwned>(path: &Path, line_no: usize, text: &str) -> anyhow::Result<T> {
    serde_json::from_str(text).map_err(|e| json_error(path, line_no.saturating_sub(1), &e))
}

/// `<file>: invalid JSON at line L, column C: <message>`; `line_offset` is added to the
/// parser's line for text that starts further down the file.
fn json_error(path: &Path, line_offset: usize, err: &serde_json::Error) -> anyhow::Error {
    let what = match err.classify() {
        Category::Syntax | Category::Eof => "invalid JSON",
        Category::Data => "unexpected JSON content",
        Category::Io => "error reading JSON",
    };
    // serde_json appends " at line L column C" itself; it is replaced by our own position.
    let full = err.to_string();
    let msg = full.rfind(" at line ").map_or(full.as_str(), |at| &full[..at]);
    anyhow::anyhow!(
        "{}: {what} at line {}, column {}: {msg}",
        path.display(),
        err.line() + line_offset,
        err.column()
    )
}
