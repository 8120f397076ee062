//! Who is calling: the caller of a request over mutual TLS, from its certificate, or from its bearer token; what
//! the connection tells of it; and the answer to a call refused for a missing scope.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::Route;
use futures_util::future::BoxFuture;
use tower::ServiceExt as _;

use super::challenge::{self, Credential, insufficient_scope_challenge, unauthorized_challenge};
#[cfg(feature = "mtls")]
use super::mtls;
use super::refusal;
use super::sessions::{Entry, Kind};
use super::stateless_cancel::{self, Peeked};
use super::{BearerAuth, Shared, Subject};
use crate::audit::{AuditEvent, shorten_str};
use crate::call::{Caller, Connection, RefusalNotice};
use crate::serve::handler::HeldArguments;

/// The caller of a request over mutual TLS, from its verified client certificate; `403` when it maps to none.
#[cfg(feature = "mtls")]
#[allow(clippy::result_large_err)]
fn mtls_caller(
    shared: &Shared,
    mtls: &mtls::MtlsAuth,
    head: &Head<'_>,
) -> Result<Caller, Response> {
    use axum::extract::ConnectInfo;
    let peer = head.extensions.get::<ConnectInfo<mtls::TlsPeer>>();
    let certificate = peer.and_then(|info| info.0.certificate.as_ref());
    let refused = match certificate.map(|c| mtls.caller(c)) {
        Some(Ok(caller)) => return Ok(caller),
        Some(Err(mtls::Unmapped::Unknown(Some(names)))) => ("unknown_client", None, Some(names)),
        Some(Err(mtls::Unmapped::Unknown(None))) => {
            ("unknown_client", Some("no_client_name"), None)
        }
        Some(Err(mtls::Unmapped::Ambiguous(names))) => ("ambiguous_client", None, Some(names)),
        Some(Err(mtls::Unmapped::TooManyNames)) => {
            ("unknown_client", Some("too_many_client_names"), None)
        }
        // Only when the router is served without the TLS listener.
        None => ("missing_client_certificate", None, None),
    };
    Err(shared.reject(
        StatusCode::FORBIDDEN,
        refused.0,
        refused.1,
        refused.2,
        &head.asked(),
    ))
}

impl Head<'_> {
    /// The request, for a refusal's record.
    fn asked(&self) -> super::Asked<'_> {
        super::Asked::new(self.method, self.uri, self.headers, self.extensions)
    }
}

/// What authentication reads of a request: its head, never its body (which is not `Sync`).
struct Head<'a> {
    method: &'a axum::http::Method,
    uri: &'a axum::http::Uri,
    headers: &'a axum::http::HeaderMap,
    #[cfg_attr(not(feature = "mtls"), allow(dead_code))]
    extensions: &'a axum::http::Extensions,
}

