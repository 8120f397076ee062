//! Finds the top-level `"id"` of a JSON-RPC message without parsing (or holding) the message.
//!
//! Used on lines that are too large to buffer or that do not parse, so the refusal can carry the caller's id and
//! the caller is not left waiting. Fed in chunks; keeps only a few bytes of state.

use rmcp::model::RequestId;

const MAX_ID_BYTES: usize = 256;

#[derive(Default)]
pub(crate) struct IdScanner {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At depth 1: the next string is an object key.
    expect_key: bool,
    /// The current key's bytes (only while it may still be `id`).
    key: Vec<u8>,
    key_is_candidate: bool,
    /// The key just read was `id`; its value comes next.
    value_is_id: bool,
    /// The raw bytes of the id value being read (a string's content or a number's text).
    value: Option<Vec<u8>>,
    value_is_string: bool,
    found: Option<RequestId>,
    /// An `id` was seen with a value that is not a valid id: stop looking.
    gave_up: bool,
}

impl IdScanner {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.found.is_some() || self.gave_up {
                return;
            }
            self.step(b);
        }
    }

    /// The id, if one was read.
    pub(crate) fn id(&self) -> Option<RequestId> {
        if let Some(id) = &self.found {
            return Some(id.clone());
        }
        // A number that ran to the end of the input.
        match &self.value {
            Some(digits) if !self.value_is_string => parse_number(digits),
            _ => None,
        }
    }

    fn step(&mut self, b: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
                self.push_string_byte(b);
                return;
            }
            match b {
                b'\\' => {
                    self.escaped = true;
                    // Escapes other than simple ones make the id unusable as bytes; keep it simple: refuse.
                    if self.value.is_some() {
                        self.gave_up = true;
                    }
                }
                b'"' => self.end_string(),
                _ => self.push_string_byte(b),
            }
            return;
        }
        if let Some(digits) = &mut self.value
            && !self.value_is_string
        {
            if b.is_ascii_digit() || b == b'-' {
                if digits.len() < 32 {
                    digits.push(b);
                }
                return;
            }
            let digits = self.value.take().expect("number");
            match parse_number(&digits) {
                Some(id) if !matches!(b, b'.' | b'e' | b'E') => {
                    self.found = Some(id);
                    return;
                }
                _ => {
                    self.gave_up = true;
                    return;
                }
            }
        }
        match b {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.value_is_id {
                    self.value_is_id = false;
                    self.value = Some(Vec::new());
                    self.value_is_string = true;
                } else if self.depth == 1 && self.expect_key {
                    self.key.clear();
                    self.key_is_candidate = true;
                }
            }
            b'{' | b'[' => {
                if self.depth == 1 && self.value_is_id {
                    self.gave_up = true;
                }
                self.depth = self.depth.saturating_add(1);
                if self.depth == 1 && b == b'{' {
                    self.expect_key = true;
                }
            }
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            b',' if self.depth == 1 => self.expect_key = true,
            b':' if self.depth == 1 => self.expect_key = false,
            b'-' | b'0'..=b'9' if self.depth == 1 && self.value_is_id => {
                self.value_is_id = false;
                self.value = Some(vec![b]);
                self.value_is_string = false;
            }
            b if b.is_ascii_whitespace() => {}
            _ if self.depth == 1 && self.value_is_id => self.gave_up = true,
            _ => {}
        }
    }

    fn push_string_byte(&mut self, b: u8) {
        if let Some(value) = &mut self.value {
            if value.len() >= MAX_ID_BYTES {
                self.gave_up = true;
            } else {
                value.push(b);
            }
        } else if self.key_is_candidate {
            if self.key.len() < 2 {
                self.key.push(b);
            } else {
                self.key_is_candidate = false;
            }
        }
    }

    fn end_string(&mut self) {
        self.in_string = false;
        if let Some(value) = self.value.take() {
            match String::from_utf8(value) {
                Ok(text) => self.found = Some(RequestId::String(text.into())),
                Err(_) => self.gave_up = true,
            }
            return;
        }
        if self.key_is_candidate {
            self.key_is_candidate = false;
            self.value_is_id = self.key == b"id";
            self.expect_key = false;
        }
    }
}

/// An integer written as JSON writes one (`-?(0|[1-9][0-9]*)`) that fits an `i64`, except `-0`, which an answer
/// would carry back as `0`.
fn parse_number(digits: &[u8]) -> Option<RequestId> {
    let magnitude = digits.strip_prefix(b"-").unwrap_or(digits);
    let canonical = match magnitude {
        [b'0'] => digits.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse::<i64>()
        .ok()
        .map(RequestId::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Option<RequestId> {
        let mut scanner = IdScanner::default();
        // Byte by byte, to prove chunk boundaries do not matter.
        for b in text.as_bytes() {
            scanner.feed(std::slice::from_ref(b));
        }
        scanner.id()
    }

    #[test]
    fn finds_top_level_ids_anywhere() {
        assert_eq!(
            scan(r#"{"jsonrpc":"2.0","id":7,"method":"x"}"#),
            Some(RequestId::Number(7))
        );
        assert_eq!(
            scan(r#"{"method":"x","params":{"id":1},"id":"abc"}"#),
            Some(RequestId::String("abc".into()))
        );
        assert_eq!(
            scan(r#"{ "params" : { "a" : [ {"id": 3} ] } , "id" : -12 }"#),
            Some(RequestId::Number(-12))
        );
        assert_eq!(
            scan(r#"{"idx":1,"xid":2,"id":0}"#),
            Some(RequestId::Number(0))
        );
        assert_eq!(
            scan(r#"{"k":"\"id\":5","id":9"#),
            Some(RequestId::Number(9))
        );
        assert_eq!(scan(r#"{"id":42"#), Some(RequestId::Number(42)));
        assert_eq!(scan(r#"{"id":0}"#), Some(RequestId::Number(0)));
        assert_eq!(
            scan(r#"{"id":-9223372036854775808}"#),
            Some(RequestId::Number(i64::MIN))
        );
    }

    #[test]
    fn ignores_invalid_ids() {
        for text in [
            r#"{"id":1.5}"#,
            r#"{"id":null}"#,
            r#"{"id":true}"#,
            r#"{"id":{"a":1}}"#,
            r#"{"id":[1]}"#,
            r#"{"method":"x"}"#,
            r#"[{"id":1}]"#,
            r#"{"id":1e3}"#,
            r#"{"id":1E3}"#,
            r#"{"id":1.0}"#,
            r#"{"id":-0}"#,
            r#"{"id":-0,"#,
            r#"{"id":01}"#,
            r#"{"id":-01}"#,
            r#"{"id":--1}"#,
            r#"{"id":-}"#,
            r#"{"id":1-2}"#,
            r#"{"id":9223372036854775808}"#,
        ] {
            assert_eq!(scan(text), None, "{text}");
        }
    }
}
