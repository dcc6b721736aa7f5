//! Training curves as PNG (`loss.png`, `lr.png`, `metrics.png`), drawn pixel by pixel with the
//! `image` crate and an embedded 5×7 bitmap font, so no font files are needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::{ImageFormat, Rgb, RgbImage};

use crate::draw::{self, fill};

const WIDTH: u32 = 800;
const HEIGHT: u32 = 500;
/// The plot area: left, top, right and bottom edges in pixels.
const PLOT: (i32, i32, i32, i32) = (100, 56, 764, 440);
/// Image pixels per font pixel; a character cell is 6×8 font pixels.
const SCALE: i32 = 2;
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const TRAIN: Rgb<u8> = Rgb([31, 119, 180]);
const TRAIN_RAW: Rgb<u8> = Rgb([180, 208, 230]);
const VAL: Rgb<u8> = Rgb([255, 127, 14]);
const LR: Rgb<u8> = Rgb([44, 160, 44]);
/// Colours of the lines of `metrics.png`, in the order of the kinds' names.
#[rustfmt::skip]
const PALETTE: [Rgb<u8>; 5] =
    [Rgb([214, 39, 40]), Rgb([31, 119, 180]), Rgb([44, 160, 44]), Rgb([148, 103, 189]), Rgb([140, 86, 75])];

/// The fields of a `metrics.jsonl` line that the plots use (serde_json writes NaN/inf as `null`).
#[derive(serde::Deserialize)]
struct Record {
    kind: String,
    step: u64,
    value: Option<f64>,
    lr: Option<f64>,
}

/// A curve: legend name, colour, whether its points are joined by a line, the size of the square
/// marker drawn on each point (0: none; a lone point gets one anyway) and the `(step, value)`
/// points sorted by step.
struct Series(String, Rgb<u8>, bool, i32, Vec<(f64, f64)>);

/// `(step, value)` points sorted by step.
pub type Curve = Vec<(f64, f64)>;

