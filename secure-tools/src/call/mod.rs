//! The call pipeline: every call of a secure tool, read top to bottom.
//!
//! [`ToolSet::call`] opens the audited region (a `Call`: its id, its clock, and the promise of exactly one
//! `tool_call` record, kept even if the call's future is dropped), looks the tool up, and runs the stages of
//! `stages` in order. Each stage either passes or refuses with a [`Refusal`]; `Call::finish` is the one place a
//! refusal becomes an outcome, a code and an audit record.
//!
//! | stage | refuses with (outcome, code) |
//! | --- | --- |
//! | look up | `invalid`, `unknown_tool` (a protocol error for the transport) |
//! | admit | `limited`, `shutting_down`; `denied`, `audit_unavailable` |
//! | authorize | `denied`, `missing_scope:<scope>` |
//! | limits | `limited`, `overloaded`, `rate_limited` or `rate_limit_unavailable` |
//! | guards before decoding | the guard's |
//! | decode | `invalid`, `malformed_arguments` (or `invalid_input` from a type that checks its value) |
//! | validate | `invalid`, `invalid_input` |
//! | argument rule | the rule's (`denied` by convention) |
//! | guards after decoding | the guard's |
//! | record the start | `denied`, `audit_unavailable` (tools not marked `read_only` only); `timeout`, `cancelled` as below |
//! | invoke | the handler's (`error`); `panic`, `tool_panicked`; `timeout`; `cancelled`, `cancelled` or `shutting_down` |
//! | record the call | `error`, `audit_unavailable` (the result is withheld) |
//!
//! The user's code of a stage (a guard, the argument rule, the handler) is stopped when the call's time is up, its
//! client cancels it or the server stops it at shutdown. A call found out of time, cancelled or stopped already
//! before a guard, the argument rule, its `call_started` record, or a handler that comes after any of those (or
//! after a rate kept in Redis) does not go on; the pipeline's own stages are quick and bounded, and a stop that
//! comes during them races any look.

mod context;
mod decode;
pub mod guard;
pub(crate) mod limits;
pub(crate) mod panic;
mod refusal;
#[cfg(feature = "redis")]
pub mod shared_rate;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Instant, SystemTime};

use futures_util::FutureExt;
use rmcp::RoleServer;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, MetaObject};
use rmcp::service::RequestContext;
use serde_json::Value;
use tracing::Instrument;

pub(crate) use context::Answers;
#[cfg(feature = "http")]
pub(crate) use context::ScopeRefusalSlot;
pub(crate) use context::SessionState;
pub use context::{
    Args, CallContext, CallId, Caller, CancellationToken, ClientLog, Connection, Elicitation,
    FromCallContext, FromRef, MAX_AUDIT_FIELDS, Meta, Progress, RequestId, Sampling, State,
};
pub use limits::{Rate, parse_duration};
pub use refusal::{Refusal, RefusalKind, codes};

use self::guard::{GuardCall, GuardStage, Pass};
use crate::audit::{
    self, Audit, AuditEvent, CallStartedEvent, Origin, Outcome, Timestamp, ToolCallEvent,
};
use crate::output::ToolOutput;
use crate::tool::SecureTool;
use crate::toolset::{Inner, Registered, ToolEntry, ToolSet};

/// The `_meta` key under which a refused call's result carries its refusal, typed (see [`RefusalNotice`]).
pub const REFUSAL_META_KEY: &str = "secure-tools/refusal";

/// One `tools/call`. Its `Debug` shows the arguments' names, never their values (a value may be one the tool
/// redacts).
#[derive(Clone)]
#[non_exhaustive]
pub struct CallRequest {
    /// Who is calling.
    pub caller: Caller,
    /// The JSON-RPC id of the request (`0` unless set).
    pub request_id: RequestId,
    /// The tool's name.
    pub tool: String,
    /// The arguments, if any were sent.
    pub arguments: Option<JsonObject>,
    /// What the transport knows about where the call came from.
    pub connection: Connection,
    /// rmcp's context of the request, when it came through an MCP session: the handler's peer, `_meta`,
    /// cancellation.
    pub rmcp: Option<RequestContext<RoleServer>>,
    /// For a plain rmcp tool: the handler that runs it, once the pipeline lets the call through.
    pub(crate) forward: Option<Forward>,
    /// Under the stateless revision, what a retry brings back for the questions of earlier rounds (its
    /// `inputResponses` and `requestState`), set by the transport.
    pub(crate) answers: Option<Box<context::Answers>>,
}

impl std::fmt::Debug for CallRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRequest")
            .field("caller", &self.caller)
            .field("request_id", &self.request_id)
            .field("tool", &self.tool)
            .field(
                "arguments",
                &self
                    .arguments
                    .as_ref()
                    .map(|a| a.keys().collect::<Vec<_>>()),
            )
            .field("connection", &self.connection)
            .finish_non_exhaustive()
    }
}

/// The future of a plain rmcp tool's call.
pub(crate) type ForwardFuture =
    Pin<Box<dyn Future<Output = Result<CallToolResult, rmcp::ErrorData>> + Send + 'static>>;

/// Runs a plain rmcp tool once, given the call's arguments.
type ForwardFn = Box<dyn FnOnce(Option<JsonObject>) -> ForwardFuture + Send>;

/// How a plain rmcp tool is run: its server's own `call_tool`, given the call's arguments.
#[derive(Clone)]
pub(crate) struct Forward(Arc<std::sync::Mutex<Option<ForwardFn>>>);

impl Forward {
    pub(crate) fn new(
        run: impl FnOnce(Option<JsonObject>) -> ForwardFuture + Send + 'static,
    ) -> Self {
        Forward(Arc::new(std::sync::Mutex::new(Some(Box::new(run)))))
    }

    fn take(&self) -> Option<ForwardFn> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forward")
    }
}

impl CallRequest {
    /// A call of `tool` by `caller` with `arguments`, made in process.
    pub fn new(caller: Caller, tool: impl Into<String>, arguments: Option<JsonObject>) -> Self {
        CallRequest {
            caller,
            request_id: RequestId::Number(0),
            tool: tool.into(),
            arguments,
            connection: Connection::default(),
            rmcp: None,
            forward: None,
            answers: None,
        }
    }

    /// Sets the JSON-RPC id.
    pub fn with_request_id(mut self, id: RequestId) -> Self {
        self.request_id = id;
        self
    }

    /// Sets what the transport knows about the call's origin.
    pub fn with_connection(mut self, connection: Connection) -> Self {
        self.connection = connection;
        self
    }

    /// Sets rmcp's context of the request (and takes its id).
    pub fn with_rmcp_context(mut self, context: RequestContext<RoleServer>) -> Self {
        self.request_id = context.id.clone();
        self.rmcp = Some(context);
        self
    }
}

/// The answers a retry carries (see [`context::Answers`]). `None` when there are none.
#[inline]
pub(crate) fn answers_of(
    responses: Option<rmcp::model::InputResponses>,
    request_state: Option<&str>,
) -> Option<Box<context::Answers>> {
    if responses.is_none() && request_state.is_none() {
        return None;
    }
    context::Answers::of_retry(responses, request_state)
}

