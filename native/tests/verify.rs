//! `verify` passes on every shipped fixture and fails when an output is off.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use candle_core::{Device, Tensor};
use native::verify::{verify_dir, ACTIVATION_TOL, LOSS_REL_TOL, TRAIN_REL_TOL};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")).join(rel)
}

const VARIANTS: [&str; 4] = [
    "mlp_resampler",
    "mapper_only",
    "resampler_only",
    "transformer_mapper_freq2",
];

#[test]
fn every_seed_variant_matches_the_original() {
    for variant in VARIANTS {
        let report = verify_dir(&fixture(&format!("fixtures/seed/{variant}"))).unwrap();
        println!("{variant}:\n  {}", report.lines().join("\n  "));
        let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
        assert!(names.contains(&"logits") && names.contains(&"loss") && names.contains(&"mapped_prefix"));
        assert_eq!(
            names.contains(&"resampled"),
            variant != "mapper_only",
            "{variant}"
        );
        for c in &report.checks {
            let tol = match (c.relative, c.name.as_str()) {
                (true, "loss") => LOSS_REL_TOL,
                (true, _) => TRAIN_REL_TOL,
                (false, _) => ACTIVATION_TOL,
            };
            assert!(c.diff <= tol, "{variant} {}: {} > {tol}", c.name, c.diff);
        }
        let (expected, produced) = report.greedy.clone().unwrap();
        assert_eq!(expected.len(), 13);
        assert_eq!(expected, produced, "{variant} greedy tokens");
        assert!(report.passed());
    }
}

fn native(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_native"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_command_passes_and_prints_each_difference() {
    let dir = fixture("fixtures/seed/transformer_mapper_freq2");
    let out = native(&["verify", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "mapped_prefix",
        "resampled",
        "logits",
        "loss",
        "greedy tokens",
        "verify: PASSED",
    ] {
        assert!(stdout.contains(name), "missing {name} in\n{stdout}");
    }
}

/// A copy of a fixture directory with one io tensor replaced.
fn tampered(variant: &str, name: &str, edit: impl Fn(&Tensor) -> Tensor) -> tempfile::TempDir {
    let src = fixture(&format!("fixtures/seed/{variant}"));
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "weights.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut io: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("io.safetensors"), &Device::Cpu).unwrap();
    let t = edit(&io[name]);
    io.insert(name.to_string(), t);
    candle_core::safetensors::save(&io, dir.path().join("io.safetensors")).unwrap();
    dir
}

#[test]
fn the_command_fails_when_logits_or_tokens_are_off() {
    let dir = tampered("mlp_resampler", "logits", |t| (t + 1e-3).unwrap());
    let out = native(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL"));

    let dir = tampered("mapper_only", "greedy_tokens_image0", |t| (t + 1.0).unwrap());
    let report = verify_dir(dir.path()).unwrap();
    assert!(!report.passed());
    assert!(
        report.checks.iter().all(|c| c.passed()),
        "only the tokens are off"
    );
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let out = native(&["verify", "/nonexistent/fixture"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config.json"), "{stderr}");
}
