//! The named sub-patterns ("macros") of the PTB lexer, one function each.

use super::ptb_chars as ch;
use super::ptb_pat::{alt, cls, lit, lits, opt, plus, rep, seq, star, Pat};

/// `APOS`: an apostrophe character or the `&apos;` entity.
pub fn apos() -> Pat {
    alt(vec![cls(ch::apos), lit("&apos;")])
}

/// `APOSETCETERA`.
pub fn apos_etc() -> Pat {
    alt(vec![cls(ch::apos_etc), lit("&apos;")])
}

/// `SPLET`: an accented-vowel entity such as `&eacute;`.
fn splet() -> Pat {
    seq(vec![
        lit("&"),
        cls(|c| "aeiouAEIOU".contains(c)),
        lits(&["acute", "grave", "uml"]),
        lit(";"),
    ])
}

/// `WORD`: letters, marks and soft hyphens.
pub fn word() -> Pat {
    plus(alt(vec![cls(ch::word_char), splet()]))
}

/// `REDAUX`: `'s`, `'m`, `'d`, `'re`, `'ve`, `'ll`.
pub fn redaux() -> Pat {
    seq(vec![
        apos(),
        alt(vec![cls(|c| "msdMSD".contains(c)), lits(&["re", "ve", "ll"])]),
    ])
}

/// `SWORD`: a word that can take `n't`.
pub fn sword() -> Pat {
    let last = |c: char| c.is_ascii_alphabetic() && c != 'n' && c != 'N';
    seq(vec![
        star(cls(|c| c.is_ascii_alphabetic() || c == '\u{AD}')),
        cls(last),
        star(cls(|c| c == '\u{AD}')),
    ])
}

/// `SREDAUX`: `n't`.
pub fn sredaux() -> Pat {
    seq(vec![lit("n"), apos_etc(), lit("t")])
}

fn digits(min: usize, max: usize) -> Pat {
    rep(cls(ch::digit), min, Some(max))
}

/// `DATE`: `12/31/2014`, `1-2-99`.
pub fn date() -> Pat {
    let sep = || cls(|c| c == '-' || c == '/');
    seq(vec![digits(1, 2), sep(), digits(1, 2), sep(), digits(2, 4)])
}

/// `NUMBER`: signed integers and numbers with `.`, `:` or `,` groups.
pub fn number() -> Pat {
    let group = seq(vec![
        cls(|c| matches!(c, '.' | ':' | ',' | '\u{AD}' | '\u{66B}' | '\u{66C}')),
        plus(cls(ch::digit)),
    ]);
    let num = alt(vec![
        plus(cls(ch::digit)),
        seq(vec![star(cls(ch::digit)), plus(group)]),
    ]);
    seq(vec![opt(cls(|c| c == '-' || c == '+')), num])
}

/// `SUBSUPNUM`: superscript or subscript numbers.
pub fn subsupnum() -> Pat {
    let sup = |c: char| {
        matches!(
            c,
            '\u{2070}' | '\u{B9}' | '\u{B2}' | '\u{B3}' | '\u{2074}'..='\u{2079}'
        )
    };
    let sub = |c: char| matches!(c, '\u{2080}'..='\u{2089}');
    let sign = |c: char| matches!(c, '\u{207A}' | '\u{207B}' | '\u{208A}' | '\u{208B}');
    seq(vec![opt(cls(sign)), alt(vec![plus(cls(sup)), plus(cls(sub))])])
}

/// `FRAC`: `3/4`, `5 1/2` (the space becomes a no-break space).
pub fn frac() -> Pat {
    let slash = alt(vec![seq(vec![opt(lit("\\")), lit("/")]), lit("\u{2044}")]);
    let whole = seq(vec![digits(1, 4), cls(|c| matches!(c, '-' | ' ' | '\u{A0}'))]);
    seq(vec![opt(whole), digits(1, 4), slash, digits(1, 4)])
}

/// `HYPHEN`-joined parts of a `THING`, each optionally `d'`/`o'`/`l'`-prefixed.
fn thing_part() -> Pat {
    let prefix = seq(vec![
        cls(|c| "dDoOlL".contains(c)),
        apos_etc(),
        cls(ch::letter_or_digit),
    ]);
    seq(vec![opt(prefix), plus(cls(ch::letter_or_digit))])
}

/// `THING`: alphanumeric words joined by hyphens or underscores.
pub fn thing() -> Pat {
    seq(vec![thing_part(), star(seq(vec![cls(ch::hyphen), thing_part()]))])
}

/// `THINGA`: `AT&T`-like capitalised compounds.
pub fn thinga() -> Pat {
    let joiner = alt(vec![cls(|c| c == '+' || c == '&'), lit("&amp;")]);
    let caps = || plus(cls(ch::ascii_upper));
    seq(vec![caps(), plus(seq(vec![joiner, caps()]))])
}