/// The answer to a call of a known tool: its outcome and either the output or the refusal.
#[derive(Debug)]
pub struct CallResponse {
    call_id: CallId,
    outcome: Outcome,
    result: Result<ToolOutput, Refusal>,
    /// The tool declares an output schema, which an error's `structuredContent` would not match.
    has_output_schema: bool,
}

/// A refusal as a refused call's result carries it under `_meta["secure-tools/refusal"]`, for clients and
/// transports to read without parsing text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RefusalNotice {
    /// The stable code (`missing_scope:files.write`, `rate_limited`, ...).
    pub code: String,
    /// The outcome as audited (`denied`, `limited`, ...).
    pub outcome: String,
    /// The message shown to the caller.
    pub message: String,
    /// For a limit: whole seconds after which a retry may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// For a missing scope: every scope the tool requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_scopes: Option<Vec<String>>,
    /// The call's id, as on its audit records.
    pub call_id: String,
}

impl RefusalNotice {
    /// The notice of a call's refusal.
    fn new(refusal: &Refusal, outcome: Outcome, call_id: CallId) -> Self {
        RefusalNotice {
            code: refusal.code().to_owned(),
            outcome: outcome.as_str().to_owned(),
            message: refusal.message().to_owned(),
            retry_after_seconds: retry_after_seconds(refusal),
            required_scopes: refusal
                .required_scopes()
                .map(|scopes| scopes.iter().map(|s| s.as_str().to_owned()).collect()),
            call_id: call_id.to_string(),
        }
    }

    /// The notice in a tool result's `_meta`, if it has one.
    pub fn from_result(result: &CallToolResult) -> Option<Self> {
        let value = result.meta.as_ref()?.get(REFUSAL_META_KEY)?;
        serde_json::from_value(value.clone()).ok()
    }
}

impl CallResponse {
    /// The call's unique id, as on its audit records.
    pub fn call_id(&self) -> CallId {
        self.call_id
    }

    /// How the call ended, as audited.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The output, or the refusal with its code and caller-visible message.
    pub fn result(&self) -> Result<&ToolOutput, &Refusal> {
        self.result.as_ref()
    }

    /// The refusal, if the call was refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.result.as_ref().err()
    }

    /// The error code, if the call failed.
    pub fn error_code(&self) -> Option<&str> {
        self.refusal().map(Refusal::code)
    }

    /// The MCP answer: [`CallResponse::into_call_tool_result`], or the `input_required` result of a handler that
    /// asked the client a question under the stateless revision (see [`Elicitation`]).
    pub fn into_call_tool_response(self) -> rmcp::model::CallToolResponse {
        match self.result {
            Ok(ToolOutput::InputRequired(input)) => {
                rmcp::model::CallToolResponse::InputRequired(input)
            }
            result => rmcp::model::CallToolResponse::Complete(complete_result(
                result,
                self.outcome,
                self.call_id,
                self.has_output_schema,
            )),
        }
    }

    /// The MCP result a client is sent for this response, as [`Self::into_call_tool_result`] makes it, leaving the
    /// response as it is (for tests, say).
    pub fn to_call_tool_result(&self) -> CallToolResult {
        match &self.result {
            Ok(output) => output.clone().into_call_tool_result(),
            Err(refusal) => {
                refused_result(refusal, self.outcome, self.call_id, self.has_output_schema)
            }
        }
    }

    /// The MCP result: output as content (text, structured, or blocks of its own); a refusal as an `isError`
    /// result whose text starts with the code (`missing_scope:files.write: ...`), with the refusal under
    /// `_meta["secure-tools/refusal"]` ([`RefusalNotice`]) and, for a tool without an output schema, as
    /// `structuredContent` `{"error": {"code", "message", "retryAfterSeconds"?}}`.
    ///
    /// A tool with an output schema gets no `structuredContent` on a failure: that object would not match the
    /// schema, and clients that check every `structuredContent` against it, `isError` or not (the TypeScript
    /// SDK v1 and the MCP Inspector among them), would replace the refusal with a validation error of their own.
    pub fn into_call_tool_result(self) -> CallToolResult {
        complete_result(
            self.result,
            self.outcome,
            self.call_id,
            self.has_output_schema,
        )
    }
}

/// [`CallResponse::into_call_tool_result`], from the response's parts.
fn complete_result(
    result: Result<ToolOutput, Refusal>,
    outcome: Outcome,
    call_id: CallId,
    has_output_schema: bool,
) -> CallToolResult {
    match result {
        Ok(output) => output.into_call_tool_result(),
        Err(refusal) => refused_result(&refusal, outcome, call_id, has_output_schema),
    }
}

/// A refused call's result: an error result with the refusal's text, its code and message as structured content
/// (unless the tool declares an output schema), and the notice under `_meta`.
fn refused_result(
    refusal: &Refusal,
    outcome: Outcome,
    call_id: CallId,
    has_output_schema: bool,
) -> CallToolResult {
    let retry = retry_after_seconds(refusal);
    let mut result = CallToolResult::error(vec![ContentBlock::text(refusal.to_string())]);
    if !has_output_schema {
        let mut error = serde_json::json!({
            "code": refusal.code(), "message": refusal.message()
        });
        if let Some(secs) = retry {
            error["retryAfterSeconds"] = secs.into();
        }
        result.structured_content = Some(serde_json::json!({ "error": error }));
    }
    let notice = RefusalNotice::new(refusal, outcome, call_id);
    let mut meta = MetaObject::new();
    if let Ok(value) = serde_json::to_value(notice) {
        meta.insert(REFUSAL_META_KEY.into(), value);
    }
    result.meta = Some(meta);
    result
}

/// Whole seconds after which a retry may succeed, rounded up, for a refusal that says.
fn retry_after_seconds(refusal: &Refusal) -> Option<u64> {
    refusal
        .retry_after_duration()
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// A call that gets no tool result: a protocol error for the transport to answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No tool has this name.
    #[error("unknown tool `{}`", .0.escape_debug())]
    UnknownTool(String),
}

/// The stages of one tool's calls, monomorphized for it, boxed behind a function pointer in its registration.
pub(crate) type RunFn<S> =
    for<'a, 'c> fn(
        &'a Inner<S>,
        &'a Registered<S>,
        &'a mut Call<'c>,
    ) -> Pin<Box<dyn Future<Output = Result<ToolOutput, Refusal>> + Send + 'a>>;

pub(crate) fn run_stages<'a, 'c, S, T>(
    set: &'a Inner<S>,
    tool: &'a Registered<S>,
    call: &'a mut Call<'c>,
) -> Pin<Box<dyn Future<Output = Result<ToolOutput, Refusal>> + Send + 'a>>
where
    S: Send + Sync + 'static,
    T: SecureTool<S>,
{
    Box::pin(stages::<S, T>(set, &tool.entry, call))
}

