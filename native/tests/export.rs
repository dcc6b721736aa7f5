//! `native export` / `inspect` / `caption --model`: a model trained here from scratch is exported
//! in every scheme; f32 decodes exactly as the checkpoint does, q8/q4 agree with it on the
//! predictions the model is sure of; damaged folders are refused by the CLI.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use native::bench::agreement::agreement;
use native::caption::collect_inputs;
use native::load::{load_any, load_model};

fn native(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_native"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A synthetic dataset and a small model trained on it for a few dozen steps.
fn trained(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    common::synth_images(&data, 320, 16, 40, 5);
    let exp = dir.join("runs");
    common::train_synth(&data, &exp, &["trainer.epochs=5".into()]);
    (exp.join("synth/checkpoints/last.safetensors"), data)
}

#[test]
fn exported_folders_caption_like_the_checkpoint_and_damage_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (ckpt, data) = trained(tmp.path());
    let tokenizer = data.join("tokenizer.json");
    let folder = |q: &str| tmp.path().join(format!("model-{q}"));
    for q in ["f32", "q8", "q4"] {
        let out = folder(q);
        ok(&native(&[
            "export",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--quant",
            q,
            "--out",
            out.to_str().unwrap(),
        ]));
    }

    // The checkpoint does not carry its tokenizer: GPT-2's is refused for a 52-token model.
    let err = native(&[
        "export",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--out",
        folder("x").to_str().unwrap(),
    ]);
    assert_eq!(err.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&err.stderr).contains("pass --tokenizer"));

    let table = ok(&native(&["inspect", folder("q4").to_str().unwrap()]));
    assert!(
        table.contains("q4_0") && table.contains("total folder size"),
        "{table}"
    );
    assert!(
        table.contains("text_generator.lm.transformer.wte.weight"),
        "{table}"
    );

    // `caption --model` on the f32 folder prints what the checkpoint prints.
    let images = data.join("images/test");
    let caption = |model_flag: &str, model: &Path| {
        ok(&native(&[
            "caption",
            model_flag,
            model.to_str().unwrap(),
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--strategy",
            "greedy",
            "--max-length",
            "20",
            images.to_str().unwrap(),
        ]))
    };
    let from_ckpt = caption("--checkpoint", &ckpt);
    // The comparisons below mean something only with a caption for each of the 40 test images.
    assert_eq!(from_ckpt.lines().count(), 40, "{from_ckpt}");
    // How varied the captions are tells how much the agreement figures below say.
    let distinct: std::collections::HashSet<&str> =
        from_ckpt.lines().filter_map(|l| l.split('\t').nth(1)).collect();
    println!("{} distinct captions over the test images", distinct.len());
    assert_eq!(caption("--model", &folder("f32")), from_ckpt);
    // The folder's own tokenizer is used when --tokenizer is not given.
    let own = ok(&native(&[
        "caption",
        "--model",
        folder("f32").to_str().unwrap(),
        "--strategy",
        "greedy",
        "--max-length",
        "20",
        images.to_str().unwrap(),
    ]));
    assert_eq!(own, from_ckpt);

    let dev = Device::Cpu;
    let reference = load_model(&ckpt, None, &dev).unwrap();
    let files = collect_inputs(&[images]).unwrap();
    for (q, min_top1, min_decisive) in [("f32", 1.0, 1.0), ("q8", 0.97, 0.995), ("q4", 0.75, 0.95)] {
        let (model, tok) = load_any(&folder(q), None, &dev).unwrap();
        assert!(tok.is_some());
        let a = agreement(&reference, &model, &files, 20).unwrap();
        println!("{q}: {a}");
        let decisive = a.decisive_same as f64 / a.decisive.max(1) as f64;
        assert!(
            a.decisive > a.positions / 4,
            "{q}: too few decisive positions to judge: {a}"
        );
        assert!(a.top1_rate() >= min_top1 && decisive >= min_decisive, "{q}: {a}");
        if q == "f32" {
            assert_eq!(a.identical, a.images);
        }
    }

    // Damage through the CLI: a flipped byte, a truncated file, a missing tensor file.
    let damaged = tmp.path().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    for f in ["manifest.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(folder("q8").join(f), damaged.join(f)).unwrap();
    }
    let weights = damaged.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&weights, &bytes).unwrap();
    let err = native(&["inspect", damaged.to_str().unwrap()]);
    assert_eq!(err.status.code(), Some(2), "an error, not a crash");
    assert!(String::from_utf8_lossy(&err.stderr).contains("sha256"));
    bytes[mid] ^= 0x01;
    std::fs::write(&weights, &bytes[..bytes.len() - 10]).unwrap();
    let err = native(&[
        "caption",
        "--model",
        damaged.to_str().unwrap(),
        data.join("images/test").to_str().unwrap(),
    ]);
    assert_eq!(err.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("truncated"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
}

/// Fine-tuning a scratch model from its checkpoint (here with quantization-aware training)
/// keeps the frozen random vision tower in the new checkpoint, which therefore exports; the
/// tower is unchanged.
#[test]
fn a_fine_tuned_scratch_model_keeps_its_frozen_tower() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synth_images(&data, 64, 8, 8, 9);
    let exp = tmp.path().join("runs");
    let train = |extra: &[String]| common::train_synth(&data, &exp, extra);
    train(&["trainer.epochs=1".into()]);
    let first = exp.join("synth/checkpoints/last.safetensors");
    train(&[
        "name=tuned".into(),
        "trainer.epochs=1".into(),
        format!("pretrained_name={}", first.display()),
        "+trainer.quant_aware=q4".into(),
    ]);
    let tuned = exp.join("tuned/checkpoints/last.safetensors");
    let losses = common::logged(&exp.join("tuned"), "train_loss");
    assert!(
        !losses.is_empty() && losses.values().all(|l| l.is_finite()),
        "{losses:?}"
    );
    let out = tmp.path().join("tuned-q4");
    ok(&native(&[
        "export",
        "--checkpoint",
        tuned.to_str().unwrap(),
        "--tokenizer",
        data.join("tokenizer.json").to_str().unwrap(),
        "--quant",
        "q4",
        "--out",
        out.to_str().unwrap(),
    ]));
    let read = |p: &Path| caption_model::weights::read_safetensors(p, &Device::Cpu).unwrap();
    let (a, b) = (read(&first), read(&tuned));
    let tower: Vec<&String> = a.keys().filter(|k| k.starts_with("vision_encoder.")).collect();
    assert!(!tower.is_empty());
    for k in tower {
        let same = (&a[k] - &b[k]).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(same.to_scalar::<f32>().unwrap(), 0.0, "{k} changed");
    }

    // A checkpoint without its scratch tower (as fine-tuning wrote them before) is refused in
    // words, not by a failed download of a backbone named `scratch`.
    let (cfg, _) = native::load::load_tensors(&tuned, None, &Device::Cpu).unwrap();
    let towerless: std::collections::BTreeMap<String, candle_core::Tensor> = b
        .into_iter()
        .filter(|(k, _)| !k.starts_with("vision_encoder.") && !k.starts_with("optimizer."))
        .collect();
    let broken = tmp.path().join("towerless.safetensors");
    native::train::checkpoint::save(&broken, &cfg, &towerless, None, None).unwrap();
    let err = native(&[
        "export",
        "--checkpoint",
        broken.to_str().unwrap(),
        "--out",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(err.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(
        msg.contains("lacks the weights of a backbone trained from scratch"),
        "{msg}"
    );
}
