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
/// `issuer`), serving an empty data root in a temporary directory and auditing to `audit.jsonl` beside it (outside
/// the root, as the server requires), its standard error piped for [`wait_until_listening`]: the command to add to
/// and spawn, with the MCP endpoint's URL and the paths.
#[allow(dead_code)]
pub struct BearerHttp {
    pub command: std::process::Command,
    pub url: String,
    pub data: std::path::PathBuf,
    pub audit_log: std::path::PathBuf,
    pub dir: tempfile::TempDir,
}

impl BearerHttp {
    #[allow(dead_code)]
    pub fn new(server: &str, port: u16, issuer: &str, secret: &str) -> BearerHttp {
        use std::process::Stdio;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("the data root");
        let audit_log = dir.path().join("audit.jsonl");
        let url = format!("http://127.0.0.1:{port}/mcp");
        let mut command = std::process::Command::new(server);
        command
            .arg("--data-root")
            .arg(&data)
            .arg("--audit-log")
            .arg(&audit_log)
            .args(["--http", &format!("127.0.0.1:{port}")])
            .args(["--issuer", issuer, "--resource-url", &url])
            .env("MCP_AUTH_HS256_SECRET", secret)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        BearerHttp {
            command,
            url,
            data,
            audit_log,
            dir,
        }
    }
}
