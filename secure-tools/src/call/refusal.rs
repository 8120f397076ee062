//! The one value every stage of a call refuses with, and the codes the pipeline itself uses.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::scope::Scope;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which class of outcome a refusal is audited as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalKind {
    /// A rule refused the caller: a missing scope, an argument rule, a policy, a failing audit trail.
    Denied,
    /// Unknown tool, malformed or invalid arguments.
    Invalid,
    /// A limit refused the call for now: rate or concurrency. Retrying later may succeed.
    Limited,
    /// The handler failed.
    Error,
    /// The handler panicked.
    Panic,
    /// The client cancelled the call, its connection went away, or the server shut down.
    Cancelled,
    /// The handler ran past its time limit and was stopped.
    Timeout,
}

/// Why a call did not produce a result: its [`RefusalKind`], a stable machine-readable `code` and a message the
/// caller may read. Every stage of the pipeline (authorization, guards, decoding, validation, the handler, the
/// audit) refuses with this one type, and one place turns it into the outcome, the code and the audit record.
///
/// Handlers know it as [`ToolError`](crate::ToolError), the same type. Use [`Refusal::new`] for failures the caller
/// can act on (`not_found`, `too_large`, ...) and [`Refusal::internal`] (or `?` on an [`std::io::Error`]) for
/// everything else: the caller then sees only `internal_error`, while the detail goes to the operator's `tracing`
/// log, never to the caller (for a tool that redacts arguments, only the kind of error: its text may quote one).
/// Guards and argument rules use [`Refusal::denied`] and [`Refusal::limited`].
pub struct Refusal {
    kind: RefusalKind,
    code: Cow<'static, str>,
    message: Cow<'static, str>,
    retry_after: Option<Duration>,
    required_scopes: Option<Arc<[Scope]>>,
    source: Option<Source>,
}

impl Refusal {
    fn with_kind(
        kind: RefusalKind,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Refusal {
            kind,
            code: code.into(),
            message: message.into(),
            retry_after: None,
            required_scopes: None,
            source: None,
        }
    }

    /// A handler's failure the caller may read about (outcome `error`). `code` should be a short `snake_case`
    /// word that callers can match.
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>) -> Self {
        Refusal::with_kind(RefusalKind::Error, code, message)
    }

    /// A refusal by a rule (outcome `denied`): the caller may not make this call.
    pub fn denied(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Refusal::with_kind(RefusalKind::Denied, code, message)
    }

    /// A refusal of the arguments (outcome `invalid`).
    pub fn invalid(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Refusal::with_kind(RefusalKind::Invalid, code, message)
    }

    /// A refusal by a limit (outcome `limited`); say when to retry with [`Refusal::retry_after`].
    pub fn limited(
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Refusal::with_kind(RefusalKind::Limited, code, message)
    }

    /// An internal failure (outcome `error`): the caller sees `internal_error`; `source` is logged for the operator
    /// (of a tool that redacts arguments, only what kind of error it is, not its text).
    ///
    /// A [`tokio::task::JoinError`] of a task that panicked becomes the refusal of a panic instead (outcome
    /// `panic`), and its payload is dropped unread: its message may quote a redacted argument.
    pub fn internal(source: impl Into<Source>) -> Self {
        let source = source.into();
        if source
            .downcast_ref::<tokio::task::JoinError>()
            .is_some_and(tokio::task::JoinError::is_panic)
        {
            return Refusal::panicked();
        }
        Refusal {
            source: Some(source),
            ..Refusal::new(
                codes::INTERNAL_ERROR,
                "the tool failed; the server log has the details",
            )
        }
    }

    /// Attaches an internal cause, logged for the operator and never shown to the caller.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Says when the caller may try again; shown in the message's structured form as `retryAfterSeconds`.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The class of outcome.
    pub fn kind(&self) -> RefusalKind {
        self.kind
    }

    /// The machine-readable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message shown to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// When the caller may try again, for a limit's refusal.
    pub fn retry_after_duration(&self) -> Option<Duration> {
        self.retry_after
    }

    /// For a refusal for a missing scope: every scope the tool requires, for the transport's challenge (an HTTP
    /// `insufficient_scope` answer names them all, so one token request can cover the call).
    pub fn required_scopes(&self) -> Option<&[Scope]> {
        self.required_scopes.as_deref()
    }

    /// The internal cause, if any.
    pub fn internal_source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }

    pub(crate) fn missing_scope(missing: &Scope, required: Arc<[Scope]>) -> Self {
        let mut refusal = Refusal::denied(
            format!("{}{missing}", codes::MISSING_SCOPE_PREFIX),
            format!("this tool requires the scope `{missing}`, which the caller does not hold"),
        );
        refusal.required_scopes = Some(required);
        refusal
    }

    pub(crate) fn panicked() -> Self {
        Refusal::with_kind(
            RefusalKind::Panic,
            codes::TOOL_PANICKED,
            "the tool failed unexpectedly; the server log has the details",
        )
    }

    pub(crate) fn audit_unavailable() -> Self {
        Refusal::with_kind(
            RefusalKind::Denied,
            codes::AUDIT_UNAVAILABLE,
            "the audit trail cannot be written, so no call is accepted",
        )
    }

    /// A call whose `tool_call` record could not be written: refused or not, and run or not, its result is
    /// withheld (a second round's: the answer said no call was accepted, though its handler had run).
    pub(crate) fn record_not_written() -> Self {
        Refusal::with_kind(
            RefusalKind::Error,
            codes::AUDIT_UNAVAILABLE,
            "the audit trail cannot be written: this call's result is withheld (the tool may have run: its effect \
             is not undone), and no call is accepted until it can be",
        )
    }

    pub(crate) fn cancelled(code: &'static str, message: &'static str) -> Self {
        Refusal::with_kind(RefusalKind::Cancelled, code, message)
    }

    pub(crate) fn timed_out(after: Duration) -> Self {
        Refusal::with_kind(
            RefusalKind::Timeout,
            codes::TIMEOUT,
            format!("the tool did not finish within {after:?} and was stopped"),
        )
    }

    /// The call's time limit passed before its tool was called (its checks took it all): the tool did not run.
    pub(crate) fn timed_out_before_start(after: Duration) -> Self {
        Refusal::with_kind(
            RefusalKind::Timeout,
            codes::TIMEOUT,
            format!(
                "the call's time limit of {after:?} passed before the tool started (its checks took that long); \
                 the tool did not run"
            ),
        )
    }
}

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refusal")
            .field("kind", &self.kind)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("retry_after", &self.retry_after)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Refusal {
    fn from(err: std::io::Error) -> Self {
        Refusal::internal(err)
    }
}

