use std::sync::Arc;

use rmcp::model::{JsonObject, RequestId};
use serde::Serialize;
use serde_json::Value;

use crate::call::{CallId, RefusalKind};
use crate::scope::Scope;

/// Strings longer than this many bytes are shortened in audit records.
pub const MAX_AUDIT_STRING: usize = 1024;
const MAX_AUDIT_DEPTH: usize = 16;

/// One line of the audit trail. Cheap to clone (a tool call's event holds its parts shared), so a sink may keep
/// records.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// When it was written; serialized as RFC 3339 in UTC with microseconds.
    pub ts: Timestamp,
    /// Which server wrote it.
    pub server_id: Arc<str>,
    /// What happened; its `event` field names the kind.
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// A moment, shown as `2026-11-24T09:36:13.151186Z` (RFC 3339, UTC, microseconds). Formatted only when a record
/// is written, without a calendar library: days become a civil date by Howard Hinnant's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub std::time::SystemTime);

impl Timestamp {
    fn format(self) -> [u8; 27] {
        let since = self
            .0
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since.as_secs();
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999) as u64;
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut value: u64| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month as u64);
        put(8, 2, day as u64);
        put(11, 2, rem / 3600);
        put(14, 2, rem % 3600 / 60);
        put(17, 2, rem % 60);
        put(20, 6, u64::from(since.subsec_micros()));
        out
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.format();
        f.write_str(std::str::from_utf8(&bytes).expect("ASCII"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = self.format();
        serializer.serialize_str(std::str::from_utf8(&bytes).expect("ASCII"))
    }
}

