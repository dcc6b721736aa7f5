//! The trainer's datasets and batching, as the original project has them.
//!
//! - Loaders turn a caption file into [`Sample`]s: COCO captions ([`load_coco`]), MLSLT sign
//!   language videos ([`load_mlslt`]) and a JSON Lines list of images and videos
//!   ([`load_jsonl`]). Entries whose file is missing are skipped at load time and recorded in
//!   [`Dataset::skipped`]; a malformed file is an error naming it with line and column.
//! - [`BatchBuilder`] decodes and preprocesses the visuals of a batch (images with the CLIP
//!   preprocessing, videos through `ffmpeg`, see [`decode_video`]) and tokenises one caption
//!   per sample. Samples whose content cannot be decoded are skipped and reported, so an epoch
//!   never stops on one bad file.
//! - [`epoch_order`], [`caption_index`] and [`Loader`] make the data order and the caption
//!   choice a pure function of (seed, epoch, index), so a resumed run sees the same batches.
//! - [`coco_download`] gets COCO 2017 into the layout the original's setup script makes
//!   (`native data coco`).

mod batch;
mod coco;
pub mod coco_download;
pub mod feature_cache;
mod fetch;
mod json;
mod jsonl;
mod loader;
mod mlslt;
mod order;
mod probe;
mod sampled;
mod video;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use batch::{Batch, BatchBuilder};
pub use coco::{load_coco, parse_coco, MAX_CAPTIONS_PER_IMAGE};
pub use jsonl::{load_jsonl, parse_jsonl};
pub use loader::{EpochBatches, LoadedBatch, Loader};
pub use mlslt::{load_mlslt, parse_mlslt, SIGN_LANGUAGES};
pub use order::{caption_index, epoch_order, step_seed};
pub use probe::{probe_timeline, probe_video, FfmpegMissing, Timeline, VideoInfo};
pub use sampled::{decode_sampled, SampledVideo};
pub use video::{decode_video, decode_video_frames, sample_indices, DecodedVideo};

/// Where a sample's pixels come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visual {
    /// A still image (JPEG, PNG, WebP or GIF, first frame): one frame.
    Image(PathBuf),
    /// A video decoded with `ffmpeg`: one frame per decoded video frame.
    Video {
        /// The video file.
        path: PathBuf,
    },
}

impl Visual {
    /// The file holding the pixels.
    pub fn path(&self) -> &Path {
        match self {
            Visual::Image(path) | Visual::Video { path } => path,
        }
    }
}

/// One training example: a visual and its reference captions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The image or video.
    pub visual: Visual,
    /// Reference captions, at least one; training draws one per step.
    pub captions: Vec<String>,
    /// Identifier for logs: the COCO image id, `<id>/<lang>` for MLSLT, the path for JSONL.
    pub id: String,
}

/// An entry left out of a dataset or a batch, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// What was skipped: a sample id, or an entry of the caption file.
    pub entry: String,
    /// Why, in plain words (the file and the decoder's message).
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.entry, self.reason)
    }
}

/// Samples of one split, with the entries skipped while loading it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dataset {
    /// Usable samples, in caption-file order.
    pub samples: Vec<Sample>,
    /// Entries left out at load time (missing file, no caption, ...).
    pub skipped: Vec<Skipped>,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// A one-line count of skipped entries followed by the first `max_listed` of them, one per
/// line, for warnings; empty when nothing was skipped.
pub fn skipped_summary(skipped: &[Skipped], max_listed: usize) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let mut out = format!("{} entries skipped", skipped.len());
    for s in skipped.iter().take(max_listed) {
        out.push_str(&format!("\n  {s}"));
    }
    if skipped.len() > max_listed {
        out.push_str(&format!("\n  ... and {} more", skipped.len() - max_listed));
    }
    out
}

/// The caption-file formats, named as in the config's `dataset.name` (plus `jsonl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetFormat {
    /// COCO captions JSON + an image folder.
    Coco,
    /// MLSLT JSON + `<visual_dir>/<id>/<lang>.mp4` videos.
    Mlslt,
    /// JSON Lines of `{"image"|"video": path, "caption": ...}`, paths relative to the file.
    Jsonl,
}

impl FromStr for DatasetFormat {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "coco" => Ok(DatasetFormat::Coco),
            "mlslt" => Ok(DatasetFormat::Mlslt),
            "jsonl" => Ok(DatasetFormat::Jsonl),
            _ => anyhow::bail!("unknown dataset name `{s}` (expected coco, mlslt or jsonl)"),
        }
    }
}

/// Loads a split in `format`: `json_path` is the caption file, `visual_dir` the image or
/// video folder (unused for JSONL, whose paths are relative to the file), `sign_languages`
/// the MLSLT language filter (unused otherwise).
pub fn load_dataset(
    format: DatasetFormat,
    json_path: &Path,
    visual_dir: &Path,
    sign_languages: &[String],
) -> anyhow::Result<Dataset> {
    match format {
        DatasetFormat::Coco => load_coco(json_path, visual_dir),
        DatasetFormat::Mlslt => load_mlslt(json_path, visual_dir, sign_languages),
        DatasetFormat::Jsonl => load_jsonl(json_path),
    }
}

/// [`load_dataset`] of the caption file's contents `bytes` (`json_path` is named in errors and,
/// for JSONL, is where relative paths point). Visual files are still looked up on disk.
pub fn parse_dataset(
    format: DatasetFormat,
    bytes: &[u8],
    json_path: &Path,
    visual_dir: &Path,
    sign_languages: &[String],
) -> anyhow::Result<Dataset> {
    match format {
        DatasetFormat::Coco => parse_coco(bytes, json_path, visual_dir),
        DatasetFormat::Mlslt => parse_mlslt(bytes, json_path, visual_dir, sign_languages),
        DatasetFormat::Jsonl => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text: {e}", json_path.display()))?;
            parse_jsonl(text, json_path)
        }
    }
}

/// `None` when `path` is a readable regular file, otherwise why it cannot be used.
fn missing_reason(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(_) => Some(format!("{} is not a regular file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("missing file {}", path.display()))
        }
        Err(e) => Some(format!("cannot access {}: {e}", path.display())),
    }
}
