//! `manifest.json` of a model folder and the errors that refuse a folder.

use serde::{Deserialize, Serialize};

use super::quant::{Quant, Scheme};
use crate::config::ModelConfig;

/// `format` value of a model folder's manifest.
pub const FOLDER_FORMAT: &str = "caption-model-folder";
/// The folder layout this crate writes and reads.
pub const FOLDER_VERSION: u32 = 1;
/// The manifest's file name.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The weights' file name.
pub const MODEL_FILE: &str = "model.safetensors";
/// The tokenizer's file name.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Size and checksum of one file of the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// File name inside the folder.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the contents, lower-case hex.
    pub sha256: String,
}

/// One tensor of `model.safetensors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    /// The state-dict name.
    pub name: String,
    /// The safetensors entry (`name`, or `name.q8_0` / `name.q4_0`).
    pub stored_as: String,
    /// How it is stored.
    pub scheme: Scheme,
    /// The state-dict shape.
    pub shape: Vec<usize>,
    /// Whether the stored matrix is the state-dict tensor transposed (GPT-2 `Conv1D` weights).
    pub transposed: bool,
    /// Offset of the data from the start of `model.safetensors`.
    pub offset: u64,
    /// Size of the data in bytes.
    pub bytes: u64,
}

/// `manifest.json`: what the folder holds and how to check it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FOLDER_FORMAT`].
    pub format: String,
    /// Always [`FOLDER_VERSION`] for folders this crate reads.
    pub format_version: u32,
    /// The export setting.
    pub quant: Quant,
    /// The model config (backbone configs included).
    pub model_config: ModelConfig,
    /// The tokenizer's file name.
    pub tokenizer: String,
    /// What the model was trained on and what it knows, in plain text for people (shown beside
    /// the model's name); absent in folders written before it existed. See
    /// [`check_description`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `model.safetensors` and the tokenizer, with sizes and checksums.
    pub files: Vec<FileEntry>,
    /// Every tensor, in file order.
    pub tensors: Vec<TensorEntry>,
}

impl Manifest {
    /// The entry of file `name`.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Total size of the folder's files (the manifest excepted).
    pub fn files_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Longest description accepted, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 600;

/// Checks a model description: 1 to [`MAX_DESCRIPTION_CHARS`] characters of plain text with
/// no leading or trailing whitespace, no control characters (one paragraph: no line breaks),
/// no bidirectional-override characters (they can make shown text read differently from the
/// stored one) and no `<` or `>` (it is shown as text, never as markup). The error says why.
pub fn check_description(text: &str) -> Result<(), String> {
    let chars = text.chars().count();
    if text.trim().is_empty() {
        return Err("the description is empty".into());
    }
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "the description is {chars} characters long, at most {MAX_DESCRIPTION_CHARS} are allowed"
        ));
    }
    if text.trim() != text {
        return Err("the description starts or ends with whitespace".into());
    }
    let bidi =
        |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() || bidi(c) || c == '<' || c == '>')
    {
        return Err(format!(
            "the description must be one paragraph of plain text; it holds {c:?} (U+{:04X})",
            c as u32
        ));
    }
    Ok(())
}

/// Why a model folder is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FolderError {
    /// manifest.json is not JSON, or not a model folder's manifest.
    #[error("manifest.json: {0}")]
    Manifest(String),
    /// The folder was written in a layout this build does not read.
    #[error("manifest.json: format version {found} is not supported (this build reads version {supported})")]
    Version {
        /// The manifest's version, as written.
        found: String,
        /// The version this build reads.
        supported: u32,
    },
    /// A file's size is not the manifest's (truncated, or another file).
    #[error("{file} is {actual} bytes, the manifest says {expected}: the file is truncated or is not this folder's")]
    Size {
        /// The file.
        file: String,
        /// Its size.
        actual: u64,
        /// The manifest's size.
        expected: u64,
    },
    /// A file's contents are not the manifest's (corrupted or modified).
    #[error("{file}: sha256 {actual} does not match the manifest's {expected}: the file is corrupted or was modified")]
    Checksum {
        /// The file.
        file: String,
        /// Its checksum.
        actual: String,
        /// The manifest's checksum.
        expected: String,
    },
    /// A tensor the model needs (or the manifest lists) is not in model.safetensors.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// A tensor's shape is not the one the model (or the manifest) needs.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    Shape {
        /// The tensor.
        name: String,
        /// The shape needed.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// model.safetensors and the manifest disagree (dtype, offsets, extra entries).
    #[error("model.safetensors does not match the manifest: {0}")]
    Mismatch(String),
}
