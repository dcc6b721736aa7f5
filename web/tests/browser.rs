//! The browser app in a real browser: builds `dist/` with trunk, drives it in headless Chromium
//! (`web/tests/browser.mjs`, playwright-core) and checks, for the shipped default model:
//! - every image of `../shared/images` gets the caption `native caption --model web/model
//!   --strategy greedy --max-length 24` prints for it, and so does a synthetic scene rendered in
//!   the page; beam search (width 3) gives native's beam caption;
//! - a broken file shows an error and the page goes on captioning; every file of
//!   `../shared/images/bad` is refused where native refuses it, else captioned alike;
//! - a video and a picture from the (fake) camera get captions; words appear as generated;
//!   every clip of `../shared/videos` is drawn from the frames native's `caption --frames 8`
//!   takes (within the decoders' colour rounding) and gets its tokens, or is refused in words
//!   where native refuses it;
//! - "copy as alt text" puts the caption on the clipboard; an engine run out of memory is
//!   reported in words and restarted with the same model; a malformed message from the worker
//!   (a missing field) is reported in words, not thrown;
//! - a model folder failing its checksum is refused and the loaded model stays; another model
//!   loads by URL and from a local folder;
//! - the second visit loads the weights from the Cache API (no request for them); with the
//!   server stopped the page still opens and captions; the page makes no request outside its
//!   origin (these checks force the CPU engine, `?backend=cpu`); without a query the page
//!   captions on the WebGPU engine exactly as the CPU engine does, and falls back with a notice
//!   in a browser without WebGPU;
//! - served from a sub-path (`/demo/captioner/`, as a project page), the page loads its model,
//!   registers its service worker there and captions, with no request outside that folder.
//!
//! `page_word_maps_like_native` checks the word maps' switch: off, a caption costs no extra
//! message and shows no word buttons; on, hovering each word of a shipped picture's caption lays
//! its map over the centre square the model saw, with `native caption --attention-maps`'s grid
//! (on the CPU engine and on WebGPU); focus shows a map, blur hides it; a video's word shows its
//! map on the frame it weighs most.
//!
//! A screenshot is left in `target/web-test/screenshot.png`.
//!
//! Needs trunk, wasm-bindgen-cli, Chromium and the npm packages of `web/tests` (`.ci/run`
//! installs them; `web/setup-tools.sh` does it by hand). `CAPTION_SKIP_BROWSER_TESTS=1` skips.
//!
//! `cargo test -p web --release --test browser -- --ignored bench` measures ms per caption
//! (default model and a full-size q4 folder with random weights) instead.
//!
//! `cargo test -p web --release --test browser -- --ignored time_to_interactive --nocapture` measures the page's
//! code size and time to interactive (first, cached and returning visit) instead; with
//! `CAPTION_TTI_BEFORE=<a dist/ built from an older commit>` it times both builds, interleaved.

mod common;

use std::path::{Path, PathBuf};

use caption_model::attention_maps::MapMethod;
use caption_model::decode::{generate, DecodeOptions, StepModel, Strategy};
use caption_model::preprocess::{preprocess_bytes, PreprocessConfig};
use caption_model::{CaptionModel, Captioner};
use serde_json::Value;

/// What the page uses by default (index.html's settings box): greedy, 24 tokens.
const MAX_LENGTH: usize = 24;

fn native_captions(model: &Path, files: &[PathBuf]) -> Vec<Option<String>> {
    native_captions_with(model, files, Strategy::Greedy)
}

/// Mean and largest difference in levels between the RGB frames the page sent for `file` and
/// the frames native decodes for `--frames 8` (same count and size asserted).
fn frame_difference(file: &Path, clip: &Value) -> (f64, u8) {
    let page = std::fs::read(clip["framesFile"].as_str().unwrap()).unwrap();
    let size = clip["frameSize"].as_array().unwrap();
    let (w, h) = (size[0].as_u64().unwrap() as u32, size[1].as_u64().unwrap() as u32);
    let native = native::data::decode_sampled(file, 8).unwrap();
    assert_eq!(
        page.len(),
        native.frames.len() * (w * h * 4) as usize,
        "{}",
        file.display()
    );
    let (mut sum, mut max, mut n) = (0u64, 0u8, 0u64);
    for (frame, rgba) in native.frames.iter().zip(page.chunks_exact((w * h * 4) as usize)) {
        assert_eq!(frame.dimensions(), (w, h), "{}", file.display());
        for (rgb, px) in frame.pixels().zip(rgba.chunks_exact(4)) {
            for (a, b) in rgb.0.iter().zip(px) {
                let d = a.abs_diff(*b);
                (sum, max, n) = (sum + u64::from(d), max.max(d), n + 1);
            }
        }
    }
    (sum as f64 / n as f64, max)
}