/// What the HTTP layer knows of a request's origin, for the handler and the audit records.
fn connection(shared: &Shared, request: &Request, token_id: Option<String>) -> Connection {
    // A request of the stateless revision stands alone even when it names a session (rmcp serves it so): neither
    // the session's id nor the client the session began with is its own (a red team's: its records carried both,
    // the client as rmcp's placeholder). Versions are dates: later ones compare greater.
    let stands_alone = request
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|version| version >= "2026-07-28");
    let session_id: Option<Arc<str>> = (shared.sessions && !stands_alone)
        .then(|| request.headers().get("mcp-session-id"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(|id| Arc::from(shorten_str(id)));
    Connection {
        transport: Some("http"),
        remote_addr: super::remote_addr(request.extensions()),
        forwarded_for: super::forwarded_for(request.extensions()),
        // Only a session the server issued and checks (session mode; see `authenticated`): without sessions, the
        // header is whatever the client wrote, and nothing vouches for it.
        session_id: session_id.clone(),
        token_id: token_id.map(|id| Arc::from(shorten_str(&id))),
        traceparent: traceparent(request.headers()),
        tracestate: tracestate(request.headers()),
        // Only within a session (its `initialize` named the client): for a request that stands alone (without
        // sessions, or with sessions on, one of the 2026-07-28 revision), rmcp fills the client's description
        // with placeholders (a trial's records named `rmcp` 3.11.0), and only `_meta` may name the client.
        trust_peer_info: session_id.is_some(),
        session: None,
        scope_refusal: None,
        refusal_recorded: Some(Arc::default()),
        caller: None,
    }
}

/// The request's `traceparent` header, when it has exactly one: two are no trace to continue (W3C Trace Context's
/// test suite, `test_traceparent_duplicated`: a new trace; an OTel round's request continued its first).
fn traceparent(headers: &axum::http::HeaderMap) -> Option<Arc<str>> {
    let mut fields = headers.get_all("traceparent").iter();
    let field = fields.next()?;
    if fields.next().is_some() {
        return None;
    }
    field
        .to_str()
        .ok()
        .filter(|v| v.len() <= crate::audit::MAX_TRACEPARENT_BYTES)
        .map(Arc::from)
}

/// The request's W3C `tracestate`: its fields joined with commas, one list as W3C Trace Context reads several
/// (RFC 9110's combination of a list-valued field), within [`MAX_TRACESTATE_BYTES`] in all (a longer list is dropped
/// whole, as is one with a field that is not text). Joined as it is read, never past the bound.
///
/// [`MAX_TRACESTATE_BYTES`]: crate::audit::MAX_TRACESTATE_BYTES
fn tracestate(headers: &axum::http::HeaderMap) -> Option<Arc<str>> {
    let fields = headers.get_all("tracestate");
    fields.iter().next()?;
    let mut list = String::new();
    for (i, field) in fields.iter().enumerate() {
        let field = field.to_str().ok()?;
        let separator = if i == 0 { "" } else { "," };
        if list.len() + separator.len() + field.len() > crate::audit::MAX_TRACESTATE_BYTES {
            return None;
        }
        list.push_str(separator);
        list.push_str(field);
    }
    Some(Arc::from(list))
}

/// Who a request comes from, or the answer refusing it.
struct Identified {
    /// The caller the transport vouches for; `None` without authentication (the handler's default caller).
    caller: Option<Caller>,
    token_id: Option<String>,
    /// When the bearer token stops being accepted (an event stream it opened ends then).
    valid_until: Option<std::time::SystemTime>,
}

/// The caller attribute that names the client certificate a bearer token was presented with, when the server asks
/// for both.
#[cfg(feature = "mtls")]
const CLIENT_CERTIFICATE_ATTRIBUTE: &str = "client_certificate";

/// The caller of a request: from its client certificate, its bearer token, or no one (no authentication).
#[allow(clippy::result_large_err)]
async fn identify(shared: &Shared, head: Head<'_>) -> Result<Identified, Response> {
    // The handshake's checks of a client certificate, again: the connection may have outlived the certificate or
    // the lists.
    // A request that came through no TLS listener of ours (the router embedded and served by an application's own
    // listener) shows no certificate: refused, as required certificates cannot be checked.
    #[cfg(feature = "mtls")]
    let peer = head
        .extensions
        .get::<axum::extract::ConnectInfo<mtls::TlsPeer>>()
        .map(|info| &info.0);
    #[cfg(feature = "mtls")]
    if let Some(tls) = &shared.client_certificates
        && let Err(reason) =
            peer.map_or(Err("missing_client_certificate"), |peer| tls.recheck(peer))
    {
        // The certificate's names, as a handshake's refusal of an unmapped one gives them (red-team finding: a
        // request refused for its certificate named none).
        let subject = peer.and_then(mtls::TlsPeer::subject).map(str::to_owned);
        return Err(shared.reject(StatusCode::FORBIDDEN, reason, None, subject, &head.asked()));
    }
    #[cfg(feature = "mtls")]
    if let Some(mtls) = &shared.mtls {
        return mtls_caller(shared, mtls, &head).map(|caller| Identified {
            caller: Some(caller),
            token_id: None,
            valid_until: None,
        });
    }
    let Some(auth) = &shared.auth else {
        return Ok(Identified {
            caller: None,
            token_id: None,
            valid_until: None,
        });
    };
    let asked = head.asked();
    let refuse = |detail: Option<&'static str>, presented: bool| {
        let reason = if presented {
            "invalid_token"
        } else {
            "missing_token"
        };
        let mut response = shared.reject(StatusCode::UNAUTHORIZED, reason, detail, None, &asked);
        if let Ok(value) = HeaderValue::from_str(&unauthorized_challenge(auth, presented)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    };
    match challenge::bearer_token(head.headers, head.uri) {
        // A token in the query string is never used (RFC 6750 section 2.3 is not supported; the MCP spec forbids
        // it), only noted.
        Credential::None => {
            let detail = challenge::query_has_token(head.uri).then_some("query_token_ignored");
            Err(refuse(detail, false))
        }
        // RFC 6750 section 3.1: a request that tried a method the server does not support gets the challenge
        // without an error code, as one without credentials does; the record says what it was.
        Credential::OtherScheme => Err(refuse(Some("unsupported_scheme"), false)),
        Credential::Malformed => Err(refuse(Some("malformed"), true)),
        // RFC 6750 section 3.1: a request that uses more than one method is `400 invalid_request`.
        Credential::Ambiguous => {
            let mut response = shared.reject(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Some("more_than_one_credential"),
                None,
                &asked,
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_request\""),
            );
            Err(response)
        }
        Credential::Token(token) => match auth.authenticate(token).await {
            Ok(verified) => {
                let caller = verified.caller;
                // With client certificates as well as tokens, the token names the caller and the certificate the
                // workload it called from: the records say both (red-team finding: a token used from an
                // unexpected workload did not show), as the caller attribute `client_certificate`.
                #[cfg(feature = "mtls")]
                let caller = match peer.and_then(mtls::TlsPeer::subject) {
                    Some(subject) if shared.client_certificates.is_some() => {
                        caller.with_transport_attribute(CLIENT_CERTIFICATE_ATTRIBUTE, subject)
                    }
                    _ => caller,
                };
                Ok(Identified {
                    caller: Some(caller),
                    token_id: verified.token_id,
                    valid_until: Some(verified.valid_until),
                })
            }
            Err(error) => Err(refuse(Some(error.code()), true)),
        },
    }
}

