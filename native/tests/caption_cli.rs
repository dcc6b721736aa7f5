//! `native caption`: files and folders in, one caption per image out; broken images are
//! reported and the rest still captioned.

use std::path::PathBuf;
use std::process::Command;

use candle_core::Device;
use caption_model::decode::{DecodeOptions, Strategy};
use caption_model::preprocess::{preprocess_bytes, PreprocessConfig};
use native::caption::caption_pixels;
use native::load::load_model;

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared")).join(rel)
}

#[test]
fn json_captions_equal_the_library_decode_and_bad_files_are_reported() {
    let ckpt = shared("fixtures/seed_checkpoint/mlp_resampler-epoch3.pt");
    let config = shared("fixtures/seed/mlp_resampler/config.json");
    let good = [shared("images/horse.png"), shared("images/rocket.jpg")];
    let bad = shared("images/bad/not_an_image.jpg");
    let out = Command::new(env!("CARGO_BIN_EXE_native"))
        .args([
            "caption",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .args([
            "--strategy",
            "greedy",
            "--max-length",
            "8",
            "--json",
            "--batch-size",
            "2",
        ])
        .args([&good[0], &bad, &good[1]])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "a failed image makes the exit code 1");
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[1]["error"]
        .as_str()
        .unwrap()
        .contains("not a recognised image format"));

    let model = load_model(&ckpt, Some(&config), &Device::Cpu).unwrap();
    let pre = PreprocessConfig::for_image_size(64);
    let opts = DecodeOptions {
        strategy: Strategy::Greedy,
        max_length: 8,
        bos: 999,
        eos: 999,
    };
    for (file, result) in good.iter().zip([&results[0], &results[2]]) {
        let pixels = preprocess_bytes(&std::fs::read(file).unwrap(), &pre).unwrap();
        let want = caption_pixels(&model, &[pixels.as_slice()], &pre, &opts)
            .unwrap()
            .remove(0)
            .tokens;
        let got: Vec<u32> = serde_json::from_value(result["tokens"].clone()).unwrap();
        assert_eq!(got, want, "{}", file.display());
        assert_eq!(got.len(), 8, "no eos in 8 steps on these random weights");
        assert!(result["caption"].is_string());
    }
}

#[test]
fn a_folder_is_expanded_to_its_images() {
    let files = native::caption::collect_inputs(&[shared("images")]).unwrap();
    assert_eq!(
        files.len(),
        9,
        "the nine photos; bad/ is a folder and not descended into"
    );
    assert!(files.windows(2).all(|w| w[0] < w[1]), "sorted");
}

/// `--backend webgpu` captions the shipped model folder exactly as the CPU engine does (greedy
/// and beam), on whatever adapter wgpu finds (lavapipe in CI; `CAPTION_GPU_TESTS=skip` skips).
#[test]
fn webgpu_backend_captions_like_the_cpu() {
    if std::env::var("CAPTION_GPU_TESTS").is_ok_and(|v| v == "skip") {
        caption_model::test_skip::skip("CAPTION_GPU_TESTS=skip, the WebGPU engine is not tested");
        return;
    }
    let model = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/model"));
    let images = shared("images");
    let run = |backend: &str, strategy: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_native"))
            .args([
                "caption",
                "--model",
                model.to_str().unwrap(),
                "--backend",
                backend,
            ])
            .args(["--strategy", strategy, "--beam-width", "3", "--json"])
            .arg(&images)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| (r["file"].clone(), r["tokens"].clone()))
            .collect::<Vec<_>>()
    };
    for strategy in ["greedy", "beam"] {
        let (cpu, gpu) = (run("cpu", strategy), run("webgpu", strategy));
        assert_eq!(cpu.len(), 9, "{cpu:?}");
        assert_eq!(gpu, cpu, "{strategy}");
    }
}
