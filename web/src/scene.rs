//! Synthetic scenes for the "random scene" button: the very renderer `native synth` trains the
//! default model on (`caption_model::synth`, one module for both).

use std::io::Cursor;

use caption_model::synth;
use image::{ImageFormat, RgbImage};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Side of the rendered scene in pixels (`native synth`'s default size).
pub const SCENE_SIZE: u32 = 48;

/// A rendered scene.
#[derive(Debug, Clone)]
pub struct RenderedScene {
    /// The image, PNG-encoded.
    pub png: Vec<u8>,
    /// The scene's canonical caption (what the training data says about it).
    pub description: String,
}

/// The scene drawn from `seed`, rendered at `size` pixels.
pub fn random_scene_image(seed: u64, size: u32) -> RenderedScene {
    let mut rng = StdRng::seed_from_u64(seed);
    let scene = synth::random_scene(&mut rng);
    let img: RgbImage = synth::render_scene(&scene, size);
    let description = synth::captions(&scene, &mut rng)
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .expect("PNG encoding into memory cannot fail");
    RenderedScene { png, description }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_seeded_pngs() {
        let a = random_scene_image(3, SCENE_SIZE);
        let b = random_scene_image(3, SCENE_SIZE);
        assert_eq!(a.png, b.png);
        assert!(!a.description.is_empty());
        let img = image::load_from_memory(&a.png).unwrap();
        assert_eq!((img.width(), img.height()), (SCENE_SIZE, SCENE_SIZE));
        assert_ne!(random_scene_image(4, SCENE_SIZE).png, a.png);
    }
}