/// Who an event stream was for, to record its end when the server ends it: its certificate or its token stopped
/// being valid while it was open (`http_rejected`, `detail: "stream_ended"`).
#[derive(Clone)]
struct StreamEnd {
    shared: Arc<Shared>,
    owner: Arc<str>,
    path: String,
    remote: Option<std::net::SocketAddr>,
    forwarded: Option<std::net::IpAddr>,
    session: Option<String>,
}

impl StreamEnd {
    fn record(&self, status: StatusCode, reason: &'static str) {
        self.shared.audit_rejection(
            status,
            reason,
            Some("stream_ended"),
            Some(self.owner.to_string()),
            &super::Asked {
                method: &axum::http::Method::GET,
                path: &self.path,
                remote: self.remote,
                forwarded: self.forwarded,
                session: self.session.as_deref(),
            },
        );
    }
}

/// The `MCP-Protocol-Version` of a request outside a strict policy: `400` (the transport's rule for an unsupported
/// version), audited `version_rejected`. A request without the header is left to the handler, which takes it as
/// `2025-03-26` unless it says otherwise in `_meta`.
#[allow(clippy::result_large_err)]
fn check_version_header(
    shared: &Shared,
    request: &Request,
    identified: &Identified,
) -> Result<(), Response> {
    if !shared.versions.is_strict() {
        return Ok(());
    }
    let Some(value) = request.headers().get("mcp-protocol-version") else {
        return Ok(());
    };
    let requested = value.to_str().unwrap_or("").trim();
    if shared
        .versions
        .accepted()
        .iter()
        .any(|v| v.as_str() == requested)
    {
        return Ok(());
    }
    let supported: Vec<&str> = shared
        .versions
        .accepted()
        .iter()
        .map(|v| v.as_str())
        .collect();
    let event = AuditEvent::VersionRejected {
        request_id: None,
        requested: serde_json::Value::String(shorten_str(requested)),
        supported: supported.clone().into(),
        caller: identified.caller.as_ref().map(|c| shorten_str(c.id())),
        remote_addr: super::remote_addr(request.extensions()).map(|addr| addr.to_string()),
        forwarded_for: super::forwarded_for(request.extensions()).map(|addr| addr.to_string()),
        token_id: identified.token_id.as_deref().map(shorten_str),
        session_id: request
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(shorten_str),
    };
    if let Err(error) = shared.audit.record(event) {
        tracing::error!(%error, "could not audit a refused protocol version");
    }
    let mut response = refusal::unsupported_version(&shorten_str(requested), &supported);
    response.extensions_mut().insert(super::Audited);
    Err(response)
}

/// Authentication on `/mcp` (the mutual TLS caller, or else bearer authentication), then the checks that need
/// the caller: the protocol version, and, with sessions, that the session is the caller's own.
/// (A [`super::layer::Handler`].)
pub(super) fn authenticate(
    shared: Arc<Shared>,
    request: Request,
    next: Route,
) -> BoxFuture<'static, Response> {
    Box::pin(authenticated(shared, request, next))
}

