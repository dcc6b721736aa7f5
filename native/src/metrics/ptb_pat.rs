//! A tiny regular-expression engine for the PTB lexer rules.
//!
//! JFlex picks the rule with the longest match, so every pattern here reports *all* the positions
//! where a match starting at a given position can end (an NFA simulation over position sets).

/// A regular pattern over `char`s; literals compare case-insensitively, as in a `%caseless` JFlex spec.
pub enum Pat {
    /// One character accepted by the predicate (character classes ignore `%caseless`, as in JFlex).
    Class(Box<dyn Fn(char) -> bool + Send + Sync>),
    /// A literal string, compared without regard to case.
    Lit(&'static str),
    /// The patterns one after another.
    Seq(Vec<Pat>),
    /// Any one of the patterns.
    Alt(Vec<Pat>),
    /// The pattern repeated between `min` and `max` (unbounded when `None`) times.
    Rep(Box<Pat>, usize, Option<usize>),
}

/// Shorthand for [`Pat::Class`].
pub fn cls(f: impl Fn(char) -> bool + Send + Sync + 'static) -> Pat {
    Pat::Class(Box::new(f))
}

/// Shorthand for [`Pat::Lit`].
pub fn lit(s: &'static str) -> Pat {
    Pat::Lit(s)
}

/// Shorthand for [`Pat::Seq`].
pub fn seq(parts: Vec<Pat>) -> Pat {
    Pat::Seq(parts)
}

/// Shorthand for [`Pat::Alt`].
pub fn alt(parts: Vec<Pat>) -> Pat {
    Pat::Alt(parts)
}

/// Alternation of caseless literals.
pub fn lits(words: &[&'static str]) -> Pat {
    Pat::Alt(words.iter().map(|w| Pat::Lit(w)).collect())
}

/// `p{min,max}`.
pub fn rep(p: Pat, min: usize, max: Option<usize>) -> Pat {
    Pat::Rep(Box::new(p), min, max)
}

/// `p*`.
pub fn star(p: Pat) -> Pat {
    rep(p, 0, None)
}

/// `p+`.
pub fn plus(p: Pat) -> Pat {
    rep(p, 1, None)
}

/// `p?`.
pub fn opt(p: Pat) -> Pat {
    rep(p, 0, Some(1))
}

fn chars_eq_caseless(a: char, b: char) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(&b);
    }
    a == b || a.to_lowercase().eq(b.to_lowercase()) || a.to_uppercase().eq(b.to_uppercase())
}

fn lit_ends(text: &[char], starts: &[usize], word: &str) -> Vec<usize> {
    let n = word.chars().count();
    starts
        .iter()
        .filter(|&&s| {
            s + n <= text.len()
                && word
                    .chars()
                    .zip(&text[s..s + n])
                    .all(|(w, &t)| chars_eq_caseless(w, t))
        })
        .map(|&s| s + n)
        .collect()
}

fn normalise(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v.dedup();
    v
}

fn rep_ends(text: &[char], starts: &[usize], p: &Pat, min: usize, max: Option<usize>) -> Vec<usize> {
    let mut out = if min == 0 { starts.to_vec() } else { Vec::new() };
    let mut frontier = starts.to_vec();
    let mut count = 0;
    while !frontier.is_empty() && max.is_none_or(|m| count < m) {
        let next = p.ends(text, &frontier);
        count += 1;
        if count < min {
            frontier = next;
            continue;
        }
        // Past the minimum, a position already reached adds nothing new (this also ends empty loops).
        frontier = next.into_iter().filter(|e| !out.contains(e)).collect();
        out.extend(&frontier);
    }
    normalise(out)
}

impl Pat {
    /// Every end position of a match of `self` that starts at one of `starts` (sorted, no repeats).
    pub fn ends(&self, text: &[char], starts: &[usize]) -> Vec<usize> {
        match self {
            Pat::Class(f) => starts
                .iter()
                .filter(|&&s| s < text.len() && f(text[s]))
                .map(|&s| s + 1)
                .collect(),
            Pat::Lit(word) => lit_ends(text, starts, word),
            Pat::Seq(parts) => parts.iter().fold(starts.to_vec(), |cur, p| {
                if cur.is_empty() {
                    cur
                } else {
                    p.ends(text, &cur)
                }
            }),
            Pat::Alt(parts) => normalise(parts.iter().flat_map(|p| p.ends(text, starts)).collect()),
            Pat::Rep(p, min, max) => rep_ends(text, starts, p, *min, *max),
        }
    }

    /// Whether the pattern matches the empty string.
    fn nullable(&self) -> bool {
        match self {
            Pat::Class(_) => false,
            Pat::Lit(word) => word.is_empty(),
            Pat::Seq(parts) => parts.iter().all(Pat::nullable),
            Pat::Alt(parts) => parts.iter().any(Pat::nullable),
            Pat::Rep(p, min, _) => *min == 0 || p.nullable(),
        }
    }

    /// A cheap pre-check: `false` only when no non-empty match can start with `c`.
    pub fn may_start(&self, c: char) -> bool {
        match self {
            Pat::Class(f) => f(c),
            Pat::Lit(word) => word.chars().next().is_none_or(|w| chars_eq_caseless(w, c)),
            Pat::Seq(parts) => {
                for p in parts {
                    if p.may_start(c) {
                        return true;
                    }
                    if !p.nullable() {
                        return false;
                    }
                }
                false
            }
            Pat::Alt(parts) => parts.iter().any(|p| p.may_start(c)),
            Pat::Rep(p, _, _) => p.may_start(c),
        }
    }

    /// The longest match starting at `start`, as an end position.
    pub fn longest(&self, text: &[char], start: usize) -> Option<usize> {
        self.ends(text, &[start]).last().copied()
    }
}
