//! The whole call context, and exactly-once under failure, through a real server process over stdio: progress,
//! client logging, elicitation and sampling with and without the client's capability, cancellation by the client,
//! timeouts, a panic on a blocking thread holding a secret, and shutdown with calls in flight.

use std::time::{Duration, Instant};

use secure_tools_tests::{RawServer, events};
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_test-server");
const ALL: &str = "test.read test.write";

fn server(env: &[(&str, &str)]) -> RawServer {
    let mut server = RawServer::spawn(SERVER, Some(ALL), env);
    server.initialize("2025-11-25");
    server
}

/// The `tool_call` records, after the server has exited.
fn tool_calls(audit: &[Value]) -> Vec<Value> {
    events(audit, "tool_call").into_iter().cloned().collect()
}

#[test]
fn progress_and_client_logs_reach_the_client_before_the_answer() {
    let mut server = server(&[]);
    let answer = server.request(json!({
        "jsonrpc": "2.0", "id": 1, "method": "logging/setLevel", "params": {"level": "debug"}
    }));
    assert_eq!(answer["result"], json!({}), "{answer}");
    server.send(&json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "report", "arguments": {}, "_meta": {"progressToken": "p-1"}}
    }));
    let (before, answer) = server.until_answer(&json!(2));
    assert_eq!(
        answer["result"]["content"][0]["text"], "reported",
        "{answer}"
    );
    let progress: Vec<_> = before
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            (
                m["params"]["progressToken"].clone(),
                m["params"]["progress"].clone(),
            )
        })
        .collect();
    assert_eq!(
        progress,
        [
            (json!("p-1"), json!(1.0)),
            (json!("p-1"), json!(2.0)),
            (json!("p-1"), json!(3.0))
        ]
    );
    let logs: Vec<_> = before
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .map(|m| (m["params"]["level"].clone(), m["params"]["data"].clone()))
        .collect();
    assert_eq!(logs.len(), 4, "debug included once asked for: {logs:?}");
    assert_eq!(logs[0], (json!("debug"), json!("starting")));
    assert!(
        before
            .iter()
            .all(|m| m["method"] != "notifications/message" || m["params"]["logger"] == "report")
    );

    // At the default level (and without a progress token) the client gets no debug line and no progress.
    let mut quiet = self::server(&[]);
    quiet.send(&RawServer::call_message(3, "report", json!({})));
    let (before, _) = quiet.until_answer(&json!(3));
    assert!(
        before
            .iter()
            .all(|m| m["method"] != "notifications/progress")
    );
    let levels: Vec<_> = before
        .iter()
        .map(|m| m["params"]["level"].clone())
        .collect();
    assert_eq!(levels, [json!("info"), json!("info"), json!("info")]);
}

/// Trial finding (Python SDK): under the stateless revision (2026-07-28) a tool's log messages reached a client whose
/// request named no level, at `info`; that revision says a server MUST NOT send `notifications/message` for a request
/// whose `_meta` lacks `io.modelcontextprotocol/logLevel`, and at or above that level when it has one.
#[test]
fn under_the_stateless_revision_logs_go_only_to_a_request_that_names_a_level() {
    let mut server = server(&[]);
    let meta = |level: Option<&str>| {
        let mut meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "9"}
        });
        if let Some(level) = level {
            meta["io.modelcontextprotocol/logLevel"] = json!(level);
        }
        meta
    };
    let mut levels = |id: i64, level: Option<&str>| {
        server.send(&json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "report", "arguments": {}, "_meta": meta(level)}
        }));
        let (before, answer) = server.until_answer(&json!(id));
        assert_eq!(
            answer["result"]["content"][0]["text"], "reported",
            "{answer}"
        );
        before
            .iter()
            .filter(|m| m["method"] == "notifications/message")
            .map(|m| m["params"]["level"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(levels(1, None), Vec::<String>::new(), "no level, no logs");
    assert_eq!(levels(2, Some("info")), ["info", "info", "info"]);
    assert_eq!(levels(3, Some("debug")).len(), 4);
    assert_eq!(levels(4, Some("error")), Vec::<String>::new());
}

#[test]
fn elicitation_and_sampling_work_with_the_capability_and_are_refused_at_once_without() {
    // Without the capabilities: a clear refusal, at once, and no request to the client.
    let mut server = server(&[]);
    let started = Instant::now();
    for (id, tool, args, code) in [
        (1, "confirm", json!({}), "elicitation_unsupported"),
        (
            2,
            "summarize",
            json!({"text": "hello"}),
            "sampling_unsupported",
        ),
    ] {
        let (before, answer) = {
            server.send(&RawServer::call_message(id, tool, args));
            server.until_answer(&json!(id))
        };
        assert!(before.is_empty(), "nothing sent to the client: {before:?}");
        assert_eq!(answer["result"]["isError"], true, "{answer}");
        assert_eq!(answer["result"]["structuredContent"]["error"]["code"], code);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");

    // With them: the server asks, the client answers, the tool gets the answer.
    let mut server = RawServer::spawn(SERVER, Some(ALL), &[]);
    server.initialize_with("2025-11-25", json!({"elicitation": {}, "sampling": {}}));
    server.send(&RawServer::call_message(3, "confirm", json!({})));
    let asked = server.recv();
    assert_eq!(asked["method"], "elicitation/create", "{asked}");
    assert_eq!(asked["params"]["message"], "Go ahead?");
    server.send(&json!({
        "jsonrpc": "2.0", "id": asked["id"],
        "result": {"action": "accept", "content": {"confirm": true}}
    }));
    let (_, answer) = server.until_answer(&json!(3));
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("Accept") && text.contains("confirm"),
        "{answer}"
    );

    server.send(&RawServer::call_message(
        4,
        "summarize",
        json!({"text": "a long text"}),
    ));
    let asked = server.recv();
    assert_eq!(asked["method"], "sampling/createMessage", "{asked}");
    server.send(&json!({
        "jsonrpc": "2.0", "id": asked["id"],
        "result": {"role": "assistant", "content": {"type": "text", "text": "short"}, "model": "m-1"}
    }));
    let (_, answer) = server.until_answer(&json!(4));
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("m-1 said") && text.contains("short"),
        "{answer}"
    );

    let (_, audit, _) = server.finish();
    let outcomes: Vec<_> = tool_calls(&audit)
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("ok"), json!("ok")]);
}

