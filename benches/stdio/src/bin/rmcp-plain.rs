//! The floor under secure-file-server: the same `read_file` as a plain rmcp server (rmcp's `#[tool_router]`, rmcp's
//! stdio transport, a current-thread runtime), with no scope check, no validation beyond types, no audit and no
//! confinement beyond a string check. Not for use; for measuring what rmcp itself costs per call.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, tool, tool_handler, tool_router};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct ReadArgs {
    filename: String,
}

#[derive(Clone)]
struct Plain {
    root: std::path::PathBuf,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Plain {
    #[tool(description = "Read a file")]
    fn read_file(&self, Parameters(ReadArgs { filename }): Parameters<ReadArgs>) -> String {
        if filename.contains('/') || filename.starts_with('.') {
            return "refused".into();
        }
        std::fs::read_to_string(self.root.join(filename)).unwrap_or_default()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Plain {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = Plain {
            root: std::env::var_os("DATA_ROOT").expect("DATA_ROOT").into(),
            tool_router: Plain::tool_router(),
        };
        let running = server.serve(rmcp::transport::stdio()).await.unwrap();
        let _ = running.waiting().await;
    });
    runtime.shutdown_background();
}
