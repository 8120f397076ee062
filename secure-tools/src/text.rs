//! Text that is safe to show on a terminal or hand to a model as plain text.

/// Replaces every character that could drive a terminal, reorder what a reader sees, or carry text a reader does
/// not see with a visible escape: C0 controls other than `\n` and `\t`, DEL, C1 controls (U+0080 to U+009F, which
/// include the single-byte CSI), the bidirectional formatting characters used to hide code (U+202A to U+202E,
/// U+2066 to U+2069), and the invisible characters that hide instructions from a human but not from a model: the
/// tag characters (U+E0000 to U+E007F, which spell ASCII invisibly), the zero-width space, the word joiner and
/// invisible operators, the byte-order mark, fillers and other format characters that show as nothing, and a
/// variation selector that does not follow a character it could vary (a run of them encodes any bytes: "emoji
/// smuggling"). (The zero-width joiner and non-joiner, the directional marks, and one variation
/// selector after a character stay: emoji and several scripts need them.) Each becomes `\u{XX}`, so nothing is
/// dropped; a `\u{..}` already in the text is left as it is, so the escapes are for reading, not for decoding back.
pub fn neutralize(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    // Whether the character before may take a variation selector: one written as it is that shows (not a
    // selector, not a joiner or mark that shows as nothing, not the start), so that selectors cannot be hidden in
    // pairs behind invisible characters either.
    let mut may_vary = false;
    for c in text.chars() {
        let selector = variation_selector(c);
        let escaped = (hazard(c).is_some() && !matches!(c, '\n' | '\t'))
            || invisible(c)
            || (selector && !may_vary);
        if escaped {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
        may_vary = !escaped
            && !selector
            && !matches!(c, '\u{200c}'..='\u{200f}' | '\u{61c}' | '\n' | '\t');
    }
    out
}

/// JSON text written in ASCII only: every character outside it, and DEL, as its `\u` escape (UTF-16 units), which a
/// JSON reader decodes to the same text. Outside ASCII, and DEL, JSON text can only be inside strings, where an escape
/// means the same character; JSON itself escapes only the C0 controls, so a C1 control (U+009B is a one-byte CSI), a
/// bidirectional override or an invisible character would otherwise reach a terminal or a log as it is.
pub fn ascii_json(json: &str) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() && c != '\u{7f}' {
            text.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = write!(text, "\\u{unit:04x}");
            }
        }
    }
    text
}

/// The length of a value's JSON text (as `serde_json` writes it, compactly), counted without building it.
pub fn json_len(value: &serde_json::Value) -> usize {
    counted(value, <[u8]>::len)
}

/// The length of a value's JSON text as [`ascii_json`] writes it (every character outside ASCII, and DEL, as its `\u`
/// escapes), counted without building it: text outside ASCII takes up to three times its UTF-8 bytes so written.
pub fn ascii_json_len(value: &serde_json::Value) -> usize {
    counted(value, |piece| {
        // serde_json writes whole characters in each piece (its escapes are ASCII, cut between characters).
        match std::str::from_utf8(piece) {
            Ok(text) => text
                .chars()
                .map(|c| match c.is_ascii() && c != '\u{7f}' {
                    true => 1,
                    false => 6 * c.len_utf16(),
                })
                .sum(),
            Err(_) => 6 * piece.len(),
        }
    })
}

/// The sum of `length` over the pieces `serde_json` writes `value` in, nothing kept.
fn counted(value: &serde_json::Value, length: fn(&[u8]) -> usize) -> usize {
    struct Count(usize, fn(&[u8]) -> usize);
    impl std::io::Write for Count {
        fn write(&mut self, piece: &[u8]) -> std::io::Result<usize> {
            self.0 += (self.1)(piece);
            Ok(piece.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0, length);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// `text` within about `max` bytes: whole if it fits, else its first and last `max / 2` bytes (at character
/// boundaries) around a note of how many bytes between are not shown, `where_` appended to it (`": --json has
/// them"`, say). An instruction appended far into a text is in the part a cut from the start leaves out (a red
/// team's, more than once), so the end is kept too.
pub fn cut_middle(text: &str, max: usize, where_: &str) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut head = max / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - max / 2;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{} ... ({} bytes not shown{where_}) ... {}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

/// A variation selector: U+FE00 to U+FE0F, the supplementary ones (U+E0100 to U+E01EF) and the Mongolian free
/// variation selectors (U+180B to U+180D, U+180F). One after a character picks its form (an emoji's presentation, an
/// ideograph's variant); more show as nothing.
/// A format character (Unicode's `Cf`: zero-width, bidirectional, tag, ... characters) or a line or paragraph
/// separator: invisible, or breaking a line where a reader does not expect one. Reports and logs write them out.
pub(crate) fn format_or_separator(c: char) -> bool {
    !c.is_ascii()
        && matches!(
            unicode_general_category::get_general_category(c),
            unicode_general_category::GeneralCategory::Format
                | unicode_general_category::GeneralCategory::LineSeparator
                | unicode_general_category::GeneralCategory::ParagraphSeparator
        )
}

pub(crate) fn variation_selector(c: char) -> bool {
    matches!(c, '\u{fe00}'..='\u{fe0f}' | '\u{e0100}'..='\u{e01ef}' | '\u{180b}'..='\u{180d}' | '\u{180f}')
}

/// A character that can drive a terminal or make text show in another order than the one it is stored in: what
/// [`neutralize`] escapes and a [`Root`](crate::fs::Root) refuses to write (each deciding about tab and line
/// breaks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hazard {
    /// A C0 control, U+0000 to U+001F.
    C0,
    /// DEL, U+007F.
    Del,
    /// A C1 control, U+0080 to U+009F, which include the single-character CSI that terminals act on like `ESC [`.
    C1,
    /// A bidirectional embedding, override or isolate: the Trojan Source set (CVE-2021-42574), U+202A to U+202E
    /// and U+2066 to U+2069, which rustc also lints. The marks (U+200E, U+200F, U+061C) are not in it: right-to-left
    /// prose needs them, and they reorder nothing around them.
    Bidi,
}

/// A character that shows as nothing and that ordinary text does not need: escaped by [`neutralize`] (and by the
/// integrity reports), though a file may hold it (a flag emoji's tags). The tag characters and the rest of their
/// plane's unassigned block (U+E0000 to U+E00FF), the zero-width space (U+200B), the word joiner, invisible
/// operators and deprecated format characters (U+2060 to U+206F), the byte-order mark (U+FEFF), the soft hyphen
/// (U+00AD), the combining grapheme joiner (U+034F), the Hangul and Khmer fillers and inherent vowels (U+115F,
/// U+1160, U+17B4, U+17B5, U+3164, U+FFA0), the Mongolian vowel separator (U+180E), and the interlinear annotation
/// and other specials (U+FFF0 to U+FFFB).
pub(crate) fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{34f}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{180e}'
            | '\u{200b}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e00ff}'
    )
}

