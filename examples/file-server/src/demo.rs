//! The demo: the tutorial's story, end to end, against this very binary.

use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

/// How long the server may take to start and answer the handshake, and to answer each request.
const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let data_root = dir.path().join("data");
    let audit_log = dir.path().join("audit.jsonl");
    std::fs::create_dir(&data_root).map_err(|e| e.to_string())?;
    std::fs::write(data_root.join("greeting.txt"), "Hello from MCP!\n")
        .map_err(|e| e.to_string())?;
    println!("Data root {} holds greeting.txt.", data_root.display());

    section("1. A server granted files.read and files.write");
    let client = start(&data_root, &audit_log, "files.read,files.write").await?;
    let info = client.peer_info().ok_or("no server info")?;
    let server = info
        .server_info
        .as_ref()
        .map(|s| format!("{} {}", s.name, s.version))
        .unwrap_or_default();
    println!(
        "Negotiated protocol {} with {server}.",
        info.protocol_version
    );
    let tools = bounded("listing the tools", client.list_all_tools())
        .await?
        .map_err(|e| e.to_string())?;
    println!("Tools:");
    for tool in &tools {
        let scopes = tool
            .meta
            .as_ref()
            .and_then(|m| m.0.get(secure_tools::SCOPES_META_KEY))
            .map(Value::to_string)
            .unwrap_or_default();
        println!(
            "  {:<11} scopes {scopes:<16} {}",
            tool.name,
            first_sentence(tool.description.as_deref().unwrap_or(""))
        );
    }
    let read = call(&client, "read_file", json!({"filename": "greeting.txt"})).await?;
    show("read_file greeting.txt", &read);
    let wrote = call(
        &client,
        "write_file",
        json!({"filename": "notes.txt", "content": "Written by the demo.\r\nSecond line.\n"}),
    )
    .await?;
    show("write_file notes.txt", &wrote);
    let escape = call(
        &client,
        "read_file",
        json!({"filename": "../../etc/passwd"}),
    )
    .await?;
    show("read_file ../../etc/passwd", &escape);
    stop(client).await?;

    section("2. The same server granted files.read only");
    let client = start(&data_root, &audit_log, "files.read").await?;
    let refused = call(
        &client,
        "write_file",
        json!({"filename": "notes.txt", "content": "overwrite?"}),
    )
    .await?;
    show("write_file notes.txt", &refused);
    stop(client).await?;
    let kept = std::fs::read_to_string(data_root.join("notes.txt")).map_err(|e| e.to_string())?;
    println!("notes.txt still holds {kept:?}.");

    section("3. The audit trail (one JSON object per line; content redacted)");
    let audit = std::fs::read_to_string(&audit_log).map_err(|e| format!("audit log: {e}"))?;
    print!("{audit}");
    Ok(())
}

async fn start(
    data_root: &Path,
    audit_log: &Path,
    scopes: &str,
) -> Result<RunningService<RoleClient, ()>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(exe);
    // The demo's servers are the demo's: none of the caller's environment reaches them (`MCP_HTTP` would make one
    // serve HTTP while the demo speaks to it over stdio, and the handshake would never come), so no list of the
    // server's settings has to be kept here. The server needs nothing else: it is started by path, and its log
    // (`RUST_LOG`) goes to a stderr that is discarded.
    command
        .env_clear()
        .env("DATA_ROOT", data_root)
        .env("MCP_SCOPES", scopes)
        .env("MCP_SERVER_ID", "demo-file-server")
        .env("MCP_AUDIT_LOG", audit_log);
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the server: {e}"))?;
    bounded("the handshake", ().serve(transport))
        .await?
        .map_err(|e| format!("handshake: {e}"))
}

/// `future`, or an error naming `what` if it takes longer than [`TIMEOUT`].
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .map_err(|_| format!("{what}: no answer from the server within {TIMEOUT:?}"))
}

async fn stop(client: RunningService<RoleClient, ()>) -> Result<(), String> {
    bounded("stopping the server", client.cancel())
        .await?
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    arguments: Value,
) -> Result<CallToolResult, String> {
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    bounded(
        tool,
        client.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments)),
    )
    .await?
    .map_err(|e| format!("{tool}: {e}"))
}

fn show(what: &str, result: &CallToolResult) {
    let outcome = if result.is_error == Some(true) {
        "refused"
    } else {
        "ok"
    };
    let shown = match &result.structured_content {
        Some(value) => value.to_string(),
        None => serde_json::to_value(&result.content)
            .map(|c| c[0]["text"].to_string())
            .unwrap_or_default(),
    };
    println!("{what}: {outcome}\n    {shown}");
}

fn section(title: &str) {
    println!("\n== {title}");
}

/// A description's first sentence, its lines joined (a doc comment wraps them).
fn first_sentence(description: &str) -> String {
    let paragraph = description
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match paragraph.find(". ") {
        Some(end) => paragraph[..=end].to_owned(),
        None => paragraph,
    }
}