async fn authenticated(shared: Arc<Shared>, mut request: Request, next: Route) -> Response {
    let head = Head {
        method: request.method(),
        uri: request.uri(),
        headers: request.headers(),
        extensions: request.extensions(),
    };
    let identified = match identify(&shared, head).await {
        Ok(identified) => identified,
        Err(response) => return response,
    };
    if let Err(response) = check_version_header(&shared, &request, &identified) {
        return response;
    }
    let subject = identified
        .caller
        .as_ref()
        .map(|c| Subject(c.id_shared().clone()));
    let session_id = request
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let owner = identified
        .caller
        .as_ref()
        .map_or_else(|| Arc::from("anonymous"), |c| c.id_shared().clone());
    // Whose body the connection is receiving: past the bound of unfinished bodies, the identity holding the most
    // gives way.
    if let Some(body) = request.extensions().get::<super::connections::BodyOwner>() {
        body.set(owner.clone());
    }
    // A request naming one of its caller's sessions keeps it in use while it lasts (with an event stream's body, as
    // long as the stream): a session in use is never closed to make room for another.
    let deleting = request.method() == axum::http::Method::DELETE;
    let in_use = match &session_id {
        Some(id) if shared.sessions => {
            let entered = match shared.owners.enter(id, &owner) {
                // rmcp answers a `DELETE` of a session it no longer holds `202`, as if it ended it (red-team
                // finding: a session idle past its keep-alive, deleted, was recorded `deleted`, minutes late):
                // `404`, its end recorded as it was.
                Entry::Own(_) if deleting && !shared.owners.live(id).await => {
                    shared.owners.closed(id, "expired");
                    Err(("not_found", Some("session_ended")))
                }
                Entry::Own(in_use) => Ok(Some(in_use)),
                // A session this server did not issue, or that has ended: `404`, as the transport specifies. rmcp
                // answers a `DELETE` of one `202`, as if ended (red-team finding: another identity's live session
                // got `404`, one never issued `202`, telling them apart), a request of the 2026-07-28 revision naming
                // one was served with the id on its records (red-team finding), and a request to a session whose
                // service had ended got a plain-text `500`.
                // Recorded `session_ended` when it is one the server issued and has ended (a client using its
                // session after deleting it, say), to tell it from a guessed id.
                Entry::Unknown => Err((
                    "not_found",
                    shared.owners.ended_recently(id).then_some("session_ended"),
                )),
                // Another identity's session: answered as a session that does not exist, so its existence is not
                // told.
                Entry::NotOwned => Err(("session_not_owned", None)),
            };
            match entered {
                Ok(in_use) => in_use,
                Err((reason, detail)) => {
                    shared.audit_rejection(
                        StatusCode::NOT_FOUND,
                        reason,
                        detail,
                        Some(owner.to_string()),
                        &super::Asked::of(&request),
                    );
                    let mut response = refusal::session_not_found();
                    response.extensions_mut().insert(super::Audited);
                    return response;
                }
            }
        }
        _ => None,
    };
    // A request's event stream that has ended, with its answer, and been resumed once already has nothing more:
    // resumed again, it is refused (see `Owners::may_resume`).
    if request.method() == axum::http::Method::GET
        && let Some(id) = &session_id
        && let Some(last_event_id) = request
            .headers()
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
    {
        match shared.owners.may_resume(id, last_event_id) {
            None => {
                return shared.reject(
                    StatusCode::NOT_FOUND,
                    "stream_ended",
                    None,
                    Some(owner.to_string()),
                    &super::Asked::of(&request),
                );
            }
            // Which resumption of the stream this is goes with the request to the session's manager, which sees
            // only the header (a round's finding: read there again, a resumption another had replaced could take
            // the later one's number, and its end close the stream's resumptions while the call ran).
            Some(Some(granted)) => {
                let tagged = format!("{last_event_id}{}{granted}", super::sessions::GRANT_TAG);
                if let Ok(value) = HeaderValue::from_str(&tagged) {
                    request.headers_mut().insert("last-event-id", value);
                }
            }
            Some(None) => {}
        }
    }
    // An identity has a bounded number of requests in progress (until its answer's head): a connection with one is
    // never closed to make room, so requests whose bodies never end could otherwise hold every connection.
    let Some(in_progress) = shared.owners.reserve(Kind::Request, owner.clone()) else {
        return shared.reject(
            StatusCode::TOO_MANY_REQUESTS,
            Kind::Request.refusal(),
            None,
            Some(owner.to_string()),
            &super::Asked::of(&request),
        );
    };
    // An identity holds a bounded number of sessions (an `initialize` opens one, in rmcp's session mode), so that
    // one caller cannot fill the server's memory with them; and of event streams (a `GET` on a session, holding
    // its connection while it lasts), so that its sessions cannot take every connection the server has. A place
    // is taken before the session or stream is made, so that requests in parallel cannot go past the limit.
    let kind = match (shared.sessions, &session_id, request.method()) {
        (true, None, &axum::http::Method::POST) => Some(Kind::Session),
        (true, Some(_), &axum::http::Method::GET) => Some(Kind::Stream),
        _ => None,
    };
    // A bearer stream's token, checked again as the keys change.
    let stream_token = match (&shared.auth, kind) {
        (Some(auth), Some(Kind::Stream)) => {
            match challenge::bearer_token(request.headers(), request.uri()) {
                Credential::Token(token) => Some(auth.stream_token(token)),
                _ => None,
            }
        }
        _ => None,
    };
    // A session's place is taken only as rmcp opens one (`sessions::Bound`): a request without a session opens
    // none unless it is an `initialize` (a trial's 2026-07-28 requests, which stand alone, each held one while it
    // ran, and a client with more than the limit in flight was refused).
    let taken = match kind {
        Some(Kind::Session) => Ok(None),
        Some(kind) => shared
            .owners
            .reserve(kind, owner.clone())
            .map(Some)
            .ok_or(kind),
        None => Ok(None),
    };
    let place = match taken {
        Ok(place) => place,
        Err(kind) => {
            return shared.reject(
                StatusCode::TOO_MANY_REQUESTS,
                kind.refusal(),
                None,
                Some(owner.to_string()),
                &super::Asked::of(&request),
            );
        }
    };
    // Its end, if rmcp ends it now, is its client's doing.
    if deleting && let (Some(id), Some(_)) = (&session_id, &in_use) {
        shared.owners.closing(id, Some("deleted"));
    }
    let token_valid_until = identified.valid_until;
    let mut connection = connection(&shared, &request, identified.token_id);
    // A caller with a token gets a missing scope answered as a challenge: the pipeline leaves its refusal here.
    let scope_refusal = (shared.auth.is_some() && subject.is_some())
        .then(|| Arc::new(crate::call::ScopeRefusalSlot::default()));
    connection.scope_refusal = scope_refusal.clone();
    connection.caller = identified.caller;
    let refusal_recorded = connection.refusal_recorded.clone();
    request.extensions_mut().insert(connection);
    // The token has done its work: tools (a merged server's own, which can read the request's head through rmcp's
    // `Extension<Parts>`) must not be able to read the caller's token and pass it on (the MCP authorization spec
    // forbids token passthrough).
    if shared.auth.is_some() {
        request.headers_mut().remove(header::AUTHORIZATION);
    }
    // A message's body is read here whole: checked for a member twice, and, without a session, peeked at (a call
    // to keep for its client's cancellation, or that cancellation: see `stateless_cancel`), or a call's arguments
    // held out of rmcp's logs. Boxed: its future (with the body's) would otherwise make every request's larger.
    let posting = request.method() == axum::http::Method::POST;
    let peek = posting && session_id.is_none();
    let hold = posting && HeldArguments::needed();
    let mut stateless_call = None;
    let mut cancelling = None;
    let mut initializing = false;
    let request = if posting {
        match Box::pin(read_body(&shared, request, subject.as_ref())).await {
            Ok((parts, bytes)) => {
                // A member twice anywhere is refused, as on stdio: serde keeps the last of two, so the arguments a
                // guard, the tool and the record saw were the last's while another reader may take the first (a
                // red team's `{"query":"a","query":"b"}` was served over HTTP and refused over stdio). So is a body
                // of more values than its size allows (see `strict_json::max_values`).
                if let Some(detail) = refused_body(&bytes, shared.max_request_body_bytes) {
                    let asked = super::Asked::new(
                        &parts.method,
                        &parts.uri,
                        &parts.headers,
                        &parts.extensions,
                    );
                    let mut response = shared.reject(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        Some(detail),
                        subject.as_ref().map(|s| s.0.to_string()),
                        &asked,
                    );
                    if let Some(subject) = subject {
                        response.extensions_mut().insert(subject);
                    }
                    return response;
                }
                if peek {
                    match stateless_cancel::peek(&bytes) {
                        Peeked::Call(id) => {
                            stateless_call =
                                Some(shared.stateless_calls.register(owner.clone(), id));
                        }
                        // Once rmcp has accepted the notification (red-team finding: one it refused, `406` or `415`,
                        // cancelled all the same).
                        Peeked::Cancel(id) => cancelling = Some(id),
                        Peeked::Initialize => initializing = true,
                        Peeked::Other => {}
                    }
                }
                rebuilt(parts, bytes, hold)
            }
            Err(mut response) => {
                if let Some(subject) = subject {
                    response.extensions_mut().insert(subject);
                }
                return response;
            }
        }
    } else {
        request
    };
    // An event stream's certificate and path, for the checks while it lasts and the record of its end (only a
    // stream's, to spare every request the copies).
    let is_stream = kind == Some(Kind::Stream);
    #[cfg(feature = "mtls")]
    let tls_peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<mtls::TlsPeer>>()
        .filter(|_| is_stream)
        .map(|info| info.0.clone());
    let path = if is_stream {
        request.uri().path().to_owned()
    } else {
        String::new()
    };
    let remote = super::remote_addr(request.extensions());
    let forwarded = super::forwarded_for(request.extensions());
    let method = request.method().clone();
    // A request that may open a session has its place at hand while rmcp answers it: the session is bound to its
    // owner as it is made (`sessions::Bound`), so a request dropped after that still leaves it counted.
    let (response, place) = match place {
        None if kind == Some(Kind::Session) => {
            let refuse = |status, reason| {
                let asked = super::Asked {
                    method: &axum::http::Method::POST,
                    path: "/mcp",
                    remote,
                    forwarded,
                    session: None,
                };
                shared.reject(status, reason, None, Some(owner.to_string()), &asked)
            };
            // No session opens once the stop has begun: its calls would be refused (red-team finding).
            if initializing && (shared.shutting_down)() {
                drop(in_progress);
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting_down");
            }
            let opening = super::sessions::Opening::new(shared.owners.clone(), owner.clone());
            // Only an `initialize` opens a session (a request of the 2026-07-28 revision stands alone); one from a
            // caller with no room is refused before rmcp is asked (which logs any session it was refused as an
            // internal error), as is one that finds no room as rmcp makes its session.
            let response = if initializing && !shared.owners.may_open(&owner) {
                None
            } else {
                let answer = unless_cancelled(
                    opening.clone().scope(next.oneshot(request)),
                    stateless_call.as_ref(),
                );
                Some(answer.await).filter(|_| !opening.refused())
            };
            drop(in_progress);
            let Some(response) = response else {
                return refuse(StatusCode::TOO_MANY_REQUESTS, Kind::Session.refusal());
            };
            (response, None)
        }
        place => {
            let response = unless_cancelled(next.oneshot(request), stateless_call.as_ref()).await;
            drop(in_progress);
            (response, place)
        }
    };
    // A session that ended while its request was on the way (a `DELETE` racing it): rmcp answers a plain-text
    // `500` ("Session service terminated"), which no layer audits (red-team finding). It is `404`, as for any
    // session that is not live, audited.
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR
        && shared.sessions
        && let Some(id) = &session_id
        && !shared.owners.live(id).await
    {
        shared.audit_rejection(
            StatusCode::NOT_FOUND,
            "not_found",
            Some("session_ended"),
            Some(owner.to_string()),
            &super::Asked {
                method: &method,
                path: "/mcp",
                remote,
                forwarded,
                session: Some(id),
            },
        );
        let mut response = refusal::session_not_found();
        response.extensions_mut().insert(super::Audited);
        return response;
    }
    if let Some(id) = cancelling
        && response.status() == StatusCode::ACCEPTED
    {
        shared.stateless_calls.cancel(owner.clone(), id);
    }
    // A call answered as an event stream (it sent progress or log messages first) stays cancellable until its
    // stream ends; one answered in JSON is done.
    let response = match stateless_call {
        Some(call) if is_event_stream(&response) => {
            response.map(|body| until_cancelled(body, call))
        }
        _ => response,
    };
    // A stream's place is held by its body, given back when the stream ends (or at once, if none was opened).
    let (response, place) = match place {
        Some(stream) if kind == Some(Kind::Stream) && response.status().is_success() => {
            // Over mutual TLS, the certificate is checked again before each message the stream sends (rmcp's
            // keep-alive at least every 15 s): a certificate revoked or expired while the stream is open ends it,
            // as it refuses the connection's next request.
            #[cfg(feature = "mtls")]
            let recheck = tls_peer.filter(|_| shared.client_certificates.is_some());
            let ended = StreamEnd {
                shared: shared.clone(),
                owner: owner.clone(),
                path,
                remote,
                forwarded,
                session: session_id.clone(),
            };
            // A bearer token's stream ends when the token does (red-team finding: it went on for as long as its
            // session, while every request with the token was refused): at that time, whether or not a message is
            // due, recorded as a refusal of the stream.
            let expiry = token_valid_until.map(|valid_until| {
                let ended = ended.clone();
                let left = valid_until
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                async move {
                    tokio::time::sleep(left).await;
                    ended.record(StatusCode::UNAUTHORIZED, "expired_token");
                }
            });
            let response = response.map(|body| {
                use futures_util::StreamExt as _;
                let data = match expiry {
                    Some(expiry) => body.into_data_stream().take_until(expiry).left_stream(),
                    None => body.into_data_stream().right_stream(),
                };
                let mut stream_token = stream_token;
                axum::body::Body::from_stream(data.take_while(move |_| {
                    let _held = &stream;
                    // A bearer token is checked again once the keys held change (red-team finding: a stream went
                    // on after its token's key was withdrawn, while every request with the token was refused).
                    if let (Some(auth), Some(token)) = (&ended.shared.auth, &mut stream_token)
                        && auth.recheck_stream(token).is_err()
                    {
                        ended.record(StatusCode::UNAUTHORIZED, "invalid_token");
                        return std::future::ready(false);
                    }
                    #[cfg(feature = "mtls")]
                    if let (Some(peer), Some(tls)) = (&recheck, &ended.shared.client_certificates)
                        && let Err(reason) = tls.recheck(peer)
                    {
                        ended.record(StatusCode::FORBIDDEN, reason);
                        return std::future::ready(false);
                    }
                    let _ = &ended;
                    std::future::ready(true)
                }))
            });
            (response, None)
        }
        place => (response, place),
    };
    // A session stays in use until the answer's body is done (an event stream's, or a call's answered as SSE).
    let mut response = match in_use {
        Some(in_use) => response.map(|body| super::sessions::holding(body, in_use)),
        None => response,
    };
    if shared.sessions {
        match &session_id {
            // A session opened was bound as it was answered (above).
            None => drop(place),
            Some(id) if deleting && response.status().is_success() => {
                // Recorded as a session closed to make room is (a trial found a client's `DELETE` left no record),
                // once: here, or as its transport ended, if that came first.
                shared.owners.closed(id, "deleted");
                // rmcp answers `202 Accepted`; the Python SDK takes only `200` or `204` as a session ended, and
                // warns of a failure at every close otherwise. The session is ended: `204 No Content`.
                if response.status() == StatusCode::ACCEPTED {
                    *response.status_mut() = StatusCode::NO_CONTENT;
                }
            }
            Some(id) if deleting => shared.owners.closing(id, None),
            Some(_) => {}
        }
    }
    let refused = scope_refusal
        .and_then(|slot| slot.take())
        .filter(|_| is_json_answer(&response));
    let mut response = match (&shared.auth, refused) {
        (Some(auth), Some((id, notice))) => insufficient_scope_answer(auth, id, notice),
        _ => same_as_the_runners(response, shared.sessions && session_id.is_some()),
    };
    // A refusal the handler recorded itself (a merged handler's method the gate refused, which rmcp answers `404`
    // under the 2026-07-28 revision) is not recorded again by the guard (an interop round's: two records, the second
    // an `http_rejected` `not_found` that read like an unknown path).
    if response.status().is_client_error()
        && refusal_recorded
            .is_some_and(|recorded| recorded.load(std::sync::atomic::Ordering::SeqCst))
    {
        response.extensions_mut().insert(super::Audited);
    }
    // The guard records a refusal from further in (rmcp's own: its body limit, an unknown session, a method,
    // media type or `Accept` it does not serve) with the caller it was for.
    if response.status().is_client_error()
        && let Some(subject) = subject
    {
        response.extensions_mut().insert(subject);
    }
    response
}

