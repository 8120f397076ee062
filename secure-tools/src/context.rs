//! What a handler can ask for besides its arguments: the caller, the request id, shared state.
//!
//! A `#[secure_tool]` function may declare parameters of the types [`Caller`], [`RequestId`], [`CallContext`] and
//! [`State<T>`]. They are filled from the call, not from the arguments, and never appear in the input schema.

use std::fmt;
use std::sync::Arc;

use crate::scope::Grant;

pub use rmcp::model::RequestId;

/// Who is calling: an identity (a token's subject, `stdio` for the local user) and the scopes they hold.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct Caller(Arc<CallerInner>);

struct CallerInner {
    id: Arc<str>,
    grant: Grant,
}

impl Caller {
    /// A caller with this identity and grant.
    pub fn new(id: impl Into<String>, grant: Grant) -> Self {
        let id: String = id.into();
        Caller(Arc::new(CallerInner {
            id: id.into(),
            grant,
        }))
    }

    /// A caller that holds no scope.
    pub fn anonymous() -> Self {
        Caller::new("anonymous", Grant::none())
    }

    /// The caller's identity, as it appears in audit records.
    pub fn id(&self) -> &str {
        &self.0.id
    }

    pub(crate) fn id_shared(&self) -> &Arc<str> {
        &self.0.id
    }

    /// The scopes the caller holds.
    pub fn grant(&self) -> &Grant {
        &self.0.grant
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("id", &self.0.id)
            .field("grant", &self.0.grant)
            .finish()
    }
}

/// Everything known about one call besides its arguments.
#[derive(Debug, Clone)]
pub struct CallContext {
    caller: Caller,
    request_id: RequestId,
    tool: Arc<str>,
}

impl CallContext {
    pub(crate) fn new(caller: Caller, request_id: RequestId, tool: Arc<str>) -> Self {
        CallContext {
            caller,
            request_id,
            tool,
        }
    }

    /// Who is calling.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The JSON-RPC id of the request.
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The name of the tool being called.
    pub fn tool(&self) -> &str {
        &self.tool
    }
}

/// The whole input of a tool as one struct, for a function that takes `Args(args): Args<T>` instead of one
/// parameter per argument. `T` derives `Deserialize`, `JsonSchema` and `Validate` itself (add
/// `#[serde(deny_unknown_fields)]`; the pipeline refuses unknown arguments either way).
#[derive(Debug, Clone, Copy, Default)]
pub struct Args<T>(pub T);

/// Shared application state, taken from the tool set's state `S` by [`FromRef`].
///
/// ```
/// # use secure_tools::{secure_tool, State, ToolError};
/// # use std::sync::Arc;
/// #[derive(Clone)]
/// struct Greeting(Arc<str>);
///
/// /// Greets the caller.
/// #[secure_tool(scope = "greet")]
/// async fn greet(State(greeting): State<Greeting>) -> Result<String, ToolError> {
///     Ok(greeting.0.to_string())
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct State<T>(pub T);

/// Takes a part out of the tool set's state, as axum's `FromRef` does: every `Clone` type is a part of itself, and
/// a state struct can hand out its fields by implementing `FromRef<AppState>` for each field type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be taken from the tool set's state `{S}`",
    note = "build the tool set with this state, or implement `FromRef<{S}>` for `{Self}`"
)]
pub trait FromRef<S> {
    /// Extracts the part.
    fn from_ref(state: &S) -> Self;
}

impl<T: Clone> FromRef<T> for T {
    fn from_ref(state: &T) -> Self {
        state.clone()
    }
}

/// A handler parameter filled from the call rather than from its arguments.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be taken from a call to a tool set with state `{S}`",
    label = "not available to handlers of this tool set",
    note = "handler context parameters are `Caller`, `RequestId`, `CallContext` and `State<T>` where `T: FromRef<{S}>`"
)]
pub trait FromCallContext<S>: Sized {
    /// Extracts the value.
    fn from_call_context(cx: &CallContext, state: &S) -> Self;
}

impl<S> FromCallContext<S> for Caller {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        cx.caller.clone()
    }
}

impl<S> FromCallContext<S> for RequestId {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        cx.request_id.clone()
    }
}

impl<S> FromCallContext<S> for CallContext {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        cx.clone()
    }
}

impl<S, T: FromRef<S>> FromCallContext<S> for State<T> {
    fn from_call_context(_: &CallContext, state: &S) -> Self {
        State(T::from_ref(state))
    }
}
