//! Datasets and batching over the shared fixture images: COCO, caption choice, epoch order,
//! unusual and broken images.

mod common;

use std::path::{Path, PathBuf};

use candle_core::IndexOp;
use caption_model::preprocess::{preprocess_bytes, PreprocessConfig};
use caption_model::tokenizer::Tokenizer;
use common::batches::*;
use native::data::{caption_index, epoch_order, load_coco, load_jsonl, Loader, Visual};
use serde_json::json;

fn coco_fixture(dir: &Path) -> PathBuf {
    let img = dir.join("train2017");
    for (rel, name) in [
        ("images/astronaut.png", "astronaut.png"),
        ("images/chelsea.png", "chelsea.png"),
        ("images/camera.png", "camera.png"),
        ("images/rocket.jpg", "rocket.jpg"),
        ("images/bad/not_an_image.jpg", "corrupt.jpg"),
        ("images/bad/truncated_china_40pct.jpg", "truncated.jpg"),
    ] {
        copy(rel, &img.join(name));
    }
    let files = [
        "astronaut.png",
        "chelsea.png",
        "missing.jpg",
        "corrupt.jpg",
        "truncated.jpg",
    ];
    let mut images: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, f)| json!({"id": i + 1, "file_name": f}))
        .collect();
    images.push(json!({"id": 6, "file_name": "camera.png", "height": 512}));
    images.push(json!({"id": 7, "file_name": "rocket.jpg"})); // no caption
    let mut annotations: Vec<_> = (0..7)
        .map(|k| json!({"image_id": 1, "id": k, "caption": format!("astronaut {k}")}))
        .collect();
    for id in 2..=6 {
        annotations.push(json!({"image_id": id, "caption": format!("a picture number {id}")}));
    }
    annotations.push(json!({"image_id": 6, "caption": "a man with a camera on a tripod"}));
    annotations.push(json!({"image_id": 99, "caption": "orphan"}));
    let json = dir.join("train2017.json");
    write_json(
        &json,
        &json!({"info": {}, "images": images, "annotations": annotations}),
    );
    json
}

#[test]
fn coco_loads_skips_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let json = coco_fixture(dir.path());
    let ds = load_coco(&json, &dir.path().join("train2017")).unwrap();
    assert_eq!(ids(&ds), ["1", "2", "4", "5", "6"]);
    let first: Vec<String> = (0..5).map(|k| format!("astronaut {k}")).collect();
    assert_eq!(ds.samples[0].captions, first, "first 5 captions in file order");
    assert_eq!(ds.samples[4].captions.len(), 2);
    assert!(ds
        .samples
        .iter()
        .all(|s| matches!(&s.visual, Visual::Image(p) if p.is_file())));
    assert_eq!(ds.skipped.len(), 3, "{:?}", ds.skipped);
    assert!(ds.skipped[0].entry.contains("missing.jpg") && ds.skipped[0].reason.contains("missing file"));
    assert!(ds.skipped[1].entry.contains("rocket.jpg") && ds.skipped[1].reason.contains("no caption"));
    assert!(ds.skipped[2].entry.contains("99"));

    let tok = Tokenizer::gpt2().unwrap();
    let b = builder();
    let picks = [3, 0, 0, 0, 1];
    let (batch, skipped) = build_all(&b, &ds, &picks);
    let batch = batch.unwrap();
    // not_an_image.jpg fails at batch time; the truncated JPEG decodes partly (the model
    // crate's decoder keeps the rows it has) and is kept.
    assert_eq!(skipped_entries(&skipped), ["4"]);
    assert!(
        skipped[0].reason.contains("not a recognised image format"),
        "{}",
        skipped[0].reason
    );
    assert_eq!(batch.ids, ["1", "2", "5", "6"]);
    assert_eq!(batch.kept, [0, 1, 3, 4]);
    assert_eq!(batch.captions[0], "astronaut 3");
    assert_eq!(batch.captions[3], "a man with a camera on a tripod");
    assert_eq!(batch.video.dims(), &[4, 1, 3, SIZE, SIZE]);
    assert_eq!(batch.lengths, [1, 1, 1, 1]);
    check_text_and_masks(&batch, &tok);
    let pre = PreprocessConfig::for_image_size(SIZE);
    let want = preprocess_bytes(&std::fs::read(fixture("images/camera.png")).unwrap(), &pre).unwrap();
    let got = batch
        .video
        .i((3, 0))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(got, want);

    // Truncation keeps bos ... eos.
    let short = b
        .clone()
        .with_max_tokens(Some(4))
        .caption_tokens("a man with a camera")
        .unwrap();
    let full = tok.encode_caption("a man with a camera").unwrap();
    assert_eq!(short, [full[0], full[1], full[2], tok.eos()]);
}