/// `native caption --frames 8` on each clip: the token ids joined by commas (as the page's
/// `data-tokens`), or native's error.
fn native_video_tokens(model: &Path, files: &[PathBuf]) -> Vec<Result<String, String>> {
    let device = candle_core::Device::Cpu;
    let (m, tokenizer) = native::load::load_any(model, None, &device).unwrap();
    let tokenizer = tokenizer.unwrap();
    let t = m.config().text_config().unwrap();
    let opts = DecodeOptions {
        strategy: Strategy::Greedy,
        max_length: MAX_LENGTH,
        bos: t.bos_token_id,
        eos: t.eos_token_id,
    };
    native::caption::caption_media(&m, &tokenizer, files, &opts, 1, Some(8), |_| {})
        .unwrap()
        .into_iter()
        .map(|r| match r.error {
            Some(why) => Err(why),
            None => Ok(r.tokens.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
        })
        .collect()
}

fn native_captions_with(model: &Path, files: &[PathBuf], strategy: Strategy) -> Vec<Option<String>> {
    let device = candle_core::Device::Cpu;
    let (m, tokenizer) = native::load::load_any(model, None, &device).unwrap();
    let tokenizer = tokenizer.unwrap();
    let t = m.config().text_config().unwrap();
    let opts = DecodeOptions {
        strategy,
        max_length: MAX_LENGTH,
        bos: t.bos_token_id,
        eos: t.eos_token_id,
    };
    native::caption::caption_files(&m, &tokenizer, files, &opts, 1, |_| {})
        .unwrap()
        .into_iter()
        .map(|r| r.caption)
        .collect()
}

/// The wasm32 (SIMD128) and x86 kernels sum in different orders (q8 block dot products, f32
/// matmuls), so logits differ in their last bits. Captions are asserted equal all the same; the
/// smallest gap between native's best two logits along its caption is printed, and on a
/// mismatch the gap where the two split, so that a failure says whether rounding met a near tie.
/// Records the gap between the best and the second-best logit of row 0 at every step.
struct Gaps<'m> {
    inner: Captioner<'m>,
    gaps: Vec<f32>,
}

impl StepModel for Gaps<'_> {
    fn rows(&self) -> usize {
        self.inner.rows()
    }
    async fn step(&mut self, tokens: &[u32]) -> caption_model::Result<Vec<Vec<f32>>> {
        let logits = self.inner.step(tokens).await?;
        let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
        for &x in &logits[0] {
            if x > a {
                (a, b) = (x, a);
            } else if x > b {
                b = x;
            }
        }
        self.gaps.push(a - b);
        Ok(logits)
    }
    fn select_rows(&mut self, rows: &[usize]) -> caption_model::Result<()> {
        self.inner.select_rows(rows)
    }
}

/// Native greedy tokens of one file (alone in its batch) and the logit gap at each step.
fn native_greedy_gaps(model: &CaptionModel, file: &Path) -> (Vec<u32>, Vec<f32>) {
    let s = model.vision().config().image_size;
    let pre = PreprocessConfig::for_image_size(s);
    let pixels = preprocess_bytes(&std::fs::read(file).unwrap(), &pre).unwrap();
    let device = model.device();
    let video = candle_core::Tensor::from_vec(pixels, (1, 1, 3, s, s), device).unwrap();
    let mask = CaptionModel::frame_mask(&[1], 1, device).unwrap();
    let visual = model.visual(&video, &mask).unwrap();
    let mut gaps = Gaps {
        inner: Captioner::new(model, &visual).unwrap(),
        gaps: Vec::new(),
    };
    let t = model.config().text_config().unwrap();
    let opts = DecodeOptions {
        strategy: Strategy::Greedy,
        max_length: MAX_LENGTH,
        bos: t.bos_token_id,
        eos: t.eos_token_id,
    };
    let tokens = generate(&mut gaps, &opts).unwrap().remove(0).tokens;
    (tokens, gaps.gaps)
}

