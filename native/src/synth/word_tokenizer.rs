//! A word-level tokenizer.json built from a caption corpus: a small vocabulary for models
//! trained from scratch (e.g. on synthetic scenes), in the `tokenizers` file format so that it
//! travels with checkpoints and exports like any other `dataset.tokenizer`.

use std::collections::BTreeSet;

use serde_json::{json, Value};

/// Padding: id 0, ignored by the loss as in the original.
pub const PAD: &str = "<pad>";
/// Unknown words.
pub const UNK: &str = "<unk>";
/// bos/eos, named as GPT-2's so the caption framing is the same.
pub const EOT: &str = caption_model::tokenizer::ENDOFTEXT;

/// Lower-cased whitespace-separated words, punctuation kept on its word ("left,"), as the
/// tokenizer's `WhitespaceSplit` pre-tokenizer splits them: decoding joins tokens with single
/// spaces, so captions come back exactly as written (lower-cased).
fn words(caption: &str) -> impl Iterator<Item = String> + '_ {
    caption.split_whitespace().map(str::to_lowercase)
}

/// tokenizer.json text for a word-level vocabulary over `captions`: `<pad>` = 0, `<unk>` = 1,
/// `<|endoftext|>` = 2, then the words in sorted order.
pub fn word_level_tokenizer(captions: &[String]) -> String {
    let vocab_words: BTreeSet<String> = captions.iter().flat_map(|c| words(c)).collect();
    let mut vocab = serde_json::Map::new();
    for (i, w) in [PAD, UNK, EOT]
        .iter()
        .map(|s| s.to_string())
        .chain(vocab_words)
        .enumerate()
    {
        vocab.insert(w, json!(i));
    }
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
               "normalized": false, "special": true})
    };
    let doc: Value = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, PAD), special(1, UNK), special(2, EOT)],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": UNK}
    });
    doc.to_string()
}

/// Builds the word-level tokenizer of every caption in `dir`'s and `dir/videos`' `*.jsonl` files and writes it
/// to `dir/tokenizer.json` (atomically); returns its path.
pub fn write_word_tokenizer(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let mut captions = Vec::new();
    // Image captions sit in `dir`, clip captions in `dir/videos` (the `native synth` layout).
    let mut files: Vec<_> = [dir.to_path_buf(), dir.join("videos")]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    for file in files {
        for line in std::fs::read_to_string(&file)?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let v: Value =
                serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if let Some(c) = v.get("caption").and_then(Value::as_str) {
                captions.push(c.to_string());
            }
        }
    }
    anyhow::ensure!(!captions.is_empty(), "no captions in {}/*.jsonl", dir.display());
    let path = dir.join("tokenizer.json");
    crate::files::write_atomic(&path, word_level_tokenizer(&captions).as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use caption_model::tokenizer::Tokenizer;

    #[test]
    fn round_trips_captions_and_frames_them_like_gpt2() {
        let caps = vec![
            "A red circle on the left.".to_string(),
            "two blue squares".to_string(),
        ];
        let tok = Tokenizer::from_bytes(word_level_tokenizer(&caps).as_bytes()).unwrap();
        assert_eq!((tok.bos(), tok.eos()), (2, 2));
        assert_eq!(
            tok.vocab_size(),
            3 + 9,
            "a red circle on the left. two blue squares"
        );
        let ids = tok.encode_caption("a red circle on the left.").unwrap();
        assert_eq!(ids.first(), Some(&2));
        assert_eq!(ids.last(), Some(&2));
        assert!(!ids.contains(&0) && !ids.contains(&1), "{ids:?}");
        assert_eq!(tok.decode_caption(&ids).unwrap(), "a red circle on the left.");
        assert_eq!(
            tok.encode("purple").unwrap(),
            vec![1],
            "unknown words map to <unk>"
        );
    }
}
