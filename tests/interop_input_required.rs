//! The official SDK clients answering a secure tool's questions under the stateless revision 2026-07-28, which they
//! use by default: the server may not send them requests, so a question (an elicitation form, a sampling request)
//! comes back in an `input_required` result, and the client calls again with its answer (SEP-2322's multi-round-trip
//! requests). The Python SDK (`mcp.Client` in `auto` mode, with its `elicitation_callback` and `sampling_callback`)
//! and the TypeScript SDK v2 (`Client` in `auto` mode, its handlers set with `setRequestHandler`) each call the test
//! server's `confirm`, `confirm_twice` and `summarize`, over stdio and over streamable HTTP, answer through their own
//! callbacks, and must get the answers back in the final results (`confirm_twice`'s first answer carried only by the
//! `requestState` the client echoes); the audit must show one `tool_call` record per round, `input_required` then
//! `ok`, and none holding the name answered (see each script's header: `interop/python_input_required.py`,
//! `interop/node/ts-sdk-v2-input-required.mjs`). The clients are installed by `interop/install.sh`, run once per
//! test process (a no-op when `.interop/ready` matches the pin files).

use std::process::Command;
use std::time::{Duration, Instant};

use secure_tools_tests::interop::{NODE22, PYTHON, install, repo_root, run};
use secure_tools_tests::{HttpTestServer, events, read_audit};

const SERVER: &str = env!("CARGO_BIN_EXE_test-server");
/// A client script's limit; each one normally takes a second or two.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
const PYTHON_SCRIPT: &str = "interop/python_input_required.py";
const TS_V2_SCRIPT: &str = "interop/node/ts-sdk-v2-input-required.mjs";

/// Runs `script` with `program`; fails the test with its output unless it exits 0 within [`SCRIPT_TIMEOUT`].
fn script(program: &str, script: &str, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) {
    install();
    let root = repo_root();
    let started = Instant::now();
    let done = run(
        Command::new(root.join(program))
            .arg(script)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(&root),
        SCRIPT_TIMEOUT,
    );
    let took = started.elapsed();
    assert!(
        done.success,
        "{script} {} failed {}",
        args.join(" "),
        done.report(took)
    );
    println!("{}(took {took:.1?})", done.stdout);
}

/// The script starts the test server itself, over stdio.
fn over_stdio(program: &str, path: &str) {
    script(program, path, &[SERVER], &[]);
}

/// The test starts the test server over streamable HTTP and tells the script where it is, its audit log and its
/// standard error; no request may have been refused at the HTTP layer.
fn over_http(program: &str, path: &str) {
    let server = HttpTestServer::start(SERVER, &[]);
    script(
        program,
        path,
        &["http"],
        &[
            ("TEST_SERVER_URL", server.url.as_ref()),
            ("TEST_SERVER_AUDIT_LOG", server.audit.as_ref()),
            ("TEST_SERVER_STDERR", server.stderr.as_ref()),
        ],
    );
    let audit = read_audit(&server.audit);
    let rejected = events(&audit, "http_rejected");
    assert!(
        rejected.is_empty(),
        "the client sent requests the server refused: {rejected:#?}"
    );
}

#[test]
fn python_sdk_client_answers_a_secure_tools_questions_in_input_required_rounds_over_stdio() {
    over_stdio(PYTHON, PYTHON_SCRIPT);
}

#[test]
fn python_sdk_client_answers_a_secure_tools_questions_in_input_required_rounds_over_http() {
    over_http(PYTHON, PYTHON_SCRIPT);
}

#[test]
fn typescript_sdk_v2_client_answers_a_secure_tools_questions_in_input_required_rounds_over_stdio() {
    over_stdio(NODE22, TS_V2_SCRIPT);
}

#[test]
fn typescript_sdk_v2_client_answers_a_secure_tools_questions_in_input_required_rounds_over_http() {
    over_http(NODE22, TS_V2_SCRIPT);
}
