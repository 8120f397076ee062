//! The stdio runner as a real process: an rmcp client, the audit trail, the environment, shutdown, and protocol
//! versions.

use std::process::Stdio;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::transport::TokioChildProcess;
use secure_tools::SCOPES_META_KEY;
use secure_tools_tests::{RawServer, events, read_audit, tools_called};
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_test-server");
/// The test server's tools, sorted by name.
const TOOLS: [&str; 13] = [
    "commit_then_wait",
    "confirm",
    "confirm_both",
    "confirm_by_rule",
    "confirm_in_task",
    "confirm_twice",
    "crunch",
    "echo",
    "linger",
    "report",
    "slow",
    "store",
    "summarize",
];

fn args(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[tokio::test]
async fn an_rmcp_client_lists_calls_and_is_refused_as_the_policy_says() {
    let dir = tempfile::tempdir().unwrap();
    let audit_path = dir.path().join("audit.jsonl");
    let mut command = tokio::process::Command::new(SERVER);
    command
        .env("MCP_SCOPES", "test.read")
        .env("MCP_SERVER_ID", "rmcp-client-test")
        .env("MCP_AUDIT_LOG", &audit_path);
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = ().serve(transport).await.expect("handshake");

    let info = client.peer_info().expect("server info");
    assert!(ProtocolVersion::KNOWN_VERSIONS.contains(&info.protocol_version));

    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, TOOLS, "all tools listed, sorted");
    let store = tools.iter().find(|t| t.name == "store").unwrap();
    let meta = serde_json::to_value(store.meta.as_ref().unwrap()).unwrap();
    assert_eq!(meta[SCOPES_META_KEY], json!(["test.write"]));
    assert!(store.output_schema.is_some());

    // Allowed.
    let result = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "hi"}))))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(false));
    assert_eq!(
        serde_json::to_value(&result.content).unwrap()[0]["text"],
        "hi"
    );

    // Denied: a tool result with isError, not a protocol error.
    let result = client
        .call_tool(
            CallToolRequestParams::new("store")
                .with_arguments(args(json!({"name": "a", "secret": "pw"}))),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    let text = serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.starts_with("missing_scope:test.write"), "{text}");

    // Invalid input: also a tool result.
    let result = client
        .call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(args(json!({"text": "x".repeat(101)}))),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));

    // Unknown tool: a protocol error.
    let err = client
        .call_tool(CallToolRequestParams::new("nope").with_arguments(args(json!({}))))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tool not found"), "{err}");

    // Still serving.
    let result = client
        .call_tool(
            CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "again"}))),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(false));
    client.cancel().await.unwrap();

    // The child has exited once `cancel` returns; its records are on disk.
    let records = read_audit(&audit_path);
    let calls = events(&records, "tool_call");
    let outcomes: Vec<_> = calls
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ok", "denied", "invalid", "invalid", "ok"]);
    assert!(
        calls
            .iter()
            .all(|r| r["caller"] == "stdio" && r["server_id"] == "rmcp-client-test")
    );
    let session = events(&records, "session");
    assert_eq!(session.len(), 1);
    assert_eq!(session[0]["client_name"], "rmcp");
    // Its id, which every call of the session carries (a review found it on the calls only).
    assert!(session[0]["session_id"].is_string(), "{session:?}");
    assert!(
        calls
            .iter()
            .all(|r| r["session_id"] == session[0]["session_id"])
    );
    assert_eq!(
        session[0]["protocol_version"],
        info.protocol_version.to_string()
    );
}

/// Red-team finding: a second request with the id of one still in progress ran too (both calls audited, both
/// effects) and got no answer of its own: the client's two requests had one reply. JSON-RPC ids are unique among
/// the requests in progress: the second is refused (`-32600`, audited `message_rejected`, `duplicate_id`) and never
/// runs; the first is answered as usual, and its id is free again once answered. A cancelled request's id is not
/// (MCP forbids reusing an id in a session, and rmcp may still hold the cancelled call's state under it).
#[test]
fn a_request_reusing_the_id_of_one_in_progress_is_refused() {
    let mut server = RawServer::spawn(SERVER, Some("test.read,test.write"), &[]);
    assert!(server.initialize("2025-11-25").get("result").is_some());
    server.send(&RawServer::call_message(7, "slow", json!({"millis": 1500})));
    server.send(&RawServer::call_message(
        7,
        "echo",
        json!({"text": "second"}),
    ));
    let refused = server.recv();
    assert_eq!(refused["id"], 7, "{refused}");
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    let answered = server.recv();
    assert_eq!(answered["id"], 7, "{answered}");
    assert_eq!(
        answered["result"]["content"][0]["text"], "done",
        "{answered}"
    );
    // Free again once answered.
    let again = server.request(RawServer::call_message(7, "echo", json!({"text": "third"})));
    assert!(again["result"].is_object(), "{again}");
    // Not once cancelled, even after its handler stopped.
    server.send(&RawServer::call_message(
        8,
        "slow",
        json!({"millis": 30000}),
    ));
    server.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 8}}),
    );
    std::thread::sleep(Duration::from_millis(300));
    let after = server.request(RawServer::call_message(
        8,
        "echo",
        json!({"text": "fourth"}),
    ));
    assert_eq!(after["error"]["code"], -32600, "{after}");
    let (status, records, stderr) = server.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        tools_called(&records),
        ["slow", "echo", "slow"],
        "{records:#?}"
    );
    let rejected = events(&records, "message_rejected");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0]["reason"], "duplicate_id");
    assert_eq!(rejected[0]["request_id"], 7);
}

