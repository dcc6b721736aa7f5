//! `caption --attention-maps DIR`: per captioned file, `<name>.json` (the tokens, their words
//! and a grid per frame) and `<name>.png` (each word's map over the picture as the model saw it,
//! one tile per word, a row of tiles per frame), both written atomically.

use std::collections::HashSet;
use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result};
use caption_model::attention_maps::{
    grid_shape, token_texts, word_maps, Grid, MapMethod, TokenMap, TokenText,
};
use caption_model::preprocess::{preprocess_bytes, preprocess_rgb, PreprocessConfig};
use caption_model::tokenizer::Tokenizer;
use caption_model::CaptionModel;
use image::{ImageFormat, Rgb, RgbImage};
use serde::Serialize;

use crate::caption::{is_video, CaptionResult};
use crate::data::decode_sampled;
use crate::draw::{fill, text, text_width};
use crate::files::write_atomic;

/// Side of a tile in the PNG: the model's picture scaled up by whole pixels to at least this.
const MIN_TILE: u32 = 144;
/// Font scale of the labels.
const LABEL_SCALE: i32 = 2;
/// Height of a label strip under each tile.
const LABEL_H: u32 = 22;
/// Gap between tiles.
const GAP: u32 = 6;
/// Heat colour blended over the picture (strongest at the map's peak).
const HEAT: [f32; 3] = [255.0, 40.0, 0.0];
/// Opacity of the heat colour at the map's peak.
const HEAT_ALPHA: f32 = 0.65;

/// The `<name>.json` written beside each PNG.
#[derive(Debug, Serialize)]
pub struct MapsFile {
    /// The captioned file.
    pub file: String,
    /// Its caption.
    pub caption: String,
    /// How the maps were computed.
    pub method: MapMethod,
    /// Patch rows of every grid.
    pub rows: usize,
    /// Patch columns of every grid.
    pub cols: usize,
    /// Frames (1 for a picture).
    pub frames: usize,
    /// Per caption token (eos left out), in order.
    pub tokens: Vec<TokenEntry>,
}

/// One token of a [`MapsFile`].
#[derive(Debug, Serialize)]
pub struct TokenEntry {
    /// Token id.
    pub id: u32,
    /// The token's text.
    pub text: String,
    /// The word it belongs to.
    pub word: String,
    /// Each frame's share of the token's map (sums to 1).
    pub frame_weights: Vec<f32>,
    /// One grid per frame, `rows × cols` values row-major, each summing to 1.
    pub grids: Vec<Vec<f32>>,
}

/// Where a file's maps went.
#[derive(Debug, Clone, Serialize)]
pub struct MapFiles {
    /// The sheet of maps.
    pub png: String,
    /// The grids.
    pub json: String,
}

/// Output names `<stem>` per file, unique within one run (a second `a.jpg` beside `a.png`
/// becomes `a.jpg`).
pub fn output_names(files: &[String]) -> Vec<String> {
    let mut used = HashSet::new();
    files
        .iter()
        .map(|f| {
            let path = Path::new(f);
            let stem = path
                .file_stem()
                .map_or("input".into(), |s| s.to_string_lossy().into_owned());
            let name = if used.contains(&stem) {
                path.file_name()
                    .map_or(stem.clone(), |s| s.to_string_lossy().into_owned())
            } else {
                stem
            };
            let mut unique = name.clone();
            let mut n = 2;
            while !used.insert(unique.clone()) {
                unique = format!("{name}-{n}");
                n += 1;
            }
            unique
        })
        .collect()
}

/// Writes the maps of every captioned result into `dir` and records the files in each result.
pub fn write_all(
    model: &CaptionModel,
    tokenizer: &Tokenizer,
    results: &mut [CaptionResult],
    method: MapMethod,
    frames: usize,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let names = output_names(&results.iter().map(|r| r.file.clone()).collect::<Vec<_>>());
    for (r, name) in results.iter_mut().zip(names) {
        if r.caption.is_none() {
            continue;
        }
        let files = write_one(model, tokenizer, r, method, frames, dir, &name)
            .with_context(|| format!("attention maps of {}", r.file))?;
        r.maps = Some(files);
    }
    Ok(())
}

