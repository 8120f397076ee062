//! JSON parsing that refuses duplicate object keys.
//!
//! `serde_json` keeps the last of two equal keys, so `{"filename": "a.txt", "filename": "../x"}` means whatever the
//! last parser in a chain decides. Arguments arriving as text are parsed here instead, and a duplicate key anywhere
//! in them is an error.

use std::collections::HashSet;
use std::fmt;

use rmcp::model::JsonObject;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::call::{Refusal as ToolError, codes};

/// Parses tool arguments (a JSON object) from text, refusing duplicate keys at any depth.
pub fn parse_arguments(text: &str) -> Result<JsonObject, ToolError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = StrictValue
        .deserialize(&mut deserializer)
        .and_then(|v| deserializer.end().map(|()| v))
        .map_err(|err| ToolError::invalid(codes::MALFORMED_ARGUMENTS, err.to_string()))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ToolError::invalid(
            codes::MALFORMED_ARGUMENTS,
            "arguments must be a JSON object",
        )),
    }
}

/// Parses any JSON value from text, refusing duplicate keys at any depth.
pub fn from_str_strict(text: &str) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = StrictValue.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Checks that `text` is one JSON value with no duplicate key at any depth, without building it. Allocates only
/// for objects of many keys or keys with escapes.
pub fn check(text: &str) -> Result<(), serde_json::Error> {
    check_bounded(text, usize::MAX)
}

/// [`check`], and that `text` holds at most `max_values` JSON values (each scalar, array and object one): a
/// message of millions of tiny values (`[0,0,0,...]`) takes about a hundred times its size in memory as rmcp's
/// message types read it (red-team finding), so a size limit alone does not bound it. Past the bound, the error
/// starts with [`TOO_MANY_VALUES`].
pub(crate) fn check_bounded(text: &str, max_values: usize) -> Result<(), serde_json::Error> {
    let left = std::cell::Cell::new(max_values);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    Check { left: &left }.deserialize(&mut deserializer)?;
    deserializer.end()
}

/// How [`check_bounded`]'s error for a text of too many values begins.
pub(crate) const TOO_MANY_VALUES: &str = "too many values";

/// The values a message of at most `max_bytes` may hold: one per 16 bytes (262,144 for 4 MiB), at least 4,096.
pub(crate) fn max_values(max_bytes: usize) -> usize {
    (max_bytes / 16).max(4096)
}

/// A JSON object with no duplicate key at any depth, for where a `Deserialize` type is asked for (the claims of an
/// access token: `"scope": "a", "scope": "b"` would grant whatever the last parser keeps).
#[cfg(feature = "http")]
pub(crate) struct StrictObject(pub(crate) Map<String, Value>);

#[cfg(feature = "http")]
impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match StrictValue.deserialize(deserializer)? {
            Value::Object(map) => Ok(StrictObject(map)),
            _ => Err(de::Error::custom("expected a JSON object")),
        }
    }
}

/// The values still allowed.
#[derive(Clone, Copy)]
struct Check<'a> {
    left: &'a std::cell::Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.left.get().checked_sub(1) {
            Some(left) => self.left.set(left),
            None => return Err(de::Error::custom(TOO_MANY_VALUES)),
        }
        deserializer.deserialize_any(self)
    }
}

/// An object key, borrowed from the input where it has no escapes.
#[derive(Hash)]
struct Key<'de>(std::borrow::Cow<'de, str>);

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        #[cfg(test)]
        tests::KEY_COMPARISONS.with(|n| n.set(n.get() + 1));
        self.0 == other.0
    }
}

impl Eq for Key<'_> {}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = SeenKeys::Few(Vec::new());
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if let Err(key) = keys.insert(key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key `{}`",
                    crate::audit::shorten_str(&key.0).escape_debug()
                )));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// Up to this many keys, an object's keys are compared one by one (cheaper than hashing for the few keys of a
/// typical message); past it they are hashed.
const FEW_KEYS: usize = 16;

