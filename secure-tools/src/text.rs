//! Text that is safe to show on a terminal or hand to a model as plain text.

/// Replaces every character that could drive a terminal, reorder what a reader sees, or carry text a reader does
/// not see with a visible escape: C0 controls other than `\n` and `\t`, DEL, C1 controls (U+0080 to U+009F, which
/// include the single-byte CSI), the bidirectional formatting characters used to hide code (U+202A to U+202E,
/// U+2066 to U+2069), and the invisible characters that hide instructions from a human but not from a model: the
/// tag characters (U+E0000 to U+E007F, which spell ASCII invisibly), the zero-width space (U+200B), the word joiner
/// and invisible operators (U+2060 to U+2064) and the byte-order mark (U+FEFF). (The zero-width joiner and
/// non-joiner stay: emoji and several scripts need them.) Each becomes `\u{XX}`, so nothing is dropped; a `\u{..}`
/// already in the text is left as it is, so the escapes are for reading, not for decoding back.
pub fn neutralize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (hazard(c).is_some() && !matches!(c, '\n' | '\t')) || invisible(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
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

/// A character that shows as nothing: escaped by [`neutralize`], though a file may hold it (a flag emoji's tags).
fn invisible(c: char) -> bool {
    matches!(c, '\u{e0000}'..='\u{e007f}' | '\u{200b}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
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
}
