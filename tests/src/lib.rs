//! Helpers shared by the integration tests.

pub mod interop;

use secure_tools::{CallRequest, Caller, Grant, RequestId};
use serde_json::Value;

/// A call request from `caller` with JSON `arguments` (an object, or `null` for none).
pub fn request(caller: &Caller, id: i64, tool: &str, arguments: Value) -> CallRequest {
    let arguments = match arguments {
        Value::Null => None,
        Value::Object(map) => Some(map),
        other => panic!("arguments must be an object, not {other}"),
    };
    CallRequest::new(caller.clone(), tool, arguments).with_request_id(RequestId::Number(id))
}

/// A caller holding the scopes listed in `grant`.
pub fn caller(id: &str, grant: &str) -> Caller {
    Caller::new(id, Grant::parse(grant).expect("test grant parses"))
}

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a test waits for an answer before it calls the server hung.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A server process driven with raw bytes over its stdin and stdout. Its audit log goes to a temporary file.
pub struct RawServer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Vec<u8>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    audit_path: PathBuf,
    /// Lets the stdout reader start, for a server spawned not reading.
    start_reading: Option<mpsc::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl RawServer {
    /// Starts `binary` with `MCP_SCOPES=scopes` (unset if `None`) and the extra environment given.
    pub fn spawn(binary: &str, scopes: Option<&str>, env: &[(&str, &str)]) -> Self {
        let mut server = Self::spawn_not_reading(binary, scopes, env);
        server.start_reading();
        server
    }

    /// Like [`RawServer::spawn`], but nothing is read from the server's stdout until
    /// [`RawServer::start_reading`]: a client that does not read its answers.
    pub fn spawn_not_reading(binary: &str, scopes: Option<&str>, env: &[(&str, &str)]) -> Self {
        Self::spawn_command_not_reading(Command::new(binary), scopes, env)
    }

    /// Like [`RawServer::spawn`], for a command of your own (a shell that sets up the process, say).
    pub fn spawn_command(command: Command, scopes: Option<&str>, env: &[(&str, &str)]) -> Self {
        let mut server = Self::spawn_command_not_reading(command, scopes, env);
        server.start_reading();
        server
    }

    fn spawn_command_not_reading(
        mut command: Command,
        scopes: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let audit_path = dir.path().join("audit.jsonl");
        command
            .env_remove("MCP_SCOPES")
            .env("MCP_AUDIT_LOG", &audit_path)
            .env("MCP_SERVER_ID", "test-server-1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(scopes) = scopes {
            command.env("MCP_SCOPES", scopes);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("server starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let (start_reading, start) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            // Also goes on if the server is dropped without ever reading.
            let _ = start.recv();
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        RawServer {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            audit_path,
            start_reading: Some(start_reading),
            _dir: dir,
        }
    }

    /// Starts reading the server's stdout (see [`RawServer::spawn_not_reading`]).
    pub fn start_reading(&mut self) {
        if let Some(start) = self.start_reading.take() {
            start.send(()).expect("the stdout reader waits");
        }
    }

    /// Takes the server's stdin, to write to it from another thread; give it back with
    /// [`RawServer::put_stdin`].
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin open")
    }

    /// Gives back the stdin taken with [`RawServer::take_stdin`].
    pub fn put_stdin(&mut self, stdin: ChildStdin) {
        self.stdin = Some(stdin);
    }

    /// Writes bytes as they are (add the newline yourself).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to server");
        stdin.flush().expect("flush to server");
    }

    /// Writes one JSON message and its newline.
    pub fn send(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).unwrap();
        line.push(b'\n');
        self.send_raw(&line);
    }

    /// The next line the server writes, parsed; `None` if nothing comes within `timeout`.
    pub fn try_recv(&self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
                panic!(
                    "server wrote a line that is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&line)
                )
            })),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The next line the server writes; fails the test if none comes in time.
    pub fn recv(&self) -> Value {
        self.try_recv(ANSWER_TIMEOUT)
            .expect("the server answered in time")
    }

    /// Sends a message and returns the next line.
    pub fn request(&mut self, message: Value) -> Value {
        self.send(&message);
        self.recv()
    }

    /// Runs the `initialize` handshake for `version` and returns the answer.
    pub fn initialize(&mut self, version: &str) -> Value {
        self.initialize_with(version, serde_json::json!({}))
    }

    /// Runs the `initialize` handshake for `version`, declaring the client `capabilities`.
    pub fn initialize_with(&mut self, version: &str, capabilities: Value) -> Value {
        let answer = self.request(serde_json::json!({
            "jsonrpc": "2.0", "id": "init", "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": capabilities,
                "clientInfo": {"name": "raw-test-client", "version": "0.0.1"}
            }
        }));
        if answer.get("result").is_some() {
            self.send(
                &serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            );
        }
        answer
    }

    /// Reads lines until the answer to request `id`; returns the lines before it (notifications, requests from
    /// the server) and the answer.
    pub fn until_answer(&self, id: &Value) -> (Vec<Value>, Value) {
        let mut before = Vec::new();
        loop {
            let line = self.recv();
            if line.get("method").is_none() && &line["id"] == id {
                return (before, line);
            }
            before.push(line);
        }
    }

    /// A `tools/call` as a JSON-RPC message.
    pub fn call_message(id: i64, tool: &str, arguments: Value) -> Value {
        serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments}
        })
    }

    /// The audit records written so far.
    pub fn audit(&self) -> Vec<Value> {
        read_audit(&self.audit_path)
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin and waits for the process to exit (failing the test if it does not, in time).
    pub fn finish(mut self) -> (ExitStatus, Vec<Value>, String) {
        drop(self.stdin.take());
        let status = self.wait();
        // Let the stderr thread drain.
        std::thread::sleep(Duration::from_millis(50));
        (status, self.audit(), self.stderr())
    }

    /// The exit status if the process exits within `limit`.
    pub fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the server as MCP's stdio transport tells a host to, with the Python SDK's timings: closes its input,
    /// waits 2 s for it to exit, sends SIGTERM, waits 2 s more, then kills it. Whether it exited by itself.
    pub fn stop_as_a_host(&mut self) -> bool {
        drop(self.stdin.take());
        if self.wait_within(Duration::from_secs(2)).is_some() {
            return true;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        if self.wait_within(Duration::from_secs(2)).is_some() {
            return true;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// Waits for the process to exit, killing it and failing the test after [`ANSWER_TIMEOUT`].
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = std::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses a JSON Lines audit log; every line must be one JSON object.
pub fn read_audit(path: &Path) -> Vec<Value> {
    parse_audit(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Parses the complete lines of a JSON Lines audit log a server is still writing: a last line without its newline
/// may be a record half written (a long record takes more than one write), and is left for the next read.
pub fn read_audit_so_far(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    parse_audit(complete)
}

fn parse_audit(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {line}"))
        })
        .collect()
}

/// The records of one event kind.
pub fn events<'a>(records: &'a [Value], event: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event"] == event).collect()
}

/// The tools of the `tool_call` records among `records`, in order.
pub fn tools_called(records: &[Value]) -> Vec<&str> {
    events(records, "tool_call")
        .into_iter()
        .map(|record| record["tool"].as_str().unwrap_or_default())
        .collect()
}

/// A server binary of this package serving HTTP on a port of its own choosing (port 0: no port found free and
/// handed over, which another process could take meanwhile), its audit and standard error in files of a temporary
/// directory. Killed when dropped.
pub struct HttpTestServer {
    /// The server.
    pub child: std::process::Child,
    /// The MCP endpoint's URL, as the server said it.
    pub url: String,
    /// Its audit log.
    pub audit: std::path::PathBuf,
    /// Its standard error.
    pub stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl HttpTestServer {
    /// Starts `binary` (a `CARGO_BIN_EXE_...` path) with `--http 127.0.0.1:0`, the scopes `test.read test.write`,
    /// an audit log, and `env`; returns once it says where it listens (read from whole lines of its standard
    /// error, never found by connecting, which could reach another process).
    pub fn start(binary: &str, env: &[(&str, &str)]) -> Self {
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit.jsonl");
        let stderr = dir.path().join("stderr.log");
        let mut child = Command::new(binary)
            .args(["--http", "127.0.0.1:0"])
            .env("MCP_SCOPES", "test.read test.write")
            .env("MCP_AUDIT_LOG", &audit)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let ready = Instant::now();
        loop {
            let said = std::fs::read_to_string(&stderr).unwrap_or_default();
            if let Some(url) = said
                .split_inclusive('\n')
                .filter(|line| line.ends_with('\n'))
                .find_map(|line| line.split_once("serving MCP over HTTP at "))
                .and_then(|(_, url)| url.split_whitespace().next())
            {
                assert!(url.starts_with("http://127.0.0.1:"), "{url}");
                return HttpTestServer {
                    child,
                    url: url.to_owned(),
                    audit,
                    stderr,
                    _dir: dir,
                };
            }
            if child.try_wait().unwrap().is_some() {
                let _ = child.wait();
                panic!(
                    "the server did not start: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            assert!(ready.elapsed() < Duration::from_secs(20), "not listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The audit log once `done` says it is complete (within 10 s).
    pub fn audit_until(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let audit = read_audit_so_far(&self.audit);
            if done(&audit) {
                return audit;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "audit never complete: {audit:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for HttpTestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
