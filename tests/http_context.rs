//! What the HTTP transport hands the pipeline, through a real server process: a distinct call id per call though
//! every stateless client sends id 1, the transport facts in each record, and a call whose client hangs up is
//! stopped and audited `cancelled`, a request past the HTTP request timeout is answered `408` and its call
//! audited once, and a chunked body over the size limit is refused `413` and recorded.

use std::time::{Duration, Instant};

use secure_tools_tests::{HttpTestServer, events, read_audit, read_audit_so_far, tools_called};
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_test-server");

type Server = HttpTestServer;

fn start() -> Server {
    start_with(&[])
}

fn start_with(env: &[(&str, &str)]) -> Server {
    HttpTestServer::start(SERVER, env)
}

/// The `host:port` the server listens at, for raw sockets.
fn address_of(server: &Server) -> String {
    server.url["http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// Asks `server` to stop, as an operator does (SIGTERM).
fn signal_stop(server: &Server) {
    signal(server, "TERM");
}

/// Sends `server` the signal `name` (`TERM`, `HUP`, ...).
fn signal(server: &Server, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Stops `server` as an operator does (SIGTERM), once it has exited (within 15 s).
async fn stop(server: &mut Server) {
    signal_stop(server);
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the server did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stateless `tools/call` with JSON-RPC id 1, as a client that opens a connection per call sends it.
fn call(tool: &str, arguments: Value) -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}
    })
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(body)
        .send()
        .await
}

#[tokio::test]
async fn every_call_gets_its_own_id_and_its_transport_facts_though_all_send_id_1() {
    let server = start();
    let client = client(Duration::from_secs(10));
    for text in ["a", "b", "c"] {
        let answer: Value = post(&client, &server.url, &call("echo", json!({ "text": text })))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["result"]["content"][0]["text"], text, "{answer}");
    }
    let audit = read_audit(&server.audit);
    let calls = events(&audit, "tool_call");
    assert_eq!(calls.len(), 3);
    let ids: std::collections::BTreeSet<_> = calls
        .iter()
        .map(|r| r["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{calls:?}");
    for record in calls {
        assert_eq!(record["request_id"], 1);
        assert_eq!(record["transport"], "http");
        let remote = record["remote_addr"].as_str().unwrap();
        assert!(remote.starts_with("127.0.0.1:"), "{record}");
        // A stateless request carries no client description of its own, and rmcp's placeholder is not recorded.
        assert!(record.get("client_name").is_none(), "{record}");
    }
}

