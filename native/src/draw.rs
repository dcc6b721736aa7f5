//! Pixel drawing with the `image` crate: filled rectangles and text in an embedded 5×7 bitmap
//! font, so no font files are needed (training plots, attention-map sheets).

use image::{Rgb, RgbImage};

/// The characters of [`GLYPHS`]; others draw as blanks, upper case as lower case.
const GLYPH_CHARS: &str = "0123456789abcdefghijklmnopqrstuvwxyz.-_:/()+,";
/// 5×7 glyphs: 7 rows of 5 bits each, the top row's leftmost pixel in bit 34.
#[rustfmt::skip]
const GLYPHS: [u64; 45] = [
    0x3a33ae62e, 0x11842108e, 0x3a211111f, 0x7c441062e, 0x08ca97c42, 0x7e1e0862e, 0x1910f462e, 0x7c2222108,
    0x3a317462e, 0x3a317844c, 0x000e0be2f, 0x4216cc63e, 0x000e8422e, 0x042d9c62f, 0x000e8fe0e, 0x1928e2108,
    0x01f18bc2e, 0x4216cc631, 0x100c2108e, 0x080610a4c, 0x4212a6292, 0x30842108e, 0x001aad631, 0x0016cc631,
    0x000e8c62e, 0x001e8fa10, 0x000d9bc21, 0x0016cc210, 0x000e8383e, 0x211c42126, 0x00118c66d, 0x00118c544,
    0x00118d6aa, 0x001151151, 0x00118bc2e, 0x001f1111f, 0x00000018c, 0x0000f8000, 0x00000001f, 0x018c03180,
    0x002222200, 0x088842082, 0x208210888, 0x0084f9080, 0x000003088,
];

/// Fills the `w`×`h` rectangle at `(x, y)`, clipped to the image.
pub fn fill(img: &mut RgbImage, x: i32, y: i32, w: i32, h: i32, c: Rgb<u8>) {
    for (xx, yy) in (x..x + w).flat_map(|xx| (y..y + h).map(move |yy| (xx, yy))) {
        if let Some(p) = img.get_pixel_mut_checked(xx as u32, yy as u32) {
            *p = c;
        }
    }
}

/// The width in pixels of `s` drawn by [`text`] at `scale` image pixels per font pixel.
pub fn text_width(s: &str, scale: i32) -> i32 {
    (s.chars().count() as i32 * 6 - 1).max(0) * scale
}

/// Draws `s` with its top-left corner at `(x, y)`, `scale` image pixels per font pixel (glyphs
/// are 7 × `scale` pixels tall, cells 6 × `scale` wide); characters without a glyph are blanks,
/// upper case draws as lower case.
pub fn text(img: &mut RgbImage, x: i32, y: i32, s: &str, c: Rgb<u8>, scale: i32) {
    for (i, ch) in s.chars().enumerate() {
        let index = GLYPH_CHARS.find(ch.to_ascii_lowercase());
        let glyph = index.and_then(|k| GLYPHS.get(k));
        let x0 = x + i as i32 * 6 * scale;
        for bit in (0..35).filter(|bit| glyph.is_some_and(|g| g >> (34 - bit) & 1 == 1)) {
            fill(img, x0 + bit % 5 * scale, y + bit / 5 * scale, scale, scale, c);
        }
    }
}
