//! The decoding stages: argument names, then shape, then validation rules. Failures become messages a caller can
//! act on, without echoing redacted values.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::de::DeserializeOwned;
use serde_json::Value;
use validator::{Validate, ValidationError, ValidationErrors, ValidationErrorsKind};

use super::refusal::{Refusal, codes};
use crate::audit;

const MAX_MESSAGE: usize = 1024;

/// Decodes the arguments into the tool's input type: names the schema does not declare are refused (so a typo is
/// reported as such, whatever the type), then the shape. Both are `malformed_arguments`; a type that checks its
/// value while it is deserialized (a file name, say) reports `invalid_input`.
///
/// When the input type itself refuses unknown names (`denies_unknown`, as the struct the attribute generates
/// does), the names are looked at only if decoding fails, to say which one was wrong.
///
/// When the input was decoded from the arguments with their whole floats written as integers (see below), that
/// copy replaces `arguments`: what the guards after decoding, the argument rule and the record see is what the
/// handler's input came from.
pub(crate) fn decode<A: DeserializeOwned>(
    arguments: &mut Value,
    allowed: Option<&BTreeSet<String>>,
    denies_unknown: bool,
    redact: &[&str],
) -> Result<A, Refusal> {
    if !denies_unknown {
        check_names(arguments, allowed)?;
    }
    // The fast path deserializes directly; only a failure pays for tracking the path to name the field.
    match A::deserialize(&*arguments) {
        Ok(args) => Ok(args),
        Err(_) => {
            // JSON Schema's `integer` is any number without a fractional part, `5.0` and `1e2` included, while
            // serde refuses a float for an integer type: a call the schema allows is decoded again with its whole
            // floats written as integers. Only a call that failed pays for it; a free-form value in such a call
            // sees `5` for `5.0`, the same JSON number.
            if let Some(whole) = whole_floats_as_integers(arguments)
                && let Ok(args) = A::deserialize(&whole)
            {
                *arguments = whole;
                return Ok(args);
            }
            let arguments = &*arguments;
            check_names(arguments, allowed)?;
            Err(match serde_path_to_error::deserialize::<_, A>(arguments) {
                Err(err) => malformed(err, allowed, redact),
                Ok(_) => Refusal::invalid(
                    codes::MALFORMED_ARGUMENTS,
                    "the arguments do not have the declared shape",
                ),
            })
        }
    }
}

/// A copy of `value` with each float that is a whole number within the 64-bit integers written as an integer, or
/// `None` when it has none.
fn whole_floats_as_integers(value: &Value) -> Option<Value> {
    fn has_whole_float(value: &Value) -> bool {
        match value {
            Value::Number(n) => as_integer(n).is_some(),
            Value::Array(items) => items.iter().any(has_whole_float),
            Value::Object(map) => map.values().any(has_whole_float),
            _ => false,
        }
    }
    fn as_integer(n: &serde_json::Number) -> Option<serde_json::Number> {
        let v = n.as_f64().filter(|_| n.is_f64())?;
        // 2^63 and 2^64 are exact as floats; a whole float below them converts exactly.
        if v.fract() != 0.0 {
            None
        } else if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v) {
            Some((v as i64).into())
        } else if (0.0..18_446_744_073_709_551_616.0).contains(&v) {
            Some((v as u64).into())
        } else {
            None
        }
    }
    fn convert(value: &Value) -> Value {
        match value {
            Value::Number(n) => Value::Number(as_integer(n).unwrap_or_else(|| n.clone())),
            Value::Array(items) => Value::Array(items.iter().map(convert).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), convert(value)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    has_whole_float(value).then(|| convert(value))
}

fn check_names(arguments: &Value, allowed: Option<&BTreeSet<String>>) -> Result<(), Refusal> {
    if let (Some(allowed), Value::Object(arguments)) = (allowed, arguments)
        && let Some(unknown) = arguments.keys().find(|k| !allowed.contains(*k))
    {
        let message = format!(
            "unknown argument `{}`",
            audit::shorten_str(unknown).escape_debug()
        );
        return Err(Refusal::invalid(codes::MALFORMED_ARGUMENTS, message));
    }
    Ok(())
}

/// Checks the decoded arguments against their `#[validate]` rules, then `nested` (the rules `A`'s own do not
/// reach, see [`crate::tool::ToolInput::validate_nested`]). A rule's own message is not shown for a redacted
/// argument (a custom validator may quote the value), only what the rule is. validator names a rule by the Rust
/// field (`pass_word`, `r#type`), redactions go by the argument's name in the schema (`passWord`, `type`): for
/// inline arguments (`exact_names`) the attribute's `validate_nested` names each by its name as sent (a redacted
/// one cannot be renamed, and two cannot share a name); a rule's message is shown only for a field whose name is
/// itself an argument the schema declares and that is not redacted. In a struct of the user's (`Args<T>`) a
/// field's Rust name may be another field's name in the schema (red-team finding: `password` sent as the redacted
/// `pw`, beside a field sent as `password`), so when any argument is redacted no rule's own message is shown there.
pub(crate) fn validate<A: Validate>(
    args: &A,
    nested: fn(&A, &mut ValidationErrors),
    allowed: Option<&BTreeSet<String>>,
    redact: &[&str],
    exact_names: bool,
) -> Result<(), Refusal> {
    let mut errors = args.validate().err().unwrap_or_default();
    nested(args, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(&errors, allowed, redact, exact_names))
    }
}