#[tokio::test]
async fn a_call_whose_client_hangs_up_is_stopped_and_audited_cancelled() {
    use std::io::Write;
    let server = start();
    let started = Instant::now();
    // A client that sends its request and hangs up before the answer: the socket is closed.
    let body = call("slow", json!({"millis": 30000})).to_string();
    let address = address_of(&server);
    let mut socket = std::net::TcpStream::connect(&address).unwrap();
    write!(
        socket,
        "POST /mcp HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(socket);
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let audit = read_audit_so_far(&server.audit);
        if let Some(record) = events(&audit, "tool_call").into_iter().next() {
            break record.clone();
        }
        assert!(Instant::now() < deadline, "no record of the abandoned call");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(record["outcome"], "cancelled", "{record}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The server keeps serving.
    assert_still_serving(&server).await;
}

/// A quick call is answered.
async fn assert_still_serving(server: &Server) {
    let answer: Value = post(
        &client(Duration::from_secs(10)),
        &server.url,
        &call("echo", json!({"text": "ok"})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "ok");
}

/// Polls the audit until `done` holds for it, for at most 10 s.
fn audit_until(server: &Server, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    server.audit_until(done)
}

#[tokio::test]
async fn a_request_past_the_request_timeout_is_answered_408_and_its_call_audited_once() {
    let server = start_with(&[("MCP_HTTP_REQUEST_TIMEOUT", "1s")]);
    let started = Instant::now();
    let answer = post(
        &client(Duration::from_secs(20)),
        &server.url,
        &call("slow", json!({"millis": 30000})),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::REQUEST_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(10), "no timeout");
    // A JSON-RPC error, which the SDK clients hand the application (a `text/plain` body they do not read).
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        answer.headers()
    );
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32001, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("timeout"),
        "{body}"
    );
    let audit = audit_until(&server, |audit| {
        !events(audit, "tool_call").is_empty() && !events(audit, "http_rejected").is_empty()
    });
    // The call the timeout cut off is stopped and has its one record; the refusal has its own.
    let calls = events(&audit, "tool_call");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["tool"], "slow");
    assert_eq!(calls[0]["outcome"], "cancelled", "{}", calls[0]);
    let rejected = events(&audit, "http_rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["status"], 408);
    assert_eq!(rejected[0]["reason"], "timeout");
    // A quick call still answers within the same limit.
    assert_still_serving(&server).await;
}

/// Review finding: the request timeout (30 s by default) was shorter than the tool timeout (60 s by default), so a
/// stateless client never got the documented `timeout` refusal of a call that ran too long: it got a `408`, and the
/// call was audited `cancelled`. Unset, the request timeout is now the tool timeout and a margin: the call's own
/// timeout answers first. The default itself (the longest tool timeout and 5 s) is checked by the unit test
/// `unset_the_request_timeout_outlasts_the_tool_timeout`; here, end to end, that the call's own refusal arrives and
/// no `408` does.
#[tokio::test]
async fn without_a_request_timeout_a_call_past_the_tool_timeout_gets_its_timeout_refusal() {
    let server = start_with(&[("MCP_TOOL_TIMEOUT", "1s")]);
    let answer = post(
        &client(Duration::from_secs(15)),
        &server.url,
        &call("slow", json!({"millis": 10000})),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::OK);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert_eq!(
        body["result"]["_meta"]["secure-tools/refusal"]["code"], "timeout",
        "{body}"
    );
    let audit = audit_until(&server, |audit| !events(audit, "tool_call").is_empty());
    let calls = events(&audit, "tool_call");
    assert_eq!(calls[0]["outcome"], "timeout", "{}", calls[0]);
    assert!(events(&audit, "http_rejected").is_empty(), "{audit:?}");
}

#[test]
fn a_chunked_body_over_the_size_limit_is_refused_413_and_recorded() {
    use std::io::{Read, Write};
    let server = start_with(&[("MCP_MAX_MESSAGE_BYTES", "65536")]);
    let address = address_of(&server);
    let mut socket = std::net::TcpStream::connect(&address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        socket,
        "POST /mcp HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    // No Content-Length to refuse up front: 128 KiB of an echo call's text in 8 KiB chunks, twice the limit.
    let head = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":""#;
    write!(socket, "{:x}\r\n{head}\r\n", head.len()).unwrap();
    let chunk = "a".repeat(8192);
    for _ in 0..16 {
        // The server may answer and close before the whole body is sent; later writes may then fail.
        if write!(socket, "{:x}\r\n{chunk}\r\n", chunk.len()).is_err() {
            break;
        }
    }
    let _ = write!(socket, "4\r\n\"}}}}}}\r\n0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(300)]
    );
    let audit = audit_until(&server, |audit| !events(audit, "http_rejected").is_empty());
    let rejected = events(&audit, "http_rejected");
    assert_eq!(rejected[0]["status"], 413, "{rejected:?}");
    assert_eq!(rejected[0]["reason"], "body_too_large");
    // Nothing of it reached a tool.
    assert!(events(&audit, "tool_call").is_empty(), "{audit:?}");
}

/// Trial-left gap: a chunked body over the size limit is refused `413` and read to its end after the answer, up to
/// 16 MiB; one larger closes the connection, but its `413` (sent before the body's size could be known) said how
/// long the connection would be kept, so a client could send its next request on a connection about to close. The
/// answer to a request whose body is still being read now waits for that (2 s at most): kept, the answer says so;
/// not, it says `Connection: close`.
#[test]
fn a_chunked_body_too_large_to_read_to_its_end_is_refused_with_connection_close() {
    use std::io::{Read, Write};
    let server = start_with(&[("MCP_MAX_MESSAGE_BYTES", "65536")]);
    let address = address_of(&server);
    let answer_of = |megabytes: usize| {
        let mut socket = std::net::TcpStream::connect(&address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut writer = socket.try_clone().unwrap();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        );
        // The body on a thread of its own: the server may stop reading it.
        let sending = std::thread::spawn(move || {
            writer.write_all(head.as_bytes())?;
            let chunk = "a".repeat(64 * 1024);
            for _ in 0..megabytes * 16 {
                write!(writer, "{:x}\r\n{chunk}\r\n", chunk.len())?;
            }
            writer.write_all(b"0\r\n\r\n")
        });
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = socket.read(&mut buffer).unwrap();
            assert!(read > 0, "no answer");
            answer.extend_from_slice(&buffer[..read]);
        }
        drop(socket);
        let _ = sending.join();
        String::from_utf8_lossy(&answer).to_lowercase()
    };
    // 20 MiB: more than is read after a refusal.
    let answer = answer_of(20);
    assert!(answer.starts_with("http/1.1 413"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(!answer.contains("keep-alive:"), "{answer}");
    // 1 MiB: read to its end, and the connection is kept.
    let answer = answer_of(1);
    assert!(answer.starts_with("http/1.1 413"), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("keep-alive: timeout="), "{answer}");
}

/// Red-team finding (against the fix above): while a refusal waited for its request's body to be read, the
/// connection counted as one with a request in progress, which is never closed to make room; so clients sending
/// slow bodies to refused requests (no token needed) held every connection, and other clients were turned away. A
/// connection whose only business is a refused request's body has no request in progress: it makes room as an idle
/// one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_of_refused_requests_do_not_hold_every_connection() {
    use tokio::io::AsyncWriteExt as _;
    let server = start_with(&[("MCP_HTTP_MAX_CONNECTIONS", "4")]);
    let address = address_of(&server);
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        // A host not allowed: refused on its head, its body read after.
        socket
            .write_all(
                b"POST /mcp HTTP/1.1\r\nhost: evil.example\r\ncontent-type: application/json\r\n\
                  content-length: 1000\r\n\r\n{\"jsonrpc\"",
            )
            .await
            .unwrap();
        slow.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Well within the 2 s a refused body is waited for.
    let health = client(Duration::from_secs(1))
        .get(server.url.replace("/mcp", "/healthz"))
        .send()
        .await;
    assert_eq!(
        health.map(|answer| answer.status().as_u16()).ok(),
        Some(200),
        "turned away while slow refused bodies held the connections"
    );
    drop(slow);
}

#[tokio::test]
async fn redacted_arguments_never_reach_rmcps_logs_over_http() {
    // rmcp logs every request it receives whole at `debug` and its serve loop's events at `trace`; the server
    // runs a subscriber that prints every event of every crate at every level on stderr.
    let mut server = start_with(&[("TEST_SERVER_TRACE", "1")]);
    let secret = "hunter2-over-http-7f3a";
    let answer: Value = post(
        &client(Duration::from_secs(10)),
        &server.url,
        &call("store", json!({"name": "db", "secret": secret})),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(answer["result"]["structuredContent"]["bytes"], secret.len());
    let _ = server.child.kill();
    let _ = server.child.wait();
    let stderr = std::fs::read_to_string(&server.stderr).unwrap();
    // The subscriber did see rmcp's request (so the check below can fail), but not the secret.
    assert!(stderr.contains("received request"), "{stderr}");
    assert!(stderr.contains("CallToolRequest"), "{stderr}");
    let leaked: Vec<&str> = stderr.lines().filter(|l| l.contains(secret)).collect();
    assert!(leaked.is_empty(), "{leaked:#?}");
    let audit = read_audit(&server.audit);
    let calls = events(&audit, "tool_call");
    assert_eq!(
        calls[0]["inputs"]["secret"]["redacted"], true,
        "{}",
        calls[0]
    );
    assert_eq!(calls[0]["inputs"]["name"], "db");
}

/// Red-team finding: a client's answers under the stateless revision (`inputResponses`, and the answers riding in
/// `requestState`) were printed whole in rmcp's `debug` events over HTTP too; they are held out of the body with the
/// arguments.
#[tokio::test]
async fn a_clients_answers_never_reach_rmcps_request_logs_over_http() {
    let mut server = start_with(&[("TEST_SERVER_TRACE", "1")]);
    let client = client(Duration::from_secs(10));
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "1"}
    });
    let round = |id: u64, extra: Value| {
        let mut params = json!({"name": "confirm_twice", "arguments": {}, "_meta": meta});
        for (key, value) in extra.as_object().unwrap() {
            params[key] = value.clone();
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let request = client
            .post(&server.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "confirm_twice")
            .json(&body);
        async move {
            let text = request.send().await.unwrap().text().await.unwrap();
            // A JSON body, or the one message of an event stream.
            let json = text
                .lines()
                .find_map(|line| line.strip_prefix("data:"))
                .unwrap_or(&text)
                .trim()
                .to_owned();
            serde_json::from_str::<Value>(&json).unwrap()["result"].clone()
        }
    };
    let first = round(1, json!({})).await;
    assert_eq!(first["resultType"], "input_required", "{first}");
    let name = json!({"action": "accept", "content": {"name": "typed-over-http-5521"}});
    let second = round(
        2,
        json!({"inputResponses": {"elicitation-0": name}, "requestState": first["requestState"]}),
    )
    .await;
    assert_eq!(second["resultType"], "input_required", "{second}");
    let go = json!({"action": "accept", "content": {"confirm": true}});
    let done = round(
        3,
        json!({"inputResponses": {"elicitation-1": go}, "requestState": second["requestState"]}),
    )
    .await;
    assert_eq!(
        done["content"][0]["text"], "{\"name\":\"typed-over-http-5521\"} {\"confirm\":true}",
        "the tool got its answers: {done}"
    );
    // A review's finding: a call whose answers were not of their types went to rmcp as it came, arguments and all.
    for (n, extra) in [
        r#""inputResponses":"x""#,
        r#""inputResponses":[]"#,
        r#""requestState":{"a":1}"#,
        r#""requestState":5"#,
        r#""arguments":{"name":"db"}"#,
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"store","arguments":{{"name":"db","secret":"hunter2-misshapen-{n}"}},{extra}}}}}"#,
            10 + n
        );
        let answer: Value = client
            .post(&server.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // A member twice (`arguments`) is refused before anything reads it, as on stdio: `-32600`.
        let expected = if extra.starts_with(r#""arguments""#) {
            -32600
        } else {
            -32602
        };
        assert_eq!(answer["error"]["code"], expected, "{extra}: {answer}");
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    let stderr = std::fs::read_to_string(&server.stderr).unwrap();
    assert!(
        stderr.contains("CustomRequest"),
        "rmcp's events of the misshapen calls were heard: {stderr}"
    );
    let leaked: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("hunter2-misshapen"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:#?}");
    let received: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("received request"))
        .collect();
    assert!(received.len() >= 3, "{stderr}");
    let leaked: Vec<&&str> = received
        .iter()
        .filter(|line| line.contains("typed-over-http") || line.contains("elicitation-0"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:#?}");
}

#[tokio::test]
async fn the_callers_trace_comes_from_the_header_or_else_meta_first() {
    let server = start();
    let client = client(Duration::from_secs(10));
    let header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let in_meta = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let send = |body: Value| {
        client
            .post(&server.url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("traceparent", header)
            .json(&body)
            .send()
    };
    let answer: Value = send(call("echo", json!({"text": "a"})))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "a", "{answer}");
    let mut with_meta = call("echo", json!({"text": "b"}));
    with_meta["params"]["_meta"] = json!({ "traceparent": in_meta });
    let answer: Value = send(with_meta).await.unwrap().json().await.unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "b", "{answer}");
    // Trial finding: a `traceparent` in `_meta` that is not one was taken over the header's valid one, and the
    // call had no caller's trace at all. An invalid one is ignored, as if absent.
    let mut garbage_in_meta = call("echo", json!({"text": "c"}));
    garbage_in_meta["params"]["_meta"] = json!({ "traceparent": "garbage", "tracestate": "k=v" });
    let answer: Value = send(garbage_in_meta).await.unwrap().json().await.unwrap();
    assert_eq!(answer["result"]["content"][0]["text"], "c", "{answer}");
    let audit = audit_until(&server, |audit| events(audit, "tool_call").len() == 3);
    let calls = events(&audit, "tool_call");
    assert_eq!(calls[0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(calls[0]["parent_span_id"], "b7ad6b7169203331");
    assert_eq!(calls[1]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(calls[1]["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(
        calls[2]["trace_id"], "0af7651916cd43dd8448eb211c80319c",
        "{}",
        calls[2]
    );
    assert_eq!(calls[2]["parent_span_id"], "b7ad6b7169203331");
}

/// A stateless call of `tool` to `server`, on a task of its own: its answer's status and text.
fn in_flight(
    client: &reqwest::Client,
    server: &Server,
    tool: &'static str,
    arguments: Value,
) -> tokio::task::JoinHandle<Result<(reqwest::StatusCode, String), reqwest::Error>> {
    let (client, url) = (client.clone(), server.url.clone());
    tokio::spawn(async move {
        let response = post(&client, &url, &call(tool, arguments)).await?;
        let status = response.status();
        Ok((status, response.text().await?))
    })
}

/// Trial finding (attack first): at SIGTERM, calls in flight over HTTP finished and were audited `ok`, but some of
/// their clients got `500 no response message received from handler` or a closed connection: the stop cancelled
/// rmcp's HTTP service as the last call ended, racing its answer. Every call in flight at the signal must be
/// answered as audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_sigterm_every_call_in_flight_over_http_is_answered_as_audited() {
    const CALLS: usize = 48;
    let mut server = start();
    let client = client(Duration::from_secs(30));
    let calls: Vec<_> = (0..CALLS)
        .map(|_| in_flight(&client, &server, "slow", json!({"millis": 700})))
        .collect();
    // Every call has begun (`slow` is not read-only: each writes `call_started`), then the operator stops it.
    audit_until(&server, |audit| {
        events(audit, "call_started").len() == CALLS
    });
    signal_stop(&server);
    let mut answered = 0;
    for call in calls {
        let (status, body) = call.await.unwrap().expect("a call in flight got no answer");
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["result"]["content"][0]["text"], "done", "{answer}");
        answered += 1;
    }
    assert!(server.child.wait().unwrap().success());
    let audit = read_audit(&server.audit);
    let calls = events(&audit, "tool_call");
    assert_eq!((answered, calls.len()), (CALLS, CALLS));
    assert!(
        calls.iter().all(|call| call["outcome"] == "ok"),
        "{calls:?}"
    );
    assert_eq!(audit.last().unwrap()["event"], "server_stop");
}

/// A red team's (round four, over stdio, then seen over HTTP by a script only): SIGHUP ended the server at once, with
/// no `server_stop`. Over HTTP too it stops the server as SIGTERM does: calls in flight answered as audited, then
/// `server_stop` with reason `sighup`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_sighup_calls_in_flight_over_http_are_answered_as_audited_then_the_server_stops() {
    const CALLS: usize = 4;
    let mut server = start();
    let client = client(Duration::from_secs(30));
    let calls: Vec<_> = (0..CALLS)
        .map(|_| in_flight(&client, &server, "slow", json!({"millis": 700})))
        .collect();
    audit_until(&server, |audit| {
        events(audit, "call_started").len() == CALLS
    });
    signal(&server, "HUP");
    for call in calls {
        let (status, body) = call.await.unwrap().expect("a call in flight got no answer");
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["result"]["content"][0]["text"], "done", "{answer}");
    }
    assert!(server.child.wait().unwrap().success());
    let audit = read_audit(&server.audit);
    let calls = events(&audit, "tool_call");
    assert_eq!(calls.len(), CALLS, "{audit:#?}");
    assert!(
        calls.iter().all(|call| call["outcome"] == "ok"),
        "{calls:?}"
    );
    let stop = audit.last().unwrap();
    assert_eq!(stop["event"], "server_stop", "{audit:#?}");
    assert_eq!(stop["reason"], "sighup");
}

/// A red team's (round 35): a call past its point of no return (`CallContext::commit`) at a stop was waited for a
/// second past the grace, then left running while the connections' own wait (5 s) ran out: its client got rmcp's
/// plain-text `500 no response message received from handler` some 7 s after the signal, and its record came after
/// `server_stop`. Past that second the call is given up: answered as recorded (`cancelled_after_commit`, its effect
/// unknown), its record before `server_stop`, and the server exits soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_stop_a_call_past_its_point_of_no_return_is_given_up_answered_as_recorded() {
    let mut server = start_with(&[("MCP_SHUTDOWN_GRACE", "1s")]);
    let client = client(Duration::from_secs(30));
    let call = in_flight(
        &client,
        &server,
        "commit_then_wait",
        json!({"millis": 30000}),
    );
    audit_until(&server, |audit| events(audit, "call_started").len() == 1);
    // Past its commit (the handler commits as it starts).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    signal_stop(&server);
    let (status, body) = call.await.unwrap().expect("the call got no answer");
    let answered = signalled.elapsed();
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("a JSON-RPC answer");
    let text = answer.to_string();
    assert!(text.contains("cancelled_after_commit"), "{answer}");
    assert!(server.child.wait().unwrap().success());
    let exited = signalled.elapsed();
    assert!(
        answered < Duration::from_secs(4) && exited < Duration::from_secs(5),
        "answered {answered:?}, exited {exited:?} after the signal (grace 1 s)"
    );
    let audit = read_audit(&server.audit);
    let calls = events(&audit, "tool_call");
    assert_eq!(calls.len(), 1, "{audit:#?}");
    assert_eq!(calls[0]["outcome"], "cancelled");
    assert_eq!(calls[0]["error"], "cancelled_after_commit");
    assert_eq!(audit.last().unwrap()["event"], "server_stop", "{audit:#?}");
}