/// Red-team finding: a client answering the question (or the sampling request) with junk (`{"action": 5}`) or
/// with a JSON-RPC error had the call recorded `internal_error`, a fault of the server's ("the server log has the details", where there were
/// none). An answer that is not one is `elicitation_invalid` (`sampling_invalid`), as an answer of the wrong shape
/// is; an error the client answers is `elicitation_failed` (`sampling_failed`); neither quotes what the client sent.
#[test]
fn a_junk_or_error_answer_to_a_question_is_the_clients_not_an_internal_error() {
    let mut server = RawServer::spawn(SERVER, Some(ALL), &[]);
    server.initialize_with("2025-11-25", json!({"elicitation": {}, "sampling": {}}));
    let junk = json!({"result": {"action": 5, "content": "SECRET-JUNK"}});
    let error = json!({"error": {"code": -32603, "message": "SECRET-ERROR"}});
    for (id, tool, reply, code) in [
        (1, "confirm", junk.clone(), "elicitation_invalid"),
        (2, "confirm", error.clone(), "elicitation_failed"),
        (3, "summarize", junk, "sampling_invalid"),
        (4, "summarize", error, "sampling_failed"),
    ] {
        let arguments = if tool == "confirm" {
            json!({})
        } else {
            json!({"text": "hello"})
        };
        server.send(&RawServer::call_message(id, tool, arguments));
        let asked = server.recv();
        assert!(asked["method"].is_string(), "{asked}");
        let mut answer = json!({"jsonrpc": "2.0", "id": asked["id"]});
        answer
            .as_object_mut()
            .unwrap()
            .extend(reply.as_object().unwrap().clone());
        server.send(&answer);
        let (_, result) = server.until_answer(&json!(id));
        assert_eq!(
            result["result"]["structuredContent"]["error"]["code"], code,
            "{result}"
        );
        assert!(!result.to_string().contains("SECRET"), "{result}");
    }
    let (_, audit, stderr) = server.finish();
    let codes: Vec<_> = tool_calls(&audit)
        .iter()
        .map(|r| r["error"].clone())
        .collect();
    assert_eq!(
        codes,
        [
            json!("elicitation_invalid"),
            json!("elicitation_failed"),
            json!("sampling_invalid"),
            json!("sampling_failed")
        ]
    );
    assert!(!stderr.contains("SECRET"), "{stderr}");
}

/// Red-team finding: an accepted answer whose content did not fit the form (not an object, a required field
/// missing, a value of another type) reached a handler that asked with `Elicitation::request` as it came (`Accept
/// "SECRET..."`), though an answer of the wrong shape is refused. The content is checked against the form, during
/// the call and by rounds: `elicitation_invalid`, nothing of it quoted.
#[test]
fn an_accepted_answer_that_does_not_fit_the_form_is_refused() {
    let misfits = [
        json!("SECRET-not-an-object"),
        json!({}),
        json!({"confirm": "SECRET-yes"}),
        json!({"confirm": [true]}),
        // A review's: an acceptance with no content at all, or `null`, where the form requires a member.
        Value::Null,
    ];
    // During the call.
    let mut server = RawServer::spawn(SERVER, Some(ALL), &[]);
    server.initialize_with("2025-11-25", json!({"elicitation": {}}));
    let mut id = 0;
    for content in misfits
        .iter()
        .chain([&json!({"confirm": true, "other": 1})])
    {
        id += 1;
        server.send(&RawServer::call_message(id, "confirm", json!({})));
        let asked = server.recv();
        assert_eq!(asked["method"], "elicitation/create", "{asked}");
        // No content at all here; `null` by rounds below.
        let accepted = match content {
            Value::Null => json!({"action": "accept"}),
            content => json!({"action": "accept", "content": content}),
        };
        server.send(&json!({"jsonrpc": "2.0", "id": asked["id"], "result": accepted}));
        let (_, answer) = server.until_answer(&json!(id));
        let result = &answer["result"];
        if content.get("other").is_some() {
            // A member the form does not have is left for the handler: the form's own are there.
            assert_eq!(result["isError"], false, "{answer}");
        } else {
            assert_eq!(
                result["structuredContent"]["error"]["code"], "elicitation_invalid",
                "{content}: {answer}"
            );
            assert!(!answer.to_string().contains("SECRET"), "{answer}");
        }
    }
    let (_, audit, stderr) = server.finish();
    assert!(!stderr.contains("SECRET"), "{stderr}");
    assert!(!audit.iter().any(|r| r.to_string().contains("SECRET")));

    // By rounds.
    let mut server = RawServer::spawn(SERVER, Some(ALL), &[]);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "1"}
    });
    for (n, content) in misfits.iter().enumerate() {
        let id = 2 * n as u64;
        let first = server.request(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "confirm", "arguments": {}, "_meta": meta}}));
        let state = first["result"]["requestState"].clone();
        let answer = server.request(json!({"jsonrpc": "2.0", "id": id + 1, "method": "tools/call",
            "params": {"name": "confirm", "arguments": {}, "_meta": meta,
                       "inputResponses": {"elicitation-0": {"action": "accept", "content": content}},
                       "requestState": state}}));
        assert_eq!(
            answer["result"]["structuredContent"]["error"]["code"], "elicitation_invalid",
            "{content}: {answer}"
        );
        assert!(!answer.to_string().contains("SECRET"), "{answer}");
    }
    let (_, audit, stderr) = server.finish();
    assert!(!stderr.contains("SECRET"), "{stderr}");
    assert!(!audit.iter().any(|r| r.to_string().contains("SECRET")));
}

