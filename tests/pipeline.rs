//! The call pipeline end to end, in process: authorize -> deserialize -> validate -> run -> shape -> audit.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use secure_tools::audit::{AuditError, AuditRecord};
use secure_tools::{
    AuditSink, CallContext, CallError, CallResponse, Caller, JsonLinesSink, MemorySink, Outcome,
    RequestId, State, ToolError, ToolOutput, ToolSet, secure_tool,
};
use secure_tools_tests::{caller, request};
use serde_json::{Value, json};

/// Shared state of the test tools: counts handler runs, so a test can tell whether a handler ran.
#[derive(Clone, Default)]
struct Runs(Arc<AtomicUsize>);

impl Runs {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(serde::Serialize, schemars::JsonSchema)]
struct Written {
    name: String,
    bytes: usize,
}

/// Write a note.
#[secure_tool(scope = "files.write", audit_redact = ["content"])]
async fn write_note(
    /// File name.
    #[validate(length(min = 1, max = 16))]
    filename: String,
    /// The note.
    #[validate(length(max = 64))]
    content: String,
    State(runs): State<Runs>,
) -> Result<Written, ToolError> {
    runs.0.fetch_add(1, Ordering::SeqCst);
    match filename.as_str() {
        "missing.txt" => Err(ToolError::new("not_found", "no such file")),
        "broken.txt" => {
            Err(io::Error::other("open /srv/secret/data/broken.txt: permission denied").into())
        }
        "panic.txt" => panic!("boom with {content}"),
        _ => Ok(Written {
            name: filename,
            bytes: content.len(),
        }),
    }
}

/// Needs two scopes.
#[secure_tool(scope = ["admin.read", "admin.write"])]
async fn admin(State(runs): State<Runs>) -> Result<String, ToolError> {
    runs.0.fetch_add(1, Ordering::SeqCst);
    Ok("done".into())
}

/// Reports what the handler was given besides its arguments.
#[secure_tool(scope = "whoami")]
async fn whoami(who: Caller, id: RequestId, cx: CallContext) -> Result<String, ToolError> {
    tracing::info!(inside = true, "handler log line");
    Ok(format!("{}|{}|{}|{}", who.id(), who.grant(), id, cx.tool()))
}

fn tools(sink: impl AuditSink) -> (ToolSet<Runs>, Runs) {
    let runs = Runs::default();
    let set = ToolSet::builder(runs.clone())
        .tool::<write_note>()
        .tool::<admin>()
        .tool::<whoami>()
        .server_id("test-server")
        .audit_sink(sink)
        .build()
        .expect("tools register");
    (set, runs)
}

/// Calls a known tool through the pipeline.
async fn call(
    set: &ToolSet<Runs>,
    caller: &Caller,
    id: i64,
    tool: &str,
    args: Value,
) -> CallResponse {
    set.call(request(caller, id, tool, args))
        .await
        .expect("known tool")
}

/// The `tool_call` records, one per call (tools not marked `read_only` also get a `call_started` record each).
fn tool_calls(sink: &MemorySink) -> Vec<Value> {
    sink.records()
        .into_iter()
        .filter(|r| r["event"] == "tool_call")
        .collect()
}

fn writer() -> Caller {
    caller("alice", "files.write")
}

async fn code_of(set: &ToolSet<Runs>, caller: &Caller, tool: &str, args: Value) -> Option<String> {
    let response = set
        .call(request(caller, 1, tool, args))
        .await
        .expect("known tool");
    response.error_code().map(str::to_owned)
}

