//! `bench pointing`: does a colour or shape word's map peak on the object it names? Measured on
//! a `native synth` set, whose scenes record every object's centre and radius.
//!
//! Definitions (BENCHMARKS.md quotes them):
//! - **Correct caption**: the greedy caption's colour–shape pairs (each shape word, singular or
//!   plural, with the colour word before it, no other shape word in between) are exactly the
//!   scene's groups (one per distinct colour and shape), each named once, and every colour
//!   word belongs to a pair. Sizes, counts and positions are not checked.
//! - **Words evaluated**: every colour and shape word of a correct caption; its map is the map
//!   of the word's first token, on the picture's only frame.
//! - **Hit**: the map's peak cell (the grid laid over the whole square picture, `rows × cols`
//!   equal cells) intersects the disc of an object the word names (any member of its group):
//!   the point of the cell nearest the object's centre lies within its radius.
//! - **Chance**: per word, the fraction of the grid's cells that would count as a hit (the
//!   hit rate of a peak drawn uniformly), averaged over the same words.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use caption_model::attention_maps::{grid_shape, token_texts, word_maps, Grid, MapMethod};
use caption_model::decode::{DecodeOptions, Strategy};
use caption_model::preprocess::{preprocess_bytes, PreprocessConfig};
use caption_model::synth::{Colour, ShapeKind};
use caption_model::tokenizer::Tokenizer;
use caption_model::CaptionModel;
use serde::Deserialize;

use crate::caption::caption_pixels;

/// One object as `native synth` records it in `scenes/<split>.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectRecord {
    /// Shape name ("circle", ...).
    pub shape: String,
    /// Colour name ("red", ...).
    pub colour: String,
    /// Centre x, as a fraction of the image side.
    pub cx: f32,
    /// Centre y, as a fraction of the image side (down is positive).
    pub cy: f32,
    /// Radius, as a fraction of the image side.
    pub radius: f32,
}

/// The scene part of a record.
#[derive(Debug, Clone, Deserialize)]
pub struct SceneObjects {
    /// The drawn objects.
    pub objects: Vec<ObjectRecord>,
}

/// One entry of `scenes/<split>.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct SceneRecord {
    /// The image file under `images/<split>/`.
    pub file_name: String,
    /// What is drawn.
    pub scene: SceneObjects,
}

/// Pointing counts of one method.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MethodScore {
    /// Words whose map peaked on a named object.
    pub hits: usize,
}

/// What `pointing` measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Pointing {
    /// Scenes captioned.
    pub scenes: usize,
    /// Of those, scenes whose caption is correct.
    pub correct: usize,
    /// Colour and shape words evaluated.
    pub words: usize,
    /// Sum over the words of the share of cells that count as a hit.
    pub chance_sum: f64,
    /// Per method, in the order asked.
    pub methods: Vec<(MapMethod, MethodScore)>,
}

impl Pointing {
    /// The chance rate: the mean share of cells that count as a hit.
    pub fn chance(&self) -> f64 {
        self.chance_sum / self.words.max(1) as f64
    }

    /// A method's pointing accuracy.
    pub fn accuracy(&self, method: MapMethod) -> Option<f64> {
        self.methods
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, s)| s.hits as f64 / self.words.max(1) as f64)
    }
}

impl fmt::Display for Pointing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} scenes, {} correct captions, {} colour/shape words",
            self.scenes, self.correct, self.words
        )?;
        writeln!(f, "| method | pointing accuracy |\n|---|---|")?;
        for (m, s) in &self.methods {
            writeln!(
                f,
                "| {m} | {:.1} % ({}/{}) |",
                100.0 * s.hits as f64 / self.words.max(1) as f64,
                s.hits,
                self.words
            )?;
        }
        write!(
            f,
            "| chance (named objects' share of cells) | {:.1} % |",
            100.0 * self.chance()
        )
    }
}

/// Reads `scenes/<split>.json` of a synth set.
pub fn read_scenes(set: &Path, split: &str) -> Result<Vec<SceneRecord>> {
    let path = set.join("scenes").join(format!("{split}.json"));
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is {} a `native synth` set?)",
            path.display(),
            set.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Whether the peak-or-any cell (row, col) of a `rows × cols` grid over the unit square
