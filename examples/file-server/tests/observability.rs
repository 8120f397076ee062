//! OpenTelemetry, end to end: the file server exports its spans, metrics and audit records (as logs) over OTLP to
//! a receiver built here on the official protocol messages (`opentelemetry-proto`), and serves Prometheus text.
//!
//! Over stdio the official Python SDK client makes the calls, one of them with the caller's trace in its `_meta`
//! (SEP-414); over HTTP a client sends it as a `traceparent` header. Either way the trace id the client sent is the
//! one in the server's span and in the call's audit records, and the span's id is in the records too.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use prost::Message;
use secure_tools_tests::interop::{PYTHON, install, repo_root, run};
use serde_json::{Value, json};

const SERVER: &str = env!("CARGO_BIN_EXE_secure-file-server");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const META_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const META_CALLER_SPAN: &str = "b7ad6b7169203331";

/// Each export received: its path (`/v1/traces`, ...) and its body.
type Exports = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP receiver on a loopback port: keeps the body of every export, by path.
struct Receiver {
    address: SocketAddr,
    received: Exports,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let received = Exports::default();
        let kept = received.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let kept = kept.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |request: hyper::Request<hyper::body::Incoming>| {
                                let kept = kept.clone();
                                async move {
                                    use http_body_util::BodyExt;
                                    let path = request.uri().path().to_owned();
                                    let body = request.into_body().collect().await?.to_bytes();
                                    kept.lock().unwrap().push((path, body.to_vec()));
                                    // An empty export response: everything accepted.
                                    Ok::<_, hyper::Error>(hyper::Response::new(
                                        http_body_util::Full::new(hyper::body::Bytes::new()),
                                    ))
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Receiver { address, received }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    fn bodies(&self, path: &str) -> Vec<Vec<u8>> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, body)| body.clone())
            .collect()
    }

    fn resource_spans(&self) -> Vec<ResourceSpans> {
        self.bodies("/v1/traces")
            .iter()
            .flat_map(|body| {
                ExportTraceServiceRequest::decode(&body[..])
                    .unwrap()
                    .resource_spans
            })
            .collect()
    }

    fn spans(&self) -> Vec<Span> {
        self.resource_spans()
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect()
    }

    fn service_names(&self) -> Vec<String> {
        self.resource_spans()
            .into_iter()
            .filter_map(|r| r.resource)
            .filter_map(|r| string_attribute(&r.attributes, "service.name"))
            .collect()
    }

    fn logs(&self) -> Vec<LogRecord> {
        self.bodies("/v1/logs")
            .iter()
            .flat_map(|body| {
                ExportLogsServiceRequest::decode(&body[..])
                    .unwrap()
                    .resource_logs
            })
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
            .collect()
    }

    /// The latest value of each counter data point and the count of each histogram, keyed by metric name and
    /// sorted attributes (cumulative temporality: the last export has the totals).
    fn metric_points(&self) -> BTreeMap<(String, String), f64> {
        let mut points = BTreeMap::new();
        for body in self.bodies("/v1/metrics") {
            let request = ExportMetricsServiceRequest::decode(&body[..]).unwrap();
            for metric in request
                .resource_metrics
                .into_iter()
                .flat_map(|r| r.scope_metrics)
                .flat_map(|s| s.metrics)
            {
                match metric.data {
                    Some(Data::Sum(sum)) => {
                        for point in sum.data_points {
                            let value = match point.value {
                                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)) => v as f64,
                                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(v)) => v,
                                None => continue,
                            };
                            points.insert((metric.name.clone(), labels(&point.attributes)), value);
                        }
                    }
                    Some(Data::Histogram(histogram)) => {
                        for point in histogram.data_points {
                            points.insert(
                                (metric.name.clone(), labels(&point.attributes)),
                                point.count as f64,
                            );
                        }
                    }
                    _ => {}
                }
            }
        }
        points
    }

    /// Waits until every signal has arrived with at least `spans` spans.
    fn wait_for(&self, spans: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.spans().len() >= spans
                && !self.bodies("/v1/metrics").is_empty()
                && !self.bodies("/v1/logs").is_empty()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the receiver got {} spans, {} metric exports, {} log exports",
            self.spans().len(),
            self.bodies("/v1/metrics").len(),
            self.bodies("/v1/logs").len()
        );
    }
}

fn string_of(value: &Option<AnyValue>) -> Option<String> {
    match value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| string_of(&kv.value))
}

