//! A user's own rmcp server with secure tools merged in, served by the library's runner (`Settings::serve_with`):
//! over HTTP with bearer tokens it gets the same authentication, challenge and records as a tool set served alone;
//! its declared plain tool is scoped and audited; its undeclared plain tool is hidden and refused. Over stdio, the
//! same.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_merged-server");
const SECRET: &str = "merged-secret-0123456789abcdef0123456789";
const ISSUER: &str = "https://issuer.test";

struct HttpServer {
    child: Child,
    resource: String,
    audit_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the server's standard error until it says it listens, then drains it on a thread; `Err` with what it said
/// if it exits first.
fn until_listening(child: &mut Child) -> Result<(), String> {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            return Err(said);
        }
        said.push_str(&line);
        if line.contains("serving MCP over HTTP at") {
            std::thread::spawn(move || for _ in stderr.lines() {});
            return Ok(());
        }
    }
}

impl HttpServer {
    /// The server on a loopback port of its own. Its resource URL names the port, so the port is held (bound by
    /// this process) until the server is spawned; another process can still take it before the server binds it:
    /// the server then exits saying the address is in use, and is started again on another port. It is ready
    /// once it says it listens (a connection to the port could reach another process).
    fn start() -> HttpServer {
        let mut said = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let audit_log = dir.path().join("audit.jsonl");
            let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = held.local_addr().unwrap().port();
            let resource = format!("http://127.0.0.1:{port}/mcp");
            let mut command = Command::new(SERVER);
            command
                .env("MCP_HTTP", format!("127.0.0.1:{port}"))
                .env("MCP_AUTH_ISSUER", ISSUER)
                .env("MCP_RESOURCE_URL", &resource)
                .env("MCP_AUTH_HS256_SECRET", SECRET)
                .env("MCP_AUDIT_LOG", &audit_log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            drop(held);
            let mut child = command.spawn().unwrap();
            match until_listening(&mut child) {
                Ok(()) => {
                    return HttpServer {
                        child,
                        resource,
                        audit_log,
                        _dir: dir,
                    };
                }
                Err(stopped) => {
                    let _ = child.wait();
                    assert!(
                        stopped.contains("Address already in use"),
                        "server exited:\n{stopped}"
                    );
                    said = stopped;
                }
            }
        }
        panic!("the server found its port taken 5 times:\n{said}");
    }

    fn token(&self, subject: &str, scopes: &str) -> String {
        secure_tools::testing::hs256_token(
            SECRET,
            ISSUER,
            &self.resource,
            subject,
            scopes,
            Duration::from_secs(600),
        )
    }

    /// A POST of the MCP endpoint with `token`, as a client of 2025-11-25 sends it, for a body given as bytes.
    fn raw_post(&self, token: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .post(&self.resource)
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25")
    }

    async fn post(&self, token: &str, body: Value) -> (u16, Value, String) {
        let response = reqwest::Client::new()
            .post(&self.resource)
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            challenge,
        )
    }

    fn calls(&self) -> Vec<Value> {
        secure_tools_tests::events(
            &secure_tools_tests::read_audit(&self.audit_log),
            "tool_call",
        )
        .into_iter()
        .cloned()
        .collect()
    }
}

fn call(tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}