/// The kinds of audit event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// A tool call, whatever its outcome: exactly one per call.
    ToolCall(ToolCallEvent),
    /// A call of a tool not marked `read_only` is about to run its handler.
    CallStarted(CallStartedEvent),
    /// A server began serving.
    ServerStart {
        /// The transport (`stdio`, `http`).
        transport: &'static str,
        /// The tools served, sorted.
        tools: Vec<String>,
        /// The grant of the stdio caller, when there is one.
        #[serde(skip_serializing_if = "Option::is_none")]
        grant: Option<Vec<String>>,
        /// The protocol versions accepted.
        protocol_versions: Vec<String>,
        /// The digest of the tool definitions served (see [`integrity`](crate::integrity)), all of them as a
        /// caller who may call every tool lists them.
        #[serde(skip_serializing_if = "Option::is_none")]
        toolset_digest: Option<String>,
        /// The lockfile the definitions were checked against before serving (`MCP_TOOLS_LOCK`): they matched it,
        /// or a `tools_lock_mismatch` record just before says how they differ.
        #[serde(skip_serializing_if = "Option::is_none")]
        tools_lock: Option<String>,
    },
    /// A server's tool definitions differ from its lockfile at start (`MCP_TOOLS_LOCK`).
    ToolsLockMismatch {
        /// The lockfile.
        lock: String,
        /// What the server did: `refused` to start, or started anyway (`warned`).
        action: &'static str,
        /// Tools listed and not locked.
        added: Vec<String>,
        /// Tools locked and not listed.
        removed: Vec<String>,
        /// Tools whose definitions changed.
        changed: Vec<String>,
    },
    /// A server stopped; every record before this one has been flushed.
    ServerStop {
        /// Why: `eof`, `sigterm`, `sigint`, `sighup`, `error`.
        reason: String,
    },
    /// A client began a session: after `initialize`, or with its first stateless request.
    Session {
        /// `initialize` or `stateless`.
        lifecycle: &'static str,
        /// The protocol version in force.
        protocol_version: String,
        /// The client's name, as it gave it (shortened if long).
        #[serde(skip_serializing_if = "Option::is_none")]
        client_name: Option<String>,
        /// The client's version, as it gave it.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_version: Option<String>,
        /// Over HTTP: the caller the request that started the session was authenticated as.
        #[serde(skip_serializing_if = "Option::is_none")]
        caller: Option<String>,
        /// Over HTTP: the client's address.
        #[serde(skip_serializing_if = "Option::is_none")]
        remote_addr: Option<String>,
        /// Over HTTP behind a trusted reverse proxy: the client it forwarded the request for (`X-Forwarded-For`).
        #[serde(skip_serializing_if = "Option::is_none")]
        forwarded_for: Option<String>,
        /// Over HTTP: the bearer token's id (`jti`), when it has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        token_id: Option<String>,
        /// The session's id, which its calls' records carry: over stdio, and over HTTP with sessions
        /// (`Mcp-Session-Id`).
        #[serde(skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
    },
    /// Over HTTP with sessions, a session that had its `session` record ended (once): closed by the server to make
    /// room for another of its caller's, the least recently used of them that nothing was using (`evicted`); by its
    /// client (`DELETE`, `deleted`); idle past its keep-alive (`expired`); its client gone before the answer to its
    /// `initialize`, which rmcp then ends (`abandoned`); or open at the server's stop (`shutdown`, recorded before
    /// `server_stop`).
    SessionClosed {
        /// Why: `evicted`, `deleted`, `expired`, `abandoned` or `shutdown`.
        reason: &'static str,
        /// The session's id (as in the `session_id` of its calls' records).
        session_id: String,
        /// The caller whose session it was.
        caller: String,
    },
    /// A request was refused because of its protocol version.
    VersionRejected {
        /// The JSON-RPC id of the request.
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        /// The version asked for.
        requested: Value,
        /// The versions accepted.
        supported: Value,
        /// Over HTTP: the caller the request was authenticated as.
        #[serde(skip_serializing_if = "Option::is_none")]
        caller: Option<String>,
        /// Over HTTP: the client's address.
        #[serde(skip_serializing_if = "Option::is_none")]
        remote_addr: Option<String>,
        /// Over HTTP behind a trusted reverse proxy: the client it forwarded the request for (`X-Forwarded-For`).
        #[serde(skip_serializing_if = "Option::is_none")]
        forwarded_for: Option<String>,
        /// Over HTTP: the bearer token's id (`jti`), when it has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        token_id: Option<String>,
        /// The session the request named or came in, if any (over stdio, a version refusal comes before it).
        #[serde(skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
    },
    /// An incoming message was refused before reaching the protocol layer: not JSON, not UTF-8, too large, a
    /// duplicate key, not a valid JSON-RPC message.
    MessageRejected {
        /// The JSON-RPC id, when it could be read.
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        /// The method refused, when the refusal is of the method itself (`method_not_declared`, `missing_scope`:
        /// a merged handler's own method not served), shortened if long.
        #[serde(skip_serializing_if = "Option::is_none")]
        method: Option<String>,
        /// With `method`: what the refused request named, as a `method_call` record's `target` says it (a
        /// resource's URI without its query, fragment or userinfo, a prompt's name), shortened if long.
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        /// What was wrong, in a word (`parse_error`, `too_large`, ...).
        reason: &'static str,
        /// The JSON-RPC error code answered, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        /// The message's size in bytes.
        bytes: usize,
        /// Over HTTP: the caller the request was authenticated as.
        #[serde(skip_serializing_if = "Option::is_none")]
        caller: Option<String>,
        /// Over HTTP: the client's address.
        #[serde(skip_serializing_if = "Option::is_none")]
        remote_addr: Option<String>,
        /// Over HTTP behind a trusted reverse proxy: the client it forwarded the request for (`X-Forwarded-For`).
        #[serde(skip_serializing_if = "Option::is_none")]
        forwarded_for: Option<String>,
        /// Over HTTP: the bearer token's id (`jti`), when it has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        token_id: Option<String>,
        /// The session the message came in, as in its `session` record and its calls' records: over stdio once
        /// the session has begun, over HTTP the one the request named.
        #[serde(skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        /// For a request refused past the transport (a merged handler's method): `stdio` or `http`, as a call's
        /// records say.
        #[serde(skip_serializing_if = "Option::is_none")]
        transport: Option<&'static str>,
        /// For a request refused past the transport: the client's name, as it gave it, shortened if long.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_name: Option<String>,
        /// For a request refused past the transport: the client's version, as it gave it, shortened if long.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_version: Option<String>,
    },
    /// A request of a merged handler's own method, declared to the tool set
    /// ([`ToolSetBuilder::plain_method`](crate::ToolSetBuilder::plain_method)) and admitted, was served by it: one
    /// record per request, written as it is answered (its answer is withheld if the record cannot be written), or as
    /// its request is dropped unanswered (`cancelled`). A refused one has its `message_rejected` record instead.
    MethodCall {
        /// The JSON-RPC id of the request.
        request_id: RequestId,
        /// The method (`resources/read`, `prompts/get`, a custom one), shortened if long.
        method: String,
        /// What the request named: a resource's URI (`resources/read`, `resources/subscribe`, ...), a prompt's name
        /// (`prompts/get`), the prompt or resource template completed (`completion/complete`), shortened if long.
        /// Nothing else the request carried is recorded: a prompt's arguments, a custom method's params.
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        /// `ok`; `error` (the handler answered an error); `panic` (it panicked, and was answered `-32603` with its
        /// message withheld); `cancelled` (its request was dropped before it answered).
        outcome: Outcome,
        /// The JSON-RPC error code answered, for an error or a panic.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        /// How long the handler took, in microseconds.
        duration_us: u64,
        /// The caller whose grant the method's scopes were checked against.
        caller: String,
        /// `stdio`, `http`, or `in-process` (`testing::ToolTester`), when the transport says.
        #[serde(skip_serializing_if = "Option::is_none")]
        transport: Option<&'static str>,
        /// The client's name, as it gave it (in `initialize`, or in the request's `_meta` under the stateless
        /// revision), shortened if long.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_name: Option<String>,
        /// The client's version, as it gave it, shortened if long.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_version: Option<String>,
        /// Over HTTP: the client's address.
        #[serde(skip_serializing_if = "Option::is_none")]
        remote_addr: Option<String>,
        /// Over HTTP behind a trusted reverse proxy: the client it forwarded the request for (`X-Forwarded-For`).
        #[serde(skip_serializing_if = "Option::is_none")]
        forwarded_for: Option<String>,
        /// Over HTTP: the bearer token's id (`jti`), when it has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        token_id: Option<String>,
        /// The session the request came in, as in its `session` record.
        #[serde(skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
    },
    /// An HTTP request was refused before reaching the protocol layer: no or an invalid token (401), a Host or
    /// Origin not allowed (403), a body too large (413), a timeout (408).
    HttpRejected {
        /// The HTTP status answered.
        status: u16,
        /// Why, in a word: `missing_token`, `invalid_token`, `host_not_allowed`, `origin_not_allowed`,
        /// `body_too_large`, `timeout`, ...; for the protocol layer's own refusals, by status: `bad_request`,
        /// `not_found` (an unknown session, another path), `method_not_allowed`, `not_acceptable`,
        /// `unsupported_media_type`.
        reason: &'static str,
        /// More precisely, when known: for a token, `expired`, `bad_signature`, `wrong_audience`, ...; for a
        /// missing one, `query_token_ignored` when a token came in the query string.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<&'static str>,
        /// The authenticated subject, when the request got that far.
        #[serde(skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// The HTTP method.
        method: String,
        /// The request path, without its query (which may hold a token).
        path: String,
        /// The client's address.
        #[serde(skip_serializing_if = "Option::is_none")]
        remote_addr: Option<String>,
        /// Over HTTP behind a trusted reverse proxy: the client it forwarded the request for (`X-Forwarded-For`).
        #[serde(skip_serializing_if = "Option::is_none")]
        forwarded_for: Option<String>,
        /// The session the request named (`Mcp-Session-Id`), as it named it: the server may never have issued it.
        #[serde(skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
    },
    /// A TLS handshake failed (mutual TLS): no client certificate, one not signed by the client CA, a timeout, or
    /// anything else that ended the handshake. No HTTP request was read.
    TlsRejected {
        /// Why, in a word: `no_client_certificate`, `untrusted_client_certificate`, `handshake_failed`,
        /// `handshake_timeout`.
        reason: &'static str,
        /// The TLS error, when there is one.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// The peer's address.
        peer: String,
    },
    /// A connection was closed before any request on it was answered: too many connections open at once (the
    /// newest was refused, or the oldest idle one made room), its request head or TLS handshake took too long, or
    /// its request head could not be parsed (answered `400` or `431` by the HTTP layer).
    ConnectionRejected {
        /// Why, in a word: `too_many_connections`, `evicted_idle`, `header_timeout`, `malformed_request`.
        reason: &'static str,
        /// The peer's address.
        peer: String,
    },
    /// Refusals of unauthenticated traffic past the rate at which they are written were counted instead: this
    /// record says how many of one kind were left out since the last one written. A flood cannot flood the trail.
    AuditSuppressed {
        /// The event left out: `http_rejected`, `tls_rejected`, `connection_rejected`.
        suppressed_event: &'static str,
        /// How many.
        count: u64,
        /// How many of each reason (the left-out records' `reason`): a flood of one kind of refusal cannot hide
        /// another in the count.
        reasons: std::collections::BTreeMap<&'static str, u64>,
    },
}