/// The curve of each kind in a `metrics.jsonl` text, and the learning rate's (malformed lines
/// and non-finite values are skipped).
pub fn read_curves(text: &str) -> (BTreeMap<String, Curve>, Curve) {
    let mut by_kind: BTreeMap<String, Curve> = BTreeMap::new();
    let mut lr = Vec::new();
    let parse = |line: &str| serde_json::from_str::<Record>(line).ok();
    for rec in text.lines().filter_map(parse) {
        let x = rec.step as f64;
        let points = by_kind.entry(rec.kind).or_default();
        points.extend(rec.value.filter(|v| v.is_finite()).map(|v| (x, v)));
        lr.extend(rec.lr.filter(|v| v.is_finite()).map(|v| (x, v)));
    }
    for points in by_kind.values_mut().chain([&mut lr]) {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    lr.dedup_by(|a, b| a.0 == b.0);
    (by_kind, lr)
}

/// Renders `metrics.jsonl` of a run into `loss.png` (train loss, smoothed with an EMA, plus the
/// raw points faint; val loss as markers joined by lines) and `lr.png` (learning rate against
/// step), and, when kinds other than train_loss/val_loss are present (e.g. "bleu4"), `metrics.png`
/// with one line per kind; each written atomically (temp file + rename) into `dir`. Returns the
/// paths written. Malformed lines and non-finite values are skipped.
pub fn plot_run(metrics_jsonl: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(metrics_jsonl)
        .with_context(|| format!("reading {}", metrics_jsonl.display()))?;
    let (mut by_kind, lr) = read_curves(&text);
    let train = by_kind.remove("train_loss").unwrap_or_default();
    let val = by_kind.remove("val_loss").unwrap_or_default();
    // Exponential moving average with a window of about a twentieth of the points.
    let alpha = (20.0 / train.len().max(1) as f64).clamp(0.01, 0.3);
    let mut acc: Option<f64> = None;
    let mut ema = |&(x, v): &(f64, f64)| (x, *acc.insert(acc.map_or(v, |a| a + alpha * (v - a))));
    let smooth = train.iter().map(&mut ema).collect();
    let loss = [
        Series("train loss (raw)".into(), TRAIN_RAW, false, 2, train),
        Series("train loss (ema)".into(), TRAIN, true, 0, smooth),
        Series("val loss".into(), VAL, true, 7, val),
    ];
    let lr = [Series("lr".into(), LR, true, 0, lr)];
    let mut charts = vec![("loss.png", render("training loss", "loss", &loss))];
    charts.push(("lr.png", render("learning rate", "lr", &lr)));
    let mut metrics = Vec::new();
    for ((kind, points), &color) in by_kind.into_iter().zip(PALETTE.iter().cycle()) {
        metrics.push(Series(kind, color, true, 7, points));
    }
    if !metrics.is_empty() {
        charts.push(("metrics.png", render("evaluation metrics", "value", &metrics)));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let save = |(name, img): (&str, RgbImage)| {
        let (path, tmp) = (dir.join(name), dir.join(format!("{name}.tmp")));
        let written = img.save_with_format(&tmp, ImageFormat::Png);
        written.with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming {}", tmp.display()))?;
        Ok(path)
    };
    charts.into_iter().map(save).collect()
}

/// Round ticks from at or below `lo` to at or above `hi`, and their step: the densest step of 1, 2,
/// 2.5 or 5 × 10^k giving 4 to 6 ticks (else the count nearest 5); degenerate ranges give 0 and 1.
fn nice_ticks(lo: f64, hi: f64) -> (f64, Vec<f64>) {
    if !(lo.is_finite() && hi.is_finite() && (hi - lo).is_finite() && hi > lo) {
        return (1.0, vec![0.0, 1.0]);
    }
    let bounds = |s: f64| ((lo / s + 1e-9).floor() as i64, (hi / s - 1e-9).ceil() as i64);
    let count = |s: f64| bounds(s).1 - bounds(s).0 + 1;
    let k0 = ((hi - lo) / 10.0).log10().floor() as i32;
    let steps = (k0..k0 + 3).flat_map(|k| [1.0, 2.0, 2.5, 5.0].map(|m| m * 10f64.powi(k)));
    let fitting = steps.clone().find(|&s| (4..=6).contains(&count(s)));
    let nearest = || steps.min_by_key(|&s| (count(s) - 5).abs());
    let s = fitting.or_else(nearest).unwrap_or(hi - lo);
    let (a, b) = bounds(s);
    (s, (a..=b).map(|i| i as f64 * s).collect())
}

/// Labels for ticks `step` apart: fixed point with the step's decimals (`0.85`), or `2e-3` style
/// when that would need more than three decimals or the values reach a million.
fn tick_labels(step: f64, ticks: &[f64]) -> Vec<String> {
    let round = |v: f64| format!("{v:.9e}").parse::<f64>().unwrap_or(v);
    let step_text = round(step.abs()).to_string();
    let fixed = step_text.split_once('.').map_or(0, |(_, f)| f.len());
    let sci = fixed > 3 || ticks.iter().any(|v| v.abs() >= 1e6);
    let label = |&v: &f64| match () {
        _ if v.abs() < step.abs() * 1e-6 => "0".to_string(),
        _ if sci => format!("{:e}", round(v)),
        _ => format!("{v:.fixed$}"),
    };
    ticks.iter().map(label).collect()
}

/// A linear axis over round ticks covering `values` (padded when they are all equal): its range
/// and labelled ticks.
fn axis(values: impl Iterator<Item = f64>) -> (f64, f64, Vec<(f64, String)>) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    values.for_each(|v| (lo, hi) = (lo.min(v), hi.max(v)));
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    } else if hi - lo <= lo.abs().max(hi.abs()) * 1e-9 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo, hi) = (lo - pad, hi + pad);
    }
    let (step, ticks) = nice_ticks(lo, hi);
    let (lo, hi) = (ticks.first().map_or(lo, |&t| t), ticks.last().map_or(hi, |&t| t));
    let labels = ticks.iter().copied().zip(tick_labels(step, &ticks)).collect();
    (lo, hi, labels)
}