impl From<tokio::task::JoinError> for Refusal {
    fn from(err: tokio::task::JoinError) -> Self {
        Refusal::internal(err)
    }
}

impl From<std::convert::Infallible> for Refusal {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// The stable codes the pipeline itself produces. A refused call's code is one of these, or
/// `missing_scope:<scope>`, or a guard's or a handler's own.
pub mod codes {
    /// Prefix of a denial for a missing scope: `missing_scope:files.write`.
    pub const MISSING_SCOPE_PREFIX: &str = "missing_scope:";
    /// The tool name is not in the tool set (a protocol error, also audited).
    pub const UNKNOWN_TOOL: &str = "unknown_tool";
    /// The arguments did not have the declared shape: wrong type, missing or unknown field, duplicate key.
    pub const MALFORMED_ARGUMENTS: &str = "malformed_arguments";
    /// The arguments had the right shape but broke a validation rule.
    pub const INVALID_INPUT: &str = "invalid_input";
    /// The caller made more calls than the tool's rate allows; the refusal says when to retry.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// A rate limit's shared store (Redis) cannot be reached, and limits fail closed.
    pub const RATE_LIMIT_UNAVAILABLE: &str = "rate_limit_unavailable";
    /// Too many calls of the tool, or of the tool set, are running at once.
    pub const OVERLOADED: &str = "overloaded";
    /// The handler ran past its time limit and was stopped.
    pub const TIMEOUT: &str = "timeout";
    /// The client cancelled the call, or its connection went away.
    pub const CANCELLED: &str = "cancelled";
    /// The call was stopped after its handler passed its point of no return
    /// ([`CallContext::commit`](crate::CallContext::commit)): its future dropped by a transport that gave up on it,
    /// or the handler itself giving up after a client's cancellation. Unlike a call recorded with the code
    /// `cancelled`, `timeout` or `shutting_down`, its effect may have been made.
    pub const CANCELLED_AFTER_COMMIT: &str = "cancelled_after_commit";
    /// The server is shutting down: a new call is refused, a call still running past the grace period is stopped.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// The handler failed for a reason the caller is not told.
    pub const INTERNAL_ERROR: &str = "internal_error";
    /// The handler panicked.
    pub const TOOL_PANICKED: &str = "tool_panicked";
    /// A plain rmcp tool answered with an error: an `isError` result, or a protocol error of its server.
    pub const TOOL_ERROR: &str = "tool_error";
    /// A tool of the server that the tool set neither defines nor declares as a plain tool: under the policy,
    /// nothing runs that was not declared.
    pub const UNDECLARED_TOOL: &str = "undeclared_tool";
    /// The audit record could not be written, so the call is refused, or its result withheld (fail closed).
    pub const AUDIT_UNAVAILABLE: &str = "audit_unavailable";
    /// The tool asked the client for input (elicitation) but the client did not declare that capability.
    pub const ELICITATION_UNSUPPORTED: &str = "elicitation_unsupported";
    /// The tool asked the client for a model completion (sampling) but the client did not declare that capability.
    pub const SAMPLING_UNSUPPORTED: &str = "sampling_unsupported";
}
