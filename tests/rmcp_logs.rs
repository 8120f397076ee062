//! What rmcp's own `tracing` events show of a call's redacted arguments.
//!
//! rmcp 3.11 logs every request it receives whole at `debug` (`received request`, target `rmcp::service`) and
//! every event of its serve loop at `trace` (`new event`), arguments included, for anyone whose subscriber listens
//! at those levels. A subscriber here records everything at every level and the test looks for the secret.
//!
//! In a test binary of its own: its tests share the global subscriber they install.

use std::sync::{Arc, Mutex, OnceLock};

use rmcp::transport::async_rw::AsyncRwTransport;
use secure_tools::serve::LineTransport;
use secure_tools::{Caller, Grant, MemorySink, SecureServer, ToolError, ToolSet, secure_tool};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Stores a secret.
#[secure_tool(scope = "vault.write", audit_redact = ["secret"])]
async fn store(
    /// Its name.
    name: String,
    /// The secret.
    secret: String,
) -> Result<String, ToolError> {
    Ok(format!("stored {name} ({} bytes)", secret.len()))
}

/// Every event and span field, as text.
#[derive(Default, Clone)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn containing(&self, needle: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Captured {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = Fields(format!("span {}", attrs.metadata().name()));
        attrs.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }

    fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut fields = Fields("record".into());
        values.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        let mut fields = Fields(format!("{} {}", metadata.level(), metadata.target()));
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

/// Runs until the client cancels it.
#[secure_tool(scope = "vault.write", read_only)]
async fn wait() -> Result<String, ToolError> {
    std::future::pending().await
}

/// The global subscriber, installed once for the binary's tests: a layer that records everything, and one behind
/// `logging::filter()`.
fn captured() -> &'static (Captured, Captured) {
    static CAPTURED: OnceLock<(Captured, Captured)> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let everything = Captured::default();
        let filtered = Captured::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry()
                .with(everything.clone())
                .with(
                    filtered
                        .clone()
                        .with_filter(secure_tools::logging::filter()),
                ),
        )
        .unwrap();
        (everything, filtered)
    })
}

fn tools() -> ToolSet<()> {
    tools_recording(MemorySink::new())
}

fn tools_recording(sink: MemorySink) -> ToolSet<()> {
    ToolSet::builder(())
        .tool::<store>()
        .audit_sink(sink)
        .build()
        .unwrap()
}

fn caller() -> Caller {
    Caller::new("local", Grant::parse("vault.write").unwrap())
}

fn server() -> SecureServer<()> {
    server_recording(MemorySink::new())
}

fn server_recording(sink: MemorySink) -> SecureServer<()> {
    SecureServer::new(tools_recording(sink))
        .default_caller(caller())
        .transport("stdio")
}

/// A server of one's own with the secure tools merged into its router, as the README shows.
#[derive(Clone)]
struct Merged {
    tool_router: rmcp::handler::server::router::tool::ToolRouter<Self>,
}

#[rmcp::tool_handler(router = self.tool_router)]
impl rmcp::ServerHandler for Merged {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        rmcp::model::ServerConfig::new(
            rmcp::model::ServerCapabilities::builder()
                .enable_tools()
                .build(),
        )
    }
}