/// Red-team finding: a second `initialize` in a session was answered as the first was: the session had two `session`
/// records, and the client's name and version on its later calls' records were the second's, whatever it claimed.
/// A session is initialized once: another `initialize` is refused (`-32600`, audited `message_rejected`, reason
/// `already_initialized`), and the session goes on as it began.
#[test]
fn a_second_initialize_in_a_session_is_refused_and_changes_nothing() {
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
    assert!(server.initialize("2025-11-25").get("result").is_some());
    let again = server.request(json!({
        "jsonrpc": "2.0", "id": "again", "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "impostor", "version": "9.9"}}
    }));
    assert_eq!(again["id"], "again", "{again}");
    assert_eq!(again["error"]["code"], -32600, "{again}");
    let answer = server.request(RawServer::call_message(9, "echo", json!({"text": "ok"})));
    assert_eq!(answer["result"]["content"][0]["text"], "ok", "{answer}");
    let (status, records, stderr) = server.finish();
    assert!(status.success(), "{stderr}");
    let sessions = events(&records, "session");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["client_name"], "raw-test-client");
    assert_eq!(sessions[0]["protocol_version"], "2025-11-25");
    let rejected = events(&records, "message_rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["reason"], "already_initialized");
    assert_eq!(rejected[0]["request_id"], "again");
    assert!(!format!("{records:?}").contains("impostor"), "{records:#?}");
}

/// Red-team finding: within a session begun with `initialize`, a call whose `_meta` named another client
/// (`io.modelcontextprotocol/clientInfo`) was recorded under that name. The session's client is the one its
/// `initialize` named, on every record of it.
#[test]
fn a_calls_meta_cannot_rename_the_client_of_an_initialized_session() {
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
    assert!(server.initialize("2025-11-25").get("result").is_some());
    let mut call = RawServer::call_message(3, "echo", json!({"text": "x"}));
    call["params"]["_meta"] = json!({
        "io.modelcontextprotocol/clientInfo": {"name": "impostor", "version": "9.9"}
    });
    let answer = server.request(call);
    assert_eq!(answer["result"]["content"][0]["text"], "x", "{answer}");
    let (status, records, stderr) = server.finish();
    assert!(status.success(), "{stderr}");
    let calls = events(&records, "tool_call");
    assert_eq!(calls.len(), 1, "{records:#?}");
    assert_eq!(calls[0]["client_name"], "raw-test-client", "{records:#?}");
    assert_eq!(calls[0]["client_version"], "0.0.1", "{records:#?}");
}

/// Red-team finding: a request of a method MCP defines whose params rmcp cannot read as that method's (an
/// `initialize` without `clientInfo`, a `resources/read` whose uri is a number) was answered `-32601` "method not
/// found", naming the method, and left no record. It is invalid params (`-32602`), audited `message_rejected`,
/// `invalid_params`, as a misshapen `tools/call` is.
#[test]
fn a_known_method_with_misshapen_params_is_invalid_params_on_record() {
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
    assert!(server.initialize("2025-11-25").get("result").is_some());
    let misshapen = [
        json!({"jsonrpc": "2.0", "id": "a", "method": "initialize"}),
        json!({"jsonrpc": "2.0", "id": "b", "method": "initialize",
               "params": {"protocolVersion": 7, "capabilities": {}}}),
        json!({"jsonrpc": "2.0", "id": "c", "method": "resources/read", "params": {"uri": 5}}),
    ];
    for request in misshapen {
        let answer = server.request(request.clone());
        assert_eq!(answer["id"], request["id"], "{answer}");
        assert_eq!(answer["error"]["code"], -32602, "{request}: {answer}");
    }
    let answer = server.request(RawServer::call_message(9, "echo", json!({"text": "ok"})));
    assert_eq!(answer["result"]["content"][0]["text"], "ok", "{answer}");
    let (status, records, stderr) = server.finish();
    assert!(status.success(), "{stderr}");
    let rejected = events(&records, "message_rejected");
    let ids: Vec<_> = rejected.iter().map(|r| r["request_id"].clone()).collect();
    assert_eq!(ids, [json!("a"), json!("b"), json!("c")], "{rejected:?}");
    assert!(rejected.iter().all(|r| r["reason"] == "invalid_params"));
    assert_eq!(events(&records, "session").len(), 1);
}

