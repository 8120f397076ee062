//! `secure-file-server`: two secure tools, `read_file` and `write_file`, confined to one directory, served over
//! stdio (or, with `--http`, over token- or mTLS-protected streamable HTTP) by the library's runner.
//! `secure-file-server demo` runs the end-to-end story against itself.

mod demo;
mod health;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secure_tools::ToolSet;
use secure_tools::fs::RootArgs;
use secure_tools::serve::{ServerArgs, Settings};

/// An MCP file server an LLM cannot talk out of its directory.
///
/// Serves `read_file` (scope `files.read`) and `write_file` (scope `files.write`). Every file operation is made
/// relative to the data root, opened once at start; every call is checked against the caller's scopes and
/// audited, one JSON line per call. Settings come from flags, then `MCP_*` variables, then the config file.
#[derive(Debug, Parser)]
#[command(name = "secure-file-server", version)]
struct Cli {
    #[command(flatten)]
    files: RootArgs,
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demo: start this server twice with different scopes, call its tools with an MCP client, and print
    /// what happened and what was audited.
    Demo,
    /// Exit 0 if the server serving over HTTP answers its health check (`/healthz`, reached on loopback when it
    /// binds every address); for a container's HEALTHCHECK. The settings are resolved as the server resolves them
    /// (flags, `MCP_*` variables, the config file), so give the check the server's own. A server on stdio (no
    /// `http` setting) is healthy while it runs: exit 0. A server serving HTTPS (mutual TLS, or bearer tokens with
    /// `--tls-cert`) cannot be asked, since the check speaks plain HTTP: exit 1, saying so.
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log_to_stderr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Demo) => return demo::run().await,
            Some(Command::Healthcheck) => {
                // The server's address as it reads it (its config file included), without loading its keys or
                // fetching its JWKS on every probe.
                let settings = cli.server.layered().map_err(|e| e.to_string())?;
                return health::check(&settings);
            }
            None => {}
        }
        let settings = Settings::from_args(cli.server)
            .await
            .map_err(|e| e.to_string())?
            .server_info("secure-file-server", env!("CARGO_PKG_VERSION"));
        let root = cli.files.open(&settings).map_err(|e| e.to_string())?;
        let tools = ToolSet::builder(root)
            .server_id("secure-file-server")
            .tool::<tools::read_file>()
            .tool::<tools::write_file>();
        settings.serve(tools).await.map_err(|e| e.to_string())
    });
    // Standard input is read on a thread of its own, which this does not wait for; a write still on its blocking
    // thread (one stopped at shutdown, giving up) gets a second to finish and remove its temporary file, which the
    // process ending under it left in the root holding the content (red-team finding; the next start swept it).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("secure-file-server: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The server's own log, on stderr (stdout is the protocol's): `warn` and above unless `RUST_LOG` says otherwise
/// (targets and levels, `secure_tools=info,warn`), and never rmcp's request-printing events.
fn log_to_stderr() {
    use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
    use tracing_subscriber::prelude::*;

    let default = Targets::new().with_default(LevelFilter::WARN);
    let levels = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec.parse().unwrap_or_else(|error| {
            eprintln!(
                "secure-file-server: RUST_LOG ignored ({error}); logging warnings and errors"
            );
            default
        }),
        _ => default,
    };
    // One filter (both conditions), not two nested ones: nested per-layer filters let the registry record every
    // span the outer one passes (each call's `tool_call` span, at INFO) though the inner one drops it.
    // Fields written so that no client can forge a line of this log or make one huge (an id or an error's text
    // is the client's).
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .fmt_fields(secure_tools::logging::fields())
        .with_filter(levels.and(secure_tools::logging::filter()));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}
