//! What a handler can ask for besides its arguments: the whole call.
//!
//! A `#[secure_tool]` function may declare parameters of these types, filled from the call and never part of the
//! input schema:
//!
//! | type | what it gives |
//! | --- | --- |
//! | [`Caller`] | who is calling: identity and grant |
//! | [`RequestId`] | the JSON-RPC id of the request |
//! | [`CallId`] | the call's unique id, as on its audit records and its tracing span |
//! | [`CallContext`] | all of the above and below, and fields to add to the call's audit record |
//! | [`State<T>`] | shared state, taken from the tool set's state |
//! | [`CancellationToken`] | cancelled when the client cancels the call, its connection goes, the call times out or the server shuts down, and once the call has ended |
//! | [`Progress`] | progress notifications, when the client asked for them |
//! | [`ClientLog`] | log messages to the client, at the level it set |
//! | [`Elicitation`] | asking the user for input through the client |
//! | [`Sampling`] | asking the client's model for a completion |
//! | [`Meta`] | the request's `_meta` |
//!
//! The handler's future is dropped when the call is cancelled or times out, so an `.await` is where a handler
//! stops; the token is for work the handler hands to other tasks or threads (see [`crate::task`]).

// rmcp marks logging and sampling deprecated (SEP-2577, proposed for a later revision); every released protocol
// version has them and clients use them, so a secure tool gets them as a plain rmcp tool does.
#![allow(deprecated)]

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rmcp::model::{
    ClientCapabilities, ClientResult, CreateMessageRequest, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequest, ElicitRequestParams, ElicitResult, ElicitationAction,
    ElicitationSchema, Implementation, LoggingLevel, LoggingMessageNotificationParam,
    ProgressNotificationParam, RequestMetaObject, ServerRequest,
};
use rmcp::service::{
    ElicitationError, ElicitationMode, ElicitationSafe, PeerRequestOptions, RequestContext,
    RequestHandle, ServiceError,
};
use rmcp::{Peer, RoleServer};
use serde_json::Value;
pub use tokio_util::sync::CancellationToken;

use super::refusal::{Refusal, codes};
use crate::audit::{Origin, shorten_str};
use crate::scope::Grant;

pub use rmcp::model::RequestId;

/// Who is calling: an identity (a token's subject, `stdio` for the local user) and the scopes they hold.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct Caller(Arc<CallerInner>);

#[derive(Clone)]
struct CallerInner {
    id: Arc<str>,
    grant: Grant,
    attributes: Option<Arc<std::collections::BTreeMap<String, String>>>,
}

/// The most attributes a caller carries into audit records.
pub const MAX_CALLER_ATTRIBUTES: usize = 8;

impl Caller {
    /// A caller with this identity and grant.
    pub fn new(id: impl Into<String>, grant: Grant) -> Self {
        let id: String = id.into();
        Caller(Arc::new(CallerInner {
            id: id.into(),
            grant,
            attributes: None,
        }))
    }

    /// The caller with an attribute that goes into the audit records of its calls, under `caller_attributes` (a
    /// tenant, an organisation, the authentication method). Keys over 64 bytes, and attributes past
    /// the eighth, are dropped; values are shortened like any recorded string.
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        let inner = Arc::make_mut(&mut self.0);
        let attributes = Arc::make_mut(inner.attributes.get_or_insert_with(Arc::default));
        if !key.is_empty()
            && key.len() <= 64
            && (attributes.contains_key(&key) || attributes.len() < MAX_CALLER_ATTRIBUTES)
        {
            attributes.insert(key, crate::audit::shorten_str(&value.into()));
        }
        self
    }

    /// The caller with an attribute the transport sets (the client certificate a token came with): over one of
    /// that name the caller had, and past the cap, so that no mapping of claims can forge or crowd it out.
    #[cfg(feature = "mtls")]
    pub(crate) fn with_transport_attribute(mut self, key: &str, value: &str) -> Self {
        let inner = Arc::make_mut(&mut self.0);
        let attributes = Arc::make_mut(inner.attributes.get_or_insert_with(Arc::default));
        attributes.insert(key.to_owned(), crate::audit::shorten_str(value));
        self
    }

    /// The caller's attributes, if any.
    pub fn attributes(&self) -> Option<&Arc<std::collections::BTreeMap<String, String>>> {
        self.0.attributes.as_ref().filter(|a| !a.is_empty())
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
            .field("attributes", &self.0.attributes)
            .finish()
    }
}

/// A call's unique id: 32 lowercase hexadecimal digits, a random number drawn once per process followed by a
/// counter. It is on every audit record of the call and on its `tracing` span, so records, logs and the handler's
/// own data can be joined even where JSON-RPC ids repeat (every stateless HTTP request may be `1`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(u128);

impl CallId {
    pub(crate) fn next() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static PROCESS: OnceLock<u64> = OnceLock::new();
        let process = *PROCESS.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            // std's hasher keys come from the operating system's random source; hashing the time and process id
            // with them gives a number that differs between processes and restarts.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            hasher.write_u32(std::process::id());
            hasher.finish()
        });
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        CallId((u128::from(process) << 64) | u128::from(count))
    }

    /// The id as a number.
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0u8; 32];
        f.pad(
            base16ct::lower::encode_str(&self.0.to_be_bytes(), &mut digits)
                .map_err(|_| fmt::Error)?,
        )
    }
}

impl fmt::Debug for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallId({self})")
    }
}

impl serde::Serialize for CallId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What the transport knows about where a call came from. Every field it fills goes into the call's audit record.
///
/// The client's name and version come from what the client said of itself (`initialize`, or the request's `_meta`
/// in the stateless revision): claimed, not authenticated.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Connection {
    /// `stdio` or `http`, or `None` for a call made in process.
    pub transport: Option<&'static str>,
    /// The peer's address, over a network.
    pub remote_addr: Option<SocketAddr>,
    /// Behind a trusted reverse proxy (the HTTP runner's `--trusted-proxy`): the client the proxy forwarded the
    /// request for (`X-Forwarded-For`), where `remote_addr` is the proxy's.
    pub forwarded_for: Option<std::net::IpAddr>,
    /// The session: an HTTP `Mcp-Session-Id`, or the stdio runner's id for the session on its pipe.
    pub session_id: Option<Arc<str>>,
    /// The id of the credential the caller authenticated with (a JWT's `jti`), when it has one.
    pub token_id: Option<Arc<str>>,
    /// The W3C `traceparent` the transport received with the request (an HTTP header), if any; a `traceparent` in
    /// the request's `_meta` takes precedence.
    pub traceparent: Option<Arc<str>>,
    /// The W3C `tracestate` the transport received with the request, if any (used with its `traceparent`).
    pub tracestate: Option<Arc<str>>,
    /// Whether the client's own description of itself (`initialize`) may be used: not for a stateless HTTP
    /// request, where rmcp fills it with placeholders.
    pub trust_peer_info: bool,
    pub(crate) session: Option<Arc<SessionState>>,
    /// Where the pipeline leaves a refusal for a missing scope, for a transport that answers it itself.
    pub(crate) scope_refusal: Option<Arc<ScopeRefusalSlot>>,
    /// The caller the runner's HTTP layer authenticated (one extension for both, not two).
    pub(crate) caller: Option<crate::call::Caller>,
    /// Set by the handler when it recorded the request's refusal itself (`message_rejected`), so that the HTTP
    /// layer does not record the status it is answered with (`404` under the 2026-07-28 revision) a second time.
    pub(crate) refusal_recorded: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// A call's refusal for a missing scope, left by the pipeline for the transport that made the slot (the HTTP
/// runner answers it with an `insufficient_scope` challenge): typed, so the transport never reads it back out of
/// the answer, where a tool's own result could imitate it.
#[derive(Debug, Default)]
pub(crate) struct ScopeRefusalSlot(
    std::sync::Mutex<Option<(RequestId, crate::call::RefusalNotice)>>,
);

impl ScopeRefusalSlot {
    pub(crate) fn fill(&self, request_id: RequestId, notice: crate::call::RefusalNotice) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((request_id, notice));
    }

    /// The refusal left, if any.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn take(&self) -> Option<(RequestId, crate::call::RefusalNotice)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// What the handler layer keeps per session: the log level the client asked for, and the session's part of the
