//! Tool definitions and the trait `#[secure_tool]` implements.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::call::guard::GuardCall;
use crate::call::{CallContext, Rate, Refusal};
use crate::output::{IntoToolOutput, ToolOutput};
use crate::scope::{Scope, ScopeError};

/// The `_meta` key under which a listed tool publishes the scopes it requires.
pub const SCOPES_META_KEY: &str = "secure-tools/scopes";

/// A tool's handler, as a boxed future.
pub type ToolFuture = Pin<Box<dyn Future<Output = Result<ToolOutput, Refusal>> + Send + 'static>>;

/// The static facts `#[secure_tool]` records about a tool.
///
/// Not meant to be written by hand; the fields may grow.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct ToolMeta {
    pub name: &'static str,
    pub title: Option<&'static str>,
    pub description: Option<&'static str>,
    /// Every scope required; empty only together with `unscoped`.
    pub scopes: &'static [&'static str],
    pub unscoped: bool,
    pub audit_redact: &'static [&'static str],
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
    /// `rate = "10/min"`: per caller.
    pub rate: Option<Rate>,
    /// `timeout = "5s"`.
    pub timeout: Option<std::time::Duration>,
    /// `concurrency = 4`.
    pub concurrency: Option<u32>,
    /// The input type refuses names it does not declare (the struct the attribute generates does; an `Args<T>`
    /// may not).
    pub denies_unknown_arguments: bool,
}

impl ToolMeta {
    /// The facts of a tool whose attribute had errors, which is never called: the build fails on them anyway.
    pub const fn stub(name: &'static str) -> Self {
        ToolMeta {
            name,
            title: None,
            description: None,
            scopes: &[],
            unscoped: true,
            audit_redact: &[],
            read_only: None,
            destructive: None,
            idempotent: None,
            open_world: None,
            rate: None,
            timeout: None,
            concurrency: None,
            denies_unknown_arguments: true,
        }
    }
}

/// The input of a tool made by `#[secure_tool]`: the struct its arguments are decoded into, whatever the tool
/// set's state. Name it as [`ArgsOf<tool>`](ArgsOf), in an argument rule, say.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a secure tool",
    note = "annotate the function with `#[secure_tool(...)]`"
)]
pub trait ToolInput: 'static {
    /// The deserialized, validated arguments: for a tool that declares its arguments one by one, a struct with a
    /// public field per argument; for one that takes `Args<T>`, `T`.
    type Args: DeserializeOwned + schemars::JsonSchema + validator::Validate + Send + Sync + 'static;

    /// After `Args`' own rules: the rules of arguments of the user's own types (the attribute writes it for
    /// inline arguments; see `__private::nested`), and the rules' errors named by the arguments' names as sent.
    #[doc(hidden)]
    fn validate_nested(_args: &Self::Args, _errors: &mut validator::ValidationErrors) {}
}

/// The decoded arguments of the tool `T`, as an argument rule receives them:
/// `async fn only_reporter(args: &ArgsOf<close_ticket>, call: &GuardCall<'_>) -> Result<(), Refusal>`.
pub type ArgsOf<T> = <T as ToolInput>::Args;

/// A tool made by `#[secure_tool]`, usable in a [`ToolSet`](crate::ToolSet) whose state is `S`.
///
/// The attribute implements this for a type named after the function; register it with
/// [`ToolSetBuilder::tool`](crate::ToolSetBuilder::tool). Implementing it by hand is possible but not the intent.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a secure tool usable with state `{S}`",
    note = "annotate the function with `#[secure_tool(...)]`, and check that every `State<T>` it takes can be made from `{S}`"
)]
pub trait SecureTool<S>: ToolInput {
    /// Name, description, scopes, redactions, hints, limits.
    const META: ToolMeta;
    /// The handler's success type; decides the output schema.
    type Output: IntoToolOutput;
    /// Takes the context parameters from the call and starts the handler.
    fn invoke(
        args: Self::Args,
        cx: &CallContext,
        state: &S,
    ) -> impl Future<Output = Result<ToolOutput, Refusal>> + Send + 'static;
    /// Whether the attribute names an argument rule (`authorize = path`).
    const HAS_ARGUMENT_RULE: bool = false;

