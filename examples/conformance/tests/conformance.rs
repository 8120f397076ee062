//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in `interop/node`) against
//! `conformance-server` over streamable HTTP: its tool, logging and elicitation scenarios must pass against secure
//! tools, and every call it makes must leave exactly one `tool_call` audit record.
//!
//! The suite and a Node 22 binary are installed by `interop/install.sh`, run once per test process (it does nothing
//! when `.interop/ready` matches the pin files; tests running in parallel wait for one another on its lock).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secure_tools_tests::interop::{CONFORMANCE_SUITE, NODE22, install, repo_root, run};
use serde_json::Value;

const SERVER: &str = env!("CARGO_BIN_EXE_conformance-server");
/// The scenarios that do not apply to a server of tools only.
const BASELINE: &str = "interop/conformance-example-baseline.yml";
/// A run of the suite takes a few seconds.
const SUITE_TIMEOUT: Duration = Duration::from_secs(120);

/// The active scenarios that must pass, each with all its checks.
const PASSING: &[&str] = &[
    "server-initialize",
    "ping",
    "logging-set-level",
    "tools-list",
    "tools-call-simple-text",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-logging",
    "tools-call-error",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "elicitation-sep1034-defaults",
    "elicitation-sep1330-enums",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
];

/// The tools the active scenarios call, once each.
const CALLED: &[&str] = &[
    "test_simple_text",
    "test_image_content",
    "test_audio_content",
    "test_embedded_resource",
    "test_multiple_content_types",
    "test_tool_with_logging",
    "test_error_handling",
    "test_tool_with_progress",
    "test_sampling",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
];

/// The fixture tools not marked `read_only`: they act through the client, so their start is recorded first.
const NOT_READ_ONLY: &[&str] = &[
    "test_sampling",
    "test_elicitation",
    "test_elicitation_sep1034_defaults",
    "test_elicitation_sep1330_enums",
];

/// `conformance-server` on a free loopback port, its audit log in a temporary directory; killed when dropped.
struct Server {
    child: Child,
    url: String,
    audit_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let audit_log = dir.path().join("audit.jsonl");
        // Port 0: the server binds a port no other process holds and says which (a port found free here and
        // bound by the server later could be taken in between, and the suite would test another server).
        let mut child = Command::new(SERVER)
            .args(["--http", "127.0.0.1:0"])
            .arg("--audit-log")
            .arg(&audit_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the server");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let mut line = String::new();
        let url = loop {
            line.clear();
            let read = stderr.read_line(&mut line).expect("the server's stderr");
            assert!(read > 0, "the server exited before listening");
            if let Some((_, url)) = line.trim_end().split_once("serving MCP over HTTP at ") {
                break url.to_owned();
            }
        };
        // The rest of its stderr is read and dropped, so that the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Server {
            child,
            url,
            audit_log,
            _dir: dir,
        }
    }

    /// Runs the suite's `server` command against this server with `args`; fails the test unless it exits 0.
    fn suite(&self, args: &[&str]) -> String {
        install();
        let root = repo_root();
        let output = tempfile::tempdir().expect("an output directory");
        let started = Instant::now();
        let done = run(
            Command::new(root.join(NODE22))
                .arg(CONFORMANCE_SUITE)
                .args(["server", "--url", &self.url])
                .args(args)
                .arg("--output-dir")
                .arg(output.path())
                .current_dir(&root),
            SUITE_TIMEOUT,
        );
        let report = done.report(started.elapsed());
        assert!(done.success, "the conformance suite failed {report}");
        println!("conformance suite {args:?} passed {report}");
        done.stdout
    }

    /// The audit records written so far. Each is written and flushed before its call's result is sent, so once the
    /// suite has exited every call it made is on file.
    fn audit_records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit_log)
            .expect("the audit log")
            .lines()
            .map(|line| serde_json::from_str(line).expect("an audit record is JSON"))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole active suite, with `interop/conformance-example-baseline.yml` as its expected failures: it exits 0
/// only if exactly the scenarios listed there fail. Each scenario of [`PASSING`] must pass all its checks, and
/// each call the suite made must be audited exactly once.
#[test]
fn active_suite_passes_against_secure_tools() {
    let server = Server::start();
    let summary = server.suite(&["--expected-failures", BASELINE]);
    for scenario in PASSING {
        let prefix = format!("✓ {scenario}: ");
        let line = summary
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no result for {scenario} in\n{summary}"));
        assert!(
            line.ends_with(" 0 failed") && !line.contains(": 0 passed"),
            "{scenario}: {line}"
        );
    }
    assert_each_call_audited_once(&server.audit_records());
}

/// The pending scenario `json-schema-2020-12` (not in the active suite): `json_schema_2020_12_tool`'s input schema
/// keeps `$schema`, `$defs` and `additionalProperties`.
#[test]
fn json_schema_2020_12_scenario_passes() {
    let server = Server::start();
    let output = server.suite(&["--scenario", "json-schema-2020-12"]);
    assert!(
        output
            .lines()
            .any(|l| l == "Passed: 4/4, 0 failed, 0 warnings"),
        "{output}"
    );
}

/// Each tool of [`CALLED`] has exactly one `tool_call` record, and no other call was made; each `call_id` has one
/// `tool_call` record; a tool not marked `read_only` has a `call_started` record for the same call before it, and a
/// read-only tool none.
fn assert_each_call_audited_once(records: &[Value]) {
    let shown = || {
        records
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    // call_id -> (line of its call_started record, lines of its tool_call records)
    let mut calls: BTreeMap<&str, (Option<usize>, Vec<usize>)> = BTreeMap::new();
    for (line, record) in records.iter().enumerate() {
        let event = record["event"].as_str();
        if !matches!(event, Some("tool_call" | "call_started")) {
            continue;
        }
        let call_id = record["call_id"]
            .as_str()
            .unwrap_or_else(|| panic!("a record without a call_id: {record}"));
        let call = calls.entry(call_id).or_default();
        if event == Some("tool_call") {
            call.1.push(line);
        } else {
            assert!(
                call.0.replace(line).is_none(),
                "two call_started records for {call_id}:\n{}",
                shown()
            );
        }
    }
    let mut tools = Vec::new();
    for (call_id, (started, finished)) in &calls {
        let [finished] = finished[..] else {
            panic!(
                "call {call_id} has {} tool_call records:\n{}",
                finished.len(),
                shown()
            );
        };
        let tool = records[finished]["tool"].as_str().expect("a tool name");
        if NOT_READ_ONLY.contains(&tool) {
            assert!(
                started.is_some_and(|started| started < finished),
                "{tool} ({call_id}) has no call_started record before its tool_call:\n{}",
                shown()
            );
        } else {
            assert!(
                started.is_none(),
                "read-only {tool} ({call_id}) has a call_started record:\n{}",
                shown()
            );
        }
        let expected = if tool == "test_error_handling" {
            "error"
        } else {
            "ok"
        };
        assert_eq!(
            records[finished]["outcome"],
            expected,
            "{tool}:\n{}",
            shown()
        );
        tools.push(tool);
    }
    tools.sort_unstable();
    let mut expected = CALLED.to_vec();
    expected.sort_unstable();
    assert_eq!(tools, expected, "the calls audited:\n{}", shown());
}