#[tokio::test]
async fn allowed_call_returns_structured_output_and_one_full_audit_record() {
    let sink = MemorySink::new();
    let (set, runs) = tools(sink.clone());
    let response = call(
        &set,
        &writer(),
        7,
        "write_note",
        json!({"filename": "a.txt", "content": "hello"}),
    )
    .await;
    assert_eq!(response.outcome(), Outcome::Ok);
    assert_eq!(
        response.result().unwrap(),
        &ToolOutput::Structured {
            value: json!({"name": "a.txt", "bytes": 5}),
            text: None
        }
    );
    assert_eq!(runs.count(), 1);

    let records = sink.records();
    assert_eq!(
        records.len(),
        2,
        "call_started, then tool_call: {records:?}"
    );
    assert_eq!(records[0]["event"], "call_started");
    assert_eq!(records[0]["call_id"], records[1]["call_id"]);
    assert_eq!(records[0]["inputs"], records[1]["inputs"]);
    let record = &records[1];
    let call_id = record["call_id"].as_str().unwrap();
    assert_eq!(call_id, response.call_id().to_string());
    assert!(
        call_id.len() == 32 && call_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{call_id}"
    );
    let ts = record["ts"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.len() == "2026-01-01T00:00:00.000000Z".len(),
        "{ts}"
    );
    assert_eq!(record["server_id"], "test-server");
    assert_eq!(record["event"], "tool_call");
    assert_eq!(record["request_id"], 7);
    assert_eq!(record["tool"], "write_note");
    assert_eq!(record["scopes"], json!(["files.write"]));
    assert_eq!(record["caller"], "alice");
    assert_eq!(record["outcome"], "ok");
    assert_eq!(record["ok"], true);
    assert_eq!(
        record["inputs"],
        json!({"filename": "a.txt", "content": {"redacted": true, "bytes": 5}})
    );
    assert!(record.get("error").is_none());
    assert!(record["duration_us"].is_u64());

    let result = response.into_call_tool_result();
    assert_eq!(result.is_error, Some(false));
    assert_eq!(
        result.structured_content,
        Some(json!({"name": "a.txt", "bytes": 5}))
    );
}

#[tokio::test]
async fn missing_scope_is_denied_before_anything_else_and_says_which() {
    let sink = MemorySink::new();
    let (set, runs) = tools(sink.clone());
    for grant in ["", "files.read", "files", "files.writer", "files.write.all"] {
        let reader = caller("bob", grant);
        // Invalid input too: authorization comes first, so the caller learns nothing about input rules.
        let args = json!({"filename": "", "content": 5, "extra": true});
        let response = set
            .call(request(&reader, 1, "write_note", args))
            .await
            .unwrap();
        assert_eq!(response.outcome(), Outcome::Denied, "grant {grant:?}");
        assert_eq!(response.error_code(), Some("missing_scope:files.write"));
        let result = response.into_call_tool_result();
        assert_eq!(result.is_error, Some(true));
        let text = serde_json::to_value(&result.content).unwrap().to_string();
        assert!(text.contains("missing_scope:files.write"), "{text}");
    }
    assert_eq!(runs.count(), 0, "a denied handler never runs");
    let records = sink.records();
    assert_eq!(records.len(), 5);
    assert!(
        records
            .iter()
            .all(|r| r["outcome"] == "denied" && r["ok"] == false)
    );
    assert!(
        records
            .iter()
            .all(|r| r["error"] == "missing_scope:files.write")
    );
}

#[tokio::test]
async fn every_required_scope_must_be_held() {
    let (set, runs) = tools(MemorySink::new());
    let only_read = caller("c", "admin.read");
    assert_eq!(
        code_of(&set, &only_read, "admin", json!({}))
            .await
            .as_deref(),
        Some("missing_scope:admin.write")
    );
    let only_write = caller("c", "admin.write");
    assert_eq!(
        code_of(&set, &only_write, "admin", json!({}))
            .await
            .as_deref(),
        Some("missing_scope:admin.read")
    );
    assert_eq!(runs.count(), 0);
    let both = caller("c", "admin.write admin.read");
    assert_eq!(code_of(&set, &both, "admin", Value::Null).await, None);
    assert_eq!(runs.count(), 1);
}