    /// The argument rule named in the attribute (`authorize = path`), run on the decoded, valid arguments before
    /// the handler; by default none.
    fn authorize<'a>(
        args: &'a Self::Args,
        call: &'a GuardCall<'a>,
    ) -> impl Future<Output = Result<(), Refusal>> + Send + 'a {
        let _ = (args, call);
        std::future::ready(Ok(()))
    }
}

/// Why a tool could not be registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DefinitionError {
    /// A required scope is not a valid scope name.
    #[error("tool `{tool}`: {source}")]
    InvalidScope {
        /// The tool.
        tool: String,
        /// What is wrong with the scope.
        #[source]
        source: ScopeError,
    },
    /// The tool requires no scope but was not declared `unscoped`.
    #[error("tool `{tool}` declares no scope; require one, or opt out explicitly with `unscoped`")]
    NoScope {
        /// The tool.
        tool: String,
    },
    /// The input schema does not have root `type: object`, or composes subschemas at its root.
    #[error("tool `{tool}`: {message}")]
    InputSchema {
        /// The tool.
        tool: String,
        /// rmcp's explanation.
        message: String,
    },
    /// Two tools share a name.
    #[error("two tools are named `{0}`")]
    DuplicateName(String),
    /// A limit or setting cannot be used.
    #[error("{what} {message}")]
    InvalidSetting {
        /// The setting.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// `audit_redact` names something that is not an argument in the input schema (a renamed field, say), so
    /// the value would be recorded under its real name.
    #[error(
        "tool `{tool}`: `audit_redact` names `{name}`, which is not an argument of its input schema"
    )]
    UnknownRedaction {
        /// The tool.
        tool: String,
        /// The name that matches no argument.
        name: String,
    },
}

/// Everything a client is told about a tool, plus the scopes it requires.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolDefinition {
    name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'static str>,
    input_schema: Arc<JsonObject>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_schema: Option<Arc<JsonObject>>,
    #[serde(skip_serializing_if = "annotations_empty")]
    annotations: ToolAnnotations,
    scopes: Vec<Scope>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    audit_redact: &'static [&'static str],
}

fn annotations_empty(a: &ToolAnnotations) -> bool {
    *a == ToolAnnotations::default()
}

/// Puts the range of each fixed-size integer type (schemars' `format`, `uint32` say) in its schema, where schemars
/// gives only a `minimum` for the unsigned ones: decoding refuses what does not fit, so the schema says so. Only in
/// subschemas, never in values that are data (red-team finding: a `default` object with a field `format: "int16"`
/// got a range written into it, and the default published was refused when sent back).
fn integer_ranges(schema: &mut JsonObject) {
    each_subschema_of(schema, &mut |schema| {
        let range: Option<(i64, u64)> = match schema.get("format").and_then(Value::as_str) {
            Some("int8") => Some((i8::MIN.into(), i8::MAX as u64)),
            Some("uint8") => Some((0, u8::MAX.into())),
            Some("int16") => Some((i16::MIN.into(), i16::MAX as u64)),
            Some("uint16") => Some((0, u16::MAX.into())),
            Some("int32") => Some((i32::MIN.into(), i32::MAX as u64)),
            Some("uint32") => Some((0, u32::MAX.into())),
            Some("int64") => Some((i64::MIN, i64::MAX as u64)),
            Some("uint64") => Some((0, u64::MAX)),
            // `isize` and `usize`.
            Some("int") => Some((isize::MIN as i64, isize::MAX as u64)),
            Some("uint") => Some((0, usize::MAX as u64)),
            // serde_json reads a number past the 64-bit integers as a float, which a 128-bit integer refuses:
            // what decodes is what fits in `i64` or `u64`.
            Some("int128") => Some((i64::MIN, u64::MAX)),
            Some("uint128") => Some((0, u64::MAX)),
            _ => None,
        };
        if let Some((min, max)) = range {
            schema.entry("minimum").or_insert(min.into());
            schema.entry("maximum").or_insert(max.into());
        }
    });
}