impl<S: Send + Sync + 'static> ToolSet<S> {
    /// Calls a tool through the pipeline (see the [module docs](crate::call) for its stages), audited exactly
    /// once whatever happens: refused, failed, panicked, timed out, cancelled, or its future dropped.
    ///
    /// Runs inside a `tracing` span `tool_call` with the tool name, the request id and the call id. A call of an
    /// unknown tool is audited too, then returned as [`CallError::UnknownTool`].
    pub async fn call(&self, request: CallRequest) -> Result<CallResponse, CallError> {
        self.call_begun(request).await
    }

    /// [`ToolSet::call`], the call begun now (its id, its clock, its place among the calls in flight) rather than
    /// when the future is first polled, so that the future holds the call but not the request as well (an async
    /// fn keeps its arguments for its whole life). For transports, which poll at once.
    pub(crate) fn call_begun(
        &self,
        request: CallRequest,
    ) -> impl Future<Output = Result<CallResponse, CallError>> + Send + '_ {
        let set = &*self.inner;
        let (mut call, tool) = Call::begin(set, request);
        let span = call.span();
        #[cfg(feature = "otel")]
        let otel = call.otel_context();
        async move {
            let result = match tool {
                // The stages contain the user's code themselves; this catches what is left (a panic of the pipeline
                // itself, a guard's `stage()` or its pass's drop), so that a call always gets an answer.
                Some(tool) => {
                    let stages = AssertUnwindSafe((tool.run)(set, tool, &mut call)).catch_unwind();
                    // The handler (and what it instruments) runs with the call's span as the current context.
                    #[cfg(feature = "otel")]
                    let result = match otel {
                        Some(cx) => {
                            opentelemetry::context::FutureExt::with_context(stages, cx).await
                        }
                        None => stages.await,
                    };
                    #[cfg(not(feature = "otel"))]
                    let result = stages.await;
                    result.unwrap_or_else(|_payload| Err(Refusal::panicked()))
                }
                None => Err(Refusal::invalid(
                    codes::UNKNOWN_TOOL,
                    "no tool has this name",
                )),
            };
            call.finish(result)
        }
        .instrument(span)
    }
}

impl<S: Send + Sync + 'static> ToolSet<S> {
    /// Refuses a call of a tool its server has but the set does not declare (`undeclared_tool`, outcome
    /// `denied`), with its one record like any call.
    pub(crate) async fn refuse_undeclared(&self, request: CallRequest) -> CallResponse {
        let set = &*self.inner;
        let (call, _) = Call::begin(set, request);
        let refusal = Refusal::denied(
            codes::UNDECLARED_TOOL,
            "this tool is not under the server's policy, so it is not called",
        );
        // The tool is unknown to the set: the answer is the refusal all the same, not `unknown_tool`.
        let (response, _unknown) = call.answer(Err(refusal));
        response
    }
}

/// The stages, in order. Each passes or refuses; none writes the `tool_call` record.
async fn stages<S, T>(
    set: &Inner<S>,
    tool: &ToolEntry,
    call: &mut Call<'_>,
) -> Result<ToolOutput, Refusal>
where
    S: Send + Sync + 'static,
    T: SecureTool<S>,
{
    admit(set)?;
    authorize(tool, call.context.caller())?;
    let _slots = limit(set, tool, &call.context, call.started).await?;
    let guarded = !set.guards.is_empty() || !tool.guards.is_empty();
    // What the guards hold until the handler ends: the user's values, dropped under the tool's name.
    let mut passes = panic::HeldBy::new(tool.definition.name());
    // Guards' futures are boxed: a call without guards does not carry their state.
    if guarded {
        Box::pin(run_guards(
            set,
            tool,
            call,
            GuardStage::BeforeDecoding,
            passes.items(),
        ))
        .await?;
    }
    // Decoding and validation run the user's code too (a type's own `Deserialize`, a custom validator): a panic
    // there is caught, its message withheld, like a handler's.
    let name = tool.definition.name();
    let redact = tool.definition.audit_redact();
    let args: T::Args = panic::catch(name, || {
        decode::decode(
            &mut call.arguments,
            tool.allowed.as_ref(),
            T::META.denies_unknown_arguments,
            redact,
        )
    })
    .map_err(|()| Refusal::panicked())??;
    call.decoded = true;
    // Dropped under the tool's name if a stage refuses before the handler takes them.
    let args = panic::Held::new(name, args);
    panic::catch(name, || {
        decode::validate(
            args.get(),
            T::validate_nested,
            tool.allowed.as_ref(),
            redact,
            T::META.denies_unknown_arguments,
        )
    })
    .map_err(|()| Refusal::panicked())??;
    if T::HAS_ARGUMENT_RULE {
        authorize_arguments::<S, T>(set, tool, call, args.get()).await?;
    }
    if guarded {
        Box::pin(run_guards(
            set,
            tool,
            call,
            GuardStage::AfterDecoding,
            passes.items(),
        ))
        .await?;
    }
    // Whether something before the handler may have taken time: a guard, the argument rule, a rate kept in Redis,
    // a `call_started` write. Only then is a stop that came meanwhile looked for before the handler is called (see
    // `must_stop`; the start record always looks). The pipeline's own stages are quick and bounded, and a stop that
    // comes during them races any check anyway.
    let may_have_waited = guarded || T::HAS_ARGUMENT_RULE || limits_may_wait(set, tool);
    let limit = Deadline::of(set, tool, call);
    call.record_start(tool, limit)?;
    let limit = limit.looking(may_have_waited || tool.records_start);
    invoke::<S, T>(set, tool, call, args.take(), limit).await
}

/// Whether the limit stage may have waited: a rate kept in a shared store is a round trip.
fn limits_may_wait<S>(set: &Inner<S>, tool: &ToolEntry) -> bool {
    set.rate.as_ref().is_some_and(limits::RateLimiter::waits)
        || tool.rate.as_ref().is_some_and(limits::RateLimiter::waits)
}

/// The stages of a plain rmcp tool's call: the same checks, with the arguments as sent (its server decodes them),
/// then its server's own handler.
pub(crate) fn run_plain<'a, 'c, S: Send + Sync + 'static>(
    set: &'a Inner<S>,
    tool: &'a Registered<S>,
    call: &'a mut Call<'c>,
) -> Pin<Box<dyn Future<Output = Result<ToolOutput, Refusal>> + Send + 'a>> {
    Box::pin(plain_stages(set, &tool.entry, call))
}

