//! GPT-2 byte-level BPE through the `tokenizers` crate, and the original's caption framing.

use crate::{Error, Result};

/// GPT-2's tokenizer.json (MIT-licensed data, from OpenAI's GPT-2 release).
pub const GPT2_TOKENIZER_JSON: &[u8] = include_bytes!("../assets/gpt2-tokenizer.json");

/// The end-of-text token that GPT-2 uses as both bos and eos.
pub const ENDOFTEXT: &str = "<|endoftext|>";

/// A caption tokenizer with its bos/eos ids.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: u32,
    eos: u32,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

impl Tokenizer {
    /// GPT-2's tokenizer, built into the crate.
    pub fn gpt2() -> Result<Self> {
        Self::from_bytes(GPT2_TOKENIZER_JSON)
    }

    /// A tokenizer.json from memory; bos/eos default to `<|endoftext|>`.
    pub fn from_bytes(json: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(json).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let eot = inner
            .token_to_id(ENDOFTEXT)
            .ok_or_else(|| Error::Tokenizer(format!("the tokenizer has no `{ENDOFTEXT}` token")))?;
        Ok(Self {
            inner,
            bos: eot,
            eos: eot,
        })
    }

    /// A tokenizer.json file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
    }

    /// Beginning-of-sequence id.
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// End-of-sequence id.
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text` (special tokens written literally are recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The original's training target: `"<|endoftext|> " + caption + " <|endoftext|>"`.
    pub fn encode_caption(&self, caption: &str) -> Result<Vec<u32>> {
        self.encode(&format!("{ENDOFTEXT} {caption} {ENDOFTEXT}"))
    }

    /// Text of `ids`; with `skip_special`, special tokens are dropped.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// A caption as the original prints it: special tokens skipped, whitespace stripped.
    pub fn decode_caption(&self, ids: &[u32]) -> Result<String> {
        Ok(self.decode(ids, true)?.trim().to_string())
    }
}