/// intersects the disc of `o`.
pub fn cell_touches(o: &ObjectRecord, row: usize, col: usize, rows: usize, cols: usize) -> bool {
    let (x0, x1) = (col as f32 / cols as f32, (col + 1) as f32 / cols as f32);
    let (y0, y1) = (row as f32 / rows as f32, (row + 1) as f32 / rows as f32);
    let dx = o.cx.clamp(x0, x1) - o.cx;
    let dy = o.cy.clamp(y0, y1) - o.cy;
    dx * dx + dy * dy <= o.radius * o.radius
}

/// A colour or shape word of a caption and the objects it names.
#[derive(Debug, Clone, PartialEq)]
pub struct NamingWord {
    /// Index among the caption's words.
    pub word: usize,
    /// Indices into the scene's objects.
    pub objects: Vec<usize>,
}

/// The colour and shape words of `words` with the objects they name, when the caption is
/// correct (see the module docs); None otherwise.
pub fn naming_words(words: &[&str], objects: &[ObjectRecord]) -> Option<Vec<NamingWord>> {
    let colour_of = |w: &str| Colour::ALL.iter().find(|c| c.name() == w).map(|c| c.name());
    let shape_of = |w: &str| {
        ShapeKind::ALL
            .iter()
            .find(|s| s.name() == w || s.plural() == w)
            .map(|s| s.name())
    };
    let mut out = Vec::new();
    let mut named = BTreeSet::new();
    let mut pending_colour: Option<(usize, &str)> = None;
    for (i, w) in words.iter().enumerate() {
        // "squares," names squares: punctuation attached to a word is not part of it.
        let w = w.trim_matches(|c: char| !c.is_alphanumeric());
        if let Some(c) = colour_of(w) {
            if pending_colour.is_some() {
                return None;
            }
            pending_colour = Some((i, c));
        } else if let Some(s) = shape_of(w) {
            let (ci, c) = pending_colour.take()?;
            let members: Vec<usize> = (0..objects.len())
                .filter(|&k| objects[k].colour == c && objects[k].shape == s)
                .collect();
            if members.is_empty() || !named.insert((c, s)) {
                return None;
            }
            out.push(NamingWord {
                word: ci,
                objects: members.clone(),
            });
            out.push(NamingWord {
                word: i,
                objects: members,
            });
        }
    }
    let groups: BTreeSet<(&str, &str)> = objects
        .iter()
        .map(|o| (o.colour.as_str(), o.shape.as_str()))
        .collect();
    (pending_colour.is_none() && named == groups).then_some(out)
}

/// Options of [`pointing`].
#[derive(Debug, Clone)]
pub struct PointingOptions {
    /// The synth set.
    pub scenes: PathBuf,
    /// Its split.
    pub split: String,
    /// At most this many scenes (all when None).
    pub limit: Option<usize>,
    /// Methods to measure.
    pub methods: Vec<MapMethod>,
    /// Most tokens per greedy caption.
    pub max_length: usize,
}