#[tokio::test]
async fn malformed_arguments_are_refused_with_the_field_named() {
    let sink = MemorySink::new();
    let (set, runs) = tools(sink.clone());
    let cases = [
        (json!({"filename": "a.txt"}), "content"),
        (json!({"filename": 3, "content": "x"}), "filename"),
        (
            json!({"filename": "a.txt", "content": "x", "mode": "append"}),
            "mode",
        ),
        (Value::Null, "filename"),
    ];
    for (args, named) in cases {
        let response = set
            .call(request(&writer(), 1, "write_note", args.clone()))
            .await
            .unwrap();
        assert_eq!(response.outcome(), Outcome::Invalid, "{args}");
        let err = response.result().unwrap_err();
        assert_eq!(err.code(), "malformed_arguments", "{args}");
        assert!(err.message().contains(named), "{args}: {}", err.message());
    }
    assert_eq!(runs.count(), 0);
    assert!(
        sink.records()
            .iter()
            .all(|r| r["outcome"] == "invalid" && r["error"] == "malformed_arguments")
    );
}

#[tokio::test]
async fn failed_validation_names_the_rule_but_never_the_value() {
    let sink = MemorySink::new();
    let (set, runs) = tools(sink.clone());
    let secret = "S3CRET-".repeat(20);
    let response = call(
        &set,
        &writer(),
        1,
        "write_note",
        json!({"filename": "a.txt", "content": secret}),
    )
    .await;
    assert_eq!(response.outcome(), Outcome::Invalid);
    let err = response.result().unwrap_err();
    assert_eq!(err.code(), "invalid_input");
    assert!(err.message().contains("`content`"), "{}", err.message());
    assert!(err.message().contains("64"), "{}", err.message());
    assert!(!err.message().contains("S3CRET"), "{}", err.message());
    assert_eq!(runs.count(), 0);

    // A redacted argument of the wrong type: serde would quote it; the message must not.
    let response = call(
        &set,
        &writer(),
        2,
        "write_note",
        json!({"filename": "a.txt", "content": 424242}),
    )
    .await;
    let err = response.result().unwrap_err();
    assert_eq!(err.code(), "malformed_arguments");
    assert!(!err.message().contains("424242"), "{}", err.message());

    let log = serde_json::to_string(&sink.records()).unwrap();
    assert!(!log.contains("S3CRET") && !log.contains("424242"), "{log}");
}

#[tokio::test]
async fn handler_errors_keep_their_code_and_hide_internal_detail() {
    let sink = MemorySink::new();
    let (set, _) = tools(sink.clone());
    let response = call(
        &set,
        &writer(),
        1,
        "write_note",
        json!({"filename": "missing.txt", "content": ""}),
    )
    .await;
    assert_eq!(response.outcome(), Outcome::Error);
    assert_eq!(response.error_code(), Some("not_found"));

    let response = call(
        &set,
        &writer(),
        2,
        "write_note",
        json!({"filename": "broken.txt", "content": ""}),
    )
    .await;
    assert_eq!(response.outcome(), Outcome::Error);
    let err = response.result().unwrap_err();
    assert_eq!(err.code(), "internal_error");
    let shown = serde_json::to_string(&response.into_call_tool_result()).unwrap();
    assert!(
        !shown.contains("/srv/secret") && !shown.contains("permission denied"),
        "{shown}"
    );

    let outcomes: Vec<_> = tool_calls(&sink)
        .iter()
        .map(|r| r["error"].clone())
        .collect();
    assert_eq!(outcomes, [json!("not_found"), json!("internal_error")]);
}

#[tokio::test]
async fn a_panicking_handler_fails_cleanly_is_audited_and_the_next_call_works() {
    let sink = MemorySink::new();
    let (set, _) = tools(sink.clone());
    let response = call(
        &set,
        &writer(),
        1,
        "write_note",
        json!({"filename": "panic.txt", "content": "pw"}),
    )
    .await;
    assert_eq!(response.outcome(), Outcome::Panic);
    assert_eq!(response.error_code(), Some("tool_panicked"));
    let shown = serde_json::to_string(&response.into_call_tool_result()).unwrap();
    assert!(!shown.contains("boom"), "{shown}");

    let response = call(
        &set,
        &writer(),
        2,
        "write_note",
        json!({"filename": "ok.txt", "content": "x"}),
    )
    .await;
    assert_eq!(response.outcome(), Outcome::Ok);
    let outcomes: Vec<_> = tool_calls(&sink)
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("panic"), json!("ok")]);
}