/// `None` when the page's tokens are native's; otherwise where they split and native's logit
/// gap there.
fn compare_tokens(page: &[u32], native: &[u32], gaps: &[f32]) -> Option<String> {
    if page == native {
        return None;
    }
    let k = page.iter().zip(native).take_while(|(a, b)| a == b).count();
    let gap = gaps.get(k).copied().unwrap_or(f32::INFINITY);
    Some(format!(
        "first difference at token {k}: native's best two logits {gap:.2e} apart"
    ))
}

fn page_tokens(page: &Value) -> Vec<u32> {
    page["tokens"]
        .as_str()
        .unwrap_or("")
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect()
}

#[test]
fn page_captions_like_native() {
    if common::browser_tests_skipped() {
        return;
    }
    let root = common::repo_root();
    let dist = common::build_dist(&root);
    let out = root.join("target/web-test");
    let shared = root.join("../shared");
    let images = shared.join("images");
    let results = common::run_browser(
        &root,
        &[
            "--dist".into(),
            dist.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--images".into(),
            images.display().to_string(),
            "--bad".into(),
            shared.join("images/bad/bad_crc_ihdr.png").display().to_string(),
            "--bad-dir".into(),
            shared.join("images/bad").display().to_string(),
            "--video".into(),
            shared.join("videos/bikes.mp4").display().to_string(),
            "--videos".into(),
            shared.join("videos").display().to_string(),
        ],
    );
    let model = root.join("web/model");

    // First visit: from the network, no error.
    let first = &results["firstVisit"];
    assert_eq!(first["state"], "ready", "{first}");
    assert_eq!(first["source"], "network", "{first}");
    // What the model knows is shown beside it: the manifest's description, word for word.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(root.join("web/model/manifest.json")).unwrap()).unwrap();
    let description = manifest["description"].as_str().unwrap();
    assert!(description.contains("Load another model"), "{description}");
    assert_eq!(first["description"], description, "{first}");

    // Every shipped image, and the scene, captioned as native captions them.
    let pages: Vec<&Value> = results["images"].as_array().unwrap().iter().collect();
    assert_eq!(pages.len(), 9, "the nine photos of ../shared/images");
    let mut files: Vec<PathBuf> = pages
        .iter()
        .map(|p| PathBuf::from(p["file"].as_str().unwrap()))
        .collect();
    files.push(PathBuf::from(results["scene"]["file"].as_str().unwrap()));
    let expected = native_captions(&model, &files);
    let (native_model, _) = native::load::load_any(&model, None, &candle_core::Device::Cpu).unwrap();
    let mut mismatches = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let page = if i < pages.len() {
            pages[i]
        } else {
            &results["scene"]
        };
        assert_eq!(page["state"], "done", "{}: {page}", file.display());
        let got = page["caption"].as_str().unwrap();
        let want = expected[i].as_deref().unwrap();
        let (native_tokens, gaps) = native_greedy_gaps(&native_model, file);
        let closest = gaps.iter().copied().fold(f32::INFINITY, f32::min);
        println!(
            "{}: page {got:?}, native {want:?} (closest logit gap {closest:.2e})",
            file.display()
        );
        match compare_tokens(&page_tokens(page), &native_tokens, &gaps) {
            None => assert_eq!(got, want, "same tokens, different text?"),
            Some(why) => mismatches.push(format!(
                "{}: page {got:?}, native {want:?} ({why})",
                file.display()
            )),
        }
    }
    assert!(
        mismatches.is_empty(),
        "captions differ:\n{}",
        mismatches.join("\n")
    );

    // "Copy as alt text" puts the caption on the clipboard.
    let copied = &results["copied"];
    assert!(!copied["caption"].as_str().unwrap_or("").is_empty(), "{copied}");
    assert_eq!(copied["clipboard"], copied["caption"], "{copied}");
    // A malformed message from the worker (a missing field): said in words, nothing thrown, and
    // the page goes on captioning.
    let malformed = &results["malformed"];
    let words = malformed["error"].as_str().unwrap_or("");
    assert!(
        words.contains("cannot read") && words.contains("missing field `tokens`"),
        "{malformed}"
    );
    assert_eq!(
        malformed["pageErrors"].as_array().unwrap().len(),
        0,
        "{malformed}"
    );
    assert_eq!(
        results["afterMalformed"]["state"], "done",
        "{}",
        results["afterMalformed"]
    );
    assert_eq!(results["afterMalformed"]["caption"], pages[0]["caption"]);
    // Out of memory: the page says it in words, restarts the engine with the same model and
    // captions the next file as before.
    let oom = &results["oom"];
    for key in ["message", "error"] {
        assert!(
            oom[key].as_str().unwrap_or("").contains("ran out of memory"),
            "{oom}"
        );
    }
    assert_eq!(results["afterOom"]["state"], "done", "{}", results["afterOom"]);
    assert_eq!(results["afterOom"]["caption"], pages[0]["caption"]);

    // A broken file: an error in words, and the page keeps working.
    let bad = &results["bad"];
    assert_eq!(bad["state"], "error", "{bad}");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("could not be read as an image"),
        "{bad}"
    );
    assert_eq!(results["afterBad"]["state"], "done", "{}", results["afterBad"]);
    assert_eq!(results["afterBad"]["caption"], pages[0]["caption"]);
    // The odd and broken files of ../shared/images/bad: refused where native refuses them,
    // otherwise captioned as native captions them.
    let odd: Vec<&Value> = results["badFiles"].as_array().unwrap().iter().collect();
    let bad_dir = std::fs::read_dir(shared.join("images/bad")).unwrap().count();
    assert_eq!(odd.len(), bad_dir, "every file of images/bad is tried");
    let odd_files: Vec<PathBuf> = odd
        .iter()
        .map(|p| PathBuf::from(p["file"].as_str().unwrap()))
        .collect();
    for ((page, file), want) in odd
        .iter()
        .zip(&odd_files)
        .zip(native_captions(&model, &odd_files))
    {
        match want {
            Some(want) => assert_eq!(
                page["caption"].as_str(),
                Some(want.as_str()),
                "{}: {page}",
                file.display()
            ),
            None => {
                assert_eq!(page["state"], "error", "{}: {page}", file.display());
                assert!(!page["error"].as_str().unwrap_or("").is_empty(), "{page}");
            }
        }
    }

    // Beam search (width 3) as native's; nucleus sampling gives a caption.
    let beam = &results["beam"];
    let beam_file = PathBuf::from(beam["file"].as_str().unwrap());
    let want = native_captions_with(&model, &[beam_file], Strategy::Beam { width: 3 });
    assert_eq!(beam["caption"].as_str(), want[0].as_deref(), "{beam}");
    assert_eq!(results["nucleus"]["state"], "done", "{}", results["nucleus"]);

    // Words appear as they are generated.
    assert!(pages[0]["partials"].as_u64().unwrap() >= 3, "{}", pages[0]);

    // The camera (Chromium's fake one) gives a picture that gets a caption.
    assert_eq!(results["camera"]["state"], "done", "{}", results["camera"]);

    // A model folder that fails its checksum is refused in words; the loaded model stays.
    let damaged = &results["damaged"];
    assert!(
        damaged["error"].as_str().unwrap().contains("damaged"),
        "{damaged}"
    );
    assert_eq!(damaged["state"], "ready", "{damaged}");
    assert_eq!(results["afterDamaged"]["caption"], pages[0]["caption"]);
    assert!(
        results["byUrl"]["status"].as_str().unwrap().contains("/model/"),
        "{}",
        results["byUrl"]
    );
    // The same folder chosen from disk loads and captions as the first visit did.
    let by_folder = results["byFolder"]["status"].as_str().unwrap_or("");
    assert!(!by_folder.is_empty(), "{}", results["byFolder"]);
    assert_eq!(
        results["afterFolder"]["state"], "done",
        "{}",
        results["afterFolder"]
    );
    assert_eq!(results["afterFolder"]["caption"], pages[0]["caption"]);

    // A video gets a caption, from several frames.
    let video = &results["video"];
    assert_eq!(video["state"], "done", "{video}");
    assert!(!video["caption"].as_str().unwrap().is_empty(), "{video}");
    assert!(
        video["timing"].as_str().unwrap().contains("video frames"),
        "{video}"
    );

    // Every clip: the page draws the frames native's `caption --frames 8` takes (the same
    // instants, by the shared rule; the same size), within the two decoders' colour rounding,
    // and its caption is native's token for token; a clip native refuses, the page refuses in
    // words.
    let clips = results["videos"].as_array().unwrap();
    assert_eq!(clips.len(), 5, "the clips of ../shared/videos");
    let clip_files: Vec<PathBuf> = clips
        .iter()
        .map(|c| PathBuf::from(c["file"].as_str().unwrap()))
        .collect();
    let natives = native_video_tokens(&model, &clip_files);
    for ((clip, native), file) in clips.iter().zip(natives).zip(&clip_files) {
        match native {
            Ok(tokens) => {
                assert_eq!(clip["state"], "done", "{clip}");
                let (mean, max) = frame_difference(file, clip);
                println!(
                    "{}: page frames vs native frames: mean {mean:.2}, max {max} levels; tokens page {} native {tokens}",
                    file.display(),
                    clip["tokens"]
                );
                assert!(mean <= 2.0, "{}: mean difference {mean} levels", file.display());
                assert_eq!(clip["tokens"].as_str().unwrap(), tokens, "{clip}");
            }
            Err(why) => {
                assert!(!why.is_empty());
                assert_eq!(clip["state"], "error", "native refused it ({why}): {clip}");
                let shown = clip["error"].as_str().unwrap();
                assert!(shown.contains("could not be decoded as a video"), "{clip}");
            }
        }
    }

    // Second visit: the weights come from the Cache API.
    let second = &results["secondVisit"];
    assert_eq!(second["state"], "ready", "{second}");
    assert_eq!(second["source"], "cache", "{second}");
    assert_eq!(second["modelRequests"].as_array().unwrap().len(), 0, "{second}");
    assert_eq!(second["caption"], pages[0]["caption"]);

    // Offline (the server stopped): the page opens from its service worker, the model from the
    // Cache API, and it captions.
    let offline = &results["offline"];
    assert_eq!(offline["state"], "ready", "{offline}");
    assert!(
        offline["status"].as_str().unwrap().contains("(offline)"),
        "{offline}"
    );
    assert_eq!(offline["caption"], pages[0]["caption"]);

    // Nothing outside the origin; the WebGPU fallback says so.
    assert_eq!(
        results["outside"].as_array().unwrap().len(),
        0,
        "{}",
        results["outside"]
    );
    // The default page picks the WebGPU engine (SwiftShader, no shader-f16), which gives the CPU
    // engine's captions, token for token, for every shipped image and the scene.
    let gpu = &results["webgpu"];
    assert_eq!(gpu["state"], "ready", "{gpu}");
    assert!(gpu["notice"].is_null(), "{gpu}");
    assert!(gpu["status"].as_str().unwrap_or("").contains("webgpu"), "{gpu}");
    let gpu_pages: Vec<&Value> = gpu["images"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&gpu["scene"]])
        .collect();
    assert_eq!(gpu_pages.len(), files.len());
    for ((got, file), want) in gpu_pages
        .iter()
        .zip(&files)
        .zip(pages.iter().chain([&&results["scene"]]))
    {
        assert_eq!(got["state"], "done", "{}: {got}", file.display());
        assert!(got["timing"].as_str().unwrap_or("").contains("webgpu"), "{got}");
        println!("{}: webgpu {:?}", file.display(), got["caption"]);
        assert_eq!(
            got["tokens"],
            want["tokens"],
            "{}: webgpu {got}, cpu {want}",
            file.display()
        );
    }
    // Without WebGPU the page falls back to the CPU engine and says so.
    let plain = &results["noWebgpu"];
    assert_eq!(plain["state"], "ready", "{plain}");
    assert!(
        plain["notice"].as_str().unwrap_or("").contains("WebGPU"),
        "{plain}"
    );
    // From a sub-path of the site: the same caption, the service worker scoped to that folder,
    // no request outside it.
    let sub = &results["subPath"];
    assert_eq!(sub["state"], "ready", "{sub}");
    assert_eq!(sub["caption"], pages[0]["caption"], "{sub}");
    assert!(
        sub["serviceWorkerScope"]
            .as_str()
            .unwrap_or("")
            .ends_with("/demo/captioner/"),
        "{sub}"
    );
    let requests = sub["requests"].as_array().unwrap();
    assert!(requests.len() > 3, "{sub}");
    assert!(
        requests
            .iter()
            .all(|r| r.as_str().unwrap_or("").starts_with("/demo/captioner/")),
        "{sub}"
    );
    assert!(out.join("screenshot.png").is_file());
    println!("screenshot: {}", out.join("screenshot.png").display());
}