/// A red team's (round 36): a second signal (an operator who will not wait) started the stop's waits again, so a
/// call past its point of no return was given up a second after it rather than at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_gives_up_a_call_past_its_point_of_no_return_at_once() {
    let mut server = start_with(&[("MCP_SHUTDOWN_GRACE", "30s")]);
    let client = client(Duration::from_secs(30));
    let call = in_flight(
        &client,
        &server,
        "commit_then_wait",
        json!({"millis": 30000}),
    );
    audit_until(&server, |audit| events(audit, "call_started").len() == 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal_stop(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = Instant::now();
    signal(&server, "INT");
    let (_, body) = call.await.unwrap().expect("the call got no answer");
    let answered = second.elapsed();
    assert!(body.contains("cancelled_after_commit"), "{body}");
    assert!(
        answered < Duration::from_millis(800),
        "answered {answered:?} after the second signal"
    );
    assert!(server.child.wait().unwrap().success());
    let audit = read_audit(&server.audit);
    assert_eq!(events(&audit, "tool_call").len(), 1, "{audit:#?}");
    assert_eq!(audit.last().unwrap()["event"], "server_stop");
}

/// The same in sessions mode, where calls are answered as streams of events, with a client's standalone event
/// stream (`GET`) open: the calls are answered as audited, the stream ends, and the server exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_sigterm_in_sessions_mode_calls_are_answered_and_an_open_event_stream_ends() {
    const CALLS: usize = 16;
    let mut server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let send = |session: Option<&str>, body: Value| {
        let mut request = client
            .post(&server.url)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-11-25");
        }
        request.send()
    };
    let initialized = send(
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                          "clientInfo": {"name": "test", "version": "1"}}}),
    )
    .await
    .unwrap();
    let session = initialized.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = initialized.text().await.unwrap();
    let notified = send(
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await
    .unwrap();
    assert_eq!(notified.status(), 202);
    let stream = client
        .get(&server.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let calls: Vec<_> = (0..CALLS)
        .map(|id| {
            let request = send(
                Some(&session),
                json!({"jsonrpc": "2.0", "id": id + 1, "method": "tools/call",
                       "params": {"name": "slow", "arguments": {"millis": 700}}}),
            );
            tokio::spawn(async move {
                let response = request.await?;
                let status = response.status();
                Ok::<_, reqwest::Error>((status, response.text().await?))
            })
        })
        .collect();
    audit_until(&server, |audit| {
        events(audit, "call_started").len() == CALLS
    });
    let signalled = Instant::now();
    signal_stop(&server);
    for call in calls {
        let (status, body) = call.await.unwrap().expect("a call in flight got no answer");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""text":"done""#), "{body}");
    }
    // The stream is ended by the stop, cleanly, once the calls' answers are out: not cut when the connections'
    // 5 s bound runs out (the calls end within 0.7 s of the signal).
    let ended = tokio::time::timeout(Duration::from_secs(15), stream.text())
        .await
        .expect("the event stream did not end at the stop");
    assert!(ended.is_ok(), "{ended:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the server did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "exited {took:?} after the signal"
    );
    let audit = read_audit(&server.audit);
    let calls = events(&audit, "tool_call");
    assert_eq!(calls.len(), CALLS);
    assert!(
        calls.iter().all(|call| call["outcome"] == "ok"),
        "{calls:?}"
    );
    assert_eq!(audit.last().unwrap()["event"], "server_stop");
}

/// Red-team finding (replicas behind HAProxy): during the shutdown grace `/healthz` still answered `200`, so the
/// balancer kept sending calls that were refused `shutting_down`, and in sessions mode a new `initialize` opened a
/// session whose calls were then refused. From the signal on, `/healthz` answers `503` (a balancer takes the
/// replica out) and a new session is refused `503 shutting_down`, audited; calls in flight finish as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_sigterm_health_says_unavailable_and_no_new_session_opens() {
    let mut server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let health = server.url.replace("/mcp", "/healthz");
    assert_eq!(client.get(&health).send().await.unwrap().status(), 200);
    let session = open_session(&client, &server.url).await;
    let call = {
        let (client, url, session) = (client.clone(), server.url.clone(), session.clone());
        tokio::spawn(async move {
            post_in(
                &client,
                &url,
                &session,
                &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                        "params": {"name": "slow", "arguments": {"millis": 3000}}}),
            )
            .await
            .1
        })
    };
    audit_until(&server, |audit| events(audit, "call_started").len() == 1);
    signal_stop(&server);
    // The stop has begun once the health check says so.
    until_unhealthy(&client, &server).await;
    let refused = post(
        &client,
        &server.url,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                          "clientInfo": {"name": "late", "version": "1"}}}),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("mcp-session-id").is_none());
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("shutting_down"),
        "{body}"
    );
    let answer = call.await.unwrap();
    assert!(answer.contains(r#""text":"done""#), "{answer}");
    assert!(server.child.wait().unwrap().success());
    let audit = read_audit(&server.audit);
    assert_eq!(events(&audit, "session").len(), 1, "{audit:#?}");
    let rejected = events(&audit, "http_rejected");
    assert!(
        rejected
            .iter()
            .any(|r| r["reason"] == "shutting_down" && r["status"] == 503),
        "{rejected:#?}"
    );
    assert_eq!(audit.last().unwrap()["event"], "server_stop");
}

/// Red-team finding: one connection holding half a request head held every stop 5 s more than its calls took
/// (the runner's wait for connections to close, whatever the grace): a supervisor whose stop timeout is set near the
/// grace would kill the server before its `server_stop`. A connection with no request begun closes at the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_head_does_not_hold_the_stop() {
    use tokio::io::AsyncWriteExt as _;
    let mut server = start();
    let address = address_of(&server);
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket
            .write_all(format!("POST /mcp HTTP/1.1\r\nhost: {address}\r\ncontent-ty").as_bytes())
            .await
            .unwrap();
        stalled.push(socket);
    }
    // The server is serving (and has read the heads begun so far).
    let client = client(Duration::from_secs(10));
    assert_eq!(
        client
            .get(server.url.replace("/mcp", "/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let signalled = Instant::now();
    stop(&mut server).await;
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "exited {took:?} after the signal"
    );
    let audit = read_audit(&server.audit);
    assert_eq!(audit.last().unwrap()["event"], "server_stop");
    drop(stalled);
}

/// Polls `/healthz` until it answers `503`, for at most 5 s; every answer before must be `200`.
async fn until_unhealthy(client: &reqwest::Client, server: &Server) {
    let health = server.url.replace("/mcp", "/healthz");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = client.get(&health).send().await.unwrap().status();
        if status == 503 {
            return;
        }
        assert_eq!(status, 200);
        assert!(
            Instant::now() < deadline,
            "/healthz still 200 after the signal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Red-team finding (three replicas behind HAProxy, rolling restarts): a replica with no long call exits as soon as
/// it is signalled, before the balancer's next health check sees its `503`, so the requests the balancer sends it
/// meanwhile get no answer (1 to 6 per restart). With a shutdown delay, `/healthz` answers `503` from the signal
/// while the server goes on serving every request, new sessions included, for the delay; then the stop begins as
/// without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_shutdown_delay_the_server_serves_on_while_its_health_says_unavailable() {
    let mut server = start_with(&[("MCP_SHUTDOWN_DELAY", "3s"), ("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(10));
    let health = server.url.replace("/mcp", "/healthz");
    assert_eq!(client.get(&health).send().await.unwrap().status(), 200);
    let signalled = Instant::now();
    signal_stop(&server);
    until_unhealthy(&client, &server).await;
    // Still serving as usual: a new session opens and its call is answered.
    let session = open_session(&client, &server.url).await;
    assert_echoes(&client, &server.url, &session, 7, "during the delay").await;
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "the test was too slow to call within the delay"
    );
    assert!(server.child.try_wait().unwrap().is_none());
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the server did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "exited {took:?} after the signal"
    );
    let audit = read_audit(&server.audit);
    let calls = events(&audit, "tool_call");
    assert_eq!(calls.len(), 1, "{audit:#?}");
    assert_eq!(calls[0]["outcome"], "ok");
    let stop = audit.last().unwrap();
    assert_eq!(stop["event"], "server_stop");
    assert_eq!(stop["reason"], "sigterm");
}

/// An operator who does not want to wait: a second signal during the shutdown delay begins the stop at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_cuts_the_shutdown_delay_short() {
    let mut server = start_with(&[("MCP_SHUTDOWN_DELAY", "60s")]);
    let client = client(Duration::from_secs(10));
    let signalled = Instant::now();
    signal_stop(&server);
    until_unhealthy(&client, &server).await;
    assert_still_serving(&server).await;
    stop(&mut server).await;
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after the signal"
    );
    let audit = read_audit(&server.audit);
    assert_eq!(tools_called(&audit).len(), 1, "{audit:#?}");
    assert_eq!(audit.last().unwrap()["event"], "server_stop");
}

/// Opens a session (`initialize`, then `notifications/initialized`) and returns its id.
async fn open_session(client: &reqwest::Client, url: &str) -> String {
    let initialized = post(
        client,
        url,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                          "clientInfo": {"name": "test", "version": "1"}}}),
    )
    .await
    .unwrap();
    let session = initialized.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = initialized.text().await.unwrap();
    let notified = post_in(
        client,
        url,
        &session,
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(notified.0, 202, "{}", notified.1);
    session
}