impl AuditEvent {
    /// The reason of a refusal of traffic (`http_rejected`, `tls_rejected`, `connection_rejected`).
    #[cfg(feature = "http")]
    pub(crate) fn rejection_reason(&self) -> Option<&'static str> {
        match self {
            AuditEvent::HttpRejected { reason, .. }
            | AuditEvent::TlsRejected { reason, .. }
            | AuditEvent::ConnectionRejected { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Bounds the values a client or peer could make long in the events that are not built bounded (a call's
    /// records are, as they are built): a protocol version, a request id, a path, a TLS error.
    pub(crate) fn bound_values(&mut self) {
        fn shorten(text: &mut String) {
            // One shortened where the event was made is left as it is: shortened again, it would say the first
            // cut's length instead of the value's (red-team finding).
            if text.len() > MAX_AUDIT_STRING && !is_shortened(text) {
                *text = shorten_str(text);
            }
        }
        fn shorten_id(id: &mut Option<RequestId>) {
            if let Some(id) = id {
                *id = bounded_request_id(id);
            }
        }
        match self {
            AuditEvent::ServerStop { reason } => shorten(reason),
            AuditEvent::Session {
                protocol_version,
                client_name,
                client_version,
                caller,
                remote_addr,
                token_id,
                session_id,
                ..
            } => {
                shorten(protocol_version);
                client_name
                    .iter_mut()
                    .chain(client_version)
                    .chain(caller)
                    .chain(remote_addr)
                    .chain(token_id)
                    .chain(session_id)
                    .for_each(shorten);
            }
            AuditEvent::SessionClosed {
                session_id, caller, ..
            } => {
                shorten(session_id);
                shorten(caller);
            }
            AuditEvent::VersionRejected {
                request_id,
                requested,
                supported,
                caller,
                remote_addr,
                token_id,
                session_id,
                ..
            } => {
                shorten_id(request_id);
                bound(requested);
                bound(supported);
                [caller, remote_addr, token_id, session_id]
                    .into_iter()
                    .flatten()
                    .for_each(shorten);
            }
            AuditEvent::MessageRejected {
                request_id,
                method,
                target,
                caller,
                remote_addr,
                token_id,
                session_id,
                client_name,
                client_version,
                ..
            } => {
                shorten_id(request_id);
                [
                    method,
                    target,
                    caller,
                    remote_addr,
                    token_id,
                    session_id,
                    client_name,
                    client_version,
                ]
                .into_iter()
                .flatten()
                .for_each(shorten);
            }
            AuditEvent::MethodCall {
                request_id,
                method,
                target,
                caller,
                client_name,
                client_version,
                remote_addr,
                token_id,
                session_id,
                ..
            } => {
                *request_id = bounded_request_id(request_id);
                shorten(method);
                shorten(caller);
                [
                    target,
                    client_name,
                    client_version,
                    remote_addr,
                    token_id,
                    session_id,
                ]
                .into_iter()
                .flatten()
                .for_each(shorten);
            }
            AuditEvent::HttpRejected {
                subject,
                method,
                path,
                remote_addr,
                session_id,
                ..
            } => {
                subject.iter_mut().for_each(shorten);
                remote_addr.iter_mut().for_each(shorten);
                session_id.iter_mut().for_each(shorten);
                shorten(method);
                shorten(path);
            }
            AuditEvent::TlsRejected { detail, peer, .. } => {
                detail.iter_mut().for_each(shorten);
                shorten(peer);
            }
            _ => {}
        }
    }

    /// The event's name, as in the record's `event` field.
    pub fn name(&self) -> &'static str {
        match self {
            AuditEvent::ToolCall(_) => "tool_call",
            AuditEvent::CallStarted(_) => "call_started",
            AuditEvent::ServerStart { .. } => "server_start",
            AuditEvent::ServerStop { .. } => "server_stop",
            AuditEvent::Session { .. } => "session",
            AuditEvent::SessionClosed { .. } => "session_closed",
            AuditEvent::VersionRejected { .. } => "version_rejected",
            AuditEvent::MessageRejected { .. } => "message_rejected",
            AuditEvent::MethodCall { .. } => "method_call",
            AuditEvent::HttpRejected { .. } => "http_rejected",
            AuditEvent::TlsRejected { .. } => "tls_rejected",
            AuditEvent::ConnectionRejected { .. } => "connection_rejected",
            AuditEvent::AuditSuppressed { .. } => "audit_suppressed",
            AuditEvent::ToolsLockMismatch { .. } => "tools_lock_mismatch",
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The handler returned a result.
    Ok,
    /// A rule refused the caller (a missing scope, an argument rule, a guard, a failing audit trail, a server
    /// shutting down): the handler did not run.
    Denied,
    /// Unknown tool, malformed or invalid arguments: the handler did not run.
    Invalid,
    /// A rate or concurrency limit refused the call: the handler did not run.
    Limited,
    /// The handler returned an error, or its result could not be audited.
    Error,
    /// The handler panicked.
    Panic,
    /// The client cancelled the call, its connection went away, or the server stopped it at shutdown: the handler
    /// was stopped.
    Cancelled,
    /// The handler ran past its time limit and was stopped.
    Timeout,
    /// The handler asked the client a question under the stateless revision (an elicitation, a sampling request):
    /// the answer is the question, and the client calls again with its answer, a call of its own.
    InputRequired,
}

impl Outcome {
    /// The name used in records: `ok`, `denied`, `invalid`, `limited`, `error`, `panic`, `cancelled`, `timeout`,
    /// `input_required`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Limited => "limited",
            Outcome::Error => "error",
            Outcome::Panic => "panic",
            Outcome::Cancelled => "cancelled",
            Outcome::Timeout => "timeout",
            Outcome::InputRequired => "input_required",
        }
    }
}

impl From<RefusalKind> for Outcome {
    fn from(kind: RefusalKind) -> Self {
        match kind {
            RefusalKind::Denied => Outcome::Denied,
            RefusalKind::Invalid => Outcome::Invalid,
            RefusalKind::Limited => Outcome::Limited,
            RefusalKind::Error => Outcome::Error,
            RefusalKind::Panic => Outcome::Panic,
            RefusalKind::Cancelled => Outcome::Cancelled,
            RefusalKind::Timeout => Outcome::Timeout,
        }
    }
}

/// What the transport knew about where a call came from, as recorded (each field only when known).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Origin {
    /// `stdio` or `http`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<&'static str>,
    /// The client's name, as it gave it (shortened if long).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The client's version, as it gave it (shortened if long).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// The peer's network address (written as `ip:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<std::net::SocketAddr>,
    /// Behind a trusted reverse proxy: the client it forwarded the request for (`X-Forwarded-For`), where
    /// `remote_addr` is the proxy's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_for: Option<std::net::IpAddr>,
    /// The session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Arc<str>>,
    /// The id of the caller's credential (a JWT's `jti`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<Arc<str>>,
}

/// The trace a call belongs to, as recorded, so audit records join the distributed trace: the caller's (W3C
/// `traceparent`), or with OpenTelemetry on (feature `otel`) the call's own span in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// The call's span (with OpenTelemetry on): 16 lowercase hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// The caller's span, when the caller sent one: 16 lowercase hex digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// Whether the trace is sampled (the W3C `sampled` flag): the call's span's, or without one the caller's.
    /// Not written into the record, which keeps its shape; the record's OpenTelemetry log carries it, so that a
    /// collector does not keep the log of a trace it dropped as if its spans had been exported.
    #[serde(skip)]
    pub sampled: bool,
}

