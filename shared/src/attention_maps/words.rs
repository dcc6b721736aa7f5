//! Which word each generated token belongs to, so a map can be labelled with a word (a BPE
//! tokenizer splits words into pieces; the synthetic sets' tokenizer has one token per word).

use serde::{Deserialize, Serialize};

use crate::tokenizer::Tokenizer;
use crate::Result;

/// One generated token as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenText {
    /// The token id.
    pub id: u32,
    /// Its text, whitespace trimmed (empty for special tokens such as eos).
    pub text: String,
    /// The whole word the token is part of (empty for special tokens).
    pub word: String,
    /// Index of that word among the caption's words (special tokens take the last word's).
    pub word_index: usize,
}

/// Each token's text and word: the text is what decoding the caption up to the token adds;
/// a piece that starts with whitespace starts a new word.
pub fn token_texts(tokenizer: &Tokenizer, tokens: &[u32]) -> Result<Vec<TokenText>> {
    let mut out: Vec<TokenText> = Vec::with_capacity(tokens.len());
    let mut before = String::new();
    let mut words: Vec<String> = Vec::new();
    for i in 0..tokens.len() {
        let now = tokenizer.decode(&tokens[..=i], true)?;
        let piece = now.strip_prefix(before.as_str()).unwrap_or(&now).to_string();
        before = now;
        let text = piece.trim().to_string();
        if !text.is_empty() && (words.is_empty() || piece.starts_with(char::is_whitespace)) {
            words.push(String::new());
        }
        if let Some(w) = words.last_mut() {
            w.push_str(&text);
        }
        out.push(TokenText {
            id: tokens[i],
            text,
            word: String::new(),
            word_index: words.len().saturating_sub(1),
        });
    }
    for t in &mut out {
        if !t.text.is_empty() {
            t.word = words[t.word_index].clone();
        }
    }
    Ok(out)
}