/// Runs `initialize` and one `tools/call` storing `secret` against a server on the other end of `client`, after
/// the same call sent without an id (a notification) storing `{secret}-notified`; returns the call's answer.
async fn call_over(client: tokio::io::DuplexStream, secret: &str) -> Value {
    let (read, mut write) = tokio::io::split(client);
    let mut lines = BufReader::new(read).lines();
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "log-test", "version": "1"}
        }}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "method": "tools/call", "params": {
            "name": "store", "arguments": {"name": "db", "secret": format!("{secret}-notified")}
        }}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "store", "arguments": {"name": "db", "secret": secret}
        }}),
    ];
    for message in messages {
        write
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
    }
    loop {
        let line = lines.next_line().await.unwrap().expect("an answer");
        let answer: Value = serde_json::from_str(&line).unwrap();
        if answer["id"] == 2 {
            return answer;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_arguments_never_reach_rmcps_logs() {
    let (everything, filtered) = captured();

    // rmcp's own stream transport, as a server merging secure tools into its own rmcp service would use: rmcp
    // logs the request whole, and only the filter keeps it out.
    let (client, server_end) = tokio::io::duplex(1 << 16);
    let (read, write) = tokio::io::split(server_end);
    let running = tokio::spawn(async move {
        let service = rmcp::serve_server(server(), AsyncRwTransport::new_server(read, write))
            .await
            .unwrap();
        service.waiting().await.unwrap();
    });
    let answer = call_over(client, "hunter2-rmcp-transport").await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    running.await.unwrap();
    assert!(
        !everything.containing("hunter2-rmcp-transport").is_empty(),
        "rmcp no longer logs requests whole: {:#?}",
        everything.lines()
    );
    // rmcp logs a call sent as a notification whole at `info` (`received notification`); the filter drops that
    // event too.
    assert!(
        !everything
            .containing("hunter2-rmcp-transport-notified")
            .is_empty(),
        "rmcp no longer logs notifications whole: {:#?}",
        everything.lines()
    );
    let leaked = filtered.containing("hunter2-rmcp-transport");
    assert!(leaked.is_empty(), "{leaked:#?}");
    // rmcp's events from `info` up, and everyone else's at every level, still pass.
    assert!(
        !filtered.containing("INFO rmcp::service").is_empty(),
        "{:#?}",
        filtered.lines()
    );
    tracing::debug!("the test's own debug event");
    assert_eq!(filtered.containing("the test's own debug event").len(), 1);
    assert!(filtered.containing("DEBUG rmcp::").is_empty());
    assert!(filtered.containing("TRACE rmcp::").is_empty());

    // The stdio runner's transport, as the runner sets it up: the arguments never reach rmcp's events, at any
    // level.
    let (client, server_end) = tokio::io::duplex(1 << 16);
    let (read, write) = tokio::io::split(server_end);
    let records = MemorySink::new();
    let server = server_recording(records.clone());
    let transport = LineTransport::new(read, write, 1 << 20, server.tools().audit().clone())
        .hold_tool_arguments();
    let running = tokio::spawn(async move {
        let service = rmcp::serve_server(server, transport).await.unwrap();
        service.waiting().await.unwrap();
    });
    let answer = call_over(client, "hunter2-line-transport").await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(
        answer["result"]["content"][0]["text"], "stored db (22 bytes)",
        "the tool got its arguments: {answer}"
    );
    running.await.unwrap();
    let leaked = everything.containing("hunter2-line-transport");
    assert!(leaked.is_empty(), "{leaked:#?}");
    // The call sent as a notification was refused before rmcp, and audited (rmcp would have dropped it unheard).
    let rejected: Vec<Value> = records
        .records()
        .into_iter()
        .filter(|r| r["event"] == "message_rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert_eq!(rejected[0]["reason"], "call_without_id");
    assert_eq!(
        records
            .records()
            .iter()
            .filter(|r| r["event"] == "tool_call")
            .count(),
        1
    );

    // The same transport under a server that merged the secure tools' routes into its own router.
    let (client, server_end) = tokio::io::duplex(1 << 16);
    let (read, write) = tokio::io::split(server_end);
    let tools = tools();
    let transport =
        LineTransport::new(read, write, 1 << 20, tools.audit().clone()).hold_tool_arguments();
    let merged = Merged {
        tool_router: tools.tool_router(caller()),
    };
    let running = tokio::spawn(async move {
        let service = rmcp::serve_server(merged, transport).await.unwrap();
        service.waiting().await.unwrap();
    });
    let answer = call_over(client, "hunter2-merged-router").await;
    assert_eq!(
        answer["result"]["content"][0]["text"], "stored db (21 bytes)",
        "the tool got its arguments: {answer}"
    );
    running.await.unwrap();
    let leaked = everything.containing("hunter2-merged-router");
    assert!(leaked.is_empty(), "{leaked:#?}");
    assert!(
        !everything.containing("received request").is_empty(),
        "rmcp's debug events were heard"
    );
}

/// rmcp logs a client's `notifications/cancelled` at `info` with the client's `reason` whole: any text, as long as
/// the transport lets a message be, in one log line per cancellation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_cancellation_reason_never_reaches_the_logs() {
    let (everything, filtered) = captured();
    let tools = ToolSet::builder(())
        .tool::<wait>()
        .audit_sink(MemorySink::new())
        .build()
        .unwrap();
    let server = SecureServer::new(tools)
        .default_caller(caller())
        .transport("stdio");
    let (client, server_end) = tokio::io::duplex(1 << 16);
    let (read, write) = tokio::io::split(server_end);
    let running = tokio::spawn(async move {
        let service = rmcp::serve_server(server, AsyncRwTransport::new_server(read, write))
            .await
            .unwrap();
        service.waiting().await.unwrap();
    });

    let (read, mut write) = tokio::io::split(client);
    let mut lines = BufReader::new(read).lines();
    let marker = "cancelled-for-a-reason-of-the-clients";
    let reason = format!("{}{marker}", "r".repeat(256 << 10));
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "log-test", "version": "1"}
        }}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "wait", "arguments": {}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {
            "requestId": 2, "reason": reason
        }}),
    ];
    for message in messages {
        write
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
    }
    // The answer to `initialize`; the cancelled call gets none.
    let line = lines.next_line().await.unwrap().expect("an answer");
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["id"], 1);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while everything.containing(marker).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rmcp no longer logs a cancellation's reason: {:#?}",
            everything.lines()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop((lines, write));
    running.await.unwrap();

    let logged = everything.containing(marker);
    assert!(logged[0].len() > 256 << 10, "{}", logged[0].len());
    let leaked = filtered.containing(marker);
    assert!(
        leaked.is_empty(),
        "{} lines, the first of {} bytes",
        leaked.len(),
        leaked[0].len()
    );
}