/// `native caption --model <model> --frames 8 --attention-maps <dir>` on `files`: the
/// `<name>.json` of each (the CLI's own code path, `native::maps::write_all`), and each
/// caption's tokens as the page's `data-tokens` (eos included).
fn native_maps(model: &Path, files: &[PathBuf], dir: &Path) -> Vec<(Value, String)> {
    let device = candle_core::Device::Cpu;
    let (m, tokenizer) = native::load::load_any(model, None, &device).unwrap();
    let tokenizer = tokenizer.unwrap();
    let t = m.config().text_config().unwrap();
    let opts = DecodeOptions {
        strategy: Strategy::Greedy,
        max_length: MAX_LENGTH,
        bos: t.bos_token_id,
        eos: t.eos_token_id,
    };
    let mut results =
        native::caption::caption_media(&m, &tokenizer, files, &opts, 1, Some(8), |_| {}).unwrap();
    native::maps::write_all(&m, &tokenizer, &mut results, MapMethod::Rollout, 8, dir).unwrap();
    results
        .iter()
        .map(|r| {
            let json = &r.maps.as_ref().expect("native wrote maps").json;
            let tokens: Vec<String> = r.tokens.iter().map(u32::to_string).collect();
            (
                serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap(),
                tokens.join(","),
            )
        })
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn largest_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// The page's hovered words against native's tokens: the same texts and grid shapes, one
/// cell per patch, each grid within `tolerance` of native's for the frame the page showed
/// (`frame_ok`: whether that frame is right for native's token); returns the largest
/// difference.
fn compare_words(
    what: &str,
    page: &Value,
    native: &Value,
    tolerance: f64,
    frame_ok: impl Fn(&Value, usize) -> bool,
) -> f64 {
    let words = page["words"].as_array().unwrap();
    let tokens = native["tokens"].as_array().unwrap();
    assert_eq!(words.len(), tokens.len(), "{what}: one button per token: {page}");
    let (rows, cols) = (native["rows"].as_u64().unwrap(), native["cols"].as_u64().unwrap());
    let mut worst = 0f64;
    for (k, (word, token)) in words.iter().zip(tokens).enumerate() {
        assert_eq!(word["text"], token["text"], "{what}: word {k}");
        assert_eq!(
            (word["rows"].as_u64(), word["cols"].as_u64()),
            (Some(rows), Some(cols)),
            "{what}: word {k}"
        );
        assert_eq!(word["cells"].as_u64(), Some(rows * cols), "{what}: word {k}");
        let frame = word["frame"].as_u64().unwrap() as usize;
        assert!(
            frame_ok(token, frame),
            "{what}: word {k} shown on frame {frame}, native's frame weights {}",
            token["frame_weights"]
        );
        let d = largest_difference(&floats(&word["grid"]), &floats(&token["grids"][frame]));
        assert!(
            d <= tolerance,
            "{what}: word {k} ({}): grid differs from native's by {d:.2e}: page {}, native {}",
            token["text"],
            word["grid"],
            token["grids"][frame]
        );
        worst = worst.max(d);
        assert!(
            word["label"].as_str().unwrap_or("").contains("looked most at"),
            "{what}: {word}"
        );
    }
    worst
}

/// The overlay lies on the centre square of the picture as displayed (what the model saw).
fn assert_on_centre_square(what: &str, word: &Value) {
    let b = floats(&word["overlayBox"]);
    let m = floats(&word["mediaBox"]);
    let n = floats(&word["natural"]);
    // The picture inside its box (object-fit: contain), then its centre square.
    let scale = (m[2] / n[0]).min(m[3] / n[1]);
    let side = (n[0] * scale).min(n[1] * scale);
    let close = |a: f64, b: f64| (a - b).abs() <= 1.0;
    assert!(
        close(b[2], side) && close(b[3], side),
        "{what}: overlay {b:?} on {m:?} ({n:?})"
    );
    assert!(
        close(b[0] + b[2] / 2.0, m[0] + m[2] / 2.0),
        "{what}: overlay {b:?} on {m:?}"
    );
    assert!(
        close(b[1] + b[3] / 2.0, m[1] + m[3] / 2.0),
        "{what}: overlay {b:?} on {m:?}"
    );
}

fn count(list: &Value, kind: &str) -> usize {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|k| k.as_str() == Some(kind))
        .count()
}