/// audit records' origin.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    /// `LoggingLevel` as a number, plus one; zero when the client never set one.
    log_level: AtomicU8,
    origin: OnceLock<Arc<Origin>>,
}

impl SessionState {
    pub(crate) fn set_log_level(&self, level: LoggingLevel) {
        self.log_level
            .store(level_rank(level) + 1, Ordering::Relaxed);
    }

    fn log_level(&self) -> Option<u8> {
        match self.log_level.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n - 1),
        }
    }
}

fn level_rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// The start of the keys of the fields the library adds to a call's record, which a handler may not set (red-team
/// finding: a handler could hide, or forge, that its call's rate was not checked).
pub const LIBRARY_FIELD_PREFIX: &str = "secure-tools/";

/// The most fields a handler may add to its call's audit record.
pub const MAX_AUDIT_FIELDS: usize = 16;

/// Everything known about one call besides its arguments. Cheap to clone; clones share the call.
#[derive(Clone)]
pub struct CallContext(Arc<ContextInner>);

struct ContextInner {
    call_id: CallId,
    caller: Caller,
    request_id: RequestId,
    tool: Arc<str>,
    rmcp: Option<RequestContext<RoleServer>>,
    connection: Connection,
    /// The handler's token: a child of the request's, made when first asked for; the pipeline cancels it when
    /// the call is stopped (timed out, cancelled, shut down) and when it ends.
    token: OnceLock<CancellationToken>,
    fields: Mutex<Vec<(String, Value)>>,
    /// Whether `fields` may hold anything, so that a call whose handler added none takes no lock for them. Set
    /// (under the lock) before a field is added, and read after the call is ended: see `audit_field`.
    has_fields: std::sync::atomic::AtomicBool,
    /// Set when the call's record is written: a clone kept by a task the handler started can no longer reach the
    /// client or the record.
    ended: std::sync::atomic::AtomicBool,
    /// The questions and answers of a call under the stateless revision (see [`Rounds`]): made when the request
    /// brings answers, or when the handler asks or waits under that revision, so that other calls carry none of it.
    input: OnceLock<Box<Input>>,
    /// Whether the handler has been called: only it asks by rounds (a guard or rule that asked would wait for an
    /// answer no round brings).
    in_handler: std::sync::atomic::AtomicBool,
    /// The point of no return (see [`CallContext::commit`]): [`RUNNING`], then [`STOPPED`] by the pipeline or
    /// [`COMMITTED`] by the handler, whichever comes first.
    commit: std::sync::atomic::AtomicU8,
}

const RUNNING: u8 = 0;
const STOPPED: u8 = 1;
const COMMITTED: u8 = 2;

/// What a retry under the stateless revision brings back (see [`Rounds`]): the client's answers, and the digests
/// of the questions the rounds before asked under each key, both from the `requestState` the pipeline wrote (a
/// state of any other shape is ignored), the answers of the client's `inputResponses` over them.
/// No `Debug`: the answers are what a user typed.
#[derive(Default, Clone)]
pub(crate) struct Answers {
    given: rmcp::model::JsonObject,
    asked: rmcp::model::JsonObject,
}

impl Answers {
    /// The answers of a retry; `None` when it brings none.
    pub(crate) fn of_retry(
        responses: Option<rmcp::model::InputResponses>,
        state: Option<&str>,
    ) -> Option<Box<Answers>> {
        if responses.is_none() && state.is_none() {
            return None;
        }
        let mut answers = Answers::default();
        if let Some(Value::Object(mut state)) = state.and_then(|s| serde_json::from_str(s).ok()) {
            if let Some(Value::Object(given)) = state.remove("answers") {
                answers.given = given;
            }
            if let Some(Value::Object(asked)) = state.remove("asked") {
                answers.asked = asked;
            }
        }
        answers.given.extend(responses.unwrap_or_default());
        Some(Box::new(answers))
    }
}

/// A question's digest: SHA-256 over the tool's name and the question's JSON, the first 16 bytes as hex. An answer
/// is taken for the question its round asked, in this tool, not for whatever is asked under the same key the next
/// time. Not over the arguments: a question names what it is about (the file, the amount) if its answer must not
/// carry over to a call about something else.
fn question_digest(tool: &str, question: &rmcp::model::InputRequest) -> String {
    use sha2::Digest as _;
    let json = serde_json::to_vec(question).unwrap_or_default();
    let mut hasher = sha2::Sha256::new();
    hasher.update((tool.len() as u64).to_be_bytes());
    hasher.update(tool.as_bytes());
    hasher.update(&json);
    base16ct::lower::encode_string(&hasher.finalize()[..16])
}

/// What [`Rounds`] need of a call.
#[derive(Default)]
struct Input {
    /// What the client sent back for the questions of earlier rounds.
    answers: Answers,
    /// This round's questions.
    rounds: Mutex<Rounds>,
    /// Whether the handler asked a question this round has no answer to: its call ends `input_required`.
    awaiting: std::sync::atomic::AtomicBool,
    /// The handler's task, once it waits: woken by a question asked on another task.
    waker: futures_util::task::AtomicWaker,
}

/// The questions of one round of a call under the stateless revision (2026-07-28), where the server may not send
/// the client requests: a question (an elicitation, a sampling request) is answered by an `input_required` result
/// listing it, and the client calls the tool again with the answers. The handler runs again from its start, and
/// each question it asks, in order, takes its answer from the retry (`elicitation-0`, `sampling-1`, ...) if the
/// round before asked that very question under that key (its digest, in `requestState`): a question asked in
/// another order, or worded otherwise, is asked again rather than given another's answer. So a handler asks the same
/// questions in the same order each round, and does nothing it must not repeat before its last question. The
/// answers it took, and the digests of what it asked, ride back in `requestState`, so a later round has them.
#[derive(Default)]
struct Rounds {
    /// How many questions the handler has asked this round.
    asked: u32,
    /// The keys of the answers it took.
    answered: Vec<String>,
    /// The digest of each question it asked, by key.
    digests: rmcp::model::JsonObject,
    /// The questions it asked that have no answer yet.
    open: rmcp::model::InputRequests,
}

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallContext")
            .field("call_id", &self.0.call_id)
            .field("caller", &self.0.caller)
            .field("request_id", &self.0.request_id)
            .field("tool", &self.0.tool)
            .field("connection", &self.0.connection)
            .finish_non_exhaustive()
    }
}

impl CallContext {
    pub(crate) fn new(
        call_id: CallId,
        caller: Caller,
        request_id: RequestId,
        tool: Arc<str>,
        rmcp: Option<RequestContext<RoleServer>>,
        connection: Connection,
        answers: Option<Box<Answers>>,
    ) -> Self {
        let inner = Arc::new(ContextInner {
            call_id,
            caller,
            request_id,
            tool,
            rmcp,
            connection,
            token: OnceLock::new(),
            fields: Mutex::new(Vec::new()),
            has_fields: std::sync::atomic::AtomicBool::new(false),
            ended: std::sync::atomic::AtomicBool::new(false),
            input: OnceLock::new(),
            in_handler: std::sync::atomic::AtomicBool::new(false),
            commit: std::sync::atomic::AtomicU8::new(RUNNING),
        });
        if let Some(answers) = answers {
            let _ = inner.input.set(Box::new(Input {
                answers: *answers,
                ..Input::default()
            }));
        }
        CallContext(inner)
    }

    /// Who is calling.
    pub fn caller(&self) -> &Caller {
        &self.0.caller
    }

    /// The JSON-RPC id of the request.
    pub fn request_id(&self) -> &RequestId {
        &self.0.request_id
    }

    /// The call's unique id, as on its audit records.
    pub fn call_id(&self) -> CallId {
        self.0.call_id
    }

    /// The name of the tool being called.
    pub fn tool(&self) -> &str {
        &self.0.tool
    }

    pub(crate) fn tool_shared(&self) -> &Arc<str> {
        &self.0.tool
    }

    /// What the transport knows about where the call came from.
    pub fn connection(&self) -> &Connection {
        &self.0.connection
    }

    /// rmcp's context of the request (peer, `_meta`, extensions, its cancellation token), when the call came
    /// through an MCP session rather than straight to [`ToolSet::call`](crate::ToolSet::call).
    pub fn rmcp(&self) -> Option<&RequestContext<RoleServer>> {
        self.0.rmcp.as_ref()
    }