/// A message refused within a session (not JSON, a reused id, a second `initialize`, misshapen params) is recorded
/// with the session's id, as its calls are, so that it can be joined to them; one refused before the session began
/// names none.
#[test]
fn a_message_refused_in_a_session_is_recorded_with_its_session_id() {
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
    server.send_raw(b"{not json\n");
    assert_eq!(server.recv()["error"]["code"], -32700);
    assert!(server.initialize("2025-11-25").get("result").is_some());
    server.send_raw(b"{not json\n");
    assert_eq!(server.recv()["error"]["code"], -32700);
    let again = server.request(json!({
        "jsonrpc": "2.0", "id": "again", "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "again", "version": "1"}}
    }));
    assert_eq!(again["error"]["code"], -32600, "{again}");
    let misshapen = server.request(json!({"jsonrpc": "2.0", "id": "m", "method": "tools/call",
                                          "params": {"name": 5}}));
    assert_eq!(misshapen["error"]["code"], -32602, "{misshapen}");
    let (status, records, stderr) = server.finish();
    assert!(status.success(), "{stderr}");
    let session = events(&records, "session")[0]["session_id"].clone();
    assert!(session.is_string(), "{records:#?}");
    let rejected = events(&records, "message_rejected");
    let reasons: Vec<_> = rejected.iter().map(|r| r["reason"].clone()).collect();
    assert_eq!(
        reasons,
        [
            "parse_error",
            "parse_error",
            "already_initialized",
            "invalid_params"
        ],
        "{rejected:#?}"
    );
    assert!(rejected[0].get("session_id").is_none(), "{:?}", rejected[0]);
    for record in &rejected[1..] {
        assert_eq!(record["session_id"], session, "{record}");
        // Over stdio the caller is the one on the other end of the pipe, as on the session's record.
        assert!(record.get("caller").is_none(), "{record}");
    }
}

