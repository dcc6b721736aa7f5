//! Video clips: one or two shapes that move or change size, their frames and their captions.

use image::RgbImage;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use super::caption::{article, CANONICAL_COPIES, CAPTIONS_PER_IMAGE};
use super::render::{blank, draw_shape};
use super::scene::pick;
use super::vocab::{Background, Colour, ShapeKind};

/// What a shape does during a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Motion {
    /// Travels from right to left.
    Left,
    /// Travels from left to right.
    Right,
    /// Travels from bottom to top.
    Up,
    /// Travels from top to bottom.
    Down,
    /// Stays put and gets bigger.
    Grow,
    /// Stays put and gets smaller.
    Shrink,
}

impl Motion {
    /// Every motion.
    pub const ALL: [Motion; 6] = [
        Self::Left,
        Self::Right,
        Self::Up,
        Self::Down,
        Self::Grow,
        Self::Shrink,
    ];

    fn is_vertical(self) -> bool {
        matches!(self, Self::Up | Self::Down)
    }

    fn is_horizontal(self) -> bool {
        matches!(self, Self::Left | Self::Right)
    }

    /// The canonical verb phrase ("moves to the left").
    pub fn verb(self) -> &'static str {
        match self {
            Self::Left => "moves to the left",
            Self::Right => "moves to the right",
            Self::Up => "moves up",
            Self::Down => "moves down",
            Self::Grow => "grows",
            Self::Shrink => "shrinks",
        }
    }

    /// The present participle ("moving to the left").
    fn participle(self) -> &'static str {
        match self {
            Self::Left => "moving to the left",
            Self::Right => "moving to the right",
            Self::Up => "moving up",
            Self::Down => "moving down",
            Self::Grow => "growing",
            Self::Shrink => "shrinking",
        }
    }

    /// Synonymous verb phrases.
    fn synonyms(self) -> [&'static str; 2] {
        match self {
            Self::Left => ["slides to the left", "goes left"],
            Self::Right => ["slides to the right", "goes right"],
            Self::Up => ["goes up", "rises"],
            Self::Down => ["goes down", "falls"],
            Self::Grow => ["gets bigger", "becomes larger"],
            Self::Shrink => ["gets smaller", "becomes smaller"],
        }
    }
}

/// One shape in a clip; it moves linearly from `start` to `end` and its radius from `r0` to `r1`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MovingObject {
    /// What is drawn.
    pub shape: ShapeKind,
    /// Its colour.
    pub colour: Colour,
    /// What it does.
    pub motion: Motion,
    /// Centre (x, y) in the first frame, as fractions of the frame side.
    pub start: (f32, f32),
    /// Centre (x, y) in the last frame.
    pub end: (f32, f32),
    /// Radius in the first frame.
    pub r0: f32,
    /// Radius in the last frame.
    pub r1: f32,
}

impl MovingObject {
    /// Centre x, centre y and radius at time `t` in [0, 1].
    pub fn at(&self, t: f32) -> (f32, f32, f32) {
        let lerp = |a: f32, b: f32| a + (b - a) * t;
        (
            lerp(self.start.0, self.end.0),
            lerp(self.start.1, self.end.1),
            lerp(self.r0, self.r1),
        )
    }
}

/// A structured clip: what its captions describe and what its frames show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Clip {
    /// The background colour.
    pub background: Background,
    /// One or two shapes, in caption order (top or left lane first).
    pub objects: Vec<MovingObject>,
}

/// Places one object doing `motion` inside the lane (x0, y0, x1, y1).
fn place(
    rng: &mut impl Rng,
    shape: ShapeKind,
    colour: Colour,
    motion: Motion,
    lane: [f32; 4],
) -> MovingObject {
    let [x0, y0, x1, y1] = lane;
    let (mx, my) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
    let short = (x1 - x0).min(y1 - y0);
    // Radii leave room for the triangle's larger extent (1.25 r) and the jitter.
    let r = if short < 1.0 { 0.08 } else { 0.1 } * rng.random_range(0.9..=1.1);
    let margin = r * 1.25 + 0.02;
    let mut jitter = || rng.random_range(-0.03..=0.03);
    let (cx, cy) = (mx + jitter(), my + jitter());
    let (start, end) = match motion {
        Motion::Left => ((x1 - margin, cy), (x0 + margin, cy)),
        Motion::Right => ((x0 + margin, cy), (x1 - margin, cy)),
        Motion::Up => ((cx, y1 - margin), (cx, y0 + margin)),
        Motion::Down => ((cx, y0 + margin), (cx, y1 - margin)),
        Motion::Grow | Motion::Shrink => ((cx, cy), (cx, cy)),
    };
    let big = ((short / 2.0 - 0.05) / 1.25).min(0.25);
    let (r0, r1) = match motion {
        Motion::Grow => (0.05, big),
        Motion::Shrink => (big, 0.05),
        _ => (r, r),
    };
    MovingObject {
        shape,
        colour,
        motion,
        start,
        end,
        r0,
        r1,
    }
}