    /// The client on the other end of the session, to send it requests and notifications of your own.
    pub fn peer(&self) -> Option<&Peer<RoleServer>> {
        self.rmcp().map(|cx| &cx.peer)
    }

    /// The request's `_meta` (empty when it had none).
    pub fn meta(&self) -> &RequestMetaObject {
        static EMPTY: OnceLock<RequestMetaObject> = OnceLock::new();
        self.rmcp().map_or_else(
            || EMPTY.get_or_init(RequestMetaObject::default),
            |cx| &cx.meta,
        )
    }

    /// The client's name and version as it gave them, if it did: in `initialize`, for a session begun with it
    /// (whatever a request's `_meta` says), else in the request's `_meta` (the stateless revision).
    pub fn client_info(&self) -> Option<Implementation> {
        match self.initialized() {
            Some(initialized) => Some(initialized.client_info.clone()),
            None => self.rmcp()?.meta.client_info(),
        }
    }

    /// What the client said of itself in its session's `initialize`, where the transport vouches for it (not over
    /// stateless HTTP, where rmcp fills it with placeholders).
    fn initialized(&self) -> Option<Arc<rmcp::model::InitializeRequestParams>> {
        self.rmcp()
            .filter(|_| self.0.connection.trust_peer_info)
            .and_then(|cx| cx.peer.peer_info())
    }

    /// The capabilities the client declared (in `initialize`, or in the request's `_meta` in the stateless
    /// revision); none for a call made in process.
    pub fn client_capabilities(&self) -> Option<ClientCapabilities> {
        self.rmcp()?
            .meta
            .client_capabilities()
            .or_else(|| Some(self.initialized()?.capabilities.clone()))
    }

    /// Cancelled when the client cancels the call or goes away, when the call times out, when the server shuts
    /// down past its grace period, and once the call has ended (its record written), however it ended. The
    /// handler's own future is dropped or done by then anyway (unless it passed its point of no return,
    /// [`commit`](Self::commit): then the call is waited for, though this still follows a client's
    /// cancellation); this is for work it handed to other tasks.
    pub fn cancellation(&self) -> CancellationToken {
        self.token().clone()
    }

    fn token(&self) -> &CancellationToken {
        if let Some(token) = self.0.token.get() {
            return token;
        }
        let token = self.0.token.get_or_init(|| match &self.0.rmcp {
            Some(cx) => cx.ct.child_token(),
            None => CancellationToken::new(),
        });
        // Made now, perhaps as the call ends: `end` writes the end, then cancels the token if it finds one; this
        // made the token, then reads the end (a fence on each side), so a token `end` did not find is cancelled
        // here.
        fence(Ordering::SeqCst);
        if self.0.ended.load(Ordering::SeqCst) {
            token.cancel();
        }
        token
    }

    /// Passes the call's point of no return, for a handler about to make an effect it cannot take back (a file
    /// renamed into place, a payment sent): `true` if the call was not stopped first, and then it will not be: a
    /// client's cancellation, its timeout or the server's stop no longer cut it, and it is recorded by what the
    /// handler returns. `false` if the pipeline stopped it first (it is being recorded `cancelled`, `timeout` or
    /// `shutting_down`): give up without the effect. Without it, a call stopped as its effect was being made
    /// would be recorded as stopped, as if nothing had happened.
    ///
    /// Keep what follows short: the call is waited for (at the server's stop, like a handler stuck in blocking
    /// code: its record is written when it returns). Ask the client anything (`Elicitation`, `Sampling`) before,
    /// not after: a question asked by rounds ends the call, and the client's retry would make the effect again.
    /// The handler's token still follows a client's cancellation: a handler that gives up after its commit, or
    /// whose future a transport drops all the same, is recorded `cancelled` with the code
    /// `cancelled_after_commit`: its effect may have been made. `false` once the call's record is written (a task
    /// the handler started, still holding the context). `fs::Root::write_text_for_call` (feature `fs`) commits just before the file is replaced.
    pub fn commit(&self) -> bool {
        match self.0.commit.compare_exchange(
            RUNNING,
            COMMITTED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => true,
            Err(state) => state == COMMITTED,
        }
    }

    /// Whether the handler passed the call's point of no return ([`commit`](Self::commit)).
    pub fn is_committed(&self) -> bool {
        self.0.commit.load(Ordering::Acquire) == COMMITTED
    }

    /// The pipeline stops the call: `true` if it was not committed first (and may no longer be), `false` if the
    /// handler passed its point of no return, so its result is the call's.
    pub(crate) fn stop_unless_committed(&self) -> bool {
        match self
            .0
            .commit
            .compare_exchange(RUNNING, STOPPED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == STOPPED,
        }
    }

    /// The token the transport cancels when the client cancels or goes away, if any.
    pub(crate) fn request_cancellation(&self) -> Option<&CancellationToken> {
        self.rmcp().map(|cx| &cx.ct)
    }

    /// Cancels the handler's token; one asked for later (by a task given a clone of the context) is cancelled
    /// already.
    pub(crate) fn cancel_handler(&self) {
        self.token().cancel();
    }

    /// The call's record is being written: what a clone of the context does from now on reaches neither the
    /// client nor the record, and the handler's token is cancelled (made cancelled, if it is asked for only now).
    /// For a call through an MCP session rmcp cancels the request's token once it has answered; a call made in
    /// process has no one else to do it. A token nobody asked for is not made.
    pub(crate) fn end(&self) {
        // A call whose record is being written can no longer be committed: a clone kept by a task the handler
        // started gets `false` from `commit`, so its effect is not made after a record that does not show it.
        let _ =
            self.0
                .commit
                .compare_exchange(RUNNING, STOPPED, Ordering::AcqRel, Ordering::Acquire);
        // The end written before the fields (see `audit_field`) and the token (see `token`) are looked for: the
        // fence orders the two for the readers of each, one barrier where a sequentially consistent store would
        // add a second.
        self.0.ended.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        if let Some(token) = self.0.token.get() {
            token.cancel();
        }
    }

    /// Whether the call has ended (its record written or being written).
    pub fn has_ended(&self) -> bool {
        self.0.ended.load(Ordering::Acquire)
    }

    /// Whether the server may send the client requests during this call: protocol `2026-07-28` and later forbid it
    /// (rmcp refuses to send them), so a tool is told the client cannot be asked, not given an internal error.
    fn may_ask_client(&self) -> bool {
        self.rmcp().is_some_and(|cx| {
            cx.protocol_version()
                .is_none_or(|version| version < rmcp::model::ProtocolVersion::V_2026_07_28)
        })
    }

    /// Whether the call came under protocol `2026-07-28` or later.
    fn stateless_revision(&self) -> bool {
        self.rmcp().is_some_and(|cx| {
            cx.protocol_version()
                .is_some_and(|version| version >= rmcp::model::ProtocolVersion::V_2026_07_28)
        })
    }

    /// Whether the client is asked by rounds (see [`Rounds`]): a call through an MCP session of protocol
    /// `2026-07-28` or later, still live.
    pub(crate) fn asks_by_round(&self) -> bool {
        !self.has_ended() && self.0.in_handler.load(Ordering::Relaxed) && self.stateless_revision()
    }

    /// The handler is being called: from now on it may ask by rounds.
    pub(crate) fn enter_handler(&self) {
        self.0.in_handler.store(true, Ordering::Relaxed);
    }

    /// The answer to this round's next question (`{kind}-{n}`), if the client sent one to this very question; or
    /// else the question is kept for the call's `input_required` result, and `None`.
    fn answer_or_ask(&self, kind: &str, question: rmcp::model::InputRequest) -> Option<Value> {
        let input = self.input();
        let digest = question_digest(self.tool(), &question);
        let mut rounds = input.rounds.lock().unwrap_or_else(PoisonError::into_inner);
        let key = format!("{kind}-{}", rounds.asked);
        rounds.asked += 1;
        let asked_before = input.answers.asked.get(&key).and_then(Value::as_str) == Some(&digest);
        rounds.digests.insert(key.clone(), Value::String(digest));
        if asked_before && let Some(answer) = input.answers.given.get(&key) {
            rounds.answered.push(key);
            return Some(answer.clone());
        }
        rounds.open.insert(key, question);
        drop(rounds);
        input.awaiting.store(true, Ordering::SeqCst);
        input.waker.wake();
        None
    }

