//! Fuzzes the model-folder loader. The first byte picks what the input replaces in a small,
//! valid q8 folder (built once): 0 = all three files (split by two length bytes), 1 = the
//! weights file with the manifest's size and checksum re-stated (so the parsing behind the
//! checksum is reached), 2 = the manifest. Any outcome but a panic is fine.
#![no_main]

use std::sync::OnceLock;

use candle_core::Device;
use caption_model::weights::{
    export_folder, load_folder, random_tensors, sha256_hex, ExportedFolder, FolderBytes, Quant,
};
use caption_model::ModelConfig;
use libfuzzer_sys::fuzz_target;

mod common;
use common::CONFIG;


const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
"model":{"type":"WordLevel","vocab":{"<pad>":0,"<|endoftext|>":1,"a":2},"unk_token":"<pad>"}}"#;

fn base() -> &'static ExportedFolder {
    static BASE: OnceLock<ExportedFolder> = OnceLock::new();
    BASE.get_or_init(|| {
        let cfg = ModelConfig::from_str_any(CONFIG).expect("fuzz config");
        let tensors = random_tensors(&cfg, 7, &Device::Cpu).expect("random weights");
        let folder = export_folder(&cfg, tensors, Quant::Q8, TOKENIZER.as_bytes()).expect("export");
        // `CAPTION_FUZZ_SEEDS=<dir>` writes one seed input per mode, for the corpus.
        if let Some(dir) = std::env::var_os("CAPTION_FUZZ_SEEDS") {
            let dir = std::path::PathBuf::from(dir);
            let mut all = vec![0u8, 0, 0];
            all.extend(&folder.model);
            let seeds = [(1u8, &folder.model), (2u8, &folder.manifest)];
            for (mode, bytes) in seeds {
                let mut seed = vec![mode];
                seed.extend(bytes.iter());
                std::fs::write(dir.join(format!("seed-mode{mode}")), seed).expect("seed");
            }
            std::fs::write(dir.join("seed-mode0"), all).expect("seed");
        }
        folder
    })
}

fn load(manifest: &[u8], model: &[u8], tokenizer: &[u8]) {
    let files = FolderBytes {
        manifest,
        model,
        tokenizer,
    };
    let _ = load_folder(files, &Device::Cpu);
}

/// The base manifest with the weights file's size and checksum re-stated for `model`.
fn resealed_manifest(model: &[u8]) -> Vec<u8> {
    let mut m: serde_json::Value = serde_json::from_slice(&base().manifest).expect("base manifest");
    m["files"][0]["bytes"] = model.len().into();
    m["files"][0]["sha256"] = sha256_hex(model).into();
    serde_json::to_vec(&m).expect("manifest")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let base = base();
    match mode % 3 {
        0 => {
            let [a, b, tail @ ..] = rest else { return };
            let a = (*a as usize * 64).min(tail.len());
            let (manifest, tail) = tail.split_at(a);
            let b = (*b as usize * 64).min(tail.len());
            let (tokenizer, model) = tail.split_at(b);
            load(manifest, model, tokenizer);
        }
        1 => load(&resealed_manifest(rest), rest, &base.tokenizer),
        _ => load(rest, &base.model, &base.tokenizer),
    }
});