#[test]
fn caption_choice_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let ds = load_coco(&coco_fixture(dir.path()), &dir.path().join("train2017")).unwrap();
    let b = builder();
    let picks = |seed| -> Vec<Vec<usize>> {
        let loader = Loader::new(&ds, &b, 2, seed, true).unwrap();
        (0..20)
            .map(|e| (0..ds.len()).map(|i| loader.caption_pick(e, i)).collect())
            .collect()
    };
    assert_eq!(picks(1), picks(1));
    assert_ne!(picks(1), picks(2));
    let all = picks(1);
    assert!(all.iter().all(|p| p[0] < 5 && p[1] == 0 && p[4] < 2));
    assert!(
        (0..5).all(|k| all.iter().any(|p| p[0] == k)),
        "every caption of image 1 is drawn"
    );
    assert_eq!(caption_index(1, 3, 0, 5), all[3][0]);
}

#[test]
fn epoch_order_is_a_reproducible_permutation_and_resume_matches() {
    for n in [0, 1, 2, 10, 1000] {
        let mut o = epoch_order(n, 42, 0);
        assert_eq!(o, epoch_order(n, 42, 0));
        o.sort_unstable();
        assert_eq!(o, (0..n).collect::<Vec<_>>());
    }
    assert_ne!(epoch_order(1000, 42, 0), epoch_order(1000, 42, 1));
    assert_ne!(epoch_order(1000, 42, 0), epoch_order(1000, 43, 0));

    let dir = tempfile::tempdir().unwrap();
    let ds = load_coco(&coco_fixture(dir.path()), &dir.path().join("train2017")).unwrap();
    let b = builder();
    let loader = Loader::new(&ds, &b, 2, 7, true).unwrap();
    assert_eq!(loader.batches_per_epoch(), 3);
    let full: Vec<_> = loader.epoch(2, 0).map(Result::unwrap).collect();
    let resumed: Vec<_> = loader.epoch(2, 1).map(Result::unwrap).collect();
    assert_eq!(resumed.len(), 2);
    for (a, b) in full[1..].iter().zip(&resumed) {
        assert_eq!((a.index, &a.samples), (b.index, &b.samples));
        assert_eq!(a.skipped, b.skipped);
        // None in both runs when every sample of the batch was skipped.
        let rows = |l: &native::data::LoadedBatch| {
            l.batch
                .as_ref()
                .map(|b| (b.captions.clone(), b.tokens.to_vec2::<u32>().unwrap()))
        };
        assert_eq!(rows(a), rows(b));
    }
    let seen: usize = full.iter().map(|l| l.samples.len()).sum();
    assert_eq!(seen, ds.len());
    let unshuffled = Loader::new(&ds, &b, 2, 7, false).unwrap();
    assert_eq!(unshuffled.order(5), (0..ds.len()).collect::<Vec<_>>());
}

#[test]
fn unusual_images_are_used_and_failing_ones_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "cmyk.jpg",
        "gray16.png",
        "rgb16.png",
        "palette_transparent.png",
        "animated_3frames.gif",
        "coffee_small.webp",
        "one_pixel_1x1.png",
        "truncated_china_40pct.jpg",
        "bad_crc_ihdr.png",
        "empty.jpg",
        "not_an_image.jpg",
        "bomb_30000x30000.png",
    ];
    let mut lines = String::new();
    for name in names {
        copy(&format!("images/bad/{name}"), &dir.path().join("bad").join(name));
        lines.push_str(&format!(
            "{}\n",
            json!({"image": format!("bad/{name}"), "caption": name})
        ));
    }
    std::fs::write(dir.path().join("bad.jsonl"), lines).unwrap();
    let ds = load_jsonl(&dir.path().join("bad.jsonl")).unwrap();
    assert_eq!(ds.len(), names.len());

    let b = builder();
    let loader = Loader::new(&ds, &b, 3, 0, true).unwrap();
    let mut used = Vec::new();
    let mut skipped = Vec::new();
    for step in loader.epoch(0, 0) {
        let step = step.unwrap();
        skipped.extend(step.skipped);
        if let Some(batch) = step.batch {
            check_text_and_masks(&batch, &Tokenizer::gpt2().unwrap());
            used.extend(batch.ids);
        }
    }
    used.sort();
    let mut want: Vec<String> = names[..8].iter().map(|n| format!("bad/{n}")).collect();
    want.sort();
    assert_eq!(used, want);
    let mut bad = skipped_entries(&skipped);
    bad.sort_unstable();
    assert_eq!(
        bad,
        [
            "bad/bad_crc_ihdr.png",
            "bad/bomb_30000x30000.png",
            "bad/empty.jpg",
            "bad/not_an_image.jpg"
        ]
    );
    let bomb = skipped.iter().find(|s| s.entry.contains("bomb")).unwrap();
    assert!(bomb.reason.contains("30000x30000"), "{}", bomb.reason);
}