#[tokio::test]
async fn unknown_tools_are_protocol_errors_and_still_audited() {
    let sink = MemorySink::new();
    let (set, _) = tools(sink.clone());
    let err = set
        .call(request(&writer(), 9, "rm_rf", json!({"path": "/"})))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::UnknownTool(ref name) if name == "rm_rf"));
    let records = sink.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["tool"], "rm_rf");
    assert_eq!(records[0]["outcome"], "invalid");
    assert_eq!(records[0]["error"], "unknown_tool");
}

#[tokio::test]
async fn handlers_receive_caller_request_id_and_context() {
    let (set, _) = tools(MemorySink::new());
    let who = caller("carol", "whoami files.read");
    let response = call(&set, &who, 42, "whoami", json!({})).await;
    assert_eq!(
        response.result().unwrap(),
        &ToolOutput::Text("carol|files.read whoami|42|whoami".into())
    );
}

/// A sink that fails while `broken` is set.
#[derive(Clone, Default)]
struct Flaky {
    broken: Arc<std::sync::atomic::AtomicBool>,
    written: Arc<AtomicUsize>,
}

impl AuditSink for Flaky {
    fn write(&self, _: &AuditRecord) -> Result<(), AuditError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(io::Error::other("disk full").into());
        }
        self.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn when_the_audit_cannot_be_written_calls_fail_closed() {
    let sink = Flaky::default();
    let (set, runs) = tools(sink.clone());
    let args = || json!({"filename": "a.txt", "content": "x"});
    sink.broken.store(true, Ordering::SeqCst);

    // The first call's `call_started` record cannot be written, so its handler does not run: no effect without a
    // record.
    let response = set
        .call(request(&writer(), 1, "write_note", args()))
        .await
        .unwrap();
    assert_eq!(response.error_code(), Some("audit_unavailable"));
    assert_eq!(runs.count(), 0);
    // Once the trail is known to fail, calls are refused before anything else.
    let response = set
        .call(request(&writer(), 2, "write_note", args()))
        .await
        .unwrap();
    assert_eq!(response.error_code(), Some("audit_unavailable"));
    assert_eq!(runs.count(), 0);

    // The sink recovers: the refusal is written, and the call after it runs.
    sink.broken.store(false, Ordering::SeqCst);
    let response = set
        .call(request(&writer(), 3, "write_note", args()))
        .await
        .unwrap();
    assert_eq!(response.error_code(), Some("audit_unavailable"));
    let response = set
        .call(request(&writer(), 4, "write_note", args()))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Ok);
    assert_eq!(runs.count(), 1);
    // Call 3's `tool_call`, then call 4's `call_started` and `tool_call`.
    assert_eq!(sink.written.load(Ordering::SeqCst), 3);
}

