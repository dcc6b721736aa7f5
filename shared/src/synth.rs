//! Synthetic scenes: coloured shapes on plain backgrounds, short clips of such shapes moving,
//! and their templated captions. `native synth` writes training sets with it and the page's
//! "random scene" button renders with it, so both draw exactly the same scenes.
//!
//! Pure and seeded: everything is drawn from the `Rng` handed in, and rendering is plain
//! pixel work on an `RgbImage`, so it compiles for wasm32 as for native.

mod caption;
mod render;
mod scene;
mod video;
mod vocab;

pub use caption::{captions, CANONICAL_COPIES, CAPTIONS_PER_IMAGE};
pub use render::{blank, draw_shape, render_scene};
pub use scene::{random_scene, Group, Scene, SceneObject};
pub use video::{clip_captions, random_clip, render_clip, Clip, Motion, MovingObject};
pub use vocab::{Background, Colour, Position, ShapeKind, Size};
