//! Structured scenes and random scene sampling.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use super::vocab::{Background, Colour, Position, ShapeKind, Size};

/// Largest shift of a shape from its slot's anchor, as a fraction of the image side.
const JITTER: f32 = 0.015;

/// One drawn shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SceneObject {
    /// What is drawn.
    pub shape: ShapeKind,
    /// Its colour.
    pub colour: Colour,
    /// Its size class.
    pub size: Size,
    /// Its slot.
    pub position: Position,
    /// Centre x as a fraction of the image side.
    pub cx: f32,
    /// Centre y as a fraction of the image side (down is positive).
    pub cy: f32,
    /// Radius as a fraction of the image side.
    pub radius: f32,
}

/// A structured scene: what the captions describe and what the renderer draws.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scene {
    /// The background colour.
    pub background: Background,
    /// The shapes, each in its own slot.
    pub objects: Vec<SceneObject>,
}

/// Identical shapes (same kind and colour, hence same size) described together ("two red circles").
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The shape.
    pub shape: ShapeKind,
    /// The colour.
    pub colour: Colour,
    /// The size shared by the group.
    pub size: Size,
    /// Where the members sit, in caption order.
    pub positions: Vec<Position>,
}

impl Scene {
    /// How many objects have this shape and colour.
    pub fn count(&self, shape: ShapeKind, colour: Colour) -> usize {
        self.objects
            .iter()
            .filter(|o| o.shape == shape && o.colour == colour)
            .count()
    }

    /// The objects grouped by shape and colour, ordered by their first slot in `Position::ALL` order.
    pub fn groups(&self) -> Vec<Group> {
        let mut objects: Vec<&SceneObject> = self.objects.iter().collect();
        objects.sort_by_key(|o| o.position);
        let mut groups: Vec<Group> = Vec::new();
        for o in objects {
            match groups
                .iter_mut()
                .find(|g| g.shape == o.shape && g.colour == o.colour)
            {
                Some(g) => g.positions.push(o.position),
                None => groups.push(Group {
                    shape: o.shape,
                    colour: o.colour,
                    size: o.size,
                    positions: vec![o.position],
                }),
            }
        }
        groups
    }
}

/// Picks one element of a non-empty slice.
pub(super) fn pick<T: Copy>(rng: &mut (impl Rng + ?Sized), items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Splits the object count into group sizes; about half the scenes have a repeated shape so counts
/// ("two", "three") are common enough to learn.
fn group_counts(rng: &mut impl Rng) -> Vec<usize> {
    match rng.random_range(1..=3) {
        1 => vec![1],
        2 if rng.random_bool(0.5) => vec![2],
        2 => vec![1, 1],
        _ => match rng.random_range(0..20) {
            0..5 => vec![3],
            5..12 => vec![2, 1],
            _ => vec![1, 1, 1],
        },
    }
}

/// Samples a scene of 1–3 shapes in distinct slots; groups differ in shape or colour so every
/// caption is unambiguous.
pub fn random_scene(rng: &mut impl Rng) -> Scene {
    let background = pick(rng, &Background::ALL);
    let counts = group_counts(rng);
    let mut slots = Position::ALL;
    slots.shuffle(rng);
    let mut slots = slots.into_iter();
    let mut kinds: Vec<(ShapeKind, Colour)> = Vec::new();
    let mut objects = Vec::new();
    for count in counts {
        let kind = loop {
            let k = (pick(rng, &ShapeKind::ALL), pick(rng, &Colour::ALL));
            if !kinds.contains(&k) {
                break k;
            }
        };
        kinds.push(kind);
        let size = pick(rng, &Size::ALL);
        for position in slots.by_ref().take(count) {
            let (ax, ay) = position.anchor();
            objects.push(SceneObject {
                shape: kind.0,
                colour: kind.1,
                size,
                position,
                cx: ax + rng.random_range(-JITTER..=JITTER),
                cy: ay + rng.random_range(-JITTER..=JITTER),
                radius: size.radius() * rng.random_range(0.9..=1.1),
            });
        }
    }
    Scene { background, objects }
}