#[test]
fn every_call_yields_exactly_one_audit_record_in_a_mixed_run() {
    let mut server = RawServer::spawn(SERVER, Some("test.read,test.write"), &[]);
    assert!(server.initialize("2025-11-25").get("result").is_some());
    let calls = [
        ("echo", json!({"text": "a"})),
        ("store", json!({"name": "n", "secret": "hunter2"})),
        ("store", json!({"name": "", "secret": "hunter2"})),
        ("store", json!({"name": "panic", "secret": "hunter2"})),
        ("echo", json!({"text": 5})),
        ("echo", json!({"text": "b", "extra": 1})),
        ("missing", json!({"secret": "hunter2"})),
        ("slow", json!({"millis": 1})),
    ];
    let rounds = 5;
    let mut id = 0;
    for _ in 0..rounds {
        for (tool, arguments) in &calls {
            id += 1;
            let answer = server.request(RawServer::call_message(id, tool, arguments.clone()));
            assert_eq!(answer["id"], id, "{answer}");
        }
    }
    let (status, records, stderr) = server.finish();
    assert!(status.success(), "{stderr}");
    let tool_calls = events(&records, "tool_call");
    assert_eq!(tool_calls.len(), calls.len() * rounds);
    let mut ids: Vec<_> = tool_calls
        .iter()
        .map(|r| r["request_id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        (1..=id).collect::<Vec<_>>(),
        "one record per request id"
    );
    assert!(
        !serde_json::to_string(&records).unwrap().contains("hunter2"),
        "a redacted value was audited"
    );
    assert!(
        !stderr.contains("hunter2"),
        "a redacted value reached stderr: {stderr}"
    );
    assert!(stderr.contains("secure tool `store` panicked"), "{stderr}");
}

/// rmcp logs every request it receives whole, arguments included, at `debug` and `trace`. The runner hands rmcp a
/// call's arguments where those events do not look, so a subscriber listening to every crate at `trace` sees no
/// redacted value, whatever the tool.
#[test]
fn a_subscriber_at_trace_sees_no_argument_of_a_call() {
    let env = [("TEST_SERVER_TRACE", "1")];
    let mut server = RawServer::spawn(SERVER, Some("test.read,test.write"), &env);
    server.initialize("2025-11-25");
    let answer = server.request(RawServer::call_message(
        1,
        "store",
        json!({"name": "n", "secret": "hunter2-at-trace"}),
    ));
    assert_eq!(
        answer["result"]["structuredContent"]["bytes"], 16,
        "{answer}"
    );
    // A call of the wrong shape, which rmcp would take for a request of another method and log whole.
    let answer = server.request(json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "store", "arguments": "secret=hunter2-misshapen"}
    }));
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    let (status, _, stderr) = server.finish();
    assert!(status.success());
    assert!(
        stderr.contains("received request") && stderr.contains("name: \"store\""),
        "rmcp's debug events reach the subscriber: {stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// Red-team finding: under the stateless revision a client's answers (what its user typed) came in each round's
/// `inputResponses`, and those taken before rode back in `requestState`: rmcp's `received request` event printed
/// both whole at `debug`, though the arguments beside them were held out of it. They are held with the arguments.
/// (The answers reach rmcp's events as output only: the `input_required` result's `requestState` and the tool's
/// result, as every tool's output does; see the README.)
#[test]
fn a_subscriber_at_trace_sees_no_answer_a_client_sends() {
    let env = [("TEST_SERVER_TRACE", "1")];
    let mut server = RawServer::spawn(SERVER, Some("test.read,test.write"), &env);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "1"}
    });
    let call = |id: u64, extra: Value| {
        let mut params = json!({"name": "confirm_twice", "arguments": {}, "_meta": meta});
        for (key, value) in extra.as_object().unwrap() {
            params[key] = value.clone();
        }
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
    };
    let first = server.request(call(1, json!({})));
    let state = first["result"]["requestState"].clone();
    let name = json!({"action": "accept", "content": {"name": "typed-Zanzibar-4471"}});
    let second = server.request(call(
        2,
        json!({"inputResponses": {"elicitation-0": name}, "requestState": state}),
    ));
    assert_eq!(second["result"]["resultType"], "input_required", "{second}");
    let go = json!({"action": "accept", "content": {"confirm": true}});
    let done = server.request(call(
        3,
        json!({"inputResponses": {"elicitation-1": go},
               "requestState": second["result"]["requestState"]}),
    ));
    assert_eq!(
        done["result"]["content"][0]["text"],
        "{\"name\":\"typed-Zanzibar-4471\"} {\"confirm\":true}",
        "the tool got its answers: {done}"
    );
    let (status, _, stderr) = server.finish();
    assert!(status.success());
    let received: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("received request") || line.contains("PeerMessage"))
        .collect();
    assert!(
        received.len() >= 3,
        "rmcp's debug and trace events reach the subscriber: {stderr}"
    );
    let leaked: Vec<&&str> = received
        .iter()
        .filter(|line| line.contains("typed-Zanzibar") || line.contains("elicitation-0"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:#?}");
}

#[test]
fn start_session_and_stop_are_audited_and_flushed_on_eof() {
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
    server.initialize("2025-06-18");
    let (status, records, _) = server.finish();
    assert!(status.success());
    let kinds: Vec<_> = records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["server_start", "session", "server_stop"]);
    assert_eq!(records[0]["transport"], "stdio");
    assert_eq!(records[0]["tools"], json!(TOOLS));
    assert_eq!(records[0]["grant"], json!(["test.read"]));
    assert_eq!(records[1]["protocol_version"], "2025-06-18");
    assert_eq!(records[1]["client_name"], "raw-test-client");
    assert_eq!(records[1]["lifecycle"], "initialize");
    assert_eq!(records[2]["reason"], "eof");
    assert!(records.iter().all(|r| r["server_id"] == "test-server-1"));
}

/// A red team's (round four): past a file size limit (`ulimit -f`), the audit file's write killed the server with
/// SIGXFSZ, mid-record, though the sink handles a failed write (the record cut back, the call refused
/// `audit_unavailable`). The runners ignore SIGXFSZ, so the write fails as a full disk's does, and the server goes
/// on answering.
#[test]
fn a_file_size_limit_fails_the_audit_closed_without_killing_the_server() {
    let mut command = std::process::Command::new("sh");
    // Four blocks of 512 bytes: a few records.
    command.args(["-c", &format!("ulimit -f 4 && exec '{SERVER}'")]);
    let mut server = RawServer::spawn_command(command, Some("test.read"), &[]);
    server.initialize("2025-11-25");
    let mut refused = 0;
    for id in 1..=40 {
        server.send(&RawServer::call_message(
            id,
            "echo",
            json!({"text": "hello"}),
        ));
        let answer = server.recv();
        assert_eq!(answer["id"], id, "{answer}");
        if answer.to_string().contains("audit_unavailable") {
            refused += 1;
        }
    }
    assert!(refused > 0, "the limit was never reached");
    let (status, records, stderr) = server.finish();
    assert!(
        status.code().is_some(),
        "killed by a signal: {status:?} {stderr}"
    );
    // What was written is whole records.
    assert!(!records.is_empty());
}

/// A second round's: SIGXFSZ was ignored only once the server began serving, so a record written before (a lockfile
/// mismatch's, with `--tools-lock-mode warn`) past the limit still killed it mid-record.
#[test]
fn a_file_size_limit_before_serving_is_an_error_not_a_kill() {
    let lock = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/file-server/tools.lock.json"
    );
    let mut command = std::process::Command::new("sh");
    command.args(["-c", &format!("ulimit -f 1 && exec '{SERVER}'")]);
    let server = RawServer::spawn_command(
        command,
        Some("test.read"),
        &[("MCP_TOOLS_LOCK", lock), ("MCP_TOOLS_LOCK_MODE", "warn")],
    );
    let (status, _, stderr) = server.finish();
    assert!(
        status.code().is_some(),
        "killed by a signal: {status:?} {stderr}"
    );
    assert!(!status.success(), "{stderr}");
}

