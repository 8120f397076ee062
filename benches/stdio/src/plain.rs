//! The `read_file` tool of the rmcp floors (`rmcp-plain` over stdio, `rmcp-http` over streamable HTTP): the same
//! tool as secure-file-server's on rmcp alone (rmcp's `#[tool_router]`), with no scope check, no validation beyond
//! types, no audit and no confinement beyond a string check. Not for use; for measuring what rmcp itself costs per
//! call.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};

#[derive(serde::Deserialize, schemars::JsonSchema)]
pub struct ReadArgs {
    filename: String,
}

#[derive(Clone)]
pub struct Plain {
    root: std::path::PathBuf,
    tool_router: ToolRouter<Self>,
}

impl Plain {
    /// Files are read from the directory in `DATA_ROOT`.
    pub fn from_env() -> Self {
        Plain {
            root: std::env::var_os("DATA_ROOT").expect("DATA_ROOT").into(),
            tool_router: Plain::tool_router(),
        }
    }
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
