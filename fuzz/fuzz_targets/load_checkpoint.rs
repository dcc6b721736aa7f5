//! Fuzzes our checkpoint readers: the model loader's (`checkpoint_config` then
//! `read_safetensors_bytes`) and the trainer's (`native::train::checkpoint::load_bytes`, with
//! optimizer moments and loop state). The first byte picks how the rest is used: 0 = a whole
//! safetensors file; 1 = its JSON header, framed with a correct length and followed by the data
//! section of a small valid checkpoint (written once by the trainer's `save`), so that
//! mutations of the header's shapes, offsets and metadata are not lost to a wrong length.
//! Any outcome but a panic, a hang or a large allocation is fine.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use candle_core::Device;
use caption_model::weights::{checkpoint_config, random_tensors, read_safetensors_bytes};
use caption_model::ModelConfig;
use libfuzzer_sys::fuzz_target;
use native::train::checkpoint::{load_bytes, save, LoopState};

mod common;
use common::CONFIG;


/// The base checkpoint's data section (after the header).
fn base_data() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let cfg = ModelConfig::from_str_any(CONFIG).expect("fuzz config");
        // A few tensors keep the file small; the readers do not check completeness.
        let weights: BTreeMap<_, _> = random_tensors(&cfg, 7, &Device::Cpu)
            .expect("random weights")
            .into_iter()
            .take(4)
            .collect();
        let dir = std::env::temp_dir().join(format!("caption-fuzz-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("last.safetensors");
        let state = LoopState {
            step: 3,
            epoch: 1,
            batch_in_epoch: 2,
            best: vec![(0.5, "best.safetensors".into())],
            skipped: 1,
        };
        save(&path, &cfg, &weights, Some((&BTreeMap::new(), &state))).expect("save");
        let file = std::fs::read(&path).expect("read back");
        let _ = std::fs::remove_dir_all(&dir);
        let n = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
        // `CAPTION_FUZZ_SEEDS=<dir>` writes one seed input per mode, for the corpus.
        if let Some(seeds) = std::env::var_os("CAPTION_FUZZ_SEEDS") {
            let seeds = std::path::PathBuf::from(seeds);
            let mut whole = vec![0u8];
            whole.extend(&file);
            std::fs::write(seeds.join("seed-mode0"), whole).expect("seed");
            let mut header = vec![1u8];
            header.extend(&file[8..8 + n]);
            std::fs::write(seeds.join("seed-mode1"), header).expect("seed");
        }
        file[8 + n..].to_vec()
    })
}

fn read(file: &[u8]) {
    let _ = checkpoint_config(file);
    let _ = read_safetensors_bytes(file, &Device::Cpu);
    let _ = load_bytes(file, &Device::Cpu);
}

fuzz_target!(|data: &[u8]| {
    let data_section = base_data();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 2 {
        0 => read(rest),
        _ => {
            let mut file = (rest.len() as u64).to_le_bytes().to_vec();
            file.extend(rest);
            file.extend(data_section);
            read(&file);
        }
    }
});
