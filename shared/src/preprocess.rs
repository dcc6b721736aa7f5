//! CLIP image preprocessing, matching Hugging Face `CLIPImageProcessor()` (the defaults of
//! openai/clip-vit-base-patch32) with Pillow's resize: decode to RGB, resize the shortest
//! edge with bicubic filtering, center crop, rescale by 1/255, normalise, lay out as CHW.

mod decode;
mod resize;

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::{Error, Result};

pub use decode::decode_image;
pub use resize::resize_bicubic;

/// Pillow's `Image.MAX_IMAGE_PIXELS`: larger images are refused as decompression bombs.
pub const DEFAULT_MAX_PIXELS: u64 = 89_478_485;
/// CLIP's per-channel normalisation mean (RGB).
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// CLIP's per-channel normalisation standard deviation (RGB).
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Largest crop or shortest edge accepted, far above any vision model's input size.
const MAX_SIDE: usize = 1 << 16;

/// Settings of the preprocessing pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    /// Side of the square center crop, i.e. of the model input (224 for CLIP ViT-B/32).
    pub image_size: usize,
    /// Length the shortest image edge is resized to before cropping (224).
    pub shortest_edge: usize,
    /// Per-channel mean subtracted after rescaling to 0..1.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
    /// Images with more pixels than this are refused before decoding.
    pub max_pixels: u64,
}

impl Default for PreprocessConfig {
    /// CLIP defaults: 224 edge and crop, CLIP mean and std, Pillow's pixel limit.
    fn default() -> Self {
        Self::for_image_size(224)
    }
}