    /// Waits for the end of a call whose question has no answer this round. The handler's own wait never gets this
    /// far (the pipeline ends the round as soon as the handler waits on the question); a task the handler spawned
    /// does, and ends with the call rather than waiting for ever.
    async fn until_ended(&self) {
        self.cancellation().cancelled().await;
    }

    fn input(&self) -> &Input {
        self.0.input.get_or_init(Box::default)
    }

    /// Whether the handler asked a question this round has no answer to.
    pub(crate) fn awaits_input(&self) -> bool {
        self.0
            .input
            .get()
            .is_some_and(|input| input.awaiting.load(Ordering::SeqCst))
    }

    /// Wakes `waker` when a question this round has no answer to is asked (on another task): for a call that asks
    /// by rounds.
    pub(crate) fn wake_on_question(&self, waker: &std::task::Waker) {
        self.input().waker.register(waker);
    }

    /// The call's `input_required` result: its open questions, and as `requestState` (a JSON object) the answers
    /// taken so far and the digest of every question asked, so that the next round has them.
    pub(crate) fn input_required(&self) -> rmcp::model::InputRequiredResult {
        let input = self.input();
        let mut rounds = input.rounds.lock().unwrap_or_else(PoisonError::into_inner);
        let open = std::mem::take(&mut rounds.open);
        let taken: rmcp::model::JsonObject = rounds
            .answered
            .iter()
            .filter_map(|key| Some((key.clone(), input.answers.given.get(key)?.clone())))
            .collect();
        let asked = std::mem::take(&mut rounds.digests);
        let state = serde_json::json!({ "asked": asked, "answers": taken }).to_string();
        rmcp::model::InputRequiredResult::new(Some(open), Some(state))
    }

    /// The client, while the call lasts: after its answer no notification or request of the call's may follow.
    fn live_peer(&self) -> Option<&Peer<RoleServer>> {
        self.peer().filter(|_| !self.has_ended())
    }

    /// Adds a field to the call's `tool_call` audit record, under `fields` (the id of the ticket a tool created,
    /// say). Values are bounded like arguments; past [`MAX_AUDIT_FIELDS`] fields, or with a key over 64 bytes, the
    /// field is dropped and `false` returned, as it is once the call has ended (its record is written). A later
    /// field with the same key replaces the earlier one. Keys starting `secure-tools/` are the library's (such as
    /// `secure-tools/rate_limit`): refused, `false`.
    pub fn audit_field(&self, key: impl Into<String>, value: impl Into<Value>) -> bool {
        let key = key.into();
        // Whatever its case, or space around it, which read the same (red-team finding, third round).
        if key
            .trim()
            .get(..LIBRARY_FIELD_PREFIX.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(LIBRARY_FIELD_PREFIX))
        {
            return false;
        }
        self.add_field(key, value.into())
    }

    /// A field of the library's own (see [`LIBRARY_FIELD_PREFIX`]).
    pub(crate) fn library_field(&self, key: &str, value: impl Into<Value>) -> bool {
        debug_assert!(key.starts_with(LIBRARY_FIELD_PREFIX));
        self.add_field(key.to_owned(), value.into())
    }

    fn add_field(&self, key: String, value: Value) -> bool {
        if key.is_empty() || key.len() > 64 || self.has_ended() {
            return false;
        }
        let mut fields = self.0.fields.lock().unwrap_or_else(PoisonError::into_inner);
        // Decided under the lock, `has_fields` set before `ended` is read (sequentially consistent): the record
        // ends the call (the end written, then a fence), then takes the fields under the lock if it sees
        // `has_fields`. Either it sees `has_fields` and waits for this field, or this sees the end and refuses the
        // field. The check above is only the fast way out: alone, it let a field be accepted after the record had
        // taken the fields, and lost.
        self.0.has_fields.store(true, Ordering::SeqCst);
        if self.0.ended.load(Ordering::SeqCst) {
            return false;
        }
        if let Some(slot) = fields.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
            return true;
        }
        if fields.len() >= MAX_AUDIT_FIELDS {
            return false;
        }
        fields.push((key, value));
        true
    }

    /// The caller's W3C trace context (`traceparent`, `tracestate`): from the request's `_meta` (SEP-414) when it
    /// has a valid `traceparent`, or else as the transport received it (not checked here). An invalid one in
    /// `_meta` is ignored as if absent, so it does not hide a valid one the transport received.
    pub(crate) fn trace_headers(&self) -> (Option<&str>, Option<&str>) {
        let meta = self.rmcp().map(|cx| &cx.meta.0);
        if let Some(meta) = meta
            && let Some(parent) = meta.get("traceparent").and_then(|v| v.as_str())
            && crate::audit::TraceContext::parse(parent).is_some()
        {
            return (
                Some(parent),
                meta.get("tracestate").and_then(|v| v.as_str()),
            );
        }
        let connection = &self.0.connection;
        (
            connection.traceparent.as_deref(),
            connection.tracestate.as_deref(),
        )
    }

    /// The caller's trace, as recorded without OpenTelemetry; a value that is not a valid `traceparent` is ignored.
    pub(crate) fn trace(&self) -> Option<crate::audit::TraceContext> {
        self.trace_headers()
            .0
            .and_then(crate::audit::TraceContext::parse)
    }

    /// Where the call came from, as recorded. Within a session whose calls carry nothing of their own (stdio),
    /// built once per session.
    pub(crate) fn origin(&self) -> Arc<Origin> {
        let connection = &self.0.connection;
        let build = |client: Option<Implementation>| {
            Arc::new(Origin {
                transport: connection.transport,
                client_name: client.as_ref().map(|c| shorten_str(&c.name)),
                client_version: client.as_ref().map(|c| shorten_str(&c.version)),
                remote_addr: connection.remote_addr,
                forwarded_for: connection.forwarded_for,
                session_id: connection.session_id.clone(),
                token_id: connection.token_id.clone(),
            })
        };
        // A session begun with `initialize` keeps the client it named on every record (red-team finding: a call
        // whose `_meta` named another was recorded under that name); a request's `_meta` names the client only
        // where there is no such session (the stateless revision). Within a session whose calls carry nothing of
        // their own, built once, from `initialize`.
        let session = connection
            .session
            .as_ref()
            .filter(|_| connection.remote_addr.is_none() && connection.token_id.is_none());
        if let Some(origin) = session.and_then(|session| session.origin.get()) {
            return origin.clone();
        }
        let Some(initialized) = self.initialized() else {
            let client = self
                .rmcp()
                .filter(|cx| !cx.meta.0.is_empty())
                .and_then(|cx| cx.meta.client_info());
            return build(client);
        };
        let from_peer = || build(Some(initialized.client_info.clone()));
        match session {
            Some(session) => session.origin.get_or_init(from_peer).clone(),
            None => from_peer(),
        }
    }

    /// The fields added, taken once the call has ended ([`CallContext::end`]): none can be added after.
    pub(crate) fn take_audit_fields(&self) -> Vec<(String, Value)> {
        if !self.0.has_fields.load(Ordering::SeqCst) {
            return Vec::new();
        }
        std::mem::take(&mut *self.0.fields.lock().unwrap_or_else(PoisonError::into_inner))
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
    note = "context parameters are `Caller`, `RequestId`, `CallId`, `CallContext`, `State<T>` (where `T: FromRef<{S}>`), `CancellationToken`, `Progress`, `ClientLog`, `Elicitation`, `Sampling` and `Meta`",
    note = "if `{Self}` is a type of your own meant as an argument of the tool, mark the parameter `#[arg]`"
)]
pub trait FromCallContext<S>: Sized {
    /// Extracts the value.
    fn from_call_context(cx: &CallContext, state: &S) -> Self;
}

impl<S> FromCallContext<S> for Caller {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        cx.0.caller.clone()
    }
}

impl<S> FromCallContext<S> for RequestId {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        cx.0.request_id.clone()
    }
}

impl<S> FromCallContext<S> for CallId {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        cx.0.call_id
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

impl<S> FromCallContext<S> for CancellationToken {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        cx.cancellation()
    }
}

