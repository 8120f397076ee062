//! A `tools/call` whose params are not a `name` string and an `arguments` object, where rmcp parses it: over HTTP,
//! and on rmcp's own stream transport. rmcp takes such a call for a request of a method it does not know; it is
//! invalid params (`-32602`), audited `message_rejected` as the stdio transport refuses it.

use std::time::Duration;

use secure_tools_tests::{HttpTestServer, events};
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_test-server");

/// The shapes rmcp does not take for a call, as the stdio transport's test sends them.
fn cases() -> Vec<Value> {
    vec![
        json!({"name": 5, "arguments": "x"}),
        json!({"name": "echo", "arguments": "text=hi"}),
        json!({"name": "echo", "arguments": ["hi"]}),
        json!({"arguments": {"text": "hi"}}),
        json!({"name": 5, "arguments": {"text": "hi"}}),
        // The stateless revision's members of a call, of the wrong types.
        json!({"name": "echo", "arguments": {"text": "hi"}, "inputResponses": "yes"}),
        json!({"name": "echo", "arguments": {"text": "hi"}, "requestState": {"a": 1}}),
    ]
}

/// Review finding: over HTTP such a call reached the secure handler as a custom request, which passed it to the
/// inner handler: `-32601` "method not found", and no record, where stdio answers `-32602` and audits it.
#[tokio::test]
async fn over_http_a_tools_call_with_params_of_the_wrong_shape_is_invalid_params_and_audited() {
    let server = HttpTestServer::start(SERVER, &[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let post = |body: Value| {
        client
            .post(&server.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body)
            .send()
    };
    for (id, params) in cases().into_iter().enumerate() {
        let answer: Value =
            post(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(answer["error"]["code"], -32602, "{params}: {answer}");
        assert_eq!(answer["id"], id, "{answer}");
        // Red-team finding: the message named `name` and `arguments` only, for a call whose fault was another member.
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("`inputResponses` object")
                && message.contains("`requestState` string"),
            "{answer}"
        );
    }
    let answer: Value = post(json!({"jsonrpc": "2.0", "id": 99, "method": "tools/call",
                                    "params": {"name": "echo", "arguments": {"text": "ok"}}}))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "ok", "{answer}");

    let audit = server.audit_until(|audit| !events(audit, "tool_call").is_empty());
    let refused = events(&audit, "message_rejected");
    assert_eq!(refused.len(), cases().len(), "{audit:?}");
    for (id, record) in refused.iter().enumerate() {
        assert_eq!(record["reason"], "invalid_params", "{record}");
        assert_eq!(record["code"], -32602, "{record}");
        assert_eq!(record["request_id"], id, "{record}");
        assert!(record["bytes"].as_u64().unwrap() > 0, "{record}");
    }
    assert_eq!(events(&audit, "tool_call").len(), 1, "only the valid call");
}

/// A [`SecureServer`](secure_tools::serve::SecureServer) served on rmcp's own stream transport (as a user may serve
/// it, without the runners) answers and audits such a call the same way.
#[tokio::test]
async fn on_rmcps_own_transport_a_tools_call_of_the_wrong_shape_is_invalid_params_and_audited() {
    use rmcp::ServiceExt as _;
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

    let audit = secure_tools::MemorySink::new();
    let tools = secure_tools::ToolSet::builder(())
        .audit_sink(audit.clone())
        .build()
        .unwrap();
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let running = secure_tools::serve::SecureServer::new(tools)
            .serve(server_io)
            .await
            .expect("server starts");
        running.waiting().await.ok();
    });
    let (read, mut write) = tokio::io::split(client_io);
    let mut lines = tokio::io::BufReader::new(read).lines();
    let mut send = async |message: Value| {
        let mut line = serde_json::to_vec(&message).unwrap();
        line.push(b'\n');
        write.write_all(&line).await.unwrap();
    };
    send(
        json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}}),
    )
    .await;
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    let mut answers = Vec::new();
    for (id, params) in cases().into_iter().enumerate() {
        send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})).await;
    }
    while answers.len() < cases().len() + 1 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("answered in time")
            .unwrap()
            .expect("a line");
        answers.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    for answer in &answers[1..] {
        assert_eq!(answer["error"]["code"], -32602, "{answer}");
    }
    let records = audit.records();
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "message_rejected")
        .collect();
    assert_eq!(refused.len(), cases().len(), "{records:?}");
    assert!(
        refused.iter().all(|r| r["reason"] == "invalid_params"),
        "{refused:?}"
    );
}
