//! The checks every request passes before anything else: Host (DNS rebinding), Origin (browsers), the declared
//! body size, and the time until the answer starts. Each refusal is audited (through the throttle of
//! `Rejections`).

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::Route;
use futures_util::future::BoxFuture;
use tower::ServiceExt as _;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use super::{Asked, Audited, Shared, Subject};

/// Host, Origin, body size and timeout, for every route (a [`super::layer::Handler`]).
pub(super) fn guard(
    shared: Arc<Shared>,
    request: Request,
    next: Route,
) -> BoxFuture<'static, Response> {
    // Every answer, a refusal made before the body arrived included, leaves the connection usable. Not for a
    // request that waits for `100 Continue` before its body: refused, it may never send one, and what came next on
    // the connection would be read as its body (red-team finding); hyper closes that connection instead.
    let drain = !request.headers().contains_key(header::EXPECT);
    let failed = super::drain::BodyFailed::default();
    let watched = failed.clone();
    let mut request = request;
    // First, so that every record of the request, a refusal here included, names the client behind a trusted proxy.
    if let Some(peer) = super::remote_addr(request.extensions())
        && let Some(client) =
            super::forwarded::client(peer.ip(), request.headers(), &shared.trusted_proxies)
    {
        request
            .extensions_mut()
            .insert(super::forwarded::ForwardedFor(client));
    }
    let report = request
        .extensions_mut()
        .remove::<super::drain::DrainReport>();
    let request = request.map(|body| super::drain::draining(body, watched, drain, report));
    let failed = Some(failed);
    Box::pin(guarded(shared, request, next, failed))
}

async fn guarded(
    shared: Arc<Shared>,
    request: Request,
    next: Route,
    failed: Option<super::drain::BodyFailed>,
) -> Response {
    let headers = request.headers();
    if !shared.allowed_hosts.is_empty() {
        // One `Host` (RFC 9112: more than one is a bad request), and a target naming its authority (absolute form)
        // is served for that authority, not its `Host` (red-team finding: only the first `Host` was checked, and
        // not the target's).
        let mut hosts = headers.get_all(header::HOST).iter();
        let first = hosts.next();
        if hosts.next().is_some() {
            return shared.reject(
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some("duplicate_host"),
                None,
                &Asked::of(&request),
            );
        }
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| first.and_then(|h| h.to_str().ok()));
        if !host.is_some_and(|h| host_allowed(&shared.allowed_hosts, h)) {
            return shared.reject(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                None,
                None,
                &Asked::of(&request),
            );
        }
    }
    let from_browser = headers.get(header::ORIGIN);
    // One `Origin`: a second was never looked at.
    if headers.get_all(header::ORIGIN).iter().nth(1).is_some() {
        return shared.reject(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            Some("duplicate_origin"),
            None,
            &Asked::of(&request),
        );
    }
    // One `Mcp-Session-Id` (red-team finding: the first of two was used, where a proxy in front may take the last).
    if headers.get_all("mcp-session-id").iter().nth(1).is_some() {
        return shared.reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some("duplicate_session_id"),
            None,
            &Asked::of(&request),
        );
    }
    if let Some(origin) = from_browser {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| origin_allowed(&shared.allowed_origins, o));
        if !allowed {
            return shared.reject(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                None,
                None,
                &Asked::of(&request),
            );
        }
    }
    // A browser's request from an allowed origin: its answer (a refusal included) carries the CORS headers that let
    // the page read it, and a preflight is answered here, after the Host and Origin checks and before
    // authentication (a browser sends no credentials with it).
    if from_browser.is_some() {
        let cors = shared.cors.clone();
        let rest = tower::service_fn(move |request: Request| {
            let shared = shared.clone();
            let next = next.clone();
            let failed = failed.clone();
            async move {
                Ok::<_, std::convert::Infallible>(limited(shared, request, next, failed).await)
            }
        });
        return match tower::Layer::layer(&cors, rest).oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    // With pages granted CORS, an answer depends on the request's `Origin`: this one, to a request without one,
    // carries no grant, and a shared cache must not serve it to a page (which could not read it then).
    let varies = !shared.allowed_origins.is_empty();
    let mut response = limited(shared, request, next, failed).await;
    if varies {
        response
            .headers_mut()
            .append(header::VARY, axum::http::HeaderValue::from_static("origin"));
    }
    response
}