/// The request's `_meta`: the progress token, the client's context in the stateless revision, trace context and
/// whatever else the client put there.
#[derive(Debug, Clone, Default)]
pub struct Meta(pub RequestMetaObject);

impl<S> FromCallContext<S> for Meta {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        Meta(cx.meta().clone())
    }
}

/// Progress notifications for a call: sent when the client asked for them (its request carried a progress
/// token), and silently skipped otherwise.
#[derive(Debug, Clone)]
pub struct Progress {
    cx: CallContext,
}

impl<S> FromCallContext<S> for Progress {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        Progress { cx: cx.clone() }
    }
}

impl Progress {
    /// Whether the client asked for progress notifications.
    pub fn is_requested(&self) -> bool {
        self.cx.peer().is_some() && self.cx.meta().get_progress_token().is_some()
    }

    /// Reports progress (`progress` should grow with every report; `total` if known). Returns whether a
    /// notification was sent: `false` when none was asked for, the client is gone, or the call has ended.
    pub async fn report(&self, progress: f64, total: Option<f64>, message: Option<String>) -> bool {
        let (Some(peer), Some(token)) = (self.cx.live_peer(), self.cx.meta().get_progress_token())
        else {
            return false;
        };
        let mut param = ProgressNotificationParam::new(token, progress);
        param.total = total;
        param.message = message;
        peer.notify_progress(param).await.is_ok()
    }
}

/// Log messages to the client (`notifications/message`), at or above the level it set with `logging/setLevel`
/// (or in the request's `_meta`); `info` and above when it set none, but none at all for a request under protocol
/// `2026-07-28` or later that names no level in its `_meta` (that revision makes logs a request's opt-in). The
/// logger is the tool's name.
///
/// These go to the client (and on to its user or model), not to the server's log: never put a redacted value in
/// them.
#[derive(Debug, Clone)]
pub struct ClientLog {
    cx: CallContext,
}

impl<S> FromCallContext<S> for ClientLog {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        ClientLog { cx: cx.clone() }
    }
}

impl ClientLog {
    /// Whether a message at `level` would be sent.
    pub fn enabled(&self, level: LoggingLevel) -> bool {
        if self.cx.peer().is_none() {
            return false;
        }
        let asked = self.cx.meta().log_level().map(level_rank);
        // The stateless revision makes logs a request's opt-in: none for a request that names no level (a trial
        // found `info` sent to the Python SDK's client, which had not asked).
        if asked.is_none() && self.cx.stateless_revision() {
            return false;
        }
        let minimum = asked
            .or_else(|| {
                self.cx
                    .connection()
                    .session
                    .as_ref()
                    .and_then(|s| s.log_level())
            })
            .unwrap_or(level_rank(LoggingLevel::Info));
        level_rank(level) >= minimum
    }

    /// Sends `data` at `level`, if the client wants that level. Returns whether a message was sent.
    pub async fn log(&self, level: LoggingLevel, data: impl Into<Value>) -> bool {
        let Some(peer) = self.cx.live_peer().filter(|_| self.enabled(level)) else {
            return false;
        };
        let mut param = LoggingMessageNotificationParam::new(level, data.into());
        param.logger = Some(self.cx.tool().to_owned());
        let sent = peer.notify_logging_message(param).await;
        sent.is_ok()
    }

    /// Sends a `debug` message.
    pub async fn debug(&self, message: impl Into<String>) -> bool {
        self.log(LoggingLevel::Debug, message.into()).await
    }

    /// Sends an `info` message.
    pub async fn info(&self, message: impl Into<String>) -> bool {
        self.log(LoggingLevel::Info, message.into()).await
    }

    /// Sends a `warning` message.
    pub async fn warning(&self, message: impl Into<String>) -> bool {
        self.log(LoggingLevel::Warning, message.into()).await
    }

    /// Sends an `error` message.
    pub async fn error(&self, message: impl Into<String>) -> bool {
        self.log(LoggingLevel::Error, message.into()).await
    }
}

/// Asks the user for input through the client (MCP elicitation).
///
/// A client that did not declare the `elicitation` capability is never sent a request: the call fails at once
/// with [`ElicitationError::CapabilityNotSupported`], which `?` turns into the refusal `elicitation_unsupported`.
/// A client that never answers is bounded by the tool's timeout.
///
/// Under the stateless revision (2026-07-28), where the server may not send the client requests, the question goes
/// out in the call's `input_required` result instead, and the client's next call of the tool brings the answer: the
/// handler runs again from its start, and each question it asks, in order, takes its answer. So a handler asks the
/// same questions in the same order each time, and does nothing it must not repeat before its last question. The
/// same holds for [`Sampling`].
#[derive(Debug, Clone)]
pub struct Elicitation {
    cx: CallContext,
}

impl<S> FromCallContext<S> for Elicitation {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        Elicitation { cx: cx.clone() }
    }
}

impl Elicitation {
    /// Whether the client declared the elicitation capability (and the call's protocol version lets the server ask
    /// it, during the call or by rounds).
    pub fn is_supported(&self) -> bool {
        (self.cx.may_ask_client() || self.cx.asks_by_round())
            && self
                .cx
                .client_capabilities()
                .is_some_and(|c| c.elicitation.is_some())
    }

    /// Asks for a `T` (its JSON Schema is the form; mark it with `rmcp::elicit_safe!`): `Ok(Some(answer))` when the
    /// user accepted and answered. An acceptance without content, a decline or a dismissal is an error, as with
    /// rmcp's `Peer::elicit` ([`ElicitationError::NoContent`], [`ElicitationError::UserDeclined`],
    /// [`ElicitationError::UserCancelled`]; `?` in a handler refuses the call with `elicitation_empty`,
    /// `elicitation_declined` or `elicitation_cancelled`). A client that declared only URL-mode elicitation is not
    /// sent a form.
    pub async fn ask<T>(&self, message: impl Into<String>) -> Result<Option<T>, ElicitationError>
    where
        T: ElicitationSafe + for<'de> serde::Deserialize<'de>,
    {
        let route = self.route(ElicitationMode::Form)?;
        let requested_schema = ElicitationSchema::from_type::<T>().map_err(|error| {
            ElicitationError::Service(ServiceError::McpError(rmcp::ErrorData::internal_error(
                format!("the form's schema cannot be made from its type: {error}"),
                Some(serde_json::json!({ OWN_ERROR_KEY: true })),
            )))
        })?;
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.into(),
            requested_schema,
        };
        let answer = self.exchange(route, params).await?;
        match answer.action {
            ElicitationAction::Accept => match answer.content {
                Some(value) => match serde_json::from_value::<T>(value.clone()) {
                    Ok(parsed) => Ok(Some(parsed)),
                    Err(error) => Err(ElicitationError::ParseError { error, data: value }),
                },
                None => Err(ElicitationError::NoContent),
            },
            ElicitationAction::Decline => Err(ElicitationError::UserDeclined),
            // `cancel`, and any action a later revision adds, is not an acceptance.
            _ => Err(ElicitationError::UserCancelled),
        }
    }

    /// Sends an elicitation request as given (a form schema of your own, or a URL) and returns the client's
    /// answer. A client is sent only the mode it declared (a form to one that declared only URLs is refused, and
    /// the other way round).
    pub async fn request(
        &self,
        params: ElicitRequestParams,
    ) -> Result<ElicitResult, ElicitationError> {
        let mode = match params {
            ElicitRequestParams::FormElicitationParams { .. } => ElicitationMode::Form,
            // URL mode, or one a later revision adds: not a form, so the form capability does not cover it.
            _ => ElicitationMode::Url,
        };
        let route = self.route(mode)?;
        self.exchange(route, params).await
    }

    /// How the client is asked, if the call is live and the client declared elicitation in this mode. The modes
    /// are read from the capabilities this call's client declared (a stateless request's own), as rmcp reads a
    /// session's: a capability naming neither mode means forms.
    fn route(&self, mode: ElicitationMode) -> Result<Route<'_>, ElicitationError> {
        let declared = self
            .cx
            .client_capabilities()
            .and_then(|c| c.elicitation)
            .is_some_and(|e| match mode {
                ElicitationMode::Form => e.form.is_some() || e.url.is_none(),
                _ => e.url.is_some(),
            });
        if !declared {
            return Err(ElicitationError::CapabilityNotSupported);
        }
        if self.cx.asks_by_round() {
            return Ok(Route::ByRound);
        }
        match self.cx.live_peer() {
            Some(peer) if self.cx.may_ask_client() => Ok(Route::Peer(peer)),
            _ => Err(ElicitationError::CapabilityNotSupported),
        }
    }

    /// Asks, and waits for the answer: from the client during the call, or from this round's retry (see
    /// [`Rounds`]). A question the retry has no answer to never returns: the call ends `input_required`, asking
    /// it.
    async fn exchange(
        &self,
        route: Route<'_>,
        params: ElicitRequestParams,
    ) -> Result<ElicitResult, ElicitationError> {
        let form = match &params {
            ElicitRequestParams::FormElicitationParams {
                requested_schema, ..
            } => serde_json::to_value(requested_schema).ok(),
            _ => None,
        };
        let mut answer = self.exchange_unchecked(route, params).await?;
        // An acceptance with no content is one with none of the form's members (a review's finding: it passed
        // unchecked, whatever the form required).
        if let (Some(form), ElicitationAction::Accept) = (&form, &answer.action) {
            let content = answer.content.as_mut().filter(|c| !c.is_null());
            let mut empty = Value::Object(serde_json::Map::new());
            let given = content.is_some();
            let checked = match content {
                Some(content) => content,
                None => &mut empty,
            };
            if !fits_form(form, checked) {
                // Neither the answer nor what is wrong with it is kept: see the refusal `elicitation_invalid`.
                return Err(ElicitationError::ParseError {
                    error: serde::de::Error::custom("the answer does not fit the form asked"),
                    data: match given {
                        true => checked.clone(),
                        false => Value::Null,
                    },
                });
            }
        }
        Ok(answer)
    }

    async fn exchange_unchecked(
        &self,
        route: Route<'_>,
        params: ElicitRequestParams,
    ) -> Result<ElicitResult, ElicitationError> {
        match route {
            Route::Peer(peer) => elicit(&self.cx, peer, params).await,
            Route::ByRound => {
                let question = rmcp::model::InputRequest::Elicitation(ElicitRequest::new(params));
                let answer = self.cx.answer_or_ask("elicitation", question);
                match answer {
                    // Neither the answer nor serde's message about it (which may quote it) is kept: see the
                    // refusal `elicitation_invalid`.
                    Some(answer) => {
                        serde_json::from_value::<ElicitResult>(answer.clone()).map_err(|error| {
                            ElicitationError::ParseError {
                                error,
                                data: answer,
                            }
                        })
                    }
                    None => {
                        self.cx.until_ended().await;
                        Err(ServiceError::Cancelled {
                            reason: Some("the call ended asking this question".to_owned()),
                        }
                        .into())
                    }
                }
            }
        }
    }
}