/// Draws one chart: title, axes with ticks, labels and grid, the series and a legend.
fn render(title: &str, y_label: &str, series: &[Series]) -> RgbImage {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, WHITE);
    let (l, t, r, b) = PLOT;
    let all = || series.iter().flat_map(|s| s.4.iter());
    let ((x_lo, x_hi, x_ticks), (y_lo, y_hi, y_ticks)) = (axis(all().map(|p| p.0)), axis(all().map(|p| p.1)));
    // Pixel coordinates, clamped near the plot area (the axes cover all points but degenerate ones).
    let px = |v: f64, lo: f64, hi: f64, a: i32, b: i32| {
        (a as f64 + ((v - lo) / (hi - lo)).clamp(-0.05, 1.05) * (b - a) as f64).round() as i32
    };
    let at = |&(x, y): &(f64, f64)| (px(x, x_lo, x_hi, l, r), px(y, y_lo, y_hi, b, t));
    for (v, s) in &y_ticks {
        let y = px(*v, y_lo, y_hi, b, t);
        fill(&mut img, l, y, r - l, 1, GRID);
        fill(&mut img, l - 6, y, 6, 2, BLACK);
        text(&mut img, l - 10 - text_width(s), y - 7, s, BLACK);
    }
    for (v, s) in &x_ticks {
        let (x, w) = (px(*v, x_lo, x_hi, l, r), text_width(s));
        fill(&mut img, x, t, 1, b - t, GRID);
        fill(&mut img, x, b, 2, 6, BLACK);
        text(&mut img, (x - w / 2).min(WIDTH as i32 - w - 2), b + 10, s, BLACK);
    }
    fill(&mut img, l - 1, t, 2, b - t + 1, BLACK);
    fill(&mut img, l - 1, b, r - l + 2, 2, BLACK);
    text(&mut img, (WIDTH as i32 - text_width(title)) / 2, 12, title, BLACK);
    text(&mut img, 10, t - 30, y_label, BLACK);
    text(&mut img, (l + r - text_width("step")) / 2, b + 32, "step", BLACK);
    for Series(_, color, joined, marker, points) in series {
        for w in points.windows(2).filter(|_| *joined) {
            line(&mut img, at(&w[0]), at(&w[1]), *color);
        }
        let size = if points.len() == 1 { 7 } else { *marker };
        for (x, y) in points.iter().map(at) {
            fill(&mut img, x - size / 2, y - size / 2, size, size, *color);
        }
    }
    let shown: Vec<&Series> = series.iter().filter(|s| !s.4.is_empty()).collect();
    if shown.is_empty() {
        text(&mut img, (l + r) / 2 - 41, (t + b) / 2 - 7, "no data", BLACK);
        return img;
    }
    // The legend, in a box in the top right corner.
    let w = shown.iter().map(|s| text_width(&s.0)).max().unwrap_or(0) + 46;
    let (x0, y0, h) = (r - w - 10, t + 10, shown.len() as i32 * 22 + 8);
    fill(&mut img, x0 - 1, y0 - 1, w + 2, h + 2, BLACK);
    fill(&mut img, x0, y0, w, h, WHITE);
    for (i, &Series(ref name, color, joined, marker, _)) in shown.into_iter().enumerate() {
        let y = y0 + 6 + i as i32 * 22;
        let sq = if marker > 0 { marker.clamp(4, 6) } else { 0 };
        fill(&mut img, x0 + 6, y + 6, if joined { 20 } else { 0 }, 2, color);
        fill(&mut img, x0 + 16 - sq / 2, y + 7 - sq / 2, sq, sq, color);
        text(&mut img, x0 + 34, y, name, BLACK);
    }
    img
}

/// A 2-pixel-wide line from `(x0, y0)` to `(x1, y1)`.
fn line(img: &mut RgbImage, (x0, y0): (i32, i32), (x1, y1): (i32, i32), c: Rgb<u8>) {
    let n = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
    for i in 0..=n {
        fill(img, x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n, 2, 2, c);
    }
}

/// The width in pixels of `s` drawn by [`text`].
fn text_width(s: &str) -> i32 {
    draw::text_width(s, SCALE)
}

