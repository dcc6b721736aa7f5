//! Datasets and batching over the shared fixture images and videos.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, IndexOp};
use caption_model::preprocess::{preprocess_bytes, PreprocessConfig};
use caption_model::tokenizer::Tokenizer;
use native::data::{
    caption_index, decode_video, decode_video_frames, epoch_order, load_coco, load_jsonl, load_mlslt,
    sample_indices, Batch, BatchBuilder, Dataset, FfmpegMissing, Loader, Sample, Visual,
};
use serde_json::json;

/// Small frames keep the tests quick; the preprocessing itself is tested in the model crate.
const SIZE: usize = 32;

fn fixture(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/")).join(rel)
}

fn copy(rel: &str, to: &Path) {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::copy(fixture(rel), to).unwrap();
}

fn write_json(path: &Path, value: &serde_json::Value) {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

fn builder() -> BatchBuilder {
    let pre = PreprocessConfig::for_image_size(SIZE);
    BatchBuilder::new(pre, Tokenizer::gpt2().unwrap(), Device::Cpu).with_threads(2)
}

fn ids(ds: &Dataset) -> Vec<&str> {
    ds.samples.iter().map(|s| s.id.as_str()).collect()
}

fn skipped_entries(skipped: &[native::data::Skipped]) -> Vec<&str> {
    skipped.iter().map(|s| s.entry.as_str()).collect()
}

fn build_all(b: &BatchBuilder, ds: &Dataset, picks: &[usize]) -> (Option<Batch>, Vec<native::data::Skipped>) {
    let refs: Vec<&Sample> = ds.samples.iter().collect();
    b.build(&refs, picks).unwrap()
}

/// Checks tokens/mask rows against the tokenizer, and the frame mask against `lengths`.
fn check_text_and_masks(batch: &Batch, tok: &Tokenizer) {
    let tokens = batch.tokens.to_vec2::<u32>().unwrap();
    let mask = batch.tokens_mask.to_vec2::<f32>().unwrap();
    let longest = batch
        .captions
        .iter()
        .map(|c| tok.encode_caption(c).unwrap().len())
        .max()
        .unwrap();
    assert_eq!(batch.tokens.dims(), &[batch.ids.len(), longest]);
    for (row, caption) in batch.captions.iter().enumerate() {
        let want = tok.encode_caption(caption).unwrap();
        assert_eq!(&tokens[row][..want.len()], &want[..], "row {row}");
        assert!(
            tokens[row][want.len()..].iter().all(|&t| t == 0),
            "row {row} padding"
        );
        let ones = mask[row].iter().take_while(|&&m| m == 1.0).count();
        assert_eq!(ones, want.len(), "row {row} mask");
        assert!(mask[row][ones..].iter().all(|&m| m == 0.0));
    }
    let t = batch.video.dim(1).unwrap();
    assert_eq!(t, *batch.lengths.iter().max().unwrap());
    let fm = batch.frame_mask.to_vec2::<f32>().unwrap();
    for (row, &len) in batch.lengths.iter().enumerate() {
        let want: Vec<f32> = (0..t).map(|i| if i < len { 1.0 } else { 0.0 }).collect();
        assert_eq!(fm[row], want);
        for f in len..t {
            let pad = batch
                .video
                .i((row, f))
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert!(pad.iter().all(|&v| v == 0.0), "row {row} frame {f} is padding");
        }
    }
}

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

/// An MLSLT split: item a (en: testsrc, de: carphone, zh: carphone), item b (en: decodes one
/// frame then fails, de: cannot be opened), item c (videos missing), item d (no English).
fn mlslt_fixture(dir: &Path) -> PathBuf {
    let v = dir.join("train");
    copy("videos/testsrc_2s.mp4", &v.join("a/en.mp4"));
    copy("videos/carphone_pristine.mp4", &v.join("a/de.mp4"));
    copy("videos/carphone_pristine.mp4", &v.join("a/zh.mp4"));
    copy("videos/testsrc_2s_faststart_truncated.mp4", &v.join("b/en.mp4"));
    copy("videos/testsrc_2s_truncated.mp4", &v.join("b/de.mp4"));
    copy("videos/testsrc_2s.mp4", &v.join("d/de.mp4"));
    let sign = |lang: &str, text: &str| json!({"lang": lang, "text": text});
    let items = json!([
        {"id": "a", "sign_list": [sign("zh", "你好"), sign("de", "Hallo Welt"), sign("en", "hello world")]},
        {"id": "b", "sign_list": [sign("en", "good morning"), sign("de", "Guten Morgen")]},
        {"id": "c", "sign_list": [sign("en", "gone"), sign("de", "weg")]},
        {"id": "d", "sign_list": [sign("de", "nur Deutsch")]},
    ]);
    let json = dir.join("train.json");
    write_json(&json, &items);
    json
}

#[test]
fn mlslt_filters_languages_and_targets_english() {
    let dir = tempfile::tempdir().unwrap();
    let json = mlslt_fixture(dir.path());
    let langs = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let ds = load_mlslt(&json, &dir.path().join("train"), &langs(&["en", "de"])).unwrap();
    assert_eq!(ids(&ds), ["a/de", "a/en", "b/en", "b/de"]);
    assert_eq!(
        ds.samples[0].captions,
        ["hello world"],
        "English target for the German video"
    );
    assert_eq!(ds.samples[3].captions, ["good morning"]);
    assert!(matches!(&ds.samples[0].visual, Visual::Video { path } if path.ends_with("train/a/de.mp4")));
    assert_eq!(skipped_entries(&ds.skipped), ["c/en", "c/de", "item d"]);
    assert!(ds.skipped[0].reason.contains("missing file"));

    let zh = load_mlslt(&json, &dir.path().join("train"), &langs(&["zh"])).unwrap();
    assert_eq!(ids(&zh), ["a/zh"]);
    assert_eq!(zh.samples[0].captions, ["hello world"]);
    let err = load_mlslt(&json, &dir.path().join("train"), &langs(&["fr"])).unwrap_err();
    assert!(err.to_string().contains("unknown sign language `fr`"), "{err}");

    // Every frame (T = 20 for testsrc), the partly decodable video kept with its one frame
    // and a warning, the unopenable one skipped.
    let tok = Tokenizer::gpt2().unwrap();
    let refs = [&ds.samples[1], &ds.samples[2], &ds.samples[3]];
    let (batch, skipped) = builder().build(&refs, &[0, 0, 0]).unwrap();
    let batch = batch.unwrap();
    assert_eq!(batch.ids, ["a/en", "b/en"]);
    assert_eq!(batch.lengths, [20, 1]);
    assert_eq!(batch.video.dims(), &[2, 20, 3, SIZE, SIZE]);
    check_text_and_masks(&batch, &tok);
    assert_eq!(batch.warnings.len(), 1);
    assert!(batch.warnings[0].contains("b/en.mp4") && batch.warnings[0].contains("partly"));
    assert_eq!(skipped_entries(&skipped), ["b/de"]);
    assert!(
        skipped[0].reason.contains("moov atom not found"),
        "{}",
        skipped[0].reason
    );

    // With a frame cap, carphone (120 frames) and testsrc (20) give 6 frames each.
    let capped = builder().with_max_frames(Some(6));
    let (batch, skipped) = build_all(&capped, &ds, &[0, 0, 0, 0]);
    let batch = batch.unwrap();
    assert_eq!(batch.lengths, [6, 6, 1]);
    assert_eq!(skipped.len(), 1);
    check_text_and_masks(&batch, &tok);
}

#[test]
fn video_decoding_counts_samples_and_handles_damage() {
    let testsrc = fixture("videos/testsrc_2s.mp4");
    let all = decode_video(&testsrc, None).unwrap();
    assert_eq!(all.len(), 20);
    assert!(all.iter().all(|f| f.dimensions() == (320, 240)));
    assert_ne!(all[0], all[1], "frames differ (the counter moves)");

    assert_eq!(sample_indices(20, Some(5)), [0, 5, 10, 14, 19]);
    assert_eq!(sample_indices(120, Some(4)), [0, 40, 79, 119]);
    assert_eq!(sample_indices(20, Some(1)), [9]);
    assert_eq!(sample_indices(3, Some(8)), [0, 1, 2]);
    assert_eq!(sample_indices(4, None), [0, 1, 2, 3]);
    let some = decode_video_frames(&testsrc, Some(5)).unwrap();
    assert_eq!(some.indices, [0, 5, 10, 14, 19]);
    assert_eq!(some.declared_frames, Some(20));
    assert!(some.warning.is_none());
    for (frame, &i) in some.frames.iter().zip(&some.indices) {
        assert_eq!(frame, &all[i], "frame {i}");
    }
    // Matroska declares no frame count: sampling counts the frames with ffprobe first.
    let dir = tempfile::tempdir().unwrap();
    let mkv = dir.path().join("testsrc.mkv");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&testsrc)
        .args(["-c", "copy"])
        .arg(&mkv)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(native::data::probe_video(&mkv).unwrap().frames, None);
    let from_mkv = decode_video_frames(&mkv, Some(5)).unwrap();
    assert_eq!(
        (from_mkv.indices, from_mkv.declared_frames),
        (some.indices.clone(), Some(20))
    );
    assert_eq!(from_mkv.frames, some.frames);
    let whole = decode_video_frames(&mkv, None).unwrap();
    assert_eq!((whole.frames.len(), whole.warning), (20, None));

    let carphone = decode_video(&fixture("videos/carphone_pristine.mp4"), None).unwrap();
    assert_eq!(carphone.len(), 120);
    assert_eq!(carphone[0].dimensions(), (176, 144));

    let partial = decode_video_frames(&fixture("videos/testsrc_2s_faststart_truncated.mp4"), None).unwrap();
    assert_eq!(partial.frames.len(), 1);
    assert_eq!(partial.frames[0], all[0]);
    let warning = partial.warning.unwrap();
    assert!(warning.contains("1 decoded, 20 declared"), "{warning}");
    let sampled =
        decode_video_frames(&fixture("videos/testsrc_2s_faststart_truncated.mp4"), Some(5)).unwrap();
    assert_eq!(sampled.indices, [0]);

    let err = decode_video(&fixture("videos/testsrc_2s_truncated.mp4"), None).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("testsrc_2s_truncated.mp4") && msg.contains("moov atom not found"),
        "{msg}"
    );
    assert!(err.downcast_ref::<FfmpegMissing>().is_none());
    assert!(decode_video(&fixture("videos/nope.mp4"), None).is_err());
    assert!(decode_video(&fixture("images/astronaut.png"), Some(2)).is_ok_and(|f| f.len() == 1));
}

