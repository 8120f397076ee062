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

/// How many connections the metrics address keeps open at once; past it, the oldest idle one is closed.
pub(super) const MAX_CONNECTIONS: usize = 8;

/// The listener of the metrics endpoint, bound at start so that a taken address stops the server from starting.
pub(super) struct Endpoint {
    listener: tokio::net::TcpListener,
    otel: Arc<Otel>,
}

impl Endpoint {
    pub(super) async fn bind(address: SocketAddr, otel: Arc<Otel>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        eprintln!(
            "secure-tools: serving metrics at http://{}/metrics",
            listener.local_addr()?
        );
        Ok(Endpoint { listener, otel })
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
        let app = Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let otel = otel.clone();
                async move {
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
            }),
        );
        let limits = ConnectionLimits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout,
            shared: 0,
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