/// Whether `content`, an accepted answer's, fits `form`, the form asked (its `requestedSchema`, as sent): an
/// object, with each member the form requires, and each member the form has of the type it gives (a string, a
/// number, an integer, a boolean, or an array of strings for a choice of several), one of the choices it lists
/// (`enum`, `oneOf`/`anyOf` of `const`s), within its bounds (`minLength`/`maxLength` in characters,
/// `minimum`/`maximum`, `minItems`/`maxItems`). A member the form does not have is left to the handler, and a
/// string's `format` to the client: the checks are of the shape the handler relies on (red-team finding: a bare
/// string reached `Elicitation::request`'s caller as an accepted answer). An integer member written as a whole
/// number with a fraction (`30.0`, which JSON Schema counts an integer) is made an integer in `content`, as a
/// handler's integer type reads it (red-team finding: it fitted, then failed the handler's type).
fn fits_form(form: &Value, content: &mut Value) -> bool {
    let Some(content) = content.as_object_mut() else {
        return false;
    };
    let properties = form.get("properties").and_then(Value::as_object);
    for (name, value) in content.iter_mut() {
        let integer_member = properties
            .and_then(|properties| properties.get(name))
            .and_then(|property| property.get("type"))
            .and_then(Value::as_str)
            == Some("integer");
        if integer_member
            && let Some(n) = value.as_f64()
            && !value.is_i64()
            && !value.is_u64()
            && n.fract() == 0.0
            && n.abs() <= MAX_EXACT_INTEGER
        {
            *value = Value::from(n as i64);
        }
    }
    let required = form
        .get("required")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if required
        .iter()
        .filter_map(Value::as_str)
        .any(|name| content.get(name).is_none_or(Value::is_null))
    {
        return false;
    }
    content.iter().all(|(name, value)| {
        // A member the form does not require, given as `null`, is not given (the Python SDK's types allow it).
        value.is_null()
            || properties
                .and_then(|properties| properties.get(name))
                .is_none_or(|property| fits_property(property, value))
    })
}

/// The largest whole number a double holds exactly: an integer member past it (`1e300`) is no integer a handler can
/// read as one.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Whether `value` fits one property of a form (see [`fits_form`]).
fn fits_property(property: &Value, value: &Value) -> bool {
    let number = |key: &str| property.get(key).and_then(Value::as_f64);
    let count = |key: &str| property.get(key).and_then(Value::as_u64);
    let within = |n: f64| {
        number("minimum").is_none_or(|min| n >= min) && number("maximum").is_none_or(|max| n <= max)
    };
    match property.get("type").and_then(Value::as_str) {
        Some("string") => {
            value.as_str().is_some_and(|text| {
                let length = text.chars().count() as u64;
                count("minLength").is_none_or(|min| length >= min)
                    && count("maxLength").is_none_or(|max| length <= max)
            }) && among_choices(property, value)
        }
        Some("number") => value.as_f64().is_some_and(within) && among_choices(property, value),
        Some("integer") => {
            // Compared exactly: as doubles, 2^53 + 1 was within a maximum of 2^53 (a red team's review).
            let exact = |n: i128, key: &str, fits: fn(std::cmp::Ordering) -> bool| {
                property.get(key).is_none_or(|bound| {
                    match (bound.as_i64(), bound.as_u64(), bound.as_f64()) {
                        (Some(b), _, _) => fits(n.cmp(&i128::from(b))),
                        (_, Some(b), _) => fits(n.cmp(&i128::from(b))),
                        (_, _, Some(b)) => (n as f64).partial_cmp(&b).is_some_and(fits),
                        _ => true,
                    }
                })
            };
            let integer = value
                .as_i64()
                .map(i128::from)
                .or_else(|| value.as_u64().map(i128::from));
            integer.is_some_and(|n| {
                exact(n, "minimum", std::cmp::Ordering::is_ge)
                    && exact(n, "maximum", std::cmp::Ordering::is_le)
            }) && among_choices(property, value)
        }
        Some("boolean") => value.is_boolean(),
        Some("array") => value.as_array().is_some_and(|items| {
            let length = items.len() as u64;
            // Items are strings (checked below): a set of them, not a comparison of each pair (an answer of a
            // million items would take minutes).
            let unique = property.get("uniqueItems") != Some(&Value::Bool(true)) || {
                let mut seen = std::collections::HashSet::with_capacity(items.len());
                items.iter().all(|each| seen.insert(each.as_str()))
            };
            count("minItems").is_none_or(|min| length >= min)
                && count("maxItems").is_none_or(|max| length <= max)
                && unique
                && items.iter().all(|each| {
                    each.is_string()
                        && property
                            .get("items")
                            .is_none_or(|item| among_choices(item, each))
                })
        }),
        // A type a later revision adds: left to the handler.
        _ => true,
    }
}

/// Whether `value` is one of the choices `schema` lists (`enum`, or `oneOf`/`anyOf` of `const`s); any value when it
/// lists none.
fn among_choices(schema: &Value, value: &Value) -> bool {
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        return choices.contains(value);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(choices) = schema.get(key).and_then(Value::as_array) {
            let consts: Vec<&Value> = choices.iter().filter_map(|c| c.get("const")).collect();
            if !consts.is_empty() {
                return consts.contains(&value);
            }
        }
    }
    true
}

/// How the client is asked a question: during the call, or by rounds (the stateless revision: see [`Rounds`]).
enum Route<'a> {
    Peer(&'a Peer<RoleServer>),
    ByRound,
}