/// rmcp's own answers to a refusal the runner also makes, in the runner's form (see the `refusal` module): a body over
/// the size limit that only rmcp's limit caught as it streamed in (`413`), and, on a request `naming_a_session`, a
/// session that does not exist (`404`), which must be answered exactly as another identity's session is. Other
/// answers pass as they are.
fn same_as_the_runners(response: Response, naming_a_session: bool) -> Response {
    let status = response.status();
    let runners_form = match status {
        StatusCode::PAYLOAD_TOO_LARGE => refusal::answer(status, "body_too_large", None),
        StatusCode::NOT_FOUND if naming_a_session => refusal::session_not_found(),
        _ => return response,
    };
    if response.extensions().get::<super::Audited>().is_some()
        || response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    {
        return response;
    }
    runners_form
}

/// `answer`, unless the call `stateless_call` is cancelled by its client first: then its request is dropped (rmcp
/// cancels the handler, as when a client hangs up; the call is audited `cancelled`) and answered so.
async fn unless_cancelled(
    answer: impl Future<Output = Result<Response, std::convert::Infallible>>,
    stateless_call: Option<&stateless_cancel::Registered>,
) -> Response {
    let Some(call) = stateless_call else {
        let Ok(response) = answer.await;
        return response;
    };
    tokio::select! {
        biased;
        Ok(response) = answer => response,
        () = call.token().cancelled() => refusal::cancelled(call.id()),
    }
}

