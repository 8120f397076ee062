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
//! 2. the body limit (`Content-Length` over the limit is `413` at once; a chunked body over it is cut off with
//!    `413` once authenticated, when the runner reads it to hold a `tools/call`'s arguments out of rmcp's logs);
//! 3. the request timeout, which bounds the time until the response *head*: a JSON answer (the default, stateless
//!    JSON mode) must be ready within it, while an SSE stream, whose head is sent at once, is never cut off
//!    mid-stream (unless configured, it outlasts the longest tool timeout by [`REQUEST_TIMEOUT_MARGIN`], so that
//!    a call that runs too long gets its own `timeout` refusal);
//! 4. on `/mcp`, bearer authentication (see [`BearerAuth`]): `401` with a challenge naming the protected resource
//!    metadata, which is served unauthenticated at `/.well-known/oauth-protected-resource` (and at its
//!    path-suffixed variant `/.well-known/oauth-protected-resource/mcp`). With mutual TLS instead (feature
//!    `mtls`, `Auth::MutualTls`), the server speaks HTTPS only, the client certificate was verified during the
//!    handshake, and its mapped caller is used; an unmapped certificate is `403` (see the `serve::http::mtls` module).
//!    Bearer tokens can be served over HTTPS too (`HttpSettings::tls`, feature `mtls`), with or without client certificates
//!    required besides the token.
//!
//! Each refusal is audited as an `http_rejected` record, and answered with a JSON-RPC error body that the official
//! SDK clients hand the application (see the `refusal` module: [`REFUSED_CODE`], [`REQUEST_TIMEOUT_CODE`]). A valid
//! token short of a tool's scope reaches the pipeline, which refuses the call (`missing_scope:...`) and writes its
//! one `tool_call` record; the HTTP answer then becomes `403` with an `insufficient_scope` challenge (MCP
//! authorization, Scope Challenge Handling) whose body is a JSON-RPC error carrying the refusal's code (see
//! [`INSUFFICIENT_SCOPE_CODE`]). In session mode (SSE answers) the head is gone before the tool runs, so there the
//! refusal is the tool result alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse as _, Response};
use rmcp::ServerHandler;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

mod authenticate;
pub mod bearer;
mod challenge;
mod connections;
mod drain;
mod forwarded;
mod guard;
mod layer;
#[cfg(feature = "otel")]
mod metrics;
#[cfg(feature = "mtls")]
pub mod mtls;
mod refusal;
mod rejections;
mod sessions;
mod stateless_cancel;

pub(crate) use sessions::Announce;
pub use sessions::{
    MAX_REQUESTS_PER_CALLER, MAX_SESSIONS, MAX_SESSIONS_PER_CALLER, MAX_STREAMS_PER_CALLER,
};

pub use authenticate::INSUFFICIENT_SCOPE_CODE;
pub use bearer::{BearerAuth, KeyError, TokenError, VerificationKeys, VerifiedToken};
pub use challenge::METADATA_PATH;
pub use refusal::{REFUSED_CODE, REQUEST_TIMEOUT_CODE};

/// Answers `200 ok` to `GET`, without authentication (behind the Host and Origin checks): whether the server
/// accepts and answers HTTP requests, for a load balancer or a container's health check. It says nothing else.
pub const HEALTH_PATH: &str = "/healthz";
pub use connections::{BODIES_BUFFERED, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
pub use rejections::DEFAULT_REJECTION_RECORDS;

use self::connections::{ConnectionLimits, Security};
use self::rejections::Rejections;
use super::settings::{
    Auth, HS256_SECRET_VARIABLE, InvalidSetting, ServerArgs, SettingsError, Transport,
};
use super::{SecureServer, Secured, ServeError, Settings, VersionPolicy};
use crate::audit::{AuditEvent, shorten_str};
use crate::call::Rate;
use crate::scope::Grant;
use crate::toolset::ToolSet;

/// How much longer than the longest tool timeout the request timeout is, unless configured: a call past its tool's
/// timeout is answered with its `timeout` refusal (and audited so), before the request timeout answers `408`.
pub const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// How long an HTTP session lives without a request from its client, unless configured otherwise: rmcp's default.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What the HTTP transport is configured with, beyond what every transport shares (see [`Settings`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpSettings {
    /// The address to listen on (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Accepted `Host` values: names, or `name:port` (default: loopback names). Empty turns the check off.
    pub allowed_hosts: Vec<String>,
    /// The reverse proxies (addresses and networks) whose `X-Forwarded-For` names the client: a request from one of
    /// them has its client's address recorded as `forwarded_for` beside the connection's `remote_addr`. Default:
    /// none, and the header is not read.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Accepted browser origins besides loopback ones, as `scheme://host[:port]` (`:*` for any port).
    pub allowed_origins: Vec<String>,
    /// Time allowed until the response head; past it, `408`, and the call is stopped (audited `cancelled`).
    /// `None` (the default): the longest a tool of the set may run, and [`REQUEST_TIMEOUT_MARGIN`], so that a call
    /// that runs too long gets its own `timeout` refusal. A timeout configured no longer than that is warned of at
    /// start.
    pub request_timeout: Option<Duration>,
    /// Time a client has to send a request head, on a new connection or an idle one (default 10 s), and to read
    /// any of an answer the server cannot write further; past it, the connection is closed.
    pub header_read_timeout: Duration,
    /// How many connections may be open at once (default 1024, and never more than the descriptor limit
    /// leaves); past it, the oldest idle connection makes room, or the new one is refused.
    pub max_connections: usize,
    /// How many records of refused requests, failed handshakes and closed connections are written before the
    /// rest are counted instead (default [`DEFAULT_REJECTION_RECORDS`]: 50 at once, then 10 a second); `None`
    /// writes every one.
    pub rejection_records: Option<Rate>,
    /// Stateful sessions with SSE answers (rmcp's session mode) instead of the default stateless JSON answers.
    /// Each session belongs to the identity that opened it.
    pub sessions: bool,
    /// How long a session lives without a request from its client (default [`DEFAULT_SESSION_IDLE_TIMEOUT`],
    /// 5 minutes); then it ends (audited `session_closed`, reason `expired`). Messages the server sends on an open
    /// event stream do not keep it alive.
    pub session_idle_timeout: Duration,
    /// How long the runner goes on serving after a stop is asked for (SIGTERM, SIGINT, or the settings'
    /// cancellation), with `/healthz` answering `503` meanwhile, before the stop begins (default none): time for a
    /// load balancer whose health checks come every few seconds to take the server out before it stops taking
    /// calls. A second signal ends it.
    pub shutdown_delay: Duration,
    /// Serve the call metrics as Prometheus text at `http://{address}/metrics` (feature `otel`), without
    /// authentication, on an address of its own.
    pub metrics: Option<SocketAddr>,
    /// Serve HTTPS with this certificate and key (feature `mtls`), with bearer tokens ([`Auth::Bearer`]); given a
    /// client CA ([`mtls::ServerTls::client_ca`]), only clients with a certificate of it connect, and the caller
    /// is still the token's. Mutual TLS ([`Auth::MutualTls`]) brings its own and leaves this `None`. The runner
    /// serves it; a [`router`] served by a listener of yours cannot, and with a client CA it refuses every request
    /// (`403 missing_client_certificate`), since no certificate can be checked.
    #[cfg(feature = "mtls")]
    pub tls: Option<mtls::ServerTls>,
}

