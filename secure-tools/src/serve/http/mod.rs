//! The streamable HTTP runner: a tool set served over MCP streamable HTTP (rmcp's server transport) at `/mcp`, in
//! axum, behind the checks a server reachable over a network needs.
//!
//! Connections are bounded before any request is read (see the `connections` module): a header-read timeout, a
//! cap on open connections under which the oldest idle one makes room for a new one, and a graceful stop. Records
//! of refused traffic are throttled (see [`DEFAULT_REJECTION_RECORDS`]); tool calls never are.
//!
//! Every request passes, in order:
//! 1. the Host check (DNS-rebinding protection; loopback names by default) and the Origin check (a browser page
//!    from anywhere but loopback or the allowlist is refused), each `403`;
//! 2. the body limit (`Content-Length` over the limit is `413` at once; a chunked body over it is cut off by rmcp
//!    with `413`);
//! 3. the request timeout, which bounds the time until the response *head*: a JSON answer (the default, stateless
//!    JSON mode) must be ready within it, while an SSE stream, whose head is sent at once, is never cut off
//!    mid-stream;
//! 4. on `/mcp`, bearer authentication (see [`BearerAuth`]): `401` with a challenge naming the protected resource
//!    metadata, which is served unauthenticated at `/.well-known/oauth-protected-resource` (and at its
//!    path-suffixed variant `/.well-known/oauth-protected-resource/mcp`). With mutual TLS instead (feature
//!    `mtls`, `HttpConfig::mtls`), the server speaks HTTPS only, the client certificate was verified during the
//!    handshake, and its mapped caller is used; an unmapped certificate is `403` (see the `serve::http::mtls` module).
//!
//! Each refusal is audited as an `http_rejected` record. A valid token short of a tool's scope reaches the
//! pipeline, which refuses the call (`missing_scope:...`) and writes its one `tool_call` record; the HTTP answer
//! then becomes `403` with an `insufficient_scope` challenge (MCP authorization, Scope Challenge Handling) whose
//! body is a JSON-RPC error carrying the refusal's code (see [`INSUFFICIENT_SCOPE_CODE`]). In session mode (SSE
//! answers) the head is gone before the tool runs, so there the refusal is the tool result alone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use rmcp::model::Implementation;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

pub mod bearer;
mod challenge;
mod connections;
#[cfg(feature = "mtls")]
pub mod mtls;
mod rejections;