/// A client is asked only what it declared and what its protocol lets the server ask: one that declared URL-mode
/// elicitation only was sent a form (rmcp's `create_elicitation` checks no mode), and under the stateless revision
/// (2026-07-28), where the server may not send the client requests, a tool got an internal error instead of
/// `elicitation_unsupported`. Both are refused at once, with nothing sent to the client (a stateless client that
/// declared the capabilities is asked by rounds: see the next test).
#[test]
fn a_client_is_asked_only_in_a_mode_and_protocol_that_allow_it() {
    let mut server = RawServer::spawn(SERVER, Some(ALL), &[]);
    server.initialize_with("2025-11-25", json!({"elicitation": {"url": {}}}));
    server.send(&RawServer::call_message(1, "confirm", json!({})));
    let (before, answer) = server.until_answer(&json!(1));
    assert!(before.is_empty(), "no form sent: {before:?}");
    assert_eq!(
        answer["result"]["structuredContent"]["error"]["code"], "elicitation_unsupported",
        "{answer}"
    );

    let mut server = RawServer::spawn(SERVER, Some(ALL), &[]);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "9"}
    });
    for (id, tool, args, code) in [
        (2, "confirm", json!({}), "elicitation_unsupported"),
        (3, "summarize", json!({"text": "t"}), "sampling_unsupported"),
    ] {
        server.send(&json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args, "_meta": meta}
        }));
        let (before, answer) = server.until_answer(&json!(id));
        assert!(before.is_empty(), "nothing sent to the client: {before:?}");
        assert_eq!(
            answer["result"]["structuredContent"]["error"]["code"], code,
            "{answer}"
        );
    }
}

