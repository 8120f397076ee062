//! What text may be written: refused control characters, then one line-ending convention.

use std::borrow::Cow;

/// Refuses text holding a character that editors, terminals and tools would silently drop, stop at or act on:
/// NUL, the other C0 controls except tab, line feed and carriage return, and DEL. Refusing keeps what is
/// written equal to what the caller sent, once line endings are normalised.
pub(super) fn check(text: &str) -> Result<(), &'static str> {
    for byte in text.bytes() {
        match byte {
            b'\0' => return Err("the text contains a NUL character"),
            b'\t' | b'\n' | b'\r' => {}
            0x01..=0x1f => {
                return Err(
                    "the text contains a control character other than tab and line breaks (U+0001 to U+001F)",
                );
            }
            0x7f => return Err("the text contains the DEL control character (U+007F)"),
            _ => {}
        }
    }
    Ok(())
}

/// Turns `\r\n` and a lone `\r` into `\n`.
pub(super) fn normalize_line_endings(text: &str) -> Cow<'_, str> {
    if !text.contains('\r') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            chars.next_if_eq(&'\n');
            out.push('\n');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_tab_line_breaks_and_any_printable_unicode() {
        assert_eq!(check("a\tb\nc\r\nd é ✓ \u{80}"), Ok(()));
    }

    #[test]
    fn refuses_nul_other_c0_controls_and_del() {
        assert!(check("a\0b").unwrap_err().contains("NUL"));
        for c in (0x01u8..=0x1f).filter(|c| !matches!(c, b'\t' | b'\n' | b'\r')) {
            let text = format!("x{}y", c as char);
            assert!(check(&text).is_err(), "{c:#x}");
        }
        assert!(check("\u{1b}[2J").is_err());
        assert!(check("a\u{7f}").unwrap_err().contains("DEL"));
    }

    #[test]
    fn normalises_crlf_and_lone_cr_to_lf() {
        assert_eq!(normalize_line_endings("a\r\nb\rc\n\r\n\r"), "a\nb\nc\n\n\n");
        assert_eq!(normalize_line_endings("\r\r\n"), "\n\n");
        assert!(matches!(normalize_line_endings("a\nb"), Cow::Borrowed(_)));
    }
}