/// Ends `session` (`DELETE`); the answer's status.
async fn delete_session(client: &reqwest::Client, url: &str, session: &str) -> u16 {
    client
        .delete(url)
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Posts `body` into `session`; the answer's status and body.
async fn post_in(
    client: &reqwest::Client,
    url: &str,
    session: &str,
    body: &Value,
) -> (u16, String) {
    let response = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", session)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Posts a call of `slow` for `millis`, with request id `id`, into `session`, on a task of its own: its answer's
/// status and body.
fn spawn_slow(
    client: &reqwest::Client,
    url: &str,
    session: &str,
    id: u64,
    millis: u64,
) -> tokio::task::JoinHandle<(u16, String)> {
    let (client, url, session) = (client.clone(), url.to_owned(), session.to_owned());
    tokio::spawn(async move {
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": "slow", "arguments": {"millis": millis}}});
        post_in(&client, &url, &session, &call).await
    })
}

/// Posts `body` into `session` until it is not refused for its id (for at most 2 s): an id is free again a moment
/// after the call holding it is recorded (its handler's future done with).
async fn until_answered(
    client: &reqwest::Client,
    url: &str,
    session: &str,
    body: &Value,
) -> String {
    for _ in 0..100 {
        let (_, answer) = post_in(client, url, session, body).await;
        if messages(&answer)
            .first()
            .is_none_or(|m| m["error"]["code"] != -32600)
        {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the id was never free again");
}

/// The JSON-RPC messages of an answer, whether a JSON body or a stream of events.
fn messages(body: &str) -> Vec<Value> {
    if let Ok(message) = serde_json::from_str::<Value>(body) {
        return vec![message];
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str(data.trim()).ok())
        .collect()
}

/// Calls `echo` with `text` in `session`, as request `id`, and checks that it is answered with it: the session
/// serves.
async fn assert_echoes(client: &reqwest::Client, url: &str, session: &str, id: u64, text: &str) {
    let echo = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": text}}});
    let (_, body) = post_in(client, url, session, &echo).await;
    assert_eq!(
        messages(&body)[0]["result"]["content"][0]["text"],
        text,
        "{body}"
    );
}

/// Checks that the JSON-RPC error `answer` carries has a message beginning with `code`.
fn assert_error_code(answer: &Value, code: &str) {
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(code), "{answer}");
}

/// Opens a session, calls `slow` in it as request 7 and cancels the call half a second later: the session, and the
/// status and body of the call's answer (its stream read to its end, within 10 s).
async fn cancelled_in_a_session(client: &reqwest::Client, url: &str) -> (String, u16, String) {
    let session = open_session(client, url).await;
    let slow = spawn_slow(client, url, &session, 7, 20_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel_in(client, url, &session, 7).await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the cancelled call's stream ended")
        .unwrap();
    (session, status, body)
}

/// Cancels request `id` of `session`, as a client does (`notifications/cancelled`), accepted.
async fn cancel_in(client: &reqwest::Client, url: &str, session: &str, id: u64) {
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": id, "reason": "the user stopped it"}});
    let (status, body) = post_in(client, url, session, &cancel).await;
    assert_eq!(status, 202, "{body}");
}

/// Red-team finding, carried over from stdio: within a session, a request reusing the id of one in progress ran
/// too (both audited, both effects) and rmcp routed the answers by id, so one client request got the other's answer
/// and the other none. The second is refused `-32600` (audited `message_rejected`, `duplicate_id`) and never runs;
/// the id is free again once answered, not once cancelled; another session's ids are its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reusing_the_id_of_one_in_progress_in_its_session_is_refused() {
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let session = open_session(&client, &server.url).await;
    let other = open_session(&client, &server.url).await;
    let slow = spawn_slow(&client, &server.url, &session, 7, 3000);
    audit_until(&server, |audit| {
        events(audit, "call_started")
            .iter()
            .any(|r| r["tool"] == "slow")
    });
    let echo = |text: &str| {
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": text}}})
    };
    let (status, body) = post_in(&client, &server.url, &session, &echo("second")).await;
    let refused = messages(&body);
    assert_eq!(refused.len(), 1, "{status} {body}");
    assert_eq!(refused[0]["id"], 7, "{body}");
    assert_eq!(refused[0]["error"]["code"], -32600, "{body}");
    // Another session's id 7 is its own.
    let (_, body) = post_in(&client, &server.url, &other, &echo("other")).await;
    assert_eq!(
        messages(&body)[0]["result"]["content"][0]["text"],
        "other",
        "{body}"
    );
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let answered = messages(&body);
    assert_eq!(answered.last().unwrap()["id"], 7, "{body}");
    assert_eq!(
        answered.last().unwrap()["result"]["content"][0]["text"],
        "done",
        "{body}"
    );
    // Free again once answered.
    let (_, body) = post_in(&client, &server.url, &session, &echo("third")).await;
    assert_eq!(
        messages(&body)[0]["result"]["content"][0]["text"],
        "third",
        "{body}"
    );
    // And once cancelled.
    let cancelled = spawn_slow(&client, &server.url, &session, 8, 30000);
    audit_until(&server, |audit| {
        events(audit, "call_started")
            .iter()
            .filter(|r| r["tool"] == "slow")
            .count()
            == 2
    });
    let (status, _) = post_in(
        &client,
        &server.url,
        &session,
        &json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 8}}),
    )
    .await;
    assert_eq!(status, 202);
    let mut fourth = echo("fourth");
    fourth["id"] = json!(8);
    // Not once cancelled, even after the cancelled handler has ended (MCP forbids reusing an id in a session, and
    // rmcp may still hold the cancelled call's state under it).
    audit_until(&server, |audit| events(audit, "tool_call").len() == 4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, body) = post_in(&client, &server.url, &session, &fourth).await;
    assert_eq!(messages(&body)[0]["error"]["code"], -32600, "{body}");
    cancelled.abort();
    let audit = audit_until(&server, |audit| events(audit, "tool_call").len() == 4);
    assert_eq!(
        tools_called(&audit),
        ["echo", "slow", "echo", "slow"],
        "{audit:#?}"
    );
    assert_eq!(events(&audit, "tool_call")[3]["outcome"], "cancelled");
    let rejected = events(&audit, "message_rejected");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert!(rejected.iter().all(|r| r["reason"] == "duplicate_id"));
    assert_eq!(rejected[0]["request_id"], 7);
    assert_eq!(rejected[1]["request_id"], 8);
}

/// In sessions mode a client hanging up does not stop its call (the specification: a disconnection is not a
/// cancellation; the client may resume the stream or cancel), so the call's id stays in progress: a request reusing
/// it is refused while the call runs (else the call's answer would be routed to it), and gets its own answer after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_sessions_mode_a_call_whose_client_hangs_up_runs_on_and_keeps_its_id() {
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let session = open_session(&client, &server.url).await;
    let slow = spawn_slow(&client, &server.url, &session, 7, 3000);
    audit_until(&server, |audit| {
        events(audit, "call_started")
            .iter()
            .any(|r| r["tool"] == "slow")
    });
    slow.abort();
    let _ = slow.await;
    // Time for the server to see the connection closed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let echo = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "mine"}}});
    let (_, body) = post_in(&client, &server.url, &session, &echo).await;
    assert_eq!(messages(&body)[0]["error"]["code"], -32600, "{body}");
    let audit = audit_until(&server, |audit| !events(audit, "tool_call").is_empty());
    assert_eq!(
        events(&audit, "tool_call")[0]["outcome"],
        "ok",
        "{audit:#?}"
    );
    let body = until_answered(&client, &server.url, &session, &echo).await;
    assert_eq!(
        messages(&body)[0]["result"]["content"][0]["text"],
        "mine",
        "{body}"
    );
}

