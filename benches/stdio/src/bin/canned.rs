//! The pipe's limit: answers each request line at once with a canned reply carrying the request's id, and does
//! nothing else (no JSON parsing, no protocol). Notifications (no `"id"`) get no answer.

use std::io::{BufRead, BufWriter, Write};

const INIT: &str = r#""result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"canned","version":"0"}}}"#;
const REPLY: &str =
    r#""result":{"content":[{"type":"text","text":"Hello from MCP!\n"}],"isError":false}}"#;

fn main() {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in stdin.split(b'\n') {
        let Ok(line) = line else { break };
        let Some(id) = request_id(&line) else {
            continue;
        };
        let body = if contains(&line, b"\"initialize\"") {
            INIT
        } else {
            REPLY
        };
        out.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":").unwrap();
        out.write_all(id).unwrap();
        out.write_all(b",").unwrap();
        out.write_all(body.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
        out.flush().unwrap();
    }
}

/// The raw text of the `"id"` value (a number or a string), found by a byte scan.
fn request_id(line: &[u8]) -> Option<&[u8]> {
    let key = b"\"id\":";
    let start = line.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &line[start..];
    let end = if rest.first() == Some(&b'"') {
        rest[1..].iter().position(|&b| b == b'"')? + 2
    } else {
        rest.iter().position(|&b| b == b',' || b == b'}')?
    };
    Some(&rest[..end])
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
