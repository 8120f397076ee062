//! The seam for rules of your own: a [`Guard`] sees every call of the tools it is attached to, inside the audited
//! region, and may refuse it with a code of its own. Its refusal is recorded like any other outcome.
//!
//! Guards attach to a whole tool set ([`ToolSetBuilder::guard`](crate::ToolSetBuilder::guard)) or to one tool
//! ([`ToolOptions::guard`](crate::ToolOptions::guard)). They run after the scope check, in the order they were
//! added, set-wide guards first: those of [`GuardStage::BeforeDecoding`] before the arguments are decoded (cheap
//! checks that need no arguments, such as a quota), those of [`GuardStage::AfterDecoding`] once the arguments have
//! been decoded and validated (rules about the arguments, a policy engine, a confirmation).
//!
//! ```
//! use secure_tools::guard::{Check, Guard, GuardCall, GuardStage};
//! use secure_tools::Refusal;
//!
//! /// Refuses destructive tools outside office hours.
//! struct OfficeHours;
//!
//! impl Guard for OfficeHours {
//!     fn stage(&self) -> GuardStage {
//!         GuardStage::BeforeDecoding
//!     }
//!     fn check<'a>(&'a self, call: &'a GuardCall<'a>) -> Check<'a> {
//!         let destructive = call.tool().annotations().destructive_hint == Some(true);
//!         if destructive && !in_office_hours() {
//!             return Check::refuse(Refusal::denied("outside_office_hours", "destructive tools run 9 to 5"));
//!         }
//!         Check::pass()
//!     }
//! }
//! # fn in_office_hours() -> bool { true }
//! ```
//!
//! An asynchronous guard (one that asks a policy service, say) returns [`Check::later`] with a boxed future.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use rmcp::model::{JsonObject, RequestId};

use super::context::{CallContext, CallId, Caller};
use super::refusal::Refusal;
use crate::tool::ToolDefinition;

/// When a guard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuardStage {
    /// Before the arguments are decoded: [`GuardCall::arguments`] are as the client sent them, names the tool
    /// does not declare included (decoding refuses those later). Treat them as untrusted, and every value as
    /// possibly secret.
    BeforeDecoding,
    /// After the arguments are decoded and validated: [`GuardCall::arguments`] hold valid input, as the JSON the
    /// handler's input was decoded from (a whole float sent for an integer argument, `13.0`, is the integer `13`
    /// there too). Serde's defaults are not in it: an argument the client left out is absent, even when the tool
    /// gives it a default; a rule about such an argument belongs in the tool's argument rule
    /// (`#[secure_tool(authorize = ...)]`), which gets the decoded input. Except for a plain rmcp tool under the
    /// policy ([`ToolSetBuilder::plain_tool`](crate::ToolSetBuilder::plain_tool)): its own server decodes its
    /// arguments after the guards, so its guards of both stages see them as sent; a guard that relies on valid
    /// input checks [`GuardCall::arguments_valid`] first.
    AfterDecoding,
}

/// What a guard sees of a call.
pub struct GuardCall<'a> {
    pub(crate) context: &'a CallContext,
    pub(crate) definition: &'a ToolDefinition,
    pub(crate) arguments: &'a JsonObject,
    pub(crate) state: &'a (dyn Any + Send + Sync),
    pub(crate) stage: GuardStage,
    pub(crate) valid: bool,
}

impl<'a> GuardCall<'a> {
    /// Who is calling.
    pub fn caller(&self) -> &'a Caller {
        self.context.caller()
    }

    /// The tool's definition: name, scopes, annotations, schemas.
    pub fn tool(&self) -> &'a ToolDefinition {
        self.definition
    }

    /// The JSON-RPC id of the request.
    pub fn request_id(&self) -> &'a RequestId {
        self.context.request_id()
    }

    /// The call's id, as on its audit records.
    pub fn call_id(&self) -> CallId {
        self.context.call_id()
    }

    /// The whole context of the call: the request's `_meta`, the client, the transport.
    pub fn context(&self) -> &'a CallContext {
        self.context
    }

    /// The arguments: as sent before decoding; after it, valid, as the JSON the handler's input was decoded from,
    /// before serde's defaults apply (see [`GuardStage::AfterDecoding`]).
    pub fn arguments(&self) -> &'a JsonObject {
        self.arguments
    }

    /// Which stage this is.
    pub fn stage(&self) -> GuardStage {
        self.stage
    }

    /// Whether [`GuardCall::arguments`] have been decoded and validated against the tool's schema: after decoding,
    /// for a secure tool; never for a plain rmcp tool, whose server decodes them after the guards.
    pub fn arguments_valid(&self) -> bool {
        self.valid
    }

    /// The tool set's state, if it is of type `T` (the `S` of `ToolSet<S>` itself); `None` for any other type,
    /// including a part a handler's `State<T>` takes through `FromRef`: take such a part from the whole
    /// (`call.state::<App>().map(|app| &app.tickets)`).
    pub fn state<T: 'static>(&self) -> Option<&'a T> {
        self.state.downcast_ref()
    }
}

