//! PTB lexer sub-patterns for apostrophe words, URLs, e-mail, hashtags and abbreviations.

use super::ptb_chars as ch;
use super::ptb_macros::{acro, apos, apos_etc, word};
use super::ptb_pat::{alt, cls, lit, lits, opt, plus, rep, seq, star, Pat};

/// `APOWORD`: words that keep their apostrophe (`o'clock`-like, `'n'`, `'90s`, `c'mon`, ...).
pub fn apoword() -> Pat {
    let letters = || star(cls(ch::letter));
    let vowel_y = |c: char| "aeiouyAEIOUY".contains(c);
    let after_vowel = |c: char| "aeiou".contains(c) || c.is_ascii_uppercase();
    let initial = |c: char| matches!(c, 'A'..='H' | 'J'..='X' | 'Z' | 'n');
    alt(vec![
        seq(vec![apos(), lit("n"), opt(apos())]),
        seq(vec![cls(|c| "lLdDjJ".contains(c)), apos()]),
        seq(vec![lits(&["Dunkin", "somethin", "ol"]), apos()]),
        seq(vec![apos(), lit("em")]),
        seq(vec![
            cls(initial),
            apos_etc(),
            cls(ch::letter),
            cls(ch::letter),
            letters(),
        ]),
        seq(vec![apos(), cls(|c| ('2'..='9').contains(&c)), lit("0s")]),
        seq(vec![apos(), lit("til"), opt(lit("l"))]),
        seq(vec![
            plus(cls(ch::letter)),
            cls(vowel_y),
            apos_etc(),
            cls(after_vowel),
            letters(),
        ]),
        seq(vec![apos(), lit("cause")]),
        seq(vec![lit("cont'd"), opt(lit("."))]),
        lits(&["nor'easter", "c'mon", "e'er", "s'mores", "ev'ry", "li'l", "nat'l"]),
    ])
}

/// `FULLURL`: `http://...` up to a sensible final character.
pub fn full_url() -> Pat {
    seq(vec![
        lit("http"),
        opt(lit("s")),
        lit("://"),
        plus(cls(ch::url_char)),
        cls(ch::url_end),
    ])
}

/// `LIKELYURL`: `www.x.org` or `x.com`, optionally with a path.
pub fn likely_url() -> Pat {
    let www = seq(vec![
        lit("www."),
        plus(seq(vec![plus(cls(ch::www_label)), lit(".")])),
        rep(cls(ch::ascii_letter), 2, Some(4)),
    ]);
    let dom = seq(vec![
        plus(seq(vec![plus(cls(ch::dom_label)), lit(".")])),
        lits(&["com", "net", "org", "edu"]),
    ]);
    let path = seq(vec![lit("/"), plus(cls(ch::url_char)), cls(ch::url_end)]);
    seq(vec![alt(vec![www, dom]), opt(path)])
}

/// `EMAIL`.
pub fn email() -> Pat {
    let label = || plus(cls(ch::email_label));
    seq(vec![
        cls(ch::ascii_alnum),
        star(cls(ch::email_char)),
        lit("@"),
        star(seq(vec![label(), lit(".")])),
        label(),
    ])
}

/// `TWITTER`: `@name` or `#word`.
pub fn twitter() -> Pat {
    let name_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    alt(vec![
        seq(vec![lit("@"), cls(name_start), star(cls(name_char))]),
        seq(vec![lit("#"), word()]),
    ])
}

/// A literal whose first letter must be exactly `first` (`[A]rk` in the original), the rest caseless.
fn cap(first: char, rest: &'static str) -> Pat {
    seq(vec![cls(move |c| c == first), lit(rest)])
}

/// `ABBREV1` without its dot: abbreviations usually followed by lower-case words.
fn abbrev1_stem() -> Pat {
    alt(vec![
        lits(&[
            "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
        ]),
        lits(&["Mon", "Tue", "Tues", "Wed", "Thu", "Thurs", "Fri"]),
        lits(&[
            "Ala", "Ariz", "Calif", "Colo", "Conn", "Dak", "Del", "Fla", "Ga", "Ind", "Kan", "Kans", "Ky",
        ]),
        lits(&[
            "La", "Md", "Mich", "Minn", "Mo", "Mont", "Neb", "Nev", "Okla", "Pa", "Penn", "Tenn", "Tex",
        ]),
        lits(&["Va", "Vt", "Wis", "Wisc", "Wyo"]),
        alt(vec![
            cap('A', "rk"),
            cap('I', "ll"),
            cap('M', "ass"),
            cap('M', "iss"),
            cap('O', "re"),
            cap('W', "ash"),
        ]),
        lits(&[
            "Inc", "Co", "Cos", "Corp", "Pty", "Ptys", "Ppty", "Pptys", "Ltd", "Plc", "Bancorp", "Dept",
        ]),
        lits(&["Bhd", "Assn", "Univ", "Intl", "Sys"]),
        lits(&["Ph", "tel", "est", "ext", "sq", "ft"]),
        lits(&[
            "Jr", "Sr", "Bros", "Ed.D", "Ph.D", "Blvd", "Rd", "Esq", "etc", "al", "seq",
        ]),
    ])
}

