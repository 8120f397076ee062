//! The tool set and its call pipeline: authorize, deserialize, validate, run, shape, audit.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::FutureExt;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, RequestId};
use serde_json::Value;
use tracing::Instrument;

use crate::audit::{self, Audit, AuditEvent, AuditSink, Outcome, ToolCallEvent};
use crate::context::{CallContext, Caller};
use crate::error::{ToolError, codes};
use crate::output::ToolOutput;
use crate::panic_guard;
use crate::scope::Scope;
use crate::tool::{DefinitionError, SecureTool, ToolDefinition, ToolFuture};
use serde::Deserialize as _;

type Invoke<S> = fn(&Value, &CallContext, &S) -> Result<ToolFuture, ToolError>;

struct Registered<S> {
    definition: ToolDefinition,
    /// The name and scopes again, shared with each call's context and audit record.
    name: Arc<str>,
    scopes: Arc<[Scope]>,
    invoke: Invoke<S>,
    /// Argument names the schema allows, when it allows no others.
    allowed: Option<BTreeSet<String>>,
}

/// A set of secure tools with their shared state `S` and audit trail: the one way a tool is called.
///
/// Cheap to clone; clones share everything.
pub struct ToolSet<S = ()> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    tools: BTreeMap<&'static str, Registered<S>>,
    state: S,
    audit: Audit,
}

impl<S> Clone for ToolSet<S> {
    fn clone(&self) -> Self {
        ToolSet {
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for ToolSet<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSet")
            .field("tools", &self.inner.tools.keys().collect::<Vec<_>>())
            .field("audit", &self.inner.audit)
            .finish()
    }
}

/// Builds a [`ToolSet`].
#[must_use]
pub struct ToolSetBuilder<S> {
    state: S,
    tools: Vec<Result<Registered<S>, DefinitionError>>,
    server_id: Cow<'static, str>,
    sinks: Vec<Arc<dyn AuditSink>>,
}

impl<S: Send + Sync + 'static> ToolSet<S> {
    /// Starts a tool set whose handlers share `state` (use `()` for none).
    pub fn builder(state: S) -> ToolSetBuilder<S> {
        ToolSetBuilder {
            state,
            tools: Vec::new(),
            server_id: Cow::Borrowed("secure-tools"),
            sinks: Vec::new(),
        }
    }
}

impl<S: Send + Sync + 'static> ToolSetBuilder<S> {
    /// Adds the tool made by `#[secure_tool]` on the function `T`.
    pub fn tool<T: SecureTool<S>>(mut self) -> Self {
        let registered = ToolDefinition::of::<S, T>().map(|definition| Registered {
            allowed: allowed_arguments(definition.input_schema()),
            name: Arc::from(definition.name()),
            scopes: definition.scopes().into(),
            definition,
            invoke: invoke::<S, T>,
        });
        self.tools.push(registered);
        self
    }

    /// The id stamped on every audit record (default `secure-tools`).
    pub fn server_id(mut self, id: impl Into<Cow<'static, str>>) -> Self {
        self.server_id = id.into();
        self
    }

    /// What the runners' settings ask of every tool set: the server id, if given, and JSON lines appended to
    /// `audit_log`, if given.
    pub(crate) fn runner_settings(
        mut self,
        server_id: Option<&str>,
        audit_log: Option<&std::path::Path>,
    ) -> std::io::Result<Self> {
        if let Some(id) = server_id {
            self = self.server_id(id.to_owned());
        }
        if let Some(path) = audit_log {
            self = self.audit_sink(audit::JsonLinesSink::append_to(path)?);
        }
        Ok(self)
    }

    /// Adds an audit destination. Without any, records go to standard error as JSON lines.
    pub fn audit_sink(mut self, sink: impl AuditSink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Checks every tool and builds the set.
    pub fn build(self) -> Result<ToolSet<S>, DefinitionError> {
        let mut tools = BTreeMap::new();
        for registered in self.tools {
            let registered = registered?;
            let name = registered.definition.name();
            if tools.insert(name, registered).is_some() {
                return Err(DefinitionError::DuplicateName(name.to_owned()));
            }
        }
        let mut sinks = self.sinks;
        if sinks.is_empty() {
            sinks.push(Arc::new(audit::JsonLinesSink::stderr()));
        }
        panic_guard::install();
        Ok(ToolSet {
            inner: Arc::new(Inner {
                tools,
                state: self.state,
                audit: Audit::new(self.server_id.into_owned(), sinks),
            }),
        })
    }
}

fn allowed_arguments(schema: &JsonObject) -> Option<BTreeSet<String>> {
    if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
        return None;
    }
    let properties = schema.get("properties")?.as_object()?;
    Some(properties.keys().cloned().collect())
}