async fn plain_stages<S: Send + Sync + 'static>(
    set: &Inner<S>,
    tool: &ToolEntry,
    call: &mut Call<'_>,
) -> Result<ToolOutput, Refusal> {
    admit(set)?;
    authorize(tool, call.context.caller())?;
    let _slots = limit(set, tool, &call.context, call.started).await?;
    let mut passes = panic::HeldBy::new(tool.definition.name());
    if !set.guards.is_empty() || !tool.guards.is_empty() {
        run_guards(set, tool, call, GuardStage::BeforeDecoding, passes.items()).await?;
        run_guards(set, tool, call, GuardStage::AfterDecoding, passes.items()).await?;
    }
    // Before the start is recorded: a call with nothing to run (made in process, not through its server) does not
    // start.
    let Some(run) = call.forward.take().and_then(|forward| forward.take()) else {
        return Err(Refusal::internal(
            "a plain rmcp tool runs only through the server that defines it",
        ));
    };
    let arguments = call.arguments.as_object().cloned();
    call.record_start(tool, Deadline::of(set, tool, call))?;
    let name = tool.definition.name();
    let limit = Deadline::of(set, tool, call);
    limit.stop_if_due(set, &call.context)?;
    let future = panic::catch(name, || run(arguments)).map_err(|()| Refusal::panicked())?;
    // Its server's message may quote an argument (a decoding error does): withheld when any is secret.
    let message = |message: String| {
        if tool.definition.audit_redact().is_empty() {
            std::borrow::Cow::Owned(message)
        } else {
            std::borrow::Cow::Borrowed("the tool's server refused the call")
        }
    };
    match contained(name, future, set, &call.context, limit).await {
        Ok(Ok(result)) => match rmcp_decoding_error(result) {
            Ok(result) => Ok(ToolOutput::Result(result)),
            Err(_) if !tool.definition.audit_redact().is_empty() => Err(Refusal::invalid(
                codes::INVALID_INPUT,
                "the arguments do not fit the tool's input schema (its server's message is withheld: it may \
                 quote a secret argument)",
            )),
            Err(error) => Err(Refusal::invalid(codes::INVALID_INPUT, error)),
        },
        Ok(Err(error)) => Err(if error.code == rmcp::model::ErrorCode::INVALID_PARAMS {
            Refusal::invalid(codes::INVALID_INPUT, message(error.message.into_owned()))
        } else {
            Refusal::new(codes::TOOL_ERROR, message(error.message.into_owned()))
        }),
        Err(stopped) => {
            call.context.cancel_handler();
            Err(stopped)
        }
    }
}

/// The message of rmcp's answer to arguments its router could not decode for a tool (`Parameters<T>`): since rmcp
/// 3.11 (`into_tool_argument_error`), a result with `isError` and that one text, not an `INVALID_PARAMS` error, so
/// that a model sees it. The text quotes the value that did not decode; the pipeline refuses such a call as
/// invalid input instead, withholding the text when the tool has a secret. Any other result is given back.
fn rmcp_decoding_error(result: CallToolResult) -> Result<CallToolResult, String> {
    const PREFIX: &str = "failed to deserialize parameters:";
    let text = match &result.content[..] {
        [only]
            if result.is_error == Some(true)
                && result.structured_content.is_none()
                && result.meta.is_none() =>
        {
            only.as_text().filter(|t| t.text.starts_with(PREFIX))
        }
        _ => None,
    };
    match text {
        Some(text) => Err(text.text.clone()),
        None => Ok(result),
    }
}

/// New calls are refused while the set shuts down, and while its audit trail cannot be written.
fn admit<S>(set: &Inner<S>) -> Result<(), Refusal> {
    if set.lifecycle.is_closing() {
        return Err(Refusal::limited(
            codes::SHUTTING_DOWN,
            "the server is shutting down and takes no new calls",
        ));
    }
    if set.audit.is_failing() {
        return Err(Refusal::audit_unavailable());
    }
    Ok(())
}

/// Every scope the tool requires must be in the caller's grant.
fn authorize(tool: &ToolEntry, caller: &Caller) -> Result<(), Refusal> {
    caller
        .grant()
        .check(&tool.scopes[..])
        .map_err(|missing| Refusal::missing_scope(&missing.0, tool.scopes.clone()))
}

/// The field (under `fields`) on the record of a call whose rate could not be checked and which was let through.
pub const UNCHECKED_RATE_FIELD: (&str, &str) = ("secure-tools/rate_limit", "unchecked");

/// The built-in limits: concurrency (the tool's, the caller's, then the set's), then rates (the set's per caller and tool, the
/// tool's own per caller). The permits are held until the handler ends. Concurrency first: a call refused
/// `overloaded` does not use up its caller's rate, and a rate checked in Redis is waited for by calls that count
/// among those running.
async fn limit<'a, S>(
    set: &'a Inner<S>,
    tool: &'a ToolEntry,
    cx: &CallContext,
    started: Instant,
) -> Result<Permits<'a>, Refusal> {
    let time = (started, tool.timeout.unwrap_or(set.timeout));
    let own = tool
        .concurrency
        .as_ref()
        .map(|limit| limit.acquire("this tool"))
        .transpose()?;
    let caller = cx.caller().id_shared();
    let callers = set
        .per_caller
        .as_ref()
        .map(|limit| limit.acquire(caller))
        .transpose()?;
    let shared = set
        .concurrency
        .as_ref()
        .map(|limit| limit.acquire("the server's tools"))
        .transpose()?;
    let name = tool.definition.name();
    let mut checked = true;
    if let Some(rate) = &set.rate {
        checked &= rate.check(caller, name, time).await?;
    }
    if let Some(rate) = &tool.rate {
        checked &= rate.check(caller, name, time).await?;
    }
    if !checked {
        // Let through unlimited, its rate's store out of reach (`WhenUnavailable::Allow`): the record says so, or
        // it would read as any call within its rate (red-team finding).
        cx.library_field(UNCHECKED_RATE_FIELD.0, UNCHECKED_RATE_FIELD.1);
    }
    Ok(Permits {
        _own: own,
        _caller: callers,
        _shared: shared,
    })
}

/// The places a call holds among the calls running (its tool's, its caller's, the set's), given back as it ends.
struct Permits<'a> {
    _own: Option<limits::Slot<'a>>,
    _caller: Option<limits::CallerSlot<'a>>,
    _shared: Option<limits::Slot<'a>>,
}

fn guard_call<'a, S: Send + Sync + 'static>(
    set: &'a Inner<S>,
    tool: &'a ToolEntry,
    call: &'a Call<'_>,
    stage: GuardStage,
) -> GuardCall<'a> {
    static EMPTY: std::sync::OnceLock<JsonObject> = std::sync::OnceLock::new();
    GuardCall {
        context: &call.context,
        definition: &tool.definition,
        arguments: call
            .arguments
            .as_object()
            .unwrap_or_else(|| EMPTY.get_or_init(JsonObject::new)),
        state: &set.state,
        stage,
        valid: stage == GuardStage::AfterDecoding && !tool.plain,
    }
}

/// The set's guards, then the tool's, of one stage, in the order they were added.
async fn run_guards<S: Send + Sync + 'static>(
    set: &Inner<S>,
    tool: &ToolEntry,
    call: &Call<'_>,
    stage: GuardStage,
    passes: &mut Vec<Pass>,
) -> Result<(), Refusal> {
    let name = tool.definition.name();
    let limit = Deadline::of(set, tool, call);
    let mut view = None;
    for guard in set.guards.iter().chain(&tool.guards) {
        if guard.stage() != stage {
            continue;
        }
        let view = view.get_or_insert_with(|| guard_call(set, tool, call, stage));
        limit.stop_if_due(set, &call.context)?;
        let check = panic::catch(name, || guard.check(view)).map_err(|()| Refusal::panicked())?;
        let pass = contained(name, check.resolve(), set, &call.context, limit).await??;
        if pass.holds() {
            passes.push(pass);
        }
    }
    Ok(())
}