pub use bearer::{BearerAuth, KeyError, TokenError, VerificationKeys, VerifiedToken};
pub use challenge::METADATA_PATH;
pub use connections::{DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
pub use rejections::DEFAULT_REJECTION_RECORDS;

use self::connections::{ConnectionLimits, Security};
use self::rejections::Rejections;

use self::challenge::{Credential, insufficient_scope_challenge, unauthorized_challenge};
use super::stdio::Signals;
use super::{Listing, SecureServer, VersionPolicy};
use crate::audit::{AuditEvent, shorten_str};
use crate::call::{Caller, Connection, REFUSAL_META_KEY, RefusalNotice};
use crate::scope::Grant;
use crate::tool::DefinitionError;
use crate::toolset::{ToolSet, ToolSetBuilder};

/// The largest request body accepted by default: 4 MiB.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The default request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How the HTTP runner is set up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// The address to listen on (default `127.0.0.1:8080`; port 0 picks a free port).
    pub bind: SocketAddr,
    /// Bearer authentication; without it every request is served as an anonymous caller holding
    /// `anonymous_grant`, which suits a loopback-only development setup and nothing else.
    pub auth: Option<BearerAuth>,
    /// Mutual TLS instead of bearer tokens: serve HTTPS, require client certificates from the configured CA, and
    /// take each caller from its certificate (see the `serve::http::mtls` module). Exclusive with `auth`.
    #[cfg(feature = "mtls")]
    pub mtls: Option<mtls::MtlsAuth>,
    /// The grant of unauthenticated callers when `auth` is `None` (default: nothing).
    pub anonymous_grant: Grant,
    /// Accepted `Host` values: names, or `name:port` (default: loopback names). Empty turns the check off.
    pub allowed_hosts: Vec<String>,
    /// Accepted browser origins besides loopback ones, as `scheme://host[:port]` (`:*` for any port).
    pub allowed_origins: Vec<String>,
    /// The largest request body, in bytes (default 4 MiB); past it, `413`.
    pub max_request_body_bytes: usize,
    /// Time allowed until the response head (default 30 s); past it, `408`.
    pub request_timeout: Duration,
    /// Time a client has to send a request head, on a new connection or an idle one (default 10 s); past it, the
    /// connection is closed.
    pub header_read_timeout: Duration,
    /// How many connections may be open at once (default 1024, and never more than the descriptor limit
    /// leaves); past it, the oldest idle connection makes room, or the new one is refused.
    pub max_connections: usize,
    /// How many records of refused requests, failed handshakes and closed connections are written before the
    /// rest are counted instead (default [`DEFAULT_REJECTION_RECORDS`]: 50 at once, then 10 a second); `None`
    /// writes every one.
    pub rejection_records: Option<crate::call::Rate>,
    /// Stateful sessions with SSE answers (rmcp's legacy session mode) instead of the default stateless JSON
    /// answers.
    pub sessions: bool,
    /// The id stamped on audit records, if set.
    pub server_id: Option<String>,
    /// Append audit records to this file instead of writing them to standard error.
    pub audit_log: Option<PathBuf>,
    /// The protocol versions accepted.
    pub versions: VersionPolicy,
    /// Which tools `tools/list` shows.
    pub listing: Listing,
    /// The name and version announced to clients.
    pub server_info: Implementation,
    /// Cancelling it stops the server gracefully, as SIGTERM and SIGINT do.
    pub cancellation: CancellationToken,
    /// How long calls still running at shutdown may take to finish before they are stopped (default 10 s).
    pub shutdown_grace: Duration,
    /// Limits on every call: rate, timeout, concurrency.
    pub limits: super::CallLimits,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            auth: None,
            #[cfg(feature = "mtls")]
            mtls: None,
            anonymous_grant: Grant::none(),
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: Vec::new(),
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            rejection_records: Some(DEFAULT_REJECTION_RECORDS),
            sessions: false,
            server_id: None,
            audit_log: None,
            versions: VersionPolicy::default(),
            listing: Listing::default(),
            server_info: Implementation::new("secure-tools", env!("CARGO_PKG_VERSION")),
            cancellation: CancellationToken::new(),
            shutdown_grace: super::stdio::DEFAULT_SHUTDOWN_GRACE,
            limits: super::CallLimits::default(),
        }
    }
}

