//! Fuzzes the dataset caption-file loaders through `native::data::parse_dataset` (what
//! `load_dataset` runs on the file's bytes): COCO JSON, MLSLT JSON and JSON Lines. The first
//! byte picks the format (mod 3: COCO, MLSLT, JSONL), the second the MLSLT sign languages (bit
//! k selects `SIGN_LANGUAGES[k]`, k < 8; none is an error), the rest is the caption file. The
//! visual folder is a temporary folder holding `a.jpg`, `sub/b.png` and `7/en.mp4`,
//! `7/de.mp4`, so that entries are both found and missing. Any outcome but a panic, a hang or
//! a large allocation is fine.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use native::data::{parse_dataset, DatasetFormat, SIGN_LANGUAGES};

const COCO: &str = r#"{"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "sub/b.png"},
 {"id": 3, "file_name": "gone.jpg"}, {"id": 1, "file_name": "a.jpg"}],
 "annotations": [{"image_id": 1, "caption": "a cat"}, {"image_id": 2, "caption": "a dog"},
 {"image_id": 1, "caption": "a cat on a mat"}, {"image_id": 9, "caption": "nobody"}]}"#;
const MLSLT: &str = r#"[{"id": "7", "sign_list": [{"lang": "en", "text": "hello"}, {"lang": "de", "text": "hallo"}]},
 {"id": 8, "sign_list": [{"lang": "zh", "text": "ni hao"}]}]"#;
const JSONL: &str = "{\"image\": \"a.jpg\", \"caption\": \"a cat\"}\n\n{\"image\": \"a.jpg\", \"caption\": [\"x\", \"y\"]}\n{\"video\": \"7/en.mp4\", \"caption\": \"hi\", \"extra\": 1}\n{\"image\": \"gone.png\", \"caption\": \"z\"}\n";

fn visual_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("caption-fuzz-data-{}", std::process::id()));
        for f in ["a.jpg", "sub/b.png", "7/en.mp4", "7/de.mp4"] {
            let path = dir.join(f);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("visual dir");
            std::fs::write(path, b"not decoded").expect("visual file");
        }
        // `CAPTION_FUZZ_SEEDS=<dir>` writes one small valid file per format, for the corpus.
        if let Some(seeds) = std::env::var_os("CAPTION_FUZZ_SEEDS") {
            let seeds = PathBuf::from(seeds);
            for (mode, name, text) in [(0u8, "coco", COCO), (1, "mlslt", MLSLT), (2, "jsonl", JSONL)] {
                let mut seed = vec![mode, 0b0010_0001];
                seed.extend(text.as_bytes());
                std::fs::write(seeds.join(format!("seed-{name}")), seed).expect("seed");
            }
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = visual_dir();
    let [mode, langs, file @ ..] = data else {
        return;
    };
    let format = [DatasetFormat::Coco, DatasetFormat::Mlslt, DatasetFormat::Jsonl][*mode as usize % 3];
    let langs: Vec<String> = (0..8)
        .filter(|k| langs & (1 << k) != 0)
        .map(|k| SIGN_LANGUAGES[k].to_string())
        .collect();
    let _ = parse_dataset(format, file, &dir.join("captions.json"), dir, &langs);
});