/// `ABBREV4`: titles and other abbreviations usually followed by a capitalised word.
pub fn abbrev4() -> Pat {
    alt(vec![
        cls(ch::ascii_letter),
        lits(&[
            "Mr", "Mrs", "Ms", "Dr", "Drs", "Prof", "Profs", "Sen", "Sens", "Rep", "Reps", "Atty", "Attys",
        ]),
        lits(&[
            "Lt", "Col", "Gen", "Messrs", "Gov", "Govs", "Adm", "Rev", "Maj", "Sgt", "Cpl", "Pvt", "Mt",
        ]),
        lits(&[
            "Capt", "St", "Ste", "Ave", "Pres", "Lieut", "Hon", "Brig", "Cmdr", "Comdr", "Pfc", "Spc",
        ]),
        lits(&[
            "Supt", "Supts", "Det", "vs", "Alex", "Wm", "Jos", "Cie", "a.k.a", "cf", "TREAS",
        ]),
        lits(&["Invt", "Elec", "Natl", "Mfg", "Mtg"]),
        cap('M', "iss"),
        acro(),
    ])
}

/// `ABBREV1`: `Inc.`, `etc.`, `Jan.`, ...
pub fn abbrev1() -> Pat {
    seq(vec![abbrev1_stem(), lit(".")])
}

/// `ABBREV2`: `ABBREV4` followed by its dot.
pub fn abbrev2() -> Pat {
    seq(vec![abbrev4(), lit(".")])
}

/// `TBSPEC`: treebank specials such as `-LRB-`, `pro-`, `S&P-500`.
pub fn tbspec() -> Pat {
    let amp = || alt(vec![lit("&"), lit("&amp;")]);
    alt(vec![
        seq(vec![
            lit("-"),
            lits(&["RRB", "LRB", "RCB", "LCB", "RSB", "LSB"]),
            lit("-"),
        ]),
        lits(&["C.D.s", "pro-", "anti-"]),
        seq(vec![lit("S"), amp(), lit("P-500")]),
        seq(vec![lit("S"), amp(), lit("Ls")]),
        seq(vec![lit("Cap"), apos(), lit("n")]),
        seq(vec![lit("c"), apos(), lit("est")]),
    ])
}

/// Abbreviations that keep their dot only before a number (`No. 5`, `fig.5`).
pub fn number_abbrev() -> Pat {
    seq(vec![
        lits(&[
            "No", "Nos", "Prop", "Fig", "Figs", "ca", "art", "bldg", "pp", "op",
        ]),
        lit("."),
    ])
}

/// Letter words joined by `.`, `!` or `?` without spaces (`dog.cat`, `h2o.xy`): one token.
pub fn dotted_words() -> Pat {
    let part = || seq(vec![cls(ch::letter), star(cls(ch::letter_or_digit))]);
    seq(vec![
        part(),
        plus(seq(vec![cls(|c| matches!(c, '.' | '!' | '?')), part()])),
    ])
}

/// Words after which a single-letter abbreviation is taken as a sentence end (`a b. The`).
const SENTENCE_STARTERS: &str = "About|According|Additionally|After|An|A|As|At|But|Earlier|He|Her|Here|\
However|If|In|It|Last|Many|More|Mr.|Ms.|Now|Once|One|Other|Our|She|Since|So|Some|Such|That|The|Their|Then|There|\
These|They|This|We|When|While|What|Yet|You";

/// One of [`SENTENCE_STARTERS`]: the first letter is case-sensitive (`[T]he`), the rest caseless.
pub fn sentence_starter() -> Pat {
    let words = SENTENCE_STARTERS.split('|');
    alt(words
        .filter_map(|w| w.chars().next().map(|first| cap(first, &w[1..])))
        .collect())
}

/// Emoticons such as `:)` or `;-P`.
pub fn smiley() -> Pat {
    let last = |c: char| "()DPdpO\\{@|[]".contains(c);
    seq(vec![
        opt(cls(|c| c == '<' || c == '>')),
        cls(|c| matches!(c, ':' | ';' | '=')),
        opt(cls(|c| matches!(c, '-' | 'o' | '*' | '\''))),
        cls(last),
    ])
}

/// `TBSPEC2`: `'99`-like year abbreviations.
pub fn tbspec2() -> Pat {
    seq(vec![apos(), cls(ch::ascii_digit), cls(ch::ascii_digit)])
}