/// Under the stateless revision (2026-07-28) the server may not send the client requests, and a secure tool's
/// elicitation and sampling were refused `elicitation_unsupported` to every client of it (the official SDK clients
/// use it by default). A question now goes out in an `input_required` result; the client's retry with the answer
/// (and the `requestState` echoed) runs the handler again, and each question takes its answer. Each round is a call
/// of its own, audited; the user's answers are in no record.
#[test]
fn a_stateless_client_is_asked_by_input_required_rounds() {
    // A round that waits for its timeout fails the test, quickly.
    let mut server = RawServer::spawn(SERVER, Some(ALL), &[("MCP_TOOL_TIMEOUT", "10s")]);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "sampling": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "9"}
    });
    let mut id = 0;
    let mut round = |tool: &str, args: Value, answers: Option<(Value, Value)>| {
        id += 1;
        let mut params = json!({"name": tool, "arguments": args, "_meta": meta});
        if let Some((responses, state)) = answers {
            params["inputResponses"] = responses;
            if !state.is_null() {
                params["requestState"] = state;
            }
        }
        server.send(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}));
        let (before, answer) = server.until_answer(&json!(id));
        assert!(
            before.is_empty(),
            "no request sent to the client: {before:?}"
        );
        answer["result"].clone()
    };
    // The only question of each: an elicitation, then a sampling request.
    let first = round("confirm", json!({}), None);
    assert_eq!(first["resultType"], "input_required", "{first}");
    let asked = first["inputRequests"].as_object().unwrap();
    assert_eq!(asked.len(), 1, "{first}");
    let (key, question) = asked.iter().next().unwrap();
    assert_eq!(question["method"], "elicitation/create", "{first}");
    assert_eq!(question["params"]["message"], "Go ahead?", "{first}");
    let done = round(
        "confirm",
        json!({}),
        Some((
            json!({key: {"action": "accept", "content": {"confirm": true}}}),
            first["requestState"].clone(),
        )),
    );
    assert_eq!(
        done["content"][0]["text"], "Accept {\"confirm\":true}",
        "{done}"
    );

    let first = round("summarize", json!({"text": "t"}), None);
    let (key, question) = first["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(question["method"], "sampling/createMessage", "{first}");
    let answer =
        json!({"role": "assistant", "content": {"type": "text", "text": "short"}, "model": "m-1"});
    let done = round(
        "summarize",
        json!({"text": "t"}),
        Some((json!({key: answer}), first["requestState"].clone())),
    );
    let text = done["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("m-1 said"), "{done}");

    // Two questions, one after the other: the second round answers the first and is asked the second; the third
    // sends only the second answer, the first riding in `requestState`.
    let first = round("confirm_twice", json!({}), None);
    let (name_key, question) = first["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(question["params"]["message"], "Your name?", "{first}");
    let name = json!({"action": "accept", "content": {"name": "Zanzibar-7781"}});
    let second = round(
        "confirm_twice",
        json!({}),
        Some((json!({name_key: name}), first["requestState"].clone())),
    );
    assert_eq!(second["resultType"], "input_required", "{second}");
    let asked = second["inputRequests"].as_object().unwrap();
    assert_eq!(asked.len(), 1, "{second}");
    let (go_key, question) = asked.iter().next().unwrap();
    assert_ne!(go_key, name_key);
    assert_eq!(question["params"]["message"], "Go ahead?", "{second}");
    let state = second["requestState"].clone();
    assert!(
        state.is_string(),
        "the first answer rides in the state: {second}"
    );
    let done = round(
        "confirm_twice",
        json!({}),
        Some((
            json!({go_key: {"action": "accept", "content": {"confirm": true}}}),
            state,
        )),
    );
    assert_eq!(
        done["content"][0]["text"], "{\"name\":\"Zanzibar-7781\"} {\"confirm\":true}",
        "{done}"
    );
    // A question asked on a task the handler spawned and awaits ends the round as well (not at the timeout).
    let first = round("confirm_in_task", json!({}), None);
    assert_eq!(key_of(&first), "elicitation-0", "{first}");
    let done = round(
        "confirm_in_task",
        json!({}),
        Some((
            json!({"elicitation-0": {"action": "decline"}}),
            first["requestState"].clone(),
        )),
    );
    assert_eq!(done["content"][0]["text"], "Decline", "{done}");
    // Two questions asked at once go out in one round, and are answered in one.
    let first = round("confirm_both", json!({}), None);
    let asked: Vec<_> = first["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, question)| (key.clone(), question["params"]["message"].clone()))
        .collect();
    assert_eq!(
        asked,
        [
            ("elicitation-0".to_owned(), json!("First?")),
            ("elicitation-1".to_owned(), json!("Second?"))
        ],
        "{first}"
    );
    let done = round(
        "confirm_both",
        json!({}),
        Some((
            json!({"elicitation-0": {"action": "accept", "content": {"confirm": true}},
                   "elicitation-1": {"action": "decline"}}),
            first["requestState"].clone(),
        )),
    );
    assert_eq!(done["content"][0]["text"], "Accept Decline", "{done}");
    // An answer the client makes up in the wrong shape is refused, not taken.
    let first = round("confirm", json!({}), None);
    let refused = round(
        "confirm",
        json!({}),
        Some((
            json!({"elicitation-0": {"no": "shape"}}),
            first["requestState"].clone(),
        )),
    );
    assert_eq!(
        refused["structuredContent"]["error"]["code"], "elicitation_invalid",
        "{refused}"
    );
    // An answer to a question this call's rounds did not ask under its key is not taken: the question is asked
    // (again). Here, without the state (an answer given before the question was asked), and with the state of
    // another tool's round, whose `elicitation-0` asked something else ("Go ahead?", not "Your name?").
    let accept = json!({"elicitation-0": {"action": "accept", "content": {"confirm": true}}});
    let unasked = round("confirm", json!({}), Some((accept.clone(), Value::Null)));
    assert_eq!(unasked["resultType"], "input_required", "{unasked}");
    let other = round(
        "confirm_twice",
        json!({}),
        Some((accept, first["requestState"].clone())),
    );
    assert_eq!(other["resultType"], "input_required", "{other}");
    let (_, question) = other["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(question["params"]["message"], "Your name?", "{other}");
    // Only a handler asks by rounds: an argument rule that asks is told the client cannot be asked, at once (it
    // waited for the timeout, for an answer no round brings).
    let by_rule = round("confirm_by_rule", json!({}), None);
    assert_eq!(
        by_rule["structuredContent"]["error"]["code"], "elicitation_unsupported",
        "{by_rule}"
    );

    let (_, audit, stderr) = server.finish();
    let outcomes: Vec<_> = tool_calls(&audit)
        .iter()
        .map(|r| (r["tool"].clone(), r["outcome"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (json!("confirm"), json!("input_required")),
            (json!("confirm"), json!("ok")),
            (json!("summarize"), json!("input_required")),
            (json!("summarize"), json!("ok")),
            (json!("confirm_twice"), json!("input_required")),
            (json!("confirm_twice"), json!("input_required")),
            (json!("confirm_twice"), json!("ok")),
            (json!("confirm_in_task"), json!("input_required")),
            (json!("confirm_in_task"), json!("ok")),
            (json!("confirm_both"), json!("input_required")),
            (json!("confirm_both"), json!("ok")),
            (json!("confirm"), json!("input_required")),
            (json!("confirm"), json!("invalid")),
            (json!("confirm"), json!("input_required")),
            (json!("confirm_twice"), json!("input_required")),
            (json!("confirm_by_rule"), json!("error")),
        ]
    );
    // A tool not marked read-only has its start written each round, before it asks.
    let starts = events(&audit, "call_started")
        .into_iter()
        .filter(|r| r["tool"] == "confirm_twice")
        .count();
    assert_eq!(starts, 4);
    let all = serde_json::to_string(&audit).unwrap();
    assert!(
        !all.contains("Zanzibar-7781"),
        "an answer in the audit: {all}"
    );
    assert!(
        !stderr.contains("Zanzibar-7781"),
        "an answer on stderr: {stderr}"
    );
    // The question the task asked in `confirm_in_task`'s first round returned once its call ended, rather than waiting
    // for ever (the second round's returned its answer).
    assert_eq!(
        stderr
            .matches("confirm_in_task: its question returned")
            .count(),
        2,
        "{stderr}"
    );
}

/// The key of the only question an `input_required` result asks.
fn key_of(result: &Value) -> String {
    result["inputRequests"]
        .as_object()
        .and_then(|asked| asked.keys().next())
        .cloned()
        .unwrap_or_default()
}

/// A request the tool sent the client (an elicitation form, a sampling request) and the client has not answered is
/// withdrawn with `notifications/cancelled` when the call stops (here at its timeout; the same on the client's
/// cancellation): the form stayed open at the client, and whatever the user typed was thrown away.
#[test]
fn an_unanswered_elicitation_is_withdrawn_when_its_call_stops() {
    let mut server = RawServer::spawn(SERVER, Some(ALL), &[("MCP_TOOL_TIMEOUT", "300ms")]);
    server.initialize_with("2025-11-25", json!({"elicitation": {}, "sampling": {}}));
    for (id, tool, args, method) in [
        (1, "confirm", json!({}), "elicitation/create"),
        (
            2,
            "summarize",
            json!({"text": "t"}),
            "sampling/createMessage",
        ),
        // Red-team finding: a question asked on a task the handler spawned was never withdrawn, and the task took
        // the client's late answer after the call's record said it had stopped.
        (3, "confirm_in_task", json!({}), "elicitation/create"),
    ] {
        server.send(&RawServer::call_message(id, tool, args));
        let asked = server.recv();
        assert_eq!(asked["method"], method, "{asked}");
        let mut answer = None;
        let mut withdrawn = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while (answer.is_none() || withdrawn.is_none()) && Instant::now() < deadline {
            let Some(message) = server.try_recv(Duration::from_millis(200)) else {
                continue;
            };
            if message["id"] == json!(id) {
                answer = Some(message);
            } else if message["method"] == "notifications/cancelled" {
                withdrawn = Some(message);
            }
        }
        let answer = answer.expect("the call is answered");
        assert_eq!(
            answer["result"]["structuredContent"]["error"]["code"], "timeout",
            "{answer}"
        );
        let withdrawn = withdrawn.expect("the request to the client is withdrawn");
        assert_eq!(withdrawn["params"]["requestId"], asked["id"], "{withdrawn}");
    }
    let (_, audit, _) = server.finish();
    let outcomes: Vec<_> = tool_calls(&audit)
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        [json!("timeout"), json!("timeout"), json!("timeout")]
    );
}

#[test]
fn a_call_the_client_cancels_is_stopped_and_audited_cancelled() {
    let mut server = server(&[]);
    server.send(&RawServer::call_message(
        7,
        "slow",
        json!({"millis": 30000}),
    ));
    std::thread::sleep(Duration::from_millis(200));
    server.send(&json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "the user gave up"}
    }));
    // The server keeps serving, and the cancelled call's record comes long before its 30 s would have.
    let answer = server.request(RawServer::call_message(
        8,
        "echo",
        json!({"text": "still here"}),
    ));
    assert_eq!(
        answer["id"], 8,
        "the cancelled call gets no answer, as the spec says: {answer}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let cancelled = loop {
        let audit = server.audit();
        if let Some(record) = tool_calls(&audit)
            .into_iter()
            .find(|r| r["request_id"] == 7)
        {
            break record;
        }
        assert!(Instant::now() < deadline, "no record of the cancelled call");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(cancelled["outcome"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["error"], "cancelled");
    assert!(cancelled["duration_us"].as_u64().unwrap() < 5_000_000);
    let (_, audit, _) = server.finish();
    assert_eq!(tool_calls(&audit).len(), 2);
}

/// A `tools/call` of the stateless revision (2026-07-28): no `initialize`, everything in the request's `_meta`.
fn stateless_call(id: i64, tool: &str, arguments: Value) -> Value {
    let mut call = RawServer::call_message(id, tool, arguments);
    call["params"]["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "stateless-client", "version": "9"}
    });
    call
}

/// Waits for the `tool_call` record of request `id`.
fn record_of(server: &RawServer, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let audit = server.audit();
        if let Some(record) = tool_calls(&audit)
            .into_iter()
            .find(|r| r["request_id"] == id)
        {
            return record;
        }
        assert!(Instant::now() < deadline, "no record of call {id}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Review finding: a session started without `initialize` (the stateless revision) was taken for started only once
/// its first request was answered, and every notification before that was dropped: the client's cancellation of
/// that first call was lost, and the call ran to its end.
#[test]
fn a_stateless_first_call_the_client_cancels_is_stopped_and_audited_cancelled() {
    let mut server = RawServer::spawn(SERVER, Some(ALL), &[]);
    server.send(&stateless_call(1, "slow", json!({"millis": 30000})));
    std::thread::sleep(Duration::from_millis(200));
    server.send(&json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 1, "reason": "the user gave up"}
    }));
    let answer = server.request(stateless_call(2, "echo", json!({"text": "still here"})));
    assert_eq!(
        answer["id"], 2,
        "the cancelled call gets no answer: {answer}"
    );
    let cancelled = record_of(&server, 1);
    assert_eq!(cancelled["outcome"], "cancelled", "{cancelled}");
    assert!(cancelled["duration_us"].as_u64().unwrap() < 5_000_000);
    let (_, audit, _) = server.finish();
    assert_eq!(tool_calls(&audit).len(), 2);
    assert_eq!(events(&audit, "session").len(), 1, "{audit:?}");
}

/// Review finding: a stateless first request answered with an error (a tool that does not exist) started rmcp's
/// session but not the transport's: no `session` record, and every notification was dropped until a request
/// succeeded, so the next call's cancellation was lost too.
#[test]
fn a_stateless_first_request_answered_with_an_error_still_starts_the_session() {
    let mut server = RawServer::spawn(SERVER, Some(ALL), &[]);
    let answer = server.request(stateless_call(1, "no_such_tool", json!({})));
    assert!(answer.get("error").is_some(), "{answer}");
    server.send(&stateless_call(2, "slow", json!({"millis": 30000})));
    std::thread::sleep(Duration::from_millis(200));
    server.send(&json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 2, "reason": "the user gave up"}
    }));
    let answer = server.request(stateless_call(3, "echo", json!({"text": "still here"})));
    assert_eq!(
        answer["id"], 3,
        "the cancelled call gets no answer: {answer}"
    );
    let cancelled = record_of(&server, 2);
    assert_eq!(cancelled["outcome"], "cancelled", "{cancelled}");
    let (_, audit, _) = server.finish();
    let session = events(&audit, "session");
    assert_eq!(session.len(), 1, "{audit:?}");
    assert_eq!(session[0]["lifecycle"], "stateless");
    assert_eq!(session[0]["client_name"], "stateless-client");
}

