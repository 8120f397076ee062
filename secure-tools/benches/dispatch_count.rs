//! A fixed number of in-process `tools/call` dispatches, for an instruction count under callgrind (deterministic,
//! unlike the clock on a shared machine). Run it twice with different counts and divide the difference:
//!
//! ```sh
//! cargo bench -p secure-tools --bench dispatch_count --no-run
//! valgrind --tool=callgrind target/release/deps/dispatch_count-* secure_ignored 2000
//! valgrind --tool=callgrind target/release/deps/dispatch_count-* secure_ignored 4000
//! ```
//!
//! Variants: `rmcp` (rmcp's own `#[tool_router]`), `secure_ignored` (the whole pipeline, a sink that does nothing),
//! `secure_memory` (the whole pipeline, the last 1,024 records kept in memory), as in the `dispatch` benchmark.

use std::hint::black_box;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolRequestParams, ServerCapabilities, ServerConfig};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use secure_tools::audit::{AuditError, AuditRecord};
use secure_tools::{AuditSink, Caller, Grant, SecureServer, ToolError, ToolSet, secure_tool};
use serde_json::json;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// Text to echo.
    text: String,
}

#[derive(Clone)]
struct Plain {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Plain {
    fn new() -> Self {
        Plain {
            tool_router: Self::tool_router(),
        }
    }

    /// Echoes its text.
    #[tool(description = "Echoes its text.")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
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
async fn echo(
    /// Text to echo.
    #[validate(length(max = 1000))]
    text: String,
) -> Result<String, ToolError> {
    Ok(text)
}

/// Keeps the last 1,024 records in memory.
#[derive(Default)]
struct Ring(std::sync::Mutex<std::collections::VecDeque<AuditRecord>>);

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
struct Ignore;

impl AuditSink for Ignore {
    fn write(&self, _: &AuditRecord) -> Result<(), AuditError> {
        Ok(())
    }
}

fn secure(sink: impl AuditSink) -> SecureServer<()> {
    let tools = ToolSet::builder(())
        .tool::<echo>()
        .audit_sink(sink)
        .build()
        .unwrap();
    SecureServer::new(tools)
        .default_caller(Caller::new("bench", Grant::parse("bench.read").unwrap()))
}

fn params() -> CallToolRequestParams {
    CallToolRequestParams::new("echo")
        .with_arguments(json!({"text": "hello, world"}).as_object().unwrap().clone())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "secure_ignored".to_owned());
    let calls: usize = args
        .next()
        .map_or(1000, |n| n.parse().expect("a count of calls"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = runtime.block_on(async {
        let (server_io, client_io) = tokio::io::duplex(4096);
        let server = tokio::spawn(async move { Plain::new().serve(server_io).await.unwrap() });
        let client = ().serve(client_io).await.unwrap();
        let running = server.await.unwrap();
        std::mem::forget(client);
        let peer = running.peer().clone();
        std::mem::forget(running);
        peer
    });
    let context =
        || RequestContext::<RoleServer>::new(rmcp::model::RequestId::Number(1), peer.clone());
    let plain = Plain::new();
    let server = match variant.as_str() {
        "rmcp" => None,
        "secure_ignored" => Some(secure(Ignore)),
        "secure_memory" => Some(secure(Ring::default())),
        other => panic!("unknown variant {other}: rmcp, secure_ignored or secure_memory"),
    };
    runtime.block_on(async {
        for _ in 0..calls {
            let result = match &server {
                None => plain.call_tool(params(), context()).await,
                Some(server) => server.call_tool(params(), context()).await,
            };
            black_box(result.unwrap());
        }
    });
}