/// The keywords whose value is a subschema, or an array of them (JSON Schema 2020-12 and the drafts before it).
const SUBSCHEMA_KEYWORDS: [&str; 16] = [
    "items",
    "prefixItems",
    "additionalItems",
    "contains",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "allOf",
    "anyOf",
    "oneOf",
    "contentSchema",
];

/// The keywords whose value maps names (of properties, of definitions) to subschemas.
const SUBSCHEMA_MAP_KEYWORDS: [&str; 6] = [
    "properties",
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
    "dependencies",
];

/// Calls `visit` on `schema` and on each of its subschemas, however deep; not on values that are data (`const`,
/// `enum`, `default`) nor on the name of a property.
fn each_subschema(schema: &mut Value, visit: &mut dyn FnMut(&mut JsonObject)) {
    if let Value::Object(object) = schema {
        each_subschema_of(object, visit);
    }
}

/// [`each_subschema`] of a schema that is an object.
fn each_subschema_of(object: &mut JsonObject, visit: &mut dyn FnMut(&mut JsonObject)) {
    visit(object);
    for (keyword, value) in object.iter_mut() {
        if SUBSCHEMA_KEYWORDS.contains(&keyword.as_str()) {
            match value {
                Value::Array(items) => items
                    .iter_mut()
                    .for_each(|item| each_subschema(item, visit)),
                other => each_subschema(other, visit),
            }
        } else if SUBSCHEMA_MAP_KEYWORDS.contains(&keyword.as_str())
            && let Value::Object(named) = value
        {
            named
                .values_mut()
                .for_each(|item| each_subschema(item, visit));
        }
    }
}

/// Takes the `default` and `examples` out of each redacted argument's schema and of every definition it refers to,
/// directly or through other definitions.
fn withhold_redacted_values(schema: &mut JsonObject, redacted: &[&str]) {
    let mut referred = Vec::new();
    let withhold = |object: &mut JsonObject, referred: &mut Vec<String>| {
        object.remove("default");
        object.remove("examples");
        if let Some(Value::String(reference)) = object.get("$ref") {
            let name = ["#/$defs/", "#/definitions/"]
                .iter()
                .find_map(|prefix| reference.strip_prefix(prefix));
            if let Some(name) = name {
                referred.push(name.replace("~1", "/").replace("~0", "~"));
            }
        }
    };
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        for name in redacted {
            if let Some(property) = properties.get_mut(*name) {
                each_subschema(property, &mut |object| withhold(object, &mut referred));
            }
        }
    }
    let mut done = std::collections::BTreeSet::new();
    while let Some(name) = referred.pop() {
        if !done.insert(name.clone()) {
            continue;
        }
        for definitions in ["$defs", "definitions"] {
            if let Some(definition) = schema
                .get_mut(definitions)
                .and_then(|defs| defs.get_mut(&name))
            {
                each_subschema(definition, &mut |object| withhold(object, &mut referred));
            }
        }
    }
}

/// The one `'static` copy of `text`: a plain tool's name and redactions are `'static` like a secure tool's (which
/// the macro writes in the binary), so a set rebuilt with the same plain tools (per tenant, on reload, in tests)
/// reuses them instead of leaking new copies each time. What stays is bounded by the distinct names ever used.
fn interned(text: &str) -> &'static str {
    static TEXTS: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut texts = TEXTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(text) = texts.get(text) {
        return text;
    }
    let text: &'static str = Box::leak(text.to_owned().into_boxed_str());
    texts.insert(text);
    text
}