pub(crate) fn hazard(c: char) -> Option<Hazard> {
    match c {
        '\u{0}'..='\u{1f}' => Some(Hazard::C0),
        '\u{7f}' => Some(Hazard::Del),
        '\u{80}'..='\u{9f}' => Some(Hazard::C1),
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => Some(Hazard::Bidi),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::neutralize;

    #[test]
    fn json_lengths_are_those_of_the_text_written() {
        let value = serde_json::json!({"a\u{7f}": ["caf\u{e9}", "\u{1f600}", 1.5, null, "\n\"x"]});
        assert_eq!(super::json_len(&value), value.to_string().len());
        assert_eq!(
            super::ascii_json_len(&value),
            super::ascii_json(&value.to_string()).len()
        );
    }

    #[test]
    fn escapes_controls_and_keeps_everything_else() {
        assert_eq!(
            neutralize("plain\ttext\nnext line é ✓"),
            "plain\ttext\nnext line é ✓"
        );
        assert_eq!(
            neutralize("\u{1b}[2J\u{1b}]0;title\u{7}"),
            "\\u{1b}[2J\\u{1b}]0;title\\u{7}"
        );
        assert_eq!(neutralize("a\rb\0c\u{7f}"), "a\\u{d}b\\u{0}c\\u{7f}");
        assert_eq!(neutralize("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(neutralize("if \u{202e}x\u{2066}"), "if \\u{202e}x\\u{2066}");
        // Text a model reads and a person does not see: tag characters spelling "hi", a zero-width space.
        assert_eq!(
            neutralize("ok\u{e0068}\u{e0069}\u{200b}!"),
            "ok\\u{e0068}\\u{e0069}\\u{200b}!"
        );
        // Joiners stay: emoji and scripts need them.
        assert_eq!(neutralize("👩\u{200d}💻"), "👩\u{200d}💻");
    }

    /// Review finding: variation selectors after an emoji (a run of them encodes any bytes, which models decode:
    /// "emoji smuggling"), fillers and other characters that show as nothing passed through, though the
    /// integrity reports escaped them. One selector after a character stays (an emoji's presentation, an
    /// ideograph's variant); a run, or one at the start, is escaped.
    #[test]
    fn variation_selectors_past_the_first_and_other_invisible_characters_are_escaped() {
        assert_eq!(
            neutralize("ok😀\u{fe05}\u{e0158}\u{e0165}"),
            "ok😀\u{fe05}\\u{e0158}\\u{e0165}"
        );
        assert_eq!(neutralize("\u{fe0f}x"), "\\u{fe0f}x");
        assert_eq!(neutralize("❤\u{fe0f} 葛\u{e0100}"), "❤\u{fe0f} 葛\u{e0100}");
        assert_eq!(
            neutralize("a\u{ad}b\u{3164}c\u{206a}d\u{fffb}"),
            "a\\u{ad}b\\u{3164}c\\u{206a}d\\u{fffb}"
        );
        // Right-to-left prose keeps its marks.
        assert_eq!(neutralize("a\u{200f}b"), "a\u{200f}b");
        // A selector after a joiner or a mark (which show as nothing) is escaped: pairs of them hid bytes too.
        assert_eq!(
            neutralize("ok\u{200d}\u{e0158}\u{200d}\u{e0165}"),
            "ok\u{200d}\\u{e0158}\u{200d}\\u{e0165}"
        );
        // The emoji sequences that join with a selector keep it: woman, ZWJ, heart with its emoji selector.
        assert_eq!(neutralize("👩\u{200d}❤\u{fe0f}"), "👩\u{200d}❤\u{fe0f}");
    }
}