impl HttpSettings {
    /// Listening at `bind`, with defaults for everything else.
    pub fn new(bind: SocketAddr) -> Self {
        HttpSettings {
            bind,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            request_timeout: None,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            rejection_records: Some(DEFAULT_REJECTION_RECORDS),
            sessions: false,
            session_idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
            shutdown_delay: Duration::ZERO,
            metrics: None,
            #[cfg(feature = "mtls")]
            tls: None,
        }
    }
}

/// The HTTP settings and authentication from text settings (see [`ServerArgs`]).
pub(super) async fn resolve(
    mut settings: Settings,
    bind: SocketAddr,
    grant: Grant,
    args: ServerArgs,
) -> Result<Settings, SettingsError> {
    let invalid = |name: &str, message: &str| -> SettingsError {
        InvalidSetting {
            name: name.to_owned(),
            message: message.to_owned(),
        }
        .into()
    };
    let duration = |text: &Option<String>, name: &str| {
        text.as_deref()
            .map(crate::call::parse_duration)
            .transpose()
            .map_err(|message| invalid(name, &message))
    };
    let mut http = HttpSettings::new(bind);
    http.allowed_origins = args.allowed_origins.clone().unwrap_or_default();
    // Any page can send `Origin: null` (from a sandboxed frame, a `data:` page): listed, it would let every page
    // through (red-team finding); and an entry that is no origin matches nothing it seems to.
    for origin in &http.allowed_origins {
        if let Some(problem) = guard::origin_entry_problem(origin) {
            return Err(invalid(
                "--allowed-origin / MCP_ALLOWED_ORIGINS",
                &format!("`{}`: {problem}", origin.escape_debug()),
            ));
        }
    }
    http.allowed_hosts
        .extend(args.allowed_hosts.clone().unwrap_or_default());
    for entry in args.trusted_proxies.iter().flatten() {
        let network = forwarded::parse_trusted(entry)
            .map_err(|message| invalid("--trusted-proxy / MCP_TRUSTED_PROXIES", &message))?;
        if network.prefix_len() == 0 {
            // Every peer a proxy: any client names the address its records carry.
            eprintln!(
                "{}: warning: --trusted-proxy {network}: every {} peer is taken for a proxy, so any client that \
                 reaches the server directly chooses the `forwarded_for` its records carry; list the proxies' own \
                 addresses",
                super::program_name(),
                if network.addr().is_ipv4() {
                    "IPv4"
                } else {
                    "IPv6"
                },
            );
        }
        http.trusted_proxies.push(network);
    }
    http.sessions = args.http_sessions.unwrap_or(false);
    if let Some(idle) = duration(
        &args.http_session_idle,
        "--http-session-idle / MCP_HTTP_SESSION_IDLE",
    )? {
        if !http.sessions {
            return Err(invalid(
                "--http-session-idle / MCP_HTTP_SESSION_IDLE",
                "only applies with --http-sessions",
            ));
        }
        http.session_idle_timeout = idle;
    }
    if let Some(timeout) = duration(
        &args.http_header_timeout,
        "--http-header-timeout / MCP_HTTP_HEADER_TIMEOUT",
    )? {
        http.header_read_timeout = timeout;
    }
    if let Some(delay) = duration(
        &args.shutdown_delay,
        "--shutdown-delay / MCP_SHUTDOWN_DELAY",
    )? {
        http.shutdown_delay = delay;
    }
    if let Some(timeout) = duration(
        &args.http_request_timeout,
        "--http-request-timeout / MCP_HTTP_REQUEST_TIMEOUT",
    )? {
        http.request_timeout = Some(timeout);
    }
    if let Some(metrics) = args.http_metrics {
        if !cfg!(feature = "otel") {
            return Err(invalid(
                "--http-metrics / MCP_HTTP_METRICS",
                "this server is built without the `otel` feature",
            ));
        }
        // Unauthenticated, as documented: on every address, to every network the host is on (red-team finding:
        // nothing said so, where `--http` refuses that without authentication).
        // (`[::ffff:0.0.0.0]` is every IPv4 address too: a review's.)
        let every_address = match metrics.ip() {
            std::net::IpAddr::V6(ip) => {
                ip.is_unspecified() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_unspecified())
            }
            ip => ip.is_unspecified(),
        };
        if every_address {
            eprintln!(
                "{}: warning: --http-metrics {metrics}: the metrics (the tools' names, their calls and refusals) are \
                 served without authentication on every address; bind a loopback address, or one only the scraper \
                 reaches",
                super::program_name()
            );
        }
        http.metrics = Some(metrics);
    }
    if let Some(max) = args.http_max_connections {
        if max == 0 {
            return Err(invalid(
                "--http-max-connections / MCP_HTTP_MAX_CONNECTIONS",
                "must be at least 1",
            ));
        }
        http.max_connections = max;
    }
    // A secret that is not UTF-8 is an error, not no secret (red-team finding: it was taken for none, and another
    // key source given beside it served alone).
    let secret = match std::env::var(HS256_SECRET_VARIABLE) {
        Ok(secret) => Some(secret).filter(|s| !s.is_empty()),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(invalid(
                HS256_SECRET_VARIABLE,
                "is not UTF-8: give the secret as text (or in a file, --hs256-secret-file)",
            ));
        }
    };
    let bearer_given = args.issuer.is_some()
        || args.resource_url.is_some()
        || args.jwks_file.is_some()
        || args.jwks_url.is_some()
        || args.public_key_pem.is_some()
        || args.hs256_secret_file.is_some()
        || secret.is_some();
    let tls_given = args.tls_cert.is_some()
        || args.tls_key.is_some()
        || args.client_ca.is_some()
        || args.client_crl.is_some();
    let mapping_given = args.mtls_clients.is_some();
    // A grant from the settings is the one of callers that present nothing: with authentication, a caller's grant
    // is its token's scopes or its certificate's mapping, so one given here would be ignored (operator trial
    // finding: it was, silently).
    if args.http_insecure_no_auth != Some(true)
        && args.scopes.as_deref().is_some_and(|s| !s.trim().is_empty())
    {
        return Err(invalid(
            "--scopes / MCP_SCOPES",
            "only applies over stdio or with --http-insecure-no-auth: over authenticated HTTP a caller's grant is \
             its token's scopes (or its --mtls-client mapping)",
        ));
    }
    settings.auth = if args.http_insecure_no_auth == Some(true) {
        if !bind.ip().is_loopback() {
            return Err(invalid(
                "--http-insecure-no-auth",
                "only binds a loopback address (127.0.0.1, ::1)",
            ));
        }
        if bearer_given || tls_given || mapping_given {
            return Err(invalid(
                "--http-insecure-no-auth",
                "takes no bearer, TLS or mutual TLS options",
            ));
        }
        // Another `Host` is what a reverse proxy forwarding the world to the loopback address sends (red-team
        // finding: a public name was taken).
        if let Some(host) = args
            .allowed_hosts
            .iter()
            .flatten()
            .find(|host| !is_loopback(guard::split_authority(host).0))
        {
            return Err(invalid(
                "--allowed-host / MCP_ALLOWED_HOSTS",
                &format!(
                    "`{}`: with --http-insecure-no-auth only loopback names are served (localhost, 127.0.0.1, \
                     ::1): a public name is a proxy's way in to a server with no authentication",
                    host.escape_debug()
                ),
            ));
        }
        eprintln!(
            "{}: warning: --http-insecure-no-auth is for testing only: no authentication, every caller is \
             anonymous with the scopes `{grant}`",
            super::program_name()
        );
        Auth::None { grant }
    } else if mapping_given {
        if bearer_given {
            return Err(invalid(
                "--http",
                "give bearer authentication (--issuer and a key) or mutual TLS's callers (--mtls-client), not both: \
                 with bearer tokens the caller is the token's (--tls-cert, --tls-key and --client-ca then only \
                 secure the connection)",
            ));
        }
        mtls_auth(&args)?
    } else if bearer_given || !tls_given {
        let auth = bearer_auth(&args, secret).await?;
        if tls_given {
            http_tls(&args, &mut http)?;
        }
        auth
    } else {
        return Err(invalid(
            tls_option_given(&args),
            "TLS needs callers: bearer authentication (--issuer, --resource-url and a key), or mutual TLS with at \
             least one --mtls-client NAME=SCOPES (MCP_MTLS_CLIENTS)",
        ));
    };
    // The resource URL names where clients reach the server: its host is served, besides loopback and
    // `--allowed-host` (red-team finding: the container recipe's `https://files.example/mcp`, bound to `0.0.0.0`,
    // refused every request for that host `403 host_not_allowed`, while its health check passed on loopback).
    if let Some(host) = args
        .resource_url
        .as_deref()
        .and_then(|url| url.parse::<axum::http::Uri>().ok())
        .and_then(|uri| uri.host().map(str::to_owned))
        && !guard::host_allowed(&http.allowed_hosts, &host)
    {
        http.allowed_hosts.push(host);
    }
    settings.transport = Transport::Http(http);
    if args.shutdown_grace.is_none() {
        settings.shutdown_grace = super::settings::DEFAULT_SHUTDOWN_GRACE;
    }
    Ok(settings)
}