/// Index of the largest value, the first on ties.
fn heaviest(values: &[f64]) -> usize {
    (0..values.len()).fold(0, |best, i| if values[i] > values[best] { i } else { best })
}

#[test]
fn page_word_maps_like_native() {
    if common::browser_tests_skipped() {
        return;
    }
    let root = common::repo_root();
    let dist = common::build_dist(&root);
    let out = root.join("target/web-test/maps");
    let shared = root.join("../shared");
    // Not square (451×300): the overlay must sit on the centre square the model saw.
    let image = shared.join("images/chelsea.png");
    let video = shared.join("videos/testsrc_2s.mp4");
    let results = common::run_browser(
        &root,
        &[
            "--dist".into(),
            dist.display().to_string(),
            "--out".into(),
            out.display().to_string(),
            "--skip-checks".into(),
            "--maps-image".into(),
            image.display().to_string(),
            "--maps-video".into(),
            video.display().to_string(),
        ],
    );
    let native = native_maps(
        &root.join("web/model"),
        &[image.clone(), video.clone()],
        &out.join("native"),
    );
    let ((native_image, image_tokens), (native_video, video_tokens)) = (&native[0], &native[1]);
    let mapped = native_image["tokens"].as_array().unwrap().len();
    for engine in ["cpu", "webgpu"] {
        let r = &results["maps"][engine];
        assert!(
            r["status"].as_str().unwrap_or("").contains(engine),
            "{engine}: {}",
            r["status"]
        );
        // Off: the caption alone, no map asked for, no word buttons.
        let off = &r["off"];
        assert_eq!(off["state"], "done", "{engine}: {off}");
        assert_eq!(off["caption"], native_image["caption"], "{engine}: {off}");
        assert_eq!(off["buttons"], 0, "{engine}: {off}");
        assert_eq!(count(&off["posted"], "caption"), 1, "{engine}: {off}");
        assert_eq!(count(&off["posted"], "wordMaps"), 0, "{engine}: {off}");
        // On: one request for the maps; the same text, one button per token.
        let on = &r["on"];
        assert_eq!(count(&on["posted"], "wordMaps"), 1, "{engine}: {on}");
        assert_eq!(on["caption"], native_image["caption"], "{engine}: {on}");
        assert_eq!(on["tokens"].as_str().unwrap(), image_tokens, "{engine}: {on}");
        assert_eq!(on["buttons"].as_u64(), Some(mapped as u64), "{engine}: {on}");
        // Every word hovered: its grid is native's within rounding (the wasm and x86 kernels sum
        // in different orders), laid over the centre square; leaving hides it.
        let worst = compare_words(engine, &r["hover"], native_image, 1e-4, |_, f| f == 0);
        println!(
            "{engine}: {} words, grids within {worst:.2e} of native's; maps took {} ms",
            mapped, on["mapsMs"]
        );
        for word in r["hover"]["words"].as_array().unwrap() {
            assert_on_centre_square(engine, word);
        }
        assert_eq!(r["hover"]["afterLeave"], false, "{engine}: {}", r["hover"]);
        // The keyboard: focus shows the word's map, blur hides it.
        assert_eq!(r["focused"]["token"], "1", "{engine}: {}", r["focused"]);
        assert_eq!(r["focused"]["afterBlur"], false, "{engine}: {}", r["focused"]);
        // Off again: the plain caption.
        assert_eq!(r["offAgain"]["buttons"], 0, "{engine}: {}", r["offAgain"]);
        // (the CPU page captioned the video last)
        let last = if r["video"].is_null() { on } else { &r["video"] };
        assert_eq!(r["offAgain"]["caption"], last["caption"], "{engine}");
    }
    // A video: each word's map on the frame it weighs most (the video seeks to that frame's
    // time); the page's frames differ from ffmpeg's by the decoders' colour rounding (a mean of
    // at most 2 levels, see `page_captions_like_native`), so the grids are compared more
    // loosely than a picture's (measured 0.006 and 0.015 in two runs).
    let v = &results["maps"]["cpu"]["video"];
    assert_eq!(v["state"], "done", "{v}");
    assert_eq!(v["caption"], native_video["caption"], "{v}");
    assert_eq!(v["tokens"].as_str().unwrap(), video_tokens, "{v}");
    assert_eq!(native_video["frames"], 8);
    // The frame shown is the one the word weighs most; where native's two heaviest frames are
    // within a point of each other, the page's frames (another decoder) may pick either.
    let worst = compare_words("video", v, native_video, 0.05, |t, f| {
        let weights = floats(&t["frame_weights"]);
        f == heaviest(&weights) || weights[heaviest(&weights)] - weights[f] < 0.01
    });
    println!("video: grids within {worst:.2e} of native's");
    let times = floats(&v["frameTimes"]);
    assert_eq!(times.len(), 8, "{v}");
    for word in v["words"].as_array().unwrap() {
        let frame = word["frame"].as_u64().unwrap() as usize;
        let at = word["videoTime"].as_f64().unwrap();
        assert!(
            (at - times[frame]).abs() < 1e-3,
            "the video shows {at} s, frame {frame} is at {} s",
            times[frame]
        );
        assert_on_centre_square("video", word);
        assert!(
            word["label"]
                .as_str()
                .unwrap()
                .contains(&format!("frame {} of 8", frame + 1)),
            "{word}"
        );
    }
}