impl TraceContext {
    /// Reads a W3C `traceparent` (`00-{trace-id}-{parent-id}-{flags}`); `None` unless it is valid (lowercase hex,
    /// ids not all zeros, version not `ff`; a later version may carry more after the flags, within 512 bytes in
    /// all).
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_TRACEPARENT_BYTES {
            return None;
        }
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let mut parts = text.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = hex(version, 2)
            && version != "ff"
            && hex(trace, 32)
            && hex(parent, 16)
            && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0')
            && parent.bytes().any(|b| b != b'0')
            && (version != "00" || parts.next().is_none());
        valid.then(|| TraceContext {
            trace_id: trace.to_owned(),
            span_id: None,
            parent_span_id: Some(parent.to_owned()),
            // The low bit of the flags; a later version keeps its meaning.
            sampled: u8::from_str_radix(flags, 16).is_ok_and(|flags| flags & 1 == 1),
        })
    }
}

/// The longest `traceparent` read (version `00` is 55 bytes; a later version may add fields, not kilobytes).
pub(crate) const MAX_TRACEPARENT_BYTES: usize = 512;

/// The longest `tracestate` kept (W3C: 32 members of at most 256 bytes each in theory; 512 bytes is what
/// propagators are asked to keep at least); a longer one is dropped whole.
#[cfg_attr(not(any(feature = "http", feature = "otel")), allow(dead_code))]
pub(crate) const MAX_TRACESTATE_BYTES: usize = 1024;

/// The record written before the handler of a tool not marked `read_only` runs: if it cannot be written, the
/// handler does not run, so no effect happens without a record. Its `tool_call` record follows, with the same
/// `call_id`.
#[derive(Debug, Clone, Serialize)]
pub struct CallStartedEvent {
    /// The call's unique id.
    pub call_id: CallId,
    /// The JSON-RPC id of the request.
    pub request_id: RequestId,
    /// The tool's name.
    pub tool: Arc<str>,
    /// The caller's identity (shortened if long).
    pub caller: Arc<str>,
    /// The caller's attributes (a tenant, say), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_attributes: Option<Arc<std::collections::BTreeMap<String, String>>>,
    /// The arguments, redacted and bounded as in the `tool_call` record.
    pub inputs: Arc<Value>,
    /// Where the call came from.
    #[serde(flatten)]
    pub origin: Arc<Origin>,
    /// The trace the call belongs to: the caller's, when it sent one, or the call's span's (OpenTelemetry).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
}

/// A record as one JSON text (no newline), for the sinks that write lines. The buffer starts at the size of a
/// typical call's record with the chain's members, so it is allocated once rather than grown four or five times.
pub(crate) fn record_line(record: &AuditRecord) -> serde_json::Result<Vec<u8>> {
    safe_json_line(record, 1024)
}

/// `value` as one JSON text whose strings hold no character that drives a terminal or hides text from a reader
/// (see [`SafeText`]).
pub(crate) fn safe_json_line(
    value: &impl Serialize,
    capacity: usize,
) -> serde_json::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(capacity);
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut line, SafeText,
    ))?;
    Ok(line)
}