/// The resource URL is where clients reach the server: the challenges point them to its protected resource
/// metadata under it, and the clients check the metadata's `resource` against the URL they used (RFC 9728 section
/// 3.3). An identifier that is not such a URL (`api://APP_ID`, an audience) would break discovery for every client:
/// it goes in `--token-audience`. `https://`, or `http://` to a loopback host (a local test, or behind a proxy on
/// the same host).
fn check_resource_url(url: &str) -> Result<(), String> {
    // As shown in a refusal: without the credentials it may carry (red-team finding: they were printed whole).
    let shown = crate::serve::settings::masked_url(url);
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|_| format!("`{}` is not a URL", shown.escape_debug()))?;
    // The resource URL is published (the tokens' audience, the metadata clients read): it carries no credentials.
    no_credentials(url, "the resource URL")?;
    // RFC 8707 section 2: a resource indicator has no fragment (red-team finding: one was published).
    if url.contains('#') {
        return Err(format!(
            "`{}` has a fragment (`#...`): a resource URL has none (RFC 8707); remove it",
            shown.split('#').next().unwrap_or_default().escape_debug()
        ));
    }
    let host = uri.host().unwrap_or_default();
    let loopback = is_loopback(host);
    match uri.scheme_str() {
        _ if host.is_empty() => Err(format!(
            "`{}` names no host: give the URL clients reach this server at (an audience that is not one goes in \
             --token-audience)",
            shown.escape_debug()
        )),
        Some("https") => Ok(()),
        Some("http") if loopback => Ok(()),
        Some("http") => Err(
            "plain http is taken for a loopback host only (tokens would cross the network in clear); use https"
                .into(),
        ),
        _ => Err(format!(
            "`{}` is not an https URL: give the URL clients reach this server at (an audience that is not one goes \
             in --token-audience)",
            shown.escape_debug()
        )),
    }
}

/// The shortest maximum age of a JWKS URL's keys the settings take.
const MIN_JWKS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// An identifier a token's claim is compared with exactly (the issuer, an audience) or one published (an
/// authorization server): not empty, and without spaces or controls around it, which no provider puts in a claim
/// (red-team finding: an empty audience in the list accepted tokens naming `aud: ""`, an empty issuer `iss: ""`).
fn exact_identifier(value: &str, what: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.trim() != value || value.chars().any(char::is_control) {
        return Err(format!(
            "{what} `{}` has spaces or control characters: it is compared with tokens' claims exactly",
            crate::serve::settings::masked_url(value).escape_debug()
        ));
    }
    Ok(())
}

/// Refuses a URL the server publishes (`what`) that carries credentials (`user:password@`), shown masked (red-team
/// findings: a resource URL's, then an issuer's and an authorization server's, were published to every client).
fn no_credentials(url: &str, what: &str) -> Result<(), String> {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    match authority.contains('@') {
        true => Err(format!(
            "`{}` carries credentials (`user:password@`): {what} is published to every client; remove them",
            crate::serve::settings::masked_url(url).escape_debug()
        )),
        false => Ok(()),
    }
}

/// The length of the HTTP body a request came in, as its client declared it (`Content-Length`), from the request
/// parts rmcp keeps in a message's extensions; `None` off HTTP or without the header.
pub(crate) fn declared_body_length(extensions: &rmcp::model::Extensions) -> Option<usize> {
    extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.headers.get(axum::http::header::CONTENT_LENGTH))
        .and_then(|value| value.to_str().ok()?.parse().ok())
}