/// What a guard lets a call keep until it ends: nothing, or something held (a permit of a quota of your own).
#[derive(Default)]
pub struct Pass {
    held: Option<Box<dyn Any + Send>>,
}

impl Pass {
    /// The call may go on.
    pub fn new() -> Self {
        Pass::default()
    }

    /// The call may go on, and `value` is kept until its handler ends.
    pub fn holding(value: impl Send + 'static) -> Self {
        Pass {
            held: Some(Box::new(value)),
        }
    }

    /// Whether the pass holds something that must live until the call ends.
    pub(crate) fn holds(&self) -> bool {
        self.held.is_some()
    }
}

impl std::fmt::Debug for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pass")
            .field("holding", &self.held.is_some())
            .finish()
    }
}

type PendingCheck<'a> = Pin<Box<dyn Future<Output = Result<Pass, Refusal>> + Send + 'a>>;

/// A guard's verdict: decided now, or later by a future.
pub struct Check<'a>(CheckInner<'a>);

enum CheckInner<'a> {
    Ready(Result<Pass, Refusal>),
    Pending(PendingCheck<'a>),
}

impl<'a> Check<'a> {
    /// The call may go on.
    pub fn pass() -> Self {
        Check(CheckInner::Ready(Ok(Pass::new())))
    }

    /// The call is refused.
    pub fn refuse(refusal: Refusal) -> Self {
        Check(CheckInner::Ready(Err(refusal)))
    }

    /// The verdict of a future, for a guard that must wait for something (a policy service, a database).
    pub fn later(future: impl Future<Output = Result<Pass, Refusal>> + Send + 'a) -> Self {
        Check(CheckInner::Pending(Box::pin(future)))
    }

    pub(crate) async fn resolve(self) -> Result<Pass, Refusal> {
        match self.0 {
            CheckInner::Ready(verdict) => verdict,
            CheckInner::Pending(future) => future.await,
        }
    }
}

impl From<Result<Pass, Refusal>> for Check<'_> {
    fn from(verdict: Result<Pass, Refusal>) -> Self {
        Check(CheckInner::Ready(verdict))
    }
}

impl From<Result<(), Refusal>> for Check<'_> {
    fn from(verdict: Result<(), Refusal>) -> Self {
        Check(CheckInner::Ready(verdict.map(|()| Pass::new())))
    }
}

/// A rule of your own about calls, run inside the audited region. See the [module docs](self).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a guard",
    note = "implement `secure_tools::guard::Guard` for it, or wrap a function with `secure_tools::guard::from_fn`"
)]
pub trait Guard: Send + Sync + 'static {
    /// When the guard runs (default: after decoding, when the arguments are known to be valid).
    fn stage(&self) -> GuardStage {
        GuardStage::AfterDecoding
    }

    /// Lets the call go on, or refuses it.
    fn check<'a>(&'a self, call: &'a GuardCall<'a>) -> Check<'a>;
}

/// A guard made of a function that decides at once.
///
/// ```
/// use secure_tools::guard::{self, GuardStage};
/// use secure_tools::Refusal;
///
/// let no_bots = guard::from_fn(GuardStage::BeforeDecoding, |call| {
///     if call.caller().id().ends_with("-bot") {
///         return Err(Refusal::denied("no_bots", "bots may not call this tool"));
///     }
///     Ok(())
/// });
/// # let _ = no_bots;
/// ```
pub fn from_fn<F>(stage: GuardStage, check: F) -> FnGuard<F>
where
    F: Fn(&GuardCall<'_>) -> Result<(), Refusal> + Send + Sync + 'static,
{
    FnGuard { stage, check }
}

/// The guard made by [`from_fn`].
pub struct FnGuard<F> {
    stage: GuardStage,
    check: F,
}

impl<F> Guard for FnGuard<F>
where
    F: Fn(&GuardCall<'_>) -> Result<(), Refusal> + Send + Sync + 'static,
{
    fn stage(&self) -> GuardStage {
        self.stage
    }

    fn check<'a>(&'a self, call: &'a GuardCall<'a>) -> Check<'a> {
        (self.check)(call).into()
    }
}