async fn elicit(
    cx: &CallContext,
    peer: &Peer<RoleServer>,
    params: ElicitRequestParams,
) -> Result<ElicitResult, ElicitationError> {
    let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
    match ask_client(cx, peer, request).await? {
        ClientResult::ElicitResult(answer) => Ok(answer),
        _ => Err(ServiceError::UnexpectedResponse.into()),
    }
}

/// Sends a request to the client and waits for its answer. When the wait is dropped before the answer (the call
/// timed out or was cancelled, or the handler stopped waiting), the request is withdrawn with
/// `notifications/cancelled`, as the specification asks of a party that no longer wants an answer: rmcp's own
/// methods leave it open, so a form stayed on the user's screen after its call had ended.
///
/// The wait ends with the call too (`cx`'s handler token: its record written, its client's cancellation), not only
/// with the handler's future: a question asked on a task the handler spawned was never withdrawn, and the task took
/// the client's late answer after the call's record said it had stopped (red-team finding).
async fn ask_client(
    cx: &CallContext,
    peer: &Peer<RoleServer>,
    request: ServerRequest,
) -> Result<ClientResult, ServiceError> {
    let ended = cx.cancellation();
    if ended.is_cancelled() {
        return Err(ended_asking());
    }
    let handle = peer
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await?;
    let mut pending = Withdraw(Some(handle));
    let answer = match pending.0.as_mut() {
        Some(handle) => tokio::select! {
            biased;
            answer = &mut handle.rx => answer,
            // Withdrawn as `pending` drops.
            () = ended.cancelled() => return Err(ended_asking()),
        },
        None => return Err(ServiceError::TransportClosed),
    };
    // Answered (or the connection is gone): nothing to withdraw.
    pending.0 = None;
    answer.map_err(|_| ServiceError::TransportClosed)?
}

/// The wait for the client's answer ended with its call.
fn ended_asking() -> ServiceError {
    ServiceError::Cancelled {
        reason: Some("the call ended asking this question".to_owned()),
    }
}

/// A request to the client still waiting for its answer; withdrawn if dropped so.
struct Withdraw(Option<RequestHandle<RoleServer>>);

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = handle
                    .cancel(Some("the tool call that asked has ended".to_owned()))
                    .await;
            });
        }
    }
}

/// Marks an error this library made itself in the shape of a peer's (`data`), so that it is told from one the client
/// answered with.
const OWN_ERROR_KEY: &str = "secure-tools/own";

fn is_own_error(error: &rmcp::ErrorData) -> bool {
    error
        .data
        .as_ref()
        .and_then(|data| data.get(OWN_ERROR_KEY))
        .is_some()
}

impl From<ElicitationError> for Refusal {
    fn from(error: ElicitationError) -> Self {
        match error {
            ElicitationError::CapabilityNotSupported => Refusal::new(
                codes::ELICITATION_UNSUPPORTED,
                "this tool needs to ask the user for input, and the client has not declared that it can be asked \
                 (elicitation) where this server sees it: in this request's `_meta`, or in `initialize` over stdio or \
                 an HTTP session (a stateless HTTP request keeps nothing of `initialize`)",
            ),
            ElicitationError::UserDeclined => Refusal::new(
                "elicitation_declined",
                "the user declined to give the input asked for",
            ),
            ElicitationError::UserCancelled => Refusal::new(
                "elicitation_cancelled",
                "the user dismissed the request for input",
            ),
            ElicitationError::NoContent => {
                Refusal::new("elicitation_empty", "the user gave no input")
            }
            // The call ended while its question was open (a round that asked, a cancellation).
            ElicitationError::Service(ServiceError::Cancelled { .. }) => {
                Refusal::cancelled(codes::CANCELLED, "the call ended asking this question")
            }
            // Neither the answer nor serde's message about it (which may quote it) is kept: the user may have typed
            // a secret.
            ElicitationError::ParseError { .. } => Refusal::invalid(
                "elicitation_invalid",
                "the input the user gave does not have the shape asked for",
            ),
            // The client's, not the server's (red-team finding: both were `internal_error`): an answer that is not
            // an elicitation result, or an error it answered with, whose text is not kept (it is the client's).
            ElicitationError::Service(ServiceError::UnexpectedResponse) => Refusal::invalid(
                "elicitation_invalid",
                "the client's answer to the question is not an answer to it",
            ),
            ElicitationError::Service(ServiceError::McpError(error)) if !is_own_error(&error) => {
                Refusal::new(
                    "elicitation_failed",
                    "the client answered the question with an error",
                )
            }
            other => Refusal::internal(other),
        }
    }
}

/// Asks the client's model for a completion (MCP sampling).
///
/// A client that did not declare the `sampling` capability is never sent a request: the call fails at once with
/// the refusal `sampling_unsupported`.
#[derive(Debug, Clone)]
pub struct Sampling {
    cx: CallContext,
}

impl<S> FromCallContext<S> for Sampling {
    fn from_call_context(cx: &CallContext, _: &S) -> Self {
        Sampling { cx: cx.clone() }
    }
}

impl Sampling {
    /// Whether the client declared the sampling capability (and the call's protocol version lets the server ask
    /// it, during the call or by rounds).
    pub fn is_supported(&self) -> bool {
        (self.cx.may_ask_client() || self.cx.asks_by_round())
            && self
                .cx
                .client_capabilities()
                .is_some_and(|c| c.sampling.is_some())
    }