/// Red-team finding: a second `initialize` inside a session was answered as the first was: two `session` records
/// for one session id, and the client's name on its later calls' records the second's. It is refused (`-32600`,
/// audited `message_rejected`, reason `already_initialized`); the session goes on as it began.
#[tokio::test]
async fn a_second_initialize_inside_a_session_is_refused_and_changes_nothing() {
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let session = open_session(&client, &server.url).await;
    let again = json!({"jsonrpc": "2.0", "id": "again", "method": "initialize",
                       "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                  "clientInfo": {"name": "impostor", "version": "9.9"}}});
    let (_, body) = post_in(&client, &server.url, &session, &again).await;
    let answer = &messages(&body)[0];
    assert_eq!(answer["id"], "again", "{body}");
    assert_eq!(answer["error"]["code"], -32600, "{body}");
    assert_echoes(&client, &server.url, &session, 7, "mine").await;
    assert_eq!(delete_session(&client, &server.url, &session).await, 204);
    let audit = audit_until(&server, |audit| !events(audit, "session_closed").is_empty());
    let sessions = events(&audit, "session");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["client_name"], "test");
    let rejected = events(&audit, "message_rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["reason"], "already_initialized");
    assert_eq!(rejected[0]["request_id"], "again");
    assert_eq!(events(&audit, "tool_call").len(), 1, "{audit:#?}");
    assert!(!format!("{audit:?}").contains("impostor"), "{audit:#?}");
}

/// Trial finding (TypeScript SDK): a message refused over HTTP (a second `initialize`, a reused id, a request of
/// the wrong shape) was recorded with no session, caller or address, so it could not be joined to the session's
/// other records or to its client. Its record carries what the session's records carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_is_recorded_with_its_session_caller_and_address() {
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let session = open_session(&client, &server.url).await;
    let again = json!({"jsonrpc": "2.0", "id": "again", "method": "initialize",
                       "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                  "clientInfo": {"name": "again", "version": "1"}}});
    let (_, body) = post_in(&client, &server.url, &session, &again).await;
    assert_eq!(messages(&body)[0]["error"]["code"], -32600, "{body}");
    let misshapen = json!({"jsonrpc": "2.0", "id": "misshapen", "method": "tools/call",
                           "params": {"name": 5, "arguments": "x"}});
    let (_, body) = post_in(&client, &server.url, &session, &misshapen).await;
    assert_eq!(messages(&body)[0]["error"]["code"], -32602, "{body}");
    let slow = spawn_slow(&client, &server.url, &session, 7, 3000);
    audit_until(&server, |audit| {
        events(audit, "call_started")
            .iter()
            .any(|r| r["tool"] == "slow")
    });
    let reused = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"text": "x"}}});
    let (_, body) = post_in(&client, &server.url, &session, &reused).await;
    assert_eq!(messages(&body)[0]["error"]["code"], -32600, "{body}");
    slow.abort();
    let audit = audit_until(&server, |audit| {
        events(audit, "message_rejected").len() == 3
    });
    let opened = &events(&audit, "session")[0];
    let rejected = events(&audit, "message_rejected");
    let reasons: Vec<_> = rejected.iter().map(|r| r["reason"].clone()).collect();
    assert_eq!(
        reasons,
        ["already_initialized", "invalid_params", "duplicate_id"],
        "{rejected:#?}"
    );
    for record in &rejected {
        assert_eq!(record["session_id"], session.as_str(), "{record}");
        assert_eq!(record["caller"], opened["caller"], "{record}");
        let remote = record["remote_addr"].as_str().unwrap_or_default();
        assert!(remote.starts_with("127.0.0.1:"), "{record}");
    }
    // A request in the session under a version outside a strict policy: its refusal names the session too.
    let strict = start_with(&[
        ("MCP_HTTP_SESSIONS", "true"),
        ("MCP_MIN_PROTOCOL_VERSION", "2025-06-18"),
    ]);
    let strict_session = open_session(&client, &strict.url).await;
    let response = client
        .post(&strict.url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-03-26")
        .header("mcp-session-id", &strict_session)
        .json(&reused)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let audit = audit_until(&strict, |audit| {
        !events(audit, "version_rejected").is_empty()
    });
    let refused = events(&audit, "version_rejected")[0];
    assert_eq!(refused["session_id"], strict_session.as_str(), "{refused}");
    // Stateless, the same shape: no session to name, the caller and address as ever.
    let stateless = start();
    let response = post(&client, &stateless.url, &misshapen).await.unwrap();
    assert_eq!(response.status(), 200);
    let audit = audit_until(&stateless, |audit| {
        !events(audit, "message_rejected").is_empty()
    });
    let rejected = events(&audit, "message_rejected")[0];
    assert_eq!(rejected["reason"], "invalid_params", "{rejected}");
    assert!(rejected["caller"].is_string(), "{rejected}");
    assert!(rejected.get("session_id").is_none(), "{rejected}");
    let remote = rejected["remote_addr"].as_str().unwrap_or_default();
    assert!(remote.starts_with("127.0.0.1:"), "{rejected}");
}

/// Trial finding (TypeScript SDK): a client that kept using its session after deleting it got `404`, recorded
/// `not_found` with nothing to tell it from a guessed id, nor to join it to the session's records. A refusal of a
/// request naming a session records the id it named, and one the server issued and has ended is `session_ended`.
#[tokio::test]
async fn a_request_naming_an_ended_session_is_recorded_with_it() {
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let session = open_session(&client, &server.url).await;
    assert_eq!(delete_session(&client, &server.url, &session).await, 204);
    let echo = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "x"}}});
    for named in [session.as_str(), "never-issued"] {
        let (status, body) = post_in(&client, &server.url, named, &echo).await;
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("session_not_found"), "{body}");
    }
    let audit = audit_until(&server, |audit| events(audit, "http_rejected").len() == 2);
    let rejected = events(&audit, "http_rejected");
    assert_eq!(rejected[0]["reason"], "not_found", "{rejected:#?}");
    assert_eq!(rejected[0]["detail"], "session_ended", "{rejected:#?}");
    assert_eq!(rejected[0]["session_id"], session.as_str(), "{rejected:#?}");
    assert_eq!(rejected[1]["reason"], "not_found", "{rejected:#?}");
    assert!(rejected[1].get("detail").is_none(), "{rejected:#?}");
    assert_eq!(rejected[1]["session_id"], "never-issued", "{rejected:#?}");
}

/// Red-team finding: a request with two `Mcp-Session-Id` headers was served with the first, where a proxy in front
/// may take the last, as two `Host`s or `Origin`s are refused: it is a bad request, `duplicate_session_id`.
#[tokio::test]
async fn a_request_naming_two_sessions_is_refused() {
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let session = open_session(&client, &server.url).await;
    let response = client
        .post(&server.url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &session)
        .header("mcp-session-id", "another")
        .json(&call("echo", json!({"text": "x"})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("duplicate_session_id"),
        "{body}"
    );
    let audit = audit_until(&server, |audit| !events(audit, "http_rejected").is_empty());
    let rejected = events(&audit, "http_rejected")[0];
    assert_eq!(rejected["detail"], "duplicate_session_id", "{rejected}");
    assert!(events(&audit, "tool_call").is_empty(), "{audit:#?}");
}

/// Trial finding (TypeScript SDK): after its session was deleted, a client's call without `Mcp-Session-Id` was
/// refused `400 bad_request`, "the request is malformed (a header, or the body)", which did not say what to do. With
/// sessions on, a request that needs a session and names none is refused `400`, reason `session_required`, saying
/// to send `initialize` first.
#[tokio::test]
async fn with_sessions_on_a_request_without_a_session_is_told_to_initialize() {
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let response = post(&client, &server.url, &call("echo", json!({"text": "x"})))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert_error_code(&body, "session_required");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("initialize"),
        "{body}"
    );
    let stream = client
        .get(&server.url)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 400);
    assert_error_code(&stream.json().await.unwrap(), "session_required");
    let audit = audit_until(&server, |audit| events(audit, "http_rejected").len() == 2);
    for record in events(&audit, "http_rejected") {
        assert_eq!(record["status"], 400, "{record}");
        assert_eq!(record["reason"], "session_required", "{record}");
    }
    assert!(events(&audit, "tool_call").is_empty(), "{audit:#?}");
}

/// Red-team finding: a request head HTTP cannot parse (a control byte in a header value, here) was answered `400`
/// by the HTTP layer before any of the runner's own, and left no record, where every other refusal has one. It is
/// a `connection_rejected` record, reason `malformed_request`, with the peer; the server keeps serving.
#[tokio::test]
async fn a_request_head_that_cannot_be_parsed_is_refused_on_record() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = start();
    let address = address_of(&server);
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(format!("POST /mcp HTTP/1.1\r\nhost: {address}\r\nx-bad: a\x01b\r\ncontent-length: 0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let audit = audit_until(&server, |audit| {
        !events(audit, "connection_rejected").is_empty()
    });
    let rejected = events(&audit, "connection_rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["reason"], "malformed_request", "{rejected:?}");
    assert!(
        rejected[0]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_still_serving(&server).await;
}

/// Trial finding (Python SDK 2.3.0, sessions mode): a call its client cancelled had its event stream ended with no
/// answer, after a priming event that makes it resumable; the SDK resumed it (`GET` with `Last-Event-ID`), got the
/// same empty stream, and resumed again, about 13 requests a second per cancelled call for as long as the session
/// lasted, and a call cancelled by a notification of the application's own never returned. The stream of a call
/// cancelled in a session now ends with an answer: a JSON-RPC error `cancelled`, as without a session.
#[tokio::test]
async fn in_sessions_mode_a_cancelled_call_is_answered_cancelled_on_its_stream() {
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let (session, status, body) = cancelled_in_a_session(&client, &server.url).await;
    assert_eq!(status, 200, "{body}");
    let answers = messages(&body);
    let answer = answers.last().expect("an answer on the stream");
    assert_eq!(answer["id"], 7, "{body}");
    assert_eq!(answer["error"]["code"], -32000, "{body}");
    assert_error_code(answer, "cancelled:");
    let audit = audit_until(&server, |audit| !events(audit, "tool_call").is_empty());
    assert_eq!(events(&audit, "tool_call")[0]["outcome"], "cancelled");
    // The session goes on.
    assert_echoes(&client, &server.url, &session, 8, "after").await;
}

/// Red-team finding: a request racing a `DELETE` of its session got rmcp's plain-text `500` ("Session service
/// terminated"), with no record, or a `200` event stream holding nothing but its priming event (the call dropped,
/// or run with its answer lost). Every such request is now answered: `404` `session_not_found` (audited), or on its
/// stream, its result or a JSON-RPC error saying its session ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_racing_the_deletion_of_its_session_is_always_answered() {
    let mut server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let (client, deleter) = (
        client(Duration::from_secs(30)),
        client(Duration::from_secs(30)),
    );
    let mut answered = std::collections::BTreeMap::<String, usize>::new();
    let mut deletes_refused = 0;
    for round in 0..120 {
        let session = open_session(&client, &server.url).await;
        let echo = json!({"jsonrpc": "2.0", "id": round, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {"text": "raced"}}});
        let (call, deleted) = tokio::join!(
            post_in(&client, &server.url, &session, &echo),
            delete_session(&deleter, &server.url, &session)
        );
        assert!(deleted == 204 || deleted == 404, "{deleted}");
        deletes_refused += usize::from(deleted == 404);
        let (status, body) = call;
        let kind = match status {
            404 => {
                let refusal: Value = serde_json::from_str(&body).expect("a JSON-RPC body");
                assert_eq!(refusal["error"]["code"], -32600, "{body}");
                "refused 404"
            }
            200 => {
                let answer = messages(&body)
                    .into_iter()
                    .find(|message| message["id"] == round)
                    .unwrap_or_else(|| panic!("no answer on the stream: {body:?}"));
                if answer["result"]["content"][0]["text"] == "raced" {
                    "result"
                } else {
                    assert_error_code(&answer, "session_ended:");
                    "session ended"
                }
            }
            _ => panic!("{status}: {body:?}"),
        };
        *answered.entry(kind.to_owned()).or_default() += 1;
    }
    eprintln!("{answered:?}");
    // Stopped, so that the counts of refusals left unwritten are written.
    stop(&mut server).await;
    let audit = read_audit(&server.audit);
    // Every `404` on record, written or counted: the calls' and the `DELETE`s'.
    let refused = events(&audit, "http_rejected")
        .iter()
        .filter(|r| r["status"] == 404)
        .count()
        + events(&audit, "audit_suppressed")
            .iter()
            .filter(|r| r["suppressed_event"] == "http_rejected")
            .map(|r| r["count"].as_u64().unwrap() as usize)
            .sum::<usize>();
    assert_eq!(
        refused,
        answered.get("refused 404").copied().unwrap_or(0) + deletes_refused,
        "{answered:?} {audit:#?}"
    );
}