/// What serde (or a type's own `Deserialize`) said, and where. For a tool with redacted arguments, its message,
/// which may quote a value, is shown only where it is known to be about a declared argument that is not redacted:
/// serde reports an error inside a flattened struct, or a container's own conversion (`try_from`), at the
/// arguments' root, and an error in a flattened map under whatever name was sent (red-team findings: each quoted a
/// redacted value). At the root it is shown only when it names no value (a missing, unknown or duplicate field).
fn malformed(
    err: serde_path_to_error::Error<serde_json::Error>,
    allowed: Option<&BTreeSet<String>>,
    redact: &[&str],
) -> Refusal {
    let first = err.path().iter().next().map(|segment| segment.to_string());
    let text = err.inner().to_string();
    let shown = redact.is_empty()
        || match &first {
            Some(name) => {
                !redact.contains(&name.as_str()) && allowed.is_some_and(|a| a.contains(name))
            }
            None => ["missing field", "unknown field", "duplicate field"]
                .iter()
                .any(|prefix| text.starts_with(prefix)),
        };
    // Below an argument whose message is withheld the path names its keys (a map's, `env.DB_PASSWORD=...`), which
    // are part of the value: only the argument is named.
    let path = match &first {
        Some(name) if !shown => name.clone(),
        _ => err.path().to_string(),
    };
    let detail = if shown {
        text.clone()
    } else if first.is_none() {
        "the arguments do not have the declared shape".to_owned()
    } else {
        // serde's message may quote the value ("invalid type: string \"...\""): withhold it.
        "has the wrong type or shape".to_owned()
    };
    let message = if path == "." {
        detail
    } else {
        format!("`{path}`: {detail}")
    };
    // serde's own shape errors mean the arguments are malformed; a type that checks its value while it is
    // deserialized (a file name, say) reports `invalid value` or a message of its own: that is failed validation.
    const SHAPE_ERRORS: [&str; 6] = [
        "invalid type",
        "invalid length",
        "unknown variant",
        "unknown field",
        "missing field",
        "duplicate field",
    ];
    let shape = SHAPE_ERRORS.iter().any(|prefix| text.starts_with(prefix));
    let code = if shape {
        codes::MALFORMED_ARGUMENTS
    } else {
        codes::INVALID_INPUT
    };
    Refusal::invalid(code, shorten(message))
}

fn invalid(
    errors: &ValidationErrors,
    allowed: Option<&BTreeSet<String>>,
    redact: &[&str],
    exact_names: bool,
) -> Refusal {
    let mut lines = Vec::new();
    let shown = |top: &str| {
        (exact_names || redact.is_empty())
            && !redact.contains(&top)
            && allowed.is_some_and(|allowed| allowed.contains(top))
    };
    let mut uncounted = 0;
    collect(errors, "", &shown, &mut lines, &mut uncounted);
    lines.sort();
    // A list of a million failing items has as many errors: the message names the first few, and counts the rest
    // (a red team's: every one was described, then cut to the message's bound).
    let more = lines.len().saturating_sub(MAX_LINES) + uncounted;
    lines.truncate(MAX_LINES);
    let message = lines.join("; ");
    if more == 0 {
        return Refusal::invalid(codes::INVALID_INPUT, shorten(message));
    }
    // The count stays whatever the lines before it are cut to.
    let mut count = String::new();
    let _ = write!(count, "; and {more} more");
    let mut message = shorten_to(message, MAX_MESSAGE - count.len());
    message.push_str(&count);
    Refusal::invalid(codes::INVALID_INPUT, message)
}