/// Whether a URL's host is this machine: `localhost`, or a loopback address (IPv6 in brackets or not).
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Bearer authentication from the issuer, resource URL and exactly one key source.
async fn bearer_auth(args: &ServerArgs, secret: Option<String>) -> Result<Auth, SettingsError> {
    let invalid = |name: &str, message: String| -> SettingsError {
        InvalidSetting {
            name: name.to_owned(),
            message,
        }
        .into()
    };
    let issuer = args.issuer.clone().ok_or_else(|| {
        invalid(
            "--issuer / MCP_AUTH_ISSUER",
            "required with --http (or mutual TLS)".into(),
        )
    })?;
    let resource = args.resource_url.clone().ok_or_else(|| {
        invalid(
            "--resource-url / MCP_RESOURCE_URL",
            "required with --http".into(),
        )
    })?;
    check_resource_url(&resource)
        .map_err(|reason| invalid("--resource-url / MCP_RESOURCE_URL", reason))?;
    // The issuer and the authorization servers are published too, in the protected resource metadata.
    no_credentials(&issuer, "the issuer")
        .map_err(|reason| invalid("--issuer / MCP_AUTH_ISSUER", reason))?;
    exact_identifier(&issuer, "the issuer")
        .map_err(|reason| invalid("--issuer / MCP_AUTH_ISSUER", reason))?;
    for server in args.authorization_servers.iter().flatten() {
        let named = "--authorization-server / MCP_AUTHORIZATION_SERVERS";
        no_credentials(server, "an authorization server")
            .map_err(|reason| invalid(named, reason))?;
        exact_identifier(server, "an authorization server")
            .map_err(|reason| invalid(named, reason))?;
    }
    for audience in args.token_audiences.iter().flatten() {
        exact_identifier(audience, "an audience")
            .map_err(|reason| invalid("--token-audience / MCP_AUTH_AUDIENCES", reason))?;
    }
    let sources = [
        args.jwks_url.is_some(),
        args.jwks_file.is_some(),
        args.public_key_pem.is_some(),
        args.hs256_secret_file.is_some(),
        secret.is_some(),
    ];
    let one_of = format!(
        "--jwks-url, --jwks-file, --public-key-pem, --hs256-secret-file or {HS256_SECRET_VARIABLE}"
    );
    match sources.iter().filter(|given| **given).count() {
        0 => {
            return Err(invalid(
                "--http",
                format!("needs a key to verify tokens: {one_of}"),
            ));
        }
        1 => {}
        _ => {
            return Err(invalid(
                "--http",
                format!("give exactly one key source: {one_of}"),
            ));
        }
    }
    if args.jwks_ca.is_some() && args.jwks_url.is_none() {
        return Err(invalid(
            "--jwks-ca / MCP_AUTH_JWKS_CA",
            "only applies with --jwks-url".into(),
        ));
    }
    let max_age_name = "--jwks-max-age / MCP_AUTH_JWKS_MAX_AGE";
    let max_age = args
        .jwks_max_age
        .as_deref()
        .map(crate::call::parse_duration)
        .transpose()
        .map_err(|message| invalid(max_age_name, message))?;
    if max_age.is_some() && args.jwks_url.is_none() {
        return Err(invalid(max_age_name, "only applies with --jwks-url".into()));
    }
    // Keys older than this are fetched again as a request comes: below a second, every request (a token of
    // garbage included) could start a fetch of the provider's JWKS (red-team finding).
    if max_age.is_some_and(|age| age < MIN_JWKS_MAX_AGE) {
        return Err(invalid(
            max_age_name,
            "must be at least a second: keys older than this are fetched again as requests come"
                .into(),
        ));
    }
    let read = |path: &std::path::Path, name: &str| {
        crate::operator_file::read_bounded(
            path,
            crate::operator_file::MAX_SETTINGS_FILE,
            "a key file",
        )
        .map_err(|e| invalid(name, format!("{}: {e}", path.display())))
    };
    let keys = if let Some(url) = &args.jwks_url {
        #[cfg(feature = "jwks")]
        {
            let ca = match &args.jwks_ca {
                Some(path) => read(path, "--jwks-ca / MCP_AUTH_JWKS_CA")?,
                None => Vec::new(),
            };
            let keys = VerificationKeys::jwks_url_with_ca(url, &ca)
                .await
                .map_err(|e| invalid("--jwks-url / MCP_AUTH_JWKS_URL", e.to_string()))?;
            match max_age {
                Some(max_age) => keys.max_age(max_age),
                None => keys,
            }
        }
        #[cfg(not(feature = "jwks"))]
        {
            let _ = url;
            return Err(invalid(
                "--jwks-url / MCP_AUTH_JWKS_URL",
                "this server is built without the `jwks` feature".into(),
            ));
        }
    } else if let Some(path) = &args.jwks_file {
        VerificationKeys::jwks_file(path).map_err(|e| {
            let name = "--jwks-file / MCP_AUTH_JWKS_FILE";
            match e {
                // Its message names the file already.
                bearer::KeyError::Read { .. } => invalid(name, e.to_string()),
                e => invalid(name, format!("{}: {e}", path.display())),
            }
        })?
    } else if let Some(path) = &args.public_key_pem {
        let name = "--public-key-pem / MCP_AUTH_PUBLIC_KEY_PEM";
        VerificationKeys::public_key_pem(&read(path, name)?)
            .map_err(|e| invalid(name, format!("{}: {e}", path.display())))?
    } else if let Some(path) = &args.hs256_secret_file {
        let name = "--hs256-secret-file / MCP_AUTH_HS256_SECRET_FILE";
        super::settings::warn_if_readable_by_others(path, name);
        let text = crate::operator_file::read_bounded(
            path,
            crate::operator_file::MAX_SETTINGS_FILE,
            "a secret file",
        )
        .map_err(|e| invalid(name, format!("{}: {e}", path.display())))?;
        VerificationKeys::hmac_secret(crate::operator_file::without_final_line_break(&text))
            .map_err(|e| invalid(name, e.to_string()))?
    } else {
        VerificationKeys::hmac_secret(secret.unwrap_or_default().as_bytes())
            .map_err(|e| invalid(HS256_SECRET_VARIABLE, e.to_string()))?
    };
    let mut auth = BearerAuth::new(issuer, resource, keys);
    if let Some(audiences) = &args.token_audiences {
        auth = auth.audiences(audiences.clone());
    }
    if let Some(servers) = &args.authorization_servers {
        auth = auth.authorization_servers(servers.clone());
    }
    if let Some(claims) = &args.scope_claims {
        auth = auth.scope_claims(claims.clone());
    }
    if let Some(scopes) = &args.challenge_scopes {
        let scopes = scopes
            .iter()
            .map(|scope| crate::scope::Scope::new(scope.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                invalid(
                    "--challenge-scope / MCP_AUTH_CHALLENGE_SCOPES",
                    e.to_string(),
                )
            })?;
        auth = auth.challenge_scopes(scopes);
    }
    if args.require_at_jwt == Some(true) {
        auth = auth.require_access_token_type(true);
    }
    Ok(Auth::Bearer(auth))
}

/// The settings naming the server's certificate and key, for an error in either.
#[cfg(feature = "mtls")]
const CERT_AND_KEY: &str = "--tls-cert / MCP_TLS_CERT, --tls-key / MCP_TLS_KEY";

/// An error of the TLS files `name` names, as that setting's.
#[cfg(feature = "mtls")]
fn named(name: &'static str) -> impl Fn(mtls::MtlsError) -> SettingsError {
    move |error| {
        InvalidSetting {
            name: name.into(),
            message: error.to_string(),
        }
        .into()
    }
}