/// ms per caption in headless Chromium on the CPU engine (wasm, one thread), greedy, 20 tokens,
/// eos never taken; with `CAPTION_BENCH_BEFORE=<an older dist/>` that build too, in rounds.
#[test]
#[ignore = "benchmark: cargo test -p web --release --test browser -- --ignored bench"]
fn bench_ms_per_caption() {
    let root = common::repo_root();
    let dist = common::build_dist(&root);
    let full = root.join("target/web-test/full-size-q4");
    common::random_full_size_folder(&full, caption_model::weights::Quant::Q4);
    let mut args: Vec<String> = vec![
        "--dist".into(),
        dist.display().to_string(),
        "--out".into(),
        root.join("target/web-test/bench").display().to_string(),
        "--images".into(),
        root.join("../shared/images").display().to_string(),
        "--skip-checks".into(),
        "--bench-model".into(),
        full.display().to_string(),
        "--bench-runs".into(),
        "5".into(),
        "--bench-tokens".into(),
        "20".into(),
    ];
    // Another build beside this one (rounds A B B A): `CAPTION_BENCH_BEFORE=<its dist/>`.
    if let Some(before) = std::env::var_os("CAPTION_BENCH_BEFORE") {
        let before = PathBuf::from(before);
        assert!(
            before.join("index.html").is_file(),
            "{}: no index.html",
            before.display()
        );
        args.push("--tti-dists".into());
        args.push(format!("before={},after={}", before.display(), dist.display()));
    }
    let results = common::run_browser(&root, &args);
    println!("{}", serde_json::to_string_pretty(&results["bench"]).unwrap());
}