/// The most failed rules a refusal describes.
const MAX_LINES: usize = 16;
/// The most described before the first [`MAX_LINES`] are chosen; the rest are only counted.
const MAX_DESCRIBED: usize = 1024;

/// `shown`: whether a rule's own message may be shown for the top-level field of this name.
fn collect(
    errors: &ValidationErrors,
    prefix: &str,
    shown: &dyn Fn(&str) -> bool,
    lines: &mut Vec<String>,
    uncounted: &mut usize,
) {
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(errs) => {
                // The top-level argument the path is under decides whether a rule's own message may be shown.
                let top = path.split(['.', '[']).next().unwrap_or_default();
                let redacted = !shown(top);
                for error in errs {
                    if lines.len() < MAX_DESCRIBED {
                        lines.push(format!("`{path}`: {}", describe(error, redacted)));
                    } else {
                        *uncounted += 1;
                    }
                }
            }
            ValidationErrorsKind::Struct(inner) => collect(inner, &path, shown, lines, uncounted),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    collect(inner, &format!("{path}[{index}]"), shown, lines, uncounted);
                }
            }
        }
    }
}

/// Describes a rule from its code and limits, never from the offending `value`; by a rule's own message only for
/// an argument that is not redacted. For a redacted one, a custom validator's code and limits are its own text too
/// (a red team's: `code = format!("bad_pin_{pin}")`, a `max` set to the value): only numbers are shown as limits,
/// and a code that is none of validator's own is not named.
fn describe(error: &ValidationError, redacted: bool) -> String {
    if let Some(message) = error.message.as_ref().filter(|_| !redacted) {
        return message.to_string();
    }
    let param = |name: &str| {
        error
            .params
            .get(name)
            .filter(|v| !v.is_null() && (!redacted || v.is_number()))
            .map(Value::to_string)
    };
    let bounds = |unit: &str| match (param("min"), param("max"), param("equal")) {
        (_, _, Some(equal)) => format!("must be exactly {equal}{unit}"),
        (Some(min), Some(max), _) => format!("must be between {min} and {max}{unit}"),
        (Some(min), None, _) => format!("must be at least {min}{unit}"),
        (None, Some(max), _) => format!("must be at most {max}{unit}"),
        (None, None, _) => "is out of bounds".to_owned(),
    };
    match &*error.code {
        "length" => format!("length {}", bounds("")),
        "range" => match (param("exclusive_min"), param("exclusive_max")) {
            (None, None) => bounds(""),
            // An exclusive bound beside an inclusive one: each said as it is.
            (low, high) => {
                let low = low
                    .map(|v| format!("greater than {v}"))
                    .or_else(|| param("min").map(|v| format!("at least {v}")));
                let high = high
                    .map(|v| format!("less than {v}"))
                    .or_else(|| param("max").map(|v| format!("at most {v}")));
                match (low, high) {
                    (Some(low), Some(high)) => format!("must be {low} and {high}"),
                    (Some(one), None) | (None, Some(one)) => format!("must be {one}"),
                    (None, None) => "is out of bounds".to_owned(),
                }
            }
        },
        "regex" => "does not match the required pattern".to_owned(),
        "email" => "must be an email address".to_owned(),
        "url" => "must be a URL".to_owned(),
        "required" => "is required".to_owned(),
        "contains" => "does not contain the required text".to_owned(),
        "does_not_contain" => "contains text that is not allowed".to_owned(),
        "must_match" => "does not match the field it must equal".to_owned(),
        _ if redacted => "failed a check of the tool's own".to_owned(),
        other => {
            let mut text = String::new();
            let _ = write!(text, "failed the `{other}` check");
            text
        }
    }
}

fn shorten(message: String) -> String {
    shorten_to(message, MAX_MESSAGE)
}

/// `message`, cut to `bound` bytes (at a character's edge, marked `…`) if it is longer.
fn shorten_to(mut message: String, bound: usize) -> String {
    if message.len() > bound {
        let mut cut = bound;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}