/// Whether an answer is an event stream.
fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

/// An event stream's `body`, keeping `call` in progress until it ends, and ending when its client cancels it (rmcp
/// cancels the handler as the stream is dropped).
fn until_cancelled(body: axum::body::Body, call: stateless_cancel::Registered) -> axum::body::Body {
    use futures_util::StreamExt as _;
    let cancelled = call.token().clone().cancelled_owned();
    axum::body::Body::from_stream(
        body.into_data_stream()
            .take_until(cancelled)
            .map(move |frame| {
                let _in_progress = &call;
                frame
            }),
    )
}

/// Reads a `POST`'s body whole, within the body size limit (past it `413`, as rmcp would answer it; the guard audits
/// it). One that cannot be read (bad chunking, a connection broken mid-body) is `400`, audited `unreadable_body` for
/// `subject`, as when rmcp reads it.
#[allow(clippy::result_large_err)]
async fn read_body(
    shared: &Shared,
    request: Request,
    subject: Option<&Subject>,
) -> Result<(axum::http::request::Parts, axum::body::Bytes), Response> {
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, shared.max_request_body_bytes);
    let bytes = match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(refusal::answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                None,
            ));
        }
        // The bodies arriving at once hold all they may: this one is refused, to be sent again later.
        Err(error) if super::connections::is_body_budget_spent(&*error) => {
            return Err(shared.reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                Some("body_budget"),
                subject.map(|s| s.0.to_string()),
                &super::Asked::new(&parts.method, &parts.uri, &parts.headers, &parts.extensions),
            ));
        }
        Err(_) => {
            return Err(shared.reject(
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some("unreadable_body"),
                subject.map(|s| s.0.to_string()),
                &super::Asked::new(&parts.method, &parts.uri, &parts.headers, &parts.extensions),
            ));
        }
    };
    Ok((parts, bytes))
}