#[test]
fn sigterm_finishes_calls_in_flight_and_flushes_the_audit() {
    stop_finishes_calls_in_flight_and_flushes_the_audit("TERM", "sigterm");
}

/// A red team's (round four): SIGHUP (a terminal's hang-up, what log rotation scripts often send) ended the server
/// at once, with no `server_stop` and no final checkpoint. It stops the server as SIGTERM does.
#[test]
fn sighup_stops_the_server_as_sigterm_does() {
    stop_finishes_calls_in_flight_and_flushes_the_audit("HUP", "sighup");
}

fn stop_finishes_calls_in_flight_and_flushes_the_audit(signal: &str, reason: &str) {
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
    server.initialize("2025-11-25");
    server.send(&RawServer::call_message(1, "slow", json!({"millis": 300})));
    std::thread::sleep(Duration::from_millis(100));
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The call in flight finishes and is answered before the server exits.
    let answer = server.recv();
    assert_eq!(answer["id"], 1, "{answer}");
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let exit = server.wait();
    assert!(exit.success(), "exit status {exit:?}");
    let records = server.audit();
    let calls = events(&records, "tool_call");
    assert_eq!(calls.len(), 1, "{records:?}");
    assert_eq!(
        (&calls[0]["tool"], &calls[0]["outcome"]),
        (&json!("slow"), &json!("ok"))
    );
    let stop = events(&records, "server_stop");
    assert_eq!(stop.len(), 1);
    assert_eq!(stop[0]["reason"], reason);
    assert_eq!(
        records.last().unwrap()["event"],
        "server_stop",
        "nothing is written after the stop record"
    );
}

#[test]
fn without_mcp_scopes_it_warns_and_denies() {
    let mut server = RawServer::spawn(SERVER, None, &[]);
    server.initialize("2025-11-25");
    let answer = server.request(RawServer::call_message(1, "echo", json!({"text": "x"})));
    assert_eq!(answer["result"]["isError"], true);
    assert_eq!(
        answer["result"]["structuredContent"]["error"]["code"],
        "missing_scope:test.read"
    );
    let (_, _, stderr) = server.finish();
    assert!(stderr.contains("MCP_SCOPES is unset or empty"), "{stderr}");
}

/// The TypeScript SDK v1 and the MCP Inspector check any `structuredContent` against the tool's output schema,
/// `isError` or not: an `{"error": ...}` object on a refusal of a tool with an output schema turned the refusal
/// into a client-side validation error (-32602) that hid the code. Such a refusal carries its code in the text
/// only; a tool without an output schema keeps the structured error.
#[test]
fn a_refusal_of_a_tool_with_an_output_schema_carries_no_structured_content() {
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
    server.initialize("2025-11-25");
    let listed = server.request(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let tools = listed["result"]["tools"].as_array().unwrap();
    let schema_of =
        |name: &str| tools.iter().find(|t| t["name"] == name).unwrap()["outputSchema"].clone();
    assert!(schema_of("store").is_object(), "{listed}");
    assert!(schema_of("echo").is_null(), "{listed}");

    // Denied: the scope is missing.
    let answer = server.request(RawServer::call_message(
        3,
        "store",
        json!({"name": "a", "secret": "pw"}),
    ));
    let result = &answer["result"];
    assert_eq!(result["isError"], true, "{answer}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("missing_scope:test.write: "),
        "{answer}"
    );
    assert!(result.get("structuredContent").is_none(), "{answer}");

    // Without an output schema the structured error stays.
    let answer = server.request(RawServer::call_message(
        4,
        "echo",
        json!({"text": "x".repeat(101)}),
    ));
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["error"]["code"], "invalid_input",
        "{answer}"
    );
    let (_, records, _) = server.finish();
    assert_eq!(events(&records, "tool_call").len(), 2);
}

#[test]
fn an_invalid_scope_in_the_environment_stops_the_start_with_a_clear_message() {
    let server = RawServer::spawn(SERVER, Some("test.read,FILES.*"), &[]);
    let (status, records, stderr) = server.finish();
    assert!(!status.success());
    assert!(
        stderr.contains("MCP_SCOPES") && stderr.contains("FILES.*"),
        "{stderr}"
    );
    assert!(records.is_empty(), "nothing was served");
}

#[test]
fn every_known_version_with_initialize_is_negotiated_as_asked() {
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
        let answer = server.initialize(version);
        assert_eq!(answer["result"]["protocolVersion"], version, "{answer}");
        assert!(answer["result"]["capabilities"]["tools"].is_object());
        let listed = server.request(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
        assert_eq!(
            listed["result"]["tools"].as_array().unwrap().len(),
            TOOLS.len(),
            "{version}: {listed}"
        );
    }
}

