//! `http-bench`: a bounded load run of many concurrent authenticated clients against the real
//! `secure-file-server --http` (release build), loopback only.
//!
//! The server is started with an HS256 secret on a free loopback port, its audit log on a file. Each of `--clients`
//! clients (default 32) gets a token of its own (subject `client-NN`, scope `files.read`) and a connection pool of
//! its own, and makes `--calls` (default 500) `tools/call`s one after another over HTTP POST with JSON answers:
//! `read_file` of a 16-byte file, and every `--deny-every`-th call (default 10) a `write_file`, which its token does
//! not allow (answered `403` with an `insufficient_scope` challenge). The run is bounded in count and in time: it
//! stops by itself after `clients x calls` calls or after `--time-cap` seconds (default 120), whichever comes first;
//! reaching the cap is a failure.
//!
//! Checks, each a non-zero exit when it fails: every call answered as expected (`200` and the file's text, or
//! `403` and `missing_scope:files.write`), no transport error, no call left when the cap struck, and the audit log
//! holding exactly one `tool_call` record per call, per subject, with the right outcome counts.
//!
//! Build and run (see BENCHMARKS.md): `cargo build --release -p secure-file-server -p secure-tools-bench`, then
//! `target/release/http-bench`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const SECRET: &str = "http-bench-secret-0123456789abcdef0123456789";
const ISSUER: &str = "https://issuer.bench";
const GREETING: &str = "hello, benchmark";

