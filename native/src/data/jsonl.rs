//! JSON Lines: `{"image": path, "caption": str}` or `{"video": path, "caption": str}` per line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use super::json::parse_line;
use super::{missing_reason, Dataset, Sample, Skipped, Visual};

#[derive(Deserialize)]
struct Line {
    image: Option<String>,
    video: Option<String>,
    caption: Captions,
}

/// `caption` is one string; a list of strings is accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Captions {
    One(String),
    Many(Vec<String>),
}

/// Loads a JSON Lines file: one object per non-blank line with exactly one of `image` or
/// `video` (a path, relative to the JSONL file's folder unless absolute) and `caption` (a
/// string, or a list of strings); other keys are ignored.
///
/// Lines naming the same file (same kind, same path as written after joining) are merged into
/// one sample holding all their captions in line order, at the position of the first line;
/// the sample id is the path as first written. Files that are missing are skipped and
/// recorded once each. A line that is not valid JSON, lacks `caption`, or names both or
/// neither of `image` and `video` is an error naming the file, line and column.
pub fn load_jsonl(path: &Path) -> anyhow::Result<Dataset> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_jsonl(&text, path)
}

/// [`load_jsonl`] of the file's text; `path` is named in errors and its folder is where
/// relative paths point (files are still looked up there).
pub fn parse_jsonl(text: &str, path: &Path) -> anyhow::Result<Dataset> {
    let base = path.parent().unwrap_or(Path::new(""));
    let mut samples: Vec<Sample> = Vec::new();
    let mut index: HashMap<(bool, PathBuf), usize> = HashMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = parse_line(path, line_no, raw)?;
        let (is_video, rel) = match (line.image, line.video) {
            (Some(p), None) => (false, p),
            (None, Some(p)) => (true, p),
            (image, _) => anyhow::bail!(
                "{}: line {line_no}: needs exactly one of \"image\" and \"video\" ({})",
                path.display(),
                if image.is_some() {
                    "both given"
                } else {
                    "neither given"
                }
            ),
        };
        let captions = match line.caption {
            Captions::One(c) => vec![c],
            Captions::Many(c) => c,
        };
        let full = base.join(&rel);
        let at = *index.entry((is_video, full.clone())).or_insert_with(|| {
            let visual = if is_video {
                Visual::Video { path: full }
            } else {
                Visual::Image(full)
            };
            samples.push(Sample {
                visual,
                captions: Vec::new(),
                id: rel,
            });
            samples.len() - 1
        });
        samples[at].captions.extend(captions);
    }

    let mut ds = Dataset::default();
    for sample in samples {
        let reason = if sample.captions.is_empty() {
            Some("no caption (only empty caption lists)".to_string())
        } else {
            missing_reason(sample.visual.path())
        };
        match reason {
            Some(reason) => ds.skipped.push(Skipped {
                entry: sample.id,
                reason,
            }),
            None => ds.samples.push(sample),
        }
    }
    Ok(ds)
}
