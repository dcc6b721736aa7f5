//! `native synth`: a synthetic captioning dataset (rendered shapes and moving-shape clips with
//! templated captions), so the whole pipeline can be trained and tested offline from scratch.
//!
//! Layout under the output folder:
//! - `images/<split>/<id>.png`, `<split>.json` (COCO captions), `<split>.jsonl` (`{"image", "caption"}`
//!   per caption) and `scenes/<split>.json` (the structured scenes);
//! - `videos/<split>/<id>/en.mp4`, `videos/<split>.json` (MLSLT list), `videos/<split>.jsonl`
//!   (`{"video", "caption"}`) and `videos/clips/<split>.json` (the structured clips).
//!
//! Every item is drawn from its own generator seeded from (seed, kind, split, index), so the same
//! seed gives byte-identical files and one split's content does not depend on another's size.

mod ffmpeg;
mod output;
mod splits;
pub mod word_tokenizer;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

// The scenes themselves live in the model crate, shared with the page's "random scene".
pub use caption_model::synth::*;
pub use ffmpeg::{check_ffmpeg, encode_mp4};

/// The split names, in generation order.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];

/// Frame rate the clips are encoded at.
pub const VIDEO_FPS: u32 = 8;

/// Image ids of split `k` start at `k * ID_STRIDE + 1`, so ids are unique across splits and stable
/// when another split's size changes.
pub const ID_STRIDE: u64 = 1_000_000;

/// What to generate and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthOptions {
    /// Output folder (created if missing; existing files of the same names are replaced).
    pub out: PathBuf,
    /// Training images.
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Test images.
    pub test: usize,
    /// Training clips.
    pub videos_train: usize,
    /// Validation clips.
    pub videos_val: usize,
    /// Test clips.
    pub videos_test: usize,
    /// Side of the square images and frames, in pixels.
    pub size: u32,
    /// Frames per clip.
    pub frames: usize,
    /// Seed for everything.
    pub seed: u64,
}

/// What `generate_dataset` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// The output folder.
    pub out: PathBuf,
    /// Images per split (train, val, test).
    pub images: [usize; 3],
    /// Clips per split (train, val, test).
    pub videos: [usize; 3],
    /// Captions written, images and clips together.
    pub captions: usize,
    /// Wall-clock time taken.
    pub elapsed: Duration,
}

impl fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.images;
        let [x, y, z] = self.videos;
        write!(
            f,
            "wrote {a}/{b}/{c} images and {x}/{y}/{z} clips (train/val/test, {} captions) to {} in {:.1}s",
            self.captions,
            self.out.display(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// `synth` arguments: generate a synthetic captioning dataset of shapes (and optional clips).
#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Output folder (created if missing; files of the same names are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Training images.
    #[arg(long, default_value_t = 5000)]
    pub train: usize,
    /// Validation images.
    #[arg(long, default_value_t = 500)]
    pub val: usize,
    /// Test images.
    #[arg(long, default_value_t = 500)]
    pub test: usize,
    /// Training clips (mp4, needs the `ffmpeg` tool when non-zero).
    #[arg(long, default_value_t = 0)]
    pub videos_train: usize,
    /// Validation clips.
    #[arg(long, default_value_t = 0)]
    pub videos_val: usize,
    /// Test clips.
    #[arg(long, default_value_t = 0)]
    pub videos_test: usize,
    /// Side of the square images and frames in pixels (even when clips are made).
    #[arg(long, default_value_t = 48)]
    pub size: u32,
    /// Frames per clip.
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Random seed; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SynthArgs {
    /// The options these arguments describe.
    pub fn options(&self) -> SynthOptions {
        SynthOptions {
            out: self.out.clone(),
            train: self.train,
            val: self.val,
            test: self.test,
            videos_train: self.videos_train,
            videos_val: self.videos_val,
            videos_test: self.videos_test,
            size: self.size,
            frames: self.frames,
            seed: self.seed,
        }
    }
}

/// Generates the dataset described by `opts`; see the module docs for the layout.
pub fn generate_dataset(opts: &SynthOptions) -> Result<SynthSummary> {
    let started = Instant::now();
    let images = [opts.train, opts.val, opts.test];
    let videos = [opts.videos_train, opts.videos_val, opts.videos_test];
    let want_images = images.iter().any(|&n| n > 0);
    let want_videos = videos.iter().any(|&n| n > 0);
    ensure!(
        want_images || want_videos,
        "nothing to generate: every split size is zero"
    );
    ensure!(
        (16..=4096).contains(&opts.size),
        "--size must be within 16..=4096, got {}",
        opts.size
    );
    ensure!(
        images.iter().all(|&n| (n as u64) < ID_STRIDE),
        "at most {} images per split",
        ID_STRIDE - 1
    );
    if want_videos {
        ensure!(
            opts.size.is_multiple_of(2),
            "--size must be even for videos (H.264 4:2:0), got {}",
            opts.size
        );
        ensure!(
            opts.frames >= 2,
            "--frames must be at least 2, got {}",
            opts.frames
        );
        check_ffmpeg()?;
    }
    splits::create_dir(&opts.out)?;
    let total = images.iter().chain(&videos).sum::<usize>() as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut captions = 0;
    if want_images {
        for (k, (split, &n)) in SPLITS.iter().zip(&images).enumerate() {
            bar.set_message(format!("{split} images"));
            captions += splits::write_images(opts, k, split, n, &bar)?;
        }
    }
    if want_videos {
        for (k, (split, &n)) in SPLITS.iter().zip(&videos).enumerate() {
            bar.set_message(format!("{split} clips"));
            captions += splits::write_videos(opts, k, split, n, &bar)?;
        }
    }
    bar.finish_and_clear();
    Ok(SynthSummary {
        out: opts.out.clone(),
        images,
        videos,
        captions,
        elapsed: started.elapsed(),
    })
}
