//! `secure-file-server`: an MCP server over stdio with two tools, `read_file` and `write_file`, confined to one
//! directory. `secure-file-server demo` runs the end-to-end story against itself.

mod demo;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secure_tools::Grant;
use secure_tools::ToolSet;
use secure_tools::fs::{Limits, Root};
use secure_tools::rmcp::model::{Implementation, ProtocolVersion};
use secure_tools::serve::{StdioConfig, VersionPolicy};

/// An MCP file server an LLM cannot talk out of its directory.
///
/// Serves `read_file` (scope `files.read`) and `write_file` (scope `files.write`) over stdio. Every file operation
/// is made relative to the data root, opened once at start; every call is checked against the caller's scopes
/// and audited, one JSON line per call.
#[derive(Debug, Parser)]
#[command(name = "secure-file-server", version)]
struct Cli {
    /// The directory the tools may read and write (files directly inside it, no subdirectories).
    #[arg(long, env = "DATA_ROOT", value_name = "DIR")]
    data_root: Option<PathBuf>,

    /// The scopes the stdio caller holds, comma- or space-separated: `files.read`, `files.write`. Unset or empty
    /// grants nothing, so every call is denied.
    #[arg(long, env = "MCP_SCOPES", value_name = "SCOPES", default_value = "")]
    scopes: String,

    /// The id stamped on every audit record.
    #[arg(
        long,
        env = "MCP_SERVER_ID",
        value_name = "ID",
        default_value = "secure-file-server"
    )]
    server_id: String,

    /// Append audit records to this file (it must not be inside the data root). Default: standard error.
    #[arg(long, env = "MCP_AUDIT_LOG", value_name = "FILE")]
    audit_log: Option<PathBuf>,

    /// The largest file `read_file` returns, in bytes.
    #[arg(long, env = "MAX_READ_BYTES", value_name = "BYTES", default_value_t = Limits::default().max_read_bytes)]
    max_read_bytes: u64,

    /// The largest content `write_file` accepts, in bytes of UTF-8 after line endings are normalised.
    #[arg(long, env = "MAX_WRITE_BYTES", value_name = "BYTES", default_value_t = Limits::default().max_write_bytes)]
    max_write_bytes: u64,

    /// The largest incoming MCP message, in bytes.
    #[arg(long, env = "MCP_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    max_message_bytes: Option<usize>,

    /// Refuse clients asking for a protocol version older than this (e.g. `2025-06-18`).
    #[arg(long, env = "MCP_MIN_PROTOCOL_VERSION", value_name = "VERSION")]
    min_protocol_version: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demo: start this server twice with different scopes, call its tools with an MCP client, and print
    /// what happened and what was audited.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = match cli.command {
        Some(Command::Demo) => runtime.block_on(demo::run()),
        None => runtime.block_on(serve(cli)),
    };
    // Standard input is read on a thread of its own; do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("secure-file-server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli) -> Result<(), String> {
    let data_root = cli
        .data_root
        .ok_or("no data root: set DATA_ROOT or pass --data-root DIR (see --help)")?;
    let limits = Limits {
        max_read_bytes: cli.max_read_bytes,
        max_write_bytes: cli.max_write_bytes,
    };
    let root = Root::open(&data_root, limits).map_err(|e| e.to_string())?;
    let grant = Grant::parse(&cli.scopes)
        .map_err(|e| format!("invalid scopes (MCP_SCOPES / --scopes): {e}"))?;
    if let Some(log) = &cli.audit_log {
        refuse_audit_log_inside(log, &data_root)?;
    }

    let mut config = StdioConfig::default();
    config.grant = grant;
    config.server_id = Some(cli.server_id);
    config.audit_log = cli.audit_log;
    config.server_info = Implementation::new("secure-file-server", env!("CARGO_PKG_VERSION"));
    if let Some(max) = cli.max_message_bytes {
        config.max_message_bytes = max;
    }
    if let Some(text) = cli.min_protocol_version {
        let minimum = ProtocolVersion::KNOWN_VERSIONS
            .iter()
            .find(|v| v.as_str() == text)
            .ok_or_else(|| format!("unknown protocol version `{text}`"))?;
        config.versions = VersionPolicy::minimum(minimum.clone());
    }

    let tools = ToolSet::builder(root)
        .tool::<tools::read_file>()
        .tool::<tools::write_file>();
    config.serve(tools).await.map_err(|e| e.to_string())
}

/// An audit log inside the data root could be read, or overwritten, through the tools.
fn refuse_audit_log_inside(log: &Path, data_root: &Path) -> Result<(), String> {
    let root = data_root
        .canonicalize()
        .map_err(|e| format!("data root {}: {e}", data_root.display()))?;
    let log_abs = if log.is_absolute() {
        log.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| e.to_string())?
            .join(log)
    };
    // Resolve what exists: the file itself, or else its directory.
    let resolved = match log_abs.canonicalize() {
        Ok(path) => path,
        Err(_) => {
            let parent = log_abs.parent().unwrap_or(Path::new("/"));
            let parent = parent
                .canonicalize()
                .map_err(|e| format!("audit log directory {}: {e}", parent.display()))?;
            parent.join(log_abs.file_name().unwrap_or_default())
        }
    };
    if resolved.starts_with(&root) {
        return Err(format!(
            "the audit log {} is inside the data root {}; put it elsewhere, where the tools cannot reach it",
            log.display(),
            data_root.display()
        ));
    }
    Ok(())
}