    /// Sends `sampling/createMessage` and returns the client's answer. Under the stateless revision the request
    /// goes out in the call's `input_required` result and the answer comes with the client's retry (see
    /// [`Elicitation`]'s rounds).
    pub async fn create_message(
        &self,
        params: CreateMessageRequestParams,
    ) -> Result<CreateMessageResult, Refusal> {
        let route = if !self.is_supported() {
            None
        } else if self.cx.asks_by_round() {
            Some(Route::ByRound)
        } else {
            self.cx.live_peer().map(Route::Peer)
        };
        let Some(route) = route else {
            return Err(Refusal::new(
                codes::SAMPLING_UNSUPPORTED,
                "this tool needs a completion from the client's model, and the client has not declared sampling where \
                 this server sees it: in this request's `_meta`, or in `initialize` over stdio or an HTTP session (a \
                 stateless HTTP request keeps nothing of `initialize`)",
            ));
        };
        // What rmcp's `create_message` checks before it sends, kept: tools only to a client that takes them, and
        // the messages' structure.
        let takes_tools = self
            .cx
            .client_capabilities()
            .and_then(|c| c.sampling)
            .is_some_and(|s| s.tools.is_some());
        if (params.tools.is_some() || params.tool_choice.is_some()) && !takes_tools {
            return Err(Refusal::new(
                codes::SAMPLING_UNSUPPORTED,
                "this tool offers tools to the client's model, and the client does not support that (sampling tools)",
            ));
        }
        params.validate().map_err(Refusal::internal)?;
        let request = CreateMessageRequest::new(params);
        let peer = match route {
            Route::Peer(peer) => peer,
            Route::ByRound => {
                let question = rmcp::model::InputRequest::CreateMessage(request);
                let answer = self.cx.answer_or_ask("sampling", question);
                return match answer {
                    Some(answer) => serde_json::from_value::<CreateMessageResult>(answer).map_err(|_| {
                        Refusal::invalid(
                            "sampling_invalid",
                            "the client's answer to the sampling request is not a sampling result",
                        )
                    }),
                    None => {
                        self.cx.until_ended().await;
                        Err(Refusal::cancelled(
                            codes::CANCELLED,
                            "the call ended asking this question",
                        ))
                    }
                };
            }
        };
        let request = ServerRequest::CreateMessageRequest(request);
        // The client's answer that is not a sampling result, or an error it answered with (whose text is not
        // kept), is the client's doing, not the server's (red-team finding: both were `internal_error`).
        match ask_client(&self.cx, peer, request).await {
            Ok(ClientResult::CreateMessageResult(answer)) => Ok(*answer),
            Ok(_) => Err(Refusal::invalid(
                "sampling_invalid",
                "the client's answer to the sampling request is not a sampling result",
            )),
            Err(ServiceError::McpError(_)) => Err(Refusal::new(
                "sampling_failed",
                "the client answered the sampling request with an error",
            )),
            Err(ServiceError::Cancelled { .. }) => Err(Refusal::cancelled(
                codes::CANCELLED,
                "the call ended asking this question",
            )),
            Err(error) => Err(Refusal::internal(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CallId;

    /// What the transport says of a caller (the certificate a token came with) is neither overwritten by nor crowded
    /// out by the attributes a mapping of claims gave it.
    #[cfg(feature = "mtls")]
    #[test]
    fn a_transport_attribute_is_kept_over_the_callers_own() {
        let mut caller = super::Caller::new("carol", crate::Grant::none());
        for i in 0..super::MAX_CALLER_ATTRIBUTES {
            caller = caller.with_attribute(format!("claim{i}"), "x");
        }
        let caller = caller
            .with_attribute("client_certificate", "forged")
            .with_transport_attribute("client_certificate", "alice");
        let attributes = caller.attributes().unwrap();
        assert_eq!(attributes["client_certificate"], "alice");
        assert_eq!(attributes.len(), super::MAX_CALLER_ATTRIBUTES + 1);
    }

    /// The shapes of the specification's forms: each kind of member, its choices and its bounds.
    #[test]
    fn an_answer_fits_its_form_only_in_the_shape_the_form_gives() {
        use serde_json::json;
        let form = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 2, "maxLength": 5},
                "email": {"type": "string", "format": "email"},
                "age": {"type": "integer", "minimum": 0, "maximum": 150},
                "score": {"type": "number", "maximum": 1.5},
                "ok": {"type": "boolean"},
                "colour": {"type": "string", "enum": ["red", "green"]},
                "size": {"type": "string", "oneOf": [{"const": "s", "title": "Small"}, {"const": "l", "title": "Large"}]},
                "tags": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string", "enum": ["a", "b", "c"]}},
                "picks": {"type": "array", "items": {"anyOf": [{"const": "x", "title": "X"}, {"const": "y", "title": "Y"}]}},
                "once": {"type": "array", "uniqueItems": true, "items": {"type": "string", "enum": ["a", "b"]}}
            },
            "required": ["name", "ok"]
        });
        let fits = |mut content: serde_json::Value| super::fits_form(&form, &mut content);
        assert!(fits(json!({"name": "Ann", "ok": true})));
        assert!(fits(json!({
            "name": "Ann", "ok": false, "email": "not checked here", "age": 30, "score": 1.5, "colour": "red",
            "size": "l", "tags": ["a", "c"], "picks": ["y"], "unknown": {"left": "to the handler"}
        })));
        assert!(
            fits(json!({"name": "Ann", "ok": true, "age": 30.0})),
            "a whole number"
        );
        // Red-team finding: a whole number written `1.0` fitted, then failed a handler's integer type; an integer
        // member is handed on as an integer. And integer bounds are compared exactly, not as doubles.
        let mut whole = json!({"name": "Ann", "ok": true, "age": 30.0, "rank": 2.0});
        let form_of_ranks = {
            let mut form = form.clone();
            form["properties"]["rank"] = json!({"type": "integer", "enum": [1, 2]});
            form["properties"]["big"] =
                json!({"type": "integer", "maximum": 9_007_199_254_740_992_u64});
            form
        };
        assert!(super::fits_form(&form_of_ranks, &mut whole));
        assert_eq!(
            whole,
            json!({"name": "Ann", "ok": true, "age": 30, "rank": 2})
        );
        for (big, fits) in [
            (9_007_199_254_740_992_u64, true),
            (9_007_199_254_740_993, false),
        ] {
            let mut content = json!({"name": "Ann", "ok": true, "big": big});
            assert_eq!(
                super::fits_form(&form_of_ranks, &mut content),
                fits,
                "{big}"
            );
        }
        // A member the form does not require, given as `null`: not given (the Python SDK's types allow it).
        assert!(fits(
            json!({"name": "Ann", "ok": true, "age": null, "colour": null})
        ));
        assert!(fits(json!({"name": "Ann", "ok": true, "once": ["a", "b"]})));
        for misfit in [
            json!("Ann"),
            json!(["Ann"]),
            json!(null),
            json!({"ok": true}),
            json!({"name": "Ann"}),
            json!({"name": "A", "ok": true}),
            json!({"name": "Annabel", "ok": true}),
            json!({"name": 5, "ok": true}),
            json!({"name": "Ann", "ok": "true"}),
            json!({"name": "Ann", "ok": true, "age": 30.5}),
            json!({"name": "Ann", "ok": true, "age": -1}),
            json!({"name": "Ann", "ok": true, "age": "30"}),
            json!({"name": "Ann", "ok": true, "score": 2}),
            json!({"name": "Ann", "ok": true, "colour": "blue"}),
            json!({"name": "Ann", "ok": true, "size": "m"}),
            json!({"name": "Ann", "ok": true, "tags": []}),
            json!({"name": "Ann", "ok": true, "tags": ["a", "b", "c"]}),
            json!({"name": "Ann", "ok": true, "tags": ["d"]}),
            json!({"name": "Ann", "ok": true, "tags": "a"}),
            json!({"name": "Ann", "ok": true, "picks": ["z"]}),
            json!({"name": "Ann", "ok": true, "picks": [1]}),
            // A review's: required members given as `null`, integers no integer type holds, a choice twice.
            json!({"name": null, "ok": true}),
            json!({"name": "Ann", "ok": null}),
            json!({"name": "Ann", "ok": true, "age": 1e300}),
            json!({"name": "Ann", "ok": true, "age": 123456789012345678901234567890.0}),
            json!({"name": "Ann", "ok": true, "once": ["a", "a"]}),
        ] {
            assert!(!fits(misfit.clone()), "{misfit}");
        }
        // Characters, not bytes.
        assert!(fits(json!({"name": "éééé", "ok": true})));
    }

    fn context() -> super::CallContext {
        super::CallContext::new(
            CallId(1),
            crate::Caller::anonymous(),
            rmcp::model::RequestId::Number(1),
            "t".into(),
            None,
            super::Connection::default(),
            None,
        )
    }

    /// Red-team finding: a handler could set `secure-tools/rate_limit` itself, hiding that its call's rate was not
    /// checked or claiming it was not when it was. Keys under `secure-tools/` are the library's.
    #[test]
    fn a_handler_cannot_write_the_librarys_fields() {
        let cx = context();
        assert!(!cx.audit_field("secure-tools/rate_limit", "checked"));
        assert!(!cx.audit_field("secure-tools/anything", 1));
        // Third round: other cases and space around it, which read the same.
        assert!(!cx.audit_field("Secure-Tools/rate_limit", "checked"));
        assert!(!cx.audit_field(" secure-tools/rate_limit", "checked"));
        assert!(cx.audit_field("ticket", 7));
        cx.library_field(
            crate::call::UNCHECKED_RATE_FIELD.0,
            crate::call::UNCHECKED_RATE_FIELD.1,
        );
        let fields = cx.0.fields.lock().unwrap().clone();
        assert_eq!(
            fields,
            vec![
                ("ticket".to_owned(), serde_json::json!(7)),
                (
                    "secure-tools/rate_limit".to_owned(),
                    serde_json::json!("unchecked")
                ),
            ]
        );
    }

    /// Red-team finding: a write that had replaced its file was recorded `cancelled` when the cancellation came
    /// as the write finished. The handler's commit and the pipeline's stop exclude each other: the first wins.
    /// Review finding: a clone of the context kept past the call (a task the handler started) could commit
    /// after the call's record was written, and make its effect unrecorded.
    #[test]
    fn no_commit_after_the_calls_record() {
        let ended = context();
        ended.end();
        assert!(!ended.commit());
        assert!(!ended.is_committed());
        let committed = context();
        assert!(committed.commit());
        committed.end();
        assert!(
            committed.is_committed(),
            "a commit made before the end stands"
        );
    }

    #[test]
    fn the_point_of_no_return_and_the_stop_exclude_each_other() {
        let committed = context();
        assert!(committed.commit());
        assert!(committed.commit(), "committing twice is still committed");
        assert!(!committed.stop_unless_committed());
        let stopped = context();
        assert!(stopped.stop_unless_committed());
        assert!(stopped.stop_unless_committed());
        assert!(!stopped.commit());
    }

    #[test]
    fn a_call_id_is_32_lowercase_hex_digits_as_format_writes_them() {
        for value in [
            0u128,
            1,
            0xabc,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            assert_eq!(CallId(value).to_string(), format!("{value:032x}"));
        }
    }
}