/// What rmcp refuses before a session (a stateless request of a version outside the policy, one short of
/// metadata) starts none: a notification after it is still dropped (rmcp would end the server on it), and the
/// client can still `initialize`.
#[test]
fn a_refused_stateless_first_request_starts_no_session() {
    let mut server = RawServer::spawn(
        SERVER,
        Some(ALL),
        &[("MCP_MIN_PROTOCOL_VERSION", "2025-06-18")],
    );
    let mut old = stateless_call(1, "echo", json!({"text": "x"}));
    old["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2025-03-26");
    let answer = server.request(old);
    assert_eq!(answer["error"]["code"], -32022, "{answer}");
    let mut short = RawServer::call_message(2, "echo", json!({"text": "x"}));
    short["params"]["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    let answer = server.request(short);
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    server.send(&json!({
        "jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}
    }));
    let answer = server.initialize("2025-11-25");
    assert_eq!(
        answer["result"]["protocolVersion"], "2025-11-25",
        "{answer}"
    );
    let answer = server.request(RawServer::call_message(3, "echo", json!({"text": "ok"})));
    assert_eq!(answer["result"]["content"][0]["text"], "ok", "{answer}");
    let (_, audit, _) = server.finish();
    let session = events(&audit, "session");
    assert_eq!(session.len(), 1, "{audit:?}");
    assert_eq!(session[0]["lifecycle"], "initialize");
}

#[test]
fn a_tool_past_the_configured_timeout_is_stopped_and_audited_timeout() {
    let mut server = server(&[("MCP_TOOL_TIMEOUT", "200ms")]);
    let started = Instant::now();
    let answer = server.request(RawServer::call_message(1, "slow", json!({"millis": 20000})));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["error"]["code"],
        "timeout"
    );
    let (_, audit, _) = server.finish();
    let calls = tool_calls(&audit);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["outcome"], "timeout");
}