struct Args {
    clients: usize,
    calls: usize,
    deny_every: usize,
    time_cap: Duration,
    server: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        clients: 32,
        calls: 500,
        deny_every: 10,
        time_cap: Duration::from_secs(120),
        server: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--clients" => args.clients = value().parse().unwrap(),
            "--calls" => args.calls = value().parse().unwrap(),
            "--deny-every" => args.deny_every = value().parse().unwrap(),
            "--time-cap" => args.time_cap = Duration::from_secs(value().parse().unwrap()),
            "--server" => args.server = Some(PathBuf::from(value())),
            "--help" | "-h" => {
                println!(
                    "http-bench [--clients N] [--calls N per client] [--deny-every N] [--time-cap SECS] \
                     [--server PATH to secure-file-server]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(args.clients > 0 && args.calls > 0 && args.deny_every > 0);
    args
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(resource: &str, subject: &str) -> String {
    let now = now();
    let claims = json!({"iss": ISSUER, "aud": resource, "sub": subject, "scope": "files.read",
                        "iat": now, "nbf": now, "exp": now + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// What one client saw.
#[derive(Default)]
struct ClientReport {
    latencies_us: Vec<u64>,
    allowed: usize,
    denied: usize,
    errors: Vec<String>,
    unfinished: usize,
}

async fn run_client(
    url: String,
    token: String,
    calls: usize,
    deny_every: usize,
    deadline: Instant,
) -> ClientReport {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let auth = format!("Bearer {token}");
    let mut report = ClientReport {
        latencies_us: Vec::with_capacity(calls),
        ..ClientReport::default()
    };
    for i in 0..calls {
        if Instant::now() >= deadline {
            report.unfinished = calls - i;
            break;
        }
        let deny = (i + 1) % deny_every == 0;
        let params = if deny {
            json!({"name": "write_file", "arguments": {"filename": "out.txt", "content": "x"}})
        } else {
            json!({"name": "read_file", "arguments": {"filename": "greeting.txt"}})
        };
        let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params});
        let started = Instant::now();
        let sent = client
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", &auth)
            .body(body.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                report.errors.push(format!("call {i}: {e}"));
                continue;
            }
        };
        let status = response.status().as_u16();
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => {
                report.errors.push(format!("call {i}: body: {e}"));
                continue;
            }
        };
        report
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        let reply: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let result_text = reply["result"]["content"][0]["text"].as_str().unwrap_or("");
        let ok = if deny {
            status == 403
                && reply["result"]["isError"] == true
                && result_text.contains("missing_scope:files.write")
        } else {
            status == 200 && reply["result"]["isError"] != true && result_text.contains(GREETING)
        };
        if !ok {
            report
                .errors
                .push(format!("call {i}: unexpected answer {status}: {text}"));
        } else if deny {
            report.denied += 1;
        } else {
            report.allowed += 1;
        }
    }
    report
}

fn main() {
    let args = parse_args();
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| workspace().join("target/release/secure-file-server"));
    assert!(
        server.exists(),
        "{} not found: cargo build --release -p secure-file-server",
        server.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("greeting.txt"), GREETING).unwrap();
    let audit_log = dir.path().join("audit.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let resource = format!("{base}/mcp");

    let mut child = Command::new(&server)
        .arg("--data-root")
        .arg(&data)
        .arg("--audit-log")
        .arg(&audit_log)
        .args(["--http", &format!("127.0.0.1:{port}")])
        .args(["--issuer", ISSUER, "--resource-url", &resource])
        .env("MCP_AUTH_HS256_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("the server exited before listening");
        }
        if line.contains("serving MCP over HTTP at") {
            break;
        }
    }
    std::thread::spawn(move || for _ in stderr.lines() {});

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let total = args.clients * args.calls;
    println!(
        "http-bench: {} clients x {} calls = {total} calls (every {}th a denied write_file), time cap {:?}, {}",
        args.clients,
        args.calls,
        args.deny_every,
        args.time_cap,
        server.display()
    );
    let subjects: Vec<String> = (0..args.clients)
        .map(|i| format!("client-{i:02}"))
        .collect();
    let started = Instant::now();
    let deadline = started + args.time_cap;
    let reports: Vec<ClientReport> = runtime.block_on(async {
        let tasks: Vec<_> = subjects
            .iter()
            .map(|subject| {
                tokio::spawn(run_client(
                    resource.clone(),
                    token(&resource, subject),
                    args.calls,
                    args.deny_every,
                    deadline,
                ))
            })
            .collect();
        let mut reports = Vec::new();
        for task in tasks {
            reports.push(task.await.unwrap());
        }
        reports
    });
    let elapsed = started.elapsed();
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = child.kill();
    let _ = child.wait();

    let mut failures = Vec::new();
    let mut latencies: Vec<u64> = reports
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let answered = latencies.len();
    let allowed: usize = reports.iter().map(|r| r.allowed).sum();
    let denied: usize = reports.iter().map(|r| r.denied).sum();
    let unfinished: usize = reports.iter().map(|r| r.unfinished).sum();
    let errors: Vec<&String> = reports.iter().flat_map(|r| r.errors.iter()).collect();
    if unfinished > 0 {
        failures.push(format!(
            "the time cap struck with {unfinished} calls not made"
        ));
    }
    if !errors.is_empty() {
        failures.push(format!(
            "{} calls failed; first: {}",
            errors.len(),
            errors[0]
        ));
    }

    // The audit log: exactly one `tool_call` record per call, per subject.
    let text = std::fs::read_to_string(&audit_log).unwrap_or_default();
    let mut per_subject: HashMap<String, (usize, usize)> = HashMap::new();
    let mut records = 0;
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).expect("an audit record is JSON");
        if record["event"] != "tool_call" {
            continue;
        }
        records += 1;
        let caller = record["caller"].as_str().unwrap_or("?").to_owned();
        let entry = per_subject.entry(caller).or_default();
        match record["outcome"].as_str() {
            Some("ok") => entry.0 += 1,
            Some("denied") => entry.1 += 1,
            other => failures.push(format!("unexpected audit outcome {other:?}")),
        }
    }
    let made = total - unfinished;
    if records != made {
        failures.push(format!(
            "{records} tool_call audit records for {made} calls"
        ));
    }
    for (subject, report) in subjects.iter().zip(&reports) {
        let made = args.calls - report.unfinished;
        let expected_denied = made / args.deny_every;
        let expected = (made - expected_denied, expected_denied);
        let got = per_subject.get(subject).copied().unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{subject}: audit holds {got:?} (ok, denied) records, expected {expected:?}"
            ));
        }
    }
    if per_subject.len() != subjects.len() {
        failures.push(format!(
            "audit records name {} subjects, expected {}",
            per_subject.len(),
            subjects.len()
        ));
    }

    let at = |q: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[i]
    };
    println!(
        "calls: {answered} answered ({allowed} read_file ok, {denied} write_file denied with 403) in {:.2} s",
        elapsed.as_secs_f64()
    );
    println!(
        "throughput: {:.0} calls/s; latency p50 {} µs, p90 {} µs, p99 {} µs, max {} µs",
        answered as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.90),
        at(0.99),
        latencies.last().copied().unwrap_or(0)
    );
    println!(
        "audit: {records} tool_call records, {} subjects",
        per_subject.len()
    );
    if failures.is_empty() {
        println!("checks: ok (no error, one tool_call record per call, per-subject counts match)");
    } else {
        for failure in &failures {
            eprintln!("FAILED: {failure}");
        }
        std::process::exit(1);
    }
}
