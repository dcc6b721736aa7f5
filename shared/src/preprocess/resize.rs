//! Bicubic resize, a bit-exact port of Pillow 13's 8-bit resampler (`libImaging/Resample.c`,
//! `Image.resize(size, BICUBIC, reducing_gap=None)`), so the model sees the pixels it was
//! trained on.

use std::ops::Range;

use image::RgbImage;

/// Fixed-point fraction bits of the weights: 8 bits of sample, 2 bits of overshoot headroom.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Half of one fixed-point unit: the accumulator starts here so the final shift rounds.
const HALF: i64 = 1 << (PRECISION_BITS - 1);
/// Bicubic filter support, in source pixels at scale 1.
const SUPPORT: f64 = 2.0;

/// Keys' bicubic kernel with a = -0.5, written in Pillow's operation order so the rounding of
/// every intermediate matches.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point weights for a run of output positions along one axis.
struct Coeffs {
    /// Weights per output position (`ksize` slots each, the first `len` used).
    ksize: usize,
    /// Per output position: first source index and number of source samples.
    bounds: Vec<(usize, usize)>,
    /// `bounds.len() * ksize` fixed-point weights.
    weights: Vec<i64>,
}

impl Coeffs {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the output positions in
    /// `range` of a resize from `in_size` to `out_size` (a position's weights do not depend on
    /// the others, so computing a window gives the same numbers as computing everything).
    fn new(in_size: usize, out_size: usize, range: Range<usize>) -> Self {
        // Pillow passes the box edges as C floats, so the scale is computed from them.
        let scale = f64::from(in_size as f32) / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let mut bounds = Vec::with_capacity(range.len());
        let mut weights = vec![0i64; range.len() * ksize];
        let mut k = vec![0f64; ksize];
        for (slot, xx) in range.enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            // `as` truncates toward zero like C's (int) cast; negatives clamp to 0 anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
            let len = xmax.saturating_sub(xmin).min(ksize);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(len) {
                let w = bicubic(((x + xmin) as f64 - center + 0.5) * ss);
                *kx = w;
                ww += w;
            }
            let out = &mut weights[slot * ksize..slot * ksize + len];
            for (dst, &w) in out.iter_mut().zip(&k[..len]) {
                let w = if ww != 0.0 { w / ww } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                *dst = if w < 0.0 {
                    (-0.5 + fixed) as i32
                } else {
                    (0.5 + fixed) as i32
                } as i64;
            }
            bounds.push((xmin, len));
        }
        Coeffs {
            ksize,
            bounds,
            weights,
        }
    }

    /// Weights and first source index for the `slot`-th computed output position.
    fn get(&self, slot: usize) -> (usize, &[i64]) {
        let (xmin, len) = self.bounds[slot];
        (xmin, &self.weights[slot * self.ksize..slot * self.ksize + len])
    }
}

/// Pillow's `clip8`: drop the fraction bits (arithmetic shift) and saturate to a byte.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// A read-only RGB rectangle: `w` x `h` pixels starting at pixel `start` of `data`, rows
/// `stride` pixels apart.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [u8],
    start: usize,
    stride: usize,
    w: usize,
    h: usize,
}

impl<'a> View<'a> {
    /// The whole of a packed buffer of `w` x `h` pixels.
    fn packed(data: &'a [u8], w: usize, h: usize) -> Self {
        View {
            data,
            start: 0,
            stride: w,
            w,
            h,
        }
    }

    /// The `cols` x `rows` part of this view.
    fn sub(self, cols: Range<usize>, rows: Range<usize>) -> Self {
        View {
            start: self.start + rows.start * self.stride + cols.start,
            w: cols.len(),
            h: rows.len(),
            ..self
        }
    }

    /// The three samples of pixel (x, y).
    fn px(&self, x: usize, y: usize) -> &'a [u8] {
        let at = (self.start + y * self.stride + x) * 3;
        &self.data[at..at + 3]
    }
}