/// The one `'static` copy of a list of interned texts, as [`interned`].
fn interned_list(list: Vec<&'static str>) -> &'static [&'static str] {
    static LISTS: std::sync::Mutex<std::collections::BTreeSet<&'static [&'static str]>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut lists = LISTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(list) = lists.get(list.as_slice()) {
        return list;
    }
    let list: &'static [&'static str] = Box::leak(list.into_boxed_slice());
    lists.insert(list);
    list
}

impl ToolDefinition {
    pub(crate) fn of<S, T: SecureTool<S>>() -> Result<Self, DefinitionError> {
        let meta = T::META;
        let scopes = meta
            .scopes
            .iter()
            .map(|s| Scope::new(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| DefinitionError::InvalidScope {
                tool: meta.name.to_owned(),
                source,
            })?;
        if scopes.is_empty() && !meta.unscoped {
            return Err(DefinitionError::NoScope {
                tool: meta.name.to_owned(),
            });
        }
        let mut input_schema = rmcp::handler::server::common::schema_for_input::<T::Args>()
            .map_err(|message| DefinitionError::InputSchema {
                tool: meta.name.to_owned(),
                message,
            })?;
        // The arguments are the root object's `properties`: the pipeline refuses any other name, records only
        // those in clear, and says `additionalProperties: false`. A root that composes subschemas (what schemars
        // makes of a `#[serde(flatten)]` enum, say) declares arguments elsewhere: with `additionalProperties: false`
        // beside it no call would be valid, and the arguments it declares would be refused as unknown. Refused
        // here, with the fix.
        const COMPOSING: [&str; 8] = [
            "allOf",
            "anyOf",
            "oneOf",
            "$ref",
            "if",
            "unevaluatedProperties",
            "dependentSchemas",
            "patternProperties",
        ];
        if let Some(keyword) = COMPOSING.iter().find(|k| input_schema.contains_key(**k)) {
            return Err(DefinitionError::InputSchema {
                tool: meta.name.to_owned(),
                message: format!(
                    "the input schema composes subschemas at its root (`{keyword}`, as a `#[serde(flatten)]` enum \
                     makes): the arguments must be the properties of one object; give them as fields of the \
                     arguments struct (an enum as one argument's type)"
                ),
            });
        }
        // A tool without arguments lists an empty `properties`, as rmcp does, for clients that insist on the key.
        let schema = Arc::make_mut(&mut input_schema);
        schema
            .entry("properties")
            .or_insert_with(|| JsonObject::new().into());
        schema.entry("additionalProperties").or_insert(false.into());
        let properties = input_schema.get("properties").and_then(|p| p.as_object());
        if let Some(name) = meta
            .audit_redact
            .iter()
            .find(|name| !properties.is_some_and(|p| p.contains_key(**name)))
        {
            return Err(DefinitionError::UnknownRedaction {
                tool: meta.name.to_owned(),
                name: (*name).to_owned(),
            });
        }
        // An integer's schema says its type's range, which decoding enforces (schemars writes `uint32` with a
        // `minimum` of 0 but no `maximum`, so 5000000000 passed the schema and was refused).
        integer_ranges(Arc::make_mut(&mut input_schema));
        // A redacted argument's default or examples would publish a value in `tools/list` (a default computed by a
        // function, say `server_key()`), whatever the records withhold: they are left out of its schema, however
        // deep, and out of every definition it refers to (a struct's fields are in `$defs`).
        if !meta.audit_redact.is_empty() {
            withhold_redacted_values(Arc::make_mut(&mut input_schema), meta.audit_redact);
        }
        let mut annotations = ToolAnnotations::new();
        annotations.title = meta.title.map(str::to_owned);
        annotations.read_only_hint = meta.read_only;
        annotations.destructive_hint = meta.destructive;
        annotations.idempotent_hint = meta.idempotent;
        annotations.open_world_hint = meta.open_world;
        Ok(ToolDefinition {
            name: meta.name,
            title: meta.title,
            description: meta.description,
            input_schema,
            output_schema: T::Output::output_schema(),
            annotations,
            scopes,
            audit_redact: meta.audit_redact,
        })
    }

    /// The definition of a plain rmcp tool put under the policy: its name, scopes and redactions. Its schema and
    /// description are its server's to list. Names and redactions live as long as the process (tool sets are built
    /// once).
    pub(crate) fn plain(
        name: &str,
        scopes: &[String],
        unscoped: bool,
        audit_redact: &[String],
        read_only: bool,
    ) -> Result<Self, DefinitionError> {
        let scopes = scopes
            .iter()
            .map(|s| Scope::new(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| DefinitionError::InvalidScope {
                tool: name.to_owned(),
                source,
            })?;
        if scopes.is_empty() && !unscoped {
            return Err(DefinitionError::NoScope {
                tool: name.to_owned(),
            });
        }
        let leak = interned;
        let audit_redact: &'static [&'static str] = if audit_redact.is_empty() {
            &[]
        } else {
            interned_list(audit_redact.iter().map(|r| leak(r)).collect())
        };
        let mut annotations = ToolAnnotations::new();
        annotations.read_only_hint = read_only.then_some(true);
        let mut schema = JsonObject::new();
        schema.insert("type".into(), "object".into());
        Ok(ToolDefinition {
            name: leak(name),
            title: None,
            description: None,
            input_schema: Arc::new(schema),
            output_schema: None,
            annotations,
            scopes,
            audit_redact,
        })
    }

    /// The tool's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The human-readable title, if given.
    pub fn title(&self) -> Option<&'static str> {
        self.title
    }