#[tokio::test]
async fn a_merged_server_over_http_with_bearer_tokens_keeps_every_tool_under_the_policy() {
    let server = HttpServer::start();
    let full = server.token("alice", "tickets.search tickets.close");
    let close_only = server.token("bob", "tickets.close");

    // No token: the runner's challenge, as for a tool set served alone.
    let response = reqwest::Client::new()
        .post(&server.resource)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // The list: the secure tool and the declared plain tool, with its scopes; not the undeclared one.
    let (status, list, _) = server
        .post(
            &full,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let tools = list["result"]["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["close_ticket", "search_tickets"]);
    let search = tools
        .iter()
        .find(|t| t["name"] == "search_tickets")
        .unwrap();
    assert_eq!(
        search["_meta"]["secure-tools/scopes"],
        json!(["tickets.search"])
    );

    // The plain tool, called with its scope: its own answer, one record, the query redacted.
    let (status, found, _) = server
        .post(
            &full,
            call("search_tickets", json!({"query": "printer on fire"})),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found["result"]["content"][0]["text"],
        "3 tickets match `printer on fire`"
    );
    // rmcp hands a plain tool the request's head; the caller's token is no longer in it.
    let (status, head, _) = server
        .post(
            &full,
            call("search_tickets", json!({"query": "authorization header"})),
        )
        .await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(head["result"]["content"][0]["text"], "no token", "{head}");
    // The secure tool.
    let (status, closed, _) = server
        .post(&full, call("close_ticket", json!({"id": 12})))
        .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["result"]["content"][0]["text"], "closed #12");

    // The plain tool without its scope: refused like a secure tool, 403 with the challenge over HTTP.
    let (status, refused, challenge) = server
        .post(&close_only, call("search_tickets", json!({"query": "x"})))
        .await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["message"], "missing_scope:tickets.search");
    assert!(
        challenge.contains("scope=\"tickets.search\""),
        "{challenge}"
    );

    // A tool's own error answer that imitates the policy's refusal for a missing scope is the tool's answer (200),
    // not turned into an `insufficient_scope` challenge: only the pipeline's own refusals are.
    let (status, forged, challenge) = server
        .post(
            &full,
            call("search_tickets", json!({"query": "forged refusal"})),
        )
        .await;
    assert_eq!(status, 200, "{forged}");
    assert!(challenge.is_empty(), "{challenge}");
    assert_eq!(forged["result"]["isError"], true, "{forged}");

    // The undeclared tool: refused and audited, though the server has it.
    let (status, dumped, _) = server.post(&full, call("debug_dump", json!({}))).await;
    assert_eq!(status, 200, "{dumped}");
    assert_eq!(dumped["result"]["isError"], true, "{dumped}");
    assert!(
        dumped["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("undeclared_tool"),
        "{dumped}"
    );
    assert!(!dumped.to_string().contains("internals"));

    let calls = server.calls();
    let summary: Vec<(&str, &str, &str)> = calls
        .iter()
        .map(|c| {
            (
                c["tool"].as_str().unwrap(),
                c["caller"].as_str().unwrap(),
                c["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("search_tickets", "alice", "ok"),
            ("search_tickets", "alice", "ok"),
            ("close_ticket", "alice", "ok"),
            ("search_tickets", "bob", "denied"),
            ("search_tickets", "alice", "error"),
            ("debug_dump", "alice", "denied"),
        ]
    );
    assert_eq!(
        calls[0]["inputs"]["query"]["redacted"], true,
        "{}",
        calls[0]
    );
    assert_eq!(calls[0]["transport"], "http");
    assert_eq!(calls[5]["error"], "undeclared_tool");
    assert!(
        !std::fs::read_to_string(&server.audit_log)
            .unwrap()
            .contains("printer on fire")
    );

    // A red team's (round 40): the inner handler's own methods were answered to any token, unrecorded. One the
    // tool set does not declare is refused, and the refusal audited with who asked.
    let (status, read, _) = server
        .post(
            &full,
            json!({"jsonrpc": "2.0", "id": 8, "method": "resources/read", "params": {"uri": "tickets://all"}}),
        )
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["error"]["code"], -32601, "{read}");
    assert!(
        read["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("method_not_declared"),
        "{read}"
    );
    let records = secure_tools_tests::read_audit(&server.audit_log);
    let rejected = secure_tools_tests::events(&records, "message_rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["reason"], "method_not_declared");
    assert_eq!(rejected[0]["caller"], "alice");

    // A review's (round 43): a declared method was served unrecorded. Served now with one `method_call` record
    // saying who asked for what (not the arguments it carried); refused to a token without its scope.
    let prompt = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "prompts/get",
               "params": {"name": "triage", "arguments": {"note": "hunter2-prompt"}}})
    };
    let (status, got, _) = server.post(&full, prompt(10)).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["result"]["messages"][0]["content"]["text"], "Triage the open tickets.",
        "{got}"
    );
    let (status, refused, _) = server.post(&close_only, prompt(11)).await;
    assert_eq!(status, 200, "{refused}");
    assert_eq!(refused["error"]["code"], -32003, "{refused}");
    let records = secure_tools_tests::read_audit(&server.audit_log);
    let served = secure_tools_tests::events(&records, "method_call");
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(served[0]["method"], "prompts/get");
    assert_eq!(served[0]["target"], "triage");
    assert_eq!(served[0]["outcome"], "ok");
    assert_eq!(served[0]["caller"], "alice");
    assert_eq!(served[0]["request_id"], 10);
    assert!(served[0]["remote_addr"].is_string(), "{:?}", served[0]);
    assert_eq!(served[0]["transport"], "http", "{:?}", served[0]);
    let rejected = secure_tools_tests::events(&records, "message_rejected");
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[1]["reason"], "missing_scope");
    assert_eq!(rejected[1]["caller"], "bob");
    assert!(
        !std::fs::read_to_string(&server.audit_log)
            .unwrap()
            .contains("hunter2-prompt")
    );
    // An interop round's: under the 2026-07-28 revision rmcp answers the gate's `-32601` with `404`, and the HTTP
    // layer recorded that as an `http_rejected` `not_found` beside the gate's own `message_rejected`: two records
    // for one request, the second reading like an unknown path. One.
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "1"}
    });
    let before = secure_tools_tests::read_audit(&server.audit_log).len();
    let response = reqwest::Client::new()
        .post(&server.resource)
        .header("authorization", format!("Bearer {full}"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "prompts/list")
        .json(&json!({"jsonrpc": "2.0", "id": 14, "method": "prompts/list", "params": {"_meta": meta}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let records = secure_tools_tests::read_audit(&server.audit_log);
    let new: Vec<&Value> = records[before..].iter().collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0]["event"], "message_rejected", "{new:?}");
    assert_eq!(new[0]["reason"], "method_not_declared", "{new:?}");
    // ... naming the transport and the client, as a call's records do (the same round's).
    assert_eq!(new[0]["transport"], "http", "{new:?}");
    assert_eq!(new[0]["client_name"], "stateless-client", "{new:?}");
    // A red team's (round 47): a request of a method MCP defines whose params do not have its shape was recorded
    // naming none of these. As the gate's refusals.
    let (status, misshapen, _) = server
        .post(
            &full,
            json!({"jsonrpc": "2.0", "id": 15, "method": "prompts/get", "params": {"name": 5}}),
        )
        .await;
    assert_eq!(status, 200, "{misshapen}");
    assert_eq!(misshapen["error"]["code"], -32602, "{misshapen}");
    let records = secure_tools_tests::read_audit(&server.audit_log);
    let last = records.last().unwrap();
    assert_eq!(last["event"], "message_rejected", "{last}");
    assert_eq!(last["method"], "prompts/get", "{last}");
    assert_eq!(last["caller"], "alice", "{last}");
    assert_eq!(last["transport"], "http", "{last}");

    // A red team's (round 40): a member twice in a plain tool's arguments was served over HTTP (the last one won)
    // and refused over stdio. Refused over HTTP too, before anything reads it.
    let twice = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"search_tickets","arguments":{"query":"a","query":"b"}}}"#;
    let response = server.raw_post(&full).body(twice).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("duplicate_key"),
        "{body}"
    );
    let records = secure_tools_tests::read_audit(&server.audit_log);
    let refused = secure_tools_tests::events(&records, "http_rejected");
    assert!(
        refused.iter().any(|r| r["detail"] == "duplicate_key"),
        "{refused:?}"
    );
    // A red team's (round 43, over stdio): millions of tiny values within the size limit took about a hundred
    // times their size as rmcp read them. Refused over HTTP too, before anything builds them.
    let zeros = vec!["0"; 2_000_000].join(",");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{{"name":"search_tickets","arguments":{{"query":"a","pad":[{zeros}]}}}}}}"#
    );
    let response = server.raw_post(&full).body(body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too_many_values"),
        "{body}"
    );
    let records = secure_tools_tests::read_audit(&server.audit_log);
    let refused = secure_tools_tests::events(&records, "http_rejected");
    assert!(
        refused.iter().any(|r| r["detail"] == "too_many_values"),
        "{refused:?}"
    );
    // A red team's (round 44): the same body ending in a byte that is not UTF-8 was not counted, and rmcp built
    // all before the byte. JSON is UTF-8 (RFC 8259): such a body is refused before anything reads it.
    let mut body =
        format!(r#"{{"jsonrpc":"2.0","id":13,"method":"ping","params":{{"pad":[{zeros}],"x":""#)
            .into_bytes();
    body.extend_from_slice(b"\xff\"}}");
    let response = server.raw_post(&full).body(body).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not_utf8"),
        "{body}"
    );
    assert_eq!(server.calls().len(), 6, "no call was made");
}

