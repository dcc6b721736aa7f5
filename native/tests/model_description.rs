//! Model descriptions: the manifest field (optional, checked), `export --description`, the
//! checkpoint's own description as the default, and `inspect`.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use caption_model::weights::{check_description, parse_manifest, random_tensors, MAX_DESCRIPTION_CHARS};
use native::load::load_folder_dir;

fn model_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/model"))
}

fn native(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_native"))
        .args(args)
        .output()
        .unwrap()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Exports `ckpt` (the default model's config and tokenizer) with `extra` flags into `out`.
fn export(ckpt: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let tokenizer = model_dir().join("tokenizer.json");
    let mut args = vec![
        "export",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--quant",
        "f32",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    native(&args)
}

#[test]
fn the_default_model_says_what_it_knows_and_inspect_prints_it() {
    let folder = load_folder_dir(&model_dir(), &Device::Cpu).unwrap();
    let d = folder.manifest.description.expect("web/model has a description");
    assert!(
        d.contains("synthetic shapes") && d.contains("Load another model"),
        "{d}"
    );
    let out = native(&["inspect", model_dir().to_str().unwrap()]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().nth(1).unwrap() == format!("description: {d}"),
        "{table}"
    );
}

#[test]
fn folders_without_a_description_load_and_bad_ones_are_refused() {
    let mut m = manifest(&model_dir());
    m.as_object_mut().unwrap().remove("description");
    let old = parse_manifest(&serde_json::to_vec(&m).unwrap()).unwrap();
    assert_eq!(old.description, None);
    // Written back, an absent description stays absent (no `null`).
    assert!(!String::from_utf8(serde_json::to_vec(&old).unwrap())
        .unwrap()
        .contains("description"));

    for (bad, why) in [
        ("<b>cats</b>", "plain text"),
        ("two\nlines", "plain text"),
        ("rtl \u{202e}txt", "plain text"),
        (" padded", "whitespace"),
        ("", "empty"),
    ] {
        m["description"] = serde_json::json!(bad);
        let err = parse_manifest(&serde_json::to_vec(&m).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"description\"") && err.contains(why),
            "{bad:?}: {err}"
        );
    }
    let long = "a".repeat(MAX_DESCRIPTION_CHARS + 1);
    assert!(check_description(&long).unwrap_err().contains("at most"));
    assert!(check_description(&"é".repeat(MAX_DESCRIPTION_CHARS)).is_ok());
}

#[test]
fn export_takes_the_flag_else_the_checkpoint_description() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = load_folder_dir(&model_dir(), &Device::Cpu)
        .unwrap()
        .manifest
        .model_config;
    let tensors = random_tensors(&cfg, 3, &Device::Cpu).unwrap();
    let with = tmp.path().join("with.safetensors");
    let without = tmp.path().join("without.safetensors");
    let stored = "Trained on the coco dataset (train2017.json).";
    native::train::checkpoint::save(&with, &cfg, &tensors, None, Some(stored)).unwrap();
    native::train::checkpoint::save(&without, &cfg, &tensors, None, None).unwrap();

    let out = tmp.path().join("a");
    assert!(export(&with, &out, &[]).status.success());
    assert_eq!(manifest(&out)["description"], stored);
    let flag = "Knows shapes; try “Load another model”.";
    assert!(export(&with, &out, &["--description", flag]).status.success());
    assert_eq!(manifest(&out)["description"], flag);
    let loaded = load_folder_dir(&out, &Device::Cpu).unwrap();
    assert_eq!(loaded.manifest.description.as_deref(), Some(flag));

    assert!(export(&without, &out, &[]).status.success());
    assert!(manifest(&out).get("description").is_none());

    let refused = export(&with, &tmp.path().join("b"), &["--description", "<script>"]);
    assert_eq!(refused.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(
        msg.contains("--description") && msg.contains("plain text"),
        "{msg}"
    );
    assert!(!tmp.path().join("b/manifest.json").exists());
}