/// The first TLS option given, to name in a refusal of TLS settings that are incomplete.
fn tls_option_given(args: &ServerArgs) -> &'static str {
    [
        (args.tls_cert.is_some(), "--tls-cert / MCP_TLS_CERT"),
        (args.tls_key.is_some(), "--tls-key / MCP_TLS_KEY"),
        (args.client_ca.is_some(), "--client-ca / MCP_TLS_CLIENT_CA"),
        (
            args.client_crl.is_some(),
            "--client-crl / MCP_TLS_CLIENT_CRL",
        ),
    ]
    .into_iter()
    .find_map(|(given, name)| given.then_some(name))
    .unwrap_or("--tls-cert / MCP_TLS_CERT")
}

/// Mutual TLS from the certificate, key, client CA and client mappings.
#[cfg(feature = "mtls")]
fn mtls_auth(args: &ServerArgs) -> Result<Auth, SettingsError> {
    let invalid = |message: &str| -> SettingsError {
        InvalidSetting {
            name: tls_option_given(args).into(),
            message: message.to_owned(),
        }
        .into()
    };
    let (Some(cert), Some(key), Some(ca)) = (&args.tls_cert, &args.tls_key, &args.client_ca) else {
        return Err(invalid(
            "mutual TLS needs all of --tls-cert, --tls-key and --client-ca",
        ));
    };
    super::settings::warn_if_readable_by_others(key, "--tls-key / MCP_TLS_KEY");
    let clients = args.mtls_clients.clone().unwrap_or_default();
    if clients.is_empty() {
        return Err(invalid(
            "mutual TLS needs at least one --mtls-client NAME=SCOPES (MCP_MTLS_CLIENTS)",
        ));
    }
    let mut mappings = Vec::with_capacity(clients.len());
    for spec in &clients {
        mappings.push(mtls::MtlsAuth::parse_client(spec)?);
    }
    mtls::check_mappings(&mappings)?;
    let mut auth = mtls::MtlsAuth::from_pem_files(cert, key, ca).map_err(named(
        "--tls-cert / MCP_TLS_CERT, --tls-key / MCP_TLS_KEY, --client-ca / MCP_TLS_CLIENT_CA",
    ))?;
    if let Some(crl) = &args.client_crl {
        auth = auth
            .revocation_lists_file(crl)
            .map_err(named("--client-crl / MCP_TLS_CLIENT_CRL"))?;
    }
    for (name, grant) in mappings {
        auth = auth.client(name, grant);
    }
    Ok(Auth::MutualTls(auth))
}

/// HTTPS for bearer tokens: the certificate and key, and a client CA (and its lists) if given.
#[cfg(feature = "mtls")]
fn http_tls(args: &ServerArgs, http: &mut HttpSettings) -> Result<(), SettingsError> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Err(InvalidSetting {
            name: tls_option_given(args).into(),
            message: "TLS needs both --tls-cert and --tls-key".into(),
        }
        .into());
    };
    if args.client_crl.is_some() && args.client_ca.is_none() {
        return Err(InvalidSetting {
            name: "--client-crl / MCP_TLS_CLIENT_CRL".into(),
            message: "only applies with --client-ca".into(),
        }
        .into());
    }
    super::settings::warn_if_readable_by_others(key, "--tls-key / MCP_TLS_KEY");
    let mut tls = mtls::ServerTls::from_pem_files(cert, key).map_err(named(CERT_AND_KEY))?;
    if let Some(ca) = &args.client_ca {
        tls = tls
            .client_ca_file(ca)
            .map_err(named("--client-ca / MCP_TLS_CLIENT_CA"))?;
    }
    if let Some(crl) = &args.client_crl {
        tls = tls
            .revocation_lists_file(crl)
            .map_err(named("--client-crl / MCP_TLS_CLIENT_CRL"))?;
    }
    http.tls = Some(tls);
    Ok(())
}

#[cfg(not(feature = "mtls"))]
fn http_tls(_: &ServerArgs, _: &mut HttpSettings) -> Result<(), SettingsError> {
    Err(InvalidSetting {
        name: "--tls-cert".into(),
        message: "this server is built without the `mtls` feature".into(),
    }
    .into())
}

#[cfg(not(feature = "mtls"))]
fn mtls_auth(_: &ServerArgs) -> Result<Auth, SettingsError> {
    Err(InvalidSetting {
        name: "--tls-cert".into(),
        message: "this server is built without the `mtls` feature".into(),
    }
    .into())
}