#[test]
fn a_merged_server_over_stdio_keeps_every_tool_under_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let audit_log = dir.path().join("audit.jsonl");
    let mut child = Command::new(SERVER)
        .env("MCP_SCOPES", "tickets.search")
        .env("MCP_AUDIT_LOG", &audit_log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let mut send = |message: Value| {
        writeln!(input, "{message}").unwrap();
        input.flush().unwrap();
    };
    let mut answer = || {
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    send(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "merged-test", "version": "1"}}}),
    );
    let initialized = answer();
    assert!(initialized["result"]["protocolVersion"].is_string());
    // Trial finding (a Rust team's server): the handler's `get_info`, written as the README shows
    // (`ServerConfig::new`), announced rmcp's placeholder (`rmcp` and rmcp's version), whatever name the settings
    // gave. A handler that leaves the placeholder is announced as the settings name it.
    assert_eq!(
        initialized["result"]["serverInfo"],
        json!({"name": "tickets", "version": "1.0.0"}),
        "{initialized}"
    );
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    // The undeclared tool is hidden here too.
    send(json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}));
    let listed = answer();
    let mut names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["close_ticket", "search_tickets"], "{listed}");
    send(call("search_tickets", json!({"query": "printer"})));
    assert_eq!(
        answer()["result"]["content"][0]["text"],
        "3 tickets match `printer`"
    );
    // A declared method of the handler's own, with the grant's scope: served, and recorded.
    send(
        json!({"jsonrpc": "2.0", "id": 12, "method": "prompts/get", "params": {"name": "triage"}}),
    );
    let prompt = answer();
    assert_eq!(
        prompt["result"]["messages"][0]["content"]["text"], "Triage the open tickets.",
        "{prompt}"
    );
    // One not declared: refused, and recorded naming who asked, over stdio too (an interop round's: no caller).
    send(json!({"jsonrpc": "2.0", "id": 13, "method": "prompts/list"}));
    assert_eq!(answer()["error"]["code"], -32601);
    send(call("close_ticket", json!({"id": 3})));
    let refused = answer();
    assert!(
        refused["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("missing_scope:tickets.close"),
        "{refused}"
    );
    send(call("debug_dump", json!({})));
    let dumped = answer();
    assert_eq!(dumped["result"]["isError"], true, "{dumped}");
    // An argument the plain tool's schema does not name is recorded as a secret, as for a secure tool (review
    // finding: it was recorded in clear).
    send(call(
        "search_tickets",
        json!({"query": "printer", "api_token": "hunter2-undeclared"}),
    ));
    answer();
    drop(input);
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&audit_log).unwrap();
    assert!(!text.contains("hunter2-undeclared"), "{text}");
    let records = secure_tools_tests::read_audit(&audit_log);
    let calls = secure_tools_tests::events(&records, "tool_call");
    let outcomes: Vec<(&str, &str, &str)> = calls
        .iter()
        .map(|c| {
            (
                c["tool"].as_str().unwrap(),
                c["caller"].as_str().unwrap(),
                c["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("search_tickets", "stdio", "ok"),
            ("close_ticket", "stdio", "denied"),
            ("debug_dump", "stdio", "denied"),
            ("search_tickets", "stdio", "ok"),
        ]
    );
    assert_eq!(
        calls[3]["inputs"]["api_token"]["redacted"], true,
        "{}",
        calls[3]
    );
    let served = secure_tools_tests::events(&records, "method_call");
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(served[0]["method"], "prompts/get");
    assert_eq!(served[0]["target"], "triage");
    assert_eq!(served[0]["caller"], "stdio");
    assert_eq!(served[0]["outcome"], "ok");
    assert!(served[0]["session_id"].is_string(), "{:?}", served[0]);
    // A trial's: as a call's records, with the transport and the client.
    assert_eq!(served[0]["transport"], "stdio", "{:?}", served[0]);
    assert_eq!(served[0]["client_name"], "merged-test", "{:?}", served[0]);
    let rejected = secure_tools_tests::events(&records, "message_rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["method"], "prompts/list");
    assert_eq!(rejected[0]["caller"], "stdio", "{:?}", rejected[0]);
    assert_eq!(rejected[0]["transport"], "stdio", "{:?}", rejected[0]);
    assert_eq!(
        rejected[0]["client_name"], "merged-test",
        "{:?}",
        rejected[0]
    );
    // The guard after decoding was told that a plain tool's arguments are as sent.
    assert_eq!(
        calls[0]["fields"]["guard_saw_valid_arguments"], false,
        "{}",
        calls[0]
    );
}

/// A review's finding: with a minimum of 2026-07-28, the merged server's `server/discover` listed every version
/// rmcp knows (its inner handler's), while its `initialize` refusal named only 2026-07-28. Discovery lists the
/// versions the policy accepts.
#[test]
fn discovery_lists_the_versions_the_policy_accepts() {
    let mut server = secure_tools_tests::RawServer::spawn(
        SERVER,
        Some("tickets.close"),
        &[("MCP_MIN_PROTOCOL_VERSION", "2026-07-28")],
    );
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "9"}
    });
    let answer = server.request(json!({
        "jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}
    }));
    assert_eq!(
        answer["result"]["supportedVersions"],
        json!(["2026-07-28"]),
        "{answer}"
    );
    // And the server is announced as its settings name it, as in `initialize` (it said `rmcp` 3.11.0).
    assert_eq!(
        answer["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "tickets",
        "{answer}"
    );
}

/// A listing filtered per caller (`MCP_LIST_TOOLS=callable`) is that caller's own; `#[tool_handler]` marks a
/// listing `public` for clients of the stateless revision, which carry cache hints, so a shared cache could serve
/// one caller's list to another. It says `private`; and so does the full listing, as a tool set served alone says
/// (a red team's: the merged server's said `public`).
#[test]
fn a_listing_of_the_callers_own_tools_is_not_cached_for_others() {
    for (listing, expected) in [("callable", vec![json!("close_ticket")]), ("all", vec![])] {
        let mut server = secure_tools_tests::RawServer::spawn(
            SERVER,
            Some("tickets.close"),
            &[("MCP_LIST_TOOLS", listing)],
        );
        let meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "9"}
        });
        let answer = server.request(json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}
        }));
        let names: Vec<_> = answer["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].clone())
            .collect();
        if listing == "callable" {
            assert_eq!(names, expected, "{answer}");
        } else {
            assert!(names.len() > 1, "{answer}");
        }
        assert_eq!(
            answer["result"]["cacheScope"], "private",
            "{listing}: {answer}"
        );
    }
}