/// A value the handler holds may panic as it is dropped, when the call times out and the pipeline drops the
/// handler's future: its message (here quoting the redacted secret) is withheld as a handler's panic is (it was
/// printed on stderr by the default hook), and the server goes on.
#[test]
fn a_panic_while_a_timed_out_handler_is_dropped_shows_its_secret_nowhere() {
    let secret = "lingering-correct-horse-battery-staple";
    let mut server = server(&[]);
    let answer = server.request(RawServer::call_message(
        1,
        "linger",
        json!({"secret": secret}),
    ));
    assert_eq!(
        answer["result"]["structuredContent"]["error"]["code"], "timeout",
        "{answer}"
    );
    let answer = server.request(RawServer::call_message(2, "echo", json!({"text": "x"})));
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let (status, audit, stderr) = server.finish();
    assert!(status.success(), "{stderr}");
    let calls = tool_calls(&audit);
    assert_eq!(calls.len(), 2, "{audit:?}");
    assert_eq!(calls[0]["outcome"], "timeout");
    assert!(
        stderr.contains("secure tool `linger` panicked at"),
        "the location is still reported: {stderr}"
    );
    for (place, text) in [
        ("stderr", stderr),
        ("the audit log", serde_json::to_string(&audit).unwrap()),
    ] {
        assert!(
            !text.contains("horse"),
            "the secret reached {place}: {text}"
        );
    }
}