/// A `Write` into shared memory, to read back what a `JsonLinesSink` wrote.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn json_lines_hold_one_record_per_call_whatever_the_input() {
    let buf = SharedBuf::default();
    let (set, _) = tools(JsonLinesSink::new(buf.clone()));
    let forged = "x\n{\"event\":\"tool_call\",\"outcome\":\"ok\"}\r\n\u{1b}[2J\u{0}\u{2028}";
    let secret = "hunter2-hunter2";
    let calls = [
        (
            writer(),
            "write_note",
            json!({"filename": forged, "content": secret}),
        ),
        (
            writer(),
            "write_note",
            json!({"filename": "a.txt", "content": secret}),
        ),
        (
            caller("eve", "files.read"),
            "write_note",
            json!({"filename": "a.txt", "content": secret}),
        ),
        (
            writer(),
            "write_note",
            json!({"filename": "a.txt", "content": secret.repeat(9)}),
        ),
        (
            writer(),
            "write_note",
            json!({"filename": "panic.txt", "content": secret}),
        ),
        (writer(), forged, json!({"content": secret})),
        (
            caller(forged, "whoami"),
            "whoami",
            json!({ forged: forged }),
        ),
        (
            writer(),
            "write_note",
            json!({"filename": "x".repeat(100_000), "content": ""}),
        ),
    ];
    let n = calls.len();
    for (i, (who, tool, args)) in calls.into_iter().enumerate() {
        let _ = set.call(request(&who, i as i64, tool, args)).await;
    }
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    let all: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    // The two calls whose handler ran (`ok`, `panic`) have a `call_started` record before their `tool_call`.
    let started = all.iter().filter(|r| r["event"] == "call_started").count();
    assert_eq!(started, 2, "{text}");
    let records: Vec<Value> = all
        .into_iter()
        .filter(|r| r["event"] == "tool_call")
        .collect();
    assert_eq!(records.len(), n, "{text}");
    let ids: Vec<_> = records
        .iter()
        .map(|r| r["request_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (0..n as i64).collect::<Vec<_>>());
    assert_eq!(
        records[0]["inputs"]["filename"], forged,
        "the hostile string survives intact, inside its field"
    );
    assert!(
        !text.contains(secret),
        "a redacted value reached the audit log"
    );
    assert!(
        lines.iter().all(|l| l.len() < 8 * 1024),
        "long strings are shortened"
    );
    let outcomes: Vec<_> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    // The forged file name is too long for `write_note`, so its call is invalid; it is audited all the same.
    assert_eq!(
        outcomes,
        [
            "invalid", "ok", "denied", "invalid", "panic", "invalid", "invalid", "invalid"
        ]
    );
}

#[tokio::test]
async fn strict_argument_text_refuses_duplicate_keys() {
    let err = secure_tools::strict_json::parse_arguments(
        r#"{"filename":"a.txt","filename":"../etc/passwd"}"#,
    )
    .unwrap_err();
    assert_eq!(err.code(), "malformed_arguments");
}

#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LoginArgs {
    user_name: String,
    pass_word: String,
}

/// Logs in; its struct renames the field that `audit_redact` names.
#[secure_tool(scope = "auth.login", audit_redact = ["pass_word"])]
async fn login(
    secure_tools::Args(args): secure_tools::Args<LoginArgs>,
) -> Result<String, ToolError> {
    Ok(format!("{}:{}", args.user_name, args.pass_word.len()))
}

#[test]
fn a_redaction_that_matches_no_schema_argument_does_not_build() {
    let err = ToolSet::builder(()).tool::<login>().build().unwrap_err();
    assert!(
        matches!(err, secure_tools::DefinitionError::UnknownRedaction { ref name, .. } if name == "pass_word"),
        "{err}"
    );
}

fn server_key() -> String {
    "sk-live-from-the-environment".to_owned()
}

/// Counts.
#[secure_tool(scope = "svc.read", read_only)]
async fn count(
    /// A size.
    size: usize,
    /// A big one.
    big: u128,
    /// A signed one.
    signed: i128,
) -> String {
    format!("{size} {big} {signed}")
}

/// Review finding: `usize`, `isize`, `u128` and `i128` (schemars' `uint`, `int`, `uint128`, `int128`) got no range,
/// so a client following the schema could send 18446744073709551616 for a `u128`, which decoding refuses (serde_json
/// reads it as a float).
#[tokio::test]
async fn the_other_integer_types_give_the_range_that_decodes() {
    let set = ToolSet::builder(()).tool::<count>().build().unwrap();
    let schema = set.definition("count").unwrap().input_schema();
    let properties = &schema["properties"];
    assert_eq!(properties["size"]["maximum"], u64::MAX, "{properties}");
    assert_eq!(properties["big"]["maximum"], u64::MAX, "{properties}");
    assert_eq!(properties["signed"]["minimum"], i64::MIN, "{properties}");
    let reader = caller("ops", "svc.read");
    let at_the_top = json!({"size": 1, "big": u64::MAX, "signed": i64::MIN});
    let response = set
        .call(request(&reader, 1, "count", at_the_top))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Ok);
}

