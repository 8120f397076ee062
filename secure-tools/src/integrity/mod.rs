//! Tool-definition integrity: fingerprints of tool definitions as they are listed, a reviewed lockfile, and a
//! precise account of what changed.
//!
//! A tool's definition is an instruction to a model: a description that gains a hidden instruction, or a schema
//! that quietly widens, changes what the model does without any code review noticing. So every definition a secure
//! server lists carries a fingerprint, and a server (or the `secure-tools` command against any MCP server) can be
//! held to a lockfile reviewed like code.
//!
//! # The digest, precisely
//!
//! For one tool, as a client receives it in a `tools/list` result:
//!
//! 1. take the tool's JSON object as listed (`name`, `title`, `description`, `inputSchema`, `outputSchema`,
//!    `annotations`, `_meta`, and any other member);
//! 2. remove the member [`DIGEST_META_KEY`] from its `_meta`, and then `_meta` itself if it is left empty;
//! 3. serialize that value as RFC 8785 canonical JSON (JCS) in UTF-8;
//! 4. the digest is `sha256:` followed by the 64 lowercase hexadecimal digits of its SHA-256.
//!
//! A client that negotiated a protocol version before `2026-07-28` never receives an output schema whose root is
//! not an object (rmcp drops it, as those versions require); its digest covers the definition without it, and a
//! lockfile compares a tool as unchanged when its two forms match (see [`ToolsLock::compare_listed`]).
//!
//! The required scopes are part of the definition (under [`SCOPES_META_KEY`](crate::tool::SCOPES_META_KEY) in
//! `_meta`), so a changed scope changes the digest. The digest of a whole list is the same recipe applied to the
//! JSON object that maps each listed tool's name to its digest; a secure server publishes it in the `tools/list`
//! result's `_meta` under [`TOOLSET_DIGEST_META_KEY`]. In Python, with the `rfc8785` package:
//!
//! ```python
//! import hashlib, rfc8785
//! def as_jcs(value):  # JSON numbers are doubles: an integer beyond 2**53 (a u64's maximum) is the nearest one
//!     if isinstance(value, dict): return {k: as_jcs(v) for k, v in value.items()}
//!     if isinstance(value, list): return [as_jcs(v) for v in value]
//!     if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53: return float(value)
//!     return value
//! def digest(tool: dict) -> str:
//!     tool = dict(tool); meta = dict(tool.get("_meta") or {})
//!     meta.pop("secure-tools/digest", None)
//!     if meta: tool["_meta"] = meta
//!     else: tool.pop("_meta", None)
//!     return "sha256:" + hashlib.sha256(rfc8785.dumps(as_jcs(tool))).hexdigest()
//! ```

mod diff;
mod lock;

pub use diff::{AddedTool, Change, Changes, DigestMismatch, ToolChange, visible_line};
pub use lock::{
    LockError, LockMode, LockedTool, MAX_LOCK_CONTAINERS, MAX_LOCK_FILE_BYTES, MAX_LOCK_TOOLS,
    MAX_LOCK_VALUES, ToolsLock,
};

use rmcp::model::{JsonObject, ListToolsResult, MetaObject, Tool};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The `_meta` key under which a listed tool publishes its digest.
pub const DIGEST_META_KEY: &str = "secure-tools/digest";

/// The `_meta` key of a `tools/list` result under which a secure server publishes the digest of the tools listed.
pub const TOOLSET_DIGEST_META_KEY: &str = "secure-tools/toolset-digest";

/// The `_meta` key of a `tools/list` result under which a secure server listing only the tools each caller may
/// call (`Listing::CallableOnly`) says so (`"callable"`): the list is the caller's, not the server's, and a lockfile
/// (which holds every tool) is neither pinned nor checked from it.
pub const LISTING_META_KEY: &str = "secure-tools/listing";

/// Marks a `tools/list` result as the caller's own selection ([`LISTING_META_KEY`]).
pub fn mark_callable_only(list: &mut ListToolsResult) {
    let mut meta = list
        .meta
        .take()
        .unwrap_or_else(|| MetaObject(JsonObject::new()));
    meta.0
        .insert(LISTING_META_KEY.into(), Value::String("callable".into()));
    list.meta = Some(meta);
}

/// Whether a `tools/list` result's `_meta` (as received) says it lists only the caller's tools.
pub fn lists_callable_only(meta: Option<&Value>) -> bool {
    meta.and_then(|meta| meta.get(LISTING_META_KEY))
        .and_then(Value::as_str)
        == Some("callable")
}

/// Whether a page of a `tools/list` result (its tools and `_meta`, as received) publishes a toolset digest
/// ([`TOOLSET_DIGEST_META_KEY`]) that is not the digest of the tools it lists. `false` when it publishes none.
pub fn toolset_digest_mismatch(tools: &[Value], meta: Option<&Value>) -> bool {
    let Some(published) = meta
        .and_then(|meta| meta.get(TOOLSET_DIGEST_META_KEY))
        .map(|value| value.as_str().unwrap_or_default())
    else {
        return false;
    };
    let digests: Vec<(String, String)> = tools
        .iter()
        .map(|tool| {
            let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
            (
                name.to_owned(),
                digest_of(&definition_of_value(tool.clone())),
            )
        })
        .collect();
    toolset_digest(digests.iter().map(|(n, d)| (n.as_str(), d.as_str()))) != published
}

