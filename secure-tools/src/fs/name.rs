//! File names a caller may use: one component, plain ASCII, nothing any common OS treats specially.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The longest file name accepted, in characters (every accepted character is one byte).
pub const MAX_FILE_NAME_LEN: usize = 128;

/// Windows device names, reserved in every directory and with any extension (`con.txt`, `NUL.tar.gz`).
const RESERVED_STEMS: [&str; 4] = ["CON", "PRN", "AUX", "NUL"];
const RESERVED_NUMBERED: [&str; 2] = ["COM", "LPT"];

/// What [`FileName`] accepts, for the schema's description.
const RULES: &str = "1 to 128 ASCII letters, digits, `.`, `_` or `-`; not starting with `.` or `-`, \
                     not ending with `.`; not a Windows device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9, with or without an extension)";

/// A validated file name: one path component naming a file directly inside a [`Root`](super::Root).
///
/// Accepted: 1 to [`MAX_FILE_NAME_LEN`] ASCII letters, digits, `.`, `_` and `-`, not starting with `.` (so no
/// hidden file, `.` or `..`) or `-` (an option to the operator's shell tools), not ending with `.`, and not a
/// Windows device name (`CON`, `PRN`, `AUX`, `NUL`, `COM0`-`COM9`, `LPT0`-`LPT9`, in any case and with any
/// extension, such as `con.txt` or `NUL.tar.gz`).
/// There is no separator, no escape and no encoding in the alphabet, so a name cannot point anywhere but at one
/// entry of the root. (On a case-insensitive file system, names that differ only in case are one file.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName(Arc<str>);

/// Why a text is not a valid [`FileName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    /// The text was empty.
    #[error("a file name cannot be empty")]
    Empty,
    /// The text held a character outside the allowed set.
    #[error(
        "{} at position {position} is not allowed in a file name, which may hold only ASCII letters, digits, `.`, `_` and `-`",
        ShowChar(*.character)
    )]
    InvalidCharacter {
        /// The first character not allowed.
        character: char,
        /// Its position, counting characters from 1.
        position: usize,
    },
    /// The text was longer than [`MAX_FILE_NAME_LEN`].
    #[error("file name is {len} characters long; the limit is {MAX_FILE_NAME_LEN}")]
    TooLong {
        /// Length of the rejected text in characters.
        len: usize,
    },
    /// The text was `.` or `..`.
    #[error("`.` and `..` name directories, not files")]
    DotEntry,
    /// The text started with `.`.
    #[error("a file name cannot start with `.`; hidden files are not reachable")]
    LeadingDot,
    /// The text started with `-`, which the operator's shell tools read as an option (`rm *` in a root holding a
    /// file named `-rf`).
    #[error("a file name cannot start with `-`; command-line tools would read it as an option")]
    LeadingDash,
    /// The text ended with `.`, which Windows drops.
    #[error("a file name cannot end with `.`")]
    TrailingDot,
    /// The text was a Windows device name, possibly with an extension.
    #[error(
        "`{stem}` is a device name on Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9), with or without an extension"
    )]
    Reserved {
        /// The reserved part, as written (`con` for `con.txt`).
        stem: String,
    },
}

/// Shows a rejected character so that the message itself stays plain text: printable ASCII in backticks,
/// anything else as its code point (a fullwidth or one-dot-leader lookalike is then visibly not ASCII).
struct ShowChar(char);

impl fmt::Display for ShowChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            '`' => f.write_str("a backtick"),
            c if c.is_ascii_graphic() => write!(f, "`{c}`"),
            ' ' => f.write_str("a space"),
            c => write!(f, "U+{:04X}", c as u32),
        }
    }
}

impl FileName {
    /// Validates a file name.
    pub fn new(text: &str) -> Result<FileName, FileNameError> {
        validate(text)?;
        Ok(FileName(Arc::from(text)))
    }

