//! `/metrics`: the call metrics as Prometheus text, on an address of its own (`--http-metrics`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tokio_util::sync::CancellationToken;

use crate::telemetry::Otel;

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

    /// Answers `GET /metrics` until `stop`; anything else is 404.
    pub(super) async fn serve(self, stop: CancellationToken) {
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
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    }
}
