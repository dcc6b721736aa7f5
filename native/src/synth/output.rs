//! The files a dataset is made of: COCO captions JSON, the MLSLT video list, plain JSONL, and the
//! structured scene descriptions, all written atomically.

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result};
use image::{ImageFormat, RgbImage};
use serde::Serialize;

use super::{Clip, Scene};
use crate::files::write_atomic;

/// Serialises `value` as JSON (one trailing newline) and writes it atomically.
pub(crate) fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Serialises each item as one JSON line and writes the file atomically.
pub(crate) fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let mut bytes = Vec::new();
    for item in items {
        serde_json::to_writer(&mut bytes, item)?;
        bytes.push(b'\n');
    }
    write_atomic(path, &bytes)
}

/// Encodes an image as PNG and writes it atomically.
pub(crate) fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .with_context(|| format!("encoding {}", path.display()))?;
    write_atomic(path, &bytes)
}

/// A COCO `images` entry.
#[derive(Debug, Serialize)]
pub(crate) struct CocoImage {
    pub id: u64,
    /// Relative to the split's image folder.
    pub file_name: String,
    pub width: u32,
    pub height: u32,
}

/// A COCO `annotations` entry.
#[derive(Debug, Serialize)]
pub(crate) struct CocoAnnotation {
    pub id: u64,
    pub image_id: u64,
    pub caption: String,
}

/// A COCO captions file.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Coco {
    pub images: Vec<CocoImage>,
    pub annotations: Vec<CocoAnnotation>,
}

/// One entry of an MLSLT split list (`videos/<split>.json`).
#[derive(Debug, Serialize)]
pub(crate) struct MlsltEntry {
    /// Also the clip's folder name under `videos/<split>/`.
    pub id: String,
    pub sign_list: Vec<MlsltSign>,
}

/// One caption of an MLSLT entry.
#[derive(Debug, Serialize)]
pub(crate) struct MlsltSign {
    pub lang: &'static str,
    pub text: String,
}

/// A plain JSONL line for an image.
#[derive(Debug, Serialize)]
pub(crate) struct ImageLine {
    /// Relative to the JSONL file.
    pub image: String,
    pub caption: String,
}

/// A plain JSONL line for a video.
#[derive(Debug, Serialize)]
pub(crate) struct VideoLine {
    /// Relative to the JSONL file.
    pub video: String,
    pub caption: String,
}

/// The structured description kept next to each image (for tests and attribute-level evaluation).
#[derive(Debug, Serialize)]
pub(crate) struct SceneRecord<'a> {
    pub id: u64,
    pub file_name: &'a str,
    pub scene: &'a Scene,
}

/// The structured description kept next to each clip.
#[derive(Debug, Serialize)]
pub(crate) struct ClipRecord<'a> {
    pub id: &'a str,
    pub clip: &'a Clip,
}
