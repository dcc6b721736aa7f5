//! Synthetic dataset files: layouts, determinism, option checks, and the moving-shape clips
//! (rendering, H.264 round trip, MLSLT layout).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::scenes::*;
use image::RgbImage;
use native::synth::{
    clip_captions, encode_mp4, generate_dataset, random_clip, render_clip, Background, Clip, Colour, Motion,
    MovingObject, ShapeKind, SynthOptions, CAPTIONS_PER_IMAGE,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

fn options(out: &Path, images: usize, videos: usize, seed: u64) -> SynthOptions {
    SynthOptions {
        out: out.to_path_buf(),
        train: images,
        val: images.div_ceil(2),
        test: images.div_ceil(2),
        videos_train: videos,
        videos_val: videos.div_ceil(2),
        videos_test: videos.div_ceil(2),
        size: 32,
        frames: 6,
        seed,
    }
}

fn ffmpeg_present() -> bool {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let present = ok("ffmpeg") && ok("ffprobe");
    if !present {
        caption_model::test_skip::skip("ffmpeg/ffprobe not found (apt-get install -y ffmpeg), video checks");
    }
    present
}

/// Every file under `dir`, relative path to bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn dataset_files_parse_and_reference_existing_files() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate_dataset(&options(dir.path(), 6, 0, 1)).unwrap();
    assert_eq!(summary.images, [6, 3, 3]);
    assert_eq!(summary.captions, 12 * CAPTIONS_PER_IMAGE);
    for (split, n) in [("train", 6), ("val", 3), ("test", 3)] {
        let coco = read_json(&dir.path().join(format!("{split}.json")));
        let images = coco["images"].as_array().unwrap();
        let annotations = coco["annotations"].as_array().unwrap();
        assert_eq!(images.len(), n);
        assert_eq!(annotations.len(), n * CAPTIONS_PER_IMAGE);
        let scenes = read_json(&dir.path().join("scenes").join(format!("{split}.json")));
        assert_eq!(scenes.as_array().unwrap().len(), n);
        for (im, record) in images.iter().zip(scenes.as_array().unwrap()) {
            let id = im["id"].as_u64().unwrap();
            let file = dir
                .path()
                .join("images")
                .join(split)
                .join(im["file_name"].as_str().unwrap());
            let png = image::open(&file).unwrap().to_rgb8();
            assert_eq!(png.dimensions(), (32, 32));
            let caps: Vec<&str> = annotations
                .iter()
                .filter(|a| a["image_id"].as_u64() == Some(id))
                .map(|a| a["caption"].as_str().unwrap())
                .collect();
            assert_eq!(caps.len(), CAPTIONS_PER_IMAGE, "image {id}");
            assert_eq!(record["id"], im["id"]);
            let objects = record["scene"]["objects"].as_array().unwrap();
            assert!((1..=3).contains(&objects.len()));
        }
        let ids: Vec<u64> = annotations.iter().map(|a| a["id"].as_u64().unwrap()).collect();
        let unique: std::collections::HashSet<u64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "annotation ids are unique");
        let jsonl = std::fs::read_to_string(dir.path().join(format!("{split}.jsonl"))).unwrap();
        assert_eq!(jsonl.lines().count(), n * CAPTIONS_PER_IMAGE);
        for line in jsonl.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(dir.path().join(v["image"].as_str().unwrap()).is_file(), "{line}");
            assert!(!v["caption"].as_str().unwrap().is_empty());
        }
    }
    assert!(!dir.path().join("videos").exists(), "no clips were asked for");
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_differs() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    generate_dataset(&options(a.path(), 8, 0, 3)).unwrap();
    generate_dataset(&options(b.path(), 8, 0, 3)).unwrap();
    generate_dataset(&options(c.path(), 8, 0, 4)).unwrap();
    let (ta, tb, tc) = (tree(a.path()), tree(b.path()), tree(c.path()));
    assert_eq!(ta.len(), 8 + 4 + 4 + 3 * 3);
    assert!(ta == tb, "same seed, different files");
    assert_eq!(ta.keys().collect::<Vec<_>>(), tc.keys().collect::<Vec<_>>());
    assert_ne!(ta[Path::new("train.json")], tc[Path::new("train.json")]);
    let differing_pngs = ta
        .iter()
        .filter(|(k, v)| k.extension().is_some_and(|e| e == "png") && tc[*k] != **v);
    assert!(differing_pngs.count() >= 8);
}

#[test]
fn a_split_does_not_depend_on_the_size_of_another() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut small = options(a.path(), 2, 0, 9);
    small.val = 3;
    let mut big = small.clone();
    big.out = b.path().to_path_buf();
    big.train = 7;
    generate_dataset(&small).unwrap();
    generate_dataset(&big).unwrap();
    for file in ["val.json", "test.json", "images/val/1000003.png"] {
        assert_eq!(
            std::fs::read(a.path().join(file)).unwrap(),
            std::fs::read(b.path().join(file)).unwrap()
        );
    }
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), 0, 0, 0);
    assert!(generate_dataset(&opts).is_err(), "nothing to do");
    opts.train = 1;
    opts.size = 4;
    assert!(generate_dataset(&opts).is_err(), "too small");
    opts.size = 33;
    opts.videos_train = 1;
    let err = generate_dataset(&opts).unwrap_err().to_string();
    assert!(err.contains("even"), "{err}");
}

