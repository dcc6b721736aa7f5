//! Character classes of the Stanford PTB lexer (CoreNLP 3.4.1), as plain predicates.
//!
//! JFlex of that era works on UTF-16 units, so characters outside the BMP never belong to a class.

/// Java `Character.isLetter` for BMP characters (Rust's `Alphabetic` minus letter-numbers).
pub fn letter(c: char) -> bool {
    (c as u32) <= 0xFFFF && c.is_alphabetic() && !c.is_numeric()
}

/// Start of each block of ten decimal digits (Unicode `Nd`) in the BMP.
const DIGIT_BLOCKS: [u32; 37] = [
    0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50,
    0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
];

/// JFlex `[:digit:]` (Java `Character.isDigit`) for BMP characters.
pub fn digit(c: char) -> bool {
    let u = c as u32;
    DIGIT_BLOCKS.iter().any(|&b| (b..b + 10).contains(&u))
}

/// `[:letter:]|[:digit:]`.
pub fn letter_or_digit(c: char) -> bool {
    letter(c) || digit(c)
}

/// The extra characters (soft hyphen, combining marks) that may sit inside a `WORD`.
pub fn word_extra(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0237..=0x024F | 0x02C2..=0x02C5 | 0x02D2..=0x02DF | 0x02E5..=0x02FF | 0x0300..=0x036F
        | 0x0370..=0x037D | 0x0384 | 0x0385 | 0x03CF | 0x03F6 | 0x03FC..=0x03FF | 0x0483..=0x0487
        | 0x0591..=0x05BD | 0x05BF | 0x05C1 | 0x05C2 | 0x05C4 | 0x05C5 | 0x05C7 | 0x064B..=0x065E | 0x0670
        | 0x0900..=0x0903 | 0x093C | 0x093E..=0x094E | 0x0951..=0x0955 | 0x0E30..=0x0E3A | 0x0E47..=0x0E4E)
}

/// One character of a `WORD` (entities are handled by the pattern).
pub fn word_char(c: char) -> bool {
    letter(c) || word_extra(c)
}

/// `[A-Za-z]`.
pub fn ascii_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
}

/// `[A-Za-z0-9]`.
pub fn ascii_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// `[0-9]`.
pub fn ascii_digit(c: char) -> bool {
    c.is_ascii_digit()
}

/// `[A-Z]`.
pub fn ascii_upper(c: char) -> bool {
    c.is_ascii_uppercase()
}

/// `SPACE`: the horizontal spaces the lexer skips.
pub fn space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{A0}' | '\u{2000}'..='\u{200A}' | '\u{3000}')
}

/// `NEWLINE` characters (one line each, as the lexer sees them).
pub fn newline(c: char) -> bool {
    matches!(
        c,
        '\r' | '\n' | '\u{2028}' | '\u{2029}' | '\u{B}' | '\u{C}' | '\u{85}'
    )
}

/// `SPACENL`.
pub fn space_nl(c: char) -> bool {
    space(c) || newline(c)
}

/// Characters that the lexer drops silently besides `SPACE`.
pub fn ignorable(c: char) -> bool {
    matches!(
        c,
        '\0' | '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{FEFF}' | '\u{7F}'
    )
}

/// `APOS` as a single character (the `&apos;` entity is handled by the pattern).
pub fn apos(c: char) -> bool {
    matches!(c, '\'' | '\u{92}' | '\u{2019}')
}

/// `APOSETCETERA` minus the entity: apostrophes plus the left single quotes seen inside words.
pub fn apos_etc(c: char) -> bool {
    apos(c) || matches!(c, '\u{91}' | '\u{2018}' | '\u{201B}')
}

/// `HYPHEN`: characters that join the parts of a `THING`.
pub fn hyphen(c: char) -> bool {
    matches!(c, '-' | '_' | '\u{58A}' | '\u{2010}' | '\u{2011}')
}

/// `INSENTP`: sentence-internal punctuation.
pub fn insentp(c: char) -> bool {
    matches!(c, ',' | ';' | ':' | '\u{3001}')
}

