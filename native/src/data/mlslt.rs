//! MLSLT (multilingual sign language translation): a JSON list of
//! `{"id", "sign_list": [{"lang", "text"}]}` with videos at `<visual_dir>/<id>/<lang>.mp4`.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use super::json::{parse_json, Id};
use super::{missing_reason, Dataset, Sample, Skipped, Visual};

/// The sign languages of MLSLT, as the original's config lists them.
pub const SIGN_LANGUAGES: [&str; 10] = ["zh", "uk", "ru", "bg", "is", "de", "it", "sv", "lt", "en"];

#[derive(Deserialize)]
struct Item {
    id: Id,
    sign_list: Vec<Sign>,
}

#[derive(Deserialize)]
struct Sign {
    lang: String,
    text: String,
}

/// Loads an MLSLT split: one sample per (item, language) where the language is in `langs`
/// and has an entry in the item's `sign_list`, in file order; the video is
/// `<visual_dir>/<id>/<lang>.mp4`, the caption the item's English (`en`) text whatever the
/// sign language, and the sample id `<id>/<lang>`.
///
/// `langs` must be a non-empty subset of [`SIGN_LANGUAGES`] (an error otherwise). Skipped and
/// recorded: items without an `en` text, and videos whose file is missing. A repeated language
/// within one item gives one sample.
pub fn load_mlslt(json: &Path, visual_dir: &Path, langs: &[String]) -> anyhow::Result<Dataset> {
    check_langs(langs)?;
    let bytes = std::fs::read(json).with_context(|| format!("reading {}", json.display()))?;
    parse_mlslt(&bytes, json, visual_dir, langs)
}

/// [`load_mlslt`] of the caption file's contents `bytes`; `json` is only named in errors.
/// Videos are still looked up in `visual_dir`.
pub fn parse_mlslt(
    bytes: &[u8],
    json: &Path,
    visual_dir: &Path,
    langs: &[String],
) -> anyhow::Result<Dataset> {
    check_langs(langs)?;
    let items: Vec<Item> = parse_json(json, bytes)?;
    let mut ds = Dataset::default();
    for item in items {
        let id = item.id.to_string();
        let Some(english) = item.sign_list.iter().find(|s| s.lang == "en") else {
            ds.skipped.push(Skipped {
                entry: format!("item {id}"),
                reason: "no English (`en`) text in sign_list, so no target caption".into(),
            });
            continue;
        };
        let mut done = HashSet::new();
        for sign in &item.sign_list {
            if !langs.contains(&sign.lang) || !done.insert(sign.lang.as_str()) {
                continue;
            }
            let sample_id = format!("{id}/{}", sign.lang);
            let path = visual_dir.join(&id).join(format!("{}.mp4", sign.lang));
            if let Some(reason) = missing_reason(&path) {
                ds.skipped.push(Skipped {
                    entry: sample_id,
                    reason,
                });
                continue;
            }
            ds.samples.push(Sample {
                visual: Visual::Video { path },
                captions: vec![english.text.clone()],
                id: sample_id,
            });
        }
    }
    Ok(ds)
}

/// `langs` must be a non-empty subset of [`SIGN_LANGUAGES`].
fn check_langs(langs: &[String]) -> anyhow::Result<()> {
    if langs.is_empty() {
        anyhow::bail!(
            "no sign language selected (choose from {})",
            SIGN_LANGUAGES.join(" ")
        );
    }
    if let Some(bad) = langs.iter().find(|l| !SIGN_LANGUAGES.contains(&l.as_str())) {
        anyhow::bail!(
            "unknown sign language `{bad}` (expected some of {})",
            SIGN_LANGUAGES.join(" ")
        );
    }
    Ok(())
}