/// Serves over HTTP as `settings` say, until the lifecycle stops it: binds, then runs the lifecycle around the
/// connections.
pub(super) async fn run<S, H, F>(
    settings: &Settings,
    http: &HttpSettings,
    tools: ToolSet<S>,
    secure: SecureServer<S>,
    make: F,
) -> Result<(), ServeError>
where
    S: Send + Sync + 'static,
    H: ServerHandler + Clone,
    F: Fn(SecureServer<S>) -> H + Send + Sync + 'static,
{
    if matches!(settings.auth, Auth::None { .. }) && !http.bind.ip().is_loopback() {
        return Err(ServeError::Config(
            "HTTP without authentication binds a loopback address only".into(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(http.bind)
        .await
        .map_err(|e| ServeError::Config(format!("--http / MCP_HTTP {}: {e}", http.bind)))?;
    let address = listener.local_addr()?;
    let audit = tools.audit().clone();
    let rejections = Rejections::new(audit, http.rejection_records);
    #[cfg(feature = "otel")]
    let rejections = rejections.counting(tools.telemetry().cloned());
    let rejections = Arc::new(rejections);
    #[cfg(feature = "otel")]
    let metrics = match (http.metrics, &settings.otel) {
        (Some(bind), Some(otel)) => Some(
            metrics::Endpoint::bind(bind, otel.clone(), http.allowed_hosts.clone())
                .await
                .map_err(|e| {
                    ServeError::Config(format!("--http-metrics / MCP_HTTP_METRICS {bind}: {e}"))
                })?,
        ),
        (Some(_), None) => {
            return Err(ServeError::Config(
                "--http-metrics / MCP_HTTP_METRICS: the metrics come from OpenTelemetry, which \
                 OTEL_SDK_DISABLED turns off"
                    .into(),
            ));
        }
        (None, _) => None,
    };
    #[cfg(feature = "mtls")]
    if matches!(settings.auth, Auth::MutualTls(_)) && http.tls.is_some() {
        return Err(ServeError::Config(
            "mutual TLS brings its listener's TLS (MtlsAuth::tls); HttpSettings::tls is for bearer tokens".into(),
        ));
    }
    #[cfg(feature = "mtls")]
    let security =
        listener_tls(settings, http).map_or(Security::Plain, |tls| Security::Tls(tls.clone()));
    #[cfg(not(feature = "mtls"))]
    let security = Security::Plain;
    #[cfg(feature = "otel")]
    let shared = if metrics.is_some() {
        metrics::MAX_CONNECTIONS
    } else {
        0
    };
    #[cfg(not(feature = "otel"))]
    let shared = 0;
    let limits = ConnectionLimits {
        max_connections: http.max_connections,
        header_read_timeout: http.header_read_timeout,
        shared,
        max_buffered_body_bytes: settings
            .max_message_bytes
            .saturating_mul(connections::BODIES_BUFFERED),
    };
    let served = tools.clone();
    super::lifecycle::run(&tools, "http", settings, None, move |stop| async move {
        // rmcp's service ends once the connections have sent their answers (or after `connections::STOP_WAIT`,
        // 5 s, for a request that is not a call and does not finish), not at the stop: ending it cuts the answer
        // of a call that has just finished (`500 no response message received from handler`) though the call ran
        // and was audited.
        let protocol = CancellationToken::new();
        let _end_protocol = protocol.clone().drop_guard();
        let (app, sessions) = router_with(
            &served,
            secure,
            make,
            settings,
            rejections.clone(),
            protocol.clone(),
        );
        match &security {
            Security::Plain => {
                eprintln!(
                    "{}: serving MCP over HTTP at http://{address}/mcp",
                    super::program_name()
                );
            }
            #[cfg(feature = "mtls")]
            Security::Tls(tls) => {
                let how = match (&settings.auth, tls.requires_client_certificates()) {
                    (Auth::MutualTls(_), _) => "mutual TLS",
                    (Auth::None { .. }, _) => "no authentication",
                    (_, true) => "bearer tokens, from clients with certificates",
                    (_, false) => "bearer tokens",
                };
                eprintln!(
                    "{}: serving MCP over HTTPS at https://{address}/mcp ({how})",
                    super::program_name()
                );
            }
        }
        // The metrics address, open to whoever reaches it, has a throttle of its own: a flood of its refusals
        // would otherwise keep the MCP endpoint's refusals out of the audit (red-team finding).
        #[cfg(feature = "otel")]
        let metrics_rejections = Arc::new(
            Rejections::new(served.audit().clone(), http.rejection_records)
                .counting(served.telemetry().cloned()),
        );
        #[cfg(feature = "otel")]
        let metrics = metrics.map(|endpoint| {
            tokio::spawn(endpoint.serve(
                limits.header_read_timeout,
                metrics_rejections.clone(),
                stop.clone(),
            ))
        });
        // The counts of refusals left unwritten go out every few seconds, not only before the next record written:
        // after a flood, nothing else may come, and a process killed would lose them.
        let counts = tokio::spawn({
            let rejections = rejections.clone();
            #[cfg(feature = "otel")]
            let metrics_rejections = metrics_rejections.clone();
            async move {
                let mut ticks = tokio::time::interval(rejections::FLUSH_COUNTS_EVERY);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    rejections.flush_counts();
                    #[cfg(feature = "otel")]
                    metrics_rejections.flush_counts();
                }
            }
        });
        let served =
            connections::serve(listener, security, app, limits, rejections.clone(), stop).await;
        counts.abort();
        #[cfg(feature = "otel")]
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        // Sessions still open end with the server, on record before its stop record (rmcp ends their services
        // after this; a session's end told of then is not recorded again).
        sessions.close_all("shutdown");
        rejections.flush_counts();
        #[cfg(feature = "otel")]
        metrics_rejections.flush_counts();
        served.map(|()| "stopped").map_err(ServeError::from)
    })
    .await
}

/// The axum application serving `tools` as `settings` say: `/mcp` and the protected resource metadata, behind the
/// checks described in the [module docs](self). For embedding in an application of your own (which then serves
/// connections itself, without this runner's connection bounds or TLS); the runners serve it for you. Client
/// certificates cannot be checked on connections this crate did not accept: with mutual TLS, or a client CA in
/// `HttpSettings::tls` (feature `mtls`), every request to `/mcp` is refused `403 missing_client_certificate`.
pub fn router<S: Send + Sync + 'static>(tools: &ToolSet<S>, settings: &Settings) -> Router {
    router_for(tools, settings, |secure| secure)
}

/// [`router`] for a server of your own (see [`Settings::serve_with`]).
pub fn router_for<S, H, F>(tools: &ToolSet<S>, settings: &Settings, make: F) -> Router
where
    S: Send + Sync + 'static,
    H: ServerHandler + Clone,
    F: Fn(SecureServer<S>) -> H + Send + Sync + 'static,
{
    let rejections = Rejections::new(
        tools.audit().clone(),
        http_settings(settings).rejection_records,
    );
    #[cfg(feature = "otel")]
    let rejections = rejections.counting(tools.telemetry().cloned());
    let rejections = Arc::new(rejections);
    let secure = super::lifecycle::secure_server(tools, settings);
    router_with(
        tools,
        secure,
        make,
        settings,
        rejections,
        settings.cancellation.clone(),
    )
    .0
}

fn http_settings(settings: &Settings) -> HttpSettings {
    match &settings.transport {
        Transport::Http(http) => http.clone(),
        Transport::Stdio => HttpSettings::new(SocketAddr::from(([127, 0, 0, 1], 0))),
    }
}

fn router_with<S, H, F>(
    tools: &ToolSet<S>,
    secure: SecureServer<S>,
    make: F,
    settings: &Settings,
    rejections: Arc<Rejections>,
    stop: CancellationToken,
) -> (Router, Arc<sessions::Owners>)
where
    S: Send + Sync + 'static,
    H: ServerHandler + Clone,
    F: Fn(SecureServer<S>) -> H + Send + Sync + 'static,
{
    let http = http_settings(settings);
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(http.session_idle_timeout);
    if http.sessions && http.session_idle_timeout <= longest_tool_timeout(tools) {
        // rmcp's keep-alive runs while a call is in progress: the session would end under a call that runs long.
        tracing::warn!(
            session_idle = ?http.session_idle_timeout,
            tool_timeout = ?longest_tool_timeout(tools),
            "--http-session-idle / MCP_HTTP_SESSION_IDLE is not above the tool timeout: a session ends under a \
             call that runs past it, and the call's answer is lost"
        );
    }
    let sessions = Arc::new(sessions);
    let allowed_origins: Vec<String> = http
        .allowed_origins
        .iter()
        .map(|o| guard::normalized_origin(o))
        .filter(|origin| {
            // The origin any page can send, or no origin: never an allowed one (the runner's settings refuse it).
            let problem = guard::origin_entry_problem(origin);
            if let Some(problem) = problem {
                tracing::warn!(entry = %origin.escape_debug(), "an allowed origin is ignored: {problem}");
            }
            problem.is_none()
        })
        .collect();
    let shared = Arc::new(Shared {
        cors: guard::cors(allowed_origins.clone()),
        rejections,
        audit: tools.audit().clone(),
        auth: match &settings.auth {
            Auth::Bearer(auth) => Some(auth.clone()),
            _ => None,
        },
        #[cfg(feature = "mtls")]
        mtls: match &settings.auth {
            Auth::MutualTls(mtls) => Some(mtls.clone()),
            _ => None,
        },
        #[cfg(feature = "mtls")]
        client_certificates: listener_tls(settings, &http)
            .filter(|tls| tls.requires_client_certificates())
            .cloned(),
        // Compared without regard to ASCII case (`guard::host_allowed`).
        allowed_hosts: http.allowed_hosts.clone(),
        trusted_proxies: http.trusted_proxies.clone().into(),
        allowed_origins,
        max_request_body_bytes: settings.max_message_bytes,
        request_timeout: request_timeout(http.request_timeout, longest_tool_timeout(tools)),
        scopes_supported: challenge::scopes_supported(tools.all_scopes()),
        sessions: http.sessions,
        versions: settings.versions.clone(),
        owners: Arc::new(sessions::Owners::new(
            sessions.clone(),
            tools.audit().clone(),
        )),
        stateless_calls: Arc::default(),
        shutting_down: {
            let tools = tools.clone();
            Arc::new(move || tools.is_shutting_down())
        },
    });
    // Host and Origin are checked, and refusals audited, by `guard`, which every request to the endpoint passes
    // first; rmcp's own checks are off. Its Host check would refuse nothing the guard lets through (the same
    // allowlist, matched the same way), unaudited, and cost a microsecond a request (the Host header parsed and
    // every allowed host parsed and lowercased again). Its Origin check could not express the guard's rule (loopback
    // origins on any port).
    let rmcp_config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_max_request_body_bytes(settings.max_message_bytes)
        .with_legacy_session_mode(http.sessions)
        .with_json_response(!http.sessions)
        .with_cancellation_token(stop.child_token());
    let stateless = !http.sessions;
    let service = StreamableHttpService::new(
        // Called per session (or per request, when stateless): each gets its own session state.
        move || {
            let session = secure.for_session();
            let handler = Secured::new(make(session.clone()), session);
            Ok(if stateless {
                handler.stateless()
            } else {
                handler
            })
        },
        // Each session bound to its owner as it is made.
        Arc::new(sessions::Bound::new(sessions, shared.owners.clone())),
        rmcp_config,
    );
    let mut app = Router::new()
        // The endpoint alone, not nested: nesting strips a prefix and sets a nested path on every request for
        // subpaths the protocol does not have.
        .route_service("/mcp", McpEndpoint(Arc::new(service)))
        .layer(layer::Middleware::new(
            shared.clone(),
            authenticate::authenticate,
        ));
    // For a load balancer's or a container's health check: no authentication, nothing about the server. `503`
    // once a stop is asked for (during the shutdown delay, while calls are still taken) and while it goes on, so
    // that a balancer takes the server out while its calls finish (red-team finding: it kept sending calls, which
    // were refused `shutting_down`); and while every call would be refused for want of the Redis the set's rate is
    // kept in (a replica cut off from it took its share of the traffic and refused it all).
    let health_tools = tools.clone();
    app = app.route(
        HEALTH_PATH,
        axum::routing::get(move || {
            let tools = health_tools.clone();
            async move {
                match tools.unready().await {
                    Some(why) => {
                        (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
                    }
                    None => "ok\n".into_response(),
                }
            }
        }),
    );
    if shared.auth.is_some() {
        app = app.merge(
            Router::new()
                .route(METADATA_PATH, axum::routing::get(authenticate::metadata))
                .route(
                    &format!("{METADATA_PATH}/mcp"),
                    axum::routing::get(authenticate::metadata),
                )
                .with_state(shared.clone()),
        );
    }
    let owners = shared.owners.clone();
    (
        app.layer(layer::Middleware::new(shared, guard::guard)),
        owners,
    )
}

/// The TLS the listener serves: mutual TLS's, or the one set for bearer tokens.
#[cfg(feature = "mtls")]
fn listener_tls<'a>(settings: &'a Settings, http: &'a HttpSettings) -> Option<&'a mtls::ServerTls> {
    match &settings.auth {
        Auth::MutualTls(mtls) => Some(mtls.tls()),
        _ => http.tls.as_ref(),
    }
}

/// The longest a call of `tools` may run: the set's timeout, or a tool's own if longer.
fn longest_tool_timeout<S>(tools: &ToolSet<S>) -> Duration {
    tools
        .inner
        .tools
        .values()
        .filter_map(|tool| tool.entry.timeout)
        .fold(tools.inner.timeout, Duration::max)
}

/// The request timeout in effect: the one `configured`, or the `longest` tool timeout and a margin (see
/// [`HttpSettings::request_timeout`]). A configured one no longer than the longest tool timeout is warned of: a
/// stateless client would get `408` where the call would have had its own `timeout` refusal.
fn request_timeout(configured: Option<Duration>, longest: Duration) -> Duration {
    match configured {
        Some(timeout) => {
            if timeout <= longest {
                tracing::warn!(
                    request_timeout = ?timeout,
                    tool_timeout = ?longest,
                    "--http-request-timeout / MCP_HTTP_REQUEST_TIMEOUT is not above the tool timeout: a call that \
                     runs past it is answered 408 and audited `cancelled`, not refused `timeout`"
                );
            }
            timeout
        }
        None => longest.saturating_add(REQUEST_TIMEOUT_MARGIN),
    }
}

/// rmcp's streamable HTTP service, shared: the router and each middleware layer clone their inner service for
/// every request, and a clone of rmcp's service copies its whole configuration and counts several references; a
/// clone of this is one reference count.
struct McpEndpoint<S, M>(Arc<StreamableHttpService<S, M>>);

impl<S, M> Clone for McpEndpoint<S, M> {
    fn clone(&self) -> Self {
        McpEndpoint(self.0.clone())
    }
}

impl<B, S, M> tower::Service<axum::http::Request<B>> for McpEndpoint<S, M>
where
    B: axum::body::HttpBody + Send + 'static,
    B::Error: std::fmt::Display,
    B::Data: Send + 'static,
    S: ServerHandler + Send + 'static,
    M: rmcp::transport::streamable_http_server::SessionManager,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, std::convert::Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // As rmcp's service: always ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { Ok(service.handle(request).await.map(axum::body::Body::new)) })
    }
}

struct Shared {
    rejections: Arc<Rejections>,
    audit: crate::audit::Audit,
    auth: Option<BearerAuth>,
    #[cfg(feature = "mtls")]
    mtls: Option<mtls::MtlsAuth>,
    /// The listener's TLS when it requires client certificates (mutual TLS, or bearer tokens from clients with
    /// certificates): a connection's certificate is checked again before each request and stream message.
    #[cfg(feature = "mtls")]
    client_certificates: Option<mtls::ServerTls>,
    allowed_hosts: Vec<String>,
    /// `HttpSettings::trusted_proxies`.
    trusted_proxies: Arc<[ipnet::IpNet]>,
    allowed_origins: Vec<String>,
    /// The CORS answer to a browser on an allowed origin (see `guard`).
    cors: tower_http::cors::CorsLayer,
    max_request_body_bytes: usize,
    request_timeout: Duration,
    scopes_supported: Vec<String>,
    sessions: bool,
    versions: VersionPolicy,
    owners: Arc<sessions::Owners>,
    /// The calls in progress without a session, for their clients' cancellations.
    stateless_calls: Arc<stateless_cancel::Calls>,
    /// Whether the tool set's shutdown has begun.
    shutting_down: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// The subject of an authenticated request, left on a refusal from further in (rmcp's own `4xx` answers), so that
/// its record carries it.
#[derive(Clone)]
struct Subject(Arc<str>);

/// Left on an answer whose refusal is already audited (by [`Shared::reject`], as a refused protocol version, or as
/// the call's own record): the guard audits every other `4xx` answer.
#[derive(Clone, Copy)]
struct Audited;

impl Shared {
    /// Audits a refusal and builds its answer (a JSON-RPC error: see the `refusal` module). The path goes into the
    /// record without its query, which may hold a token.
    fn reject(
        &self,
        status: StatusCode,
        reason: &'static str,
        detail: Option<&'static str>,
        subject: Option<String>,
        asked: &Asked<'_>,
    ) -> Response {
        self.audit_rejection(status, reason, detail, subject, asked);
        let mut response = refusal::answer(status, reason, detail);
        response.extensions_mut().insert(Audited);
        response
    }

    fn audit_rejection(
        &self,
        status: StatusCode,
        reason: &'static str,
        detail: Option<&'static str>,
        subject: Option<String>,
        asked: &Asked<'_>,
    ) {
        let event = AuditEvent::HttpRejected {
            status: status.as_u16(),
            reason,
            detail,
            subject: subject.map(|s| shorten_str(&s)),
            method: shorten_str(asked.method.as_str()),
            path: shorten_str(asked.path),
            remote_addr: asked.remote.map(|addr| addr.to_string()),
            forwarded_for: asked.forwarded.map(|addr| addr.to_string()),
            session_id: asked.session.map(shorten_str),
        };
        self.rejections.record(event);
    }
}

/// What a refusal's record says of the request it refused: its method, its path (never the query), the client's
/// address and the session it named.
pub(super) struct Asked<'a> {
    method: &'a Method,
    path: &'a str,
    remote: Option<std::net::SocketAddr>,
    forwarded: Option<std::net::IpAddr>,
    session: Option<&'a str>,
}

impl<'a> Asked<'a> {
    /// The request with this head.
    fn new(
        method: &'a Method,
        uri: &'a axum::http::Uri,
        headers: &'a axum::http::HeaderMap,
        extensions: &axum::http::Extensions,
    ) -> Self {
        Asked {
            method,
            path: uri.path(),
            remote: remote_addr(extensions),
            forwarded: forwarded_for(extensions),
            session: headers.get("mcp-session-id").and_then(|v| v.to_str().ok()),
        }
    }

    /// `request`.
    fn of(request: &'a axum::extract::Request) -> Self {
        Asked::new(
            request.method(),
            request.uri(),
            request.headers(),
            request.extensions(),
        )
    }
}

/// The client's address as the trusted proxies told it (`HttpSettings::trusted_proxies`), when they did.
fn forwarded_for(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions
        .get::<forwarded::ForwardedFor>()
        .map(|forwarded| forwarded.0)
}

/// The client's address, as the listener gave it.
fn remote_addr(extensions: &axum::http::Extensions) -> Option<std::net::SocketAddr> {
    use axum::extract::ConnectInfo;
    let remote = extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    #[cfg(feature = "mtls")]
    let remote = remote.or_else(|| {
        extensions
            .get::<ConnectInfo<mtls::TlsPeer>>()
            .map(|info| info.0.addr)
    });
    remote
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review finding: the request timeout (30 s by default) was shorter than the tool timeout (60 s by default), so
    /// a stateless client never got the `timeout` refusal of a call that ran too long: `408`, and the call audited
    /// `cancelled`. Unset, it now outlasts the longest tool timeout; set, it is kept as given.
    #[tokio::test]
    async fn unset_the_request_timeout_outlasts_the_tool_timeout() {
        let resolved = |args: ServerArgs| async move {
            let settings = Settings::from_args(ServerArgs {
                http: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                http_insecure_no_auth: Some(true),
                ..args
            })
            .await
            .unwrap();
            let Transport::Http(http) = settings.transport else {
                panic!("not HTTP");
            };
            let tools = settings.limits.apply(ToolSet::builder(())).build().unwrap();
            request_timeout(http.request_timeout, longest_tool_timeout(&tools))
        };
        assert_eq!(
            resolved(ServerArgs::default()).await,
            crate::DEFAULT_TIMEOUT + REQUEST_TIMEOUT_MARGIN
        );
        assert_eq!(
            resolved(ServerArgs {
                tool_timeout: Some("90s".into()),
                ..ServerArgs::default()
            })
            .await,
            Duration::from_secs(95)
        );
        assert_eq!(
            resolved(ServerArgs {
                http_request_timeout: Some("10s".into()),
                ..ServerArgs::default()
            })
            .await,
            Duration::from_secs(10)
        );
    }

    /// Review finding: the router served by a listener of an application's own (no TLS of ours) took a bearer
    /// token alone where the settings required a client certificate too. Now it refuses, as it does for mutual TLS;
    /// without a client CA the same request is served.
    #[cfg(feature = "mtls")]
    #[tokio::test]
    async fn an_embedded_router_refuses_when_client_certificates_cannot_be_checked() {
        use tower::ServiceExt as _;
        let pki = mtls::tests::pki();
        let secret = "0123456789abcdef0123456789abcdef";
        let resource = "https://localhost/mcp";
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"iss": "https://issuer.test", "aud": resource, "sub": "alice",
                                "scope": "", "iat": now, "exp": now + 300}),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        let status = |client_ca: bool| {
            let token = token.clone();
            let mut tls =
                mtls::ServerTls::from_pem(pki.cert.as_bytes(), pki.key.as_bytes()).unwrap();
            if client_ca {
                tls = tls.client_ca(pki.ca.as_bytes()).unwrap();
            }
            async move {
                let auth = BearerAuth::new(
                    "https://issuer.test",
                    resource,
                    VerificationKeys::hmac_secret(secret.as_bytes()).unwrap(),
                );
                let mut settings =
                    Settings::http(SocketAddr::from(([127, 0, 0, 1], 0)), Auth::Bearer(auth));
                settings.http_mut().unwrap().tls = Some(tls);
                let tools = ToolSet::builder(()).build().unwrap();
                let request = axum::http::Request::post("/mcp")
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2025-11-25")
                    .header("authorization", format!("Bearer {token}"))
                    .body(axum::body::Body::from(
                        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                    ))
                    .unwrap();
                let response = router(&tools, &settings).oneshot(request).await.unwrap();
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        let (refused, body) = status(true).await;
        assert_eq!(refused, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("missing_client_certificate"), "{body}");
        let (served, body) = status(false).await;
        assert_eq!(served, StatusCode::OK, "{body}");
    }
}