/// Why the HTTP runner could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The address could not be bound, or serving failed.
    #[error("http: {0}")]
    Io(#[from] std::io::Error),
    /// The audit log cannot be opened.
    #[error("cannot open the audit log {path}: {source}")]
    AuditLog {
        /// The path.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// A tool is not valid.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// The audit trail could not be written or flushed.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The configuration is contradictory.
    #[error("http: {0}")]
    Config(&'static str),
}

impl HttpConfig {
    /// Builds the tool set and serves it until SIGTERM, SIGINT or the cancellation token; then flushes the audit
    /// trail and returns. Prints `secure-tools: serving MCP over HTTP at http://ADDR/mcp` on standard error once
    /// listening (with mutual TLS, `secure-tools: serving MCP over HTTPS at https://ADDR/mcp (mutual TLS)`).
    pub async fn serve<S: Send + Sync + 'static>(
        self,
        builder: ToolSetBuilder<S>,
    ) -> Result<(), HttpError> {
        let builder = builder
            .runner_settings(
                self.server_id.as_deref(),
                self.limits,
                self.audit_log.as_deref(),
            )
            .map_err(|source| HttpError::AuditLog {
                path: self.audit_log.clone().unwrap_or_default(),
                source,
            })?;
        #[cfg(feature = "mtls")]
        if self.mtls.is_some() && self.auth.is_some() {
            return Err(HttpError::Config(
                "give bearer authentication or mutual TLS, not both",
            ));
        }
        let tools = builder.build()?;
        let audit = tools.audit().clone();
        if self.auth.is_none() && !self.has_mtls() {
            eprintln!(
                "secure-tools: warning: HTTP without bearer authentication: every caller is anonymous, holding \
                 only the anonymous grant"
            );
        }
        let listener = tokio::net::TcpListener::bind(self.bind).await?;
        let address = listener.local_addr()?;
        audit.record(AuditEvent::ServerStart {
            transport: "http",
            tools: tools.definitions().map(|d| d.name().to_owned()).collect(),
            grant: None,
            protocol_versions: self
                .versions
                .accepted()
                .iter()
                .map(|v| v.to_string())
                .collect(),
        })?;
        // The server stops when `stop` is cancelled: after a signal or the configured token, once the calls in flight
        // have finished (or the grace period is over).
        let stop = CancellationToken::new();
        let cancellation = stop.clone();
        let rejections = Arc::new(Rejections::new(audit.clone(), self.rejection_records));
        let app = {
            let mut routed = self.clone();
            routed.cancellation = stop.clone();
            router_with(tools.clone(), &routed, rejections.clone())
        };

        let reason = Arc::new(Mutex::new("cancelled"));
        let watcher = {
            let reason = reason.clone();
            let requested = self.cancellation.clone();
            let stop = stop.clone();
            let tools = tools.clone();
            let grace = self.shutdown_grace;
            tokio::spawn(async move {
                let mut signals = Signals::new();
                tokio::select! {
                    signal = signals.next() => {
                        *reason.lock().unwrap_or_else(PoisonError::into_inner) = signal;
                    }
                    _ = requested.cancelled() => {}
                    // The server ended by itself (it failed).
                    _ = stop.cancelled() => return,
                }
                tools.shutdown(grace).await;
                stop.cancel();
            })
        };
        let security = match self.mtls_auth() {
            #[cfg(feature = "mtls")]
            Some(mtls) => {
                eprintln!(
                    "secure-tools: serving MCP over HTTPS at https://{address}/mcp (mutual TLS)"
                );
                Security::MutualTls(mtls)
            }
            _ => {
                eprintln!("secure-tools: serving MCP over HTTP at http://{address}/mcp");
                Security::Plain
            }
        };
        let limits = ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
        };
        let served = connections::serve(
            listener,
            security,
            app,
            limits,
            rejections.clone(),
            cancellation.clone(),
        )
        .await;
        rejections.flush_counts();
        cancellation.cancel();
        let _ = watcher.await;
        // Every call has its record before the stop record.
        tools.shutdown(Duration::ZERO).await;
        let reason = if served.is_err() {
            "error"
        } else {
            *reason.lock().unwrap_or_else(PoisonError::into_inner)
        };
        audit.flush()?;
        audit.record(AuditEvent::ServerStop {
            reason: reason.into(),
        })?;
        audit.flush()?;
        served?;
        Ok(())
    }
}

impl HttpConfig {
    fn has_mtls(&self) -> bool {
        self.mtls_auth().is_some()
    }

    #[cfg(feature = "mtls")]
    fn mtls_auth(&self) -> Option<mtls::MtlsAuth> {
        self.mtls.clone()
    }

    #[cfg(not(feature = "mtls"))]
    fn mtls_auth(&self) -> Option<std::convert::Infallible> {
        None
    }
}

/// Serves `builder`'s tools over streamable HTTP as `config` says ([`HttpConfig::serve`]).
pub async fn serve_http<S: Send + Sync + 'static>(
    builder: ToolSetBuilder<S>,
    config: HttpConfig,
) -> Result<(), HttpError> {
    config.serve(builder).await
}