/// JSON written compactly as `serde_json` writes it, except that inside strings DEL, the C1 controls (U+009B is a
/// one-byte CSI), format characters (bidirectional overrides, zero-width and tag characters), line and paragraph
/// separators, variation selectors and the other invisible characters are written as `\u` escapes, which a JSON
/// reader decodes to the same text. JSON escapes only the C0 controls: a caller's client name, request id or tool
/// name holding the others reached the audit file, and standard error, as they were, for `tail` or `less` to
/// act on or show in another order (red-team finding). Other text (accents, emoji, scripts) is written as it is.
struct SafeText;

impl serde_json::ser::Formatter for SafeText {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        // ASCII but DEL, the common case, as it is.
        if !fragment.bytes().any(|byte| byte >= 0x7f) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            let unsafe_here = c == '\u{7f}'
                || (!c.is_ascii()
                    && (crate::text::hazard(c).is_some()
                        || crate::text::format_or_separator(c)
                        || crate::text::invisible(c)
                        || crate::text::variation_selector(c)));
            if unsafe_here {
                writer.write_all(&fragment.as_bytes()[start..at])?;
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                start = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// The record of one `tools/call`.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCallEvent {
    /// The call's unique id (also on its `call_started` record and its `tracing` span).
    pub call_id: CallId,
    /// The JSON-RPC id of the request.
    pub request_id: RequestId,
    /// The tool name as the caller sent it (shortened if long).
    pub tool: Arc<str>,
    /// The scopes the tool requires (empty for an unknown tool).
    pub scopes: Arc<[Scope]>,
    /// The caller's identity (shortened if long).
    pub caller: Arc<str>,
    /// The caller's attributes (a tenant, say), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_attributes: Option<Arc<std::collections::BTreeMap<String, String>>>,
    /// How the call ended.
    pub outcome: Outcome,
    /// `true` exactly when `outcome` is `ok`.
    pub ok: bool,
    /// The arguments, redacted and bounded by [`redact_inputs`].
    pub inputs: Arc<Value>,
    /// The stable code of a failure (`missing_scope:files.write`, `invalid_input`, ...; shortened if long).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Arc<str>>,
    /// Time from receipt to result, in microseconds.
    pub duration_us: u64,
    /// Where the call came from.
    #[serde(flatten)]
    pub origin: Arc<Origin>,
    /// The trace the call belongs to: the caller's, when it sent one, or the call's span's (OpenTelemetry).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
    /// Fields the handler added ([`CallContext::audit_field`](crate::CallContext::audit_field)), bounded like
    /// the arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Arc<Value>>,
}

/// Object keys and array items kept per level of a recorded value; the rest is summarised.
pub const MAX_AUDIT_ITEMS: usize = 64;
/// About the most bytes of JSON a record's `inputs` (or `fields`) take; past it, values are summarised.
pub const MAX_AUDIT_VALUE_BYTES: usize = 16 * 1024;

/// The arguments as they go into an audit record: every top-level argument named in `redact` replaced by
/// `{"redacted": true, "bytes": N}` (N is the UTF-8 length of a string, or of the JSON text of any other value),
/// and everything bounded: strings over [`MAX_AUDIT_STRING`] bytes shortened with a note of their length, arrays
/// and objects cut to [`MAX_AUDIT_ITEMS`] entries with a note of how many there were, nesting cut off deep down,
/// and values past about [`MAX_AUDIT_VALUE_BYTES`] in all replaced by a note of their size.
pub fn redact_inputs(args: Option<&JsonObject>, redact: &[&str]) -> Value {
    let args = args
        .cloned()
        .map_or_else(|| Value::Object(JsonObject::new()), Value::Object);
    redact_owned(args, |key| redact.contains(&key))
}

/// The arguments with the top-level values whose keys satisfy `redacted` replaced by length markers, and
/// everything bounded; done in place, so a call's arguments are not copied for its record.
pub(crate) fn redact_owned(args: Value, redacted: impl Fn(&str) -> bool) -> Value {
    let Value::Object(mut map) = args else {
        return Value::Object(JsonObject::new());
    };
    // One pass redacts and bounds (a record's arguments are bounded on every call); keys are only rewritten
    // (rarely) when there are too many, one is too long, or the budget ran out before the last. A key dropped then
    // takes its value with it, redacted or not.
    let mut budget = MAX_AUDIT_VALUE_BYTES + KEY_RESERVE;
    let total = map.len();
    let mut kept = 0;
    let mut long_key = false;
    for (key, value) in map.iter_mut() {
        if budget == 0 || kept == MAX_AUDIT_ITEMS {
            break;
        }
        kept += 1;
        long_key |= key.len() > MAX_AUDIT_STRING;
        budget = budget.saturating_sub(escaped_len(key).min(MAX_AUDIT_STRING) + 3);
        if redacted(key) {
            let bytes = match &*value {
                Value::String(s) => s.len(),
                other => crate::text::json_len(other),
            };
            *value = serde_json::json!({ "redacted": true, "bytes": bytes });
            budget = budget.saturating_sub(40);
        } else {
            bound_in_place(value, 1, &mut budget);
        }
    }
    if long_key || kept < total {
        cut_object(&mut map, kept, total);
    }
    Value::Object(map)
}

/// Bytes of a record's budget kept for the keys and summaries of what comes after the values' share is spent:
/// past it values are summarised (`[string of N bytes]`), and once this is spent too, the remaining keys of an
/// object are dropped, with a note of how many it had.
const KEY_RESERVE: usize = 4 * 1024;

/// The length of a string as JSON text writes it, quotes aside: a control character takes up to six bytes
/// (`\u0001`), a quote or backslash two.
#[inline]
fn escaped_len(s: &str) -> usize {
    // Most strings have nothing to escape: a quick look eight bytes at a time (every record's strings pass here),
    // the exact sum only when there is something.
    if !has_escapes(s.as_bytes()) {
        return s.len();
    }
    s.len()
        + s.bytes()
            .map(|b| match b {
                b'\n' | b'\r' | b'\t' | 0x08 | 0x0c | b'"' | b'\\' => 1,
                0..=0x1f => 5,
                _ => 0,
            })
            .sum::<usize>()
}

/// Whether JSON text escapes any of these bytes (a control character, a quote, a backslash). Eight at a time: a
/// word's byte is below `n` when subtracting `n` from it borrows into its high bit while its own high bit is clear,
/// and equal to `c` when it is below 1 after `c` is xored out.
#[inline]
fn has_escapes(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS != 0;
    let chunks = bytes.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if below(word, 0x20)
            || below(word ^ (ONES * u64::from(b'"')), 1)
            || below(word ^ (ONES * u64::from(b'\\')), 1)
        {
            return true;
        }
    }
    rest.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Bounds a value for a record, in place: see [`redact_inputs`].
pub(crate) fn bound(value: &mut Value) {
    let mut budget = MAX_AUDIT_VALUE_BYTES + KEY_RESERVE;
    bound_in_place(value, 0, &mut budget);
}

fn summary(value: &Value) -> Value {
    let what = match value {
        Value::Array(items) => format!("[array of {} items]", items.len()),
        Value::Object(map) => format!("[object of {} keys]", map.len()),
        Value::String(s) => format!("[string of {} bytes]", s.len()),
        _ => "[value]".to_owned(),
    };
    Value::String(what)
}

fn bound_in_place(value: &mut Value, depth: usize, budget: &mut usize) {
    if *budget <= KEY_RESERVE {
        if !matches!(value, Value::Null | Value::Bool(_) | Value::Number(_)) {
            *value = summary(value);
        }
        let written = match value {
            Value::String(s) => s.len() + 2,
            _ => 8,
        };
        *budget = budget.saturating_sub(written);
        return;
    }
    match value {
        Value::String(s) => {
            if s.len() > MAX_AUDIT_STRING {
                *s = shorten_str(s);
            }
            *budget = budget.saturating_sub(escaped_len(s) + 2);
        }
        Value::Array(_) | Value::Object(_) if depth >= MAX_AUDIT_DEPTH => {
            *value = Value::String("[nested too deep]".into());
            *budget = budget.saturating_sub(20);
        }
        Value::Array(items) => {
            let total = items.len();
            if total > MAX_AUDIT_ITEMS {
                items.truncate(MAX_AUDIT_ITEMS);
                items.push(Value::String(format!("…[{total} items in all]")));
            }
            *budget = budget.saturating_sub(2);
            for item in items.iter_mut() {
                bound_in_place(item, depth + 1, budget);
            }
        }
        Value::Object(map) => {
            let total = map.len();
            *budget = budget.saturating_sub(2);
            let mut kept = 0;
            let mut long_key = false;
            for (key, item) in map.iter_mut() {
                if *budget == 0 || kept == MAX_AUDIT_ITEMS {
                    break;
                }
                kept += 1;
                long_key |= key.len() > MAX_AUDIT_STRING;
                *budget = budget.saturating_sub(escaped_len(key).min(MAX_AUDIT_STRING) + 3);
                bound_in_place(item, depth + 1, budget);
            }
            if long_key || kept < total {
                cut_object(map, kept, total);
            }
        }
        _ => *budget = budget.saturating_sub(8),
    }
}

/// Keeps the first `kept` keys (at most [`MAX_AUDIT_ITEMS`]), shortened, and notes how many there were when some
/// are left out: keys count towards a record's size as values do (up to a kilobyte each), so they are not kept past
/// the budget either.
fn cut_object(map: &mut JsonObject, kept: usize, total: usize) {
    let kept = kept.min(MAX_AUDIT_ITEMS);
    *map = std::mem::take(map)
        .into_iter()
        .take(kept)
        .map(|(k, v)| (shorten_str(&k), v))
        .collect();
    if total > kept {
        map.insert("…".into(), Value::String(format!("[{total} keys in all]")));
    }
}

/// A request id as recorded: a string id over [`MAX_AUDIT_STRING`] bytes shortened, like any string from a client.
pub(crate) fn bounded_request_id(id: &RequestId) -> RequestId {
    match id {
        RequestId::String(text) if text.len() > MAX_AUDIT_STRING => {
            RequestId::String(Arc::from(shorten_str(text)))
        }
        other => other.clone(),
    }
}

/// Whether `text` is what [`shorten_str`] makes of a longer value: its first [`MAX_AUDIT_STRING`] bytes (or a few
/// less, at a character's boundary), then `…[N bytes in all, sha-256 D]`. Bounded either way.
fn is_shortened(text: &str) -> bool {
    let Some(at) = text.rfind("…[") else {
        return false;
    };
    if text.len() > MAX_AUDIT_STRING + SHORTENED_NOTE_MAX
        || !(MAX_AUDIT_STRING - 3..=MAX_AUDIT_STRING).contains(&at)
    {
        return false;
    }
    let note = &text[at + "…[".len()..];
    let Some((length, rest)) = note.split_once(" bytes in all, sha-256 ") else {
        return false;
    };
    let Some(digest) = rest.strip_suffix(']') else {
        return false;
    };
    !length.is_empty()
        && length.bytes().all(|b| b.is_ascii_digit())
        && digest.len() == 2 * SHORTENED_DIGEST_BYTES
        && digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// How many bytes of a value's SHA-256 a shortened value shows (128 bits: two values cannot be made to share it).
const SHORTENED_DIGEST_BYTES: usize = 16;

/// The longest note [`shorten_str`] adds after the bytes it keeps.
const SHORTENED_NOTE_MAX: usize = 80;

/// A value over [`MAX_AUDIT_STRING`] bytes as recorded: its first bytes, its length and a digest of the whole
/// (red-team finding: two token subjects that differed only past the cut were one caller in the records).
pub(crate) fn shorten_str(s: &str) -> String {
    use sha2::Digest as _;
    if s.len() <= MAX_AUDIT_STRING {
        return s.to_owned();
    }
    let mut cut = MAX_AUDIT_STRING;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = sha2::Sha256::digest(s.as_bytes());
    let mut hex = [0u8; 2 * SHORTENED_DIGEST_BYTES];
    let hex = base16ct::lower::encode_str(&digest[..SHORTENED_DIGEST_BYTES], &mut hex)
        .unwrap_or_default();
    format!("{}…[{} bytes in all, sha-256 {hex}]", &s[..cut], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> JsonObject {
        v.as_object().unwrap().clone()
    }

    /// Red-team finding: two token subjects of 1,108 bytes that differed only past the first 1,024 were recorded as
    /// one caller, in every record of both (a destructive call of one could not be told from the other's). A
    /// shortened value carries a digest of the whole, so values that differ anywhere are told apart.
    #[test]
    fn long_values_that_differ_only_past_the_cut_are_told_apart() {
        let mallory = format!("{}-mallory", "u".repeat(1100));
        let victim = format!("{}-victim1", "u".repeat(1100));
        let (a, b) = (shorten_str(&mallory), shorten_str(&victim));
        assert_ne!(a, b);
        assert_eq!(shorten_str(&mallory), a, "the same value, the same text");
        for shown in [&a, &b] {
            assert!(shown.len() <= MAX_AUDIT_STRING + 80, "{}", shown.len());
            assert!(shown.contains("[1108 bytes in all, sha-256 "), "{shown}");
            assert!(is_shortened(shown), "{shown}");
        }
        // One not shortened by this function is not taken for one that was.
        let forged = format!(
            "{}…[1108 bytes in all, sha-256 0]",
            "u".repeat(MAX_AUDIT_STRING)
        );
        assert!(!is_shortened(&forged));
    }

    /// Red-team finding: a value shortened where the event was made (a 60,000-byte session id) was shortened again
    /// as the record was written, and said `[1047 bytes in all]`: the first cut's length, not the value's.
    #[test]
    fn a_value_shortened_once_keeps_its_length() {
        use crate::audit::{Audit, MemorySink};
        let sink = Arc::new(MemorySink::new());
        let audit = Audit::new(
            "test",
            vec![sink.clone() as Arc<dyn crate::audit::AuditSink>],
        );
        let long = "A".repeat(60_000);
        audit
            .record(AuditEvent::SessionClosed {
                reason: "deleted",
                session_id: shorten_str(&long),
                caller: shorten_str(&long),
            })
            .unwrap();
        let written = sink.records().pop().unwrap().to_string();
        assert_eq!(
            written.matches("[60000 bytes in all, sha-256 ").count(),
            2,
            "{written}"
        );
    }

    #[test]
    fn what_a_client_sends_outside_a_call_is_bounded_in_every_record() {
        use crate::audit::{Audit, MemorySink};
        let sink = Arc::new(MemorySink::new());
        let audit = Audit::new(
            "test",
            vec![sink.clone() as Arc<dyn crate::audit::AuditSink>],
        );
        let long = "v".repeat(200_000);
        let id = || Some(RequestId::String(Arc::from(long.as_str())));
        let events = [
            AuditEvent::Session {
                lifecycle: "initialize",
                protocol_version: long.clone(),
                client_name: Some(long.clone()),
                client_version: Some(long.clone()),
                caller: Some(long.clone()),
                remote_addr: None,
                forwarded_for: None,
                token_id: Some(long.clone()),
                session_id: Some(long.clone()),
            },
            AuditEvent::SessionClosed {
                reason: "evicted",
                session_id: long.clone(),
                caller: long.clone(),
            },
            AuditEvent::VersionRejected {
                request_id: id(),
                requested: Value::String(long.clone()),
                supported: Value::Array(vec![Value::String(long.clone()); 100]),
                caller: Some(long.clone()),
                remote_addr: None,
                forwarded_for: None,
                token_id: Some(long.clone()),
                session_id: Some(long.clone()),
            },
            AuditEvent::MethodCall {
                request_id: id().unwrap(),
                method: long.clone(),
                target: Some(long.clone()),
                outcome: Outcome::Ok,
                code: None,
                duration_us: 1,
                caller: long.clone(),
                transport: Some("stdio"),
                client_name: Some(long.clone()),
                client_version: Some(long.clone()),
                remote_addr: Some(long.clone()),
                forwarded_for: None,
                token_id: Some(long.clone()),
                session_id: Some(long.clone()),
            },
            AuditEvent::MessageRejected {
                request_id: id(),
                method: None,
                target: None,
                reason: "invalid_request",
                code: None,
                bytes: 400_000,
                caller: Some(long.clone()),
                remote_addr: Some(long.clone()),
                forwarded_for: None,
                token_id: Some(long.clone()),
                session_id: Some(long.clone()),
                transport: None,
                client_name: None,
                client_version: None,
            },
            AuditEvent::HttpRejected {
                status: 404,
                reason: "not_found",
                detail: None,
                subject: Some(long.clone()),
                method: long.clone(),
                path: long.clone(),
                remote_addr: Some(long.clone()),
                forwarded_for: None,
                session_id: Some(long.clone()),
            },
            AuditEvent::TlsRejected {
                reason: "handshake_failed",
                detail: Some(long.clone()),
                peer: long.clone(),
            },
            AuditEvent::ServerStop {
                reason: long.clone(),
            },
        ];
        for event in events {
            let name = event.name();
            audit.record(event).unwrap();
            let written = sink.records().pop().unwrap().to_string();
            assert!(
                written.len() < MAX_AUDIT_VALUE_BYTES + 8 * MAX_AUDIT_STRING,
                "{name}: {} bytes",
                written.len()
            );
            assert!(written.contains("bytes in all"), "{name}: {written}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |secs: u64, micros: u32| {
            Timestamp(UNIX_EPOCH + Duration::new(secs, micros * 1000)).to_string()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(at(1_795_512_973, 151_186), "2026-11-24T09:36:13.151186Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
    }

    #[test]
    fn redacted_values_become_length_markers() {
        let args = obj(json!({"filename": "a.txt", "content": "top secret", "n": [1, 2]}));
        let out = redact_inputs(Some(&args), &["content", "n"]);
        assert_eq!(
            out,
            json!({
                "filename": "a.txt",
                "content": {"redacted": true, "bytes": 10},
                "n": {"redacted": true, "bytes": 5},
            })
        );
        assert!(!out.to_string().contains("top secret"));
    }

    #[test]
    fn long_strings_are_shortened_with_their_length() {
        let long = "é".repeat(MAX_AUDIT_STRING);
        let out = redact_inputs(Some(&obj(json!({ "s": long }))), &[]);
        let shown = out["s"].as_str().unwrap();
        assert!(
            shown.len() < MAX_AUDIT_STRING + SHORTENED_NOTE_MAX,
            "{}",
            shown.len()
        );
        assert!(shown.contains(&format!("[{} bytes in all, sha-256 ", 2 * MAX_AUDIT_STRING)));
    }

    #[test]
    fn arrays_objects_and_the_whole_are_bounded() {
        let big: Vec<u32> = (0..4_000_000).collect();
        let wide: JsonObject = (0..10_000).map(|i| (format!("k{i}"), json!(i))).collect();
        let many: Vec<String> = (0..60).map(|_| "x".repeat(1000)).collect();
        let args = obj(json!({ "big": big, "wide": wide, "many": many, "after": "tail" }));
        let out = redact_inputs(Some(&args), &[]);
        let text = out.to_string();
        assert!(text.len() < 2 * MAX_AUDIT_VALUE_BYTES, "{}", text.len());
        assert!(text.contains("[4000000 items in all]"), "{text:.300}");
        // Past the byte budget the wide object is summarised whole; either way its size is told.
        assert!(text.contains("10000 keys"), "{text:.300}");
        assert_eq!(out["big"].as_array().unwrap().len(), MAX_AUDIT_ITEMS + 1);
        assert!(text.contains("[string of 1000 bytes]"));
    }

    /// Keys count towards the budget as values do, and so does what JSON makes of a string: a chain of objects
    /// each holding 63 kilobyte keys once kept every key (a 975 KB argument, a 975 KB record), and kilobyte strings
    /// of control characters were charged a sixth of what they take once written.
    #[test]
    fn keys_and_escapes_count_towards_the_bound() {
        let mut level = json!(null);
        for depth in 0..15 {
            let mut map = JsonObject::new();
            map.insert("a".into(), level);
            for i in 0..63 {
                map.insert(format!("{depth:02}{i:02}{}", "k".repeat(1020)), json!(null));
            }
            level = Value::Object(map);
        }
        let args = obj(json!({ "filename": level }));
        let text = redact_inputs(Some(&args), &[]).to_string();
        assert!(text.len() < 2 * MAX_AUDIT_VALUE_BYTES, "{}", text.len());
        assert!(text.contains("64 keys in all"), "{text:.300}");

        let controls: Vec<String> = (0..64).map(|_| "\u{1}".repeat(1024)).collect();
        let args = obj(json!({ "lines": controls }));
        let text = redact_inputs(Some(&args), &[]).to_string();
        assert!(text.len() < 2 * MAX_AUDIT_VALUE_BYTES, "{}", text.len());
        // A redacted argument is redacted whatever the budget left.
        let args =
            obj(json!({ "a_first": "x".repeat(4 << 20), "b": controls, "secret": "hunter2" }));
        let text = redact_inputs(Some(&args), &["secret"]).to_string();
        assert!(!text.contains("hunter2"), "{text:.300}");
        assert!(text.len() < 2 * MAX_AUDIT_VALUE_BYTES, "{}", text.len());
    }

    #[test]
    fn escapes_are_found_at_every_place_in_a_word() {
        for len in 0..24 {
            let plain = "a".repeat(len);
            assert!(!super::has_escapes(plain.as_bytes()));
            assert_eq!(super::escaped_len(&plain), len);
            for at in 0..len {
                for (special, extra) in [(0x01u8, 5), (b'\n', 1), (b'"', 1), (b'\\', 1), (0x1f, 5)]
                {
                    let mut bytes = plain.clone().into_bytes();
                    bytes[at] = special;
                    let text = String::from_utf8(bytes).unwrap();
                    assert!(super::has_escapes(text.as_bytes()), "{text:?}");
                    assert_eq!(super::escaped_len(&text), len + extra, "{text:?}");
                    assert_eq!(
                        super::escaped_len(&text) + 2,
                        serde_json::to_string(&text).unwrap().len()
                    );
                }
            }
        }
        // Bytes near the ones looked for, and UTF-8 (high bits set), are not escapes.
        for text in ["!#[]]\u{7f} é ✓ \u{80}", "\u{20}\u{21}\u{5b}\u{5d}"] {
            assert!(!super::has_escapes(text.as_bytes()), "{text:?}");
        }
    }

    #[test]
    fn deep_nesting_is_cut_off() {
        let mut v = json!("leaf");
        for _ in 0..100 {
            v = json!([v]);
        }
        let out = redact_inputs(Some(&obj(json!({ "deep": v }))), &[]);
        assert!(out.to_string().contains("[nested too deep]"));
    }

    #[test]
    fn a_traceparent_is_read_only_when_valid() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = super::TraceContext::parse(valid).unwrap();
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(trace.sampled);
        // Only the low bit says sampled; the rest of the byte is for later flags.
        for (flags, sampled) in [("00", false), ("02", false), ("03", true), ("ff", true)] {
            let other = format!("{}{flags}", &valid[..valid.len() - 2]);
            assert_eq!(
                super::TraceContext::parse(&other).map(|t| t.sampled),
                Some(sampled),
                "{other}"
            );
        }
        // The flag is not part of the record.
        assert_eq!(
            serde_json::to_value(&trace).unwrap(),
            json!({ "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "parent_span_id": "00f067aa0ba902b7" })
        );
        // A later version may carry more after the flags.
        assert!(super::TraceContext::parse(&format!("01{}-extra", &valid[2..])).is_some());
        for invalid in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(super::TraceContext::parse(invalid), None, "{invalid}");
        }
    }
}
