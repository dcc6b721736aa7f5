//! `native caption` on videos: the shared time rule picks, from ffprobe's frame timestamps, the
//! frames Chromium shows (measured there), the frames are the dataset decoder's, a video
//! captions as the dataset path captions it when both take the same frames, and damaged
//! clips get one clear error each. Uses the shipped default model (web/model).

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use caption_model::decode::{generate, DecodeOptions, Strategy};
use caption_model::frame_sampling::{media_micros, pick_frames};
use caption_model::preprocess::PreprocessConfig;
use caption_model::Captioner;
use native::data::{decode_sampled, decode_video_frames, probe_timeline, BatchBuilder, Sample, Visual};
use native::load::load_folder_dir;

fn videos(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/videos")).join(name)
}

fn model_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/model"))
}

fn caption_json(args: &[&Path], extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_native"))
        .args([
            "caption",
            "--model",
            model_dir().to_str().unwrap(),
            "--strategy",
            "greedy",
            "--json",
        ])
        .args(extra)
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every frame's timestamp in microseconds, from ffprobe's packet list (independent of
/// `probe_timeline`, which decodes).
fn ffprobe_packet_micros(path: &Path) -> Vec<i64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let mut pts: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| (l.trim().trim_end_matches(',').parse::<f64>().unwrap() * 1e6).round() as i64)
        .collect();
    pts.sort_unstable();
    pts
}

/// Frames Chromium 156 showed after `video.currentTime = (i + 0.5) * duration / count`, found by
/// comparing its canvas with every ffmpeg-decoded frame (ARCHITECTURE.md, "Video frames").
const CHROMIUM: [(&str, usize, &[usize]); 7] = [
    ("testsrc_2s.mp4", 8, &[1, 3, 6, 8, 11, 13, 16, 18]),
    ("testsrc_2s.mp4", 10, &[1, 3, 5, 7, 9, 11, 13, 15, 17, 19]),
    ("testsrc_2s.mp4", 1, &[10]),
    ("bikes.mp4", 8, &[15, 46, 78, 109, 140, 171, 203, 234]),
    ("bikes.mp4", 3, &[41, 125, 208]),
    ("carphone_pristine.mp4", 4, &[14, 44, 74, 105]),
    ("carphone_pristine.mp4", 8, &[7, 22, 37, 52, 67, 82, 97, 112]),
];

#[test]
fn the_rule_picks_the_frames_chromium_shows() {
    if native::data::probe_video(&videos("testsrc_2s.mp4")).is_err() {
        caption_model::test_skip::skip("ffmpeg is not installed");
        return;
    }
    for (clip, count, want) in CHROMIUM {
        let path = videos(clip);
        let timeline = probe_timeline(&path).unwrap();
        assert_eq!(
            timeline.pts_us,
            ffprobe_packet_micros(&path),
            "{clip}: timestamps"
        );
        assert_eq!(Some(timeline.pts_us.len()), timeline.declared, "{clip}");
        let picked = pick_frames(&timeline.pts_us, timeline.duration, count);
        assert_eq!(picked, want, "{clip} x{count}");
        // Each pick's presentation interval holds its (truncated) seek time.
        for (i, &j) in picked.iter().enumerate() {
            let t = media_micros(((i as f64 + 0.5) * timeline.duration) / count as f64);
            assert!(timeline.pts_us[j] <= t, "{clip}: frame {j} starts after {t}");
            assert!(
                timeline.pts_us.get(j + 1).is_none_or(|&next| t < next),
                "{clip}: frame {j} ended before {t}"
            );
        }
    }
}

#[test]
fn sampled_frames_are_the_dataset_decoders_frames() {
    if native::data::probe_video(&videos("testsrc_2s.mp4")).is_err() {
        caption_model::test_skip::skip("ffmpeg is not installed");
        return;
    }
    let path = videos("testsrc_2s.mp4");
    let sampled = decode_sampled(&path, 16).unwrap();
    let all = decode_video_frames(&path, None).unwrap();
    assert_eq!(sampled.frames.len(), 16);
    for (frame, &i) in sampled.frames.iter().zip(&sampled.indices) {
        assert!(
            frame == &all.frames[i],
            "frame {i} differs from the dataset decoder's"
        );
    }
    // More samples than frames repeat frames rather than failing.
    let short = decode_sampled(&path, 40).unwrap();
    assert_eq!(short.frames.len(), 40);
    assert_eq!(short.indices[..4], [0, 0, 1, 1]);
    // Non-square pixels are drawn at the display size, as the page's canvas has them.
    let carphone = decode_sampled(&videos("carphone_pristine.mp4"), 2).unwrap();
    assert_eq!(carphone.frames[0].dimensions(), (193, 144));
}

