//! What the dispatch benchmarks share: the same `echo` handler as rmcp's own `#[tool_router]` server and as secure
//! tools, the audit sinks, and a request context as rmcp's service loop makes one.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, ServerCapabilities, ServerConfig};
use rmcp::service::RoleServer;
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use secure_tools::audit::{AuditError, AuditRecord};
use secure_tools::{
    AuditSink, Caller, Grant, SecureServer, ToolError, ToolSet, ToolSetBuilder, secure_tool,
};
use serde_json::json;

#[derive(serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct EchoArgs {
    /// Text to echo.
    pub(crate) text: String,
}

#[derive(Clone)]
pub(crate) struct Plain {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Plain {
    pub(crate) fn new() -> Self {
        Plain {
            tool_router: Self::tool_router(),
        }
    }

    /// Echoes its text.
    #[tool(description = "Echoes its text.")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    /// Echoes its text after yielding once.
    #[tool(description = "Echoes its text after yielding once.")]
    async fn echo_yield(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        tokio::task::yield_now().await;
        text
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Plain {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// Echoes its text.
#[secure_tool(scope = "bench.read", read_only)]
pub(crate) async fn echo(
    /// Text to echo.
    #[validate(length(max = 1000))]
    text: String,
) -> Result<String, ToolError> {
    Ok(text)
}

/// Echoes its text (not marked read-only: a `call_started` record precedes each call's record).
#[secure_tool(scope = "bench.read")]
pub(crate) async fn echo_effect(
    /// Text to echo.
    #[validate(length(max = 1000))]
    text: String,
) -> Result<String, ToolError> {
    Ok(text)
}

/// Echoes its text after yielding once.
#[secure_tool(scope = "bench.read", read_only)]
pub(crate) async fn echo_yield(
    /// Text to echo.
    #[validate(length(max = 1000))]
    text: String,
) -> Result<String, ToolError> {
    tokio::task::yield_now().await;
    Ok(text)
}

/// Keeps the last 1,024 records in memory.
#[derive(Default)]
pub(crate) struct Ring(std::sync::Mutex<std::collections::VecDeque<AuditRecord>>);

impl AuditSink for Ring {
    fn write(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let mut ring = self.0.lock().unwrap();
        if ring.len() == 1024 {
            ring.pop_front();
        }
        ring.push_back(record.clone());
        Ok(())
    }
}

/// Takes records and does nothing with them.
pub(crate) struct Ignore;

impl AuditSink for Ignore {
    fn write(&self, _: &AuditRecord) -> Result<(), AuditError> {
        Ok(())
    }
}

pub(crate) fn secure(sink: impl AuditSink) -> SecureServer<()> {
    secure_with(sink, |builder| builder)
}

pub(crate) fn secure_with(
    sink: impl AuditSink,
    configure: impl FnOnce(ToolSetBuilder<()>) -> ToolSetBuilder<()>,
) -> SecureServer<()> {
    let builder = ToolSet::builder(())
        .tool::<echo>()
        .tool::<echo_effect>()
        .tool::<echo_yield>()
        .audit_sink(sink);
    let tools = configure(builder).build().unwrap();
    SecureServer::new(tools)
        .default_caller(Caller::new("bench", Grant::parse("bench.read").unwrap()))
}

pub(crate) fn params() -> CallToolRequestParams {
    params_for("echo")
}

pub(crate) fn params_for(tool: &'static str) -> CallToolRequestParams {
    CallToolRequestParams::new(tool)
        .with_arguments(json!({"text": "hello, world"}).as_object().unwrap().clone())
}

/// A request context needs a peer; take one from a real in-process session.
pub(crate) fn peer(runtime: &tokio::runtime::Runtime) -> rmcp::Peer<RoleServer> {
    runtime.block_on(async {
        let (server_io, client_io) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move { Plain::new().serve(server_io).await.unwrap() });
        let client = ().serve(client_io).await.unwrap();
        let running = server.await.unwrap();
        std::mem::forget(client);
        let peer = running.peer().clone();
        std::mem::forget(running);
        peer
    })
}
