//! The PTB lexer's rule table, in the original's order (earlier rules win ties on length).

use super::ptb_chars as ch;
use super::ptb_macros as m;
use super::ptb_pat::{alt, cls, lit, lits, opt, plus, rep, seq, Pat};
use super::ptb_words as w;

/// What a rule does with the text it matched.
#[derive(Clone, Copy)]
pub enum Act {
    /// Emit the text unchanged.
    Keep,
    /// Emit the text without soft hyphens (a lone soft hyphen becomes `-`).
    SoftHyphen,
    /// Emit the text with `&amp;` turned into `&`.
    Amp,
    /// Emit a fixed string.
    Fixed(&'static str),
    /// Emit LaTeX-style quotes; `true` when the quote probably opens.
    Quote(bool),
    /// Emit the text with spaces made non-breaking (SGML tags, fractions).
    NoBreak,
    /// Emit a vulgar-fraction character spelt out (`½` → `1/2`).
    Fraction,
    /// Emit a currency sign in PTB form (`£` → `#`).
    Currency,
    /// Emit `--` for three or four hyphens, else the hyphens.
    Hyphens,
    /// Emit the text with non-breaking spaces and round brackets escaped (phone numbers, emoticons).
    EscapeBrackets,
    /// Emit nothing (spaces; unknown characters).
    Skip,
}

/// One lexer rule: a pattern, an optional trailing context (`r/s` in JFlex) and an action.
pub struct Rule {
    /// The text the token is made from.
    pub pat: Pat,
    /// What must follow, counted for the longest match but not consumed.
    pub ctx: Option<Pat>,
    /// What to emit.
    pub act: Act,
}

fn r(pat: Pat, act: Act) -> Rule {
    Rule { pat, ctx: None, act }
}

fn rc(pat: Pat, ctx: Pat, act: Act) -> Rule {
    Rule {
        pat,
        ctx: Some(ctx),
        act,
    }
}

fn dotted(p: Pat) -> Pat {
    seq(vec![p, lit(".")])
}

/// Contractions the tokenizer splits ("assimilations"): `cannot` → `can not`, `gonna` → `gon na`.
fn assimilations() -> Vec<Rule> {
    let pairs: [(&'static str, &'static str); 6] = [
        ("can", "not"),
        ("gon", "na"),
        ("got", "ta"),
        ("lem", "me"),
        ("gim", "me"),
        ("wan", "na"),
    ];
    let mut rules: Vec<Rule> = pairs
        .iter()
        .map(|&(a, b)| rc(lit(a), lit(b), Act::Keep))
        .collect();
    rules.push(rc(
        seq(vec![m::apos(), lit("t")]),
        lits(&["is", "was"]),
        Act::Keep,
    ));
    rules.push(rc(lit("more"), seq(vec![m::apos(), lit("n")]), Act::Keep));
    rules
}

fn entity_rules() -> Vec<Rule> {
    let dash = alt(vec![
        seq(vec![lit("&"), lits(&["MD", "mdash", "ndash"]), lit(";")]),
        cls(|c| matches!(c, '\u{96}' | '\u{97}' | '\u{2013}' | '\u{2014}' | '\u{2015}')),
    ]);
    let hash = seq(vec![lit("#"), plus(cls(ch::ascii_digit))]);
    let punct = lits(&["HT", "TL", "UR", "LR", "QC", "QL", "QR", "odq", "cdq"]);
    let sppunc = seq(vec![lit("&"), alt(vec![punct, hash]), lit(";")]);
    vec![
        r(m::sgml(), Act::NoBreak),
        r(dash, Act::Fixed("--")),
        r(lit("&amp;"), Act::Fixed("&")),
        r(sppunc, Act::Keep),
    ]
}

fn word_rules() -> Vec<Rule> {
    let not_letter = |c: char| !c.is_ascii_alphabetic();
    vec![
        rc(m::word(), m::redaux(), Act::SoftHyphen),
        rc(m::sword(), m::sredaux(), Act::SoftHyphen),
        r(m::word(), Act::SoftHyphen),
        r(w::apoword(), Act::Keep),
        rc(seq(vec![lit("y"), m::apos()]), cls(ch::letter), Act::Keep),
        r(w::full_url(), Act::Keep),
        r(w::likely_url(), Act::Keep),
        r(w::email(), Act::Keep),
        r(w::twitter(), Act::Keep),
        rc(m::redaux(), cls(not_letter), Act::Quote(false)),
        r(m::sredaux(), Act::Quote(false)),
    ]
}

fn number_rules() -> Vec<Rule> {
    let dolsign = alt(vec![
        seq(vec![rep(cls(ch::ascii_upper), 0, None), lit("$")]),
        lit("#"),
    ]);
    vec![
        r(m::date(), Act::Keep),
        r(m::number(), Act::SoftHyphen),
        r(m::subsupnum(), Act::Keep),
        r(m::frac(), Act::NoBreak),
        r(
            cls(|c| matches!(c, '\u{BC}'..='\u{BE}' | '\u{2153}'..='\u{215E}')),
            Act::Fraction,
        ),
        r(w::tbspec(), Act::Amp),
        r(m::thing3(), Act::Keep),
        r(dolsign, Act::Keep),
        r(cls(ch::currency), Act::Currency),
    ]
}

/// `. The` or `. <tag>`: a single-letter abbreviation that ends a sentence gives up its dot.
fn single_letter_sentence_end() -> Pat {
    let starter = seq(vec![w::sentence_starter(), cls(ch::space_nl)]);
    seq(vec![
        lit("."),
        plus(cls(ch::space_nl)),
        alt(vec![starter, m::sgml()]),
    ])
}

fn abbreviation_rules() -> Vec<Rule> {
    vec![
        rc(cls(ch::ascii_letter), single_letter_sentence_end(), Act::Keep),
        rc(
            w::number_abbrev(),
            seq(vec![opt(cls(ch::space)), cls(ch::digit)]),
            Act::Keep,
        ),
        r(w::abbrev1(), Act::Keep),
        r(w::abbrev2(), Act::Keep),
        rc(w::abbrev4(), cls(ch::space), Act::Keep),
        rc(m::acro(), cls(ch::space_nl), Act::Keep),
        rc(w::tbspec2(), cls(ch::space_nl), Act::Keep),
        rc(dotted(m::word()), cls(ch::insentp), Act::SoftHyphen),
        r(m::phone(), Act::EscapeBrackets),
        r(w::dotted_words(), Act::Keep),
        rc(
            w::smiley(),
            cls(|c| !c.is_ascii_alphanumeric()),
            Act::EscapeBrackets,
        ),
    ]
}

fn punctuation_rules() -> Vec<Rule> {
    let dblquot = || alt(vec![lit("\""), lit("&quot;")]);
    let opens_quote = |c: char| c.is_ascii_alphanumeric() || c == '$';
    let fnmarks = alt(vec![plus(lit("@")), plus(lit("#")), plus(lit("_"))]);
    let asts = alt(vec![plus(lit("*")), rep(lit("\\*"), 1, Some(3))]);
    vec![
        rc(dblquot(), cls(opens_quote), Act::Quote(true)),
        r(dblquot(), Act::Quote(false)),
        r(lit("\u{7F}"), Act::Skip),
        r(lit("["), Act::Fixed("-LSB-")),
        r(alt(vec![lit("<"), lit("&lt;")]), Act::Fixed("<")),
        r(lit("]"), Act::Fixed("-RSB-")),
        r(alt(vec![lit(">"), lit("&gt;")]), Act::Fixed(">")),
        r(lit("{"), Act::Fixed("-LCB-")),
        r(lit("}"), Act::Fixed("-RCB-")),
        r(lit("("), Act::Fixed("-LRB-")),
        r(lit(")"), Act::Fixed("-RRB-")),
        r(plus(lit("-")), Act::Hyphens),
        r(m::ldots(), Act::Fixed("...")),
        r(fnmarks, Act::Keep),
        r(asts, Act::Keep),
        r(cls(ch::insentp), Act::Keep),
        r(plus(cls(|c| c == '?' || c == '!')), Act::Keep),
        r(cls(ch::sent_final), Act::Keep),
        r(lit("="), Act::Keep),
        r(lit("/"), Act::Keep),
    ]
}

fn thing_rules() -> Vec<Rule> {
    let quote_ctx = seq(vec![
        cls(ch::ascii_letter),
        cls(|c| !matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{A0}')),
    ]);
    vec![
        rc(dotted(m::hthing()), cls(ch::insentp), Act::SoftHyphen),
        r(m::hthing(), Act::SoftHyphen),
        rc(dotted(m::thing()), cls(ch::insentp), Act::Keep),
        r(m::thing(), Act::Keep),
        rc(dotted(m::thinga()), cls(ch::insentp), Act::Amp),
        r(m::thinga(), Act::Amp),
        rc(lit("'"), quote_ctx, Act::Quote(true)),
        r(m::redaux(), Act::Quote(false)),
        r(m::quotes(), Act::Quote(false)),
        r(lits(&["<<", ">>"]), Act::Keep),
        r(cls(ch::misc_symbol), Act::Keep),
        r(alt(vec![plus(cls(ch::space)), cls(ch::ignorable)]), Act::Skip),
        r(cls(ch::newline), Act::Skip),
        r(lit("&nbsp;"), Act::Skip),
    ]
}

/// All rules in priority order.
pub fn all_rules() -> Vec<Rule> {
    let groups = [
        assimilations(),
        entity_rules(),
        word_rules(),
        number_rules(),
        abbreviation_rules(),
        punctuation_rules(),
        thing_rules(),
    ];
    groups.into_iter().flatten().collect()
}