#[test]
fn a_video_captions_as_the_dataset_path_captions_the_same_frames() {
    if native::data::probe_video(&videos("testsrc_2s.mp4")).is_err() {
        caption_model::test_skip::skip("ffmpeg is not installed");
        return;
    }
    // An 8-frame clip: `--frames 8` takes every frame, as the dataset does without a cap.
    let tmp = tempfile::tempdir().unwrap();
    let clip = tmp.path().join("eight.mp4");
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=0.8:size=96x64:rate=10",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:v", "libx264", "-bitexact"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(made.success());
    let (code, json, stderr) = caption_json(&[&clip], &["--frames", "8", "--max-length", "12"]);
    assert_eq!(code, Some(0), "{stderr}");
    let got = &json[0];
    assert_eq!(got["frame_indices"], serde_json::json!([0, 1, 2, 3, 4, 5, 6, 7]));
    let cli_tokens: Vec<u32> = serde_json::from_value(got["tokens"].clone()).unwrap();

    let folder = load_folder_dir(&model_dir(), &Device::Cpu).unwrap();
    let pre = PreprocessConfig::for_image_size(folder.model.vision().config().image_size);
    let builder = BatchBuilder::new(pre, folder.tokenizer.clone(), Device::Cpu);
    let sample = Sample {
        visual: Visual::Video { path: clip.clone() },
        captions: vec![got["caption"].as_str().unwrap().to_string()],
        id: "eight".into(),
    };
    let (batch, skipped) = builder.build(&[&sample], &[0]).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    let batch = batch.unwrap();
    assert_eq!(batch.lengths, [8]);
    let visual = folder.model.visual(&batch.video, &batch.frame_mask).unwrap();
    let mut captioner = Captioner::new(&folder.model, &visual).unwrap();
    let text = folder.model.config().text_config().unwrap();
    let opts = DecodeOptions {
        strategy: Strategy::Greedy,
        max_length: 12,
        bos: text.bos_token_id,
        eos: text.eos_token_id,
    };
    let want = generate(&mut captioner, &opts).unwrap().remove(0).tokens;
    assert_eq!(cli_tokens, want);
}

#[test]
fn damaged_clips_get_one_clear_error_each_and_folders_mix_images_and_videos() {
    if native::data::probe_video(&videos("testsrc_2s.mp4")).is_err() {
        caption_model::test_skip::skip("ffmpeg is not installed");
        return;
    }
    let truncated = videos("testsrc_2s_truncated.mp4");
    let partial = videos("testsrc_2s_faststart_truncated.mp4");
    let (code, json, stderr) = caption_json(&[&truncated, &partial], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let err = |i: usize| json[i]["error"].as_str().unwrap().to_string();
    assert!(
        err(0).contains("ffprobe cannot open it") && err(0).contains("moov atom not found"),
        "{}",
        err(0)
    );
    assert!(
        err(1).contains("the video is damaged: 1 of its 20 frames decode"),
        "{}",
        err(1)
    );
    assert!(json[1]["caption"].is_null());
    assert!(!err(0).contains('\n') && !err(1).contains('\n'));

    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(videos("testsrc_2s.mp4"), tmp.path().join("b.mp4")).unwrap();
    let image = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/images/horse.png"
    ));
    std::fs::copy(&image, tmp.path().join("a.png")).unwrap();
    std::fs::copy(&image, tmp.path().join("c.png")).unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "not media").unwrap();
    let (code, json, stderr) = caption_json(&[tmp.path()], &["--frames", "4"]);
    assert_eq!(code, Some(0), "{stderr}");
    let files: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[1].ends_with("b.mp4"));
    assert_eq!(json[1]["frame_indices"], serde_json::json!([2, 7, 12, 17]));
    assert_eq!(json[0]["tokens"], json[2]["tokens"], "the same image twice");
    assert!(json[0].get("frame_indices").is_none());
}