/// The preprocessed frames of a captioned file, as the captioner took them.
fn model_frames(file: &Path, pre: &PreprocessConfig, frames: usize) -> Result<Vec<Vec<f32>>> {
    if is_video(file) {
        let video = decode_sampled(file, frames)?;
        return video.frames.iter().map(|f| Ok(preprocess_rgb(f, pre)?)).collect();
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(vec![preprocess_bytes(&bytes, pre)?])
}

/// One file's JSON and PNG.
fn write_one(
    model: &CaptionModel,
    tokenizer: &Tokenizer,
    result: &CaptionResult,
    method: MapMethod,
    frames: usize,
    dir: &Path,
    name: &str,
) -> Result<MapFiles> {
    let pre = PreprocessConfig::for_image_size(model.vision().config().image_size);
    let pixels = model_frames(Path::new(&result.file), &pre, frames)?;
    let eos = model.config().text_config()?.eos_token_id;
    let tokens: Vec<u32> = result.tokens.iter().copied().filter(|&t| t != eos).collect();
    anyhow::ensure!(!tokens.is_empty(), "the caption has no tokens to map");
    let views: Vec<&[f32]> = pixels.iter().map(Vec::as_slice).collect();
    let maps = word_maps(model, &views, &tokens, method)?;
    let texts = token_texts(tokenizer, &tokens)?;
    let (rows, cols) = grid_shape(model.config())?;
    let doc = MapsFile {
        file: result.file.clone(),
        caption: result.caption.clone().unwrap_or_default(),
        method,
        rows,
        cols,
        frames: pixels.len(),
        tokens: maps
            .iter()
            .zip(&texts)
            .map(|(m, t)| TokenEntry {
                id: m.token,
                text: t.text.clone(),
                word: t.word.clone(),
                frame_weights: m.frame_weights.clone(),
                grids: m.frames.iter().map(|g| g.values.clone()).collect(),
            })
            .collect(),
    };
    let json = dir.join(format!("{name}.json"));
    let mut bytes = serde_json::to_vec_pretty(&doc)?;
    bytes.push(b'\n');
    write_atomic(&json, &bytes)?;
    let pictures: Vec<RgbImage> = pixels.iter().map(|p| model_view(p, &pre)).collect();
    let sheet = render_sheet(&pictures, &maps, &texts);
    let png = dir.join(format!("{name}.png"));
    let mut encoded = Vec::new();
    sheet.write_to(&mut Cursor::new(&mut encoded), ImageFormat::Png)?;
    write_atomic(&png, &encoded)?;
    Ok(MapFiles {
        png: png.display().to_string(),
        json: json.display().to_string(),
    })
}

/// The picture the model saw (CHW, normalised) back as RGB.
pub fn model_view(pixels: &[f32], pre: &PreprocessConfig) -> RgbImage {
    let s = pre.image_size;
    RgbImage::from_fn(s as u32, s as u32, |x, y| {
        let at = |c: usize| {
            let v = pixels[(c * s + y as usize) * s + x as usize] * pre.std[c] + pre.mean[c];
            (v * 255.0).round().clamp(0.0, 255.0) as u8
        };
        Rgb([at(0), at(1), at(2)])
    })
}

/// One tile per word and frame: rows of tiles per frame, the word under each tile (the frame's
/// share of the word's map after it for a clip).
pub fn render_sheet(pictures: &[RgbImage], maps: &[TokenMap], texts: &[TokenText]) -> RgbImage {
    let side = pictures.first().map_or(1, |p| p.width()).max(1);
    let zoom = MIN_TILE.div_ceil(side).max(1);
    let tile = side * zoom;
    let cells = maps.len().max(1) as u32;
    let width = cells * (tile + GAP) + GAP;
    let height = pictures.len() as u32 * (tile + LABEL_H + GAP) + GAP;
    let mut sheet = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (f, picture) in pictures.iter().enumerate() {
        let y0 = GAP + f as u32 * (tile + LABEL_H + GAP);
        for (i, (map, t)) in maps.iter().zip(texts).enumerate() {
            let x0 = GAP + i as u32 * (tile + GAP);
            overlay(&mut sheet, picture, &map.frames[f], zoom, (x0, y0));
            let mut label = t.text.clone();
            if pictures.len() > 1 {
                label = format!("{label} {:.0}", 100.0 * map.frame_weights[f]);
            }
            while text_width(&label, LABEL_SCALE) > tile as i32 && label.pop().is_some() {}
            text(
                &mut sheet,
                x0 as i32,
                (y0 + tile + 5) as i32,
                &label,
                Rgb([0, 0, 0]),
                LABEL_SCALE,
            );
        }
    }
    sheet
}

/// Draws `picture` scaled by `zoom` at `at`, each patch cell blended toward the heat colour by
/// its weight relative to the grid's largest, and outlines the peak cell.
fn overlay(sheet: &mut RgbImage, picture: &RgbImage, grid: &Grid, zoom: u32, at: (u32, u32)) {
    let max = grid
        .values
        .iter()
        .copied()
        .fold(0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    let (w, h) = picture.dimensions();
    let cell = |x: u32, y: u32| {
        let r = (y as usize * grid.rows / h as usize).min(grid.rows - 1);
        let c = (x as usize * grid.cols / w as usize).min(grid.cols - 1);
        grid.values[r * grid.cols + c] / max
    };
    for (x, y, p) in picture.enumerate_pixels() {
        let a = HEAT_ALPHA * cell(x, y);
        let px = Rgb(std::array::from_fn(|k| {
            (f32::from(p[k]) * (1.0 - a) + HEAT[k] * a).round() as u8
        }));
        fill(
            sheet,
            (at.0 + x * zoom) as i32,
            (at.1 + y * zoom) as i32,
            zoom as i32,
            zoom as i32,
            px,
        );
    }
    // The peak cell's outline (two pixels, black), so the argmax reads without comparing shades.
    let (r, c) = grid.peak();
    let (x0, x1) = (
        c as u32 * w / grid.cols as u32,
        (c as u32 + 1) * w / grid.cols as u32,
    );
    let (y0, y1) = (
        r as u32 * h / grid.rows as u32,
        (r as u32 + 1) * h / grid.rows as u32,
    );
    let (pw, ph) = (((x1 - x0) * zoom) as i32, ((y1 - y0) * zoom) as i32);
    let (x0, y0) = ((at.0 + x0 * zoom) as i32, (at.1 + y0 * zoom) as i32);
    let black = Rgb([0, 0, 0]);
    fill(sheet, x0, y0, pw, 2, black);
    fill(sheet, x0, y0 + ph - 2, pw, 2, black);
    fill(sheet, x0, y0, 2, ph, black);
    fill(sheet, x0 + pw - 2, y0, 2, ph, black);
}