/// Connects with a key (its default the server's own).
#[secure_tool(scope = "svc.connect", read_only, audit_redact = ["api_key"])]
async fn connect(
    /// The key; the server's own when left out.
    #[serde(default = "server_key")]
    api_key: String,
    /// How many retries.
    #[serde(default)]
    retries: u8,
) -> Result<String, ToolError> {
    Ok(format!("{} {retries}", api_key.len()))
}

/// An integer's schema gives its type's range, which decoding enforces: a `u32` had a `minimum` of 0 and no
/// `maximum`, so a client following the schema could send 5000000000 and be refused.
#[test]
fn an_integers_schema_gives_its_types_range() {
    let set = ToolSet::builder(()).tool::<connect>().build().unwrap();
    let schema = set.definition("connect").unwrap().input_schema();
    let retries = &schema["properties"]["retries"];
    assert_eq!(retries["minimum"], 0, "{retries}");
    assert_eq!(retries["maximum"], 255, "{retries}");
}

/// An audio format, whose own field is named `format` as a schema's keyword is.
#[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug)]
#[serde(deny_unknown_fields)]
struct Sample {
    format: String,
    rate: u32,
}

fn cd_quality() -> Sample {
    Sample {
        format: "int16".into(),
        rate: 44_100,
    }
}

/// Plays at a sample format.
#[secure_tool(scope = "svc.read", read_only)]
async fn play(
    /// The format; CD quality unless given.
    #[serde(default = "cd_quality")]
    sample: Sample,
) -> String {
    format!("{sample:?}")
}

/// Red-team finding: the integer ranges were written into values that are data (a `default` object with a field
/// `format: "int16"` got `minimum` and `maximum`), so the default published was not the default, and sending it
/// back was refused. Only subschemas get a range.
#[tokio::test]
async fn integer_ranges_are_not_written_into_a_default() {
    let set = ToolSet::builder(()).tool::<play>().build().unwrap();
    let schema = set.definition("play").unwrap().input_schema();
    let default = schema["properties"]["sample"]["default"].clone();
    assert_eq!(
        default,
        json!({"format": "int16", "rate": 44_100}),
        "{schema:?}"
    );
    let rate = &schema["$defs"]["Sample"]["properties"]["rate"];
    assert_eq!(rate["maximum"], u32::MAX, "{schema:?}");
    let response = set
        .call(request(
            &caller("ops", "svc.read"),
            1,
            "play",
            json!({"sample": default}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Ok, "{:?}", response.refusal());
}

/// Scales by a ratio.
#[secure_tool(scope = "svc.scale", read_only)]
async fn scale(
    /// Above zero, at most one.
    #[validate(range(exclusive_min = 0.0, max = 1.0))]
    ratio: f64,
    /// Fewer than ten.
    #[validate(range(exclusive_max = 10))]
    steps: u8,
) -> String {
    format!("{ratio} {steps}")
}

/// An exclusive bound was checked but left out of the schema, so a client following it sent `0.0` and was refused;
/// the schema now says `exclusiveMinimum`/`exclusiveMaximum`, and the refusal says what the bound is.
#[tokio::test]
async fn an_exclusive_range_is_in_the_schema_and_in_the_message() {
    let set = ToolSet::builder(()).tool::<scale>().build().unwrap();
    let schema = set.definition("scale").unwrap().input_schema();
    let ratio = &schema["properties"]["ratio"];
    assert_eq!(ratio["exclusiveMinimum"], 0.0, "{ratio}");
    assert_eq!(ratio["maximum"], 1.0, "{ratio}");
    let steps = &schema["properties"]["steps"];
    assert_eq!(steps["exclusiveMaximum"], 10, "{steps}");

    let scaler = caller("ops", "svc.scale");
    for (args, message) in [
        (
            json!({"ratio": 0.0, "steps": 1}),
            "`ratio`: must be greater than 0.0 and at most 1.0",
        ),
        (
            json!({"ratio": 0.5, "steps": 10}),
            "`steps`: must be less than 10",
        ),
    ] {
        let response = set
            .call(request(&scaler, 1, "scale", args.clone()))
            .await
            .unwrap();
        assert_eq!(response.outcome(), Outcome::Invalid, "{args}");
        assert_eq!(response.refusal().unwrap().message(), message, "{args}");
    }
}

/// JSON Schema's `integer` allows a number written with a zero fraction (`9.0`, `1e1`); decoding refused it as
/// "invalid type: floating point", so a client the schema allowed was refused. A fraction is still refused.
#[tokio::test]
async fn a_whole_float_is_taken_for_an_integer_argument() {
    let set = ToolSet::builder(()).tool::<scale>().build().unwrap();
    let scaler = caller("ops", "svc.scale");
    for (steps, expected) in [
        (json!(9.0), Some("0.5 9")),
        (json!(5e0), Some("0.5 5")),
        (json!(9.5), None),
    ] {
        let args = json!({"ratio": 0.5, "steps": steps});
        let response = set
            .call(request(&scaler, 1, "scale", args.clone()))
            .await
            .unwrap();
        match expected {
            Some(text) => {
                assert_eq!(response.outcome(), Outcome::Ok, "{args}");
                let result =
                    serde_json::to_value(response.into_call_tool_result().content).unwrap();
                assert_eq!(result[0]["text"], text, "{args}");
            }
            None => {
                assert_eq!(response.outcome(), Outcome::Invalid, "{args}");
                assert_eq!(response.error_code(), Some("malformed_arguments"), "{args}");
            }
        }
    }
}

/// Credentials, the key the server's own when left out.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Credentials {
    user: String,
    #[serde(default = "server_key")]
    key: String,
    /// A field named like the keyword: still an argument's property.
    default: Option<bool>,
}

/// The same, written into the schema where it is used.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[schemars(inline)]
struct InlineCredentials {
    #[serde(default = "server_key")]
    key: String,
}

/// A key, below the credentials.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Vault {
    credentials: Credentials,
}