/// Centre of the pixels of one colour.
fn centroid(img: &RgbImage, rgb: [u8; 3]) -> (f32, f32, usize) {
    let hits: Vec<(u32, u32)> = img
        .enumerate_pixels()
        .filter(|(_, _, p)| distance(p.0, rgb) < 40.0)
        .map(|(x, y, _)| (x, y))
        .collect();
    let n = hits.len().max(1) as f32;
    let sx: f32 = hits.iter().map(|h| h.0 as f32).sum();
    let sy: f32 = hits.iter().map(|h| h.1 as f32).sum();
    (sx / n, sy / n, hits.len())
}

#[test]
fn clips_move_the_way_their_captions_say() {
    let mut rng = StdRng::seed_from_u64(21);
    let mut checked = 0;
    for _ in 0..200 {
        let clip = random_clip(&mut rng);
        let caps = clip_captions(&clip, &mut rng);
        assert_eq!(caps.len(), CAPTIONS_PER_IMAGE);
        let frames = render_clip(&clip, 64, 8);
        assert_eq!(frames.len(), 8);
        let mut canonical = Vec::new();
        for o in &clip.objects {
            canonical.push(format!(
                "{} {} {}",
                o.colour.name(),
                o.shape.name(),
                o.motion.verb()
            ));
            let (x0, y0, n0) = centroid(&frames[0], o.colour.rgb());
            let (x1, y1, n1) = centroid(&frames[7], o.colour.rgb());
            // Two objects of one colour cannot be told apart by colour: not checked.
            if clip.objects.iter().filter(|p| p.colour == o.colour).count() > 1 {
                continue;
            }
            // An object missing from the first frame would "move" from (0, 0).
            assert!(n0 > 0, "{:?} {:?} is not in the first frame", o.colour, o.shape);
            checked += 1;
            let ok = match o.motion {
                Motion::Left => x1 < x0 - 10.0,
                Motion::Right => x1 > x0 + 10.0,
                Motion::Up => y1 < y0 - 8.0,
                Motion::Down => y1 > y0 + 8.0,
                Motion::Grow => n1 > 3 * n0,
                Motion::Shrink => n0 > 3 * n1,
            };
            assert!(ok, "{:?}: ({x0}, {y0}, {n0}) -> ({x1}, {y1}, {n1})", o.motion);
        }
        for part in canonical {
            assert!(caps[0].contains(&part), "{} lacks {part}", caps[0]);
        }
    }
    assert!(checked > 200, "only {checked} objects had a colour of their own");
}

#[test]
fn encoded_clip_decodes_to_the_rendered_frames() {
    if !ffmpeg_present() {
        return;
    }
    let clip = Clip {
        background: Background::Gray,
        objects: vec![MovingObject {
            shape: ShapeKind::Square,
            colour: Colour::Red,
            motion: Motion::Right,
            start: (0.25, 0.5),
            end: (0.75, 0.5),
            r0: 0.15,
            r1: 0.15,
        }],
    };
    let frames = render_clip(&clip, 48, 5);
    let dir = tempfile::tempdir().unwrap();
    let mp4 = dir.path().join("en.mp4");
    encode_mp4(&frames, 8, &mp4).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&mp4)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let frame_bytes = 48 * 48 * 3;
    assert_eq!(out.stdout.len(), 5 * frame_bytes);
    for (decoded, rendered) in out.stdout.chunks(frame_bytes).zip(&frames) {
        let err: f64 = decoded
            .iter()
            .zip(rendered.as_raw())
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .sum();
        // Near-lossless apart from 4:2:0 chroma at the edges; a channel swap would be far off.
        assert!(
            err / frame_bytes as f64 <= 3.0,
            "mean abs error {}",
            err / frame_bytes as f64
        );
    }
}

fn probe(mp4: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,width,height",
            "-of",
            "json",
        ])
        .arg(mp4)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["streams"][0].clone()
}

#[test]
fn video_dataset_has_the_mlslt_layout_and_requested_frames() {
    if !ffmpeg_present() {
        return;
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = SynthOptions {
        train: 0,
        val: 0,
        test: 0,
        ..options(a.path(), 0, 2, 5)
    };
    let summary = generate_dataset(&opts).unwrap();
    assert_eq!(summary.videos, [2, 1, 1]);
    assert_eq!(summary.images, [0, 0, 0]);
    for (split, n) in [("train", 2), ("val", 1), ("test", 1)] {
        let list = read_json(&a.path().join("videos").join(format!("{split}.json")));
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), n);
        for entry in list {
            let id = entry["id"].as_str().unwrap();
            let signs = entry["sign_list"].as_array().unwrap();
            assert_eq!(signs.len(), CAPTIONS_PER_IMAGE);
            assert!(signs
                .iter()
                .all(|s| s["lang"] == "en" && !s["text"].as_str().unwrap().is_empty()));
            let stream = probe(&a.path().join("videos").join(split).join(id).join("en.mp4"));
            assert_eq!(stream["width"], 32);
            assert_eq!(stream["height"], 32);
            assert_eq!(stream["nb_read_frames"], "6");
        }
        let jsonl = std::fs::read_to_string(a.path().join("videos").join(format!("{split}.jsonl"))).unwrap();
        assert_eq!(jsonl.lines().count(), n * CAPTIONS_PER_IMAGE);
        for line in jsonl.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(
                a.path()
                    .join("videos")
                    .join(v["video"].as_str().unwrap())
                    .is_file(),
                "{line}"
            );
        }
    }
    generate_dataset(&SynthOptions {
        out: b.path().to_path_buf(),
        ..opts
    })
    .unwrap();
    assert!(tree(a.path()) == tree(b.path()), "same seed, different clips");
}