fn invoke<S, T: SecureTool<S>>(
    arguments: &Value,
    cx: &CallContext,
    state: &S,
) -> Result<ToolFuture, ToolError> {
    // The fast path deserializes directly; only a failure pays for tracking the path to name the field.
    let args = match T::Args::deserialize(arguments) {
        Ok(args) => args,
        Err(_) => {
            return Err(
                match serde_path_to_error::deserialize::<_, T::Args>(arguments) {
                    Err(err) => crate::input::malformed(err, T::META.audit_redact),
                    Ok(_) => ToolError::new(
                        codes::MALFORMED_ARGUMENTS,
                        "the arguments do not have the declared shape",
                    ),
                },
            );
        }
    };
    validator::Validate::validate(&args).map_err(|errors| crate::input::invalid(&errors))?;
    Ok(T::invoke(args, cx, state))
}

/// One `tools/call`.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// Who is calling.
    pub caller: Caller,
    /// The JSON-RPC id of the request.
    pub request_id: RequestId,
    /// The tool's name.
    pub tool: String,
    /// The arguments, if any were sent.
    pub arguments: Option<JsonObject>,
}

/// The answer to a call of a known tool: its outcome and either the output or the refusal.
#[derive(Debug)]
pub struct CallResponse {
    outcome: Outcome,
    result: Result<ToolOutput, ToolError>,
    /// The tool declares an output schema, which an error's `structuredContent` would not match.
    has_output_schema: bool,
}

impl CallResponse {
    /// How the call ended, as audited.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The output, or the error with its code and caller-visible message.
    pub fn result(&self) -> Result<&ToolOutput, &ToolError> {
        self.result.as_ref()
    }

    /// The error code, if the call failed.
    pub fn error_code(&self) -> Option<&str> {
        self.result.as_ref().err().map(ToolError::code)
    }

    /// The MCP result: output as text or structured content; a failure as an `isError` result whose text starts
    /// with the code (`missing_scope:files.write: ...`) and, for a tool without an output schema, whose
    /// `structuredContent` is `{"error": {"code", "message"}}`.
    ///
    /// A tool with an output schema gets no `structuredContent` on a failure: that object would not match the
    /// schema, and clients that check every `structuredContent` against it, `isError` or not (the TypeScript
    /// SDK v1 and the MCP Inspector among them), would replace the refusal with a validation error of their own.
    pub fn into_call_tool_result(self) -> CallToolResult {
        match self.result {
            Ok(ToolOutput::Text(text)) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Ok(ToolOutput::Structured { value, text: None }) => CallToolResult::structured(value),
            Ok(ToolOutput::Structured {
                value,
                text: Some(text),
            }) => {
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = Some(value);
                result
            }
            Err(err) => {
                let mut result = CallToolResult::error(vec![ContentBlock::text(err.to_string())]);
                if !self.has_output_schema {
                    result.structured_content = Some(serde_json::json!({
                        "error": { "code": err.code(), "message": err.message() }
                    }));
                }
                result
            }
        }
    }
}

/// A call that gets no tool result: a protocol error for the transport to answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No tool has this name.
    #[error("unknown tool `{}`", .0.escape_debug())]
    UnknownTool(String),
}