/// Samples a clip of one or two shapes (distinct in shape or colour), each in its own lane.
pub fn random_clip(rng: &mut impl Rng) -> Clip {
    let background = pick(rng, &Background::ALL);
    let n = rng.random_range(1..=2);
    let mut kinds: Vec<(ShapeKind, Colour, Motion)> = Vec::with_capacity(n);
    while kinds.len() < n {
        let k = (
            pick(rng, &ShapeKind::ALL),
            pick(rng, &Colour::ALL),
            pick(rng, &Motion::ALL),
        );
        if !kinds.iter().any(|o| (o.0, o.1) == (k.0, k.1)) {
            kinds.push(k);
        }
    }
    // Horizontal travel needs full-width lanes (top/bottom halves); vertical travel full-height ones.
    let lanes: Vec<[f32; 4]> = if n == 1 {
        vec![[0.0, 0.0, 1.0, 1.0]]
    } else if kinds.iter().any(|k| k.2.is_vertical()) && !kinds.iter().any(|k| k.2.is_horizontal()) {
        vec![[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]]
    } else {
        vec![[0.0, 0.0, 1.0, 0.5], [0.0, 0.5, 1.0, 1.0]]
    };
    let objects = kinds
        .into_iter()
        .zip(lanes)
        .map(|((s, c, m), lane)| place(rng, s, c, m, lane))
        .collect();
    Clip { background, objects }
}

/// Renders `frames` frames (at least two) of `size`×`size`, evenly spaced from start to end.
pub fn render_clip(clip: &Clip, size: u32, frames: usize) -> Vec<RgbImage> {
    let last = frames.saturating_sub(1).max(1) as f32;
    (0..frames)
        .map(|f| {
            let mut img = blank(size, size, clip.background.rgb());
            for o in &clip.objects {
                let (cx, cy, r) = o.at(f as f32 / last);
                draw_shape(&mut img, o.shape, o.colour.rgb(), cx, cy, r);
            }
            img
        })
        .collect()
}

/// The clip caption templates; `Canonical` is always used, four of the others are drawn per clip.
#[derive(Debug, Clone, Copy)]
enum ClipTemplate {
    Canonical,
    Progressive,
    Synonym,
    Definite,
    OnBackground,
    VideoOf,
}

/// "a red circle".
fn subject(o: &MovingObject) -> String {
    let colour = o.colour.name();
    format!("{} {colour} {}", article(colour), o.shape.name())
}

/// One caption in template `t`; synonyms come from `rng`.
fn render(t: ClipTemplate, clip: &Clip, rng: &mut impl Rng) -> String {
    let clauses = |f: &mut dyn FnMut(&MovingObject) -> String| clip.objects.iter().map(f).collect::<Vec<_>>();
    match t {
        ClipTemplate::Canonical => {
            clauses(&mut |o| format!("{} {}", subject(o), o.motion.verb())).join(" and ")
        }
        ClipTemplate::Progressive => {
            clauses(&mut |o| format!("{} is {}", subject(o), o.motion.participle())).join(" and ")
        }
        ClipTemplate::Synonym => {
            let joiner = pick(rng, &[" and ", " while "]);
            clauses(&mut |o| format!("{} {}", subject(o), pick(rng, &o.motion.synonyms()))).join(joiner)
        }
        ClipTemplate::Definite => {
            clauses(&mut |o| format!("the {} {} {}", o.colour.name(), o.shape.name(), o.motion.verb()))
                .join(" and ")
        }
        ClipTemplate::OnBackground => {
            let bg = clip.background.name();
            let body = clauses(&mut |o| format!("{} {}", subject(o), o.motion.verb())).join(" and ");
            format!("{body} on {} {bg} background", article(bg))
        }
        ClipTemplate::VideoOf => {
            let noun = pick(rng, &["a video", "a clip"]);
            let body = clauses(&mut |o| format!("{} {}", subject(o), o.motion.participle())).join(" and ");
            format!("{noun} of {body}")
        }
    }
}

/// Five captions for a clip: the canonical wording [`CANONICAL_COPIES`] times (the greedy
/// mode, as for still scenes), then other templates.
pub fn clip_captions(clip: &Clip, rng: &mut impl Rng) -> Vec<String> {
    let mut templates = [
        ClipTemplate::Progressive,
        ClipTemplate::Synonym,
        ClipTemplate::Definite,
        ClipTemplate::OnBackground,
        ClipTemplate::VideoOf,
    ];
    templates.shuffle(rng);
    let mut out = vec![render(ClipTemplate::Canonical, clip, rng); CANONICAL_COPIES];
    for t in templates {
        let caption = render(t, clip, rng);
        if !out.contains(&caption) {
            out.push(caption);
        }
        if out.len() == CAPTIONS_PER_IMAGE {
            break;
        }
    }
    out
}