/// Trial finding (Python SDK): a client that paused between calls longer than the header-read timeout had its idle
/// keep-alive connection closed (as documented), and each close was recorded `connection_rejected`
/// `header_timeout`: a well-behaved client filled the trail with refusals, and took the throttle's room from real
/// ones. A connection idle after its answers closes with no record; one that stalls in a request head, or never
/// sends one, is still recorded.
#[tokio::test]
async fn an_idle_keep_alive_connection_closes_without_a_refusal_record() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = start_with(&[("MCP_HTTP_HEADER_TIMEOUT", "1s")]);
    let address = address_of(&server);
    let body = call("echo", json!({"text": "kept alive"})).to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: {address}\r\naccept: application/json, text/event-stream\r\n\
         content-type: application/json\r\nmcp-protocol-version: 2025-11-25\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Answered, then idle until the server closes it.
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    idle.write_all(request.as_bytes()).await.unwrap();
    let mut read = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut read)).await;
    assert!(String::from_utf8_lossy(&read).contains("kept alive"));
    // Answered, then a head begun and never finished.
    let mut stalled = tokio::net::TcpStream::connect(&address).await.unwrap();
    stalled.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let _ = stalled.read(&mut answer).await.unwrap();
    stalled
        .write_all(b"POST /mcp HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut rest)).await;
    // Never a request at all.
    let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut rest)).await;
    audit_until(&server, |audit| {
        events(audit, "connection_rejected").len() >= 2
    });
    // Time for a third record, were there one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audit = read_audit_so_far(&server.audit);
    let rejected = events(&audit, "connection_rejected");
    assert_eq!(rejected.len(), 2, "{rejected:#?}");
    assert!(rejected.iter().all(|r| r["reason"] == "header_timeout"));
    assert_eq!(tools_called(&audit), ["echo", "echo"]);
}

/// Trial finding (TypeScript SDK): a call sent on a keep-alive connection as the server closed it for idling past
/// the header-read timeout failed in the client (`fetch failed`), since nothing told the client how long the
/// server keeps an idle connection. Every answer on a connection kept open says so (`Keep-Alive: timeout=`, whole
/// seconds, rounded down, as Node's own server does), and clients that read it (Node's `fetch`) do not send on a
/// connection about to close.
#[tokio::test]
async fn answers_say_how_long_an_idle_connection_is_kept() {
    let client = client(Duration::from_secs(10));
    for (setting, told) in [(None, "timeout=10"), (Some("3500ms"), "timeout=3")] {
        let server = match setting {
            Some(timeout) => start_with(&[("MCP_HTTP_HEADER_TIMEOUT", timeout)]),
            None => start(),
        };
        let response = post(&client, &server.url, &call("echo", json!({"text": "x"})))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let keep_alive = response
            .headers()
            .get("keep-alive")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(keep_alive.as_deref(), Some(told), "{setting:?}");
        // A refusal is told the same.
        let response = client
            .get(server.url.replace("/mcp", "/elsewhere"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        let keep_alive = response
            .headers()
            .get("keep-alive")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(keep_alive.as_deref(), Some(told), "{setting:?}");
    }
    // Red-team finding: an answer on a connection that closes after it (its client asked, with `Connection: close`
    // or as HTTP/1.0 does by default) said how long it would be kept.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = start();
    let address = address_of(&server);
    for head in [
        format!("GET /healthz HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n"),
        format!("GET /healthz HTTP/1.0\r\nhost: {address}\r\n\r\n"),
    ] {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
            .await
            .expect("closed after the answer")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(answer.starts_with("http/1."), "{answer}");
        assert!(!answer.contains("keep-alive: timeout"), "{head}: {answer}");
    }
    // Red-team finding: a `413` for a body declared larger than the server reads and drops after a refusal said
    // how long the connection would be kept, though the server closes it with the body unread. It says it closes
    // now; a body small enough to be read and dropped, and sent, keeps the connection, and is told so.
    for (declared, closes) in [(17 << 20, true), (5 << 20, false)] {
        let socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        let (mut socket, mut writer) = socket.into_split();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nhost: {address}\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\ncontent-length: {declared}\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await.unwrap();
        // The body, on a task of its own: the server may stop reading it.
        let sending = tokio::spawn(async move {
            let zeros = vec![b'0'; 64 << 10];
            for _ in 0..declared / zeros.len() {
                if writer.write_all(&zeros).await.is_err() {
                    break;
                }
            }
            writer
        });
        let mut answer = Vec::new();
        let mut buffer = [0; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer))
                .await
                .expect("an answer")
                .unwrap();
            assert!(read > 0, "closed before its answer");
            answer.extend_from_slice(&buffer[..read]);
        }
        let answer = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(answer.starts_with("http/1.1 413"), "{answer}");
        assert_eq!(
            answer.contains("connection: close"),
            closes,
            "{declared}: {answer}"
        );
        assert_eq!(
            answer.contains("keep-alive: timeout"),
            !closes,
            "{declared}: {answer}"
        );
        drop(sending.await);
    }
}

/// Trial finding (Python SDK): with its 32 sessions in use (a live `ClientSession` keeps an event stream open on
/// its session), a caller's 33rd `initialize` was refused `429 too_many_sessions`, as documented, and each refusal
/// also printed rmcp's `ERROR ... Internal server error when create session` on the server's standard error. A
/// caller that has no room is refused before rmcp is asked to open a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_with_every_session_in_use_is_refused_without_an_internal_error() {
    use secure_tools::serve::http::MAX_SESSIONS_PER_CALLER;
    // Every `tracing` event on standard error, as a server that logs (the file server does) would print them.
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true"), ("TEST_SERVER_TRACE", "1")]);
    let client = client(Duration::from_secs(60));
    let mut streams = Vec::new();
    for _ in 0..MAX_SESSIONS_PER_CALLER {
        let session = open_session(&client, &server.url).await;
        let stream = client
            .get(&server.url)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        streams.push(stream);
    }
    for _ in 0..2 {
        let response = post(
            &client,
            &server.url,
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                    "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                               "clientInfo": {"name": "test", "version": "1"}}}),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 429);
        assert_error_code(&response.json().await.unwrap(), "too_many_sessions");
    }
    let stderr = std::fs::read_to_string(&server.stderr).unwrap();
    assert!(
        !stderr.contains("Internal server error"),
        "{}",
        stderr
            .lines()
            .filter(|line| line.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(streams);
}

/// Trial finding (TypeScript SDK v1): v1 takes only a result as the end of a resumable event stream, so after a
/// call it cancelled (its stream ending with the error `cancelled`) it resumed the stream (`GET` with
/// `Last-Event-ID`) every 3 s for as long as its session lasted, rmcp answering each time with the same empty stream,
/// and the session never expired. A stream that has ended may be resumed once (its client may have lost its end);
/// again, it is refused `404` `stream_ended`, and v1 gives up after two retries.
#[tokio::test]
async fn an_ended_event_stream_is_resumed_once_not_again() {
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let (session, _, body) = cancelled_in_a_session(&client, &server.url).await;
    let last_event_id = body
        .lines()
        .filter_map(|line| line.strip_prefix("id:"))
        .map(str::trim)
        .next_back()
        .expect("an event id on the stream")
        .to_owned();
    let resume = || resumption(&client, &server.url, &session, &last_event_id).send();
    let first = resume().await.unwrap();
    assert_eq!(first.status(), 200);
    let _ = first.text().await;
    let again = resume().await.unwrap();
    assert_eq!(again.status(), 404);
    assert_error_code(&again.json().await.unwrap(), "stream_ended");
    let audit = audit_until(&server, |audit| !events(audit, "http_rejected").is_empty());
    assert_eq!(events(&audit, "http_rejected")[0]["reason"], "stream_ended");
    // The session goes on.
    assert_echoes(&client, &server.url, &session, 8, "after").await;
}

/// A round's findings on resumption during a long call: resumed while its first stream was still open, that stream
/// ended with a `session_ended` error (two answers to one request, the first a failure); and a second resumption
/// (the first on a connection its client had left) was refused, the answer lost. The first stream now ends without
/// a word, and the last resumption gets the answer.
#[tokio::test]
async fn a_long_call_resumed_twice_gets_its_answer_on_the_last_resumption_only() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let session = open_session(&client, &server.url).await;
    let address = address_of(&server);
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "slow", "arguments": {"millis": 2500}}})
    .to_string();
    let (mut first, mut first_read, last_event_id) =
        sent_until_event_id(&address, &session_post(&address, &session, &call)).await;
    let resume_request = format!(
        "GET /mcp HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\
         MCP-Protocol-Version: 2025-11-25\r\nMcp-Session-Id: {session}\r\n\
         Last-Event-ID: {last_event_id}\r\n\r\n"
    );
    // A first resumption, on a connection its client then leaves unread (the server cannot tell).
    let _left = {
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        socket.write_all(resume_request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut buffer = [0; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0);
            head.extend_from_slice(&buffer[..n]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        socket
    };
    // The first stream ends, without a word of the request's answer.
    let mut buffer = [0; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), first.read(&mut buffer))
            .await
            .unwrap()
        {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                first_read.extend_from_slice(&buffer[..n]);
                if first_read.ends_with(b"0\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let first_read = String::from_utf8_lossy(&first_read);
    assert!(
        !first_read.contains("\"error\"") && !first_read.contains("session_ended"),
        "{first_read}"
    );
    // A second resumption, on a new connection: the answer.
    let second = resumption(&client, &server.url, &session, &last_event_id)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), second.text())
        .await
        .unwrap()
        .unwrap();
    let answers = messages(&body);
    assert!(
        answers
            .iter()
            .any(|m| m["id"] == 7 && m["result"]["content"][0]["text"] == "done"),
        "{body}"
    );
    // Only what follows the event it names (a round's finding: rmcp sent that event again).
    assert!(
        !body
            .lines()
            .filter_map(|line| line.strip_prefix("id:"))
            .any(|id| id.trim() == last_event_id),
        "{body}"
    );
}