impl<S: Send + Sync + 'static> ToolSet<S> {
    /// The tool definitions, sorted by name.
    pub fn definitions(&self) -> impl ExactSizeIterator<Item = &ToolDefinition> {
        self.inner.tools.values().map(|t| &t.definition)
    }

    /// The definition of one tool.
    pub fn definition(&self, name: &str) -> Option<&ToolDefinition> {
        self.inner.tools.get(name).map(|t| &t.definition)
    }

    /// The shared state.
    pub fn state(&self) -> &S {
        &self.inner.state
    }

    /// The audit trail, for events beyond tool calls.
    pub fn audit(&self) -> &Audit {
        &self.inner.audit
    }

    /// Calls a tool through the pipeline: authorize, deserialize, validate, run, shape; then audit, exactly once.
    ///
    /// Runs inside a `tracing` span `tool_call` with the tool name and request id. A call of an unknown tool is
    /// audited too, then returned as [`CallError::UnknownTool`].
    pub async fn call(&self, request: CallRequest) -> Result<CallResponse, CallError> {
        let span = tracing::info_span!(
            "tool_call",
            tool = %audit::shorten_str(&request.tool),
            request_id = %request.request_id,
        );
        self.call_in_span(request).instrument(span).await
    }

    async fn call_in_span(&self, request: CallRequest) -> Result<CallResponse, CallError> {
        // One clock for both the record's time and the call's duration (a clock read is a good part of the
        // pipeline's own cost); a clock stepped back mid-call gives a duration of 0.
        let started = SystemTime::now();
        let CallRequest {
            caller,
            request_id,
            tool: name,
            arguments,
        } = request;
        let tool = self.inner.tools.get(name.as_str());
        let arguments = Value::Object(arguments.unwrap_or_default());

        let (outcome, result) = match tool {
            None => (
                Outcome::Invalid,
                Err(ToolError::new(codes::UNKNOWN_TOOL, "no tool has this name")),
            ),
            Some(tool) => self.run(tool, &caller, &request_id, &arguments).await,
        };

        // An unknown tool declares nothing, so every argument of its call is treated as a secret. Arguments the
        // schema does not name (an alias, a typo) are treated as secrets too: only declared, unredacted arguments
        // are recorded in clear.
        let inputs = match tool {
            Some(tool) => {
                let redact = tool.definition.audit_redact();
                audit::redact_owned(arguments, |key| {
                    redact.contains(&key)
                        || tool
                            .allowed
                            .as_ref()
                            .is_some_and(|allowed| !allowed.contains(key))
                })
            }
            None => audit::redact_owned(arguments, |_| true),
        };
        let shared = |text: &Arc<str>| {
            if text.len() > audit::MAX_AUDIT_STRING {
                Arc::from(audit::shorten_str(text))
            } else {
                text.clone()
            }
        };
        let finished = SystemTime::now();
        let event = ToolCallEvent {
            request_id,
            tool: tool.map_or_else(|| Arc::from(audit::shorten_str(&name)), |t| t.name.clone()),
            scopes: tool.map_or_else(|| Arc::from([]), |t| t.scopes.clone()),
            caller: shared(caller.id_shared()),
            outcome,
            ok: outcome == Outcome::Ok,
            inputs,
            error: result.as_ref().err().map(|e| e.code().to_owned()),
            duration_us: finished
                .duration_since(started)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        };
        let audited = self
            .inner
            .audit
            .record_at(audit::Timestamp(finished), AuditEvent::ToolCall(event));

        let Some(tool) = tool else {
            return Err(CallError::UnknownTool(name));
        };
        let has_output_schema = tool.definition.output_schema().is_some();
        match audited {
            Ok(()) => Ok(CallResponse {
                outcome,
                result,
                has_output_schema,
            }),
            Err(err) => {
                tracing::error!(error = %err, "audit record not written; the call is reported failed");
                Ok(CallResponse {
                    outcome: Outcome::Error,
                    result: Err(audit_unavailable()),
                    has_output_schema,
                })
            }
        }
    }

    async fn run(
        &self,
        tool: &Registered<S>,
        caller: &Caller,
        request_id: &RequestId,
        arguments: &Value,
    ) -> (Outcome, Result<ToolOutput, ToolError>) {
        if self.inner.audit.is_failing() {
            return (Outcome::Denied, Err(audit_unavailable()));
        }
        if let Err(missing) = caller.grant().check(tool.definition.scopes()) {
            let message = format!(
                "this tool requires the scope `{}`, which the caller does not hold",
                missing.0
            );
            return (
                Outcome::Denied,
                Err(ToolError::new(missing.to_string(), message)),
            );
        }
        if let (Some(allowed), Value::Object(arguments)) = (&tool.allowed, arguments)
            && let Some(unknown) = arguments.keys().find(|k| !allowed.contains(*k))
        {
            let message = format!(
                "unknown argument `{}`",
                audit::shorten_str(unknown).escape_debug()
            );
            return (
                Outcome::Invalid,
                Err(ToolError::new(codes::MALFORMED_ARGUMENTS, message)),
            );
        }

        let tool_name = tool.definition.name();
        let cx = CallContext::new(caller.clone(), request_id.clone(), tool.name.clone());
        let started = panic_guard::guard(tool_name, || {
            (tool.invoke)(arguments, &cx, &self.inner.state)
        });
        let future = match started {
            Err(()) => return (Outcome::Panic, Err(panicked())),
            Ok(Err(refusal)) => return (Outcome::Invalid, Err(refusal)),
            Ok(Ok(future)) => future,
        };
        match AssertUnwindSafe(panic_guard::Guarded::new(tool_name, future))
            .catch_unwind()
            .await
        {
            Err(_) => (Outcome::Panic, Err(panicked())),
            Ok(Ok(output)) => (Outcome::Ok, Ok(output)),
            Ok(Err(err)) => {
                if let Some(source) = err.internal_source() {
                    tracing::error!(code = err.code(), error = %source, "tool failed");
                }
                (Outcome::Error, Err(err))
            }
        }
    }
}

fn panicked() -> ToolError {
    ToolError::new(
        codes::TOOL_PANICKED,
        "the tool failed unexpectedly; the server log has the details",
    )
}

fn audit_unavailable() -> ToolError {
    ToolError::new(
        codes::AUDIT_UNAVAILABLE,
        "the audit trail cannot be written, so no call is accepted",
    )
}