/// Runs itself in a child process whose PATH has no ffmpeg, so the error can be observed
/// without touching this process's environment.
#[test]
fn missing_ffmpeg_is_a_clear_error() {
    if std::env::var_os("DATA_TEST_NO_FFMPEG").is_some() {
        let err = decode_video(&fixture("videos/testsrc_2s.mp4"), None).unwrap_err();
        let missing = err
            .downcast_ref::<FfmpegMissing>()
            .expect("an FfmpegMissing error");
        assert_eq!(missing.program, "ffprobe");
        assert!(err.to_string().contains("apt-get install -y ffmpeg"), "{err}");
        let sample = Sample {
            visual: Visual::Video {
                path: fixture("videos/testsrc_2s.mp4"),
            },
            captions: vec!["x".into()],
            id: "x".into(),
        };
        let err = builder().build(&[&sample], &[0]).unwrap_err();
        assert!(
            err.downcast_ref::<FfmpegMissing>().is_some(),
            "a batch stops on it: {err}"
        );
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "missing_ffmpeg_is_a_clear_error",
            "--test-threads",
            "1",
        ])
        .env("DATA_TEST_NO_FFMPEG", "1")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn jsonl_mixes_images_and_videos_and_merges_captions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("set");
    copy("images/astronaut.png", &root.join("img/astronaut.png"));
    copy("images/horse.png", &root.join("horse.png"));
    copy("videos/testsrc_2s.mp4", &root.join("clips/testsrc.mp4"));
    let lines = [
        json!({"image": "img/astronaut.png", "caption": "an astronaut"}),
        json!({"video": "clips/testsrc.mp4", "caption": "colour bars", "extra": 1}),
        json!({"image": "horse.png", "caption": ["a horse", "a black horse"]}),
        json!({"image": "img/astronaut.png", "caption": "a woman in a flight suit"}),
        json!({"image": "img/missing.png", "caption": "gone"}),
    ];
    let mut text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    text.insert(2, String::new());
    std::fs::write(root.join("list.jsonl"), text.join("\n")).unwrap();
    // Paths are relative to the JSONL file, whatever the working directory.
    let ds = load_jsonl(&root.join("list.jsonl")).unwrap();
    assert_eq!(ids(&ds), ["img/astronaut.png", "clips/testsrc.mp4", "horse.png"]);
    assert_eq!(
        ds.samples[0].captions,
        ["an astronaut", "a woman in a flight suit"]
    );
    assert_eq!(ds.samples[2].captions, ["a horse", "a black horse"]);
    assert_eq!(
        ds.samples[0].visual,
        Visual::Image(root.join("img/astronaut.png"))
    );
    assert_eq!(
        ds.samples[1].visual,
        Visual::Video {
            path: root.join("clips/testsrc.mp4")
        }
    );
    assert_eq!(skipped_entries(&ds.skipped), ["img/missing.png"]);

    let tok = Tokenizer::gpt2().unwrap();
    let (batch, skipped) = build_all(&builder().with_max_frames(Some(4)), &ds, &[1, 0, 1]);
    let batch = batch.unwrap();
    assert!(skipped.is_empty());
    assert_eq!(batch.lengths, [1, 4, 1]);
    assert_eq!(
        batch.captions,
        ["a woman in a flight suit", "colour bars", "a black horse"]
    );
    check_text_and_masks(&batch, &tok);

    std::fs::write(
        root.join("both.jsonl"),
        "{\"image\": \"a\", \"video\": \"b\", \"caption\": \"c\"}\n",
    )
    .unwrap();
    let err = load_jsonl(&root.join("both.jsonl")).unwrap_err().to_string();
    assert!(
        err.contains("both.jsonl: line 1") && err.contains("both given"),
        "{err}"
    );
}