/// Captions each scene greedily and scores every method's maps (see the module docs).
pub fn pointing(model: &CaptionModel, tokenizer: &Tokenizer, opts: &PointingOptions) -> Result<Pointing> {
    let records = read_scenes(&opts.scenes, &opts.split)?;
    let records = &records[..opts.limit.unwrap_or(records.len()).min(records.len())];
    if records.is_empty() {
        bail!("no scenes in {} ({} split)", opts.scenes.display(), opts.split);
    }
    let pre = PreprocessConfig::for_image_size(model.vision().config().image_size);
    let (rows, cols) = grid_shape(model.config())?;
    let t = model.config().text_config()?;
    let decode = DecodeOptions {
        strategy: Strategy::Greedy,
        max_length: opts.max_length,
        bos: t.bos_token_id,
        eos: t.eos_token_id,
    };
    let mut out = Pointing {
        scenes: records.len(),
        correct: 0,
        words: 0,
        chance_sum: 0.0,
        methods: opts
            .methods
            .iter()
            .map(|&m| (m, MethodScore::default()))
            .collect(),
    };
    for record in records {
        let path = opts
            .scenes
            .join("images")
            .join(&opts.split)
            .join(&record.file_name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let pixels = preprocess_bytes(&bytes, &pre).with_context(|| path.display().to_string())?;
        let mut tokens = caption_pixels(model, &[&pixels], &pre, &decode)?.remove(0).tokens;
        tokens.retain(|&id| id != t.eos_token_id);
        let texts = token_texts(tokenizer, &tokens)?;
        let mut words: Vec<&str> = Vec::new();
        let mut first_token: Vec<usize> = Vec::new();
        for (k, tt) in texts.iter().enumerate() {
            if !tt.text.is_empty() && tt.word_index == words.len() {
                words.push(&tt.word);
                first_token.push(k);
            }
        }
        let objects = &record.scene.objects;
        let Some(naming) = naming_words(&words, objects) else {
            continue;
        };
        out.correct += 1;
        let touches = |w: &crate::bench::pointing::NamingWord, r: usize, c: usize| {
            w.objects
                .iter()
                .any(|&k| cell_touches(&objects[k], r, c, rows, cols))
        };
        for w in &naming {
            out.words += 1;
            let inside = (0..rows * cols)
                .filter(|i| touches(w, i / cols, i % cols))
                .count();
            out.chance_sum += inside as f64 / (rows * cols) as f64;
        }
        for (method, score) in &mut out.methods {
            let maps = word_maps(model, &[&pixels], &tokens, *method)?;
            for w in &naming {
                let grid: &Grid = &maps[first_token[w.word]].frames[0];
                let (r, c) = grid.peak();
                score.hits += usize::from(touches(w, r, c));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(shape: &str, colour: &str, cx: f32, cy: f32, radius: f32) -> ObjectRecord {
        ObjectRecord {
            shape: shape.into(),
            colour: colour.into(),
            cx,
            cy,
            radius,
        }
    }

    #[test]
    fn a_cell_touches_a_disc_that_reaches_into_it() {
        let o = obj("circle", "red", 0.5, 0.5, 0.1);
        // 3x3: only the centre cell.
        let hit: Vec<(usize, usize)> = (0..9)
            .map(|i| (i / 3, i % 3))
            .filter(|&(r, c)| cell_touches(&o, r, c, 3, 3))
            .collect();
        assert_eq!(hit, vec![(1, 1)]);
        // Radius 0.2 reaches past 1/3 and 2/3 sideways (0.3 < 1/3? no: 0.5 - 0.2 = 0.3 < 0.333).
        let big = obj("circle", "red", 0.5, 0.5, 0.2);
        assert!(cell_touches(&big, 1, 0, 3, 3));
        // ... but not the corner (distance to (1/3, 1/3) is 0.236 > 0.2).
        assert!(!cell_touches(&big, 0, 0, 3, 3));
    }

    #[test]
    fn correct_captions_name_every_group_once() {
        let objects = vec![
            obj("circle", "red", 0.17, 0.5, 0.1),
            obj("square", "blue", 0.5, 0.18, 0.15),
            obj("square", "blue", 0.5, 0.82, 0.15),
        ];
        let words: Vec<&str> = "a small red circle on the left and two large blue squares,"
            .split(' ')
            .collect();
        let naming = naming_words(&words, &objects).unwrap();
        let got: Vec<(usize, Vec<usize>)> = naming.into_iter().map(|w| (w.word, w.objects)).collect();
        assert_eq!(
            got,
            vec![(2, vec![0]), (3, vec![0]), (10, vec![1, 2]), (11, vec![1, 2])]
        );
        // A wrong colour, a missing group, a repeated group, a dangling colour: not correct.
        for bad in [
            "a green circle and two blue squares",
            "a red circle",
            "a red circle and a red circle and two blue squares",
            "a red circle and two blue squares on a red",
        ] {
            let words: Vec<&str> = bad.split(' ').collect();
            assert_eq!(naming_words(&words, &objects), None, "{bad}");
        }
    }
}