/// The axum application serving `tools` as `config` says: `/mcp` and the protected resource metadata, behind the
/// checks described in the [module docs](self). For embedding in an application of your own; [`serve_http`]
/// runs it.
pub fn router<S: Send + Sync + 'static>(tools: ToolSet<S>, config: &HttpConfig) -> Router {
    let rejections = Arc::new(Rejections::new(
        tools.audit().clone(),
        config.rejection_records,
    ));
    router_with(tools, config, rejections)
}

fn router_with<S: Send + Sync + 'static>(
    tools: ToolSet<S>,
    config: &HttpConfig,
    rejections: Arc<Rejections>,
) -> Router {
    let shared = Arc::new(Shared {
        rejections,
        auth: config.auth.clone(),
        #[cfg(feature = "mtls")]
        mtls: config.mtls.clone(),
        allowed_hosts: config
            .allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        allowed_origins: config
            .allowed_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
            .collect(),
        max_request_body_bytes: config.max_request_body_bytes,
        request_timeout: config.request_timeout,
        scopes_supported: challenge::scopes_supported(
            tools.definitions().flat_map(|d| d.scopes().iter()),
        ),
        sessions: config.sessions,
    });
    let server = SecureServer::new(tools)
        .default_caller(Caller::new("anonymous", config.anonymous_grant.clone()))
        .listing(config.listing)
        .versions(config.versions.clone())
        .server_info(config.server_info.clone())
        .transport("http");
    // Host and Origin are checked, and refusals audited, by `guard`; rmcp's own Host check stays on as a second
    // line. Its Origin check stays off: `guard` also lets loopback origins through, which rmcp's allowlist cannot
    // express without naming every port.
    let rmcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(config.allowed_hosts.clone())
        .with_max_request_body_bytes(config.max_request_body_bytes)
        .with_legacy_session_mode(config.sessions)
        .with_json_response(!config.sessions)
        .with_cancellation_token(config.cancellation.child_token());
    let service = StreamableHttpService::new(
        // Called per session (or per request, when stateless): each gets its own session state.
        move || Ok(server.for_session()),
        Arc::new(LocalSessionManager::default()),
        rmcp_config,
    );
    let mut app = Router::new()
        .nest_service("/mcp", service)
        .layer(from_fn_with_state(shared.clone(), authenticate));
    if shared.auth.is_some() {
        app = app.merge(
            Router::new()
                .route(METADATA_PATH, axum::routing::get(metadata))
                .route(
                    &format!("{METADATA_PATH}/mcp"),
                    axum::routing::get(metadata),
                )
                .with_state(shared.clone()),
        );
    }
    app.layer(from_fn_with_state(shared, guard))
}

struct Shared {
    rejections: Arc<Rejections>,
    auth: Option<BearerAuth>,
    #[cfg(feature = "mtls")]
    mtls: Option<mtls::MtlsAuth>,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    max_request_body_bytes: usize,
    request_timeout: Duration,
    scopes_supported: Vec<String>,
    sessions: bool,
}

/// The subject of an authenticated request, left on its response so refusals found later carry it.
#[derive(Clone)]
struct Subject(String);

impl Shared {
    /// Audits a refusal and builds its answer. The path goes into the record without its query, which may hold a
    /// token.
    fn reject(
        &self,
        status: StatusCode,
        reason: &'static str,
        detail: Option<&'static str>,
        subject: Option<String>,
        method: &Method,
        path: &str,
    ) -> Response {
        self.audit_rejection(status, reason, detail, subject, method, path);
        let body = match detail {
            Some(detail) => format!("{reason}: {detail}"),
            None => reason.to_owned(),
        };
        (status, body).into_response()
    }