/// The body's declared size and the time until the answer starts; then the audit of a refusal from further in.
async fn limited(
    shared: Arc<Shared>,
    request: Request,
    next: Route,
    failed: Option<super::drain::BodyFailed>,
) -> Response {
    let method = request.method().clone();
    // Kept for a refusal's record; a `Uri` shares its bytes, so this copies no path.
    let uri = request.uri().clone();
    let remote = super::remote_addr(request.extensions());
    let forwarded = super::forwarded_for(request.extensions());
    // A header value shares its bytes too.
    let session = request.headers().get("mcp-session-id").cloned();
    let asked = Asked {
        method: &method,
        path: uri.path(),
        remote,
        forwarded,
        session: session.as_ref().and_then(|v| v.to_str().ok()),
    };
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
        });
    let names_session = headers.contains_key("mcp-session-id");
    if declared.is_some_and(|n| n > shared.max_request_body_bytes as u64) {
        return shared.reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            None,
            None,
            &asked,
        );
    }
    let response = match tokio::time::timeout(shared.request_timeout, next.oneshot(request)).await {
        Ok(Ok(response)) => response,
        Err(_) => {
            return shared.reject(StatusCode::REQUEST_TIMEOUT, "timeout", None, None, &asked);
        }
    };
    // A refusal from further in that no layer audited (rmcp's own answers): audited here, once. Not the `405` to
    // a `GET` or `DELETE` without sessions: the specification's way to say there is no stream or session to
    // open or end, which clients ask for in the normal course (the TypeScript SDK opens a stream after
    // `initialize`).
    // A body the protocol layer could not read (bad chunking, a connection broken mid-body) is the client's doing,
    // which rmcp answers `500` in plain text: `400`, audited (red-team finding).
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR
        && failed.is_some_and(|failed| failed.is_set())
    {
        return shared.reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some("unreadable_body"),
            None,
            &asked,
        );
    }
    // rmcp answers `415` to a body it cannot parse as a JSON-RPC message as to a wrong content type: sent as
    // `application/json`, it is a malformed request, `400` (a trial's JSON nested past the parser's limit was
    // audited `unsupported_media_type`).
    if response.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE && json_body {
        let subject = response
            .extensions()
            .get::<Subject>()
            .map(|s| s.0.to_string());
        return shared.reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            Some("not_json_rpc"),
            subject,
            &asked,
        );
    }
    let status = response.status();
    let negotiation = status == StatusCode::METHOD_NOT_ALLOWED
        && (method == axum::http::Method::GET || method == axum::http::Method::DELETE);
    if status.is_client_error() && !negotiation && response.extensions().get::<Audited>().is_none()
    {
        let subject = response
            .extensions()
            .get::<Subject>()
            .map(|s| s.0.to_string());
        // With sessions on, rmcp's plain `400` to a request that needs a session and names none (any but an
        // `initialize`): a trial's client, its session deleted, read "malformed" and did not know to initialize.
        let reason = if status == StatusCode::BAD_REQUEST
            && shared.sessions
            && !names_session
            && !is_json(&response)
        {
            "session_required"
        } else {
            refusal_reason(status)
        };
        shared.audit_rejection(status, reason, None, subject, &asked);
        // rmcp answers these in plain text, which the Python SDK reads as `-32603 "Server returned an error
        // response"`: a JSON-RPC error naming the reason instead, as the runner's own refusals are. Its text is not
        // kept: serde's message about a body it could not read may quote the request. One of its own in JSON (an
        // error it answers as JSON-RPC) is left as it is.
        if !is_json(&response) {
            let (mut parts, _) = response.into_parts();
            let mut answer = super::refusal::answer(status, reason, None);
            for (name, value) in &parts.headers {
                if name == header::ALLOW || name == header::WWW_AUTHENTICATE {
                    answer.headers_mut().insert(name.clone(), value.clone());
                }
            }
            std::mem::swap(answer.extensions_mut(), &mut parts.extensions);
            return answer;
        }
    }
    response
}

/// Whether an answer's body is JSON.
fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The reason recorded for a refusal by status, for the answers of further in.
fn refusal_reason(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::CONFLICT => "conflict",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        _ => "client_error",
    }
}

/// The CORS rules for a browser page on an origin the allowlist names (`--allowed-origin`; a loopback origin is
/// accepted by the `Origin` check without a listing, as before, but gets no CORS grant unless listed): the methods
/// of the streamable HTTP transport; the request headers the preflight asks for, whatever they are (the
/// `2026-07-28` revision's `Mcp-Method`, `Mcp-Name` and the open family `Mcp-Param-*` among them, which no fixed
/// list covers; the origin is checked and no credentials are shared, so this grants nothing a listed page could
/// not send anyway); and the response headers an SDK client reads (the session id, the negotiated version, a
/// challenge, when to retry). No credentials mode: a token is sent as a header, not a cookie. A preflight's
/// answer is cached by the browser for ten minutes.
pub(super) fn cors(allowed_origins: Vec<String>) -> CorsLayer {
    use axum::http::{HeaderName, Method};
    const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
    const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            !allowed_origins.is_empty()
                && origin
                    .to_str()
                    .is_ok_and(|o| origin_listed(&allowed_origins, &normalized_origin(o)))
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            MCP_SESSION_ID,
            MCP_PROTOCOL_VERSION,
            header::WWW_AUTHENTICATE,
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Splits `host[:port]` (IPv6 in brackets) into its host and port; hosts compare without regard to ASCII case.
pub(super) fn split_authority(authority: &str) -> (&str, Option<&str>) {
    let authority = authority.trim();
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (host, after.strip_prefix(':'));
    }
    match authority.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (authority, None),
    }
}

