//! Several replicas of the file server over HTTP behind a real load balancer (HAProxy, from the distribution's
//! packages), sharing their rate limits through a real Redis (`redis-server`), all on loopback.
//!
//! - a caller's rate limit holds across the replicas: exactly the allowed number of calls succeed in all;
//! - every call is audited exactly once across the replicas' logs, and each log verifies as a chain;
//! - a replica killed mid-run loses no record of a call whose answer its client received;
//! - a replica stopped (SIGTERM) with a shutdown delay mid-run loses no request: the balancer takes it out first;
//! - when Redis cannot be reached, calls are refused `rate_limit_unavailable` (or let through, if so configured).
//!
//! `.ci/run` installs `redis-server` and `haproxy` when they are missing; locally, `apt-get install redis-server
//! haproxy`.

mod command;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secure_tools_tests::RawServer;
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_secure-file-server");
const SECRET: &str = "replicas-test-secret-0123456789abcdef";
const ISSUER: &str = "https://issuer.test";

fn program(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("`{name}` is not installed: apt-get install redis-server haproxy (.ci/run does it)");
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis(dir: &Path) -> (Process, u16) {
    // redis-server must be given its port and says none it chose: a port free now, which another process could
    // take before redis-server binds it (it then exits, failing the test, or `wait_for_port` reaches the other).
    let port = common::free_port();
    (redis_on(dir, port), port)
}

/// redis-server on `port`.
fn redis_on(dir: &Path, port: u16) -> Process {
    redis_with(dir, port, &[])
}

/// redis-server on `port`, with `extra` arguments.
fn redis_with(dir: &Path, port: u16, extra: &[&str]) -> Process {
    let mut child = Command::new(program("redis-server"))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "redis-server");
    Process(child)
}

/// One replica: the file server over HTTP with bearer tokens, its audit log its own, its rate limits in Redis.
struct Replica {
    process: Process,
    port: u16,
    audit_log: PathBuf,
}

fn replica(dir: &Path, n: usize, data: &Path, resource: &str, extra: &[&str]) -> Replica {
    let audit_log = dir.join(format!("replica-{n}.jsonl"));
    let mut child = replica_command(dir, n, data, resource, extra)
        .spawn()
        .unwrap();
    let port = common::wait_until_listening(&mut child, "serving MCP over HTTP at", |_| {})
        .address("MCP over HTTP")
        .port();
    Replica {
        process: Process(child),
        port,
        audit_log,
    }
}

/// The command that starts [`replica`] `n`, its standard error piped.
fn replica_command(dir: &Path, n: usize, data: &Path, resource: &str, extra: &[&str]) -> Command {
    let audit_log = dir.join(format!("replica-{n}.jsonl"));
    // Port 0: the replica binds a port nobody holds and says which (its resource URL is the balancer's).
    let mut command = Command::new(SERVER);
    command
        .arg("--data-root")
        .arg(data)
        .arg("--audit-log")
        .arg(&audit_log)
        // An id of its own, as operators tell replicas' logs apart: the limits are shared all the same (they
        // were kept per server id, so that each replica gave the whole allowance: red-team finding).
        .arg("--server-id")
        .arg(format!("files-{n}"))
        .args(["--http", "127.0.0.1:0"])
        .args(["--issuer", ISSUER, "--resource-url", resource])
        .args(extra)
        .env("MCP_AUTH_HS256_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// HAProxy in front of `replicas`, round robin, taking a replica out when its `/healthz` stops answering `200`
/// (checked every 100 ms, the README's configuration) and retrying a request whose connection failed on another.
fn haproxy(dir: &Path, port: u16, replicas: &[&Replica]) -> Process {
    let servers: String = replicas
        .iter()
        .enumerate()
        .map(|(n, r)| {
            format!(
                "    server r{n} 127.0.0.1:{} check inter 100ms fall 1 rise 2\n",
                r.port
            )
        })
        .collect();
    let config = format!(
        "global\n    maxconn 1000\n\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    \
         timeout server 30s\n    retries 3\n    option redispatch\n    option forwardfor\n\nfrontend mcp\n    bind 127.0.0.1:{port}\n    \
         default_backend replicas\n\nbackend replicas\n    balance roundrobin\n    option httpchk\n    \
         http-check send meth GET uri /healthz hdr Host localhost\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(program("haproxy"))
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "haproxy");
    Process(child)
}

fn token(resource: &str, subject: &str) -> String {
    secure_tools::testing::hs256_token(
        SECRET,
        ISSUER,
        resource,
        subject,
        "files.read files.write",
        Duration::from_secs(600),
    )
}

/// One `tools/call` of `read_file` with JSON-RPC id `id`: the tool result, or `None` if no answer came back.
/// A `read_file` call of `greeting.txt` with id `id`, as `token`'s holder, to send.
fn read_request(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    id: u64,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .body(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                   "params": {"name": "read_file", "arguments": {"filename": "greeting.txt"}}})
            .to_string(),
        )
}

async fn read(client: &reqwest::Client, url: &str, token: &str, id: u64) -> Option<Value> {
    let answer = read_request(client, url, token, id).send().await.ok()?;
    if answer.status() != 200 {
        return None;
    }
    let body: Value = answer.json().await.ok()?;
    assert_eq!(body["id"], id, "{body}");
    Some(body["result"].clone())
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The `tool_call` records of every log, by JSON-RPC id; fails on an id recorded twice.
fn calls_by_id(logs: &[PathBuf]) -> std::collections::BTreeMap<u64, Value> {
    let mut calls = std::collections::BTreeMap::new();
    for log in logs {
        for record in records(log) {
            if record["event"] == "tool_call" {
                let id = record["request_id"].as_u64().unwrap();
                assert!(
                    calls.insert(id, record.clone()).is_none(),
                    "call {id} audited twice: {record}"
                );
            }
        }
    }
    calls
}

fn assert_chain_verifies(log: &Path) {
    let (code, stdout, stderr) =
        command::secure_tools(&["audit", "verify", log.to_str().unwrap()], &[]);
    assert_eq!(
        code,
        0,
        "{} does not verify:\n{stdout}\n{stderr}",
        log.display()
    );
}

fn data_root(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("greeting.txt"), "hello\n").unwrap();
    data
}

/// Three replicas behind HAProxy, their rate limit (`rate`) kept in one Redis; everything stopped on drop.
struct Cluster {
    replicas: Vec<Replica>,
    /// The balancer's MCP endpoint, also the tokens' audience.
    resource: String,
    _lb: Process,
    _redis: Process,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(rate: &str) -> Cluster {
        Cluster::start_with(rate, &[])
    }

