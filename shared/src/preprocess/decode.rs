//! Decoding image bytes to 8-bit RGB, refusing decompression bombs before the pixel buffer
//! is allocated.

use std::io::{Cursor, ErrorKind};

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use crate::{Error, Result};

/// Most bytes per pixel any enabled decoder outputs (16-bit RGBA PNG).
const MAX_BYTES_PER_PIXEL: u64 = 8;
/// Decoder working memory allowed on top of the largest legal output buffer.
const ALLOC_HEADROOM: u64 = 64 << 20;

/// Decodes JPEG, PNG, WebP or GIF (first frame) bytes to 8-bit RGB like Pillow's
/// `convert("RGB")`: gray is replicated, alpha dropped without compositing, palettes expanded,
/// CMYK converted and 16-bit samples reduced to their high byte. Images over `max_pixels`
/// are refused from the header alone, before any pixel memory is allocated.
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(Error::Image("empty input (0 bytes) is not an image".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Image(format!("could not read the image header: {e}")))?;
    let Some(format) = reader.format() else {
        return Err(Error::Image(format!(
            "not a recognised image format (expected JPEG, PNG, WebP or GIF; the data starts \
             with bytes {})",
            hex_prefix(bytes)
        )));
    };
    let Some(name) = format_name(format) else {
        return Err(Error::Image(format!(
            "{format:?} images are not supported (expected JPEG, PNG, WebP or GIF)"
        )));
    };
    reader.limits(limits(max_pixels));
    // Building the decoder parses only the header, so the size check below runs before the
    // pixel buffer exists.
    let decoder = reader.into_decoder().map_err(|e| describe(name, e, max_pixels))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, max_pixels)?;
    let needed = decoder.total_bytes();
    if needed > max_alloc(max_pixels) {
        return Err(Error::Image(format!(
            "{name} image is {width}x{height} and needs {needed} bytes to decode, over the \
             limit of {} bytes",
            max_alloc(max_pixels)
        )));
    }
    let img = DynamicImage::from_decoder(decoder).map_err(|e| describe(name, e, max_pixels))?;
    Ok(into_rgb8(img))
}

/// Refuses an empty image or one with more than `max_pixels` pixels, naming its size.
pub(crate) fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(Error::Image(format!(
            "image is {width}x{height}: it has no pixels"
        )));
    }
    if pixels > max_pixels {
        return Err(Error::Image(format!(
            "image is {width}x{height} = {pixels} pixels, over the limit of {max_pixels} pixels \
             (refused before decoding as a possible decompression bomb)"
        )));
    }
    Ok(())
}

/// Decoder limits matching `max_pixels`: no side may exceed it, and memory stays bounded by
/// the largest legal output buffer plus headroom.
fn limits(max_pixels: u64) -> Limits {
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    let mut limits = Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(max_alloc(max_pixels));
    limits
}

/// Byte budget for decoding an image of at most `max_pixels` pixels.
fn max_alloc(max_pixels: u64) -> u64 {
    max_pixels
        .saturating_mul(MAX_BYTES_PER_PIXEL)
        .saturating_add(ALLOC_HEADROOM)
}

/// Name of a format whose decoder is compiled in; `None` for formats the image crate
/// recognises by signature but cannot decode here.
fn format_name(format: ImageFormat) -> Option<&'static str> {
    match format {
        ImageFormat::Jpeg => Some("JPEG"),
        ImageFormat::Png => Some("PNG"),
        ImageFormat::WebP => Some("WebP"),
        ImageFormat::Gif => Some("GIF"),
        _ => None,
    }
}

/// Up to the first 8 bytes in hex, to show what an unrecognised input looks like.
fn hex_prefix(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    shown.join(" ")
}

/// Turns a decoder error into a message saying what kind of file it was and why it failed.
fn describe(name: &str, err: ImageError, max_pixels: u64) -> Error {
    Error::Image(match err {
        ImageError::Decoding(e) => format!("{name} data is truncated or corrupt: {e}"),
        ImageError::Limits(e) => format!(
            "{name} image exceeds the decoding limits ({e}); at most {max_pixels} pixels and \
             {} bytes are allowed",
            max_alloc(max_pixels)
        ),
        ImageError::Unsupported(e) => format!("{name} image uses an unsupported feature: {e}"),
        ImageError::IoError(e) if e.kind() == ErrorKind::UnexpectedEof => {
            format!("{name} data is truncated: {e}")
        }
        other => format!("{name} data could not be decoded: {other}"),
    })
}

/// Converts any decoded layout to 8-bit RGB the way Pillow's `convert("RGB")` does.
fn into_rgb8(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        // The image crate rounds 16-bit samples to the nearest 8-bit value; Pillow keeps the
        // high byte, so these are converted here.
        DynamicImage::ImageLuma16(i) => high_bytes(w, h, i.as_raw(), 1),
        DynamicImage::ImageLumaA16(i) => high_bytes(w, h, i.as_raw(), 2),
        DynamicImage::ImageRgb16(i) => high_bytes(w, h, i.as_raw(), 3),
        DynamicImage::ImageRgba16(i) => high_bytes(w, h, i.as_raw(), 4),
        // 8-bit gray, gray+alpha and RGBA: channel copy, alpha dropped (no compositing).
        other => other.to_rgb8(),
    }
}

/// RGB from 16-bit samples with `channels` per pixel (1-2: gray, 3-4: RGB), keeping `v >> 8`.
fn high_bytes(width: u32, height: u32, raw: &[u16], channels: usize) -> RgbImage {
    let mut out = Vec::with_capacity(raw.len() / channels * 3);
    for px in raw.chunks_exact(channels) {
        if channels < 3 {
            let v = (px[0] >> 8) as u8;
            out.extend([v, v, v]);
        } else {
            out.extend([(px[0] >> 8) as u8, (px[1] >> 8) as u8, (px[2] >> 8) as u8]);
        }
    }
    // The buffer has exactly width * height pixels by construction; black is only a fallback.
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}
