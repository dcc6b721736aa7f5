//! Rasterising scenes: anti-aliased shapes by supersampling each pixel's coverage.

use image::{Rgb, RgbImage};

use super::scene::Scene;
use super::vocab::ShapeKind;

/// Samples per pixel along each axis; 4×4 gives 17 coverage levels, smooth enough at 64 px.
const SUPERSAMPLE: u32 = 4;

/// Half-width of the cross's arms, in units of the radius.
const CROSS_ARM: f32 = 0.33;

/// Half-side of the square, in units of the radius (its area then roughly matches the circle's).
const SQUARE_HALF: f32 = 0.9;

/// Circumradius of the triangle, in units of the radius (it looks too small at 1).
const TRIANGLE_R: f32 = 1.25;

/// Half the side of the box around a shape, in units of its radius.
fn extent(shape: ShapeKind) -> f32 {
    match shape {
        ShapeKind::Triangle => TRIANGLE_R,
        _ => 1.0,
    }
}

/// Whether the point (x, y), relative to the centre in units of the radius (y down), is inside.
fn inside(shape: ShapeKind, x: f32, y: f32) -> bool {
    match shape {
        ShapeKind::Circle => x * x + y * y <= 1.0,
        ShapeKind::Square => x.abs() <= SQUARE_HALF && y.abs() <= SQUARE_HALF,
        ShapeKind::Triangle => {
            // Apex at (0, -R), base at y = R/2: the half-width grows by tan 30° per unit down.
            let base = TRIANGLE_R / 2.0;
            y <= base && x.abs() <= (y + TRIANGLE_R) * (30f32.to_radians().tan())
        }
        ShapeKind::Cross => {
            (x.abs() <= 1.0 && y.abs() <= CROSS_ARM) || (x.abs() <= CROSS_ARM && y.abs() <= 1.0)
        }
    }
}

/// Blends one anti-aliased shape into the image; centre and radius are fractions of the image size.
pub fn draw_shape(img: &mut RgbImage, shape: ShapeKind, rgb: [u8; 3], cx: f32, cy: f32, radius: f32) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let side = w.min(h);
    let (pcx, pcy, pr) = (cx * w, cy * h, radius * side);
    if pr <= 0.0 {
        return;
    }
    let reach = pr * extent(shape) + 1.0;
    let x0 = (pcx - reach).floor().max(0.0) as u32;
    let y0 = (pcy - reach).floor().max(0.0) as u32;
    let x1 = ((pcx + reach).ceil().max(0.0) as u32).min(img.width());
    let y1 = ((pcy + reach).ceil().max(0.0) as u32).min(img.height());
    let step = 1.0 / SUPERSAMPLE as f32;
    let total = (SUPERSAMPLE * SUPERSAMPLE) as f32;
    for py in y0..y1 {
        for px in x0..x1 {
            let mut hits = 0u32;
            for sy in 0..SUPERSAMPLE {
                let y = (py as f32 + (sy as f32 + 0.5) * step - pcy) / pr;
                for sx in 0..SUPERSAMPLE {
                    let x = (px as f32 + (sx as f32 + 0.5) * step - pcx) / pr;
                    hits += u32::from(inside(shape, x, y));
                }
            }
            if hits == 0 {
                continue;
            }
            let a = hits as f32 / total;
            let pixel = img.get_pixel_mut(px, py);
            for (c, &s) in pixel.0.iter_mut().zip(rgb.iter()) {
                *c = (*c as f32 * (1.0 - a) + s as f32 * a).round() as u8;
            }
        }
    }
}

/// An image filled with one colour.
pub fn blank(width: u32, height: u32, rgb: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(width, height, Rgb(rgb))
}

/// Renders a scene as a `size`×`size` RGB image.
pub fn render_scene(scene: &Scene, size: u32) -> RgbImage {
    let mut img = blank(size, size, scene.background.rgb());
    for o in &scene.objects {
        draw_shape(&mut img, o.shape, o.colour.rgb(), o.cx, o.cy, o.radius);
    }
    img
}
