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
pub(crate) fn decode<A: DeserializeOwned>(
    arguments: &Value,
    allowed: Option<&BTreeSet<String>>,
    denies_unknown: bool,
    redact: &[&str],
) -> Result<A, Refusal> {
    if !denies_unknown {
        check_names(arguments, allowed)?;
    }
    // The fast path deserializes directly; only a failure pays for tracking the path to name the field.
    match A::deserialize(arguments) {
        Ok(args) => Ok(args),
        Err(_) => {
            check_names(arguments, allowed)?;
            Err(match serde_path_to_error::deserialize::<_, A>(arguments) {
                Err(err) => malformed(err, redact),
                Ok(_) => Refusal::invalid(
                    codes::MALFORMED_ARGUMENTS,
                    "the arguments do not have the declared shape",
                ),
            })
        }
    }
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

/// Checks the decoded arguments against their `#[validate]` rules. A rule's own message is not shown for a
/// redacted argument (a custom validator may quote the value), only what the rule is. Rules are named by the
/// Rust field (`pass_word`, `r#type`), redactions by the argument's name in the schema (`passWord`, `type`): a
/// rule's message is shown only for a field whose name is itself an argument the schema declares and that is not
/// redacted, so a renamed field is treated as redacted.
pub(crate) fn validate<A: Validate>(
    args: &A,
    allowed: Option<&BTreeSet<String>>,
    redact: &[&str],
) -> Result<(), Refusal> {
    args.validate()
        .map_err(|errors| invalid(&errors, allowed, redact))
}

fn malformed(err: serde_path_to_error::Error<serde_json::Error>, redact: &[&str]) -> Refusal {
    let first = err.path().iter().next().map(|segment| segment.to_string());
    let redacted = first
        .as_ref()
        .is_some_and(|name| redact.contains(&name.as_str()));
    // Below a redacted argument the path names its keys (a map's, `env.DB_PASSWORD=...`), which are part of the
    // value: only the argument is named.
    let path = match &first {
        Some(name) if redacted => name.clone(),
        _ => err.path().to_string(),
    };
    let detail = if redacted {
        // serde's message may quote the value ("invalid type: string \"...\""): withhold it.
        "has the wrong type or shape".to_owned()
    } else {
        err.inner().to_string()
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
    let shape = SHAPE_ERRORS
        .iter()
        .any(|prefix| err.inner().to_string().starts_with(prefix));
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
) -> Refusal {
    let mut lines = Vec::new();
    let shown =
        |top: &str| !redact.contains(&top) && allowed.is_some_and(|allowed| allowed.contains(top));
    collect(errors, "", &shown, &mut lines);
    lines.sort();
    Refusal::invalid(codes::INVALID_INPUT, shorten(lines.join("; ")))
}

/// `shown`: whether a rule's own message may be shown for the top-level field of this name.
fn collect(
    errors: &ValidationErrors,
    prefix: &str,
    shown: &dyn Fn(&str) -> bool,
    lines: &mut Vec<String>,
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
                lines.extend(
                    errs.iter()
                        .map(|e| format!("`{path}`: {}", describe(e, redacted))),
                );
            }
            ValidationErrorsKind::Struct(inner) => collect(inner, &path, shown, lines),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    collect(inner, &format!("{path}[{index}]"), shown, lines);
                }
            }
        }
    }
}

/// Describes a rule from its code and limits, never from the offending `value`; by a rule's own message only for
/// an argument that is not redacted.
fn describe(error: &ValidationError, redacted: bool) -> String {
    if let Some(message) = error.message.as_ref().filter(|_| !redacted) {
        return message.to_string();
    }
    let param = |name: &str| {
        error
            .params
            .get(name)
            .filter(|v| !v.is_null())
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
        "range" => bounds(""),
        "regex" => "does not match the required pattern".to_owned(),
        "email" => "must be an email address".to_owned(),
        "url" => "must be a URL".to_owned(),
        "required" => "is required".to_owned(),
        "contains" => "does not contain the required text".to_owned(),
        "does_not_contain" => "contains text that is not allowed".to_owned(),
        "must_match" => "does not match the field it must equal".to_owned(),
        other => {
            let mut text = String::new();
            let _ = write!(text, "failed the `{other}` check");
            text
        }
    }
}

fn shorten(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}
