//! `/metrics`: the call metrics as Prometheus text, on an address of its own (`--http-metrics`).
//!
//! The address needs no token, so it is served under the same bounds as the MCP endpoint (see
//! [`connections`](super::connections)): the header-read timeout, and a cap of its own,
//! [`MAX_CONNECTIONS`] (a scraper needs one), which the MCP endpoint leaves out of its share of the descriptors.
//! Clients stalling here can neither hold connections open nor take the descriptors calls need.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tokio_util::sync::CancellationToken;

use super::connections::{self, ConnectionLimits, Security};
use super::rejections::Rejections;
use crate::telemetry::Otel;

/// Why a scrape is refused for its host.
enum HostRefused {
    /// More than one `Host` (RFC 9112: a bad request).
    Duplicate,
    /// A host that is neither an IP address nor an allowed one.
    NotAllowed,
}

/// Whether a scrape may be answered: it names one host, its target's authority when the target has one (absolute
/// form), else its `Host` (red-team finding: only the first `Host` was looked at, and never the target's, where the
/// MCP endpoint refuses both), and that host is an IP address (a scraper reaching the address directly; a page
/// rebinding a name of its own to this address sends that name) or one of the allowed hosts. Browsers cannot send
/// a `Host` of their choosing, so a page of another site (DNS rebinding) cannot read the metrics.
fn host_allowed(
    allowed: &[String],
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
) -> Result<(), HostRefused> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(HostRefused::Duplicate);
    }
    let Some(host) = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| first.and_then(|h| h.to_str().ok()))
    else {
        return Err(HostRefused::NotAllowed);
    };
    let (name, _) = super::guard::split_authority(host);
    if name.parse::<std::net::IpAddr>().is_ok() || super::guard::host_allowed(allowed, host) {
        Ok(())
    } else {
        Err(HostRefused::NotAllowed)
    }
}

/// How many connections the metrics address keeps open at once; past it, the oldest idle one is closed.
pub(super) const MAX_CONNECTIONS: usize = 8;

/// The listener of the metrics endpoint, bound at start so that a taken address stops the server from starting.
pub(super) struct Endpoint {
    listener: tokio::net::TcpListener,
    otel: Arc<Otel>,
    /// The MCP endpoint's allowed hosts: names a browser may reach the address by.
    allowed_hosts: Arc<[String]>,
}

impl Endpoint {
    pub(super) async fn bind(
        address: SocketAddr,
        otel: Arc<Otel>,
        allowed_hosts: Vec<String>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        eprintln!(
            "{}: serving metrics at http://{}/metrics",
            crate::serve::program_name(),
            listener.local_addr()?
        );
        Ok(Endpoint {
            listener,
            otel,
            allowed_hosts: allowed_hosts.into(),
        })
    }

    /// Answers `GET /metrics` until `stop`, with the MCP endpoint's header-read timeout; anything else is 404.
    /// Connections closed by the bounds are audited like the MCP endpoint's, through `rejections`.
    pub(super) async fn serve(
        self,
        header_read_timeout: std::time::Duration,
        rejections: Arc<Rejections>,
        stop: CancellationToken,
    ) {
        let otel = self.otel;
        let allowed_hosts = self.allowed_hosts;
        let refused = rejections.clone();
        // Every other path and method is refused, and recorded as the MCP endpoint records its refusals.
        let refuse = |status: StatusCode, reason: &'static str| {
            let refused = rejections.clone();
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  extensions: axum::http::Extensions| {
                let refused = refused.clone();
                async move {
                    refused.record(crate::audit::AuditEvent::HttpRejected {
                        status: status.as_u16(),
                        reason,
                        detail: None,
                        subject: None,
                        method: crate::audit::shorten_str(method.as_str()),
                        path: crate::audit::shorten_str(uri.path()),
                        remote_addr: super::remote_addr(&extensions).map(|a| a.to_string()),
                        forwarded_for: None,
                        session_id: None,
                    });
                    status.into_response()
                }
            }
        };
        let not_found = refuse(StatusCode::NOT_FOUND, "not_found");
        let not_allowed = refuse(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        let app = Router::new().fallback(not_found).route(
            "/metrics",
            axum::routing::get(
                move |uri: axum::http::Uri,
                      headers: axum::http::HeaderMap,
                      extensions: axum::http::Extensions| {
                    let otel = otel.clone();
                    let allowed = host_allowed(&allowed_hosts, &uri, &headers);
                    let refused = refused.clone();
                    async move {
                        if let Err(why) = allowed {
                            let (status, reason, detail) = match why {
                                HostRefused::Duplicate => (
                                    StatusCode::BAD_REQUEST,
                                    "bad_request",
                                    Some("duplicate_host"),
                                ),
                                HostRefused::NotAllowed => {
                                    (StatusCode::FORBIDDEN, "host_not_allowed", None)
                                }
                            };
                            refused.record(crate::audit::AuditEvent::HttpRejected {
                                status: status.as_u16(),
                                reason,
                                detail,
                                subject: None,
                                method: "GET".into(),
                                path: "/metrics".into(),
                                remote_addr: super::remote_addr(&extensions).map(|a| a.to_string()),
                                forwarded_for: None,
                                session_id: None,
                            });
                            return status.into_response();
                        }
                        match otel.prometheus_text() {
                            Some(text) => (
                                [(
                                    header::CONTENT_TYPE,
                                    "text/plain; version=0.0.4; charset=utf-8",
                                )],
                                text,
                            )
                                .into_response(),
                            None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                        }
                    }
                },
            )
            .fallback(not_allowed),
        );
        let limits = ConnectionLimits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout,
            shared: 0,
            // A scrape is a `GET`: no body to hold.
            max_buffered_body_bytes: 64 * 1024,
        };
        let served = connections::serve(
            self.listener,
            Security::Plain,
            app,
            limits,
            rejections,
            stop,
        )
        .await;
        if let Err(error) = served {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    }
}