#[test]
fn a_panic_on_a_blocking_thread_holding_a_secret_shows_it_nowhere() {
    let secret = "boom-correct-horse-battery-staple";
    let mut server = server(&[]);
    let answer = server.request(RawServer::call_message(
        1,
        "crunch",
        json!({"secret": secret}),
    ));
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["error"]["code"],
        "tool_panicked"
    );
    // The next call works.
    let answer = server.request(RawServer::call_message(
        2,
        "crunch",
        json!({"secret": "fine"}),
    ));
    assert_eq!(answer["result"]["content"][0]["text"], "4", "{answer}");
    let (status, audit, stderr) = server.finish();
    assert!(status.success());
    let calls = tool_calls(&audit);
    assert_eq!(calls[0]["outcome"], "panic");
    assert_eq!(calls[1]["outcome"], "ok");
    assert!(
        stderr.contains("secure tool `crunch` panicked at"),
        "the location is still reported: {stderr}"
    );
    for (place, text) in [
        ("stderr", stderr),
        ("the audit log", serde_json::to_string(&audit).unwrap()),
        ("the answer", answer.to_string()),
    ] {
        assert!(
            !text.contains("horse"),
            "the secret reached {place}: {text}"
        );
    }
}

#[test]
fn at_sigterm_calls_in_flight_get_the_grace_period_then_are_stopped_before_the_stop_record() {
    let mut server = server(&[("MCP_SHUTDOWN_GRACE", "300ms")]);
    server.send(&RawServer::call_message(1, "slow", json!({"millis": 100})));
    server.send(&RawServer::call_message(
        2,
        "slow",
        json!({"millis": 30000}),
    ));
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The short call finishes within the grace period and is answered.
    let (_, answer) = server.until_answer(&json!(1));
    assert_eq!(answer["result"]["content"][0]["text"], "done", "{answer}");
    let exit = server.wait();
    assert!(exit.success(), "{exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the grace period"
    );
    let audit = server.audit();
    let calls = tool_calls(&audit);
    let outcome_of = |id: i64| {
        calls
            .iter()
            .find(|r| r["request_id"] == id)
            .map(|r| (r["outcome"].clone(), r["error"].clone()))
    };
    assert_eq!(outcome_of(1), Some((json!("ok"), Value::Null)));
    assert_eq!(
        outcome_of(2),
        Some((json!("cancelled"), json!("shutting_down")))
    );
    assert_eq!(audit.last().unwrap()["event"], "server_stop");
}

/// A second signal during the grace period stops the calls in flight at once, each recorded before the stop
/// record (the first signal's watcher no longer listened, and the default action was gone: with an hour's grace,
/// a second Ctrl-C did nothing).
#[test]
fn a_second_signal_stops_calls_in_flight_at_once_still_recorded() {
    let mut server = server(&[("MCP_SHUTDOWN_GRACE", "1h")]);
    server.send(&RawServer::call_message(
        1,
        "slow",
        json!({"millis": 60000}),
    ));
    std::thread::sleep(Duration::from_millis(100));
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-TERM");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    signal("-INT");
    let exit = server.wait();
    assert!(exit.success(), "{exit:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the second signal did not stop the server"
    );
    let audit = server.audit();
    let calls = tool_calls(&audit);
    assert_eq!(calls.len(), 1, "{audit:?}");
    assert_eq!(calls[0]["outcome"], "cancelled");
    assert_eq!(calls[0]["error"], "shutting_down");
    let stop = audit.last().unwrap();
    assert_eq!(stop["event"], "server_stop");
    assert_eq!(stop["reason"], "sigterm");
}

/// Red-team finding: stopped as MCP's stdio transport tells a host to stop a server (its input closed, SIGTERM
/// 2 s later, SIGKILL 2 s after that: the Python SDK's timings), a server with a call in flight was killed with no
/// record of the call and no `server_stop`: rmcp waits 5 s for calls after the input ends, and the grace at
/// SIGTERM was 10 s. The end of the input starts the stop (the grace, 1 s by default over stdio), so the server
/// exits by itself, every record written.
#[test]
fn a_host_stopping_the_server_as_the_spec_says_finds_every_record() {
    let mut server = server(&[]);
    server.send(&RawServer::call_message(
        1,
        "slow",
        json!({"millis": 30000}),
    ));
    server.send(&RawServer::call_message(2, "slow", json!({"millis": 100})));
    let (_, answer) = server.until_answer(&json!(2));
    assert_eq!(answer["result"]["content"][0]["text"], "done", "{answer}");
    let started = Instant::now();
    assert!(
        server.stop_as_a_host(),
        "killed after {:?}",
        started.elapsed()
    );
    let audit = server.audit();
    let calls = tool_calls(&audit);
    assert_eq!(calls.len(), 2, "{audit:?}");
    let slow = calls.iter().find(|r| r["request_id"] == 1).unwrap();
    assert_eq!(
        (&slow["outcome"], &slow["error"]),
        (&json!("cancelled"), &json!("shutting_down")),
        "{slow}"
    );
    let stop = audit.last().unwrap();
    assert_eq!(stop["event"], "server_stop", "{audit:?}");
    assert_eq!(stop["reason"], "eof", "{stop}");
}