    fn audit_rejection(
        &self,
        status: StatusCode,
        reason: &'static str,
        detail: Option<&'static str>,
        subject: Option<String>,
        method: &Method,
        path: &str,
    ) {
        let event = AuditEvent::HttpRejected {
            status: status.as_u16(),
            reason,
            detail,
            subject: subject.map(|s| shorten_str(&s)),
            method: shorten_str(method.as_str()),
            path: shorten_str(path),
        };
        self.rejections.record(event);
    }
}

/// Host, Origin, body size and timeout, for every route.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers();
    if !shared.allowed_hosts.is_empty() {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()));
        if !host.is_some_and(|h| host_allowed(&shared.allowed_hosts, h)) {
            return shared.reject(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                None,
                None,
                &method,
                &path,
            );
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| origin_allowed(&shared.allowed_origins, o));
        if !allowed {
            return shared.reject(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                None,
                None,
                &method,
                &path,
            );
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > shared.max_request_body_bytes as u64) {
        return shared.reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            None,
            None,
            &method,
            &path,
        );
    }
    let response = match tokio::time::timeout(shared.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            return shared.reject(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                None,
                None,
                &method,
                &path,
            );
        }
    };
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let subject = response.extensions().get::<Subject>().map(|s| s.0.clone());
        shared.audit_rejection(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            None,
            subject,
            &method,
            &path,
        );
    }
    response
}

/// The caller of a request over mutual TLS, from its verified client certificate; `403` when it maps to none.
#[cfg(feature = "mtls")]
#[allow(clippy::result_large_err)]
fn mtls_caller(
    shared: &Shared,
    mtls: &mtls::MtlsAuth,
    request: &Request,
) -> Result<Caller, Response> {
    use axum::extract::ConnectInfo;
    let certificate = request
        .extensions()
        .get::<ConnectInfo<mtls::TlsPeer>>()
        .and_then(|info| info.0.certificate.as_ref());
    let refused = match certificate.map(|c| mtls.caller(c)) {
        Some(Ok(caller)) => return Ok(caller),
        Some(Err(Some(cn))) => ("unknown_client", None, Some(cn)),
        Some(Err(None)) => ("unknown_client", Some("no_common_name"), None),
        // Only when the router is served without the TLS listener.
        None => ("missing_client_certificate", None, None),
    };
    Err(shared.reject(
        StatusCode::FORBIDDEN,
        refused.0,
        refused.1,
        refused.2,
        request.method(),
        request.uri().path(),
    ))
}

/// What the HTTP layer knows of a request's origin, for the handler and the audit records.
fn connection(shared: &Shared, request: &Request, token_id: Option<String>) -> Connection {
    use axum::extract::ConnectInfo;
    let remote_addr = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    #[cfg(feature = "mtls")]
    let remote_addr = remote_addr.or_else(|| {
        request
            .extensions()
            .get::<ConnectInfo<mtls::TlsPeer>>()
            .map(|info| info.0.addr)
    });
    Connection {
        transport: Some("http"),
        remote_addr,
        session_id: request
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(|id| Arc::from(shorten_str(id))),
        token_id: token_id.map(|id| Arc::from(shorten_str(&id))),
        // Without sessions, rmcp fills the client's description with placeholders: only `_meta` may name the
        // client.
        trust_peer_info: shared.sessions,
        session: None,
    }
}