    /// The file name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(text: &str) -> Result<(), FileNameError> {
    if text.is_empty() {
        return Err(FileNameError::Empty);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some((index, character)) = text.chars().enumerate().find(|&(_, c)| !allowed(c)) {
        return Err(FileNameError::InvalidCharacter {
            character,
            position: index + 1,
        });
    }
    // Only ASCII is left, so bytes and characters count the same.
    if text.len() > MAX_FILE_NAME_LEN {
        return Err(FileNameError::TooLong { len: text.len() });
    }
    if text == "." || text == ".." {
        return Err(FileNameError::DotEntry);
    }
    if text.starts_with('.') {
        return Err(FileNameError::LeadingDot);
    }
    if text.starts_with('-') {
        return Err(FileNameError::LeadingDash);
    }
    if text.ends_with('.') {
        return Err(FileNameError::TrailingDot);
    }
    let stem = text.split('.').next().unwrap_or(text);
    if is_reserved_stem(stem) {
        return Err(FileNameError::Reserved {
            stem: stem.to_owned(),
        });
    }
    Ok(())
}

fn is_reserved_stem(stem: &str) -> bool {
    if RESERVED_STEMS
        .iter()
        .any(|reserved| stem.eq_ignore_ascii_case(reserved))
    {
        return true;
    }
    match stem.as_bytes() {
        [a, b, c, digit] => {
            let prefix = [*a, *b, *c];
            digit.is_ascii_digit()
                && RESERVED_NUMBERED
                    .iter()
                    .any(|reserved| prefix.eq_ignore_ascii_case(reserved.as_bytes()))
        }
        _ => false,
    }
}

impl FromStr for FileName {
    type Err = FileNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileName::new(s)
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for FileName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for FileName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for FileName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor of `&str`: the name is checked where it lies and copied once, into the `FileName` (serde's
        // `Cow<str>` would always have made a `String` first).
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = FileName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a file name")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<FileName, E> {
                FileName::new(text).map_err(|error| {
                    // The message quotes the value: keep a long one from crowding out the rule it broke.
                    let shown = match text.char_indices().nth(64) {
                        Some((end, _)) => Cow::Owned(format!("{}...", &text[..end])),
                        None => Cow::Borrowed(text),
                    };
                    E::invalid_value(serde::de::Unexpected::Str(&shown), &Expected(error))
                })
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// Completes serde's `invalid value: string "..", expected ..` with the rule broken, which says what it allows.
struct Expected(FileNameError);

impl serde::de::Expected for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a valid file name: {}", self.0)
    }
}

impl schemars::JsonSchema for FileName {
    // Inline, so a tool's input schema reads `"name": {"type": "string", ...}` with no `$ref` to follow.
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "FileName".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "secure_tools::fs::FileName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_FILE_NAME_LEN,
            "pattern": PATTERN,
            "description": format!("A file name: {RULES}."),
        })
    }
}

