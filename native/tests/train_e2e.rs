//! End to end on the CPU: a captioner trained from scratch on synthetic scenes captions
//! held-out scenes, and the video variant (frames decoded by ffmpeg, features cached) trains on
//! moving-shape clips and decodes them.
//!
//! The trainer issue asks for greedy BLEU-4 ≥ 0.5 within 5 CPU minutes from scratch; the recipe
//! of `configs/synth.yaml` (frozen random vision tower with cached features, batch 16) gets
//! there, see BENCHMARKS.md for the measured times.

mod common;

use std::path::Path;
use std::time::Instant;

use common::{run_native, synth_train_args};
use native::synth::word_tokenizer::write_word_tokenizer;
use native::synth::{generate_dataset, SynthOptions};

fn synth(dir: &Path, images: [usize; 3], videos: [usize; 3]) {
    let opts = SynthOptions {
        out: dir.to_path_buf(),
        train: images[0],
        val: images[1],
        test: images[2],
        videos_train: videos[0],
        videos_val: videos[1],
        videos_test: videos[2],
        size: 48,
        frames: 6,
        seed: 11,
    };
    generate_dataset(&opts).unwrap();
    write_word_tokenizer(dir).unwrap();
}

/// The test split's scores written by `mode=test`.
fn test_scores(run_dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run_dir.join("test_scores.json")).unwrap()).unwrap()
}

#[test]
fn images_from_scratch_learn_to_caption_held_out_scenes() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, [4000, 100, 200], [0, 0, 0]);
    let exp = tmp.path().join("exp");
    // One thread: candle's pool costs more than it gains on ops this small. The vision tower
    // stays at its random init, frozen (synth.yaml), so its features are computed once.
    let mut args = vec!["--threads".to_string(), "1".into()];
    let extra = ["trainer.epochs=14".to_string()];
    args.extend(synth_train_args(&data, &exp, &extra));
    run_native(&args);
    let trained = started.elapsed().as_secs_f64();
    let last = exp.join("synth/checkpoints/last.safetensors");
    args.push("mode=test".into());
    args.push(format!("pretrained_name={}", last.display()));
    run_native(&args);
    let scores = test_scores(&exp.join("synth"));
    let bleu4 = scores["bleu4"].as_f64().unwrap();
    println!(
        "trained in {trained:.0} s, total {:.0} s; test BLEU-4 {bleu4:.3}, COCO BLEU-4 {:.3}, CIDEr-D {:.3}",
        started.elapsed().as_secs_f64(),
        scores["coco_bleu"][3].as_f64().unwrap(),
        scores["coco_cider"].as_f64().unwrap()
    );
    assert_eq!(scores["n"], 200);
    assert!(bleu4 >= 0.5, "greedy BLEU-4 on held-out scenes is {bleu4}");
}

#[test]
fn videos_from_scratch_train_and_decode() {
    if native::data::probe_video(Path::new("/nonexistent.mp4"))
        .err()
        .is_some_and(|e| e.downcast_ref::<native::data::FfmpegMissing>().is_some())
    {
        panic!("ffmpeg is needed for the video variant (.ci/run installs it)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, [0, 0, 0], [128, 16, 24]);
    let exp = tmp.path().join("exp");
    let d = |p: &str| data.join("videos").join(p).display().to_string();
    let mut args = vec!["--threads".to_string(), "1".into()];
    args.extend(synth_train_args(
        &data,
        &exp,
        &[
            "name=video".into(),
            "dataset.name=mlslt".into(),
            format!("dataset.train_ds.visual_dir={}", d("train")),
            format!("dataset.train_ds.json_path={}", d("train.json")),
            format!("dataset.validation_ds.visual_dir={}", d("val")),
            format!("dataset.validation_ds.json_path={}", d("val.json")),
            format!("dataset.test_ds.visual_dir={}", d("test")),
            format!("dataset.test_ds.json_path={}", d("test.json")),
            // The vision tower is frozen (synth.yaml): each clip is decoded and encoded once,
            // into the feature cache, instead of once per epoch.
            "trainer.epochs=15".into(),
        ],
    ));
    let started = Instant::now();
    run_native(&args);
    let run = exp.join("video");
    let losses = common::logged(&run, "train_loss");
    assert!(losses.len() >= 10, "{losses:?}");
    let first: f64 = losses.values().take(5).sum::<f64>() / 5.0;
    let last: f64 = losses.values().rev().take(5).sum::<f64>() / 5.0;
    args.push("mode=test".into());
    args.push(format!(
        "pretrained_name={}",
        run.join("checkpoints/last.safetensors").display()
    ));
    run_native(&args);
    let scores = test_scores(&run);
    let predictions: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("predictions.json")).unwrap()).unwrap();
    let predictions = predictions.as_array().unwrap();
    println!(
        "video: {} steps in {:.0} s, loss {first:.3} -> {last:.3}; test BLEU-4 {:.3}, BLEU-1 {:.3}; e.g. {:?}",
        losses.len(),
        started.elapsed().as_secs_f64(),
        scores["bleu4"].as_f64().unwrap(),
        scores["bleu1"].as_f64().unwrap(),
        predictions[0]["prediction"]
    );
    assert!(last < 0.5 * first, "the loss fell from {first} to {last} only");
    assert_eq!(predictions.len(), 24);
    for p in predictions {
        assert!(!p["prediction"].as_str().unwrap().is_empty(), "{p}");
    }
}
