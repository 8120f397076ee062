//! `conformance-server`: the MCP conformance suite's fixture tools (`test_simple_text`, `test_sampling`, ...) as
//! secure tools, served over streamable HTTP with sessions, so that the suite's tool, logging and elicitation
//! scenarios run against secure tools. For testing only: there is no authentication (the suite cannot send a
//! token), so it binds loopback addresses only.

mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use secure_tools::Grant;
use secure_tools::serve::{Auth, Settings, Transport};

/// The scope every fixture tool requires, and the only one every (anonymous) caller holds.
const SCOPE: &str = "conformance.call";

/// Serves the MCP conformance suite's fixture tools as secure tools over streamable HTTP, at `http://ADDR/mcp`.
/// For testing only: no authentication, loopback addresses only.
#[derive(Debug, Parser)]
#[command(name = "conformance-server", version)]
struct Cli {
    /// The loopback address to listen on (`127.0.0.1:PORT`, `[::1]:PORT`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    http: SocketAddr,

    /// Append audit records to this file. Default: standard error.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.http.ip().is_loopback() {
        eprintln!(
            "conformance-server: refusing to listen on {}: without authentication, only a loopback address will do",
            cli.http
        );
        return ExitCode::FAILURE;
    }
    eprintln!(
        "conformance-server: warning: FOR TESTING ONLY: no authentication, every caller is anonymous and holds \
         `{SCOPE}`"
    );
    let grant = Grant::parse(SCOPE).expect("the scope is valid");
    let mut settings = Settings::http(cli.http, Auth::None { grant })
        .server_info("secure-tools-conformance-server", env!("CARGO_PKG_VERSION"));
    // Progress, logging, sampling and elicitation need the call's own SSE stream and a session to route the
    // client's answers back to the waiting tool.
    if let Transport::Http(http) = &mut settings.transport {
        http.sessions = true;
    }
    settings.server_id = Some("conformance-server".into());
    settings.audit_log = cli.audit_log;
    match settings.serve(tools::all()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("conformance-server: {error}");
            ExitCode::FAILURE
        }
    }
}
