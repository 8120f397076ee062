//! The floor under secure-file-server over stdio: the same `read_file` as a plain rmcp server (rmcp's
//! `#[tool_router]`, rmcp's stdio transport, a current-thread runtime), with no policy (see `plain.rs`).

#[path = "../plain.rs"]
mod plain;

use rmcp::ServiceExt;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let running = plain::Plain::from_env()
            .serve(rmcp::transport::stdio())
            .await
            .unwrap();
        let _ = running.waiting().await;
    });
    runtime.shutdown_background();
}
