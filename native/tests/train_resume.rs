//! A run killed with SIGKILL resumes from its last checkpoint and continues the same loss
//! curve as a run that was never interrupted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use native::synth::{generate_dataset, SynthOptions};
use native::train::checkpoint;
use native::train::vocab::write_word_tokenizer;

fn configs() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"))
}

fn dataset(dir: &Path) {
    let opts = SynthOptions {
        out: dir.to_path_buf(),
        train: 48,
        val: 8,
        test: 8,
        videos_train: 0,
        videos_val: 0,
        videos_test: 0,
        size: 64,
        frames: 4,
        seed: 3,
    };
    generate_dataset(&opts).unwrap();
    write_word_tokenizer(dir).unwrap();
}

fn train_args(data: &Path, exp: &Path, extra: &[String]) -> Vec<String> {
    let d = |p: &str| data.join(p).display().to_string();
    let mut args = vec![
        "train".to_string(),
        "--config-path".into(),
        configs().display().to_string(),
        "--config-name".into(),
        "synth.yaml".into(),
        format!("trainer.exp_dir={}", exp.display()),
        format!("dataset.train_ds.visual_dir={}", d("images/train")),
        format!("dataset.train_ds.json_path={}", d("train.json")),
        format!("dataset.validation_ds.visual_dir={}", d("images/val")),
        format!("dataset.validation_ds.json_path={}", d("val.json")),
        format!("dataset.tokenizer={}", d("tokenizer.json")),
        "dataset.train_ds.batch_size=8".into(),
        "trainer.epochs=10".into(),
        "+trainer.max_steps=20".into(),
        "+trainer.save_every_n_steps=2".into(),
    ];
    args.extend_from_slice(extra);
    args
}

/// step → loss, the last value logged for each step.
fn losses(exp: &Path) -> BTreeMap<u64, f64> {
    let text = std::fs::read_to_string(exp.join("synth/metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train_loss")
        .map(|v| (v["step"].as_u64().unwrap(), v["value"].as_f64().unwrap()))
        .collect()
}

#[test]
fn sigkill_then_resume_continues_the_same_loss_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    dataset(&data);
    let bin = env!("CARGO_BIN_EXE_native");

    let straight = tmp.path().join("straight");
    let out = Command::new(bin)
        .args(train_args(&data, &straight, &[]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = losses(&straight);
    assert_eq!(expected.len(), 20);

    let killed = tmp.path().join("killed");
    let last = killed.join("synth/checkpoints/last.safetensors");
    let mut child = Command::new(bin)
        .args(train_args(&data, &killed, &[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let resumed_from = loop {
        let step = last
            .exists()
            .then(|| checkpoint::load(&last, &candle_core::Device::Cpu).ok())
            .flatten()
            .and_then(|c| c.state.map(|s| s.step));
        if let Some(step) = step.filter(|&s| s >= 4) {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            break step;
        }
        if started.elapsed() > Duration::from_secs(300) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            child.wait().unwrap();
            panic!("no checkpoint at step >= 4 appeared before the run ended or 300 s passed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The kill lands somewhere after the checkpoint; the checkpoint itself stays whole.
    let ckpt = checkpoint::load(&last, &candle_core::Device::Cpu).unwrap();
    let at = ckpt.state.unwrap().step;
    assert!(
        at >= resumed_from && at < 20,
        "killed before the end (checkpoint at step {at})"
    );

    let resume = [
        format!("pretrained_name={}", last.display()),
        "resume_pretrained_state=true".into(),
    ];
    let out = Command::new(bin)
        .args(train_args(&data, &killed, &resume))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = losses(&killed);
    for step in at + 1..=20 {
        let (a, b) = (expected[&step], got[&step]);
        assert!(
            (a - b).abs() <= 1e-6 * a.abs(),
            "step {step}: uninterrupted {a}, resumed {b}"
        );
    }
    println!(
        "killed after checkpoint at step {at}; steps {}..=20 equal",
        at + 1
    );
}
