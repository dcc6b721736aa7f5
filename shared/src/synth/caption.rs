//! Captions for still scenes: a handful of templates and synonyms that say the same thing.
//!
//! Objects are always listed in slot order (left, top, center, bottom, right), so the word order is
//! a function of the image and a small model can learn it.

use rand::seq::SliceRandom;
use rand::Rng;

use super::scene::{pick, Group, Scene};
use super::vocab::{Position, Size};

/// Captions per image, as in COCO.
pub const CAPTIONS_PER_IMAGE: usize = 5;

/// "a" or "an" before `word`.
pub(super) fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// The determiner for a group of `n`.
fn number_word(n: usize, next: &str) -> &'static str {
    match n {
        0 | 1 => article(next),
        2 => "two",
        3 => "three",
        4 => "four",
        _ => "several",
    }
}

/// Joins phrases as "a", "a and b", "a, b and c".
pub(super) fn join_list(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// How one caption words sizes and positions.
#[derive(Clone, Copy)]
struct Wording {
    /// Size adjective for small and large, or none.
    size: Option<(&'static str, &'static str)>,
    /// Position phrases: none, short ("on the left") or long ("at the left of the image").
    position: PositionStyle,
    /// "center" or "middle".
    middle: &'static str,
}

/// Whether and how positions are worded.
#[derive(Clone, Copy, PartialEq)]
enum PositionStyle {
    None,
    Short,
    Long,
}

/// The canonical size adjectives.
const SIZES: (&str, &str) = ("small", "large");

/// Size adjectives with synonyms.
const SIZE_SYNONYMS: [(&str, &str); 2] = [SIZES, ("little", "big")];

/// " on the left", " at the top of the image", ... (with a leading space), or nothing.
fn position_phrase(p: Position, style: PositionStyle, middle: &str) -> String {
    let side = match p {
        Position::Left => "left",
        Position::Right => "right",
        Position::Top => "top",
        Position::Bottom => "bottom",
        Position::Center => middle,
    };
    let prep = match p {
        Position::Left | Position::Right => "on",
        Position::Top | Position::Bottom => "at",
        Position::Center => "in",
    };
    match style {
        PositionStyle::None => String::new(),
        PositionStyle::Short => format!(" {prep} the {side}"),
        PositionStyle::Long if p == Position::Center => format!(" in the {side} of the image"),
        PositionStyle::Long => format!(" at the {side} of the image"),
    }
}

/// One group as a noun phrase, with its position when it is a single object (a pair has two).
fn group_phrase(g: &Group, w: Wording) -> String {
    let n = g.positions.len();
    let mut adjectives = Vec::with_capacity(2);
    if let Some((small, large)) = w.size {
        adjectives.push(if g.size == Size::Small { small } else { large });
    }
    adjectives.push(g.colour.name());
    let noun = if n == 1 { g.shape.name() } else { g.shape.plural() };
    let mut phrase = format!(
        "{} {} {noun}",
        number_word(n, adjectives[0]),
        adjectives.join(" ")
    );
    if let [p] = g.positions[..] {
        phrase.push_str(&position_phrase(p, w.position, w.middle));
    }
    phrase
}

/// All groups as one phrase, in slot order.
fn list(groups: &[Group], w: Wording) -> String {
    let parts: Vec<String> = groups.iter().map(|g| group_phrase(g, w)).collect();
    join_list(&parts)
}

/// The caption templates; `Canonical` is always used ([`CANONICAL_COPIES`] times), the others
/// are drawn per image.
#[derive(Debug, Clone, Copy)]
enum Template {
    Canonical,
    ThereIs,
    Plain,
    OnBackground,
    PictureOf,
    SceneWith,
}

/// The templates drawn from.
const OPTIONAL: [Template; 5] = [
    Template::ThereIs,
    Template::Plain,
    Template::OnBackground,
    Template::PictureOf,
    Template::SceneWith,
];

/// One caption in template `t`; synonyms come from `rng`.
fn render(t: Template, scene: &Scene, groups: &[Group], rng: &mut impl Rng) -> String {
    let synonym_sizes = pick(rng, &SIZE_SYNONYMS);
    let middle = pick(rng, &["center", "middle"]);
    let wording = |size, position| Wording {
        size,
        position,
        middle,
    };
    let bg = scene.background.name();
    match t {
        Template::Canonical => {
            let canonical = Wording {
                size: Some(SIZES),
                position: PositionStyle::Short,
                middle: "center",
            };
            list(groups, canonical)
        }
        Template::ThereIs => {
            let verb = if groups.first().is_some_and(|g| g.positions.len() > 1) {
                "are"
            } else {
                "is"
            };
            let size = if rng.random_bool(0.5) {
                Some(synonym_sizes)
            } else {
                None
            };
            format!(
                "there {verb} {}",
                list(groups, wording(size, PositionStyle::Long))
            )
        }
        Template::Plain => list(groups, wording(None, PositionStyle::None)),
        Template::OnBackground => {
            let objects = list(groups, wording(Some(synonym_sizes), PositionStyle::None));
            format!("{objects} on {} {bg} background", article(bg))
        }
        Template::PictureOf => {
            let noun = pick(rng, &["a picture", "an image", "a photo"]);
            format!("{noun} of {}", list(groups, wording(None, PositionStyle::Short)))
        }
        Template::SceneWith => {
            let objects = list(groups, wording(Some(synonym_sizes), PositionStyle::Short));
            format!("{} {bg} scene with {objects}", article(bg))
        }
    }
}

/// How many of an image's captions are the canonical wording. A majority (3 of 5) makes it the
/// greedy mode at every word: with 2 of 5, paraphrases that share its first words ("a small
/// red ..." / "a red ..." / "a brown scene with ...") came within 1e-3 probability of it, so
/// greedy captions flipped between wordings on the smallest change of the weights
/// (quantization, another CPU's rounding).
pub const CANONICAL_COPIES: usize = 3;

/// Five captions for a scene: the canonical wording [`CANONICAL_COPIES`] times, then other
/// templates with random synonyms.
pub fn captions(scene: &Scene, rng: &mut impl Rng) -> Vec<String> {
    let groups = scene.groups();
    let mut templates = OPTIONAL;
    templates.shuffle(rng);
    let canonical = render(Template::Canonical, scene, &groups, rng);
    let mut out: Vec<String> = vec![canonical; CANONICAL_COPIES];
    for t in templates {
        let caption = render(t, scene, &groups, rng);
        // The templates differ in wording by construction; the check only guards future edits.
        if !out.contains(&caption) {
            out.push(caption);
        }
        if out.len() == CAPTIONS_PER_IMAGE {
            break;
        }
    }
    out
}