#[test]
fn malformed_json_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let coco = dir.path().join("captions.json");
    // Line 4 lacks the comma that should end line 3; the parser stops at column 5.
    let text = "{\n  \"images\": [\n    {\"id\": 1, \"file_name\": \"a.png\"}\n    {\"id\": 2}\n  ]\n}\n";
    std::fs::write(&coco, text).unwrap();
    let err = load_coco(&coco, dir.path()).unwrap_err().to_string();
    assert!(err.contains(&coco.display().to_string()), "{err}");
    assert!(err.contains("invalid JSON at line 4, column 5"), "{err}");
    assert!(!err.contains(" at line 4 column 5"), "no doubled position: {err}");

    // A well-formed file of the wrong shape is reported with its position too.
    std::fs::write(&coco, "{\"images\": [], \"annotations\": [{\"image_id\": 1}]}").unwrap();
    let err = load_coco(&coco, dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("missing field `caption`") && err.contains("line 1, column"),
        "{err}"
    );

    // A byte order mark is tolerated.
    std::fs::write(&coco, b"\xef\xbb\xbf{\"images\": [], \"annotations\": []}").unwrap();
    assert!(load_coco(&coco, dir.path()).unwrap().is_empty());

    let mlslt = dir.path().join("train.json");
    std::fs::write(&mlslt, "[{\"id\": \"a\", \"sign_list\": [}]").unwrap();
    let err = load_mlslt(&mlslt, dir.path(), &["en".to_string()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.json: invalid JSON at line 1, column 28"),
        "{err}"
    );

    let jsonl = dir.path().join("list.jsonl");
    std::fs::write(
        &jsonl,
        "{\"image\": \"a.png\", \"caption\": \"x\"}\n\n{\"image\": \"b.png\" \"caption\": 1}\n",
    )
    .unwrap();
    let err = load_jsonl(&jsonl).unwrap_err().to_string();
    assert!(
        err.contains("list.jsonl: invalid JSON at line 3, column 19"),
        "{err}"
    );
    assert!(load_coco(&dir.path().join("absent.json"), dir.path())
        .unwrap_err()
        .to_string()
        .contains("absent.json"));
}