/// The argument rule the attribute names (`authorize = path`), on the decoded, valid arguments.
async fn authorize_arguments<S: Send + Sync + 'static, T: SecureTool<S>>(
    set: &Inner<S>,
    tool: &ToolEntry,
    call: &Call<'_>,
    args: &T::Args,
) -> Result<(), Refusal> {
    let name = tool.definition.name();
    let view = guard_call(set, tool, call, GuardStage::AfterDecoding);
    let limit = Deadline::of(set, tool, call);
    limit.stop_if_due(set, &call.context)?;
    let rule =
        panic::catch(name, || T::authorize(args, &view)).map_err(|()| Refusal::panicked())?;
    contained(name, rule, set, &call.context, limit).await?
}

/// Runs the handler, [`contained`]; when it is stopped, its own token is cancelled too.
async fn invoke<S, T>(
    set: &Inner<S>,
    tool: &ToolEntry,
    call: &Call<'_>,
    args: T::Args,
    limit: Deadline,
) -> Result<ToolOutput, Refusal>
where
    S: Send + Sync + 'static,
    T: SecureTool<S>,
{
    let name = tool.definition.name();
    let cx = &call.context;
    limit.stop_if_due(set, cx)?;
    cx.enter_handler();
    let handler =
        panic::catch(name, || T::invoke(args, cx, &set.state)).map_err(|()| Refusal::panicked())?;
    let handler = UntilInputRequired {
        handler,
        cx,
        by_round: None,
    };
    match contained(name, handler, set, cx, limit).await {
        // Only the pipeline answers `input_required`, for the questions the handler asked: one a handler made
        // itself would be recorded so and reach a client of any revision (rmcp then answers an internal error).
        Ok(Ok(ToolOutput::InputRequired(_))) if !cx.awaits_input() => Err(Refusal::internal(
            "a handler returned input_required itself; only the pipeline answers it, for the questions the handler asks",
        )),
        // A handler that failed once its client had cancelled (seeing it through its token, which follows the
        // client's cancellation, before the pipeline did) was stopped by the client: recorded so, whatever it
        // returned, as a handler that kept waiting is (`cancelled_after_commit` past its point of no return).
        Ok(Err(_))
            if cx
                .request_cancellation()
                .is_some_and(CancellationToken::is_cancelled) =>
        {
            cx.stop_unless_committed();
            Err(cancelled_by_client())
        }
        Ok(result) => result,
        Err(stopped) => {
            // The handler's future is gone; whatever it handed its token to is told now.
            cx.cancel_handler();
            Err(stopped)
        }
    }
}

pin_project_lite::pin_project! {
    /// A handler's future, done once it waits on a question this round has no answer to (see `context::Rounds`):
    /// the question never gets one in this call, whose answer is the question (`input_required`). It owns the
    /// handler's future, so that [`contained`] drops the handler as the tool's own.
    struct UntilInputRequired<'a, F> {
        #[pin]
        handler: F,
        cx: &'a CallContext,
        // Whether the call asks by rounds: looked up once, when the handler first waits.
        by_round: Option<bool>,
    }
}

impl<F: Future<Output = Result<ToolOutput, Refusal>>> Future for UntilInputRequired<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let poll = this.handler.poll(task);
        if poll.is_pending() && *this.by_round.get_or_insert_with(|| this.cx.asks_by_round()) {
            // A question may be asked on another task (one the handler spawned and awaits): it wakes this one.
            this.cx.wake_on_question(task.waker());
            if this.cx.awaits_input() {
                return Poll::Ready(Ok(ToolOutput::InputRequired(this.cx.input_required())));
            }
        }
        poll
    }
}

/// A call's time limit: `timeout` from the call's start, shared by its guards, its rule and its handler. On the
/// monotonic clock: a wall clock stepped back mid-call would give each stage its whole time again.
#[derive(Clone, Copy)]
struct Deadline {
    timeout: std::time::Duration,
    started: Instant,
    /// Whether to look for a stop (see [`must_stop`]) before the user's code is called.
    look: bool,
}

impl Deadline {
    /// The time limit of a call of `tool`, looking for a stop before each piece of the user's code.
    fn of<S>(set: &Inner<S>, tool: &ToolEntry, call: &Call<'_>) -> Self {
        Deadline {
            timeout: tool.timeout.unwrap_or(set.timeout),
            started: call.started,
            look: true,
        }
    }

    /// The same limit, looking for a stop first only if `look`.
    fn looking(self, look: bool) -> Self {
        Deadline { look, ..self }
    }

    /// Refuses a call that must stop (see [`must_stop`]), if this limit looks: before the user's code is called
    /// (a guard's check, a rule, a handler, whose synchronous part may be the whole of it), not only before its
    /// future is first polled.
    fn stop_if_due<S>(self, set: &Inner<S>, cx: &CallContext) -> Result<(), Refusal> {
        if self.look {
            must_stop(&set.lifecycle, cx, self)
        } else {
            Ok(())
        }
    }

    /// What is left of the time limit.
    fn remaining(self) -> std::time::Duration {
        self.timeout.saturating_sub(self.started.elapsed())
    }
}

/// Whether the call must stop now: its client cancelled it or went away, the server stopped it at shutdown, or its
/// time is up, with the refusal [`wait_contained`] would give. Looked at before the user's code is called and
/// before a `call_started` record: `wait_contained` only sees a stop while that code waits, and a guard or handler
/// usually does its work synchronously, so a call that ran out of time in a synchronous guard (or was cancelled
/// meanwhile) would otherwise still go on. Before a secure tool's handler, looked at only when something before may
/// have taken time (a guard, the argument rule, a rate in Redis, the start record's write): the clock read and the
/// token's lock are a few percent of a call that has none.
fn must_stop(lifecycle: &Lifecycle, cx: &CallContext, limit: Deadline) -> Result<(), Refusal> {
    if cx
        .request_cancellation()
        .is_some_and(CancellationToken::is_cancelled)
    {
        return Err(cancelled_by_client());
    }
    if lifecycle.is_stopped() {
        return Err(stopped_by_shutdown());
    }
    if limit.started.elapsed() >= limit.timeout {
        return Err(Refusal::timed_out_before_start(limit.timeout));
    }
    Ok(())
}

fn cancelled_by_client() -> Refusal {
    Refusal::cancelled(
        codes::CANCELLED,
        "the client cancelled the call, or its connection closed",
    )
}

fn given_up_after_commit() -> Refusal {
    Refusal::cancelled(
        codes::CANCELLED_AFTER_COMMIT,
        "the server shut down while the tool was past its point of no return: its effect may have been made",
    )
}

fn stopped_by_shutdown() -> Refusal {
    Refusal::cancelled(
        codes::SHUTTING_DOWN,
        "the server shut down before the tool finished",
    )
}