/// Authentication on `/mcp`: the mutual TLS caller, or else bearer authentication.
async fn authenticate(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response {
    #[cfg(feature = "mtls")]
    if let Some(mtls) = &shared.mtls {
        let caller = match mtls_caller(&shared, mtls, &request) {
            Ok(caller) => caller,
            Err(response) => return response,
        };
        let subject = Subject(caller.id().to_owned());
        let connection = connection(&shared, &request, None);
        request.extensions_mut().insert(caller);
        request.extensions_mut().insert(connection);
        let mut response = next.run(request).await;
        response.extensions_mut().insert(subject);
        return response;
    }
    let Some(auth) = &shared.auth else {
        let connection = connection(&shared, &request, None);
        request.extensions_mut().insert(connection);
        return next.run(request).await;
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let refuse = |detail: Option<&'static str>, presented: bool| {
        let reason = if presented {
            "invalid_token"
        } else {
            "missing_token"
        };
        let mut response = shared.reject(
            StatusCode::UNAUTHORIZED,
            reason,
            detail,
            None,
            &method,
            &path,
        );
        if let Ok(value) = HeaderValue::from_str(&unauthorized_challenge(auth, presented)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    };
    let verified = match challenge::bearer_token(request.headers(), request.uri()) {
        // A token in the query string is never used (RFC 6750 section 2.3 is not supported; the MCP spec forbids
        // it), only noted.
        Credential::None => {
            let detail = challenge::query_has_token(request.uri()).then_some("query_token_ignored");
            return refuse(detail, false);
        }
        Credential::Malformed => return refuse(Some("malformed"), true),
        // RFC 6750 section 3.1: a request that uses more than one method is `400 invalid_request`.
        Credential::Ambiguous => {
            let mut response = shared.reject(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Some("more_than_one_credential"),
                None,
                &method,
                &path,
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_request\""),
            );
            return response;
        }
        Credential::Token(token) => match auth.authenticate(token).await {
            Ok(verified) => verified,
            Err(error) => return refuse(Some(error.code()), true),
        },
    };
    let subject = Subject(verified.caller.id().to_owned());
    let connection = connection(&shared, &request, verified.token_id);
    request.extensions_mut().insert(verified.caller);
    request.extensions_mut().insert(connection);
    let response = next.run(request).await;
    let mut response = match scopes_refused(response).await {
        (_, Some(refusal)) => insufficient_scope_answer(auth, refusal),
        (response, None) => response,
    };
    response.extensions_mut().insert(subject);
    response
}

/// The largest JSON answer read back for a refusal; a refusal is far smaller, so a larger answer is passed on
/// unread.
const MAX_REFUSAL_BYTES: u64 = 64 * 1024;

/// The JSON-RPC error code of a call refused for a missing scope over HTTP (an implementation-defined server error
/// that no SDK gives a meaning of its own).
pub const INSUFFICIENT_SCOPE_CODE: i32 = -32003;

/// A tool call refused for a missing scope, read from the JSON answer.
struct ScopeRefusal {
    id: serde_json::Value,
    notice: RefusalNotice,
    scopes: Vec<String>,
}

/// Reads a JSON answer for a tool result refused for a missing scope: its id and its typed [`RefusalNotice`].
/// Streamed (SSE) answers, whose head is sent before the tool runs, and large ones pass unread.
async fn scopes_refused(response: Response) -> (Response, Option<ScopeRefusal>) {
    use axum::body::{Body, HttpBody};
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let small = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_REFUSAL_BYTES);
    if response.status() != StatusCode::OK || !json || !small {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REFUSAL_BYTES as usize).await else {
        return (Response::from_parts(parts, Body::empty()), None);
    };
    #[derive(serde::Deserialize)]
    struct Answer {
        id: serde_json::Value,
        result: Option<AnswerResult>,
    }
    #[derive(serde::Deserialize)]
    struct AnswerResult {
        #[serde(rename = "_meta")]
        meta: Option<serde_json::Map<String, serde_json::Value>>,
    }
    let refusal = serde_json::from_slice::<Answer>(&bytes)
        .ok()
        .and_then(|answer| {
            let notice = answer.result?.meta?.remove(REFUSAL_META_KEY)?;
            let notice = serde_json::from_value::<RefusalNotice>(notice).ok()?;
            let scopes = notice.required_scopes.clone()?;
            Some(ScopeRefusal {
                id: answer.id,
                notice,
                scopes,
            })
        });
    (Response::from_parts(parts, Body::from(bytes)), refusal)
}

