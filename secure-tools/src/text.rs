//! Text that is safe to show on a terminal or hand to a model as plain text.

/// Replaces every character that could drive a terminal or reorder what a reader sees with a visible escape:
/// C0 controls other than `\n` and `\t`, DEL, C1 controls (U+0080 to U+009F, which include the single-byte CSI),
/// and the bidirectional formatting characters used to hide code (U+202A to U+202E, U+2066 to U+2069). Each becomes
/// `\u{XX}`, so nothing is dropped and the original can be recovered by reading it.
pub fn neutralize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn is_unsafe(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
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
    }
}