/// Awaits the user's code (a handler, a guard, a rule) as part of a call: a panic is caught, its message withheld
/// (it may quote a redacted argument); and the wait ends when the client cancels the call or goes away, when the
/// server stops it at shutdown, or when the call's time is up (a stop that came before is its callers' to look
/// for, before they call the user's code: [`Deadline::stop_if_due`]). Most futures finish on their first poll; only
/// one that waits pays for the timer and the cancellation waits.
async fn contained<S, F: Future>(
    tool: &'static str,
    future: F,
    set: &Inner<S>,
    cx: &CallContext,
    limit: Deadline,
) -> Result<F::Output, Refusal> {
    // The future is the guard's own, so that its drop (on a timeout, say) counts as the tool's too.
    let mut future = std::pin::pin!(panic::Guarded::new(
        tool,
        AssertUnwindSafe(future).catch_unwind()
    ));
    if let Poll::Ready(settled) = futures_util::poll!(future.as_mut()) {
        // The payload of a panic may quote a redacted argument: it is dropped unread.
        return settled.map_err(|_payload| Refusal::panicked());
    }
    // The waits (a timer, the cancellations) live on the heap: a call's future, copied whenever it moves, does not
    // carry them for the calls that never wait.
    Box::pin(wait_contained(future, set, cx, limit)).await
}

/// The rest of [`contained`], for the user's code that did not finish on its first poll.
async fn wait_contained<S, T, F: Future<Output = std::thread::Result<T>> + Unpin>(
    mut future: F,
    set: &Inner<S>,
    cx: &CallContext,
    limit: Deadline,
) -> Result<T, Refusal> {
    let client_cancelled = async {
        match cx.request_cancellation() {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let stopped = tokio::select! {
        biased;
        settled = &mut future => return settled.map_err(|_payload| Refusal::panicked()),
        () = client_cancelled => cancelled_by_client(),
        () = set.lifecycle.stopping() => stopped_by_shutdown(),
        () = deadline(limit.remaining()) => Refusal::timed_out(limit.timeout),
    };
    if cx.stop_unless_committed() {
        return Err(stopped);
    }
    // The handler passed its point of no return before the stop: its effect is being made, and its result is
    // the call's (see `CallContext::commit`), unless the server's stop gives up on it: then it is answered and
    // recorded before the server's stop record, its effect unknown (a red team's: left running, it was answered
    // rmcp's plain-text `500` as the connections closed, and recorded after `server_stop`).
    tokio::select! {
        biased;
        settled = &mut future => settled.map_err(|_payload| Refusal::panicked()),
        () = set.lifecycle.giving_up() => Err(given_up_after_commit()),
    }
}

/// Resolves when `timeout` has passed. On a Tokio runtime built without its time driver, where timers panic,
/// never: the call runs without a deadline, and a warning says so once.
async fn deadline(timeout: std::time::Duration) {
    match panic::quietly(|| tokio::time::sleep(timeout)) {
        Ok(sleep) => sleep.await,
        Err(()) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "the Tokio runtime has no time driver (build it with `enable_all` or `enable_time`): tool \
                     calls run without their timeout"
                );
            });
            std::future::pending().await
        }
    }
}

/// The audited region of one call: created before anything else happens, it writes the call's one `tool_call`
/// record in [`Call::finish`], or, if the call's future is dropped first, when it is dropped.
pub(crate) struct Call<'s> {
    audit: &'s Audit,
    lifecycle: &'s Lifecycle,
    tool: Option<&'s ToolEntry>,
    started: Instant,
    context: CallContext,
    /// The name as sent, for a tool that does not exist.
    sent_name: Option<String>,
    /// The arguments as sent, until they are redacted for the record.
    arguments: Value,
    inputs: Option<Arc<Value>>,
    origin: Option<Arc<Origin>>,
    /// The arguments were decoded.
    decoded: bool,
    finished: bool,
    /// For a plain rmcp tool, the handler to run.
    forward: Option<Forward>,
    /// The trace the call's records carry.
    trace: Option<audit::TraceContext>,
    #[cfg(feature = "otel")]
    telemetry: Option<&'s crate::telemetry::Telemetry>,
    #[cfg(feature = "otel")]
    span: Option<crate::telemetry::CallSpan>,
}

impl<'s> Call<'s> {
    fn begin<S>(set: &'s Inner<S>, request: CallRequest) -> (Self, Option<&'s Registered<S>>) {
        // The monotonic clock, for the call's duration and its deadline; the record's time is read at its end.
        let started = Instant::now();
        set.lifecycle.enter();
        let CallRequest {
            caller,
            request_id,
            tool: name,
            arguments,
            connection,
            rmcp,
            forward,
            answers,
        } = request;
        let tool = set.tools.get(name.as_str());
        let (tool_name, sent_name) = match tool {
            Some(tool) => (tool.entry.name.clone(), None),
            None => (Arc::from(audit::shorten_str(&name)), Some(name)),
        };
        let context = CallContext::new(
            CallId::next(),
            caller,
            request_id,
            tool_name,
            rmcp,
            connection,
            answers,
        );
        #[cfg(feature = "otel")]
        let span = set.telemetry.as_ref().map(|telemetry| {
            let (traceparent, tracestate) = context.trace_headers();
            let connection = context.connection();
            telemetry.start_call(&crate::telemetry::CallFacts {
                tool: tool.map(|t| &t.entry.name),
                request_id: audit::bounded_request_id(context.request_id()).to_string(),
                call_id: context.call_id().to_string(),
                transport: connection.transport,
                session_id: connection.session_id.as_deref(),
                client_address: connection.remote_addr,
                forwarded_for: connection.forwarded_for,
                traceparent,
                tracestate,
            })
        });
        #[cfg(feature = "otel")]
        let trace = match &span {
            Some(span) => span.record_ids(),
            None => context.trace(),
        };
        #[cfg(not(feature = "otel"))]
        let trace = context.trace();
        let call = Call {
            audit: &set.audit,
            lifecycle: &set.lifecycle,
            tool: tool.map(|t| &t.entry),
            started,
            context,
            sent_name,
            arguments: Value::Object(arguments.unwrap_or_default()),
            inputs: None,
            origin: None,
            decoded: false,
            finished: false,
            forward,
            trace,
            #[cfg(feature = "otel")]
            telemetry: set.telemetry.as_ref(),
            #[cfg(feature = "otel")]
            span,
        };
        (call, tool)
    }

