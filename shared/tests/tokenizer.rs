//! GPT-2 tokenisation equals tiktoken's on every shipped case.

mod common;

use caption_model::tokenizer::Tokenizer;
use common::fixture;

#[test]
fn ids_equal_the_tiktoken_cases() {
    let tok = Tokenizer::gpt2().unwrap();
    assert_eq!((tok.bos(), tok.eos(), tok.vocab_size()), (50256, 50256, 50257));
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("gpt2-tokenizer/tokenization_cases.json")).unwrap(),
    )
    .unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 44);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(tok.encode(text).unwrap(), want, "case {}", case["name"]);
        assert_eq!(
            tok.decode(&want, false).unwrap(),
            case["decoded"].as_str().unwrap(),
            "case {}",
            case["name"]
        );
        assert_eq!(
            tok.decode(&want, true).unwrap(),
            case["decoded_skip_special"].as_str().unwrap(),
            "case {}",
            case["name"]
        );
    }
}

#[test]
fn caption_framing_is_the_originals() {
    let tok = Tokenizer::gpt2().unwrap();
    let ids = tok.encode_caption("A man riding a wave.").unwrap();
    assert_eq!(ids, vec![50256, 317, 582, 10311, 257, 6769, 13, 220, 50256]);
    assert_eq!(tok.decode_caption(&ids).unwrap(), "A man riding a wave.");
}

#[test]
fn shipped_copy_is_the_shared_file() {
    let shared = std::fs::read(fixture("gpt2-tokenizer/tokenizer.json")).unwrap();
    assert_eq!(shared.as_slice(), caption_model::tokenizer::GPT2_TOKENIZER_JSON);
}