/// The character rule, no leading `.` or `-` and no trailing `.`, in the subset of syntax that both ECMA-262 (with
/// or without the `u` and `v` flags) and Rust's `regex` accept: no lookahead, `-` escaped inside classes.
const PATTERN: &str = r"^[A-Za-z0-9_]([A-Za-z0-9._\-]*[A-Za-z0-9_\-])?$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in [
            "a",
            "notes.txt",
            "report-2024_v2.tar.gz",
            "README",
            "dash-inside-",
            "_underscore",
            "a..b",
            "console.txt",
            "com10",
            "lpt",
            "CONFIG.sys",
            "nul_file",
            &"x".repeat(MAX_FILE_NAME_LEN),
        ] {
            assert_eq!(FileName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_separators_traversal_and_encodings() {
        for bad in [
            "a/b",
            "/etc/passwd",
            "a\\b",
            "..\\x",
            "../secret",
            "a\0b",
            "%2e%2e%2f",
            "a b",
            "a:b",
            "a\nb",
            "file\u{202e}txt.exe",
            "ａｂｃ",             // fullwidth letters
            "\u{2024}\u{2024}/x", // one dot leader, a `.` lookalike
            "a\u{2024}txt",
            "\u{ff0e}\u{ff0e}", // fullwidth full stop
            "é.txt",
        ] {
            let err = FileName::new(bad).unwrap_err();
            assert!(
                matches!(err, FileNameError::InvalidCharacter { .. }),
                "{bad:?}: {err:?}"
            );
        }
        assert_eq!(
            FileName::new("ab/c").unwrap_err(),
            FileNameError::InvalidCharacter {
                character: '/',
                position: 3
            }
        );
    }

    #[test]
    fn rejects_each_other_rule_with_its_own_error() {
        assert_eq!(FileName::new(""), Err(FileNameError::Empty));
        assert_eq!(
            FileName::new(&"x".repeat(MAX_FILE_NAME_LEN + 1)),
            Err(FileNameError::TooLong {
                len: MAX_FILE_NAME_LEN + 1
            })
        );
        assert_eq!(FileName::new("."), Err(FileNameError::DotEntry));
        assert_eq!(FileName::new(".."), Err(FileNameError::DotEntry));
        assert_eq!(FileName::new(".env"), Err(FileNameError::LeadingDot));
        assert_eq!(FileName::new("...x"), Err(FileNameError::LeadingDot));
        assert_eq!(FileName::new("notes."), Err(FileNameError::TrailingDot));
        assert_eq!(FileName::new("a.."), Err(FileNameError::TrailingDot));
        // Read as an option by the operator's tools: `rm *` in a root holding `-rf` (a red team's name) removes
        // every directory beside it; `tar cf backup.tar *` with `--remove-files` there deletes what it archives.
        assert_eq!(FileName::new("-rf"), Err(FileNameError::LeadingDash));
        assert_eq!(
            FileName::new("--remove-files"),
            Err(FileNameError::LeadingDash)
        );
        assert_eq!(FileName::new("-"), Err(FileNameError::LeadingDash));
        assert!(FileName::new("a-b").is_ok() && FileName::new("a-").is_ok());
    }

    #[test]
    fn rejects_windows_device_names_in_any_case_and_with_any_extension() {
        for bad in [
            "CON",
            "con",
            "con.txt",
            "NUL.tar.gz",
            "Prn",
            "aux.c",
            "COM0",
            "com1",
            "LPT9.log",
            "lPt5",
        ] {
            assert!(
                matches!(FileName::new(bad), Err(FileNameError::Reserved { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            FileName::new("con.txt"),
            Err(FileNameError::Reserved { stem: "con".into() })
        );
    }

    #[test]
    fn messages_say_what_was_wrong_in_plain_text() {
        let message = |text: &str| FileName::new(text).unwrap_err().to_string();
        assert_eq!(
            message("a/b"),
            "`/` at position 2 is not allowed in a file name, which may hold only ASCII letters, digits, `.`, `_` and `-`"
        );
        assert!(message("a\u{2024}b").starts_with("U+2024 at position 2 is not allowed"));
        assert!(message("a\u{1b}[2J").starts_with("U+001B at position 2 is not allowed"));
        assert!(message("a`b").starts_with("a backtick at position 2 is not allowed"));
        assert_eq!(
            message(&"x".repeat(200)),
            "file name is 200 characters long; the limit is 128"
        );
        assert!(message("NUL.tar.gz").starts_with("`NUL` is a device name on Windows"));
    }

    #[test]
    fn round_trips_through_text_and_serde() {
        let name: FileName = "notes.txt".parse().unwrap();
        assert_eq!(name.to_string(), "notes.txt");
        assert_eq!(name.as_ref(), "notes.txt");
        assert_eq!(serde_json::to_value(&name).unwrap(), "notes.txt");
        let back: FileName = serde_json::from_value(serde_json::json!("notes.txt")).unwrap();
        assert_eq!(back, name);
    }

    #[test]
    fn deserializing_an_invalid_name_is_an_invalid_value_that_names_the_rule() {
        let err =
            serde_json::from_value::<FileName>(serde_json::json!("../etc/passwd")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value: string \"../etc/passwd\", expected a valid file name: `/` at position 3 is not \
             allowed in a file name, which may hold only ASCII letters, digits, `.`, `_` and `-`"
        );
        let hidden = serde_json::from_value::<FileName>(serde_json::json!(".env")).unwrap_err();
        assert_eq!(
            hidden.to_string(),
            "invalid value: string \".env\", expected a valid file name: a file name cannot start with `.`; \
             hidden files are not reachable"
        );

        let long = serde_json::from_value::<FileName>(serde_json::json!("y".repeat(10_000)))
            .unwrap_err()
            .to_string();
        assert!(long.len() < 200, "{long}");
        assert!(
            long.ends_with("yyy...\", expected a valid file name: file name is 10000 characters long; the limit is 128"),
            "{long}"
        );

        let wrong_type = serde_json::from_value::<FileName>(serde_json::json!(7)).unwrap_err();
        assert!(wrong_type.to_string().starts_with("invalid type"));
    }

    #[test]
    fn schema_is_an_inline_string_with_limits_pattern_and_description() {
        let schema = schemars::schema_for!(FileName);
        let schema = schema.as_object().unwrap();
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["minLength"], 1);
        assert_eq!(schema["maxLength"], 128);
        assert_eq!(schema["pattern"], PATTERN);
        let description = schema["description"].as_str().unwrap();
        for rule in ["128", "ending", "CON", "LPT0-9", "extension"] {
            assert!(description.contains(rule), "{description}");
        }

        #[derive(schemars::JsonSchema)]
        #[allow(dead_code)]
        struct Args {
            name: FileName,
        }
        let args = serde_json::to_value(schemars::schema_for!(Args)).unwrap();
        assert_eq!(args["properties"]["name"]["pattern"], PATTERN);
        assert!(args.get("$defs").is_none(), "{args}");
    }

    #[test]
    fn pattern_agrees_with_the_validator_except_for_what_it_cannot_express() {
        let pattern = regex::Regex::new(PATTERN).unwrap();
        for text in [
            "a", "a.b", "-", "-a", "a-b", "_", "a-", "a..b", ".a", "a.", ".", "..", "a/b", "a b",
            "é", "x.y.z", "9", "con", "con.txt", "",
        ] {
            let valid = FileName::new(text).is_ok();
            let reserved = matches!(FileName::new(text), Err(FileNameError::Reserved { .. }));
            assert_eq!(
                pattern.is_match(text),
                valid || reserved,
                "{text:?}: the pattern and the validator disagree"
            );
        }
    }
}