/// The page's code size (raw and gzip) and its time to interactive in headless Chromium: first
/// visit (fresh profile), cached visit (service worker and Cache API filled) and returning
/// visit (the third), on the CPU engine; the build of `$CAPTION_TTI_BEFORE` too when set, run by run beside this one.
#[test]
#[ignore = "benchmark: cargo test -p web --release --test browser -- --ignored time_to_interactive"]
fn time_to_interactive() {
    let root = common::repo_root();
    let dist = common::build_dist(&root);
    let mut dists = Vec::new();
    if let Some(before) = std::env::var_os("CAPTION_TTI_BEFORE") {
        let before = PathBuf::from(before);
        assert!(
            before.join("index.html").is_file(),
            "{}: no index.html",
            before.display()
        );
        dists.push(format!("before={}", before.display()));
    }
    dists.push(format!("after={}", dist.display()));
    let results = common::run_browser(
        &root,
        &[
            "--out".into(),
            root.join("target/web-test/tti").display().to_string(),
            "--skip-checks".into(),
            "--tti-dists".into(),
            dists.join(","),
            "--tti-runs".into(),
            std::env::var("CAPTION_TTI_RUNS").unwrap_or_else(|_| "7".into()),
        ],
    );
    println!("{}", serde_json::to_string_pretty(&results["tti"]).unwrap());
}
