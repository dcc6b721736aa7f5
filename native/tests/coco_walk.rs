//! README's walk from COCO to the page, offline: `native data coco` from a server on
//! 127.0.0.1 serving a tiny COCO (synthetic scenes in COCO's zips and layout), then the
//! original `config.yaml`, untouched but for overrides, trains on it with the fixture hub
//! backbones, is killed and resumes, evaluates with `mode=test`, and exports a folder that
//! captions.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http_zip::{build_zip, Server};
use common::run_native;
use native::train::checkpoint;

const STEPS: u64 = 40;

/// COCO's three zips, made of the synthetic set in `synth`: `train2017.zip` and `val2017.zip`
/// from its train and val images, the annotations zip from its caption files.
fn coco_zips(synth: &Path) -> HashMap<String, Vec<u8>> {
    let split_zip = |split: &str, folder: &str| {
        let mut entries = vec![(format!("{folder}/"), Vec::new(), false)];
        let mut names: Vec<_> = std::fs::read_dir(synth.join("images").join(split))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for name in names {
            let bytes = std::fs::read(synth.join("images").join(split).join(&name)).unwrap();
            entries.push((format!("{folder}/{name}"), bytes, true));
        }
        build_zip(&entries).bytes
    };
    let annotations = build_zip(&[
        (
            "annotations/captions_train2017.json".into(),
            std::fs::read(synth.join("train.json")).unwrap(),
            true,
        ),
        (
            "annotations/captions_val2017.json".into(),
            std::fs::read(synth.join("val.json")).unwrap(),
            true,
        ),
    ]);
    HashMap::from([
        ("/zips/train2017.zip".to_string(), split_zip("train", "train2017")),
        ("/zips/val2017.zip".to_string(), split_zip("val", "val2017")),
        (
            "/annotations/annotations_trainval2017.zip".to_string(),
            annotations.bytes,
        ),
    ])
}

/// `native train` with the original config.yaml, the fixture backbones, the synthetic
/// tokenizer and the downloaded COCO, plus `extra`.
fn train_args(coco: &Path, tokenizer: &Path, exp: &Path, extra: &[String]) -> Vec<String> {
    let c = |p: &str| coco.join(p).display().to_string();
    let mut args = vec![
        "--threads".to_string(),
        "1".into(),
        "train".into(),
        "--config-path".into(),
        common::shared("original").display().to_string(),
        "--config-name".into(),
        "config.yaml".into(),
        "name=walk".into(),
    ];
    args.extend(common::fixture_backbones());
    args.extend([
        format!("dataset.tokenizer={}", tokenizer.display()),
        format!("trainer.exp_dir={}", exp.display()),
        format!("dataset.train_ds.visual_dir={}", c("train2017")),
        format!("dataset.train_ds.json_path={}", c("train2017.json")),
        format!("dataset.validation_ds.visual_dir={}", c("val2017")),
        format!("dataset.validation_ds.json_path={}", c("val2017.json")),
        "dataset.train_ds.batch_size=4".into(),
        format!("+trainer.max_steps={STEPS}"),
        "+trainer.save_every_n_steps=1".into(),
    ]);
    args.extend_from_slice(extra);
    args
}

/// Starts a training run and SIGKILLs it once its checkpoint holds step 2 or later; returns
/// the step the checkpoint holds after the kill.
fn train_until_killed(args: &[String], last: &Path) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_native"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let step = last
            .exists()
            .then(|| checkpoint::load(last, &candle_core::Device::Cpu).ok())
            .flatten()
            .and_then(|c| c.state.map(|s| s.step));
        if step.is_some_and(|s| s >= 2) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            break;
        }
        if started.elapsed() > Duration::from_secs(300) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            child.wait().unwrap();
            panic!("no checkpoint at step >= 2 appeared before the run ended or 300 s passed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let at = checkpoint::load(last, &candle_core::Device::Cpu)
        .unwrap()
        .state
        .unwrap()
        .step;
    assert!(
        at < STEPS,
        "the run ended before the kill (checkpoint at step {at})"
    );
    at
}

#[test]
fn coco_download_train_kill_resume_test_and_export() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = tmp.path().join("synth");
    common::synth_images(&synth, 16, 6, 0, 11);
    let server = Server::start(coco_zips(&synth));

    // Get the data as README says.
    let data = tmp.path().join("data");
    let summary = run_native(&[
        "data".into(),
        "coco".into(),
        "--out".into(),
        data.display().to_string(),
        "--base-url".into(),
        server.url.clone(),
    ]);
    assert!(summary.contains("train2017/: 16 images"), "{summary}");
    assert!(summary.contains("val2017/: 6 images"), "{summary}");
    let coco = data.join("mscoco");
    assert_eq!(
        std::fs::read(coco.join("train2017.json")).unwrap(),
        std::fs::read(synth.join("train.json")).unwrap()
    );

    // Train, killed after a checkpoint, then resumed to the end.
    let tokenizer = synth.join("tokenizer.json");
    let exp = tmp.path().join("runs");
    let last = exp.join("walk/checkpoints/last.safetensors");
    let at = train_until_killed(&train_args(&coco, &tokenizer, &exp, &[]), &last);
    let resume = [
        format!("pretrained_name={}", last.display()),
        "resume_pretrained_state=true".into(),
    ];
    let stdout = run_native(&train_args(&coco, &tokenizer, &exp, &resume));
    assert!(stdout.contains(&format!("trained {STEPS} steps")), "{stdout}");
    let steps: Vec<u64> = common::logged(&exp.join("walk"), "train_loss")
        .into_keys()
        .collect();
    assert_eq!(steps, (1..=STEPS).collect::<Vec<_>>(), "killed at {at}");

    // mode=test on val2017, as the original evaluates COCO.
    let test = [
        "mode=test".to_string(),
        format!("pretrained_name={}", last.display()),
        format!("dataset.test_ds.visual_dir={}", coco.join("val2017").display()),
        format!(
            "dataset.test_ds.json_path={}",
            coco.join("val2017.json").display()
        ),
    ];
    run_native(&train_args(&coco, &tokenizer, &exp, &test));
    let scores: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exp.join("walk/test_scores.json")).unwrap()).unwrap();
    let bleu4 = scores["bleu4"].as_f64();
    assert!(bleu4.is_some_and(|b| b.is_finite() && b >= 0.0), "{scores}");
    let predictions: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exp.join("walk/predictions.json")).unwrap()).unwrap();
    assert_eq!(predictions.as_array().map(Vec::len), Some(6), "{predictions}");

    // Export, and the folder captions a downloaded image.
    let folder = tmp.path().join("folder");
    run_native(&[
        "export".into(),
        "--checkpoint".into(),
        last.display().to_string(),
        "--tokenizer".into(),
        tokenizer.display().to_string(),
        "--quant".into(),
        "q8".into(),
        "--out".into(),
        folder.display().to_string(),
    ]);
    let image = coco.join("val2017/1000001.png");
    let stdout = run_native(&[
        "caption".into(),
        "--model".into(),
        folder.display().to_string(),
        "--strategy".into(),
        "greedy".into(),
        "--max-length".into(),
        "6".into(),
        image.display().to_string(),
    ]);
    assert!(stdout.starts_with(&format!("{}\t", image.display())), "{stdout}");
}