fn stateless_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "9"}
    })
}

#[test]
fn the_stateless_revision_discovers_and_calls_without_initialize() {
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
    let discovered = server.request(json!({
        "jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": stateless_meta()}
    }));
    let versions = discovered["result"]["supportedVersions"].to_string();
    assert!(
        versions.contains("2026-07-28") && versions.contains("2024-11-05"),
        "{discovered}"
    );
    let answer = server.request(json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "stateless"}, "_meta": stateless_meta()}
    }));
    assert_eq!(answer["id"], 2);
    assert_eq!(
        answer["result"]["content"][0]["text"], "stateless",
        "{answer}"
    );
    let (_, records, _) = server.finish();
    let session = events(&records, "session");
    assert_eq!(session.len(), 1);
    assert_eq!(session[0]["lifecycle"], "stateless");
    assert_eq!(session[0]["protocol_version"], "2026-07-28");
    assert_eq!(session[0]["client_name"], "stateless-client");
    assert_eq!(events(&records, "tool_call").len(), 1);
}

#[test]
fn an_unknown_version_is_offered_the_newest_by_default() {
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
    let answer = server.initialize("2099-01-01");
    assert_eq!(
        answer["result"]["protocolVersion"], "2025-11-25",
        "{answer}"
    );
}

#[test]
fn a_strict_minimum_refuses_older_and_unknown_versions_audits_it_and_keeps_serving() {
    let env = [("MCP_MIN_PROTOCOL_VERSION", "2025-06-18")];
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &env);
    for version in ["2024-11-05", "2025-03-26", "2099-01-01"] {
        let answer = server.initialize(version);
        assert_eq!(answer["error"]["code"], -32022, "{version}: {answer}");
        assert_eq!(answer["error"]["data"]["requested"], version);
        assert_eq!(answer["id"], "init");
    }
    // A stateless request with a version outside the policy is refused the same way.
    let mut meta = stateless_meta();
    meta["io.modelcontextprotocol/protocolVersion"] = json!("2025-03-26");
    let answer = server.request(
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"_meta": meta}}),
    );
    assert!(answer.get("error").is_some(), "{answer}");
    // The client tries a version inside the policy, on the same stream.
    let answer = server.initialize("2025-11-25");
    assert_eq!(
        answer["result"]["protocolVersion"], "2025-11-25",
        "{answer}"
    );
    let answer = server.request(RawServer::call_message(9, "echo", json!({"text": "ok"})));
    assert_eq!(answer["result"]["content"][0]["text"], "ok");
    let (_, records, _) = server.finish();
    let rejected = events(&records, "version_rejected");
    let requested: Vec<_> = rejected
        .iter()
        .map(|r| r["requested"].as_str().unwrap())
        .collect();
    assert_eq!(
        requested,
        ["2024-11-05", "2025-03-26", "2099-01-01", "2025-03-26"]
    );
    assert_eq!(rejected[0]["request_id"], "init");
}

/// Red-team finding: with a minimum of 2026-07-28 (the stateless revision, which has no `initialize`), an
/// `initialize` asking for 2026-07-28 was refused `-32022` with 2026-07-28 among the supported versions, which read
/// as a contradiction. The refusal now says why and what to send instead; the stream keeps serving.
#[test]
fn an_initialize_no_accepted_version_has_is_told_to_discover_instead() {
    let env = [("MCP_MIN_PROTOCOL_VERSION", "2026-07-28")];
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &env);
    for version in ["2026-07-28", "2025-11-25"] {
        let answer = server.initialize(version);
        assert_eq!(answer["error"]["code"], -32022, "{version}: {answer}");
        assert_eq!(answer["error"]["data"]["requested"], version, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("no `initialize`") && message.contains("server/discover"),
            "{answer}"
        );
    }
    let answer = server.request(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "ok"}, "_meta": stateless_meta()}}));
    assert_eq!(answer["result"]["content"][0]["text"], "ok", "{answer}");
    let (_, records, _) = server.finish();
    assert_eq!(
        events(&records, "version_rejected").len(),
        2,
        "{records:#?}"
    );
}

/// A review's finding: over stdio a client's name and version were cut at 256 characters, silently (no length, no
/// digest), where every other value is shortened with a note: two long names differing past the cut were one.
#[test]
fn a_long_client_name_is_shortened_with_a_note_like_any_value() {
    let long = format!("{}-one", "n".repeat(2000));
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
    let answer = server.request(json!({
        "jsonrpc": "2.0", "id": "init", "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": long, "version": "1"}}
    }));
    assert!(answer.get("result").is_some(), "{answer}");
    let (_, records, _) = server.finish();
    let sessions = events(&records, "session");
    assert_eq!(sessions.len(), 1, "{records:#?}");
    let name = sessions[0]["client_name"].as_str().unwrap();
    assert!(name.contains("[2004 bytes in all, sha-256 "), "{name}");
}

