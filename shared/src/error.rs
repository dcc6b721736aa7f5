//! The crate's error type: every failure names what went wrong in plain words.

/// Errors of the caption model crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor computation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A configuration is invalid (unknown key, bad value, missing file).
    #[error("config: {0}")]
    Config(String),
    /// A weight is missing or has the wrong shape.
    #[error("weights: {0}")]
    Weights(String),
    /// An image could not be decoded or is refused.
    #[error("image: {0}")]
    Image(String),
    /// Tokenizer failure.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A model folder is refused (see [`crate::weights::FolderError`]).
    #[error("model folder: {0}")]
    Folder(#[from] crate::weights::FolderError),
    /// A decoding request is invalid.
    #[error("decode: {0}")]
    Decode(String),
    /// Two tensors cannot be compared: shapes differ, or a value is NaN or infinite.
    #[error("compare: {0}")]
    Compare(String),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