    /// With `extra` flags for every replica.
    fn start_with(rate: &str, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let data = data_root(dir.path());
        let (redis, redis_port) = redis(dir.path());
        // HAProxy must be given its port and says none it chose, and the replicas are given the balancer's URL
        // before it starts: a port held by the test while the replicas start, released as HAProxy starts. Another
        // process could still take it before HAProxy binds it (HAProxy then exits, failing the test, or
        // `wait_for_port` reaches the other).
        let lb_port = common::HeldPort::new();
        let resource = format!("http://127.0.0.1:{}/mcp", lb_port.port());
        let redis_url = format!("redis://127.0.0.1:{redis_port}/0");
        let mut flags = vec!["--rate-limit", rate, "--rate-limit-redis", &redis_url];
        flags.extend_from_slice(extra);
        let replicas: Vec<Replica> = (0..3)
            .map(|n| replica(dir.path(), n, &data, &resource, &flags))
            .collect();
        let lb = haproxy(
            dir.path(),
            lb_port.release(),
            &replicas.iter().collect::<Vec<_>>(),
        );
        Cluster {
            replicas,
            resource,
            _lb: lb,
            _redis: redis,
            _dir: dir,
        }
    }

    fn logs(&self) -> Vec<PathBuf> {
        self.replicas.iter().map(|r| r.audit_log.clone()).collect()
    }

