//! `--cuda` / `--device` on every command that computes: in a binary built without CUDA each
//! one stops at once with one line saying so, before any work or output.

use std::path::PathBuf;
use std::process::{Command, Output};

fn shared(rel: &str) -> String {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")).join(rel);
    path.to_str().expect("UTF-8 path").to_string()
}

fn native(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_native"))
        .args(args)
        .output()
        .expect("the native binary runs")
}

/// Every computing command, with arguments that are otherwise valid; `{device}` is replaced by
/// the device flags under test.
fn command_lines(out_dir: &str) -> Vec<(&'static str, Vec<String>)> {
    let ckpt = shared("fixtures/seed_checkpoint/mlp_resampler-epoch3.pt");
    let config = shared("fixtures/seed/mlp_resampler/config.json");
    let image = shared("images/horse.png");
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        ("verify", own(&["verify", &shared("fixtures/seed/mlp_resampler")])),
        (
            "caption",
            own(&["caption", "--checkpoint", &ckpt, "--config", &config, &image]),
        ),
        (
            "bench caption",
            own(&["bench", "caption", "--iters", "1", "--tokens", "1"]),
        ),
        (
            "train",
            own(&[
                "train",
                "--config-path",
                &shared("original"),
                "--config-name",
                "config.yaml",
            ]),
        ),
        (
            "bench train",
            own(&["bench", "train", "--batch", "1", "--steps", "1"]),
        ),
        (
            "bench agreement",
            own(&[
                "bench",
                "agreement",
                "--reference",
                &ckpt,
                "--candidate",
                &ckpt,
                &image,
            ]),
        ),
        (
            "export",
            own(&[
                "export",
                "--checkpoint",
                &ckpt,
                "--config",
                &config,
                "--out",
                out_dir,
            ]),
        ),
    ]
}

#[test]
fn every_computing_command_says_in_one_line_that_the_binary_has_no_cuda() {
    if cfg!(feature = "cuda") {
        caption_model::test_skip::skip("a CUDA build: the no-CUDA error path is the CPU build's");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("export");
    let out_str = out_dir.to_str().unwrap().to_string();
    let mut checked = Vec::new();
    for (name, args) in command_lines(&out_str) {
        for flags in [vec!["--cuda"], vec!["--device", "cuda:1"]] {
            let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
            all.extend(&flags);
            let out = native(&all);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name} {flags:?}: {stderr}");
            assert_eq!(
                stderr.trim_end(),
                "error: --cuda: this binary was built without CUDA; build one with \
                 `cargo build --release -p native --features cuda` (README, \"Training on a GPU box\")",
                "{name} {flags:?}"
            );
            assert!(out.stdout.is_empty(), "{name} {flags:?} printed {:?}", out.stdout);
            checked.push(name);
        }
    }
    assert_eq!(checked.len(), 14);
    assert!(
        !out_dir.exists(),
        "export wrote {} before failing",
        out_dir.display()
    );
}

#[test]
fn device_names_are_checked_and_the_cpu_is_the_default() {
    let out = native(&[
        "verify",
        "--device",
        "tpu",
        &shared("fixtures/seed/mlp_resampler"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("`tpu` is not a device: use cpu, cuda or cuda:N"),
        "{stderr}"
    );

    let out = native(&[
        "verify",
        "--cuda",
        "--device",
        "cpu",
        &shared("fixtures/seed/mlp_resampler"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));

    // `--device cpu` is the plain CPU run: the fixture passes.
    let out = native(&[
        "verify",
        "--device",
        "cpu",
        &shared("fixtures/seed/mlp_resampler"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.ends_with("verify: PASSED\n"), "{stdout}");
}

#[test]
fn the_webgpu_engine_refuses_a_cuda_device() {
    let out = native(&[
        "caption",
        "--backend",
        "webgpu",
        "--cuda",
        "--model",
        &shared("fixtures/seed/mlp_resampler"),
        &shared("images/horse.png"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "error: --backend webgpu picks its own GPU adapter; drop --cuda/--device, which are for the candle engine"
    );
}