    /// The OpenTelemetry context the call's stages run in (its span as current), with OpenTelemetry on.
    #[cfg(feature = "otel")]
    fn otel_context(&self) -> Option<opentelemetry::Context> {
        self.span.as_ref().map(|span| span.context().clone())
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "tool_call",
            tool = %self.context.tool(),
            request_id = %audit::bounded_request_id(self.context.request_id()),
            call_id = %self.context.call_id(),
        )
    }

    /// The arguments as recorded: redacted and bounded. Taken from the arguments as sent the first time.
    fn inputs(&mut self) -> Arc<Value> {
        if let Some(inputs) = &self.inputs {
            return inputs.clone();
        }
        let arguments = std::mem::take(&mut self.arguments);
        // Only declared, unredacted arguments are recorded in clear. An unknown tool declares nothing, so every
        // argument of its call is treated as a secret; so is an argument the schema does not name (an alias, a
        // typo, or a name a schema admitting others lets through to a flattened map), decoded or not.
        let decoded = self.decoded;
        let inputs = Arc::new(match self.tool {
            Some(tool) if tool.plain => {
                let redact = tool.definition.audit_redact();
                // A plain tool whose server has not described it (no `get_tool`) declares nothing known, so each of
                // its arguments is a secret.
                let known = tool.known_arguments();
                audit::redact_owned(arguments, |key| {
                    redact.contains(&key) || known.is_none_or(|known| !known.contains(key))
                })
            }
            Some(tool) => {
                let redact = tool.definition.audit_redact();
                // Decoded arguments of a tool whose schema admits no other names name nothing undeclared: decoding
                // checked the names, or the input type refuses unknown ones itself (the attribute's struct, whose
                // arguments may not have aliases). A schema that admits others (an `Args<T>` with a flattened map)
                // declares its `properties` only.
                let all_declared = decoded && tool.allowed.is_some();
                let properties = || {
                    tool.definition
                        .input_schema()
                        .get("properties")
                        .and_then(Value::as_object)
                };
                let declared = |key: &str| match &tool.allowed {
                    Some(allowed) => allowed.contains(key),
                    None => properties().is_some_and(|properties| properties.contains_key(key)),
                };
                audit::redact_owned(arguments, |key| {
                    redact.contains(&key) || (!all_declared && !declared(key))
                })
            }
            None => audit::redact_owned(arguments, |_| true),
        });
        self.inputs = Some(inputs.clone());
        inputs
    }

    fn origin(&mut self) -> Arc<Origin> {
        if let Some(origin) = &self.origin {
            return origin.clone();
        }
        let origin = self.context.origin();
        self.origin = Some(origin.clone());
        origin
    }

    fn caller_shared(&self) -> Arc<str> {
        let id = self.context.caller().id_shared();
        if id.len() > audit::MAX_AUDIT_STRING {
            Arc::from(audit::shorten_str(id))
        } else {
            id.clone()
        }
    }

    /// Before the handler of a tool not marked `read_only` runs, its `call_started` record must be written: no
    /// effect without a record. None for a call that must stop (see [`must_stop`]): its handler will not run.
    fn record_start(&mut self, tool: &ToolEntry, limit: Deadline) -> Result<(), Refusal> {
        let inputs = self.inputs();
        if !tool.records_start {
            return Ok(());
        }
        // Always looked at here: the record's write costs far more than the look.
        must_stop(self.lifecycle, &self.context, limit)?;
        let event = CallStartedEvent {
            call_id: self.context.call_id(),
            request_id: audit::bounded_request_id(self.context.request_id()),
            tool: tool.name.clone(),
            caller: self.caller_shared(),
            caller_attributes: self.context.caller().attributes().cloned(),
            inputs,
            origin: self.origin(),
            trace: self.trace.clone(),
        };
        self.audit
            .record(AuditEvent::CallStarted(event))
            .map_err(|error| {
                tracing::error!(%error, "call_started record not written; the handler does not run");
                Refusal::audit_unavailable()
            })
    }

    /// Writes the call's one `tool_call` record. The one place a refusal becomes an outcome and a code.
    fn write_record(
        &mut self,
        outcome: Outcome,
        error: Option<&str>,
    ) -> Result<(), audit::AuditError> {
        self.finished = true;
        self.context.end();
        let finished = SystemTime::now();
        let elapsed = self.started.elapsed();
        let code: Option<Arc<str>> = error.map(bounded_code);
        let fields = self.context.take_audit_fields();
        let fields = (!fields.is_empty()).then(|| {
            let mut value = Value::Object(fields.into_iter().collect());
            audit::bound(&mut value);
            Arc::new(value)
        });
        let event = ToolCallEvent {
            call_id: self.context.call_id(),
            request_id: audit::bounded_request_id(self.context.request_id()),
            tool: self.context.tool_shared().clone(),
            scopes: self
                .tool
                .map_or_else(|| Arc::from([]), |t| t.scopes.clone()),
            caller: self.caller_shared(),
            caller_attributes: self.context.caller().attributes().cloned(),
            outcome,
            ok: outcome == Outcome::Ok,
            inputs: match self.inputs.take() {
                Some(inputs) => inputs,
                None => self.inputs(),
            },
            error: code.clone(),
            duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            origin: self.origin(),
            trace: self.trace.take(),
            fields,
        };
        let written = self
            .audit
            .record_at(Timestamp(finished), AuditEvent::ToolCall(event));
        // The span and the metrics tell what the caller was told: a call whose record could not be written is
        // reported failed, `audit_unavailable` (see `finish`).
        #[cfg(feature = "otel")]
        if let Some(telemetry) = self.telemetry {
            let (outcome, error) = match &written {
                Ok(()) => (outcome, code.as_deref()),
                Err(_) => (Outcome::Error, Some(codes::AUDIT_UNAVAILABLE)),
            };
            telemetry.end_call(
                self.span.take(),
                self.tool.map(|t| &t.name),
                outcome,
                error,
                elapsed,
            );
        }
        written
    }

    fn finish(self, result: Result<ToolOutput, Refusal>) -> Result<CallResponse, CallError> {
        match self.answer(result) {
            (response, None) => Ok(response),
            (_, Some(unknown)) => Err(CallError::UnknownTool(unknown)),
        }
    }

    /// Writes the call's record and makes its answer; with the name as sent, for a tool the set does not have.
    fn answer(mut self, result: Result<ToolOutput, Refusal>) -> (CallResponse, Option<String>) {
        let outcome = match &result {
            // A plain tool's own error result: its content goes to the client as it is.
            Ok(ToolOutput::Result(result)) if result.is_error == Some(true) => Outcome::Error,
            Ok(ToolOutput::InputRequired(_)) => Outcome::InputRequired,
            Ok(_) => Outcome::Ok,
            Err(refusal) => Outcome::from(refusal.kind()),
        };
        if let Err(refusal) = &result
            && let Some(source) = refusal.internal_source()
        {
            // The error's `Display` (and its `source`) is the tool's code: a panic in it must not take the call's
            // answer with it.
            let _ = panic::quietly(|| {
                // A secure tool keeps secrets: the arguments it redacts, and any its schema admits without
                // declaring them (an `Args<T>` with a flattened map), which the record redacts too.
                let keeps_secrets = |tool: &ToolEntry| {
                    !tool.definition.audit_redact().is_empty()
                        || (!tool.plain && tool.allowed.is_none())
                };
                if self.tool.is_some_and(keeps_secrets) {
                    // Its text may quote an argument (serde's does: `invalid type: string "..."`): only what kind
                    // of error it is, as a plain tool's server's message is withheld.
                    tracing::error!(
                        code = refusal.code(),
                        error_kind = %error_kind(source),
                        "tool failed (the error's text is not logged: the tool redacts arguments it may quote)"
                    );
                } else {
                    tracing::error!(code = refusal.code(), error = %source, "tool failed");
                }
            });
        }
        let code = match &result {
            Err(refusal) => Some(refusal.code()),
            Ok(_) if outcome == Outcome::Error => Some(codes::TOOL_ERROR),
            Ok(_) => None,
        };
        // A stop the handler reports after its point of no return (its token follows a client's cancellation):
        // not one that changed nothing. (The pipeline's own stops cannot follow a commit.)
        let (recorded, code) = if matches!(outcome, Outcome::Cancelled | Outcome::Timeout)
            && self.context.is_committed()
        {
            (Outcome::Cancelled, Some(codes::CANCELLED_AFTER_COMMIT))
        } else {
            (outcome, code)
        };
        let written = self.write_record(recorded, code);
        let unknown = match self.tool {
            Some(_) => None,
            None => Some(self.sent_name.take().unwrap_or_default()),
        };
        let has_output_schema = self.tool.is_some_and(ToolEntry::has_output_schema);
        let call_id = self.context.call_id();
        // The transport that asked (HTTP, to answer with an `insufficient_scope` challenge) gets the pipeline's own
        // refusal for a missing scope, typed: never a tool's answer that reads like one.
        if written.is_ok()
            && let Err(refusal) = &result
            && refusal.required_scopes().is_some()
            && let Some(slot) = &self.context.connection().scope_refusal
        {
            slot.fill(
                self.context.request_id().clone(),
                RefusalNotice::new(refusal, outcome, call_id),
            );
        }
        let response = match written {
            Ok(()) => CallResponse {
                call_id,
                outcome,
                result,
                has_output_schema,
            },
            Err(error) => {
                tracing::error!(%error, "audit record not written; the call is reported failed");
                CallResponse {
                    call_id,
                    outcome: Outcome::Error,
                    result: Err(Refusal::record_not_written()),
                    has_output_schema,
                }
            }
        };
        (response, unknown)
    }
}