/// The definition a digest covers: the tool's JSON as listed, without its own digest.
pub fn definition(tool: &Tool) -> Value {
    let value = serde_json::to_value(tool).unwrap_or(Value::Null);
    definition_of_value(value)
}

/// [`definition`] for a tool already in JSON form (as a client received it).
pub fn definition_of_value(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut()
        && let Some(Value::Object(meta)) = object.get_mut("_meta")
    {
        meta.remove(DIGEST_META_KEY);
        if meta.is_empty() {
            object.remove("_meta");
        }
    }
    value
}

/// The digest of a definition (see the module documentation): `sha256:` and 64 lowercase hex digits.
pub fn digest_of(definition: &Value) -> String {
    // A `serde_json::Value` holds only finite numbers and valid strings, which JCS always serializes.
    let canonical = serde_json_canonicalizer::to_vec(definition).unwrap_or_default();
    let hash = Sha256::digest(&canonical);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in hash {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// The digest of one tool as listed.
pub fn tool_digest(tool: &Tool) -> String {
    digest_of(&definition(tool))
}

/// The digest of a list of tools: of the JSON object mapping each tool's name to its digest.
pub fn toolset_digest<'a>(digests: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let object: serde_json::Map<String, Value> = digests
        .into_iter()
        .map(|(name, digest)| (name.to_owned(), Value::String(digest.to_owned())))
        .collect();
    digest_of(&Value::Object(object))
}

/// Whether an output schema is one a client before protocol `2026-07-28` may receive: its root `type` is
/// `"object"`. rmcp drops any other from the listing it sends such a client (SEP-2106 allows them from
/// `2026-07-28`), after the handler returned it.
fn object_rooted(schema: &JsonObject) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
}

/// The definition (JSON, as [`definition_of_value`] gives) as a client before `2026-07-28` receives it: without an
/// output schema whose root is not an object. `None` when that is the definition itself.
pub fn legacy_definition(definition: &Value) -> Option<Value> {
    if definition
        .get("outputSchema")?
        .as_object()
        .is_some_and(object_rooted)
    {
        return None;
    }
    let mut legacy = definition.clone();
    legacy.as_object_mut()?.remove("outputSchema");
    Some(legacy)
}

/// Puts each tool's digest into its `_meta`, and the list's digest into the result's `_meta`.
pub fn publish(list: &mut ListToolsResult) {
    publish_for(list, true);
}

/// [`publish`], for a client that negotiated a protocol version before `2026-07-28` when `current` is false: an
/// output schema rmcp will drop from such a client's listing (its root not an object) is dropped first, so that the
/// digests cover what the client receives.
pub fn publish_for(list: &mut ListToolsResult, current: bool) {
    if !current {
        for tool in &mut list.tools {
            tool.output_schema.take_if(|schema| !object_rooted(schema));
        }
    }
    let mut digests = Vec::with_capacity(list.tools.len());
    for tool in &mut list.tools {
        let digest = tool_digest(tool);
        let mut meta = tool.meta.take().unwrap_or_default();
        meta.0
            .insert(DIGEST_META_KEY.into(), Value::String(digest.clone()));
        tool.meta = Some(meta);
        digests.push((tool.name.to_string(), digest));
    }
    let toolset = toolset_digest(digests.iter().map(|(n, d)| (n.as_str(), d.as_str())));
    let mut meta = list
        .meta
        .take()
        .unwrap_or_else(|| MetaObject(JsonObject::new()));
    meta.0
        .insert(TOOLSET_DIGEST_META_KEY.into(), Value::String(toolset));
    list.meta = Some(meta);
}

/// The digest a listed tool publishes, if any.
pub fn published_digest(tool: &Value) -> Option<&str> {
    tool.get("_meta")?.get(DIGEST_META_KEY)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_digest_is_sha256_of_the_canonical_json_without_itself() {
        let tool = json!({"name": "t", "description": "d", "inputSchema": {"type": "object"},
            "_meta": {"secure-tools/scopes": ["a"], DIGEST_META_KEY: "sha256:old"}});
        let definition = definition_of_value(tool);
        assert_eq!(
            serde_json_canonicalizer::to_string(&definition).unwrap(),
            r#"{"_meta":{"secure-tools/scopes":["a"]},"description":"d","inputSchema":{"type":"object"},"name":"t"}"#
        );
        // Python: hashlib.sha256(<the line above>).hexdigest()
        assert_eq!(
            digest_of(&definition),
            "sha256:b9ad27ffdd180a4a20e9ce3af953e0c277b672f8e313b59eb12cdfaffc5d4640"
        );
        // An empty `_meta` left by removing the digest is removed too.
        let bare = definition_of_value(json!({"name": "t", "_meta": {DIGEST_META_KEY: "x"}}));
        assert_eq!(bare, json!({"name": "t"}));
    }

    /// Integers beyond 2^53 (a `u64` argument's `maximum`) are canonical as the double nearest them, as the module
    /// documentation's Python gives them (its `as_jcs`; the `rfc8785` package refuses such an integer itself).
    #[test]
    fn large_integers_are_canonical_as_doubles() {
        let value = json!({"m": u64::MAX, "n": i64::MIN, "s": 9007199254740991u64});
        assert_eq!(
            serde_json_canonicalizer::to_string(&value).unwrap(),
            // Python: rfc8785.dumps(as_jcs(...)) of the same values
            r#"{"m":18446744073709552000,"n":-9223372036854776000,"s":9007199254740991}"#
        );
    }
}