/// The keys of one object seen so far. Checking a key costs at most [`FEW_KEYS`] comparisons, or one hash: linear
/// in the size of the object, however many keys it has (comparing each key with all before it made a 160,000-key
/// object cost 12.8 billion comparisons).
enum SeenKeys<'de> {
    Few(Vec<Key<'de>>),
    Many(HashSet<Key<'de>>),
}

impl<'de> SeenKeys<'de> {
    /// Adds `key`, or gives it back if it was seen already.
    fn insert(&mut self, key: Key<'de>) -> Result<(), Key<'de>> {
        match self {
            SeenKeys::Few(keys) if keys.contains(&key) => Err(key),
            SeenKeys::Few(keys) if keys.len() < FEW_KEYS => {
                keys.push(key);
                Ok(())
            }
            SeenKeys::Few(keys) => {
                let mut set: HashSet<Key<'de>> = keys.drain(..).collect();
                set.insert(key);
                *self = SeenKeys::Many(set);
                Ok(())
            }
            SeenKeys::Many(keys) => match keys.replace(key) {
                Some(seen) => Err(seen),
                None => Ok(()),
            },
        }
    }
}

#[derive(Clone, Copy)]
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key `{}`",
                    crate::audit::shorten_str(&key).escape_debug()
                )));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// How many times two keys were compared, on this thread.
        pub(super) static KEY_COMPARISONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// Each scalar, array and object counts once, at any depth; one value past the bound is refused.
    #[test]
    fn values_are_counted_to_the_bound() {
        // The object, `a`'s array, its three numbers, `b`'s object and its `null`: 7.
        let text = r#"{"a": [1, 2, 3], "b": {"c": null}}"#;
        assert!(check_bounded(text, 7).is_ok());
        let error = check_bounded(text, 6).unwrap_err().to_string();
        assert!(error.starts_with(TOO_MANY_VALUES), "{error}");
        assert_eq!(max_values(4 * 1024 * 1024), 262_144);
        assert_eq!(max_values(1024), 4096);
    }

    /// Comparing each key with every one before it made a 160,000-key object cost 12.8 billion comparisons (about
    /// 20 s); the check must stay linear in the number of keys, whether they are distinct or not.
    #[test]
    fn checking_an_object_of_many_keys_takes_a_linear_number_of_comparisons() {
        let keys = 10_000;
        let mut text = String::from("{");
        for i in 0..keys {
            text.push_str(&format!(r#""k{i}":{{"a":1,"b":2}},"#));
        }
        text.push_str(r#""k0":0}"#);
        KEY_COMPARISONS.with(|n| n.set(0));
        let err = check(&text).unwrap_err();
        assert!(err.to_string().starts_with("duplicate key `k0`"), "{err}");
        let comparisons = KEY_COMPARISONS.with(std::cell::Cell::get);
        assert!(
            comparisons <= 4 * keys,
            "{comparisons} comparisons for {keys} keys"
        );
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":{"b":1,"b":1}}"#,
            r#"{"x":[{"c":1,"c":2}]}"#,
        ] {
            let err = parse_arguments(text).unwrap_err();
            assert_eq!(err.code(), codes::MALFORMED_ARGUMENTS, "{text}");
            assert!(err.message().contains("duplicate key"), "{}", err.message());
        }
    }

    #[test]
    fn check_agrees_with_the_parser() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":[{"c":1,"c":2}]}"#,
            r#"{"k\u0041":1,"kA":2}"#,
            "{",
            "[1,]",
        ] {
            assert!(check(text).is_err(), "{text}");
            assert!(from_str_strict(text).is_err(), "{text}");
        }
        for text in [
            r#"{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}"#,
            r#""s""#,
            "[]",
            "null",
        ] {
            assert!(check(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn a_duplicate_is_found_on_either_side_of_the_switch_to_hashing() {
        for keys in [FEW_KEYS - 1, FEW_KEYS, FEW_KEYS + 1, 3 * FEW_KEYS] {
            for duplicate in [0, keys / 2, keys - 1] {
                let mut members: Vec<String> =
                    (0..keys).map(|i| format!(r#""k{i}":{i}"#)).collect();
                assert!(check(&format!("{{{}}}", members.join(","))).is_ok());
                members.push(format!(r#""k{duplicate}":null"#));
                let err = check(&format!("{{{}}}", members.join(","))).unwrap_err();
                assert!(
                    err.to_string()
                        .starts_with(&format!("duplicate key `k{duplicate}`")),
                    "{keys} keys, k{duplicate}: {err}"
                );
            }
        }
    }

    #[test]
    fn ordinary_json_parses_as_serde_json_does() {
        let text = r#"{"a":[1,-2,3.5,true,null,"s"],"b":{"c":"é\n"}}"#;
        let strict = Value::Object(parse_arguments(text).unwrap());
        assert_eq!(strict, serde_json::from_str::<Value>(text).unwrap());
        assert!(parse_arguments("[1]").is_err());
        assert!(parse_arguments(r#"{"a":1} trailing"#).is_err());
    }
}
