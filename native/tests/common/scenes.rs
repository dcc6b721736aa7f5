//! Scene-building and pixel helpers for the synthetic-data tests.

use image::RgbImage;
use native::synth::{Colour, Position, SceneObject, ShapeKind, Size};

pub fn object(shape: ShapeKind, colour: Colour, size: Size, position: Position) -> SceneObject {
    let (cx, cy) = position.anchor();
    SceneObject {
        shape,
        colour,
        size,
        position,
        cx,
        cy,
        radius: size.radius(),
    }
}

pub fn pixel(img: &RgbImage, x: u32, y: u32) -> [u8; 3] {
    img.get_pixel(x, y).0
}

pub fn distance(a: [u8; 3], b: [u8; 3]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, y)| (x as f32 - y as f32).powi(2))
        .sum::<f32>()
        .sqrt()
}