impl PreprocessConfig {
    /// CLIP defaults with crop and shortest edge both set to `image_size`.
    pub fn for_image_size(image_size: usize) -> Self {
        // Through f64 like numpy's `np.array(list, dtype=float32)`, so the f32 constants match.
        PreprocessConfig {
            image_size,
            shortest_edge: image_size,
            mean: CLIP_MEAN.map(|v| v as f32),
            std: CLIP_STD.map(|v| v as f32),
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }

    /// Number of values in one preprocessed image: `3 * image_size * image_size`.
    pub fn output_len(&self) -> usize {
        self.image_size.saturating_mul(self.image_size).saturating_mul(3)
    }

    /// Checks that the sizes are positive and the normalisation is finite and invertible.
    fn validate(&self) -> Result<()> {
        if self.image_size == 0 || self.shortest_edge == 0 {
            return Err(Error::Config(format!(
                "preprocess: image_size ({}) and shortest_edge ({}) must be positive",
                self.image_size, self.shortest_edge
            )));
        }
        if self.image_size > MAX_SIDE || self.shortest_edge > MAX_SIDE {
            return Err(Error::Config(format!(
                "preprocess: image_size ({}) and shortest_edge ({}) must be at most {MAX_SIDE}",
                self.image_size, self.shortest_edge
            )));
        }
        let std_ok = self.std.iter().all(|s| s.is_finite() && *s != 0.0);
        if !std_ok || !self.mean.iter().all(|m| m.is_finite()) {
            return Err(Error::Config(format!(
                "preprocess: mean {:?} must be finite and std {:?} finite and non-zero",
                self.mean, self.std
            )));
        }
        Ok(())
    }
}

/// Size after Hugging Face's shortest-edge resize (`get_resize_output_image_size` with
/// `default_to_square=False`): the short side becomes `shortest_edge` and the long side
/// `int(shortest_edge * long / short)`. `None` if an input side is 0 or a side overflows u32.
pub fn shortest_edge_size(width: u32, height: u32, shortest_edge: u32) -> Option<(u32, u32)> {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    if short == 0 {
        return None;
    }
    if short == shortest_edge {
        return Some((width, height));
    }
    // Python's int * int is exact, then `/` is a correctly rounded float division and int()
    // truncates; f64 does the same for sizes this small.
    let new_long = (f64::from(shortest_edge) * f64::from(long) / f64::from(short)).trunc();
    let new_long = u32::try_from(new_long as u64).ok()?;
    Some(if width <= height {
        (shortest_edge, new_long)
    } else {
        (new_long, shortest_edge)
    })
}

/// Where a crop of `crop` samples lands on an axis of `size` samples, as transformers'
/// `center_crop` does it: the source range that is kept, and the zero padding placed before
/// it when the axis is shorter than the crop.
fn crop_axis(size: u32, crop: u32) -> (std::ops::Range<u32>, u32) {
    if size >= crop {
        // Python's `(size - crop) // 2`, non-negative here.
        let start = (size - crop) / 2;
        (start..start + crop, 0)
    } else {
        // transformers pads with zeros, ceil((crop - size) / 2) before the image.
        (0..size, (crop - size).div_ceil(2))
    }
}

/// Preprocesses an RGB image into CLIP's input: `[3, image_size, image_size]` f32 values,
/// channel-major (CHW), normalised with the config's mean and std.
pub fn preprocess_rgb(img: &RgbImage, cfg: &PreprocessConfig) -> Result<Vec<f32>> {
    cfg.validate()?;
    decode::check_size(img.width(), img.height(), u64::MAX)?;
    // validate() capped both far below u32::MAX.
    let crop = cfg.image_size as u32;
    let edge = cfg.shortest_edge as u32;
    let (new_w, new_h) = shortest_edge_size(img.width(), img.height(), edge).ok_or_else(|| {
        Error::Image(format!(
            "image is {}x{}: resizing its shortest edge to {edge} makes a side too large",
            img.width(),
            img.height()
        ))
    })?;
    let (cols, pad_x) = crop_axis(new_w, crop);
    let (rows, pad_y) = crop_axis(new_h, crop);
    // Only the cropped window of the resize is computed; it equals the full resize there.
    let window = resize::resize_window(img, new_w, new_h, cols, rows);

    let side = cfg.image_size;
    let plane = side * side;
    let mut out = vec![0f32; 3 * plane];
    for (c, chan) in out.chunks_exact_mut(plane).enumerate() {
        let zero = normalise(0, cfg.mean[c], cfg.std[c]);
        for (y, row) in chan.chunks_exact_mut(side).enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                // Coordinates inside the window, or padding (a zero pixel) outside it.
                let wx = (x as u32).checked_sub(pad_x);
                let wy = (y as u32).checked_sub(pad_y);
                *v = match (wx, wy) {
                    (Some(wx), Some(wy)) if wx < window.width() && wy < window.height() => {
                        normalise(window.get_pixel(wx, wy)[c], cfg.mean[c], cfg.std[c])
                    }
                    _ => zero,
                };
            }
        }
    }
    Ok(out)
}

/// transformers' `rescale` (in f64, then cast to f32) followed by `normalize` in f32.
fn normalise(p: u8, mean: f32, std: f32) -> f32 {
    let x = (f64::from(p) * (1.0 / 255.0)) as f32;
    (x - mean) / std
}

/// Decodes image bytes (refusing images over `cfg.max_pixels`) and preprocesses them.
pub fn preprocess_bytes(bytes: &[u8], cfg: &PreprocessConfig) -> Result<Vec<f32>> {
    cfg.validate()?;
    let img = decode_image(bytes, cfg.max_pixels)?;
    preprocess_rgb(&img, cfg)
}

/// Wraps preprocessed CHW values as a `[3, image_size, image_size]` tensor on `device`.
pub fn to_tensor(chw: &[f32], cfg: &PreprocessConfig, device: &Device) -> Result<Tensor> {
    if chw.len() != cfg.output_len() {
        return Err(Error::Image(format!(
            "preprocessed buffer has {} values, expected 3x{}x{} = {}",
            chw.len(),
            cfg.image_size,
            cfg.image_size,
            cfg.output_len()
        )));
    }
    Ok(Tensor::from_slice(
        chw,
        (3, cfg.image_size, cfg.image_size),
        device,
    )?)
}
