//! Interoperability with third-party MCP clients: the official Python SDK, the TypeScript SDKs v1 and v2, and the
//! MCP Inspector's CLI each drive the real `secure-file-server` binary over stdio; and the official MCP
//! conformance suite runs its server scenarios against it over streamable HTTP (`mcp_conformance_suite_over_http`).
//!
//! Each test runs one client script under `interop/` (see its header for what it checks): list the tools, read
//! `greeting.txt`, write a file and find it on disk, be refused `write_file` under `MCP_SCOPES=files.read` as an
//! `isError` tool result naming `missing_scope:files.write`, and find exactly one `tool_call` audit record per
//! call made. The clients are installed by `interop/install.sh`, run once per test process: it does nothing when
//! `.interop/ready` matches the pin files, and otherwise installs from PyPI and npm (tests running in parallel
//! wait for one another on its lock).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use secure_tools_tests::interop::{CONFORMANCE_SUITE, NODE22, PYTHON, install, repo_root, run};

const SERVER: &str = env!("CARGO_BIN_EXE_secure-file-server");
/// A client script's limit; each one normally takes a few seconds at most.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs a client script against the server binary; fails the test with its output unless it exits 0.
fn client(program: &str, args: &[&str]) {
    install();
    let root = repo_root();
    let started = Instant::now();
    let done = run(
        Command::new(root.join(program))
            .args(args)
            .arg(SERVER)
            .env("SECURE_FILE_SERVER", SERVER)
            .current_dir(&root),
        SCRIPT_TIMEOUT,
    );
    let took = started.elapsed();
    assert!(
        done.success,
        "{program} {} failed ({}) after {took:.1?}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        done.status,
        done.stdout,
        done.stderr
    );
    println!("{}(took {took:.1?})", done.stdout);
}

#[test]
fn python_sdk_client_session_with_the_initialize_handshake() {
    client(PYTHON, &["interop/python_sdk.py", "session"]);
}

#[test]
fn python_sdk_client_in_auto_mode_discovers_the_stateless_revision() {
    client(PYTHON, &["interop/python_sdk.py", "client-auto"]);
}

#[test]
fn typescript_sdk_v1_client_over_stdio() {
    client(NODE22, &["interop/node/ts-sdk-v1.mjs"]);
}

#[test]
fn typescript_sdk_v2_client_in_legacy_mode() {
    client(NODE22, &["interop/node/ts-sdk-v2.mjs", "legacy"]);
}

#[test]
fn typescript_sdk_v2_client_in_auto_mode_discovers_the_stateless_revision() {
    client(NODE22, &["interop/node/ts-sdk-v2.mjs", "auto"]);
}

#[test]
fn mcp_inspector_cli() {
    client(NODE22, &["interop/node/inspector.mjs"]);
}

/// The server scenarios of the MCP conformance suite (`@modelcontextprotocol/conformance`) that apply to the
/// file server: each must pass.
const CONFORMANCE_PASSING: &[&str] = &[
    "server-initialize",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
];

/// The official MCP conformance suite's server scenarios against the file server over streamable HTTP. The suite
/// cannot send a bearer token, so the server runs with the test-only `--http-insecure-no-auth` on loopback. The
/// suite's whole active set runs with `interop/conformance-baseline.yml` as its expected failures, so it exits 0
/// only if exactly the scenarios listed there (ones that do not apply: the suite's fixture tools, prompts,
/// resources, logging, completions, SSE sessions) fail; the ones that apply must each pass all their checks.
#[test]
fn mcp_conformance_suite_over_http() {
    install();
    let root = repo_root();
    let data = tempfile::tempdir().expect("a data root");
    let output = tempfile::tempdir().expect("an output dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut server = Command::new(SERVER)
        .args(["--data-root"])
        .arg(data.path())
        .args(["--http", &address, "--http-insecure-no-auth"])
        .args(["--scopes", "files.read files.write"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the server");
    let ready = Instant::now();
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(20),
            "the server did not listen on {address}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let done = run(
        Command::new(root.join(NODE22))
            .arg(CONFORMANCE_SUITE)
            .args(["server", "--url", &format!("http://{address}/mcp")])
            .args(["--expected-failures", "interop/conformance-baseline.yml"])
            .arg("--output-dir")
            .arg(output.path())
            .current_dir(&root),
        Duration::from_secs(120),
    );
    let _ = server.kill();
    let _ = server.wait();
    let took = started.elapsed();
    let report = format!(
        "the conformance suite ({}) after {took:.1?}\n--- stdout\n{}\n--- stderr\n{}",
        done.status, done.stdout, done.stderr
    );
    assert!(done.success, "failed: {report}");
    for scenario in CONFORMANCE_PASSING {
        let line = format!("✓ {scenario}: ");
        let passed = done
            .stdout
            .lines()
            .find(|l| l.starts_with(&line))
            .unwrap_or_else(|| panic!("no result for {scenario}: {report}"));
        assert!(
            passed.ends_with(" 0 failed") && !passed.contains(": 0 passed"),
            "{scenario}: {passed}\n{report}"
        );
    }
    println!("conformance suite passed (took {took:.1?})");
}
