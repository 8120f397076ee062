//! Per-call cost of the policy, in process: one `tools/call` of the same handler dispatched by rmcp's own
//! `#[tool_router]` server and by a `SecureServer` (scope check, argument check, validation, audit), both called
//! as rmcp's service loop calls them, `ServerHandler::call_tool` with a `RequestContext`.
//!
//! Audit variants: kept in memory (a ring of the last 1,024 records), serialized as JSON lines into a writer that
//! drops them (`io::sink`), appended to a file, and ignored (a sink that does nothing), to isolate the audit's
//! share.
//!
//! Guard variants, all with the audit in memory: the defaults (a 60 s timeout and a concurrency limit of 64 for
//! the set) are in every secure variant; `no_concurrency_limit` removes the set's limit, `rate_limit` adds a rate
//! per caller and tool that is never reached, `guard_fn` adds a guard of the user's that passes, `call_started`
//! calls a tool not marked `read_only` (one more record per call). `yield` variants use a handler that waits once
//! (it yields before answering), the only case where the timeout arms a timer and the cancellation waits are set
//! up: compared with the same handler on rmcp.
//!
//! `cargo bench -p secure-tools --bench dispatch`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rmcp::ServerHandler;
use rmcp::service::{RequestContext, RoleServer};
use secure_tools::guard::{self, GuardStage};
use secure_tools::{JsonLinesSink, Rate};

#[allow(dead_code)]
mod common;
use common::{Ignore, Plain, Ring, params, params_for, peer, secure, secure_with};

fn dispatch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = peer(&runtime);
    let context =
        || RequestContext::<RoleServer>::new(rmcp::model::RequestId::Number(1), peer.clone());
    let dir = tempfile::tempdir().unwrap();

    let plain = Plain::new();
    let memory = secure(Ring::default());
    let json = secure(JsonLinesSink::new(std::io::sink()));
    let file = secure(JsonLinesSink::append_to(dir.path().join("audit.jsonl")).unwrap());
    let ignored = secure(Ignore);

    let mut group = c.benchmark_group("tools_call");
    group.bench_function("rmcp_tool_router", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(plain.call_tool(params(), context()).await.unwrap()) })
    });
    group.bench_function("secure_audit_in_memory", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(memory.call_tool(params(), context()).await.unwrap()) })
    });
    group.bench_function("secure_audit_json_lines_discarded", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(json.call_tool(params(), context()).await.unwrap()) })
    });
    group.bench_function("secure_audit_to_file", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(file.call_tool(params(), context()).await.unwrap()) })
    });
    group.bench_function("secure_audit_ignored", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(ignored.call_tool(params(), context()).await.unwrap()) })
    });
    group.finish();

    // The cost of each built-in guard and of the `call_started` record, side by side, audit in memory.
    let no_concurrency = secure_with(Ring::default(), |b| b.max_concurrent_calls(None));
    let rate = secure_with(Ring::default(), |b| {
        b.rate_limit(Rate::new(1_000_000, std::time::Duration::from_secs(1)).unwrap())
    });
    let user_guard = secure_with(Ring::default(), |b| {
        b.guard(guard::from_fn(GuardStage::AfterDecoding, |call| {
            black_box(call.caller().id());
            Ok(())
        }))
    });
    let mut group = c.benchmark_group("guards");
    group.bench_function("rmcp_tool_router", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(plain.call_tool(params(), context()).await.unwrap()) })
    });
    group.bench_function("secure_defaults", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(memory.call_tool(params(), context()).await.unwrap()) })
    });
    group.bench_function("secure_no_concurrency_limit", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(no_concurrency.call_tool(params(), context()).await.unwrap())
        })
    });
    group.bench_function("secure_rate_limit", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(rate.call_tool(params(), context()).await.unwrap()) })
    });
    group.bench_function("secure_guard_fn", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(user_guard.call_tool(params(), context()).await.unwrap()) })
    });
    group.bench_function("secure_call_started", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                memory
                    .call_tool(params_for("echo_effect"), context())
                    .await
                    .unwrap(),
            )
        })
    });
    group.bench_function("rmcp_yield", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                plain
                    .call_tool(params_for("echo_yield"), context())
                    .await
                    .unwrap(),
            )
        })
    });
    group.bench_function("secure_yield", |b| {
        b.to_async(&runtime).iter(|| async {
            black_box(
                memory
                    .call_tool(params_for("echo_yield"), context())
                    .await
                    .unwrap(),
            )
        })
    });
    group.finish();
}

/// The audit file's chain: the same call with its record appended to a file unchained (as `JsonLinesSink` does),
/// chained (SHA-256), chained under a key (HMAC-SHA-256), and keyed with each durability mode.
fn audit_file(c: &mut Criterion) {
    use secure_tools::audit::{ChainKey, ChainedFileSink, Durability};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = peer(&runtime);
    let context =
        || RequestContext::<RoleServer>::new(rmcp::model::RequestId::Number(1), peer.clone());
    // In the target directory: on the machine's disk, as an audit log would be (not a tmpfs).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let key = ChainKey::from_bytes(&[7; 32]).unwrap();
    let chained = |name: &str, key: Option<&ChainKey>, durability: Durability| {
        secure(
            ChainedFileSink::append_to(dir.path().join(name), key.cloned())
                .unwrap()
                .with_durability(durability),
        )
    };
    let variants = [
        (
            "json_lines_unchained",
            secure(JsonLinesSink::append_to(dir.path().join("plain.jsonl")).unwrap()),
        ),
        ("chained", chained("chained.jsonl", None, Durability::Write)),
        (
            "chained_keyed",
            chained("keyed.jsonl", Some(&key), Durability::Write),
        ),
        (
            "chained_keyed_sync_every_100ms",
            chained(
                "interval.jsonl",
                Some(&key),
                Durability::SyncEvery(std::time::Duration::from_millis(100)),
            ),
        ),
        (
            "chained_keyed_sync_each_record",
            chained("each.jsonl", Some(&key), Durability::SyncEachRecord),
        ),
    ];
    #[cfg_attr(not(feature = "otel"), allow(unused_mut))]
    let mut variants = Vec::from(variants);
    // With `--features otel`: the chained file and every OpenTelemetry signal (a span per call, the metrics, each
    // record as a log), exported over OTLP/HTTP by the SDK's batch exporters to a port where nothing listens. What
    // the call pays is the same whether an export then succeeds (building and queueing the span, the metric
    // updates, the log record); the exports themselves run on the SDK's own threads.
    #[cfg(feature = "otel")]
    {
        // SAFETY: set before any thread of this benchmark reads the environment.
        unsafe {
            std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9");
        }
        let otel = secure_tools::telemetry::Otel::from_env("bench", false)
            .unwrap()
            .unwrap();
        // As the runners do: the log records are the file's lines as written.
        let sink = ChainedFileSink::append_to(dir.path().join("otel.jsonl"), None)
            .unwrap()
            .with_mirror(std::sync::Arc::new(otel.audit_logs().unwrap()));
        let telemetry = otel.telemetry();
        variants.push((
            "chained_otel",
            secure_with(sink, |builder| builder.telemetry(telemetry)),
        ));
        std::mem::forget(otel);
    }
    let mut group = c.benchmark_group("audit_file");
    for (name, server) in &variants {
        if name.ends_with("each_record") {
            group.sample_size(20);
        }
        group.bench_function(*name, |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(server.call_tool(params(), context()).await.unwrap()) })
        });
    }
    group.finish();
}

criterion_group!(benches, dispatch, audit_file);
criterion_main!(benches);
