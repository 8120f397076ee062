//! What text may be written: refused control and bidirectional formatting characters, then one line-ending
//! convention.

use std::borrow::Cow;

use crate::text::{Hazard, hazard};

/// Refuses text holding a character that editors, terminals and tools would silently drop, stop at or act on, or
/// that would make the text show in another order than the one it is stored in: NUL, the other C0 controls except
/// tab, line feed and carriage return, DEL, the C1 controls, and the bidirectional embeddings, overrides and
/// isolates of Trojan Source (the set [`neutralize`](crate::text::neutralize) escapes on the way out). Refusing
/// keeps what is written equal to what the caller sent, once line endings are normalised.
pub(super) fn check(text: &str) -> Result<(), &'static str> {
    for c in text.chars() {
        let Some(hazard) = hazard(c) else { continue };
        return Err(match (c, hazard) {
            ('\t' | '\n' | '\r', _) => continue,
            ('\0', _) => "the text contains a NUL character",
            (_, Hazard::C0) => {
                "the text contains a control character other than tab and line breaks (U+0001 to U+001F)"
            }
            (_, Hazard::Del) => "the text contains the DEL control character (U+007F)",
            (_, Hazard::C1) => "the text contains a C1 control character (U+0080 to U+009F)",
            (_, Hazard::Bidi) => {
                "the text contains a bidirectional embedding, override or isolate character (U+202A to U+202E, \
                 U+2066 to U+2069)"
            }
        });
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
        assert_eq!(check("a\tb\nc\r\nd é ✓ \u{a0}"), Ok(()));
        // Right-to-left text with the marks it needs for its punctuation: these reorder nothing around them.
        assert_eq!(check("שלום\u{200f}! مرحبا\u{61c}. a\u{200e}b"), Ok(()));
        // A byte order mark, a zero-width no-break space elsewhere, and line and paragraph separators.
        assert_eq!(check("\u{feff}x\u{feff}y\u{2028}z\u{2029}"), Ok(()));
    }

    #[test]
    fn refuses_c1_controls() {
        for c in '\u{80}'..='\u{9f}' {
            assert_eq!(
                check(&format!("x{c}y")),
                Err("the text contains a C1 control character (U+0080 to U+009F)"),
                "{:#x}",
                c as u32
            );
        }
        // The single-character CSI, which terminals act on like ESC [.
        assert!(check("\u{9b}31mred").is_err());
    }

    #[test]
    fn refuses_the_bidirectional_formatting_characters_of_trojan_source() {
        // CVE-2021-42574: the embeddings, overrides and isolates, which make text show in another order than the
        // one it is stored (and compiled, and run) in.
        let trojan_source = [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}',
        ];
        for c in trojan_source {
            assert_eq!(
                check(&format!("if access {c}level{c} {{")),
                Err(
                    "the text contains a bidirectional embedding, override or isolate character (U+202A to \
                     U+202E, U+2066 to U+2069)"
                ),
                "{:#x}",
                c as u32
            );
        }
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
