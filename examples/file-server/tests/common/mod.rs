//! Helpers shared by the HTTP test files.

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Reads the server's standard error until a line contains `marker` (the runner's "serving ..." line), passing
/// every line read to `check`; then keeps draining it on a thread so the server never blocks on a full pipe.
#[allow(dead_code)]
pub fn wait_until_listening(child: &mut Child, marker: &str, check: impl Fn(&str)) {
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        check(&line);
        if line.contains(marker) {
            break;
        }
    }
    std::thread::spawn(move || for _ in stderr.lines() {});
}

/// A loopback port free now (the listener that found it is closed again), for a server started next.
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The file server over HTTP on the loopback `port`, with bearer tokens (an HS256 `secret`, tokens from
/// `issuer`), serving `data` and auditing to `audit_log`, its standard error piped for
/// [`wait_until_listening`]: the command, to add to and spawn, and the MCP endpoint's URL.
#[allow(dead_code)]
pub fn bearer_http_server(
    server: &str,
    data: &std::path::Path,
    audit_log: &std::path::Path,
    port: u16,
    issuer: &str,
    secret: &str,
) -> (std::process::Command, String) {
    use std::process::Stdio;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut command = std::process::Command::new(server);
    command
        .arg("--data-root")
        .arg(data)
        .arg("--audit-log")
        .arg(audit_log)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .args(["--issuer", issuer, "--resource-url", &url])
        .env("MCP_AUTH_HS256_SECRET", secret)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    (command, url)
}