/// Draws `s` with its top-left corner at `(x, y)`; glyphs are 7 × [`SCALE`] pixels tall.
fn text(img: &mut RgbImage, x: i32, y: i32, s: &str, c: Rgb<u8>) {
    draw::text(img, x, y, s, c, SCALE);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &str, step: u64, value: impl std::fmt::Display, lr: f64) -> String {
        format!(r#"{{"kind":"{kind}","step":{step},"epoch":0,"value":{value},"lr":{lr:e}}}"#)
    }

    /// Writes `lines` as `dir/metrics.jsonl` and plots them into `dir/plots`.
    fn plot(dir: &Path, lines: &[String]) -> Vec<PathBuf> {
        std::fs::write(dir.join("metrics.jsonl"), lines.join("\n")).expect("write metrics");
        plot_run(&dir.join("metrics.jsonl"), &dir.join("plots")).expect("plot_run")
    }

    /// Decodes a PNG and checks its size.
    fn open(path: &Path) -> RgbImage {
        let img = image::open(path).expect("decode png").to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        img
    }

    fn count(img: &RgbImage, c: Rgb<u8>) -> usize {
        img.pixels().filter(|p| **p == c).count()
    }

    #[test]
    fn ticks_are_round() {
        let labels = |lo, hi| {
            let (step, ticks) = nice_ticks(lo, hi);
            tick_labels(step, &ticks).join(" ")
        };
        assert_eq!(labels(0.0, 1.0), "0 0.2 0.4 0.6 0.8 1.0");
        assert_eq!(labels(0.0, 1000.0), "0 200 400 600 800 1000");
        assert_eq!(labels(0.83, 0.97), "0.80 0.85 0.90 0.95 1.00");
        assert_eq!(labels(-3.7, 12.2), "-5 0 5 10 15");
        assert_eq!(labels(1e-5, 3e-4), "0 1e-4 2e-4 3e-4");
        assert_eq!(labels(1.1e-4, 2.1e-4), "1e-4 1.25e-4 1.5e-4 1.75e-4 2e-4 2.25e-4");
        assert_eq!(labels(7.0, 9e5), "0 2e5 4e5 6e5 8e5 1e6");
        assert_eq!(labels(f64::NAN, 1.0), "0 1");
    }

    #[test]
    fn plots_curves_where_expected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lr = |step: u64| 1e-3 * (1.0 - step as f64 / 1100.0);
        let loss = |i: u64| 4.0 - 3.0 * i as f64 / 199.0 + if i.is_multiple_of(2) { 0.1 } else { -0.1 };
        let mut lines: Vec<_> = (0..200)
            .map(|i| record("train_loss", i * 5, loss(i), lr(i * 5)))
            .collect();
        for (k, step) in (200..=1000).step_by(200).enumerate() {
            let (val, bleu) = (3.0 - 0.4 * k as f64, 0.1 + 0.02 * k as f64);
            lines.push(record("val_loss", step, val, lr(step)));
            lines.push(record("bleu4", step, bleu, lr(step)));
        }
        lines.extend(["not json", "{\"kind\":1}"].map(String::from));
        lines.push(record("train_loss", 3, "null", 1e-3));
        let paths = plot(dir.path(), &lines);
        assert_eq!(
            paths,
            ["loss.png", "lr.png", "metrics.png"].map(|n| dir.path().join("plots").join(n))
        );
        let files = std::fs::read_dir(dir.path().join("plots")).expect("read_dir");
        assert_eq!(files.count(), 3, "no temporary files are left behind");
        let loss = &open(&paths[0]);
        assert!(count(loss, TRAIN) > 500 && count(loss, TRAIN_RAW) > 100 && count(loss, VAL) > 100);
        // Mean row of the smoothed train loss in columns x0..x1, from row `top` down.
        let mean_row = |x0: u32, x1: u32, top: u32| {
            let column = |x| (top..HEIGHT).filter(move |&y| loss.get_pixel(x, y) == &TRAIN);
            let rows: Vec<u32> = (x0..x1).flat_map(column).collect();
            rows.iter().sum::<u32>() as f64 / rows.len().max(1) as f64
        };
        let (l, t, r, b) = (PLOT.0 as u32, PLOT.1 as u32, PLOT.2 as u32, PLOT.3 as u32);
        let (left, right) = (mean_row(l + 5, l + 60, t), mean_row(r - 120, r - 60, t + 120));
        let upper_third = (t + (b - t) / 3) as f64;
        assert!(left > 0.0 && left < upper_third, "left part at row {left}");
        assert!(right > ((t + b) / 2) as f64, "right part at row {right}");
        assert!(count(&open(&paths[1]), LR) > 500 && count(&open(&paths[2]), PALETTE[0]) > 100);
    }

    #[test]
    fn edge_cases_give_valid_images() {
        let odd = ["null", "1e999", "NaN", "2.0"].map(|v| record("train_loss", 3, v, f64::MAX));
        let flat: Vec<_> = (0..5).map(|i| record("train_loss", i, 0.7, 1e-4)).collect();
        let garbage = ["", "{", "[1]", r#"{"kind":"val_loss","step":-1,"value":1}"#].map(String::from);
        let single = vec![record("train_loss", 7, 2.5, 1e-3)];
        let cases = [vec![], single, odd.to_vec(), flat, garbage.to_vec()];
        let has_train_points = [false, true, true, true, false];
        for (i, (lines, drawn)) in cases.into_iter().zip(has_train_points).enumerate() {
            let dir = tempfile::tempdir().expect("tempdir");
            let paths = plot(dir.path(), &lines);
            assert_eq!(paths.len(), 2, "case {i}");
            assert_eq!(count(&open(&paths[0]), TRAIN) > 0, drawn, "case {i}");
            open(&paths[1]);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(plot_run(&dir.path().join("missing.jsonl"), dir.path()).is_err());
    }
}