/// What an internal error is, without its text: the first error in its chain of a type the pipeline knows, with
/// the kind that type tells (`std::io::Error (NotFound)`, `serde_json::Error (Data)`).
fn error_kind(error: &(dyn std::error::Error + 'static)) -> String {
    let mut next = Some(error);
    for _ in 0..8 {
        let Some(error) = next else { break };
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return format!("std::io::Error ({:?})", io.kind());
        }
        if let Some(json) = error.downcast_ref::<serde_json::Error>() {
            return format!("serde_json::Error ({:?})", json.classify());
        }
        if let Some(join) = error.downcast_ref::<tokio::task::JoinError>() {
            let kind = if join.is_cancelled() {
                "cancelled"
            } else {
                "panic"
            };
            return format!("tokio::task::JoinError ({kind})");
        }
        if let Some(service) = error.downcast_ref::<rmcp::ServiceError>() {
            let kind = match service {
                rmcp::ServiceError::McpError(_) => "McpError",
                rmcp::ServiceError::TransportSend(_) => "TransportSend",
                rmcp::ServiceError::TransportClosed => "TransportClosed",
                rmcp::ServiceError::UnexpectedResponse => "UnexpectedResponse",
                rmcp::ServiceError::Cancelled { .. } => "Cancelled",
                rmcp::ServiceError::Timeout { .. } => "Timeout",
                _ => "other",
            };
            return format!("rmcp::ServiceError ({kind})");
        }
        if error.is::<panic::Aborted>() {
            return "secure_tools::task::Aborted".to_owned();
        }
        next = error.source();
    }
    "an error of a type the pipeline does not know".to_owned()
}

/// The longest code recorded, in bytes.
const MAX_CODE: usize = 128;

/// A code as recorded: the pipeline's own, or a guard's or handler's, bounded alike in the record and in the
/// metrics' labels. One over [`MAX_CODE`] bytes is cut at a character's edge and ends with `…`, within the bound;
/// but `missing_scope:` names its scope whole, up to the longest a scope may be (a red team's: two scopes of 122
/// bytes differing at the end were recorded alike, and unlike the caller was told).
fn bounded_code(code: &str) -> Arc<str> {
    const MISSING_SCOPE: &str = "missing_scope:";
    let bound = if code.starts_with(MISSING_SCOPE) {
        MISSING_SCOPE.len() + crate::scope::MAX_SCOPE_LEN
    } else {
        MAX_CODE
    };
    if code.len() <= bound {
        return Arc::from(code);
    }
    const MARK: &str = "…";
    let mut cut = bound - MARK.len();
    while !code.is_char_boundary(cut) {
        cut -= 1;
    }
    Arc::from([&code[..cut], MARK].concat())
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // The call's future was dropped before it finished (the transport gave up on it), or the pipeline
            // itself panicked: the call still gets its record.
            let (outcome, code) = if std::thread::panicking() {
                (Outcome::Panic, codes::TOOL_PANICKED)
            } else if self.context.stop_unless_committed() {
                (Outcome::Cancelled, codes::CANCELLED)
            } else {
                (Outcome::Cancelled, codes::CANCELLED_AFTER_COMMIT)
            };
            // Writing the record ends the context, which cancels the handler's token (and makes one asked for
            // later cancelled).
            if let Err(error) = self.write_record(outcome, Some(code)) {
                tracing::error!(%error, "audit record of a dropped call not written");
            }
        }
        self.lifecycle.leave();
    }
}

/// Calls in flight, and the shutdown of a tool set.
#[derive(Default)]
pub(crate) struct Lifecycle {
    /// A stop was asked for and is delayed (the HTTP runner's shutdown delay): calls are still taken.
    announced: AtomicBool,
    closing: AtomicBool,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
    stop: CancellationToken,
    /// `stop` is cancelled: read without the token's lock, before each stage's user code.
    stopped: AtomicBool,
    /// The stop gives up on the calls past their point of no return that it waited for (see
    /// [`ToolSet::shutdown`](crate::ToolSet::shutdown)).
    give_up: CancellationToken,
}

impl Lifecycle {
    fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn leave(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && self.is_closing() {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    pub(crate) fn announce_stop(&self) {
        self.announced.store(true, Ordering::SeqCst);
    }

    #[cfg(feature = "http")]
    pub(crate) fn is_stop_announced(&self) -> bool {
        self.announced.load(Ordering::SeqCst)
    }

    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    pub(crate) fn stop_running(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop.cancel();
    }

    /// Gives up on the calls past their point of no return: each ends at once, answered and recorded
    /// `cancelled_after_commit` (their handlers' futures dropped, as the process's end would drop them).
    pub(crate) fn give_up(&self) {
        self.give_up.cancel();
    }

    pub(crate) fn has_given_up(&self) -> bool {
        self.give_up.is_cancelled()
    }

    fn giving_up(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.give_up.cancelled()
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    fn stopping(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }

    /// Resolves once no call is in flight (after [`Lifecycle::close`]).
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}
