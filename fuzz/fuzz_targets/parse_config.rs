//! Fuzzes the project config parser, `ProjectConfig::from_yaml` (what `ProjectConfig::load`
//! runs on `config.yaml`): YAML, Hydra-style overrides (`a.b=v`, `+a.b=v`) and `${a.b}`
//! interpolation. The input is the YAML text, then optionally a NUL byte and overrides
//! separated by NUL bytes (lossily decoded as UTF-8). Any outcome but a panic, a hang or a
//! large allocation is fine.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use native::train::config::ProjectConfig;

fn seeds() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // `CAPTION_FUZZ_SEEDS=<dir>` writes the original's config.yaml, bare and with overrides
        // that set, add and interpolate keys, for the corpus.
        let Some(dir) = std::env::var_os("CAPTION_FUZZ_SEEDS") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        let yaml = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/original/config.yaml");
        let Ok(text) = std::fs::read(yaml) else {
            return;
        };
        std::fs::write(dir.join("seed-config"), &text).expect("seed");
        let mut with = text.clone();
        for o in [
            "trainer.epochs=3",
            "+trainer.max_steps=${trainer.epochs}",
            "dataset.train_ds.json_path=/data/${name}/train.json",
            "model.optimizer.betas=[0.9, 0.99]",
        ] {
            with.push(0);
            with.extend(o.as_bytes());
        }
        std::fs::write(dir.join("seed-config-overrides"), with).expect("seed");
    });
}

fuzz_target!(|data: &[u8]| {
    seeds();
    let mut parts = data.split(|&b| b == 0);
    let yaml = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let overrides: Vec<String> = parts.map(|o| String::from_utf8_lossy(o).into_owned()).collect();
    let _ = ProjectConfig::from_yaml(&yaml, &overrides);
});