#[test]
fn a_long_version_or_request_id_outside_a_call_is_bounded_in_its_records() {
    let long = "9".repeat(300_000);
    let env = [("MCP_MIN_PROTOCOL_VERSION", "2025-06-18")];
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &env);
    let answer = server.request(json!({
        "jsonrpc": "2.0", "id": long, "method": "initialize",
        "params": {"protocolVersion": long, "capabilities": {}, "clientInfo": {"name": long, "version": "1"}}
    }));
    assert!(answer.get("error").is_some(), "{answer}");
    // A stateless request, long version and client info.
    let mut lenient = RawServer::spawn(SERVER, Some("test.read"), &[]);
    let mut meta = stateless_meta();
    meta["io.modelcontextprotocol/protocolVersion"] = json!(long);
    meta["io.modelcontextprotocol/clientInfo"] = json!({"name": long, "version": long});
    lenient.request(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}}),
    );
    let (_, strict_records, _) = server.finish();
    let (_, lenient_records, _) = lenient.finish();
    // An unknown version of the stateless revision is refused, strict policy or not.
    assert_eq!(events(&strict_records, "version_rejected").len(), 1);
    assert_eq!(events(&lenient_records, "version_rejected").len(), 1);
    for records in [strict_records, lenient_records] {
        for record in &records {
            let line = record.to_string();
            assert!(
                line.len() < 16 * 1024,
                "{} bytes: {}",
                line.len(),
                &line[..200]
            );
        }
    }
}

#[test]
fn the_listing_can_show_only_the_tools_the_caller_may_call() {
    let everything = |server: &mut RawServer| -> Vec<String> {
        let listed = server.request(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
        listed["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut all = RawServer::spawn(SERVER, Some("test.read"), &[]);
    all.initialize("2025-11-25");
    let listed_all = everything(&mut all);
    assert_eq!(listed_all.len(), TOOLS.len());
    let mut callable =
        RawServer::spawn(SERVER, Some("test.read"), &[("MCP_LIST_TOOLS", "callable")]);
    callable.initialize("2025-11-25");
    let listed = everything(&mut callable);
    assert!(
        !listed.is_empty() && listed.len() < listed_all.len(),
        "{listed:?}"
    );
    assert!(listed.iter().all(|name| listed_all.contains(name)));
    let wrong = RawServer::spawn(SERVER, Some("test.read"), &[("MCP_LIST_TOOLS", "some")]);
    let (_, _, stderr) = wrong.finish();
    assert!(stderr.contains("MCP_LIST_TOOLS"), "{stderr}");
}

/// Hosts on Node (whose `child_process` connects a child's standard streams with Unix socket pairs, not pipes)
/// are served on the event loop like pipes: the calls work, and a host that stops reading does not keep the server
/// from stopping (review finding: the writes then went through tokio's blocking pool, which a stopping runtime
/// waits for, so the process hung after SIGTERM).
#[test]
fn standard_streams_that_are_sockets_work_and_do_not_hold_up_the_stop() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    use std::process::Stdio;

    let (mut to_server, server_in) = UnixStream::pair().unwrap();
    let (from_server, server_out) = UnixStream::pair().unwrap();
    let mut child = std::process::Command::new(SERVER)
        .env("MCP_SCOPES", "test.read")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(server_in)))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(server_out)))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut answers = BufReader::new(from_server.try_clone().unwrap());
    let mut answer = || {
        let mut line = String::new();
        answers.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "socket-host", "version": "1"}}});
    writeln!(to_server, "{initialize}").unwrap();
    assert!(answer()["result"]["protocolVersion"].is_string());
    writeln!(
        to_server,
        "{}",
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
    )
    .unwrap();
    writeln!(
        to_server,
        "{}",
        RawServer::call_message(1, "echo", json!({"text": "over a socket"}))
    )
    .unwrap();
    assert_eq!(answer()["result"]["content"][0]["text"], "over a socket");

    // The host stops reading while the server has answers to write.
    let flood = std::thread::spawn(move || {
        let list = format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        );
        for _ in 0..20_000 {
            if to_server.write_all(list.as_bytes()).is_err() {
                break;
            }
        }
        to_server
    });
    std::thread::sleep(Duration::from_secs(1));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            assert!(exit.success(), "{exit:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server did not stop while its host was not reading"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(from_server);
    drop(flood);
}

/// Standard output that is also standard error (`2>&1` into one pipe) is written the blocking way: non-blocking
/// mode would be standard error's too, and a log line written while the host lags would fail instead of waiting.
/// The server still answers, its warnings in the same stream.
#[test]
fn standard_output_shared_with_standard_error_still_serves() {
    use std::io::{BufRead, BufReader, Write};
    let mut child = std::process::Command::new("sh")
        .args(["-c", "exec \"$0\" 2>&1", SERVER])
        .env_remove("MCP_SCOPES")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "shared-stream", "version": "1"}}});
    writeln!(input, "{initialize}").unwrap();
    drop(input);
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(child.wait().unwrap().success());
    assert!(
        lines.iter().any(|l| l.contains("MCP_SCOPES is unset")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|answer| answer["id"] == 0 && answer["result"]["protocolVersion"].is_string()),
        "{lines:?}"
    );
}

