//! The error a handler returns.

use std::borrow::Cow;
use std::fmt;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A handler's failure: a stable machine-readable `code` and a message the caller may read.
///
/// Use [`ToolError::new`] for failures the caller can act on (`not_found`, `too_large`, ...) and
/// [`ToolError::internal`] (or `?` on an [`std::io::Error`]) for everything else: the caller then sees only
/// `internal_error`, while the detail goes to the operator's `tracing` log, never to the caller.
pub struct ToolError {
    code: Cow<'static, str>,
    message: Cow<'static, str>,
    source: Option<Source>,
}

impl ToolError {
    /// A failure the caller may read about. `code` should be a short `snake_case` word that callers can match.
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>) -> Self {
        ToolError {
            code: code.into(),
            message: message.into(),
            source: None,
        }
    }

    /// An internal failure: the caller sees `internal_error`; `source` is logged for the operator.
    pub fn internal(source: impl Into<Source>) -> Self {
        ToolError {
            code: Cow::Borrowed(codes::INTERNAL_ERROR),
            message: Cow::Borrowed("the tool failed; the server log has the details"),
            source: Some(source.into()),
        }
    }

    /// Attaches an internal cause, logged for the operator and never shown to the caller.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The machine-readable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message shown to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The internal cause, if any.
    pub fn internal_source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

impl fmt::Debug for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolError")
            .field("code", &self.code)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ToolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for ToolError {
    fn from(err: std::io::Error) -> Self {
        ToolError::internal(err)
    }
}

impl From<std::convert::Infallible> for ToolError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// The stable codes the pipeline itself produces. A refused call's code is one of these, or
/// `missing_scope:<scope>`, or a handler's own.
pub mod codes {
    /// Prefix of a denial: `missing_scope:files.write`.
    pub const MISSING_SCOPE_PREFIX: &str = "missing_scope:";
    /// The tool name is not in the tool set (a protocol error, also audited).
    pub const UNKNOWN_TOOL: &str = "unknown_tool";
    /// The arguments did not have the declared shape: wrong type, missing or unknown field, duplicate key.
    pub const MALFORMED_ARGUMENTS: &str = "malformed_arguments";
    /// The arguments had the right shape but broke a validation rule.
    pub const INVALID_INPUT: &str = "invalid_input";
    /// The handler failed for a reason the caller is not told.
    pub const INTERNAL_ERROR: &str = "internal_error";
    /// The handler panicked.
    pub const TOOL_PANICKED: &str = "tool_panicked";
    /// The audit record could not be written, so the call is reported failed (fail closed).
    pub const AUDIT_UNAVAILABLE: &str = "audit_unavailable";
}