/// Why a body is refused before rmcp reads it: `not_utf8`, not UTF-8, which JSON is (RFC 8259), and which would
/// escape the count below (red-team finding: rmcp built all it read before the byte); `duplicate_key`, a JSON object
/// with a member twice at any depth; `too_many_values`, more JSON values than a body of the size limit may hold
/// (millions of tiny values take about a hundred times their size as rmcp's message types read them: red-team
/// finding). A body that is otherwise not JSON is rmcp's to refuse.
fn refused_body(body: &[u8], max_body_bytes: usize) -> Option<&'static str> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Some("not_utf8");
    };
    let error =
        crate::strict_json::check_bounded(text, crate::strict_json::max_values(max_body_bytes))
            .err()?;
    let error = error.to_string();
    if error.starts_with("duplicate key") {
        Some("duplicate_key")
    } else if error.starts_with(crate::strict_json::TOO_MANY_VALUES) {
        Some("too_many_values")
    } else {
        None
    }
}

/// The request again from its `parts` and body `bytes`, with a `tools/call`'s arguments held out of the body when
/// `hold` (see [`HeldArguments`]), so that rmcp's `debug` and `trace` events, which print each request whole, never
/// show them, whatever a subscriber listens at; the secure handler takes them back. Held only while some subscriber
/// listens at `debug` or more ([`HeldArguments::needed`]).
fn rebuilt(mut parts: axum::http::request::Parts, bytes: axum::body::Bytes, hold: bool) -> Request {
    use axum::body::Body;
    let held = if hold {
        HeldArguments::hold_in_body(&bytes)
    } else {
        None
    };
    let body = match held {
        Some((held_body, held)) => {
            parts.extensions.insert(held);
            // The body is another now, whole: the headers that described the one received go (rmcp reads the body
            // itself, to its end and under its own size limit).
            parts.headers.remove(header::TRANSFER_ENCODING);
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(held_body)
        }
        None => Body::from(bytes),
    };
    Request::from_parts(parts, body)
}