/// Red-team finding: a call past its point of no return (which cannot be stopped) held the stop up to rmcp's 5 s
/// wait after the input ended, and a SIGTERM did not shorten it: a host stopping the server as the spec says killed
/// it with no `server_stop`. Once the server is stopping, rmcp's end of the session is waited for half a second at
/// most; the call's record follows `server_stop` as the process ends (see the README).
#[test]
fn a_call_past_its_commit_does_not_keep_a_host_from_stopping_the_server() {
    let mut server = server(&[]);
    server.send(&RawServer::call_message(
        1,
        "commit_then_wait",
        json!({"millis": 20000}),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    while events(&server.audit(), "call_started").is_empty() {
        assert!(Instant::now() < deadline, "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert!(
        server.stop_as_a_host(),
        "killed after {:?}",
        started.elapsed()
    );
    let audit = server.audit();
    assert!(
        audit.iter().any(|r| r["event"] == "server_stop"),
        "{audit:?}"
    );
    // The host insisting (SIGTERM) gives the call up: recorded before `server_stop` (a red team's, round 35: it
    // was recorded after it, as the process ended), its effect unknown.
    let calls = tool_calls(&audit);
    assert_eq!(calls.len(), 1, "{audit:?}");
    assert_eq!(calls[0]["error"], "cancelled_after_commit", "{}", calls[0]);
    assert_eq!(audit.last().unwrap()["event"], "server_stop", "{audit:?}");
}

/// Red-team finding (third round): a client piping its requests in and closing the input (`printf ... | server`)
/// lost the answer of a call past its point of no return that outlasted the grace: the stop no longer waited for
/// rmcp to answer it. Without a signal, rmcp's wait for it (5 s) is kept; only a signal (a host insisting) cuts it.
#[test]
fn a_piped_call_past_its_commit_is_still_answered_after_the_input_ends() {
    let mut server = server(&[]);
    server.send(&RawServer::call_message(
        1,
        "commit_then_wait",
        json!({"millis": 4500}),
    ));
    drop(server.take_stdin());
    let (_, answer) = server.until_answer(&json!(1));
    assert!(answer.get("result").is_some(), "{answer}");
    let exit = server.wait();
    assert!(exit.success(), "{exit:?}");
    let audit = server.audit();
    let calls = tool_calls(&audit);
    assert_eq!(calls.len(), 1, "{audit:?}");
    assert_eq!(calls[0]["outcome"], "ok", "{}", calls[0]);
    assert_eq!(audit.last().unwrap()["event"], "server_stop");
}

/// Red-team finding: with a grace longer than rmcp's own wait after the input ends (5 s), rmcp ended the session
/// first, and a call it dropped was recorded `cancelled` with the client's code, though no client cancelled it. Past
/// the end of the input, the grace stops short of rmcp's wait, so the stop is the server's, and recorded so.
#[test]
fn a_call_stopped_after_the_input_ended_is_the_servers_stop_whatever_the_grace() {
    let mut server = server(&[("MCP_SHUTDOWN_GRACE", "30s")]);
    server.send(&RawServer::call_message(
        1,
        "slow",
        json!({"millis": 60000}),
    ));
    std::thread::sleep(Duration::from_millis(100));
    let (status, audit, _) = server.finish();
    assert!(status.success());
    let calls = tool_calls(&audit);
    assert_eq!(calls.len(), 1, "{audit:?}");
    assert_eq!(
        (&calls[0]["outcome"], &calls[0]["error"]),
        (&json!("cancelled"), &json!("shutting_down")),
        "{}",
        calls[0]
    );
    assert_eq!(audit.last().unwrap()["event"], "server_stop");
}

/// Red-team finding: a client that stopped reading held a SIGTERM up some 12 s (the answers queued were waited for
/// twice, 5 s each, after rmcp's own wait), so a host stopping it as the spec says killed it before `server_stop`;
/// and with its input closed too, the end of the input went unseen (no line is read while the output is full). At
/// a signal, answers nobody reads are not waited for long.
#[test]
fn a_client_that_stopped_reading_does_not_hold_up_the_stop() {
    // 4,000 pings: the server stops reading with some unread, the writer blocked; 2,000: all written and the input
    // closed while the server, its output full, reads no more.
    for (pings, close_input) in [(4000, false), (2000, true)] {
        let mut server = RawServer::spawn_not_reading(SERVER, Some(ALL), &[]);
        let mut input = Vec::new();
        input.extend_from_slice(
            br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        );
        input.extend_from_slice(
            b"\n{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n",
        );
        for id in 1..=pings {
            input.extend_from_slice(
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#).as_bytes(),
            );
            input.push(b'\n');
        }
        let mut stdin = server.take_stdin();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
            if !close_input {
                // Held open until the server has exited.
                std::thread::sleep(Duration::from_secs(10));
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        let status = std::process::Command::new("kill")
            .args(["-TERM", &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exited = server.wait_within(Duration::from_secs(2));
        assert!(
            exited.is_some(),
            "not stopped within 2 s of SIGTERM (input closed: {close_input})"
        );
        let audit = server.audit();
        assert_eq!(
            audit.last().unwrap()["event"],
            "server_stop",
            "input closed: {close_input}: {audit:?}"
        );
        drop(writer);
    }
}

#[test]
fn the_callers_trace_from_meta_is_in_the_calls_records() {
    let mut server = server(&[]);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut call = RawServer::call_message(1, "store", json!({"name": "k", "secret": "s"}));
    call["params"]["_meta"] = json!({ "traceparent": traceparent });
    let answer = server.request(call);
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    // Not a valid traceparent (upper-case hex): ignored, not an error.
    let mut call = RawServer::call_message(2, "echo", json!({"text": "x"}));
    call["params"]["_meta"] =
        json!({ "traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01" });
    let answer = server.request(call);
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let (_, audit, _) = server.finish();
    let started = events(&audit, "call_started");
    assert_eq!(started[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(started[0]["parent_span_id"], "00f067aa0ba902b7");
    let calls = tool_calls(&audit);
    assert_eq!(calls[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(calls[0]["parent_span_id"], "00f067aa0ba902b7");
    assert!(calls[1].get("trace_id").is_none(), "{}", calls[1]);
}
