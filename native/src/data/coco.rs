//! COCO captions: `images[]` (`id`, `file_name`) and `annotations[]` (`image_id`, `caption`).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use super::json::{parse_json, Id};
use super::{missing_reason, Dataset, Sample, Skipped, Visual};

/// Captions kept per image: COCO has 5 per image (a few have 6-7); the first 5 in file
/// order are kept, as the original samples from 5.
pub const MAX_CAPTIONS_PER_IMAGE: usize = 5;

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    annotations: Vec<CocoAnnotation>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: Id,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: Id,
    caption: String,
}

/// Loads a COCO captions file with its images in `visual_dir`.
///
/// One sample per entry of `images[]`, in file order, with the first
/// [`MAX_CAPTIONS_PER_IMAGE`] captions of its annotations (in file order) and its id as the
/// sample id. Skipped and recorded: images whose file is missing, images without a caption,
/// repeated image ids (the first is kept) and annotations naming no listed image (one entry
/// per unknown id). A file that is not valid COCO JSON is an error naming line and column.
pub fn load_coco(json: &Path, visual_dir: &Path) -> anyhow::Result<Dataset> {
    let bytes = std::fs::read(json).with_context(|| format!("reading {}", json.display()))?;
    parse_coco(&bytes, json, visual_dir)
}

/// [`load_coco`] of the caption file's contents `bytes`; `json` is only named in errors.
/// Image files are still looked up in `visual_dir`.
pub fn parse_coco(bytes: &[u8], json: &Path, visual_dir: &Path) -> anyhow::Result<Dataset> {
    let file: CocoFile = parse_json(json, bytes)?;
    let mut captions: HashMap<String, Vec<String>> = HashMap::new();
    // Annotation ids in first-seen order, to report unknown ones deterministically.
    let mut annotated: Vec<String> = Vec::new();
    for ann in file.annotations {
        let key = ann.image_id.to_string();
        let list = captions.entry(key.clone()).or_insert_with(|| {
            annotated.push(key);
            Vec::new()
        });
        if list.len() < MAX_CAPTIONS_PER_IMAGE {
            list.push(ann.caption);
        }
    }

    let mut ds = Dataset::default();
    let mut seen: HashSet<String> = HashSet::new();
    for image in file.images {
        let id = image.id.to_string();
        let entry = format!("image {id} ({})", image.file_name);
        if !seen.insert(id.clone()) {
            ds.skipped.push(Skipped {
                entry,
                reason: "repeated image id in images[] (the first entry is used)".into(),
            });
            continue;
        }
        let Some(caps) = captions.remove(&id).filter(|c| !c.is_empty()) else {
            ds.skipped.push(Skipped {
                entry,
                reason: "no caption in annotations[]".into(),
            });
            continue;
        };
        let path = visual_dir.join(&image.file_name);
        if let Some(reason) = missing_reason(&path) {
            ds.skipped.push(Skipped { entry, reason });
            continue;
        }
        ds.samples.push(Sample {
            visual: Visual::Image(path),
            captions: caps,
            id,
        });
    }
    for id in annotated.into_iter().filter(|id| !seen.contains(id)) {
        ds.skipped.push(Skipped {
            entry: format!("annotations for image_id {id}"),
            reason: "no image with this id in images[]".into(),
        });
    }
    Ok(ds)
}
