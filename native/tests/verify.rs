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
        let report = verify_dir(&fixture(&format!("fixtures/seed/{variant}")), &Device::Cpu).unwrap();
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
    let report = verify_dir(dir.path(), &Device::Cpu).unwrap();
    assert!(!report.passed());
    assert!(
        report.checks.iter().all(|c| c.passed()),
        "only the tokens are off"
    );
}

/// `t` with the element at flat index `i` set to NaN.
fn with_nan_at(t: &Tensor, i: usize) -> Tensor {
    let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v[i] = f32::NAN;
    Tensor::from_vec(v, t.dims(), t.device()).unwrap()
}

/// The line of `verify`'s output that starts with `name`.
fn line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no `{name}` line in\n{stdout}"))
}

#[test]
fn nan_logits_fail_on_the_logits_line() {
    // Row 500 of the token embedding and of the tied LM head set to NaN: one column of the
    // logits is NaN. candle's CPU `max` skips a NaN that is not first, so a plain reduction
    // reported this copy's logits as matching.
    let src = fixture("fixtures/seed/mlp_resampler");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "io.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut weights: HashMap<String, Tensor> =
        candle_core::safetensors::load(src.join("weights.safetensors"), &Device::Cpu).unwrap();
    for name in [
        "text_generator.lm.transformer.wte.weight",
        "text_generator.lm.lm_head.weight",
    ] {
        let w = &weights[name];
        let cols = w.dim(1).unwrap();
        let poisoned = (500 * cols..501 * cols).fold(w.clone(), |t, i| with_nan_at(&t, i));
        weights.insert(name.to_string(), poisoned);
    }
    candle_core::safetensors::save(&weights, dir.path().join("weights.safetensors")).unwrap();

    let out = native(&["verify", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    println!("{stdout}");
    let logits = line(&stdout, "logits");
    assert!(logits.contains("NaN") && logits.ends_with("FAIL"), "{logits}");
    assert!(stdout.contains("verify: FAILED"), "{stdout}");
}

#[test]
fn a_single_nan_in_a_compared_value_fails_and_is_named() {
    // Not the first element, which a NaN-skipping reduction would still have seen.
    for (name, index) in [("logits", 777), ("mapped_prefix", 5)] {
        let dir = tampered("mlp_resampler", name, |t| with_nan_at(t, index));
        let report = verify_dir(dir.path(), &Device::Cpu).unwrap();
        let lines = report.lines().join("\n");
        assert!(!report.passed(), "{lines}");
        let l = line(&lines, name);
        assert!(
            l.contains("expected values hold NaN") && l.ends_with("FAIL"),
            "{l}"
        );
        let others_pass = report
            .checks
            .iter()
            .filter(|c| c.name != name)
            .all(|c| c.passed());
        assert!(others_pass, "only `{name}` is off:\n{lines}");
    }
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let out = native(&["verify", "/nonexistent/fixture"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("config.json"), "{stderr}");
}