/// The JSON-RPC error code of a call refused for a missing scope over HTTP (an implementation-defined server error
/// that no SDK gives a meaning of its own).
pub const INSUFFICIENT_SCOPE_CODE: i32 = -32003;

/// Whether an answer is the JSON answer to the request (stateless HTTP), which a refusal for a missing scope
/// replaces. A stream of events (with sessions) has had its head sent already and passes as it is.
fn is_json_answer(response: &Response) -> bool {
    response.status() == StatusCode::OK
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
}

/// The answer to a call refused for a missing scope, in the form the MCP authorization specification asks for
/// (Runtime Insufficient Scope Errors: `403` with an `insufficient_scope` challenge naming every scope the tool
/// requires) and the official SDK clients process: its body is a JSON-RPC *error* (code
/// [`INSUFFICIENT_SCOPE_CODE`], the refusal's code as the message, the typed notice as data), which the Python
/// SDK hands the application as an `MCPError`, where a result in a non-2xx answer would be dropped; and the
/// challenge's `error_description` carries the code too, which the TypeScript SDK v2 surfaces. Clients with an OAuth
/// provider step up to the scopes named and retry.
fn insufficient_scope_answer(
    auth: &BearerAuth,
    id: crate::call::RequestId,
    notice: RefusalNotice,
) -> Response {
    let scopes = notice.required_scopes.clone().unwrap_or_default();
    let error = serde_json::json!({
        "code": INSUFFICIENT_SCOPE_CODE,
        "message": notice.code,
        "data": notice,
    });
    let id = serde_json::to_value(id).unwrap_or_default();
    let mut response = refusal::json_rpc_error(StatusCode::FORBIDDEN, id, error);
    // The call's own record is the refusal's.
    response.extensions_mut().insert(super::Audited);
    let challenge = insufficient_scope_challenge(auth, &scopes, &notice.code);
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The protected resource metadata (RFC 9728).
pub(super) async fn metadata(State(shared): State<Arc<Shared>>) -> Response {
    match &shared.auth {
        Some(auth) => {
            axum::Json(challenge::resource_metadata(auth, &shared.scopes_supported)).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::{traceparent, tracestate};
    use crate::audit::MAX_TRACESTATE_BYTES;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("tracestate", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn two_traceparent_fields_are_none() {
        let one = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut fields = HeaderMap::new();
        fields.append("traceparent", HeaderValue::from_static(one));
        assert_eq!(traceparent(&fields).as_deref(), Some(one));
        fields.append(
            "traceparent",
            HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319d-b7ad6b7169203332-01"),
        );
        assert_eq!(traceparent(&fields), None);
    }

    #[test]
    fn tracestate_fields_are_combined_then_bounded() {
        assert_eq!(tracestate(&headers(&[])), None);
        assert_eq!(
            tracestate(&headers(&["congo=t61rcWkgMzE"])).as_deref(),
            Some("congo=t61rcWkgMzE")
        );
        // W3C Trace Context: several `tracestate` fields are one list, joined with commas (RFC 9110, 5.3).
        assert_eq!(
            tracestate(&headers(&["rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE"])).as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        // The bound is on the combined list: fields each within it, together past it, are dropped whole.
        let half = format!("a={}", "x".repeat(MAX_TRACESTATE_BYTES / 2));
        assert_eq!(tracestate(&headers(&[&half, &half])), None);
        let exact = format!("a={}", "x".repeat(MAX_TRACESTATE_BYTES - 2));
        assert_eq!(tracestate(&headers(&[&exact])).as_deref(), Some(&*exact));
        // A field that is not text makes the list unreadable: none is kept.
        let mut opaque = headers(&["rojo=00f067aa0ba902b7"]);
        opaque.append(
            "tracestate",
            HeaderValue::from_bytes(b"congo=\xff").unwrap(),
        );
        assert_eq!(tracestate(&opaque), None);
    }
}