/// What is not secret about a connection.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct ConnectionOptions {
    #[serde(default = "default_port")]
    port: u16,
}

fn default_port() -> u16 {
    5432
}

/// Connects with credentials (their key the server's own).
#[secure_tool(scope = "svc.connect", read_only, audit_redact = ["credentials", "backup", "inline", "vault"])]
async fn connect_as(
    credentials: Credentials,
    backup: Option<Credentials>,
    inline: InlineCredentials,
    vault: Vault,
    options: ConnectionOptions,
) -> Result<String, ToolError> {
    let Credentials { user, key, default } = credentials;
    Ok(format!(
        "{user} {} {default:?} {} {} {} {}",
        key.len(),
        backup.is_some(),
        inline.key.len(),
        vault.credentials.user,
        options.port
    ))
}

/// A redacted argument's default (computed by a function, here the server's own key) was published in the schema
/// `tools/list` shows; it is left out, and an argument not redacted keeps its own. So is a default below a redacted
/// argument: in the definition its `$ref` points to (a struct), through an `Option`'s `anyOf`, written inline, or
/// one definition further down.
#[test]
fn a_redacted_arguments_default_is_not_published() {
    let set = ToolSet::builder(()).tool::<connect>().build().unwrap();
    let schema = serde_json::to_string(set.definition("connect").unwrap().input_schema()).unwrap();
    assert!(!schema.contains("sk-live"), "{schema}");
    let schema: Value = serde_json::from_str(&schema).unwrap();
    assert_eq!(schema["properties"]["retries"]["default"], 0, "{schema}");

    let set = ToolSet::builder(()).tool::<connect_as>().build().unwrap();
    let schema = set.definition("connect_as").unwrap().input_schema();
    let text = serde_json::to_string(schema).unwrap();
    assert!(!text.contains("sk-live"), "{text}");
    assert_eq!(
        schema["$defs"]["ConnectionOptions"]["properties"]["port"]["default"], 5432,
        "{text}"
    );
    let credentials = &schema["$defs"]["Credentials"]["properties"];
    assert!(credentials["default"].is_object(), "{text}");
}

