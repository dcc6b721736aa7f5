//! Helpers of the browser tests: building `dist/` with trunk and running the Chromium driver.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use caption_model::weights::{export_folder, random_tensors, Quant};
use caption_model::ModelConfig;
use serde_json::Value;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `PATH` with `web/tests/node_modules/.bin` (binaryen's wasm-opt) and `~/.cargo/bin` first.
fn tool_path(root: &Path) -> String {
    let mut dirs = vec![root.join("web/tests/node_modules/.bin")];
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    let mut path = std::env::join_paths(dirs).unwrap().into_string().unwrap();
    if let Ok(old) = std::env::var("PATH") {
        path = format!("{path}:{old}");
    }
    path
}

fn require(what: &str, ok: bool) {
    assert!(
        ok,
        "{what} is missing: run web/setup-tools.sh (it installs trunk, wasm-bindgen-cli, Chromium and \
         web/tests' npm packages), or set CAPTION_SKIP_BROWSER_TESTS=1 to skip the browser tests"
    );
}

/// Builds the page (`trunk build --release`) into `target/web-test/dist`, with its own cargo
/// target folder (`target/web-wasm`), once per test process, and returns the folder. Tests run
/// in parallel, and two trunk builds into one folder break each other.
pub fn build_dist(root: &Path) -> PathBuf {
    static DIST: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIST.get_or_init(|| trunk_build(root)).clone()
}

/// [`build_dist`]'s build.
fn trunk_build(root: &Path) -> PathBuf {
    let path = tool_path(root);
    let has = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .env("PATH", &path)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    require("trunk", has("trunk"));
    require("wasm-bindgen (wasm-bindgen-cli 0.2.130)", has("wasm-bindgen"));
    require("wasm-opt (npm binaryen in web/tests)", has("wasm-opt"));
    require("node", has("node"));
    require("chromium", Path::new(&chromium()).is_file());
    require(
        "playwright-core (npm ci in web/tests)",
        root.join("web/tests/node_modules/playwright-core").is_dir(),
    );
    let dist = root.join("target/web-test/dist");
    let status = Command::new("trunk")
        .args(["--skip-version-check", "build", "--release", "--dist"])
        .arg(&dist)
        .current_dir(root)
        .env("PATH", &path)
        .env("CARGO_TARGET_DIR", root.join("target/web-wasm"))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("running trunk");
    assert!(status.success(), "trunk build failed");
    dist
}

/// Chromium's executable (`$CHROMIUM`, else Debian's).
pub fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Runs `web/tests/browser.mjs` with `args` and returns its results.json.
pub fn run_browser(root: &Path, args: &[String]) -> Value {
    // One browser at a time: two on these 2 cores starved a video's seek, and the page drew a
    // clip's frame from the wrong instant (CI, `page_captions_like_native`).
    static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let out = args
        .iter()
        .position(|a| a == "--out")
        .map(|i| PathBuf::from(&args[i + 1]))
        .unwrap();
    let _ = std::fs::remove_file(out.join("results.json"));
    let status = Command::new("node")
        .arg(root.join("web/tests/browser.mjs"))
        .args(args)
        .current_dir(root)
        .env("PATH", tool_path(root))
        .env("CHROMIUM", chromium())
        .status()
        .expect("running node");
    let results: Value = serde_json::from_slice(
        &std::fs::read(out.join("results.json")).expect("the browser driver wrote no results.json"),
    )
    .unwrap();
    assert!(
        status.success(),
        "the browser driver failed; results so far: {results:#}"
    );
    results
}

/// Writes a model folder of the full-size default config (CLIP ViT-B/32 + GPT-2) with seeded
/// random weights, GPT-2's tokenizer, in `quant` (kept when it is already there).
pub fn random_full_size_folder(dir: &Path, quant: Quant) {
    if dir.join("manifest.json").is_file() {
        return;
    }
    let cfg = ModelConfig::default();
    let device = candle_core::Device::Cpu;
    let folder = export_folder(
        &cfg,
        random_tensors(&cfg, 0, &device).unwrap(),
        quant,
        caption_model::tokenizer::GPT2_TOKENIZER_JSON,
    )
    .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("model.safetensors"), &folder.model).unwrap();
    std::fs::write(dir.join("tokenizer.json"), &folder.tokenizer).unwrap();
    std::fs::write(dir.join("manifest.json"), &folder.manifest).unwrap();
}

/// Whether `CAPTION_SKIP_BROWSER_TESTS` asks to skip the browser tests (the skip is reported).
pub fn browser_tests_skipped() -> bool {
    let skipped = std::env::var("CAPTION_SKIP_BROWSER_TESTS").is_ok_and(|v| !v.is_empty() && v != "0");
    if skipped {
        caption_model::test_skip::skip("CAPTION_SKIP_BROWSER_TESTS is set");
    }
    skipped
}