fn labels(attributes: &[KeyValue]) -> String {
    let mut pairs: Vec<String> = attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key, string_of(&kv.value).unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn audit(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn otel_env(command: &mut Command, receiver: &Receiver) {
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_SERVICE_NAME", "observability-test")
        // Short batches, so a server killed by its client's shutdown timeout has already sent most of it.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200");
}

/// The file server over HTTP with bearer tokens (an HS256 secret) and the OpenTelemetry variables of
/// [`otel_env`], `greeting.txt` in its data root, and a token for `alice` with `files.read`.
struct HttpServer {
    child: common::KillOnDrop,
    url: String,
    /// What it said as it started: the address of its metrics, given `--http-metrics 127.0.0.1:0`.
    listening: common::Listening,
    audit_log: std::path::PathBuf,
    token: String,
    _dir: tempfile::TempDir,
}

impl HttpServer {
    /// Started with `configure`'s further flags and variables, once it listens.
    fn start(receiver: &Receiver, mut configure: impl FnMut(&mut Command)) -> HttpServer {
        const SECRET: &str = "observability-test-secret-0123456789";
        const ISSUER: &str = "https://issuer.test";
        let bearer = common::BearerHttp::new(SERVER, ISSUER, SECRET);
        std::fs::write(bearer.data.join("greeting.txt"), "hello\n").unwrap();
        let common::Started {
            child,
            url,
            listening,
            ..
        } = bearer.start(|command| {
            configure(command);
            otel_env(command, receiver);
        });
        let token = secure_tools::testing::hs256_token(
            SECRET,
            ISSUER,
            &url,
            "alice",
            "files.read",
            Duration::from_secs(600),
        );
        HttpServer {
            child,
            url,
            listening,
            audit_log: bearer.audit_log,
            token,
            _dir: bearer.dir,
        }
    }
}

/// A `read_file` call of `filename` over HTTP with `token`, with a `traceparent` header and a request `_meta` if
/// given.
async fn read_over_http(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    id: u64,
    filename: &str,
    traceparent: Option<&str>,
    meta: Option<Value>,
) -> reqwest::Result<reqwest::Response> {
    let mut params = json!({"name": "read_file", "arguments": {"filename": filename}});
    if let Some(meta) = meta {
        params["_meta"] = meta;
    }
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", format!("Bearer {token}"))
        .body(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
                .to_string(),
        );
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    request.send().await
}

/// SIGTERM: the server stops gracefully, exporting what it holds, and exits with success.
fn stop_gracefully(child: &mut std::process::Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_python_sdk_callers_trace_continues_through_the_span_the_records_and_the_logs() {
    install();
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let audit_log = dir.path().join("audit.jsonl");
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let root = repo_root();
    let mut command = Command::new(root.join(PYTHON));
    command
        .args(["interop/py_traced_calls.py", SERVER, &traceparent])
        .current_dir(&root)
        .env("DATA_ROOT", &data)
        .env("MCP_SCOPES", "files.read,files.write")
        .env("MCP_AUDIT_LOG", &audit_log);
    otel_env(&mut command, &receiver);
    let done = run(&mut command, Duration::from_secs(120));
    assert!(done.success, "{}", done.report(Duration::ZERO));
    receiver.wait_for(3);

    // The spans: one per call, the traced one a child of the caller's span in the caller's trace.
    let spans = receiver.spans();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    for span in &spans {
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(
            string_attribute(&span.attributes, "mcp.method.name").as_deref(),
            Some("tools/call")
        );
        assert_eq!(
            string_attribute(&span.attributes, "network.transport").as_deref(),
            Some("pipe")
        );
        assert!(string_attribute(&span.attributes, "jsonrpc.request.id").is_some());
    }
    let traced = spans
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE_ID)
        .expect("a span in the caller's trace");
    assert_eq!(traced.name, "tools/call write_file");
    assert_eq!(hex(&traced.parent_span_id), CALLER_SPAN);
    assert_eq!(traced.trace_state, "vendor=abc");
    assert_eq!(
        string_attribute(&traced.attributes, "gen_ai.tool.name").as_deref(),
        Some("write_file")
    );
    assert_eq!(
        string_attribute(&traced.attributes, "secure_tools.outcome").as_deref(),
        Some("ok")
    );
    let others: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) != TRACE_ID)
        .collect();
    assert_eq!(
        others.len(),
        2,
        "the untraced calls start traces of their own"
    );
    assert!(others.iter().all(|s| s.parent_span_id.is_empty()));
    let refused = others
        .iter()
        .find(|s| string_attribute(&s.attributes, "error.type").is_some())
        .unwrap();
    assert_eq!(
        string_attribute(&refused.attributes, "secure_tools.outcome").as_deref(),
        Some("invalid")
    );
    assert_eq!(
        refused.status.as_ref().map(|s| s.code),
        Some(2),
        "an error status"
    );
    assert_eq!(receiver.service_names()[0], "observability-test");

    // The audit file: the traced call's records carry the caller's trace, the span's id and the caller's span.
    let records = audit(&audit_log);
    let traced_calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["trace_id"] == TRACE_ID)
        .collect();
    assert_eq!(
        traced_calls
            .iter()
            .map(|r| r["event"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["call_started", "tool_call"]
    );
    for record in &traced_calls {
        assert_eq!(record["span_id"], hex(&traced.span_id), "{record}");
        assert_eq!(record["parent_span_id"], CALLER_SPAN, "{record}");
    }
    let calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "tool_call")
        .collect();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        let span = spans
            .iter()
            .find(|s| hex(&s.span_id) == call["span_id"].as_str().unwrap())
            .unwrap_or_else(|| panic!("no span for {call}"));
        assert_eq!(call["trace_id"], hex(&span.trace_id));
        assert_eq!(
            string_attribute(&span.attributes, "secure_tools.call_id").as_deref(),
            call["call_id"].as_str()
        );
    }

    // The logs: every line of the file, as written (chain fields and all), the calls' in their span's context.
    let logs = receiver.logs();
    let bodies: Vec<String> = logs
        .iter()
        .map(|log| string_of(&log.body).unwrap())
        .collect();
    let lines: Vec<String> = std::fs::read_to_string(&audit_log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        bodies, lines,
        "the log records are the audit file's lines, in order"
    );
    let traced_log = logs
        .iter()
        .find(|log| {
            log.event_name == "secure_tools.audit.tool_call" && hex(&log.trace_id) == TRACE_ID
        })
        .expect("the traced call's log record");
    assert_eq!(hex(&traced_log.span_id), hex(&traced.span_id));

    // The metrics: calls by tool and outcome, durations, refusals by code.
    let points = receiver.metric_points();
    let get = |name: &str, labels: &str| points.get(&(name.to_owned(), labels.to_owned())).copied();
    assert_eq!(
        get(
            "secure_tools.calls",
            "gen_ai.tool.name=write_file,secure_tools.outcome=ok"
        ),
        Some(1.0),
        "{points:#?}"
    );
    assert_eq!(
        get(
            "secure_tools.calls",
            "gen_ai.tool.name=read_file,secure_tools.outcome=ok"
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "secure_tools.calls",
            "gen_ai.tool.name=write_file,secure_tools.outcome=invalid"
        ),
        Some(1.0)
    );
    let code = calls.iter().find(|c| c["outcome"] == "invalid").unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        get(
            "secure_tools.refusals",
            &format!("gen_ai.tool.name=write_file,secure_tools.code={code}")
        ),
        Some(1.0)
    );
    let durations: f64 = points
        .iter()
        .filter(|((name, _), _)| name == "mcp.server.operation.duration")
        .map(|(_, count)| count)
        .sum();
    assert_eq!(durations, 3.0, "{points:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_the_traceparent_header_or_meta_continues_the_trace_and_metrics_are_served() {
    let receiver = Receiver::start();
    let HttpServer {
        mut child,
        url,
        listening,
        audit_log,
        token,
        _dir,
    } = HttpServer::start(&receiver, |command| {
        // Port 0: the server binds a port nobody holds and says which.
        command.args(["--http-metrics", "127.0.0.1:0"]);
    });
    let metrics_port = listening.address("metrics").port();
    let client = reqwest::Client::new();
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let answer = read_over_http(
        &client,
        &url,
        &token,
        1,
        "greeting.txt",
        Some(&traceparent),
        None,
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let refused = read_over_http(&client, &url, "not-a-token", 2, "greeting.txt", None, None)
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    // Prometheus text, on its own address.
    let text = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in\n{text}"))
            .to_owned()
    };
    assert!(line("secure_tools_calls_total{").contains(r#"gen_ai_tool_name="read_file""#));
    assert!(line("secure_tools_calls_total{").ends_with(" 1"));
    let failures = line("secure_tools_auth_failures_total{");
    assert!(
        failures.contains(r#"secure_tools_reason="invalid_token""#) && failures.ends_with(" 1"),
        "{failures}"
    );
    assert!(
        text.contains("mcp_server_operation_duration_seconds_count{"),
        "{text}"
    );
    // A page of another site that rebinds its name to this address sends that name as Host: refused (review
    // finding: the address checked no Host). By the address itself, or an allowed name, a scraper is answered.
    let rebound = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .header("host", format!("attacker.example:{metrics_port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    let by_name = client
        .get(format!("http://localhost:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_name.status(), 200);
    // A second `Host`, or a target naming another authority (absolute form), is refused as the MCP endpoint
    // refuses them (red-team finding: only the first `Host` was looked at, and never the target's).
    let raw = |request: String| {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.lines().next().unwrap_or_default().to_owned()
    };
    let doubled = raw(format!(
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{metrics_port}\r\nHost: attacker.example\r\nConnection: close\r\n\r\n"
    ));
    assert!(doubled.starts_with("HTTP/1.1 400"), "{doubled}");
    let absolute = raw(format!(
        "GET http://attacker.example/metrics HTTP/1.1\r\nHost: 127.0.0.1:{metrics_port}\r\nConnection: close\r\n\r\n"
    ));
    assert!(absolute.starts_with("HTTP/1.1 403"), "{absolute}");
    // Another path or method is refused, and recorded as the MCP endpoint's refusals are (they were answered by
    // axum's defaults, unrecorded).
    let elsewhere = client
        .get(format!("http://127.0.0.1:{metrics_port}/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    let posted = client
        .post(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 405);

    // Over HTTP too, a caller's trace context in the request's `_meta` (SEP-414) continues its trace.
    let meta_traceparent = format!("00-{META_TRACE_ID}-{META_CALLER_SPAN}-01");
    let meta = json!({ "traceparent": meta_traceparent });
    let answer = read_over_http(&client, &url, &token, 3, "greeting.txt", None, Some(meta))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    stop_gracefully(&mut child);
    receiver.wait_for(2);
    let spans = receiver.spans();
    let span = spans
        .iter()
        .find(|s| hex(&s.trace_id) == TRACE_ID)
        .expect("the span in the caller's trace");
    assert_eq!(hex(&span.parent_span_id), CALLER_SPAN);
    assert_eq!(
        string_attribute(&span.attributes, "network.transport").as_deref(),
        Some("tcp")
    );
    let records = audit(&audit_log);
    let refused = |reason: &str, method: &str, path: &str| {
        records
            .iter()
            .filter(|r| {
                r["event"] == "http_rejected"
                    && r["reason"] == reason
                    && r["method"] == method
                    && r["path"] == path
            })
            .count()
    };
    assert_eq!(refused("host_not_allowed", "GET", "/metrics"), 2);
    assert_eq!(refused("bad_request", "GET", "/metrics"), 1);
    assert_eq!(refused("not_found", "GET", "/admin"), 1);
    assert_eq!(refused("method_not_allowed", "POST", "/metrics"), 1);
    let call = records.iter().find(|r| r["event"] == "tool_call").unwrap();
    assert_eq!(call["trace_id"], TRACE_ID);
    assert_eq!(call["span_id"], hex(&span.span_id));
    let meta_span = spans
        .iter()
        .find(|s| hex(&s.trace_id) == META_TRACE_ID)
        .expect("the span in the trace the caller put in `_meta`");
    assert_eq!(hex(&meta_span.parent_span_id), META_CALLER_SPAN);
    let meta_call = records
        .iter()
        .find(|r| r["event"] == "tool_call" && r["request_id"] == 3)
        .unwrap();
    assert_eq!(meta_call["trace_id"], META_TRACE_ID);
    assert_eq!(meta_call["span_id"], hex(&meta_span.span_id));
    let points = receiver.metric_points();
    assert_eq!(
        points.get(&(
            "secure_tools.auth.failures".to_owned(),
            "secure_tools.reason=invalid_token".to_owned()
        )),
        Some(&1.0),
        "{points:#?}"
    );
}

/// A collector that cannot be reached is not silent: the SDK's failed exports are on the server's stderr (its
/// log), and nothing a tool was sent in secret is.
/// The file server over stdio, exporting to `endpoint` with `env` besides, writes `content` to `note.txt` in
/// `dir`'s data root, then its input ends: what it printed as it stopped, and how long the stop took from the end
/// of its input.
fn write_over_stdio_then_stop(
    dir: &Path,
    endpoint: &str,
    content: &str,
    env: &[(&str, &str)],
) -> (std::process::Output, Duration) {
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    let mut child = Command::new(SERVER)
        .env("DATA_ROOT", &data)
        .env("MCP_SCOPES", "files.read,files.write")
        .env("MCP_AUDIT_LOG", dir.join("audit.jsonl"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let requests = [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                          "clientInfo": {"name": "test", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "write_file",
                          "arguments": {"filename": "note.txt", "content": content}}}),
    ];
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for request in &requests {
        use std::io::Write;
        writeln!(stdin, "{request}").unwrap();
    }
    // Both answers, then end of input: the server stops and flushes its exporters, each signal with something
    // batched (the call's span, its metrics, its records as logs).
    for _ in 0..2 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(line.contains("\"result\""), "{line}");
    }
    let stopping = Instant::now();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let took = stopping.elapsed();
    assert!(output.status.success());
    assert_eq!(
        std::fs::read_to_string(data.join("note.txt")).unwrap(),
        content
    );
    (output, took)
}

#[test]
fn failed_exports_are_reported_on_stderr_without_secrets() {
    const SECRET_CONTENT: &str = "secret-content-7f3a9c";
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: the port is held, never listening, to the end of the test (one found free and
    // closed again could be taken by another process's listener in between).
    let held = common::HeldPort::new();
    let (output, _) = write_over_stdio_then_stop(
        dir.path(),
        &format!("http://127.0.0.1:{}", held.port()),
        SECRET_CONTENT,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
        ],
    );
    drop(held);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for failure in [
        "BatchSpanProcessor.ExportError",
        "BatchLogProcessor.ExportError",
    ] {
        assert!(stderr.contains(failure), "no {failure} in:\n{stderr}");
    }
    assert!(!stderr.contains(SECRET_CONTENT), "{stderr}");
}

/// Red-team finding: the metrics address (unauthenticated, by design) shared one throttle of refusal records with the
/// MCP endpoint, so some ten requests a second to its unknown paths kept every record of the MCP endpoint's refused
/// tokens out of the audit (counted only, with the metrics' 404s, in one `audit_suppressed`). Each listener has its
/// own.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_on_the_metrics_address_does_not_silence_the_mcp_endpoints_refusals() {
    let receiver = Receiver::start();
    let HttpServer {
        mut child,
        url,
        listening,
        audit_log,
        _dir,
        ..
    } = HttpServer::start(&receiver, |command| {
        command.args(["--http-metrics", "127.0.0.1:0"]);
    });
    let metrics_port = listening.address("metrics").port();
    let client = reqwest::Client::new();
    for n in 0..300 {
        let answer = client
            .get(format!("http://127.0.0.1:{metrics_port}/flood{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404);
    }
    for id in 0..5 {
        let refused = read_over_http(&client, &url, "not-a-token", id, "greeting.txt", None, None)
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
    }
    stop_gracefully(&mut child);
    let records = audit(&audit_log);
    let unauthorized = records
        .iter()
        .filter(|r| r["event"] == "http_rejected" && r["status"] == 401)
        .count();
    assert_eq!(unauthorized, 5, "{records:#?}");
}

/// Red-team finding: the exporter's HTTP client followed redirects without a word, so whatever answered on the
/// collector's address could send every signal, the audit records and a collector's key header among them, to any
/// other host, while the server's log showed nothing. A redirect is now a failed export, reported.
#[test]
fn a_collector_redirecting_elsewhere_gets_nothing_followed() {
    use std::io::{Read, Write};
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let elsewhere_addr = elsewhere.local_addr().unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let redirector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", redirector.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in redirector.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                // Each request whole (head, then the body its length gives), then a redirect, keeping the connection.
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|value| value.trim().parse().ok())
                        .unwrap_or(0);
                    while buffer.len() < head_end + 4 + length {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buffer.drain(..head_end + 4 + length);
                    let answer = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{elsewhere_addr}/stolen\r\nContent-Length: 0\r\n\r\n"
                    );
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let (output, _) = write_over_stdio_then_stop(
        dir.path(),
        &endpoint,
        "hello",
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "100"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=collector-key-5d1e"),
        ],
    );
    let followed = std::iter::from_fn(|| elsewhere.accept().ok()).count();
    assert_eq!(followed, 0, "an export followed the redirect");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ExportError"),
        "no failed export in:\n{stderr}"
    );
    assert!(!stderr.contains("collector-key-5d1e"), "{stderr}");
}

/// Trial finding: with a collector that takes connections but never answers, the stop waited for each signal's
/// export in turn (traces, metrics, logs: 5 s each, about 15 s after the last record), past the 10 s a container
/// runtime or a host gives a stopping server before it kills it. The signals are now flushed together: the stop
/// takes one export's timeout, over stdio the runner's 1 s. (The audit file is whole before this wait starts.)
#[test]
fn a_silent_collector_holds_the_stop_for_one_export_timeout_not_one_per_signal() {
    let dir = tempfile::tempdir().unwrap();
    // Connections complete in the kernel's backlog; nothing ever reads or answers them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let (output, took) = write_over_stdio_then_stop(dir.path(), &endpoint, "hello", &[]);
    drop(silent);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The exports were still waiting (so the wait below is theirs), and the stop took one bound, not three: over
    // stdio, the 1 s the runner gives them (an OTel round's: the SDK's 5 s), then the process ends without them.
    assert!(stderr.contains("did not end in time"), "{stderr}");
    assert!(
        took < Duration::from_secs(10),
        "stopped after {took:?}:\n{stderr}"
    );
    let records = audit(&dir.path().join("audit.jsonl"));
    assert_eq!(records.last().unwrap()["event"], "server_stop");
}

/// With traces not exported (`OTEL_TRACES_EXPORTER=none`) a call makes no span, yet its records and their log
/// records still carry the caller's trace; and the metrics of calls that succeeded (recorded through instruments
/// bound per tool) have the same attributes as those of a refused call, less `error.type`.
#[tokio::test(flavor = "multi_thread")]
async fn without_traces_the_records_keep_the_callers_trace_and_metrics_keep_their_attributes() {
    let receiver = Receiver::start();
    let HttpServer {
        mut child,
        url,
        audit_log,
        token,
        _dir,
        ..
    } = HttpServer::start(&receiver, |command| {
        command.env("OTEL_TRACES_EXPORTER", "none");
    });
    let client = reqwest::Client::new();
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    for (id, filename) in [(1, "greeting.txt"), (2, "greeting.txt"), (3, ".hidden")] {
        let answer = read_over_http(
            &client,
            &url,
            &token,
            id,
            filename,
            Some(&traceparent),
            None,
        )
        .await
        .unwrap();
        assert_eq!(answer.status(), 200);
    }
    stop_gracefully(&mut child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while (receiver.bodies("/v1/logs").is_empty() || receiver.bodies("/v1/metrics").is_empty())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }

    assert!(receiver.bodies("/v1/traces").is_empty());
    let records = audit(&audit_log);
    let calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "tool_call")
        .collect();
    assert_eq!(calls.len(), 3);
    for call in &calls {
        // No span of the server's: the records name the caller's as the parent, and no span as the call's own
        // (the caller's span once stood in for it).
        assert_eq!(call["trace_id"], TRACE_ID, "{call}");
        assert_eq!(call["parent_span_id"], CALLER_SPAN, "{call}");
        assert!(call.get("span_id").is_none(), "{call}");
    }
    let logs = receiver.logs();
    let call_logs: Vec<&LogRecord> = logs
        .iter()
        .filter(|l| l.event_name == "secure_tools.audit.tool_call")
        .collect();
    assert_eq!(call_logs.len(), 3);
    assert!(call_logs.iter().all(|l| hex(&l.trace_id) == TRACE_ID));

    let points = receiver.metric_points();
    let get = |name: &str, labels: &str| points.get(&(name.to_owned(), labels.to_owned())).copied();
    assert_eq!(
        get(
            "secure_tools.calls",
            "gen_ai.tool.name=read_file,secure_tools.outcome=ok"
        ),
        Some(2.0),
        "{points:#?}"
    );
    assert_eq!(
        get(
            "mcp.server.operation.duration",
            "gen_ai.tool.name=read_file,mcp.method.name=tools/call,network.transport=tcp"
        ),
        Some(2.0),
        "{points:#?}"
    );
    let refused: Vec<&(String, String)> = points
        .keys()
        .filter(|(name, labels)| {
            name == "mcp.server.operation.duration" && labels.contains("error.type=")
        })
        .collect();
    assert_eq!(refused.len(), 1, "{points:#?}");
    assert!(
        refused[0].1.starts_with("error.type=")
            && refused[0].1.ends_with(
                ",gen_ai.tool.name=read_file,mcp.method.name=tools/call,network.transport=tcp"
            ),
        "{points:#?}"
    );
}
