//! Synthetic scenes: rendering (shapes, slots, sizes, colours) and captions.

mod common;

use common::scenes::*;
use native::synth::{
    captions, random_scene, render_scene, Background, Colour, Position, Scene, ShapeKind, Size,
    CANONICAL_COPIES, CAPTIONS_PER_IMAGE,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

#[test]
fn red_circle_on_the_left_is_drawn_on_the_left() {
    let scene = Scene {
        background: Background::Gray,
        objects: vec![object(
            ShapeKind::Circle,
            Colour::Red,
            Size::Large,
            Position::Left,
        )],
    };
    for size in [64, 224] {
        let img = render_scene(&scene, size);
        assert_eq!(img.dimensions(), (size, size));
        assert_eq!(
            pixel(&img, size / 6, size / 2),
            Colour::Red.rgb(),
            "left third centre at {size}"
        );
        assert_eq!(
            pixel(&img, size * 5 / 6, size / 2),
            Background::Gray.rgb(),
            "right third at {size}"
        );
        assert_eq!(
            pixel(&img, size / 2, size / 2),
            Background::Gray.rgb(),
            "centre at {size}"
        );
        // Nothing red right of the middle.
        for y in 0..size {
            for x in size / 2..size {
                assert_eq!(pixel(&img, x, y), Background::Gray.rgb(), "({x}, {y}) at {size}");
            }
        }
    }
}

#[test]
fn every_shape_and_slot_is_drawn_where_the_scene_says_with_soft_edges() {
    for shape in ShapeKind::ALL {
        for position in Position::ALL {
            let scene = Scene {
                background: Background::Teal,
                objects: vec![object(shape, Colour::Yellow, Size::Small, position)],
            };
            let img = render_scene(&scene, 96);
            let (cx, cy) = position.anchor();
            let centre = pixel(&img, (cx * 96.0) as u32, (cy * 96.0) as u32);
            assert_eq!(centre, Colour::Yellow.rgb(), "{shape:?} at {position:?}");
            assert_eq!(pixel(&img, 0, 0), Background::Teal.rgb());
            // Curved and slanted edges must be blended (axis-aligned ones may fall on pixel borders).
            if matches!(shape, ShapeKind::Circle | ShapeKind::Triangle) {
                let mut colours = img.pixels().map(|p| p.0).filter(|&p| p != Colour::Yellow.rgb());
                assert!(
                    colours.any(|p| p != Background::Teal.rgb()),
                    "{shape:?} has hard edges"
                );
            }
        }
    }
}

#[test]
fn large_shapes_cover_more_pixels_than_small_ones() {
    for shape in ShapeKind::ALL {
        let area = |size| {
            let scene = Scene {
                background: Background::Brown,
                objects: vec![object(shape, Colour::White, size, Position::Center)],
            };
            render_scene(&scene, 64)
                .pixels()
                .filter(|p| p.0 == Colour::White.rgb())
                .count()
        };
        assert!(area(Size::Large) > 2 * area(Size::Small), "{shape:?}");
    }
}

#[test]
fn colours_stay_distinguishable_from_each_other_and_the_backgrounds() {
    for (i, a) in Colour::ALL.iter().enumerate() {
        for b in &Colour::ALL[i + 1..] {
            assert!(distance(a.rgb(), b.rgb()) > 80.0, "{a:?} vs {b:?}");
        }
        for bg in Background::ALL {
            assert!(distance(a.rgb(), bg.rgb()) > 80.0, "{a:?} on {bg:?}");
        }
    }
}

fn number(word: &str) -> usize {
    match word {
        "a" | "an" => 1,
        "two" => 2,
        "three" => 3,
        other => panic!("not a count: {other}"),
    }
}

#[test]
fn captions_are_the_canonical_three_times_and_two_other_wordings_matching_the_scene() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut seen_counts = [0usize; 4];
    for _ in 0..500 {
        let scene = random_scene(&mut rng);
        assert!((1..=3).contains(&scene.objects.len()));
        let caps = captions(&scene, &mut rng);
        assert_eq!(caps.len(), CAPTIONS_PER_IMAGE);
        assert!(
            caps[..CANONICAL_COPIES].iter().all(|c| c == &caps[0]),
            "the canonical wording comes {CANONICAL_COPIES} times: {caps:?}"
        );
        let mut unique = caps.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            CAPTIONS_PER_IMAGE + 1 - CANONICAL_COPIES,
            "{caps:?}"
        );
        // The canonical caption: "<count> <size> <colour> <shape>[ <position>]" joined by ", " / " and ".
        let phrases: Vec<&str> = caps[0].split(" and ").flat_map(|p| p.split(", ")).collect();
        let groups = scene.groups();
        assert_eq!(phrases.len(), groups.len(), "{}", caps[0]);
        let mut total = 0;
        for (phrase, group) in phrases.iter().zip(&groups) {
            let words: Vec<&str> = phrase.split(' ').collect();
            let n = number(words[0]);
            assert_eq!(n, scene.count(group.shape, group.colour), "{}", caps[0]);
            assert_eq!(words[1], group.size.name());
            assert_eq!(words[2], group.colour.name());
            let noun = if n == 1 {
                group.shape.name()
            } else {
                group.shape.plural()
            };
            assert_eq!(words[3], noun, "{}", caps[0]);
            if n == 1 {
                let place = match group.positions[0] {
                    Position::Left => "on the left",
                    Position::Top => "at the top",
                    Position::Center => "in the center",
                    Position::Bottom => "at the bottom",
                    Position::Right => "on the right",
                };
                assert_eq!(words[4..].join(" "), place, "{phrase}");
            } else {
                assert_eq!(words.len(), 4, "pairs carry no position: {phrase}");
            }
            total += n;
        }
        assert_eq!(total, scene.objects.len());
        seen_counts[groups.iter().map(|g| g.positions.len()).max().unwrap()] += 1;
        for caption in &caps {
            for group in &groups {
                assert!(caption.contains(group.colour.name()), "{caption}");
            }
        }
    }
    // Counts of two and three actually occur.
    assert!(seen_counts[2] > 50 && seen_counts[3] > 10, "{seen_counts:?}");
}

#[test]
fn same_rng_seed_gives_the_same_scene_and_captions() {
    let draw = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let scene = random_scene(&mut rng);
        let caps = captions(&scene, &mut rng);
        (scene, caps)
    };
    assert_eq!(draw(5), draw(5));
    assert_ne!(draw(5), draw(6));
}