pub(super) fn host_allowed(allowed: &[String], host: &str) -> bool {
    let (name, port) = split_authority(host);
    allowed.iter().any(|entry| {
        let (entry_name, entry_port) = split_authority(entry);
        entry_name.eq_ignore_ascii_case(name) && (entry_port.is_none() || entry_port == port)
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
    let origin = normalized_origin(origin);
    let parsed = origin
        .split_once("://")
        .filter(|(scheme, _)| *scheme == "http" || *scheme == "https");
    if let Some((_, authority)) = parsed
        && !authority.contains('/')
        && is_loopback(split_authority(authority).0)
    {
        return true;
    }
    origin_listed(allowed, &origin)
}

/// Why an allowlist entry is no origin to allow, if it is not: an origin is `scheme://host[:port]` (`:*` for any
/// port). `null`, with or without a port (red-team finding: `null:*` let `Origin: null` through), is the origin any
/// page can send (a sandboxed frame, a `data:` page); `*`, `file://`, `data:` or a path match nothing they seem to.
pub(super) fn origin_entry_problem(entry: &str) -> Option<&'static str> {
    let entry = normalized_origin(entry);
    let origin = entry.strip_suffix(":*").unwrap_or(&entry);
    if origin == "null" || origin.starts_with("null:") {
        return Some(
            "`null` is the origin any page can send (a sandboxed frame, a `data:` page): it would let every page \
             through; name the origins of the pages that may call the server",
        );
    }
    let well_formed = origin.split_once("://").is_some_and(|(scheme, authority)| {
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        let (host, port) = split_authority(authority);
        // A port as a browser writes it: 1 to 65535, no leading zero.
        let port_ok =
            |port: &str| !port.starts_with('0') && port.parse::<u16>().is_ok_and(|port| port != 0);
        scheme_ok
            && !host.is_empty()
            && host.is_ascii()
            && !authority.contains(['/', '?', '#', '@', '*', ' ', '\\'])
            && port.is_none_or(port_ok)
    });
    (!well_formed).then_some(
        "an origin is `scheme://host` with an optional `:port` (1 to 65535), or `:*` for any port \
         (`https://app.example`, `http://localhost:*`): no path, no wildcard host, a host in ASCII (an \
         internationalized name as its browser sends it, in punycode: `xn--...`), and no `file://` or `data:` page, \
         which send `null`",
    )
}

/// An `Origin` as the allowlist's entries are written: lowercased, without a trailing `/`.
pub(super) fn normalized_origin(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    // A scheme's default port is no part of an origin a browser sends (a review's finding: an entry
    // `https://app.example.com:443` matched nothing).
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        if origin.starts_with(scheme)
            && let Some(bare) = origin.strip_suffix(port)
            && !bare.ends_with(':')
        {
            return bare.to_owned();
        }
    }
    origin
}

/// Whether the allowlist names an origin (normalized: [`normalized_origin`]): exactly, or by a `scheme://host:*`
/// entry for any port.
fn origin_listed(allowed: &[String], origin: &str) -> bool {
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

    /// An allowlist entry is an origin; `null` under any port, and what is no origin, are not (red-team findings).
    #[test]
    fn an_allowed_origin_entry_is_an_origin() {
        for origin in [
            "https://app.example",
            "https://App.Example/",
            "http://localhost:*",
            "http://[::1]:8080",
            "https://a.example:443",
            "vscode-webview://abc123",
            "https://xn--bcher-kva.example",
        ] {
            assert_eq!(origin_entry_problem(origin), None, "{origin}");
        }
        // A review's findings: entries a browser's origin never matched. A default port is dropped on both sides;
        // ports out of range or with a leading zero, and hosts not in ASCII, are refused.
        for (entry, origin) in [
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://app.example.com:80", "http://app.example.com"),
            ("https://app.example.com", "https://app.example.com:443"),
        ] {
            assert!(
                origin_listed(&[normalized_origin(entry)], &normalized_origin(origin)),
                "{entry} {origin}"
            );
        }
        assert!(!origin_listed(
            &[normalized_origin("http://app.example.com:443")],
            &normalized_origin("http://app.example.com")
        ));
        for entry in [
            "https://app.example.com:0443",
            "https://app.example.com:99999",
            "https://app.example.com:0",
            "https://bücher.example",
        ] {
            assert!(origin_entry_problem(entry).is_some(), "{entry}");
        }
        for entry in [
            "null",
            "null:*",
            "NULL:8080",
            "*",
            "http://*",
            "https://*.example",
            "file://",
            "data:",
            "about:blank",
            "https://a.example/app",
            "https://u@a.example",
            "https://a.example:",
            "https://a.example:x",
            "://a.example",
            "1http://a.example",
        ] {
            assert!(origin_entry_problem(entry).is_some(), "{entry}");
        }
    }

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
        // A configured name is matched without regard to case too.
        let configured: Vec<String> = vec!["MCP.Example.com".into()];
        assert!(host_allowed(&configured, "mcp.example.com"));
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
