//! The CLIP feature cache: training from cached features follows the same loss curve as
//! training from pixels, the cache is reused, refilled for changed files, and invalidated
//! when the vision weights change; undecodable files are remembered as bad.

mod common;

use std::path::{Path, PathBuf};

use common::{logged, run_native, synth_images, synth_train_args};

fn args(data: &Path, exp: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "model.vision.trainable=false",
        "dataset.train_ds.batch_size=8",
        "+trainer.max_steps=8",
    ]
    .map(String::from)
    .to_vec();
    v.push(format!("name={name}"));
    v.extend(extra.iter().map(|s| s.to_string()));
    synth_train_args(data, exp, &v)
}

/// Fingerprint folders under the cache root, and the shard files in each.
fn cache_layout(exp: &Path) -> Vec<(String, Vec<String>)> {
    let root = exp.join("feature_cache");
    let mut out: Vec<(String, Vec<String>)> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|dir: PathBuf| {
            let mut shards: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".safetensors"))
                .collect();
            shards.sort();
            (dir.file_name().unwrap().to_string_lossy().into_owned(), shards)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn cached_features_train_like_pixels_and_invalidate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_images(&data, 40, 8, 4, 5);
    // One training image is damaged: both paths must skip it.
    std::fs::write(data.join("images/train/0000003.png"), b"not a png").unwrap();
    let exp = tmp.path().join("exp");

    run_native(&args(&data, &exp, "pixels", &["+trainer.feature_cache=false"]));
    assert!(
        !exp.join("feature_cache").exists(),
        "no cache when it is switched off"
    );
    let out = run_native(&args(&data, &exp, "cached", &[]));
    assert!(
        out.contains("1 unreadable"),
        "the damaged image is counted: {out}"
    );
    let pixels = logged(&exp.join("pixels"), "train_loss");
    let cached = logged(&exp.join("cached"), "train_loss");
    assert_eq!(pixels.len(), 8);
    for (step, a) in &pixels {
        let b = cached[step];
        // The cache holds f16 features; the loss moves by far less than a training step does.
        assert!((a - b).abs() <= 1e-3 * a, "step {step}: pixels {a}, cached {b}");
    }
    // Validation ran after the first epoch: the curves were drawn.
    for png in ["loss.png", "lr.png"] {
        let img = image::open(exp.join("cached").join(png)).unwrap();
        assert_eq!((img.width(), img.height()), (800, 500), "{png}");
    }
    let first = cache_layout(&exp);
    assert_eq!(first.len(), 1, "one fingerprint: {first:?}");
    assert_eq!(first[0].1, ["shard-00000.safetensors"]);
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(exp.join("feature_cache").join(&first[0].0).join("index.json")).unwrap(),
    )
    .unwrap();
    let entries = index["entries"].as_object().unwrap();
    assert_eq!(entries.len(), 48, "40 train + 8 val files");
    let bad: Vec<_> = entries.iter().filter(|(_, e)| e.get("Bad").is_some()).collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0].0.contains("0000003.png"));

    // Same weights and files: reused as is.
    run_native(&args(&data, &exp, "again", &[]));
    assert_eq!(cache_layout(&exp), first);

    // A changed file is encoded again (a second shard), the rest is reused.
    let img = data.join("images/train/0000004.png");
    let copy = std::fs::read(data.join("images/train/0000005.png")).unwrap();
    std::fs::write(&img, copy).unwrap();
    run_native(&args(&data, &exp, "edited", &[]));
    let edited = cache_layout(&exp);
    assert_eq!(edited.len(), 1);
    assert_eq!(
        edited[0].1,
        ["shard-00000.safetensors", "shard-00001.safetensors"]
    );

    // Other vision weights (another init seed): another fingerprint folder.
    run_native(&args(&data, &exp, "reseeded", &["trainer.seed=9"]));
    assert_eq!(cache_layout(&exp).len(), 2);
}