/// Pillow's `ImagingResampleHorizontal_8bpc`: resamples rows; `src` column 0 is source
/// column `x_off`. Output is `k.bounds.len()` x `src.h`, rounded and clipped to u8.
fn horizontal(src: View, k: &Coeffs, x_off: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(k.bounds.len() * src.h * 3);
    for y in 0..src.h {
        for slot in 0..k.bounds.len() {
            let (xmin, w) = k.get(slot);
            let mut acc = [HALF; 3];
            for (i, &w) in w.iter().enumerate() {
                let p = src.px(xmin - x_off + i, y);
                acc[0] += i64::from(p[0]) * w;
                acc[1] += i64::from(p[1]) * w;
                acc[2] += i64::from(p[2]) * w;
            }
            out.extend(acc.map(clip8));
        }
    }
    out
}

/// Pillow's `ImagingResampleVertical_8bpc`: resamples columns; `src` row 0 is source row
/// `y_off`. Output is `src.w` x `k.bounds.len()`, rounded and clipped to u8.
fn vertical(src: View, k: &Coeffs, y_off: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.w * k.bounds.len() * 3);
    for slot in 0..k.bounds.len() {
        let (ymin, w) = k.get(slot);
        for x in 0..src.w {
            let mut acc = [HALF; 3];
            for (i, &w) in w.iter().enumerate() {
                let p = src.px(x, ymin - y_off + i);
                acc[0] += i64::from(p[0]) * w;
                acc[1] += i64::from(p[1]) * w;
                acc[2] += i64::from(p[2]) * w;
            }
            out.extend(acc.map(clip8));
        }
    }
    out
}

/// Source samples read by a pass with these coefficients (`fallback` when there is no pass).
fn span(k: Option<&Coeffs>, fallback: &Range<usize>) -> Range<usize> {
    match k {
        Some(k) => {
            let first = k.bounds.iter().map(|b| b.0).min().unwrap_or(0);
            let last = k.bounds.iter().map(|b| b.0 + b.1).max().unwrap_or(0);
            first..last.max(first)
        }
        None => fallback.clone(),
    }
}

/// Resizes `img` to `width` x `height` exactly as Pillow 13's
/// `Image.resize((width, height), Image.BICUBIC, reducing_gap=None)` does on an RGB image.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize_window(img, width, height, 0..width, 0..height)
}

/// Computes only the `cols` x `rows` window of the `width` x `height` Pillow bicubic resize of
/// `img`, so a center crop never pays for (or allocates) the discarded part of the resize.
/// Ranges are clamped to the output size. An empty source gives black.
pub(crate) fn resize_window(
    img: &RgbImage,
    width: u32,
    height: u32,
    cols: Range<u32>,
    rows: Range<u32>,
) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let cols = cols.start.min(width) as usize..cols.end.min(width) as usize;
    let rows = rows.start.min(height) as usize..rows.end.min(height) as usize;
    let (win_w, win_h) = (cols.len(), rows.len());

    // Pillow skips the pass of an axis that keeps its size.
    let horiz = (out_w != in_w).then(|| Coeffs::new(in_w, out_w, cols.clone()));
    let vert = (out_h != in_h).then(|| Coeffs::new(in_h, out_h, rows.clone()));
    let src_cols = span(horiz.as_ref(), &cols);
    let src_rows = span(vert.as_ref(), &rows);
    let src = View::packed(img.as_raw(), in_w, in_h).sub(src_cols.clone(), src_rows.clone());

    // Pillow 13 runs the vertical pass first when the height shrinks by more than twice as
    // many pixels as the width; the u8 rounding between passes makes the order visible.
    let (dy, dx) = (in_h as i64 - out_h as i64, in_w as i64 - out_w as i64);
    let vertical_first = dy > 0 && dy > dx * 2;

    let out = match (&horiz, &vert) {
        (Some(h), Some(v)) if vertical_first => {
            let mid = vertical(src, v, src_rows.start);
            horizontal(View::packed(&mid, src.w, win_h), h, src_cols.start)
        }
        (Some(h), Some(v)) => {
            let mid = horizontal(src, h, src_cols.start);
            vertical(View::packed(&mid, win_w, src.h), v, src_rows.start)
        }
        (Some(h), None) => horizontal(src, h, src_cols.start),
        (None, Some(v)) => vertical(src, v, src_rows.start),
        (None, None) => (0..src.h)
            .flat_map(|y| (0..src.w).flat_map(move |x| src.px(x, y).iter().copied()))
            .collect(),
    };
    let (w, h) = (win_w as u32, win_h as u32);
    // The buffer holds exactly w * h pixels by construction; black is only a fallback.
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}