/// A `GET` resuming the event stream of `session` after `last_event_id`.
fn resumption(
    client: &reqwest::Client,
    url: &str,
    session: &str,
    last_event_id: &str,
) -> reqwest::RequestBuilder {
    client
        .get(url)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", session)
        .header("last-event-id", last_event_id)
}

/// Sends `request` on a connection of its own and reads until an event id shows: the connection, what was read,
/// and the id.
async fn sent_until_event_id(
    address: &str,
    request: &str,
) -> (tokio::net::TcpStream, Vec<u8>, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut read = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&read));
        read.extend_from_slice(&buffer[..n]);
        if let Some(id) = String::from_utf8_lossy(&read)
            .lines()
            .find_map(|line| line.strip_prefix("id:"))
            .map(|id| id.trim().to_owned())
        {
            return (socket, read, id);
        }
    }
}

/// A raw `POST` of `body` into `session`, as [`sent_until_event_id`] sends it.
fn session_post(address: &str, session: &str, body: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         Mcp-Session-Id: {session}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// `MCP_MAX_CONCURRENT_CALLS_PER_CALLER` over HTTP: one identity's calls beyond it are refused `overloaded` (a
/// `tool_call` record each) while they run, whatever connection or request they come on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_callers_calls_beyond_its_limit_are_refused_overloaded() {
    let server = start_with(&[("MCP_MAX_CONCURRENT_CALLS_PER_CALLER", "1")]);
    let client = client(Duration::from_secs(30));
    let slow = |id: u64| {
        let (client, url) = (client.clone(), server.url.clone());
        tokio::spawn(async move {
            let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                              "params": {"name": "slow", "arguments": {"millis": 1500}}});
            let response = post(&client, &url, &call).await.unwrap();
            response.text().await.unwrap()
        })
    };
    let first = slow(1);
    audit_until(&server, |audit| {
        events(audit, "call_started")
            .iter()
            .any(|r| r["tool"] == "slow")
    });
    let second = slow(2).await.unwrap();
    assert!(second.contains("overloaded"), "{second}");
    assert!(
        first.await.unwrap().contains("done"),
        "the first call is served"
    );
    let audit = audit_until(&server, |audit| events(audit, "tool_call").len() >= 2);
    let outcomes: Vec<_> = events(&audit, "tool_call")
        .iter()
        .map(|r| (r["request_id"].clone(), r["outcome"].clone()))
        .collect();
    assert!(
        outcomes.contains(&(json!(2), json!("limited"))),
        "{outcomes:?}"
    );
    assert!(outcomes.contains(&(json!(1), json!("ok"))), "{outcomes:?}");
}

/// Red-team finding: a client that dropped a call's event stream after its priming event, then resumed it once the
/// call had ended, got an empty `200` (rmcp keeps no request's stream past its answer, and answers a resumption it
/// cannot serve so) every time, never `404 stream_ended`: the TypeScript SDK v1's loop again, and each resumption a
/// line of rmcp's on standard error, unaudited. A stream its client dropped is resumed once more, then refused; a
/// `Last-Event-ID` that names no stream of the session (unreadable, or a stream it never had) is refused at once.
#[tokio::test]
async fn a_dropped_event_stream_is_resumed_once_then_refused_and_a_made_up_one_at_once() {
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let session = open_session(&client, &server.url).await;
    // A raw connection, closed as soon as the priming event is read, long before the call ends.
    let last_event_id = {
        let address = address_of(&server);
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                          "params": {"name": "slow", "arguments": {"millis": 1500}}})
        .to_string();
        let (socket, _, id) =
            sent_until_event_id(&address, &session_post(&address, &session, &call)).await;
        drop(socket);
        id
    };
    audit_until(&server, |audit| {
        events(audit, "tool_call")
            .iter()
            .any(|r| r["tool"] == "slow")
    });
    let resume =
        |last_event_id: String| resumption(&client, &server.url, &session, &last_event_id).send();
    let first = resume(last_event_id.clone()).await.unwrap();
    assert_eq!(first.status(), 200);
    let _ = first.text().await;
    let again = resume(last_event_id.clone()).await.unwrap();
    assert_eq!(again.status(), 404);
    assert_error_code(&again.json().await.unwrap(), "stream_ended");
    // Made up: no stream of the session, or no event id this server writes.
    let (index, stream) = last_event_id.split_once('/').unwrap();
    let unknown = format!("{index}/{}", stream.parse::<u64>().unwrap() + 1000);
    for made_up in [
        unknown.as_str(),
        "garbage",
        "1/x",
        "/",
        "99999999999999999999999",
        &format!("99999999999999999999999/{stream}"),
    ] {
        let refused = resume(made_up.to_owned()).await.unwrap();
        assert_eq!(refused.status(), 404, "{made_up}");
        assert_error_code(&refused.json().await.unwrap(), "stream_ended");
    }
    let audit = audit_until(&server, |audit| events(audit, "http_rejected").len() >= 7);
    let refused = events(&audit, "http_rejected");
    assert_eq!(refused.len(), 7, "{refused:?}");
    assert!(
        refused.iter().all(|r| r["reason"] == "stream_ended"),
        "{refused:?}"
    );
    // The session goes on.
    assert_echoes(&client, &server.url, &session, 8, "after").await;
}

/// Trial finding (Python SDK): a session its client ended (`DELETE`) left no record, where one closed to make room
/// has `session_closed`. It is recorded, reason `deleted`, with the session's id and its caller.
#[tokio::test]
async fn a_session_its_client_deletes_is_recorded_closed() {
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(30));
    let session = open_session(&client, &server.url).await;
    let deleted = delete_session(&client, &server.url, &session).await;
    assert_eq!(deleted, 204);
    let audit = audit_until(&server, |audit| !events(audit, "session_closed").is_empty());
    let closed = events(&audit, "session_closed");
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["reason"], "deleted");
    assert_eq!(closed[0]["session_id"], session.as_str());
    assert_eq!(closed[0]["caller"], "anonymous");
}

/// Trial finding (TypeScript SDK v2): with sessions on, each request of the stateless revision (2026-07-28, which
/// opens no session) held one of its caller's places for a session while it ran, so a client with more than
/// [`MAX_SESSIONS_PER_CALLER`] calls in flight had the rest refused `429 too_many_sessions`, a session it could not
/// end; without sessions all were served. Only a request that opens a session (`initialize`) takes a place now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_the_stateless_revision_take_no_session_place_with_sessions_on() {
    use secure_tools::serve::http::MAX_SESSIONS_PER_CALLER;
    let server = start_with(&[("MCP_HTTP_SESSIONS", "true")]);
    let client = client(Duration::from_secs(60));
    let calls = MAX_SESSIONS_PER_CALLER + 8;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "1"}
    });
    let posted: Vec<_> = (0..calls)
        .map(|id| {
            let (client, url) = (client.clone(), server.url.clone());
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                              "params": {"name": "slow", "arguments": {"millis": 1500}, "_meta": meta}});
            tokio::spawn(async move {
                let response = client
                    .post(&url)
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "tools/call")
                    .header("mcp-name", "slow")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    // While they run, a session can still be opened: none of them holds a place for one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let session = open_session(&client, &server.url).await;
    assert!(!session.is_empty());
    for call in posted {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"done\""), "{body}");
    }
    let audit = read_audit(&server.audit);
    assert_eq!(events(&audit, "tool_call").len(), calls, "{audit:#?}");
    // Trial finding (TypeScript SDK v2 auto): with sessions on, these calls were recorded under the placeholder
    // client rmcp makes for a request that stands alone (`rmcp` 3.11.0), not the client their `_meta` named.
    assert!(
        events(&audit, "tool_call")
            .iter()
            .all(|r| r["client_name"] == "stateless-client" && r["client_version"] == "1"),
        "{audit:#?}"
    );
    assert!(
        events(&audit, "http_rejected").is_empty(),
        "{:#?}",
        events(&audit, "http_rejected")
    );
}