/// `DOLSIGN2`: currency signs other than `$`.
pub fn currency(c: char) -> bool {
    matches!(
        c,
        '\u{A2}'
            | '\u{A3}'
            | '\u{A4}'
            | '\u{A5}'
            | '\u{80}'
            | '\u{20A0}'
            | '\u{20AC}'
            | '\u{60B}'
            | '\u{E3F}'
            | '\u{20A4}'
            | '\u{FFE0}'
            | '\u{FFE1}'
            | '\u{FFE5}'
            | '\u{FFE6}'
    )
}

/// Single-character quote marks of `QUOTES`.
pub fn quote_char(c: char) -> bool {
    matches!(
        c,
        '`' | '\u{2018}'..='\u{201F}' | '\u{91}'..='\u{94}' | '\u{2039}' | '\u{203A}' | '\u{AB}' | '\u{BB}'
    )
}

/// Sentence-final punctuation other than `?` and `!`.
pub fn sent_final(c: char) -> bool {
    matches!(
        c,
        '.' | '\u{A1}' | '\u{BF}' | '\u{37E}' | '\u{589}' | '\u{61F}' | '\u{6D4}' | '\u{700}'..='\u{702}'
    ) || matches!(c, '\u{7FA}' | '\u{3002}')
}

/// `MISCSYMBOL`: symbols that stand alone as tokens.
pub fn misc_symbol(c: char) -> bool {
    matches!(c, '+' | '%' | '&' | '~' | '^' | '|' | '\\' | '\u{A6}'..='\u{A9}' | '\u{AC}' | '\u{AE}'..='\u{BA}')
        || matches!(
            c,
            '\u{D7}' | '\u{F7}' | '\u{2016}' | '\u{2017}' | '\u{2020}'..='\u{2023}'
        )
        || matches!(c, '\u{2030}'..='\u{2038}' | '\u{203B}' | '\u{203E}'..='\u{2042}' | '\u{2044}')
        || matches!(c, '\u{207A}'..='\u{207F}' | '\u{208A}'..='\u{208E}' | '\u{2100}'..='\u{214F}')
        || matches!(c, '\u{2190}'..='\u{21FF}' | '\u{2200}'..='\u{2BFF}' | '\u{3012}' | '\u{30FB}')
        || matches!(c, '\u{FF01}'..='\u{FF0F}' | '\u{FF1A}'..='\u{FF20}' | '\u{FF3B}'..='\u{FF40}')
        || matches!(c, '\u{FF5B}'..='\u{FF65}')
}

/// Characters a URL may not contain (`[^ \t\n\f\r"<>|()]`).
pub fn url_char(c: char) -> bool {
    !matches!(
        c,
        ' ' | '\t' | '\n' | '\u{C}' | '\r' | '"' | '<' | '>' | '|' | '(' | ')'
    )
}

/// Characters a URL may not end with.
pub fn url_end(c: char) -> bool {
    url_char(c) && !matches!(c, '.' | '!' | '?' | '{' | '}' | ',' | '-')
}

/// Characters of a domain label in `www.` URLs.
pub fn www_label(c: char) -> bool {
    url_char(c) && !matches!(c, '.' | '!' | '?' | '{' | '}' | ',')
}

/// Characters of a domain label before `.com` and friends (the original's `-_` is a range).
pub fn dom_label(c: char) -> bool {
    www_label(c) && !matches!(c, '`' | '\'' | '$' | ','..='_')
}

/// Characters of an e-mail address (curly braces and a closing curly quote end it in 3.4.1).
pub fn email_char(c: char) -> bool {
    url_char(c) && !matches!(c, '\u{A0}' | '{' | '}' | '\u{201D}')
}

/// Characters of an SGML tag or attribute name after its first letter.
pub fn sgml_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.' | '-')
}

/// Characters of an e-mail domain label.
pub fn email_label(c: char) -> bool {
    email_char(c) && c != '.'
}