    /// Stops the replicas (the logs stay), then checks that each log verifies as a chain.
    fn stop_and_verify(mut self) {
        let logs = self.logs();
        self.replicas.clear();
        for log in &logs {
            assert_chain_verifies(log);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callers_rate_limit_holds_across_three_replicas_and_each_call_is_audited_once() {
    let cluster = Cluster::start("10/min");
    let resource = cluster.resource.clone();
    let client = reqwest::Client::new();
    let (alice, bob) = (token(&resource, "alice"), token(&resource, "bob"));

    let mut allowed = 0;
    let mut limited_calls = 0;
    for id in 1..=25 {
        let result = read(&client, &resource, &alice, id)
            .await
            .expect("an answer");
        if result["isError"] == false {
            allowed += 1;
        } else {
            let notice = &result["_meta"]["secure-tools/refusal"];
            assert_eq!(notice["code"], "rate_limited", "{result}");
            assert!(
                notice["retryAfterSeconds"].as_u64().unwrap() >= 1,
                "{result}"
            );
            limited_calls += 1;
        }
    }
    assert_eq!(
        (allowed, limited_calls),
        (10, 15),
        "alice: 10 calls a minute in all"
    );
    // Another caller has a limit of its own.
    for id in 26..=30 {
        let result = read(&client, &resource, &bob, id).await.expect("an answer");
        assert_eq!(result["isError"], false, "{result}");
    }

    // The calls were spread over the replicas, and each is audited once, in one log.
    let logs = cluster.logs();
    let calls = calls_by_id(&logs);
    assert_eq!(
        calls.keys().copied().collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    for log in &logs {
        let served = records(log)
            .iter()
            .filter(|r| r["event"] == "tool_call")
            .count();
        assert!(
            served >= 5,
            "round robin gave {} only {served} calls",
            log.display()
        );
    }
    let outcomes = |caller: &str, outcome: &str| {
        calls
            .values()
            .filter(|c| c["caller"] == caller && c["outcome"] == outcome)
            .count()
    };
    assert_eq!(outcomes("alice", "ok"), 10);
    assert_eq!(outcomes("alice", "limited"), 15);
    assert_eq!(outcomes("bob", "ok"), 5);
    cluster.stop_and_verify();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_run_loses_no_record_of_an_answered_call() {
    let mut cluster = Cluster::start("100000/min");
    let resource = cluster.resource.clone();
    let client = reqwest::Client::new();
    let alice = token(&resource, "alice");

    // Four clients, 60 calls each; the second replica is killed (SIGKILL) once 80 calls have been answered.
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for worker in 0..4u64 {
        let (client, url, token, answered) = (
            client.clone(),
            resource.clone(),
            alice.clone(),
            answered.clone(),
        );
        workers.push(tokio::spawn(async move {
            for n in 0..60u64 {
                let id = worker * 1000 + n + 1;
                if let Some(result) = read(&client, &url, &token, id).await {
                    assert_eq!(result["isError"], false, "{result}");
                    answered.lock().unwrap().push(id);
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.lock().unwrap().len() < 80 {
        assert!(Instant::now() < deadline, "calls are not being answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let victim = &mut cluster.replicas[1].process.0;
    victim.kill().unwrap();
    victim.wait().unwrap();
    for worker in workers {
        worker.await.unwrap();
    }

    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 200,
        "only {} of 240 calls answered",
        answered.len()
    );
    let logs = cluster.logs();
    let calls = calls_by_id(&logs);
    for id in &answered {
        let call = calls
            .get(id)
            .unwrap_or_else(|| panic!("call {id} was answered but has no record"));
        assert_eq!(call["outcome"], "ok", "{call}");
    }
    let killed = records(&logs[1])
        .iter()
        .filter(|r| r["event"] == "tool_call")
        .count();
    assert!(
        killed > 0,
        "the killed replica had served calls before it died"
    );
    cluster.stop_and_verify();
}

/// Red-team finding (rolling restarts behind HAProxy): a replica with no long call to wait for exited as soon as it
/// was signalled, before the balancer's next health check saw its `503`, and the requests sent to it meanwhile (on
/// connections HAProxy keeps open to it) got no answer: 1 to 6 per stop. With `--shutdown-delay` longer than the
/// balancer takes to notice, a replica stopped in the middle of a run loses no request.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_stopped_with_a_shutdown_delay_loses_no_request() {
    let mut cluster = Cluster::start_with("100000/min", &["--shutdown-delay", "1s"]);
    let resource = cluster.resource.clone();
    let client = reqwest::Client::new();
    let alice = token(&resource, "alice");

    // Four clients calling one call after another; the second replica is stopped (SIGTERM) once 100 calls have
    // been answered, and the clients go on until 100 more have been answered after it exited.
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..4u64 {
        let (client, url, token, answered, done) = (
            client.clone(),
            resource.clone(),
            alice.clone(),
            answered.clone(),
            done.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut lost = Vec::new();
            for n in 0.. {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let id = worker * 100_000 + n + 1;
                match read(&client, &url, &token, id).await {
                    Some(result) if result["isError"] == false => {
                        answered.lock().unwrap().push(id);
                    }
                    Some(result) => {
                        let code = &result["_meta"]["secure-tools/refusal"]["code"];
                        lost.push(format!("{id}: {code}"));
                    }
                    None => lost.push(format!("{id}: no answer")),
                }
            }
            lost
        }));
    }
    let until_answered = |count: usize| {
        let answered = answered.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while answered.lock().unwrap().len() < count {
                assert!(Instant::now() < deadline, "calls are not being answered");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    until_answered(100).await;
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &cluster.replicas[1].process.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::task::block_in_place(|| cluster.replicas[1].process.0.wait().unwrap());
    let took = signalled.elapsed();
    let after = answered.lock().unwrap().len();
    until_answered(after + 100).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut lost = Vec::new();
    for worker in workers {
        lost.extend(worker.await.unwrap());
    }
    assert!(exited.success(), "{exited}");
    assert_eq!(lost, Vec::<String>::new(), "requests not served");
    assert!(
        took >= Duration::from_secs(1),
        "exited {took:?} after its signal"
    );

    let logs = cluster.logs();
    let calls = calls_by_id(&logs);
    let mut answered = answered.lock().unwrap().clone();
    answered.sort_unstable();
    assert_eq!(calls.keys().copied().collect::<Vec<_>>(), answered);
    assert!(calls.values().all(|call| call["outcome"] == "ok"));
    let log = records(&logs[1]);
    assert_eq!(log.last().unwrap()["event"], "server_stop");
    cluster.stop_and_verify();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_calls_are_refused_unless_configured_to_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_root(dir.path());
    // Nothing listens there: the port is held, never listening, to the end of the test.
    let no_redis = common::HeldPort::new();
    let nowhere = format!("redis://127.0.0.1:{}/0", no_redis.port());
    let client = reqwest::Client::new();
    for (mode, expect_ok) in [("refuse", false), ("allow", true)] {
        let sub = dir.path().join(mode);
        std::fs::create_dir(&sub).unwrap();
        // The resource URL (a balancer's) only names the tokens' audience here: a port held, where nothing listens.
        let port_holder = common::HeldPort::new();
        let resource = format!("http://127.0.0.1:{}/mcp", port_holder.port());
        let options = [
            "--rate-limit",
            "10/min",
            "--rate-limit-redis",
            nowhere.as_str(),
            "--rate-limit-redis-unavailable",
            mode,
        ];
        let server = replica(&sub, 0, &data, &resource, &options);
        let url = format!("http://127.0.0.1:{}/mcp", server.port);
        let started = Instant::now();
        let result = read(&client, &url, &token(&resource, "alice"), 1)
            .await
            .expect("an answer");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the check waited too long for Redis"
        );
        if expect_ok {
            assert_eq!(result["isError"], false, "{mode}: {result}");
        } else {
            assert_eq!(
                result["_meta"]["secure-tools/refusal"]["code"], "rate_limit_unavailable",
                "{result}"
            );
        }
        drop(server);
        let calls = calls_by_id(&[sub.join("replica-0.jsonl")]);
        let expected = if expect_ok { "ok" } else { "limited" };
        assert_eq!(calls[&1]["outcome"], expected, "{mode}");
        // Red-team finding: a call let through unlimited was recorded as any other `ok`; its record says so.
        let unchecked = calls[&1]["fields"]["secure-tools/rate_limit"].clone();
        if expect_ok {
            assert_eq!(unchecked, "unchecked", "{}", calls[&1]);
        } else {
            assert_eq!(unchecked, Value::Null, "{}", calls[&1]);
        }
    }
}

/// Over stdio too: two servers an MCP host launched for the same caller (two hosts on one machine, say) share the
/// caller's rate limit through Redis, and each audits its own calls.
#[test]
fn over_stdio_two_servers_share_the_callers_rate_limit_through_redis() {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, redis_port) = redis(dir.path());
    let data = data_root(dir.path());
    let redis_url = format!("redis://127.0.0.1:{redis_port}/0");
    let env = [
        ("DATA_ROOT", data.to_str().unwrap()),
        ("MCP_RATE_LIMIT", "5/min"),
        ("MCP_RATE_LIMIT_REDIS", redis_url.as_str()),
    ];
    let mut servers: Vec<RawServer> = (0..2)
        .map(|_| {
            let mut server = RawServer::spawn(SERVER, Some("files.read"), &env);
            let answer = server.initialize("2025-11-25");
            assert!(
                answer.get("result").is_some(),
                "{answer} {}",
                server.stderr()
            );
            server
        })
        .collect();
    let mut codes = Vec::new();
    for id in 0..20 {
        let server = &mut servers[id % 2];
        let answer = server.request(RawServer::call_message(
            id as i64,
            "read_file",
            json!({"filename": "greeting.txt"}),
        ));
        let result = &answer["result"];
        codes.push(if result["isError"] == true {
            result["_meta"]["secure-tools/refusal"]["code"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        } else {
            "ok".to_owned()
        });
    }
    let count = |code: &str| codes.iter().filter(|c| *c == code).count();
    assert_eq!((count("ok"), count("rate_limited")), (5, 15), "{codes:?}");
    for server in servers {
        let (status, audit, stderr) = server.finish();
        assert!(status.success(), "{stderr}");
        let calls: Vec<&Value> = audit.iter().filter(|r| r["event"] == "tool_call").collect();
        assert_eq!(calls.len(), 10, "{stderr}");
    }
}

/// Counts a tool's calls.
#[secure_tools::secure_tool(scope = "t.call", read_only)]
async fn counted() -> Result<String, secure_tools::ToolError> {
    Ok("done".to_owned())
}

/// The `counted` tool under a rate of 100 calls a minute, its state kept in the Redis at `127.0.0.1:port` under
/// `namespace`.
fn counting_through_redis(port: u16, namespace: &str) -> secure_tools::testing::ToolTester<()> {
    use secure_tools::call::shared_rate::RedisRates;
    use secure_tools::{Rate, ToolSet};
    secure_tools::testing::ToolTester::new(
        ToolSet::builder(())
            .tool::<counted>()
            .rate_limit(Rate::per_minute(100).unwrap())
            .rate_limit_store(
                RedisRates::open(&format!("redis://127.0.0.1:{port}/0"), namespace).unwrap(),
            ),
    )
    .unwrap()
}

fn codes_of_calls(results: &[secure_tools::testing::Called]) -> (usize, usize) {
    let ok = results.iter().filter(|c| c.code().is_none()).count();
    let limited = results
        .iter()
        .filter(|c| c.code() == Some("rate_limited"))
        .count();
    (ok, limited)
}

/// The set's rate and a tool's own rate are two limits: through Redis as in process, a tool allowed 10 a minute
/// under a set allowing 60 gives a caller exactly 10 of 30 quick calls (the two limits once shared one key, so each
/// call was counted under both rates and only 8 went through).
#[tokio::test]
async fn a_tools_own_rate_and_the_sets_rate_are_each_exact_through_redis() {
    use secure_tools::call::shared_rate::RedisRates;
    use secure_tools::testing::{ToolTester, caller};
    use secure_tools::{Rate, ToolSet};
    let dir = tempfile::tempdir().unwrap();
    let (_redis, redis_port) = redis(dir.path());
    let url = format!("redis://127.0.0.1:{redis_port}/0");
    for (set_rate, tool_rate) in [(60, 10), (10, 10)] {
        let namespace = format!("exact-{set_rate}-{tool_rate}");
        let tester = ToolTester::new(
            ToolSet::builder(())
                .tool_with::<counted>(|tool| tool.rate_limit(Rate::per_minute(tool_rate).unwrap()))
                .rate_limit(Rate::per_minute(set_rate).unwrap())
                .rate_limit_store(RedisRates::open(&url, &namespace).unwrap()),
        )
        .unwrap();
        let someone = caller("someone", "t.call");
        let mut results = Vec::new();
        for _ in 0..30 {
            results.push(tester.call(&someone, "counted", json!({})).await);
        }
        assert_eq!(
            codes_of_calls(&results),
            (10, 20),
            "set {set_rate}/min, tool {tool_rate}/min"
        );
    }
}

/// Servers sharing a Redis keep apart by their ids, whatever the ids and callers spell: server `a`'s caller
/// `3:abc` and server `a:5`'s caller `abc` are two callers (an unmarked namespace once made them one key, so a
/// caller naming itself so could use up another server's caller's calls).
#[tokio::test]
async fn namespaces_and_callers_cannot_spell_each_others_keys_in_redis() {
    use secure_tools::call::shared_rate::RedisRates;
    use secure_tools::testing::{ToolTester, caller};
    use secure_tools::{Rate, ToolSet};
    let dir = tempfile::tempdir().unwrap();
    let (_redis, redis_port) = redis(dir.path());
    let url = format!("redis://127.0.0.1:{redis_port}/0");
    let server = |namespace: &str| {
        ToolTester::new(
            ToolSet::builder(())
                .tool::<counted>()
                .rate_limit(Rate::per_minute(3).unwrap())
                .rate_limit_store(RedisRates::open(&url, namespace).unwrap()),
        )
        .unwrap()
    };
    let (first, second) = (server("a"), server("a:5"));
    let mut used = Vec::new();
    for _ in 0..3 {
        used.push(
            first
                .call(&caller("3:abc", "t.call"), "counted", json!({}))
                .await,
        );
    }
    assert_eq!(codes_of_calls(&used), (3, 0));
    let mut other = Vec::new();
    for _ in 0..3 {
        other.push(
            second
                .call(&caller("abc", "t.call"), "counted", json!({}))
                .await,
        );
    }
    assert_eq!(
        codes_of_calls(&other),
        (3, 0),
        "another server's caller was limited"
    );
}

/// Trial finding: after Redis restarted, each server's next call was refused `rate_limit_unavailable` (`broken
/// pipe`) although Redis answered again: the connection manager reconnects after a dropped connection fails a
/// command, and the command was not tried again. The first call after the restart now goes through.
#[tokio::test]
async fn the_first_call_after_redis_restarts_is_checked_not_refused() {
    use secure_tools::testing::caller;

    let dir = tempfile::tempdir().unwrap();
    let (redis_server, port) = redis(dir.path());
    let tester = counting_through_redis(port, "restart");
    let someone = caller("someone", "t.call");
    let before = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(before.code(), None, "{before:?}");
    drop(redis_server);
    let _redis_again = redis_on(dir.path(), port);
    let after = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(after.code(), None, "{after:?}");
}

/// A TCP proxy to `127.0.0.1:target` whose connections open so far can be frozen: they stay open, take whatever is
/// sent and answer nothing, as a Redis behind a middlebox whose backend died does, or a host gone without a word.
/// Connections made after a freeze are served.
struct Freezer {
    port: u16,
    /// Connections numbered below this are frozen.
    frozen_below: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    made: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Freezer {
    async fn start(target: u16) -> Freezer {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen_below, made) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (frozen, count) = (frozen_below.clone(), made.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let server = tokio::net::TcpStream::connect(("127.0.0.1", target))
                    .await
                    .unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                    ),
                    (Box::new(server_read), Box::new(client_write)),
                ] {
                    let frozen = frozen.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                        let mut buffer = vec![0u8; 16 * 1024];
                        loop {
                            let read = match from.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(read) => read,
                            };
                            // A frozen connection swallows what it is sent.
                            if n >= frozen.load(Ordering::SeqCst)
                                && to.write_all(&buffer[..read]).await.is_err()
                            {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Freezer {
            port,
            frozen_below,
            made,
        }
    }

    fn freeze_open_connections(&self) -> usize {
        use std::sync::atomic::Ordering;
        let made = self.made.load(Ordering::SeqCst);
        self.frozen_below.store(made, Ordering::SeqCst);
        made
    }
}

/// Trial-left gap: a connection to Redis that stops answering without closing (a Redis behind a proxy whose backend
/// died, a host lost without a reset) held every later call to `rate_limit_unavailable` until the kernel gave the
/// connection up, many minutes later: the connection manager reconnects only after an I/O error, never after a
/// timeout. A connection that let a check time out is now replaced: the next call connects anew and is checked.
#[tokio::test]
async fn a_connection_to_redis_that_stops_answering_is_replaced() {
    use secure_tools::testing::caller;

    let dir = tempfile::tempdir().unwrap();
    let (_redis, port) = redis(dir.path());
    let proxy = Freezer::start(port).await;
    let tester = counting_through_redis(proxy.port, "frozen");
    let someone = caller("someone", "t.call");
    let before = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(before.code(), None, "{before:?}");
    assert_eq!(proxy.freeze_open_connections(), 1);
    let stalled = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(
        stalled.code(),
        Some("rate_limit_unavailable"),
        "{stalled:?}"
    );
    let after = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(after.code(), None, "a new connection: {after:?}");
    let records = tester.records();
    assert_eq!(records.len(), 3, "{records:?}");
}

/// A listener on loopback that takes connections and never reads or answers: its port, and the task holding them.
async fn silent_listener() -> (u16, tokio::task::JoinHandle<()>) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            open.push(connection);
        }
    });
    (port, held)
}

/// Red-team finding, against the first version of the connection made on a task of its own: a check waited for
/// that connection up to its 5 s, so a Redis that took connections and never answered held every call 5 s (64 calls
/// at once filled the server's slots), where the bound is 500 ms. A check waits for the connection within its own
/// bound; the connection goes on being made past it.
#[tokio::test]
async fn a_redis_that_never_answers_a_connection_refuses_each_check_within_the_bound() {
    use secure_tools::testing::caller;

    // Takes connections and never reads or answers.
    let (port, held) = silent_listener().await;
    let tester = counting_through_redis(port, "silent");
    let someone = caller("someone", "t.call");
    for _ in 0..3 {
        let started = Instant::now();
        let called = tester.call(&someone, "counted", json!({})).await;
        assert_eq!(called.code(), Some("rate_limit_unavailable"), "{called:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a check waited {:?}",
            started.elapsed()
        );
    }
    held.abort();
}

/// A red team's (round 37): the round trip to Redis was not bounded by the call's time limit: calls limited to 100 ms
/// waited 325 ms for a slow Redis, then were refused `timeout` as if their tool had run and been stopped. The round
/// trip ends with the call's time limit, refused `timeout`, saying the tool did not run.
#[tokio::test]
async fn a_check_in_redis_ends_with_the_calls_time_limit() {
    use secure_tools::call::shared_rate::RedisRates;
    use secure_tools::testing::{ToolTester, caller};
    use secure_tools::{Rate, ToolSet};

    // Takes connections and never reads or answers.
    let (port, held) = silent_listener().await;
    let tester = ToolTester::new(
        ToolSet::builder(())
            .tool_with::<counted>(|tool| tool.timeout(Duration::from_millis(100)))
            .rate_limit(Rate::per_minute(100).unwrap())
            .rate_limit_store(
                RedisRates::open(&format!("redis://127.0.0.1:{port}/0"), "bounded").unwrap(),
            ),
    )
    .unwrap();
    let someone = caller("someone", "t.call");
    for _ in 0..2 {
        let started = Instant::now();
        let called = tester.call(&someone, "counted", json!({})).await;
        let took = started.elapsed();
        assert_eq!(called.code(), Some("timeout"), "{called:?}");
        assert!(
            called
                .refusal()
                .unwrap()
                .message()
                .contains("the tool did not run"),
            "{called:?}"
        );
        assert!(took < Duration::from_millis(400), "a check waited {took:?}");
    }
    held.abort();
}

/// A red team's (round 38): with a time limit shorter than the check's own bound (500 ms), a check cut short by the
/// call's time limit kept a connection that had stopped answering, so every later call was refused `timeout` for
/// good (eight minutes after Redis answered again). A connection that let a call's time run out is replaced too.
#[tokio::test]
async fn a_connection_that_let_a_calls_short_time_limit_run_out_is_replaced() {
    use secure_tools::call::shared_rate::RedisRates;
    use secure_tools::testing::{ToolTester, caller};
    use secure_tools::{Rate, ToolSet};

    let dir = tempfile::tempdir().unwrap();
    let (_redis, port) = redis(dir.path());
    let proxy = Freezer::start(port).await;
    let tester = ToolTester::new(
        ToolSet::builder(())
            .tool_with::<counted>(|tool| tool.timeout(Duration::from_millis(200)))
            .rate_limit(Rate::per_minute(100).unwrap())
            .rate_limit_store(
                RedisRates::open(&format!("redis://127.0.0.1:{}/0", proxy.port), "short").unwrap(),
            ),
    )
    .unwrap();
    let someone = caller("someone", "t.call");
    let before = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(before.code(), None, "{before:?}");
    assert_eq!(proxy.freeze_open_connections(), 1);
    let stalled = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(stalled.code(), Some("timeout"), "{stalled:?}");
    // The next calls go over a new connection (one being made may take a call's whole time).
    let mut answered = false;
    for _ in 0..5 {
        let after = tester.call(&someone, "counted", json!({})).await;
        if after.code().is_none() {
            answered = true;
            break;
        }
    }
    assert!(answered, "a frozen connection was kept");
}

/// Re-read finding: a connection being made that failed after the check that began it had given up stayed as the
/// slot's answer, so the first check after Redis came back was refused with that old failure, and only the one after
/// it connected anew. A connection that fails is forgotten as it fails.
#[tokio::test]
async fn a_connection_that_failed_after_its_check_gave_up_is_not_the_next_checks_answer() {
    use secure_tools::testing::caller;

    let dir = tempfile::tempdir().unwrap();
    // Takes connections and never answers, so that the first check gives up before its connection fails.
    let (port, held) = silent_listener().await;
    let tester = counting_through_redis(port, "late");
    let someone = caller("someone", "t.call");
    let first = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(first.code(), Some("rate_limit_unavailable"), "{first:?}");
    // The silent server goes (its connections closed: the connection being made fails), then Redis comes.
    held.abort();
    let _ = held.await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _redis = redis_on(dir.path(), port);
    let after = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(after.code(), None, "{after:?}");
}

/// A TCP proxy to `127.0.0.1:target` that holds every chunk `delay` before passing it on, each way, and a new
/// connection's first bytes a round trip more (its handshake): a Redis far away on the network.
async fn slow_proxy(target: u16, delay: Duration) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            // A connection's handshake takes a round trip too: what the client sends first waits for it.
            tokio::time::sleep(delay * 2).await;
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            for (mut from, mut to) in [
                (
                    Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                    Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                ),
                (Box::new(server_read), Box::new(client_write)),
            ] {
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 16 * 1024];
                    while let Ok(read) = from.read(&mut buffer).await {
                        if read == 0 {
                            return;
                        }
                        tokio::time::sleep(delay).await;
                        if to.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    port
}

/// Red-team finding: making a connection to Redis (connecting, then the client's own first command, then the
/// script) had to fit in one check's 500 ms, and was dropped when it did not: with a round trip of 200 ms, enough for
/// every check on an open connection, no connection was ever made, and every call was refused (or, in `allow` mode,
/// let through unlimited) for as long as the latency lasted. A connection being made goes on past the check that
/// began it, so the checks after it use it.
#[tokio::test]
async fn a_redis_far_away_is_connected_to_and_then_checks_pass() {
    use secure_tools::testing::caller;

    let dir = tempfile::tempdir().unwrap();
    let (_redis, port) = redis(dir.path());
    let far = slow_proxy(port, Duration::from_millis(100)).await;
    let tester = counting_through_redis(far, "far");
    let someone = caller("someone", "t.call");
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(
            tester
                .call(&someone, "counted", json!({}))
                .await
                .code()
                .map(str::to_owned),
        );
    }
    // The first checks may find the connection still being made; from some point on, every check passes.
    let passed = codes.iter().rev().take_while(|code| code.is_none()).count();
    assert!(passed >= 4, "{codes:?}");
}

/// A TCP proxy to `127.0.0.1:target` whose connections made while it garbles are answered with what Redis never
/// sends (an HTTP error, as a proxy or another service on the port would answer), then kept open or closed;
/// connections made otherwise are served.
struct Garbler {
    port: u16,
    garbling: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Garbler {
    async fn start(target: u16, close_after: bool) -> Garbler {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let garbling = Arc::new(AtomicBool::new(false));
        let garbles = garbling.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if garbles.load(Ordering::SeqCst) {
                    tokio::spawn(async move {
                        let mut buffer = vec![0u8; 16 * 1024];
                        while let Ok(read) = client.read(&mut buffer).await {
                            if read == 0 {
                                return;
                            }
                            let junk =
                                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
                            if client.write_all(junk).await.is_err() || close_after {
                                return;
                            }
                        }
                    });
                    continue;
                }
                let server = tokio::net::TcpStream::connect(("127.0.0.1", target))
                    .await
                    .unwrap();
                tokio::spawn(async move {
                    let mut client = client;
                    let mut server = server;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Garbler { port, garbling }
    }
}

/// Red-team finding: one answer that is not Redis's (an HTTP error from whatever held the port while Redis was
/// down) left the connection unreadable, and every later check was refused `rate_limit_unavailable` (or, with
/// `allow`, went through unlimited) until a restart, Redis back or not: the connection was replaced only after a
/// timeout, and the manager reconnects only after a dropped connection. A connection that fails a check in any
/// way is replaced now.
#[tokio::test]
async fn a_connection_to_redis_that_answers_garbage_is_replaced() {
    use secure_tools::testing::caller;

    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (_redis, port) = redis(dir.path());
    for close_after in [false, true] {
        let proxy = Garbler::start(port, close_after).await;
        let tester = counting_through_redis(proxy.port, "garbled");
        let someone = caller("someone", "t.call");
        proxy.garbling.store(true, Ordering::SeqCst);
        let garbled = tester.call(&someone, "counted", json!({})).await;
        assert_eq!(
            garbled.code(),
            Some("rate_limit_unavailable"),
            "{close_after}: {garbled:?}"
        );
        proxy.garbling.store(false, Ordering::SeqCst);
        for _ in 0..3 {
            let after = tester.call(&someone, "counted", json!({})).await;
            assert_eq!(
                after.code(),
                None,
                "{close_after}: Redis answers again: {after:?}"
            );
        }
    }
}

/// Red-team finding: one answer declaring a bulk string of gigabytes (`$3000000000`, from whatever holds the Redis
/// port, or anyone on the path to it) was read whole after its check had given up, the server's memory peaking at
/// twice the declared size. What a connection reads is bounded (a check's answer is two integers): past the bound,
/// the connection is closed, and the next check connects anew.
#[tokio::test]
async fn a_flood_on_the_redis_connection_is_not_read_whole() {
    use secure_tools::testing::caller;

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const DECLARED: u64 = 256 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (_redis, port) = redis(dir.path());
    // A proxy to Redis that, once flooding, answers the next command with the head of a 256 MiB bulk string, then
    // its bytes for as long as the client reads them.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap().port();
    let flooding = Arc::new(AtomicBool::new(false));
    let flooded = Arc::new(AtomicU64::new(0));
    let flood_ended = Arc::new(AtomicBool::new(false));
    let (floods, sent, ended) = (flooding.clone(), flooded.clone(), flood_ended.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (floods, sent, ended) = (floods.clone(), sent.clone(), ended.clone());
            tokio::spawn(async move {
                let (mut from_client, to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let to_client = Arc::new(tokio::sync::Mutex::new(to_client));
                let answering = to_client.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 16 * 1024];
                    while let Ok(read) = from_server.read(&mut buffer).await {
                        let mut to_client = answering.lock().await;
                        if read == 0 || to_client.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut buffer = vec![0u8; 16 * 1024];
                while let Ok(read) = from_client.read(&mut buffer).await {
                    if read == 0 {
                        return;
                    }
                    if !floods.load(Ordering::SeqCst) {
                        if to_server.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let mut to_client = to_client.lock().await;
                    let head = format!("${DECLARED}\r\n");
                    if to_client.write_all(head.as_bytes()).await.is_ok() {
                        let chunk = vec![b'x'; 64 * 1024];
                        while sent.load(Ordering::SeqCst) < DECLARED
                            && to_client.write_all(&chunk).await.is_ok()
                        {
                            sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                        }
                    }
                    ended.store(true, Ordering::SeqCst);
                    return;
                }
            });
        }
    });
    let tester = counting_through_redis(proxy, "flood");
    let someone = caller("someone", "t.call");
    let first = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(first.code(), None, "{first:?}");
    flooding.store(true, Ordering::SeqCst);
    let flooded_call = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(
        flooded_call.code(),
        Some("rate_limit_unavailable"),
        "{flooded_call:?}"
    );
    let waited = std::time::Instant::now();
    while !flood_ended.load(Ordering::SeqCst) {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "the flood went on for 30 s: {} bytes read",
            flooded.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let read = flooded.load(Ordering::SeqCst);
    assert!(read < 32 << 20, "{read} bytes of the flood were read");
    flooding.store(false, Ordering::SeqCst);
    let after = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(after.code(), None, "Redis answers again: {after:?}");
}

/// Sends one command to the Redis at `port` on a connection of its own and returns its answer as text.
async fn redis_command(port: u16, args: &[&str]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    socket.write_all(command.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 64 * 1024];
    let read = socket.read(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer[..read]).into_owned()
}

/// How many connections the Redis at `port` has accepted since it started (this command's own included).
async fn redis_connections(port: u16) -> u64 {
    let info = redis_command(port, &["INFO", "stats"]).await;
    info.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Trial-left gap: an error Redis answered (out of memory under `maxmemory`, say) replaced the connection as a
/// broken one would be, so under load every check connected anew (about 60 connections a second), and the log
/// said Redis "cannot be reached" while it answered. An error Redis answers leaves the connection in use (the
/// call is refused `rate_limit_unavailable`, as before), and the log names Redis's error code.
#[tokio::test]
async fn an_error_redis_answers_keeps_the_connection() {
    use secure_tools::testing::caller;

    let dir = tempfile::tempdir().unwrap();
    let (_redis, port) = redis(dir.path());
    let tester = counting_through_redis(port, "oom");
    let someone = caller("someone", "t.call");
    let first = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(first.code(), None, "{first:?}");
    let before = redis_connections(port).await;
    let set = redis_command(port, &["CONFIG", "SET", "maxmemory", "1"]).await;
    assert!(set.starts_with("+OK"), "{set}");
    for _ in 0..10 {
        let refused = tester.call(&someone, "counted", json!({})).await;
        assert_eq!(
            refused.code(),
            Some("rate_limit_unavailable"),
            "{refused:?}"
        );
    }
    let set = redis_command(port, &["CONFIG", "SET", "maxmemory", "0"]).await;
    assert!(set.starts_with("+OK"), "{set}");
    let after = tester.call(&someone, "counted", json!({})).await;
    assert_eq!(after.code(), None, "{after:?}");
    // The only connections made since are the test's own: its two commands and this count.
    assert_eq!(redis_connections(port).await - before, 3);
}

/// The status `/healthz` of the server on `port` answers.
async fn health(client: &reqwest::Client, port: u16) -> u16 {
    client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits, up to `within`, for `/healthz` of the server on `port` to answer `status`.
async fn health_becomes(client: &reqwest::Client, port: u16, status: u16, within: Duration) {
    let started = Instant::now();
    loop {
        let now = health(client, port).await;
        if now == status {
            return;
        }
        assert!(
            started.elapsed() < within,
            "/healthz still answers {now}, not {status}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Left open by the last rounds: a replica cut off from Redis refused every call (`rate_limit_unavailable`) while
/// its `/healthz` answered `200`, so a balancer went on sending it its share of the traffic, and nothing at the
/// start said Redis was missing. A replica whose every call needs Redis (the set's rate kept there, calls refused
/// without it) is now unhealthy while Redis does not answer, and healthy again when it does; one configured to let
/// calls through unlimited stays healthy.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_cannot_reach_redis_to_check_its_calls_is_not_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_root(dir.path());
    let (redis_server, redis_port) = redis(dir.path());
    let redis_url = format!("redis://127.0.0.1:{redis_port}/0");
    let holder = common::HeldPort::new();
    let resource = format!("http://127.0.0.1:{}/mcp", holder.port());
    let limited = ["--rate-limit", "10/min", "--rate-limit-redis", &redis_url];
    let refusing = replica(dir.path(), 0, &data, &resource, &limited);
    let allowing = replica(
        dir.path(),
        1,
        &data,
        &resource,
        &[&limited[..], &["--rate-limit-redis-unavailable", "allow"]].concat(),
    );
    let client = reqwest::Client::new();
    let url = |replica: &Replica| format!("http://127.0.0.1:{}/mcp", replica.port);
    let alice = token(&resource, "alice");
    assert_eq!(health(&client, refusing.port).await, 200);
    assert_eq!(health(&client, allowing.port).await, 200);

    drop(redis_server);
    health_becomes(&client, refusing.port, 503, Duration::from_secs(5)).await;
    let refused = read(&client, &url(&refusing), &alice, 1).await.unwrap();
    assert_eq!(
        refused["_meta"]["secure-tools/refusal"]["code"], "rate_limit_unavailable",
        "{refused}"
    );
    assert_eq!(health(&client, allowing.port).await, 200);
    let let_through = read(&client, &url(&allowing), &alice, 2).await.unwrap();
    assert_eq!(let_through["isError"], false, "{let_through}");

    let _redis_again = redis_on(dir.path(), redis_port);
    health_becomes(&client, refusing.port, 200, Duration::from_secs(5)).await;
    let served = read(&client, &url(&refusing), &alice, 3).await.unwrap();
    assert_eq!(served["isError"], false, "{served}");
}

/// The same at the start: a replica started while its Redis is down says so in its log before any call, and is
/// not healthy until Redis answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_started_without_its_redis_says_so_and_is_not_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_root(dir.path());
    let redis_port = common::free_port();
    let redis_url = format!("redis://127.0.0.1:{redis_port}/0");
    let holder = common::HeldPort::new();
    let resource = format!("http://127.0.0.1:{}/mcp", holder.port());
    let mut child = replica_command(
        dir.path(),
        0,
        &data,
        &resource,
        &["--rate-limit", "10/min", "--rate-limit-redis", &redis_url],
    )
    .spawn()
    .unwrap();
    // Every line of its log, as it comes: the start's word about Redis may come before or after the line that
    // says where it listens.
    let (lines, said) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr).lines() {
            if lines.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let _server = Process(child);
    let (mut port, mut warned, mut log) = (None, false, String::new());
    while port.is_none() || !warned {
        let line = said
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no listening line and word about Redis in:\n{log}"));
        if let Some(at) = line.split("serving MCP over HTTP at ").nth(1) {
            let address: std::net::SocketAddr = at
                .split_whitespace()
                .next()
                .unwrap()
                .trim_start_matches("http://")
                .trim_end_matches("/mcp")
                .parse()
                .unwrap();
            port = Some(address.port());
        }
        warned |= line.contains("the rate limit's Redis cannot be reached");
        log.push_str(&line);
        log.push('\n');
    }
    let port = port.unwrap();
    let client = reqwest::Client::new();
    assert_eq!(health(&client, port).await, 503);
    let _redis = redis_on(dir.path(), redis_port);
    health_becomes(&client, port, 200, Duration::from_secs(5)).await;
}

/// A replica whose set's rate (`10/min`) is kept in a Redis of its own, and what it runs in.
struct RateKeptInRedis {
    _dir: tempfile::TempDir,
    _holder: common::HeldPort,
    _redis: Process,
    redis_port: u16,
    /// The resource URL its tokens are for.
    resource: String,
    server: Replica,
}

impl RateKeptInRedis {
    fn start() -> RateKeptInRedis {
        let dir = tempfile::tempdir().unwrap();
        let data = data_root(dir.path());
        let (redis_server, redis_port) = redis(dir.path());
        let redis_url = format!("redis://127.0.0.1:{redis_port}/0");
        let holder = common::HeldPort::new();
        let resource = format!("http://127.0.0.1:{}/mcp", holder.port());
        let server = replica(
            dir.path(),
            0,
            &data,
            &resource,
            &["--rate-limit", "10/min", "--rate-limit-redis", &redis_url],
        );
        RateKeptInRedis {
            _dir: dir,
            _holder: holder,
            _redis: redis_server,
            redis_port,
            resource,
            server,
        }
    }
}

/// `/healthz` asked without authentication, as often as anyone likes, asks Redis at most about once a second
/// (concurrent asks share one answer), so that it is no way to flood Redis.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_health_checks_does_not_reach_redis() {
    // Kept whole: its Redis and directories live as long as it.
    let kept = RateKeptInRedis::start();
    let (redis_port, server) = (kept.redis_port, &kept.server);
    let (client, server_port) = (reqwest::Client::new(), server.port);
    let started = Instant::now();
    let asks: Vec<_> = (0..400)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { health(&client, server_port).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for ask in asks {
        statuses.push(ask.await.unwrap());
    }
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let seconds = started.elapsed().as_secs() + 1;
    // Each health check's question is the checks' script (no call was made here).
    let stats = redis_command(redis_port, &["INFO", "commandstats"]).await;
    let calls = |command: &str| -> u64 {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    };
    let asked = calls("evalsha") + calls("eval");
    assert!(
        (1..=seconds + 1).contains(&asked),
        "{asked} questions to Redis for 400 health checks in {seconds} s"
    );
}

/// A second round's: the health check asked Redis `PING`, which passed while every check was refused (Redis out
/// of memory under `noeviction`, a read-only replica, writes paused): `/healthz` answered `200` to 59 checks while
/// 20 calls out of 20 were refused. It asks with the checks' own script now.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_refuses_the_checks_makes_the_replica_unhealthy() {
    // Kept whole: its Redis and directories live as long as it.
    let kept = RateKeptInRedis::start();
    let (redis_port, resource, server) = (kept.redis_port, &kept.resource, &kept.server);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/mcp", server.port);
    assert_eq!(health(&client, server.port).await, 200);
    redis_command(
        redis_port,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    )
    .await;
    redis_command(redis_port, &["CONFIG", "SET", "maxmemory", "1"]).await;
    health_becomes(&client, server.port, 503, Duration::from_secs(5)).await;
    let refused = read(&client, &url, &token(resource, "alice"), 1)
        .await
        .unwrap();
    assert_eq!(
        refused["_meta"]["secure-tools/refusal"]["code"], "rate_limit_unavailable",
        "{refused}"
    );
    redis_command(redis_port, &["CONFIG", "SET", "maxmemory", "0"]).await;
    health_becomes(&client, server.port, 200, Duration::from_secs(5)).await;
    let served = read(&client, &url, &token(resource, "alice"), 2)
        .await
        .unwrap();
    assert_eq!(served["isError"], false, "{served}");
}

/// `/healthz` of `tools` served in this process by the library's router.
async fn health_of(tools: &secure_tools::ToolSet<()>) -> u16 {
    use secure_tools::serve::{Auth, Settings};
    let settings = Settings::http(
        "127.0.0.1:0".parse().unwrap(),
        Auth::None {
            grant: secure_tools::Grant::none(),
        },
    );
    let app = secure_tools::serve::http::router(tools, &settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let status = health(&reqwest::Client::new(), port).await;
    server.abort();
    status
}

/// With only a tool's own rate kept in an unreachable Redis, the set's other tools still serve: `/healthz` stays
/// `200`. With the set's rate there, every call needs Redis: `503`.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_sets_rate_in_an_unreachable_redis_makes_the_server_unhealthy() {
    use secure_tools::call::shared_rate::RedisRates;
    use secure_tools::{Rate, ToolSet};
    let no_redis = common::HeldPort::new();
    let store = || {
        RedisRates::open(
            &format!("redis://127.0.0.1:{}/0", no_redis.port()),
            "health",
        )
        .unwrap()
    };
    let rate = Rate::per_minute(100).unwrap();
    let tools_own = ToolSet::builder(())
        .tool_with::<counted>(|options| options.rate_limit(rate))
        .rate_limit_store(store())
        .build()
        .unwrap();
    assert_eq!(health_of(&tools_own).await, 200);
    let sets = ToolSet::builder(())
        .tool::<counted>()
        .rate_limit(rate)
        .rate_limit_store(store())
        .build()
        .unwrap();
    assert_eq!(health_of(&sets).await, 503);
}

/// Behind HAProxy (`option forwardfor`, as the README's configuration has it), a replica told the balancer's address
/// (`--trusted-proxy`) records the client the balancer saw as `forwarded_for`, whatever `X-Forwarded-For` the client
/// sent itself; `remote_addr` stays the balancer's end of its connection. The client connects from 127.0.0.3, the
/// balancer to the replicas from 127.0.0.1.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_behind_the_balancer_records_the_client_it_forwarded_for() {
    let cluster = Cluster::start_with("100/min", &["--trusted-proxy", "127.0.0.1"]);
    let client = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap();
    let token = token(&cluster.resource, "alice");
    let answer = read_request(&client, &cluster.resource, &token, 1)
        // Forged: the balancer appends the address it saw after it.
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let calls = calls_by_id(&cluster.logs());
    let call = &calls[&1];
    assert_eq!(call["forwarded_for"], "127.0.0.3", "{call}");
    assert!(
        call["remote_addr"]
            .as_str()
            .is_some_and(|addr| addr.starts_with("127.0.0.1:")),
        "{call}"
    );
    cluster.stop_and_verify();
}

/// Left open by the last session: Redis's password could only be given in its URL, which a config file, `ps` or the
/// server's environment shows. It comes from a file now (`--rate-limit-redis-password-file`), as the HS256 secret
/// does: read at start, its final line break not part of it, warned of when others can read it; given in both
/// places, or without Redis, the start is refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_redis_password_comes_from_a_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = data_root(dir.path());
    let redis_port = common::free_port();
    let _redis = redis_with(
        dir.path(),
        redis_port,
        &["--requirepass", "correct horse battery"],
    );
    let redis_url = format!("redis://127.0.0.1:{redis_port}/0");
    let password = dir.path().join("redis-password");
    std::fs::write(&password, "correct horse battery\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let password = password.to_str().unwrap();
    let holder = common::HeldPort::new();
    let resource = format!("http://127.0.0.1:{}/mcp", holder.port());
    let limited = ["--rate-limit", "10/min", "--rate-limit-redis", &redis_url];
    let with_file = replica(
        dir.path(),
        0,
        &data,
        &resource,
        &[
            &limited[..],
            &["--rate-limit-redis-password-file", password],
        ]
        .concat(),
    );
    let without = replica(dir.path(), 1, &data, &resource, &limited);
    let client = reqwest::Client::new();
    let url = |replica: &Replica| format!("http://127.0.0.1:{}/mcp", replica.port);
    let alice = token(&resource, "alice");
    let served = read(&client, &url(&with_file), &alice, 1).await.unwrap();
    assert_eq!(served["isError"], false, "{served}");
    let refused = read(&client, &url(&without), &alice, 2).await.unwrap();
    assert_eq!(
        refused["_meta"]["secure-tools/refusal"]["code"], "rate_limit_unavailable",
        "{refused}"
    );

    // The URL names the user of an ACL (the README's, limited to the limits' keys and the checks' commands); the
    // file, its password.
    let acl_port = common::free_port();
    let _acl_redis = redis_with(
        dir.path(),
        acl_port,
        &[
            "--user",
            "replicas",
            "on",
            ">correct horse battery",
            "~secure-tools:*",
            "+evalsha",
            "+script|load",
            "+time",
            "+get",
            "+set",
            "--user",
            "default",
            "off",
        ],
    );
    let acl_url = format!("redis://replicas@127.0.0.1:{acl_port}/0");
    let as_user = replica(
        dir.path(),
        4,
        &data,
        &resource,
        &[
            "--rate-limit",
            "10/min",
            "--rate-limit-redis",
            &acl_url,
            "--rate-limit-redis-password-file",
            password,
        ],
    );
    for id in 3..=4 {
        let served = read(&client, &url(&as_user), &alice, id).await.unwrap();
        assert_eq!(served["isError"], false, "{served}");
    }

    // Readable by others: said at start.
    let shared = dir.path().join("shared-password");
    std::fs::write(&shared, "correct horse battery").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = common::KillOnDrop(
        replica_command(
            dir.path(),
            2,
            &data,
            &resource,
            &[
                &limited[..],
                &["--rate-limit-redis-password-file", shared.to_str().unwrap()],
            ]
            .concat(),
        )
        .spawn()
        .unwrap(),
    );
    let said = common::wait_until_listening(&mut child, "serving MCP over HTTP at", |_| {}).text();
    assert!(
        said.contains("warning") && said.contains("--rate-limit-redis-password-file"),
        "{said}"
    );
    assert!(!said.contains("correct horse"), "{said}");

    // In two places, empty, or with no Redis to give it to: refused, the password never shown.
    let empty = dir.path().join("empty-password");
    std::fs::write(&empty, " \t\n").unwrap();
    let with_password_in_url = format!("redis://:other@127.0.0.1:{redis_port}/0");
    for flags in [
        vec![
            "--rate-limit",
            "10/min",
            "--rate-limit-redis",
            &with_password_in_url,
            "--rate-limit-redis-password-file",
            password,
        ],
        [
            &limited[..],
            &["--rate-limit-redis-password-file", empty.to_str().unwrap()],
        ]
        .concat(),
        vec![
            "--rate-limit",
            "10/min",
            "--rate-limit-redis-password-file",
            password,
        ],
    ] {
        let (status, stderr) = common::refused_start(&mut replica_command(
            dir.path(),
            3,
            &data,
            &resource,
            &flags,
        ));
        assert!(!status.success(), "{flags:?}: {stderr}");
        assert!(
            stderr.contains("--rate-limit-redis-password-file"),
            "{flags:?}: {stderr}"
        );
        assert!(
            !stderr.contains("correct horse") && !stderr.contains("other@"),
            "{stderr}"
        );
    }
}