/// `THING3`: slash compounds such as `and/or`.
pub fn thing3() -> Pat {
    let suffixes = || rep(seq(vec![lit("-"), plus(cls(ch::ascii_letter))]), 0, Some(2));
    let part = seq(vec![
        opt(lit("\\")),
        lit("/"),
        plus(cls(ch::ascii_alnum)),
        suffixes(),
    ]);
    seq(vec![
        plus(cls(ch::ascii_alnum)),
        suffixes(),
        rep(part, 1, Some(2)),
    ])
}

/// `ACRO`: `U.S`, `a.k.a`-like letter-dot sequences (without the final dot).
pub fn acro() -> Pat {
    let dotted = seq(vec![
        cls(ch::ascii_letter),
        plus(seq(vec![lit("."), cls(ch::ascii_letter)])),
    ]);
    let us = seq(vec![
        lits(&["Canada", "Sino", "Korean", "EU", "Japan", "non"]),
        lit("-U.S"),
    ]);
    let usuk = seq(vec![lit("U.S.-"), lits(&["U.K", "U.S.S.R"])]);
    alt(vec![dotted, us, usuk])
}

/// `HTHING`: hyphenated alphanumerics that may contain dots and commas.
pub fn hthing() -> Pat {
    let tail = alt(vec![
        plus(cls(|c| ch::ascii_alnum(c) || c == '\u{AD}')),
        seq(vec![acro(), lit(".")]),
    ]);
    let head = star(cls(|c| ch::ascii_alnum(c) || matches!(c, '.' | ',' | '\u{AD}')));
    seq(vec![cls(ch::ascii_alnum), head, plus(seq(vec![lit("-"), tail]))])
}

/// `SGML`: a well-formed tag such as `<b>`, `<a href="x">`, `</p>` or `<!-- x`, on one line.
pub fn sgml() -> Pat {
    let name = || seq(vec![cls(ch::ascii_letter), star(cls(ch::sgml_name))]);
    let spaces = || star(lit(" "));
    let quoted = |q: &'static str| {
        seq(vec![
            lit(q),
            star(cls(|c| !matches!(c, '\'' | '"' | '\r' | '\n'))),
            lit(q),
        ])
    };
    let value = alt(vec![quoted("'"), quoted("\""), name()]);
    let attr = alt(vec![
        name(),
        seq(vec![name(), spaces(), lit("="), spaces(), value]),
    ]);
    let open = seq(vec![
        name(),
        star(seq(vec![plus(lit(" ")), attr])),
        spaces(),
        opt(lit("/")),
    ]);
    let decl = seq(vec![
        cls(|c| c == '!' || c == '?'),
        cls(|c| c.is_ascii_alphabetic() || c == '-'),
        star(cls(|c| !matches!(c, '>' | '\r' | '\n'))),
    ]);
    let close = seq(vec![lit("/"), name()]);
    seq(vec![lit("<"), alt(vec![decl, open, close]), spaces(), lit(">")])
}

/// `LDOTS`: ellipses, spaced or not.
pub fn ldots() -> Pat {
    let spaced = seq(vec![
        rep(
            seq(vec![lit("."), cls(|c| c == ' ' || c == '\u{A0}')]),
            2,
            Some(4),
        ),
        lit("."),
    ]);
    alt(vec![
        rep(lit("."), 3, Some(5)),
        spaced,
        cls(|c| c == '\u{85}' || c == '\u{2026}'),
    ])
}

/// `QUOTES`: apostrophes, `''` and one or two typographic quotes.
pub fn quotes() -> Pat {
    alt(vec![apos(), lit("''"), rep(cls(ch::quote_char), 1, Some(2))])
}

/// `PHONE`: telephone numbers with spaces, dashes or dots.
pub fn phone() -> Pat {
    let d = |min, max| rep(cls(ch::ascii_digit), min, Some(max));
    let sep = || cls(|c| matches!(c, '-' | ' ' | '\u{A0}'));
    let plus_signs = || opt(seq(vec![lit("+"), opt(lit("+"))]));
    let area = seq(vec![
        lit("("),
        d(2, 3),
        lit(")"),
        opt(cls(|c| c == ' ' || c == '\u{A0}')),
    ]);
    let prefixed = seq(vec![plus_signs(), opt(seq(vec![d(2, 4), sep()])), d(2, 4), sep()]);
    let spaced = seq(vec![alt(vec![area, prefixed]), d(3, 4), opt(sep()), d(3, 5)]);
    let dotted_head = opt(seq(vec![plus_signs(), d(2, 4), lit(".")]));
    let dotted = seq(vec![dotted_head, d(2, 4), lit("."), d(3, 4), lit("."), d(3, 5)]);
    alt(vec![spaced, dotted])
}