/// Sets limits from a map.
#[secure_tool(scope = "svc.connect", read_only, audit_redact = ["env"])]
async fn configure(
    /// Limits by name.
    env: std::collections::BTreeMap<String, u32>,
) -> Result<String, ToolError> {
    Ok(env.len().to_string())
}

/// A decoding error below a redacted argument names the argument only: the path went on through the map's keys,
/// which are part of the secret value (`env.DB_PASSWORD=hunter2`).
#[tokio::test]
async fn a_decoding_error_inside_a_redacted_map_does_not_name_its_keys() {
    let sink = MemorySink::new();
    let set = ToolSet::builder(())
        .tool::<configure>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let response = set
        .call(request(
            &caller("ops", "svc.connect"),
            1,
            "configure",
            json!({"env": {"DB_PASSWORD=hunter2": "not a number"}}),
        ))
        .await
        .unwrap();
    let message = response.refusal().unwrap().message().to_owned();
    assert!(message.starts_with("`env`"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!sink.records()[0].to_string().contains("hunter2"));
}

#[tokio::test]
async fn undeclared_arguments_are_recorded_as_length_markers_only() {
    let sink = MemorySink::new();
    let (set, _) = tools(sink.clone());
    let args =
        json!({"filename": "a.txt", "content": "x", "Content": "hunter2", "password": "hunter3"});
    let response = set
        .call(request(&writer(), 1, "write_note", args))
        .await
        .unwrap();
    assert_eq!(response.error_code(), Some("malformed_arguments"));
    let record = &sink.records()[0];
    assert_eq!(record["inputs"]["filename"], "a.txt");
    assert_eq!(
        record["inputs"]["Content"],
        json!({"redacted": true, "bytes": 7})
    );
    assert_eq!(
        record["inputs"]["password"],
        json!({"redacted": true, "bytes": 7})
    );
}

/// Answers with rmcp's own result.
#[secure_tool(scope = "svc.read", read_only)]
async fn raw_result(fail: bool) -> Result<rmcp::model::CallToolResult, ToolError> {
    use rmcp::model::{CallToolResult, ContentBlock};
    Ok(if fail {
        CallToolResult::error(vec![ContentBlock::text("boom")])
    } else {
        CallToolResult::success(vec![ContentBlock::text("fine")])
    })
}

/// Answers with content blocks.
#[secure_tool(scope = "svc.read", read_only)]
async fn blocks() -> Vec<rmcp::model::ContentBlock> {
    vec![rmcp::model::ContentBlock::text("one")]
}

/// Review finding: rmcp's result types serialize, so the attribute wrapped them in `Json`: an error result went out
/// as the structured content of a success (`isError: false`), audited `ok`, and content blocks as JSON text. They
/// go out as they are now.
#[tokio::test]
async fn rmcps_own_result_and_content_go_out_as_they_are() {
    let sink = MemorySink::new();
    let set = ToolSet::builder(())
        .tool::<raw_result>()
        .tool::<blocks>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    assert!(
        set.definition("raw_result")
            .unwrap()
            .output_schema()
            .is_none()
    );
    let reader = caller("ops", "svc.read");
    let failed = set
        .call(request(&reader, 1, "raw_result", json!({"fail": true})))
        .await
        .unwrap();
    assert_eq!(failed.outcome(), Outcome::Error);
    let result = failed.into_call_tool_result();
    assert_eq!(result.is_error, Some(true));
    assert!(result.structured_content.is_none());
    let fine = set
        .call(request(&reader, 2, "raw_result", json!({"fail": false})))
        .await
        .unwrap()
        .into_call_tool_result();
    assert_eq!(fine.is_error, Some(false));
    let listed = set
        .call(request(&reader, 3, "blocks", json!({})))
        .await
        .unwrap()
        .into_call_tool_result();
    assert_eq!(
        serde_json::to_value(&listed.content).unwrap()[0]["text"],
        "one"
    );
    assert!(listed.structured_content.is_none());
    let outcomes: Vec<_> = sink
        .records()
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("error"), json!("ok"), json!("ok")]);
}
