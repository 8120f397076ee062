//! The floor under `secure-file-server --http`: the same `read_file` as a plain rmcp server (see `plain.rs`) over
//! rmcp's streamable HTTP server transport, set up as secure-tools sets it up, minus its checks: rmcp's
//! `StreamableHttpService` (stateless, JSON answers, rmcp's own loopback Host check, `LocalSessionManager`) mounted
//! at `/mcp` in axum, on a current-thread runtime. No authentication, no audit. Not for use; for measuring what
//! rmcp itself costs per call over HTTP.
//!
//! Settings from the environment: `PORT` (on 127.0.0.1) and `DATA_ROOT`. Prints `listening on 127.0.0.1:PORT` on
//! standard error once it accepts connections.

#[path = "../plain.rs"]
mod plain;

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

fn main() {
    let port: u16 = std::env::var("PORT")
        .expect("PORT")
        .parse()
        .expect("PORT is a port number");
    let server = plain::Plain::from_env();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true);
        let service = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let app = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        eprintln!("listening on {}", listener.local_addr().unwrap());
        axum::serve(listener, app).await.expect("serve");
    });
}
