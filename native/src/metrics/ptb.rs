//! PTB tokenisation as pycocoevalcap 1.2 does it: Stanford CoreNLP 3.4.1
//! `PTBTokenizer -preserveLines -lowerCase`, then its punctuation tokens dropped.
//!
//! The lexer is a re-implementation of the JFlex rules (longest match, earlier rule on ties).
//! pycocoevalcap writes all captions of one call to a file, one per line and without a final
//! newline, so rules that need a following space or newline fail at the end of the *last* caption
//! only: [`ptb_tokenize_batch`] reproduces that.
//! Known deviation: a caption holding another line separator (`\r`, U+2028, ...) shifts every later
//! line in the original (it only replaces `\n`); here such characters are plain spaces.

use std::sync::OnceLock;

use super::ptb_rules::{all_rules, Act, Rule};

/// Tokens pycocoevalcap removes after tokenising (upper-case ones never match lower-cased text).
const PUNCTUATIONS: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";",
];

fn rules() -> &'static [Rule] {
    static RULES: OnceLock<Vec<Rule>> = OnceLock::new();
    RULES.get_or_init(all_rules)
}

/// (total length including trailing context, token length) of the rule's longest match at `start`.
fn rule_match(rule: &Rule, text: &[char], start: usize) -> Option<(usize, usize)> {
    let ends = rule.pat.ends(text, &[start]);
    let Some(ctx) = &rule.ctx else {
        return ends
            .last()
            .filter(|&&e| e > start)
            .map(|&e| (e - start, e - start));
    };
    ends.iter()
        .filter(|&&e| e > start)
        .filter_map(|&e| ctx.longest(text, e).map(|total| (total - start, e - start)))
        .max()
}

/// The winning rule at `start`: longest total match, earliest rule on ties.
fn best_rule(text: &[char], start: usize) -> Option<(usize, &'static Rule)> {
    let mut best: Option<(usize, usize, &'static Rule)> = None;
    for rule in rules().iter().filter(|r| r.pat.may_start(text[start])) {
        if let Some((total, len)) = rule_match(rule, text, start) {
            if best.is_none_or(|(t, _, _)| total > t) {
                best = Some((total, len, rule));
            }
        }
    }
    best.map(|(_, len, rule)| (len, rule))
}

fn latex_quotes(text: &str, probably_left: bool) -> String {
    let (single, double) = if probably_left { ("`", "``") } else { ("'", "''") };
    let s = text.replace("&apos;", single).replace('\'', single);
    let s = s.replace("&quot;", double).replace('"', double);
    s.chars()
        .map(|c| match c {
            '\u{91}' | '\u{2018}' | '\u{201B}' | '\u{2039}' => "`".to_string(),
            '\u{92}' | '\u{2019}' | '\u{203A}' => "'".to_string(),
            '\u{93}' | '\u{201C}' | '\u{AB}' => "``".to_string(),
            '\u{94}' | '\u{201D}' | '\u{BB}' => "''".to_string(),
            other => other.to_string(),
        })
        .collect()
}

fn fraction(c: char) -> String {
    match c {
        '\u{BC}' => "1/4".into(),
        '\u{BD}' => "1/2".into(),
        '\u{BE}' => "3/4".into(),
        '\u{2153}' => "1/3".into(),
        '\u{2154}' => "2/3".into(),
        other => other.to_string(),
    }
}

fn currency(c: char) -> String {
    match c {
        '\u{A2}' => "cents".into(),
        '\u{A3}' => "#".into(),
        '\u{80}' | '\u{A4}' | '\u{20A0}' | '\u{20AC}' => "$".into(),
        other => other.to_string(),
    }
}

fn replace_caseless_amp(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::new();
    let mut i = 0;
    while i < text.len() {
        if lower[i..].starts_with("&amp;") {
            out.push('&');
            i += 5;
        } else if let Some(c) = text[i..].chars().next() {
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The token a rule emits for `text`, or `None` when it emits nothing.
fn apply(act: Act, text: &str) -> Option<String> {
    let token = match act {
        Act::Keep => text.to_string(),
        Act::SoftHyphen => match text.replace('\u{AD}', "") {
            s if s.is_empty() => "-".to_string(),
            s => s,
        },
        Act::Amp => replace_caseless_amp(text),
        Act::Fixed(s) => s.to_string(),
        Act::Quote(left) => latex_quotes(text, left),
        Act::NoBreak => text.replace(' ', "\u{A0}"),
        Act::Fraction => text.chars().map(fraction).collect(),
        Act::Currency => text.chars().map(currency).collect(),
        Act::Hyphens if (3..=4).contains(&text.len()) => "--".to_string(),
        Act::Hyphens => text.to_string(),
        Act::EscapeBrackets => text
            .replace(' ', "\u{A0}")
            .replace('(', "-LRB-")
            .replace(')', "-RRB-"),
        Act::Skip => return None,
    };
    Some(token)
}

/// Raw PTB tokens (before lower-casing) of each `\n`-separated line of `text`.
///
/// The whole text is lexed at once because trailing contexts may look past a line end.
pub fn ptb_lex_lines(text: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = text.chars().collect();
    let mut lines = vec![Vec::new()];
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\n' {
            lines.push(Vec::new());
            i += 1;
            continue;
        }
        // A character no rule accepts is "untokenizable" and silently deleted.
        let Some((len, rule)) = best_rule(&chars, i) else {
            i += 1;
            continue;
        };
        let piece: String = chars[i..i + len].iter().collect();
        if let (Some(token), Some(line)) = (apply(rule.act, &piece), lines.last_mut()) {
            line.push(token);
        }
        i += len;
    }
    lines
}

/// Tokenise the captions that pycocoevalcap passes to one `PTBTokenizer` run, in that order.
///
/// They are joined into one file, a line each (inner `\n` become spaces), as the original does.
pub fn ptb_tokenize_batch(captions: &[&str]) -> Vec<String> {
    let joined: Vec<String> = captions.iter().map(|c| c.replace('\n', " ")).collect();
    let mut lines = ptb_lex_lines(&joined.join("\n")).into_iter();
    captions
        .iter()
        .map(|_| {
            let tokens = lines.next().unwrap_or_default();
            let kept: Vec<String> = tokens
                .into_iter()
                .map(|t| t.to_lowercase())
                .filter(|t| !PUNCTUATIONS.contains(&t.as_str()))
                .collect();
            kept.join(" ")
        })
        .collect()
}
