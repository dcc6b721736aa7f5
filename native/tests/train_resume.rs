//! A run killed with SIGKILL resumes from its last checkpoint and continues the same loss
//! curve as a run that was never interrupted.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{logged, synth_images, synth_train_args};
use native::train::checkpoint;

fn train_args(data: &Path, exp: &Path, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "dataset.train_ds.batch_size=8",
        "trainer.epochs=10",
        "+trainer.max_steps=20",
        "+trainer.save_every_n_steps=2",
        // Dropout on (the synthetic config has none) so that the resumed run must also draw
        // the same masks as the uninterrupted one.
        "model.text.config.resid_pdrop=0.1",
        "model.text.config.embd_pdrop=0.1",
        "model.text.config.attn_pdrop=0.1",
    ]
    .map(String::from)
    .to_vec();
    args.extend_from_slice(extra);
    synth_train_args(data, exp, &args)
}

fn losses(exp: &Path) -> std::collections::BTreeMap<u64, f64> {
    logged(&exp.join("synth"), "train_loss")
}

#[test]
fn sigkill_then_resume_continues_the_same_loss_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_images(&data, 48, 8, 8, 3);
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
    assert_eq!(got.len(), 20, "{got:?}");
    // Same binary, same data, same order: a resumed run must be exact, not merely close.
    for step in 1..=20 {
        let (a, b) = (expected[&step], got[&step]);
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "step {step}: uninterrupted {a}, resumed {b}"
        );
    }
    println!(
        "killed after checkpoint at step {at}; steps {}..=20 equal",
        at + 1
    );
}

/// The `data_wait_s` of every train_loss line of a run.
fn data_waits(exp: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(exp.join("synth/metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train_loss")
        .map(|v| v["data_wait_s"].as_f64().expect("a data_wait_s field"))
        .collect()
}

#[test]
fn batches_prepared_ahead_give_the_same_curve_as_batches_prepared_inline() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_images(&data, 48, 8, 8, 5);
    for cache in ["true", "false"] {
        let run = |workers: usize| {
            let exp = tmp.path().join(format!("cache-{cache}-workers-{workers}"));
            let extra = [
                format!("dataset.train_ds.num_workers={workers}"),
                format!("+trainer.feature_cache={cache}"),
            ];
            common::run_native(&train_args(&data, &exp, &extra));
            exp
        };
        let (inline, ahead) = (run(0), run(2));
        let (a, b) = (losses(&inline), losses(&ahead));
        assert_eq!(a.len(), 20);
        assert_eq!(b.len(), 20);
        for (step, v) in &a {
            assert_eq!(
                v.to_bits(),
                b[step].to_bits(),
                "cache {cache}, step {step}: {v} vs {}",
                b[step]
            );
        }
        for exp in [&inline, &ahead] {
            let waits = data_waits(exp);
            assert_eq!(waits.len(), 20);
            assert!(waits.iter().all(|w| w.is_finite() && *w >= 0.0), "{waits:?}");
        }
    }
}