/// stdout belongs to the protocol: a tool's `println!` (or a library's, or a default `tracing` subscriber's) wrote
/// into the protocol stream, where a line can forge an answer to a request the client has not had answered yet.
/// The process's own stdout is standard error once the transport has its duplicate of the pipe.
#[test]
fn a_tool_printing_to_stdout_cannot_write_into_the_protocol_stream() {
    let mut server = RawServer::spawn(SERVER, Some("test.read"), &[]);
    server.initialize("2025-11-25");
    let forged =
        r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"forged"}]}}"#;
    let answer = server.request(RawServer::call_message(
        1,
        "echo",
        json!({"text": format!("println:{forged}")}),
    ));
    assert_eq!(answer["id"], 1, "{answer}");
    server.send(&RawServer::call_message(2, "echo", json!({"text": "real"})));
    let (before, answer) = server.until_answer(&json!(2));
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(answer["result"]["content"][0]["text"], "real", "{answer}");
    let (_, _, stderr) = server.finish();
    assert!(stderr.contains(forged), "the line went to stderr: {stderr}");
}

/// Red-team finding: a host that gives the server one pipe for stdout and stderr (`2>&1`) got a tool's `println!`
/// into the protocol stream all the same, the process's stdout having been pointed at stderr, which was that pipe.
/// There it is pointed at `/dev/null`.
#[test]
fn with_stderr_on_the_protocols_pipe_a_tool_printing_to_stdout_still_cannot_write_into_it() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    let mut child = std::process::Command::new(SERVER)
        .env("MCP_SCOPES", "test.read")
        .env("MCP_AUDIT_LOG", dir.path().join("audit.jsonl"))
        .stdin(std::process::Stdio::piped())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let forged =
        r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"forged"}]}}"#;
    let messages = [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        RawServer::call_message(1, "echo", json!({"text": format!("println:{forged}")})),
    ];
    for message in &messages {
        writeln!(stdin, "{message}").unwrap();
    }
    let mut lines = std::io::BufReader::new(reader).lines();
    // The answer to 1 comes; then the real call 2.
    for line in lines.by_ref() {
        let line = line.unwrap();
        assert_ne!(line.trim(), forged);
        if line.starts_with(r#"{"jsonrpc":"2.0","id":1,"#) {
            break;
        }
    }
    writeln!(
        stdin,
        "{}",
        RawServer::call_message(2, "echo", json!({"text": "real"}))
    )
    .unwrap();
    for line in lines.by_ref() {
        let line = line.unwrap();
        assert_ne!(line.trim(), forged);
        if line.starts_with(r#"{"jsonrpc":"2.0","id":2,"#) {
            assert!(line.contains("real"), "{line}");
            break;
        }
    }
    drop(stdin);
    let _ = child.wait();
}

/// Review finding: a cancellation freed its request's id at once, while a handler past its point of no return ran
/// on; a request reusing the id meanwhile ran too, and rmcp gave it the old call's answer and took its
/// cancellation token (and a red team's reuse just as the handler ended did the same). A cancelled id is refused
/// while the handler runs and after it ended.
#[test]
fn a_cancelled_call_past_its_commit_keeps_its_id_until_its_handler_ends() {
    let mut server = RawServer::spawn(SERVER, Some("test.read,test.write"), &[]);
    assert!(server.initialize("2025-11-25").get("result").is_some());
    server.send(&RawServer::call_message(
        9,
        "commit_then_wait",
        json!({"millis": 1500}),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while events(&server.audit(), "call_started").is_empty() {
        assert!(std::time::Instant::now() < deadline, "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past its commit (a moment after its start record), then cancelled.
    std::thread::sleep(Duration::from_millis(200));
    server.send(
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}),
    );
    let refused = server.request(RawServer::call_message(9, "echo", json!({"text": "mine"})));
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    // Once its handler has ended, the id stays refused; another id is served.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while events(&server.audit(), "tool_call").is_empty() {
        assert!(std::time::Instant::now() < deadline, "never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let again = server.request(RawServer::call_message(9, "echo", json!({"text": "mine"})));
    assert_eq!(again["error"]["code"], -32600, "{again}");
    let mine = server.request(RawServer::call_message(10, "echo", json!({"text": "mine"})));
    assert_eq!(mine["result"]["content"][0]["text"], "mine", "{mine}");
    let (status, records, stderr) = server.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(
        tools_called(&records),
        ["commit_then_wait", "echo"],
        "{records:#?}"
    );
}