/// The answer to a call refused for a missing scope, in the form the MCP authorization specification asks for
/// (Runtime Insufficient Scope Errors: `403` with an `insufficient_scope` challenge naming every scope the tool
/// requires) and the official SDK clients process: its body is a JSON-RPC *error* (code
/// [`INSUFFICIENT_SCOPE_CODE`], the refusal's code as the message, the typed notice as data), which the Python
/// SDK hands the application as an `MCPError`, where a result in a non-2xx answer would be dropped; and the
/// challenge's `error_description` carries the code too, which the TypeScript SDK v2 surfaces. Clients with an OAuth
/// provider step up to the scopes named and retry.
fn insufficient_scope_answer(auth: &BearerAuth, refusal: ScopeRefusal) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": refusal.id,
        "error": {
            "code": INSUFFICIENT_SCOPE_CODE,
            "message": refusal.notice.code,
            "data": refusal.notice,
        }
    });
    let mut response = (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    let challenge = insufficient_scope_challenge(auth, &refusal.scopes, &refusal.notice.code);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The protected resource metadata (RFC 9728).
async fn metadata(State(shared): State<Arc<Shared>>) -> Response {
    match &shared.auth {
        Some(auth) => {
            axum::Json(challenge::resource_metadata(auth, &shared.scopes_supported)).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Splits `host[:port]` (IPv6 in brackets) into its lowercase host and port.
fn split_authority(authority: &str) -> (String, Option<&str>) {
    let authority = authority.trim();
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':');
        return (host.to_ascii_lowercase(), port);
    }
    match authority.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((host, port)) if !host.contains(':') => (host.to_ascii_lowercase(), Some(port)),
        _ => (authority.to_ascii_lowercase(), None),
    }
}

fn host_allowed(allowed: &[String], host: &str) -> bool {
    let (name, port) = split_authority(host);
    allowed.iter().any(|entry| {
        let (entry_name, entry_port) = split_authority(entry);
        entry_name == name && (entry_port.is_none() || entry_port == port)
    })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An Origin is accepted when its host is loopback (over http or https) or it is on the allowlist.
fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let parsed = origin
        .split_once("://")
        .filter(|(scheme, _)| *scheme == "http" || *scheme == "https");
    if let Some((_, authority)) = parsed
        && !authority.contains('/')
        && is_loopback(&split_authority(authority).0)
    {
        return true;
    }
    allowed.iter().any(|entry| {
        if let Some(prefix) = entry.strip_suffix(":*") {
            origin == prefix
                || origin
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|port| {
                        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                    })
        } else {
            origin == *entry
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_by_name_and_optional_port() {
        let allowed: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        assert!(host_allowed(&allowed, "127.0.0.1:8080"));
        assert!(host_allowed(&allowed, "LOCALHOST"));
        assert!(host_allowed(&allowed, "[::1]:80"));
        assert!(!host_allowed(&allowed, "evil.example"));
        assert!(!host_allowed(&allowed, "127.0.0.1.evil.example:8080"));
        let pinned: Vec<String> = vec!["mcp.example.com:443".into()];
        assert!(host_allowed(&pinned, "mcp.example.com:443"));
        assert!(!host_allowed(&pinned, "mcp.example.com:8443"));
    }

    #[test]
    fn origins_other_than_loopback_need_the_allowlist() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(&none, "http://localhost:5173"));
        assert!(origin_allowed(&none, "http://127.0.0.1"));
        assert!(origin_allowed(&none, "https://[::1]:3000"));
        assert!(!origin_allowed(&none, "https://evil.example"));
        assert!(!origin_allowed(&none, "null"));
        assert!(!origin_allowed(&none, "http://localhost.evil.example"));
        let list: Vec<String> = vec![
            "https://app.example.com".into(),
            "http://dev.example:*".into(),
        ];
        assert!(origin_allowed(&list, "https://app.example.com"));
        assert!(!origin_allowed(&list, "https://app.example.com:8443"));
        assert!(origin_allowed(&list, "http://dev.example:9000"));
        assert!(!origin_allowed(&list, "http://dev.example.evil:9000"));
    }
}
