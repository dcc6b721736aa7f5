//! Datasets and batching over the shared fixture videos: MLSLT, video decoding, ffmpeg
//! missing, JSONL mixing images and videos, malformed JSON.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use caption_model::tokenizer::Tokenizer;
use common::batches::*;
use native::data::{
    decode_video, decode_video_frames, load_coco, load_jsonl, load_mlslt, sample_indices, FfmpegMissing,
    Sample, Visual,
};
use serde_json::json;

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
    assert_eq!(skipped_entries(&skipped), ["b/de"]);
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
    assert_eq!(some.frames.len(), 5);
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
    let missing = format!(
        "{:#}",
        decode_video(&fixture("videos/nope.mp4"), None).unwrap_err()
    );
    assert!(missing.contains("nope.mp4"), "{missing}");
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