    /// The description, from the function's doc comment.
    pub fn description(&self) -> Option<&'static str> {
        self.description
    }

    /// The input JSON Schema (root `type: object`).
    pub fn input_schema(&self) -> &Arc<JsonObject> {
        &self.input_schema
    }

    /// The output JSON Schema, for tools with structured results.
    pub fn output_schema(&self) -> Option<&Arc<JsonObject>> {
        self.output_schema.as_ref()
    }

    /// The MCP annotations (hints).
    pub fn annotations(&self) -> &ToolAnnotations {
        &self.annotations
    }

    /// Every scope a caller must hold to call the tool.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// The argument names whose values never reach an audit record.
    pub fn audit_redact(&self) -> &'static [&'static str] {
        self.audit_redact
    }

    /// The definition as an rmcp [`Tool`], with the required scopes under [`SCOPES_META_KEY`] in `_meta`.
    pub fn to_rmcp_tool(&self) -> Tool {
        let mut tool = Tool::new_with_raw(
            self.name,
            self.description.map(std::borrow::Cow::Borrowed),
            self.input_schema.clone(),
        );
        if let Some(title) = self.title {
            tool = tool.with_title(title);
        }
        if let Some(output) = &self.output_schema {
            tool = tool.with_raw_output_schema(output.clone());
        }
        if !annotations_empty(&self.annotations) {
            tool = tool.with_annotations(self.annotations.clone());
        }
        let mut meta = JsonObject::new();
        meta.insert(
            SCOPES_META_KEY.into(),
            self.scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .into(),
        );
        tool.with_meta(rmcp::model::MetaObject(meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A set rebuilt with the same plain tool reuses its name and redactions (each build leaked new copies).
    #[test]
    fn a_plain_tool_defined_again_leaks_nothing_new() {
        let define = || {
            ToolDefinition::plain(
                "search_tickets",
                &["tickets.read".to_owned()],
                false,
                &["query".to_owned(), "token".to_owned()],
                true,
            )
            .unwrap()
        };
        let (first, second) = (define(), define());
        assert!(std::ptr::eq(first.name(), second.name()));
        assert!(std::ptr::eq(first.audit_redact(), second.audit_redact()));
        assert_eq!(second.audit_redact(), ["query", "token"]);
    }
}
