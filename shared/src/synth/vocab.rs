//! The scene vocabulary: shapes, colours, backgrounds, sizes and positions, with their words and
//! their looks.

use serde::Serialize;

/// A shape that can be drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShapeKind {
    /// A disc.
    Circle,
    /// An axis-aligned square.
    Square,
    /// An equilateral triangle pointing up.
    Triangle,
    /// A plus-shaped cross.
    Cross,
}

impl ShapeKind {
    /// Every shape.
    pub const ALL: [ShapeKind; 4] = [Self::Circle, Self::Square, Self::Triangle, Self::Cross];

    /// The singular noun.
    pub fn name(self) -> &'static str {
        match self {
            Self::Circle => "circle",
            Self::Square => "square",
            Self::Triangle => "triangle",
            Self::Cross => "cross",
        }
    }

    /// The plural noun.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Circle => "circles",
            Self::Square => "squares",
            Self::Triangle => "triangles",
            Self::Cross => "crosses",
        }
    }
}

/// A named shape colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    /// Red.
    Red,
    /// Green.
    Green,
    /// Blue.
    Blue,
    /// Yellow.
    Yellow,
    /// Purple.
    Purple,
    /// Orange.
    Orange,
    /// White.
    White,
    /// Black.
    Black,
}

impl Colour {
    /// Every colour.
    pub const ALL: [Colour; 8] = [
        Self::Red,
        Self::Green,
        Self::Blue,
        Self::Yellow,
        Self::Purple,
        Self::Orange,
        Self::White,
        Self::Black,
    ];

    /// The adjective used in captions.
    pub fn name(self) -> &'static str {
        match self {
            Self::Red => "red",
            Self::Green => "green",
            Self::Blue => "blue",
            Self::Yellow => "yellow",
            Self::Purple => "purple",
            Self::Orange => "orange",
            Self::White => "white",
            Self::Black => "black",
        }
    }

    /// The sRGB value; chosen to stay far apart from each other and from every background.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Self::Red => [220, 30, 30],
            Self::Green => [40, 175, 50],
            Self::Blue => [40, 80, 230],
            Self::Yellow => [245, 225, 40],
            Self::Purple => [150, 50, 190],
            Self::Orange => [250, 140, 20],
            Self::White => [250, 250, 250],
            Self::Black => [15, 15, 15],
        }
    }
}

/// A plain background colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    /// Mid grey.
    Gray,
    /// Dark brown.
    Brown,
    /// Dark teal.
    Teal,
}

impl Background {
    /// Every background.
    pub const ALL: [Background; 3] = [Self::Gray, Self::Brown, Self::Teal];

    /// The adjective used in captions.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gray => "gray",
            Self::Brown => "brown",
            Self::Teal => "teal",
        }
    }

    /// The sRGB value.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Self::Gray => [128, 128, 128],
            Self::Brown => [105, 75, 50],
            Self::Teal => [25, 105, 110],
        }
    }
}

/// A shape's size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// About a seventh of the image side across.
    Small,
    /// About a quarter of the image side across.
    Large,
}

impl Size {
    /// Both sizes.
    pub const ALL: [Size; 2] = [Self::Small, Self::Large];

    /// The canonical adjective.
    pub fn name(self) -> &'static str {
        match self {
            Self::Small => "small",
            Self::Large => "large",
        }
    }

    /// The nominal radius as a fraction of the image side; the gap between the two classes stays wide
    /// after jitter so the size is always visible.
    pub fn radius(self) -> f32 {
        match self {
            Self::Small => 0.10,
            Self::Large => 0.15,
        }
    }
}

/// A slot in the image where a shape sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// Left third, vertically centred.
    Left,
    /// Top third, horizontally centred.
    Top,
    /// The middle.
    Center,
    /// Bottom third, horizontally centred.
    Bottom,
    /// Right third, vertically centred.
    Right,
}

impl Position {
    /// Every slot, in the order captions list them (so the order is a function of the image).
    pub const ALL: [Position; 5] = [Self::Left, Self::Top, Self::Center, Self::Bottom, Self::Right];

    /// The slot's centre as (x, y) fractions of the image side; far enough apart that two large
    /// shapes with jitter never overlap.
    pub fn anchor(self) -> (f32, f32) {
        match self {
            Self::Left => (0.17, 0.5),
            Self::Top => (0.5, 0.18),
            Self::Center => (0.5, 0.5),
            Self::Bottom => (0.5, 0.82),
            Self::Right => (0.83, 0.5),
        }
    }
}