/// Red-team finding: only a session its client deleted or one closed to make room had a `session_closed` record.
/// One idle past its keep-alive ended with none, and a `DELETE` of it minutes later was answered `204` and
/// recorded `deleted`; the sessions open at the server's stop had none either. Each end is recorded once, with its
/// reason: `expired` (`MCP_HTTP_SESSION_IDLE`), `deleted`, `shutdown` (before `server_stop`, nothing after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_opened_has_its_end_recorded_once_with_its_reason() {
    let mut server = start_with(&[
        ("MCP_HTTP_SESSIONS", "true"),
        ("MCP_HTTP_SESSION_IDLE", "1s"),
    ]);
    let client = client(Duration::from_secs(30));
    let idle = open_session(&client, &server.url).await;
    let closed = |audit: &[Value], reason: &str| -> Vec<String> {
        events(audit, "session_closed")
            .iter()
            .filter(|r| r["reason"] == reason)
            .map(|r| r["session_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let audit = audit_until(&server, |audit| !closed(audit, "expired").is_empty());
    assert_eq!(closed(&audit, "expired"), [idle.as_str()], "{audit:#?}");
    // Deleting it now: no such session, and no second record.
    let deleted = delete_session(&client, &server.url, &idle).await;
    assert_eq!(deleted, 404);
    // One deleted by its client, while used (a request keeps it alive); two left open at the stop.
    let gone = open_session(&client, &server.url).await;
    let deleted = delete_session(&client, &server.url, &gone).await;
    assert_eq!(deleted, 204);
    let open = [
        open_session(&client, &server.url).await,
        open_session(&client, &server.url).await,
    ];
    stop(&mut server).await;
    let audit = read_audit(&server.audit);
    assert_eq!(closed(&audit, "expired"), [idle.as_str()], "{audit:#?}");
    assert_eq!(closed(&audit, "deleted"), [gone.as_str()], "{audit:#?}");
    let mut at_stop = closed(&audit, "shutdown");
    at_stop.sort();
    let mut expected = open.to_vec();
    expected.sort();
    assert_eq!(at_stop, expected, "{audit:#?}");
    let opened = events(&audit, "session").len();
    assert_eq!(opened, 4, "{audit:#?}");
    assert_eq!(events(&audit, "session_closed").len(), opened, "{audit:#?}");
    assert_eq!(audit.last().unwrap()["event"], "server_stop", "{audit:#?}");
}

/// Sends `rounds` `initialize` requests for `version` to `server`, each on a connection of its own that is reset
/// (not closed) a moment after, at a different moment each round.
async fn initialize_and_reset(server: &Server, version: &str, rounds: u64) {
    use tokio::io::AsyncWriteExt as _;
    let address = address_of(server);
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                      "params": {"protocolVersion": version, "capabilities": {},
                                 "clientInfo": {"name": "resetting", "version": "1"}}})
    .to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: {address}\r\naccept: application/json, text/event-stream\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    for round in 0..rounds {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_micros(50 * (round % 8))).await;
        // A zero linger resets at once: the drop does not block (what the deprecation warns of).
        #[allow(deprecated)]
        stream.set_linger(Some(Duration::ZERO)).unwrap();
        drop(stream);
    }
}

/// Red-team finding: a session whose client reset the connection before the answer to its `initialize` (which
/// rmcp then could not deliver, and so ended the session at once) was recorded `session_closed` reason `expired`,
/// within milliseconds, the idle limit being 5 minutes. A session its client never learned of (its `initialize`
/// answer never delivered) ends `abandoned`; `expired` is for sessions idle past the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_client_went_before_its_answer_ends_abandoned_not_expired() {
    let mut server = start_with(&[
        ("MCP_HTTP_SESSIONS", "true"),
        ("MCP_HTTP_SESSION_IDLE", "5min"),
    ]);
    initialize_and_reset(&server, "2025-11-25", 80).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(&mut server).await;
    let audit = read_audit(&server.audit);
    let opened = events(&audit, "session").len();
    let closed = events(&audit, "session_closed");
    assert_eq!(closed.len(), opened, "{audit:#?}");
    let reasons: std::collections::BTreeSet<_> = closed
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(!reasons.contains("expired"), "{reasons:?} {audit:#?}");
    eprintln!("{opened} sessions opened, ended {reasons:?}");
}

/// Red-team finding: a session was marked as announced (its end to be recorded) as its `initialize` went to the
/// handler, so a refused `initialize` (its version outside a strict policy) whose client reset the connection
/// before the answer left a `session_closed` record for a session with no `session` record (21 times in 40). A
/// session's end is recorded only if its `session` record was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_initialize_whose_client_resets_leaves_no_session_closed_record() {
    let mut server = start_with(&[
        ("MCP_HTTP_SESSIONS", "true"),
        ("MCP_MIN_PROTOCOL_VERSION", "2025-11-25"),
    ]);
    initialize_and_reset(&server, "2024-11-05", 40).await;
    // One session that is announced, and ended at the stop.
    let client = client(Duration::from_secs(30));
    let session = open_session(&client, &server.url).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(&mut server).await;
    let audit = read_audit(&server.audit);
    let ids = |event: &str| -> Vec<String> {
        events(&audit, event)
            .iter()
            .map(|r| r["session_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(ids("session"), [session.as_str()], "{audit:#?}");
    assert_eq!(ids("session_closed"), [session.as_str()], "{audit:#?}");
}

/// A trial could not check that progress and log messages reach a client over stateless HTTP (the test server
/// served no tool that sends them over HTTP): a stateless call that sends them is answered as an event stream
/// holding each, then its result.
#[tokio::test]
async fn over_stateless_http_a_call_streams_its_progress_and_log_messages_before_its_result() {
    let server = start();
    let client = client(Duration::from_secs(30));
    let mut body = call("report", json!({}));
    body["params"]["_meta"] = json!({"progressToken": "p1"});
    let response = post(&client, &server.url, &body).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        response.headers()
    );
    let messages = messages(&response.text().await.unwrap());
    let methods: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["method"].as_str())
        .collect();
    assert_eq!(
        methods,
        [
            "notifications/progress",
            "notifications/message",
            "notifications/progress",
            "notifications/message",
            "notifications/progress",
            "notifications/message"
        ],
        "{messages:#?}"
    );
    assert_eq!(messages[4]["params"]["progress"], 3.0, "{messages:#?}");
    assert_eq!(messages[4]["params"]["progressToken"], "p1");
    let answer = messages.last().unwrap();
    assert_eq!(
        answer["result"]["content"][0]["text"], "reported",
        "{answer}"
    );
}

/// Trial finding (TypeScript SDK v1, and v2 in legacy mode): over stateless HTTP a client cancels a call with a
/// `notifications/cancelled` of its own (a second `POST`) and leaves the first request open; rmcp drops the
/// notification (it has no session to route it in), and the call ran to its end, audited `ok`. The runner keeps
/// such calls by caller and id: the cancellation stops the call, audited `cancelled`, and its request is answered so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_stateless_http_a_notification_cancels_the_callers_call() {
    let server = start();
    let client = client(Duration::from_secs(60));
    let slow = {
        let (client, url) = (client.clone(), server.url.clone());
        tokio::spawn(async move {
            let mut body = call("slow", json!({"millis": 30000}));
            body["id"] = json!(7);
            let started = Instant::now();
            let response = post(&client, &url, &body).await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap(), started.elapsed())
        })
    };
    audit_until(&server, |audit| !events(audit, "call_started").is_empty());
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 7, "reason": "user pressed stop"}});
    // One refused (`415`, a wrong content type) cancels nothing (red-team finding: it did).
    let refused = client
        .post(&server.url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("content-type", "text/plain")
        .body(cancel.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 415);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(events(&read_audit_so_far(&server.audit), "tool_call").is_empty());
    let response = post(&client, &server.url, &cancel).await.unwrap();
    assert_eq!(response.status(), 202);
    let (status, body, took) = slow.await.unwrap();
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["id"], 7, "{body}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cancelled")),
        "{body}"
    );
    let audit = audit_until(&server, |audit| !events(audit, "tool_call").is_empty());
    let calls = events(&audit, "tool_call");
    assert_eq!(calls.len(), 1, "{audit:#?}");
    assert_eq!(calls[0]["outcome"], "cancelled", "{audit:#?}");
    assert_still_serving(&server).await;
}

/// Red-team findings: rmcp's keep-alive runs while a call is in progress, and a session idle past it under a long
/// call was recorded closed only when the call ended, meanwhile answering requests a plain-text `500` (and a
/// `DELETE` `204`, recorded `deleted`); and a request of the 2026-07-28 revision naming a session that was not live
/// was served, with that id on its records. A session's end is recorded as it ends, and a request naming a session
/// that is not live is answered `404`, whatever its revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_ended_is_not_found_from_the_moment_it_ends() {
    let server = start_with(&[
        ("MCP_HTTP_SESSIONS", "true"),
        ("MCP_HTTP_SESSION_IDLE", "1s"),
    ]);
    let client = client(Duration::from_secs(30));
    let session = open_session(&client, &server.url).await;
    let slow = spawn_slow(&client, &server.url, &session, 7, 4000);
    let audit = audit_until(&server, |audit| !events(audit, "session_closed").is_empty());
    assert_eq!(events(&audit, "session_closed")[0]["reason"], "expired");
    assert!(events(&audit, "tool_call").is_empty(), "{audit:#?}");
    let list = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list"});
    let (status, body) = post_in(&client, &server.url, &session, &list).await;
    assert_eq!(status, 404, "{body}");
    let deleted = delete_session(&client, &server.url, &session).await;
    assert_eq!(deleted, 404);
    // A request of the stateless revision naming a session that is not live.
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "1"}
    });
    let forged = client
        .post(&server.url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .header("mcp-session-id", "forged-0000")
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"text": "x"}, "_meta": meta}}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 404);
    let _ = slow.await;
    let audit = audit_until(&server, |audit| !events(audit, "tool_call").is_empty());
    assert_eq!(events(&audit, "session_closed").len(), 1, "{audit:#?}");
    assert!(
        events(&audit, "tool_call")
            .iter()
            .all(|r| r["tool"] == "slow"),
        "{audit:#?}"
    );
}
