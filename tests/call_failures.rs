//! Exactly one `tool_call` record per call, whatever happens, and no effect without a record: failing and
//! panicking sinks, timeouts, dropped calls, panics on other threads, shutdown. And the seam: guards, argument
//! rules and limits refuse inside the audited region, each with one record.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secure_tools::audit::{AuditError, AuditRecord};
use secure_tools::guard::{self, Check, Guard, GuardCall, GuardStage};
use secure_tools::{
    ArgsOf, AuditSink, CallContext, CancellationToken, MemorySink, Outcome, Rate, Refusal, State,
    ToolError, ToolSet, secure_tool, task,
};
use secure_tools_tests::{caller, request};
use serde_json::{Value, json};

/// What the tools did: effects they made, and whether a stopped one ever got past its wait.
#[derive(Clone, Default)]
struct Effects {
    writes: Arc<AtomicUsize>,
    woke: Arc<AtomicBool>,
    token_cancelled: Arc<AtomicBool>,
    gate: Arc<tokio::sync::Notify>,
    /// A call's context, kept past the call by a tool (as a task it started would keep it).
    kept: Arc<Mutex<Option<CallContext>>>,
    /// A call's cancellation token, kept past the call by a tool.
    kept_token: Arc<Mutex<Option<CancellationToken>>>,
}

/// Keeps its call's context for later, as a handler's background task might.
#[secure_tool(scope = "t.read", read_only, timeout = "100ms")]
async fn keeper(cx: CallContext, State(effects): State<Effects>) -> Result<String, ToolError> {
    *effects.kept.lock().unwrap() = Some(cx.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    Ok("woke".into())
}

/// Writes a record of the world (counts an effect).
#[secure_tool(scope = "t.write", audit_redact = ["secret"])]
async fn effect(
    /// A secret.
    secret: String,
    State(effects): State<Effects>,
) -> Result<String, ToolError> {
    effects.writes.fetch_add(1, Ordering::SeqCst);
    Ok(format!("{} bytes", secret.len()))
}

/// Reads something (read-only: no `call_started` record).
#[secure_tool(scope = "t.read", read_only)]
async fn look(State(effects): State<Effects>) -> Result<String, ToolError> {
    Ok(effects.writes.load(Ordering::SeqCst).to_string())
}

/// Sleeps far longer than its time limit; hands its token to a task that reports when it is cancelled.
#[secure_tool(scope = "t.read", read_only, timeout = "100ms")]
async fn sleepy(
    cancel: CancellationToken,
    State(effects): State<Effects>,
) -> Result<String, ToolError> {
    let watcher = effects.clone();
    task::spawn(async move {
        cancel.cancelled().await;
        watcher.token_cancelled.store(true, Ordering::SeqCst);
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    effects.woke.store(true, Ordering::SeqCst);
    Ok("woke".into())
}

/// Waits at the gate: for concurrency and shutdown tests.
#[secure_tool(scope = "t.read", read_only, concurrency = 1)]
async fn gated(State(effects): State<Effects>) -> Result<String, ToolError> {
    effects.gate.notified().await;
    effects.woke.store(true, Ordering::SeqCst);
    Ok("through".into())
}

/// Waits at the gate, any number of calls at once: for the per-caller limit.
#[secure_tool(scope = "t.read", read_only)]
async fn queued(State(effects): State<Effects>) -> Result<String, ToolError> {
    effects.gate.notified().await;
    Ok("through".into())
}

/// Panics on a blocking thread while holding a redacted argument.
#[secure_tool(scope = "t.write", audit_redact = ["secret"])]
async fn blocking_panic(
    /// A secret.
    secret: String,
) -> Result<String, ToolError> {
    task::spawn_blocking(move || -> String { panic!("blocking thread saw {secret}") }).await?;
    Ok("unreachable".into())
}

/// Panics on a task it spawned, holding a redacted argument.
#[secure_tool(scope = "t.write", audit_redact = ["secret"])]
async fn task_panic(
    /// A secret.
    secret: String,
) -> Result<String, ToolError> {
    task::spawn(async move { panic!("spawned task saw {secret}") }).await?;
    Ok("unreachable".into())
}

/// Panics inside tokio's own `spawn_blocking`, its `JoinError` passed up with `?`.
#[secure_tool(scope = "t.write", audit_redact = ["secret"])]
async fn tokio_blocking_panic(
    /// A secret.
    secret: String,
) -> Result<String, ToolError> {
    tokio::task::spawn_blocking(move || -> String { panic!("tokio thread saw {secret}") }).await?;
    Ok("unreachable".into())
}

/// Closes a ticket: only its reporter may.
#[secure_tool(scope = "tickets.close", authorize = only_reporter)]
async fn close_ticket(
    /// The ticket.
    id: u64,
    cx: CallContext,
    State(effects): State<Effects>,
) -> Result<String, ToolError> {
    effects.writes.fetch_add(1, Ordering::SeqCst);
    cx.audit_field("closed_ticket", id);
    cx.audit_field("note", "x".repeat(10_000));
    Ok(format!("closed {id}"))
}

/// Tickets 1 to 9 were reported by `alice`, the rest by `bob`.
async fn only_reporter(args: &ArgsOf<close_ticket>, call: &GuardCall<'_>) -> Result<(), Refusal> {
    // A rule sees the tool set's state, typed.
    assert!(call.state::<Effects>().is_some());
    let reporter = if args.id < 10 { "alice" } else { "bob" };
    if call.caller().id() != reporter {
        return Err(Refusal::denied(
            "not_reporter",
            "only the ticket's reporter may close it",
        ));
    }
    Ok(())
}

/// Adds numbers.
#[secure_tool(scope = "t.read", read_only)]
async fn tally(
    /// The numbers.
    items: Vec<u64>,
    /// Anything else.
    extra: Option<Value>,
) -> Result<String, ToolError> {
    let _ = extra;
    Ok(items.iter().sum::<u64>().to_string())
}

/// Limited to two calls a minute per caller.
#[secure_tool(scope = "t.read", read_only, rate = "2/min")]
async fn rationed() -> Result<String, ToolError> {
    Ok("ok".into())
}

/// Passes its point of no return at once, then makes its effect slowly (a file's directory synced after the
/// rename, say): past its 100 ms timeout.
#[secure_tool(scope = "t.write", timeout = "100ms")]
async fn committing(cx: CallContext, State(effects): State<Effects>) -> Result<String, ToolError> {
    if !cx.commit() {
        return Err(ToolError::new("stopped", "stopped before the effect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    effects.writes.fetch_add(1, Ordering::SeqCst);
    Ok("made".into())
}

/// Commits, makes one effect, then gives up on a second step as a cancelled call would (its token follows a
/// client's cancellation even after the commit).
#[secure_tool(scope = "t.write")]
async fn half_done(cx: CallContext, State(effects): State<Effects>) -> Result<String, ToolError> {
    assert!(cx.commit());
    effects.writes.fetch_add(1, Ordering::SeqCst);
    Err(ToolError::from(secure_tools::fs::FsError::Cancelled))
}

/// Sees its client cancel (the notice arrives as it starts: the request's token is cancelled here, as rmcp does) and
/// gives up with an error of its own, through its token, before the pipeline looks.
#[secure_tool(scope = "t.write")]
async fn gives_up(cx: CallContext, cancel: CancellationToken) -> Result<String, ToolError> {
    if let Some(request) = cx.rmcp() {
        request.ct.cancel();
    }
    cancel.cancelled().await;
    Err(ToolError::new("gave_up", "stopped: the client cancelled"))
}

fn set(sink: impl AuditSink) -> (ToolSet<Effects>, Effects) {
    let effects = Effects::default();
    let tools = ToolSet::builder(effects.clone())
        .tool::<effect>()
        .tool::<committing>()
        .tool::<half_done>()
        .tool::<gives_up>()
        .tool::<look>()
        .tool::<sleepy>()
        .tool::<gated>()
        .tool::<blocking_panic>()
        .tool::<task_panic>()
        .tool::<tokio_blocking_panic>()
        .tool::<close_ticket>()
        .tool::<rationed>()
        .tool::<tally>()
        .audit_sink(sink)
        .build()
        .unwrap();
    (tools, effects)
}

const ALL: &str = "t.read t.write tickets.close";

fn tool_calls(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["event"] == "tool_call")
        .collect()
}

/// Fails (or panics) from its `fail_from`-th write on.
#[derive(Clone)]
struct Breaking {
    inner: MemorySink,
    writes: Arc<AtomicUsize>,
    fail_from: usize,
    panic: bool,
}

impl Breaking {
    fn new(fail_from: usize, panic: bool) -> Self {
        Breaking {
            inner: MemorySink::new(),
            writes: Arc::default(),
            fail_from,
            panic,
        }
    }
}

impl AuditSink for Breaking {
    fn write(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.fail_from {
            if self.panic {
                panic!("the sink blew up");
            }
            return Err(io::Error::other("disk full").into());
        }
        self.inner.write(record)
    }
}

#[tokio::test]
async fn a_sink_failing_between_start_and_end_hides_no_effect() {
    // The `call_started` record is the first write; the sink fails from the second on.
    let sink = Breaking::new(2, false);
    let (tools, effects) = set(sink.clone());
    let who = caller("alice", ALL);
    let response = tools
        .call(request(&who, 1, "effect", json!({"secret": "s3cret"})))
        .await
        .unwrap();
    // The effect happened, and its record says so, though the final record could not be written.
    assert_eq!(effects.writes.load(Ordering::SeqCst), 1);
    assert_eq!(response.error_code(), Some("audit_unavailable"));
    // A second round's: the answer said no call was accepted, though this one ran. It says its result is withheld.
    let message = response.refusal().unwrap().message();
    assert!(message.contains("result is withheld"), "{message}");
    // A red team's (round 39): it read as though nothing had happened; it says the tool may have run.
    assert!(message.contains("the tool may have run"), "{message}");
    let records = sink.inner.records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["event"], "call_started");
    assert_eq!(records[0]["tool"], "effect");
    assert_eq!(records[0]["call_id"], response.call_id().to_string());
    // From then on the door is closed: no handler runs.
    let response = tools
        .call(request(&who, 2, "effect", json!({"secret": "s3cret"})))
        .await
        .unwrap();
    assert_eq!(response.error_code(), Some("audit_unavailable"));
    assert_eq!(effects.writes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panicking_sink_is_caught_and_closes_the_door() {
    let sink = Breaking::new(1, true);
    let (tools, effects) = set(sink.clone());
    let who = caller("alice", ALL);
    // The call gets an answer (the sink's panic does not take its task down), and no effect happens.
    let response = tools
        .call(request(&who, 1, "effect", json!({"secret": "x"})))
        .await
        .unwrap();
    assert_eq!(response.error_code(), Some("audit_unavailable"));
    assert_eq!(effects.writes.load(Ordering::SeqCst), 0);
    assert!(tools.audit().is_failing());
    // A read-only call is refused too: the trail is known to fail.
    let response = tools
        .call(request(&who, 2, "look", json!({})))
        .await
        .unwrap();
    assert_eq!(response.error_code(), Some("audit_unavailable"));
}

#[tokio::test]
async fn a_tool_past_its_time_is_stopped_its_token_cancelled_and_audited_timeout() {
    let sink = MemorySink::new();
    let (tools, effects) = set(sink.clone());
    let started = std::time::Instant::now();
    let response = tools
        .call(request(&caller("alice", ALL), 1, "sleepy", json!({})))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(response.outcome(), Outcome::Timeout);
    assert_eq!(response.error_code(), Some("timeout"));
    let records = sink.records();
    let calls = tool_calls(&records);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["outcome"], "timeout");
    // The handler never got past its wait, and the task it handed its token to saw the cancellation.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!effects.woke.load(Ordering::SeqCst));
    assert!(effects.token_cancelled.load(Ordering::SeqCst));
}

/// Red-team finding: a write that replaced its file as its call was stopped was recorded `cancelled` ("changed
/// nothing"). A handler past its point of no return (`CallContext::commit`) is waited for: its timeout does not cut
/// it, and its record is what it returned.
#[tokio::test]
async fn a_call_past_its_point_of_no_return_is_recorded_by_its_result_not_its_timeout() {
    let sink = MemorySink::new();
    let (tools, effects) = set(sink.clone());
    let response = tools
        .call(request(&caller("alice", ALL), 1, "committing", json!({})))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Ok, "{response:?}");
    assert_eq!(effects.writes.load(Ordering::SeqCst), 1);
    let records = sink.records();
    let calls = tool_calls(&records);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["outcome"], "ok", "{}", calls[0]);
}

/// Review finding: a handler that made its effect after its commit and then gave up (a second write seeing the
/// client's cancellation) was recorded `cancelled`, code `cancelled`: "changed nothing".
#[tokio::test]
async fn a_handler_giving_up_after_its_commit_is_not_recorded_as_changing_nothing() {
    let sink = MemorySink::new();
    let (tools, effects) = set(sink.clone());
    let response = tools
        .call(request(&caller("alice", ALL), 1, "half_done", json!({})))
        .await
        .unwrap();
    assert_eq!(effects.writes.load(Ordering::SeqCst), 1);
    assert_eq!(response.outcome(), Outcome::Cancelled);
    assert_recorded_cancelled_after_commit(&sink);
}

/// A call past its point of no return whose future is dropped all the same cannot be waited for: its record says
/// its effect may have been made (`cancelled_after_commit`), not that it changed nothing.
#[tokio::test]
async fn a_dropped_call_past_its_point_of_no_return_is_not_recorded_as_changing_nothing() {
    let sink = MemorySink::new();
    let (tools, _effects) = set(sink.clone());
    let call = tools.call(request(&caller("alice", ALL), 1, "committing", json!({})));
    dropped_after_50ms(call).await;
    assert_recorded_cancelled_after_commit(&sink);
}

/// The transport gives up on `call` after 50 ms, before it finished: its future is dropped.
async fn dropped_after_50ms(call: impl std::future::Future) {
    assert!(
        tokio::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err(),
        "the call finished"
    );
}

/// The sink holds one call's record, `cancelled` with the code that says its effect may have been made.
fn assert_recorded_cancelled_after_commit(sink: &MemorySink) {
    let records = sink.records();
    let calls = tool_calls(&records);
    assert_eq!(calls.len(), 1, "{records:?}");
    assert_eq!(
        (&calls[0]["outcome"], &calls[0]["error"]),
        (&json!("cancelled"), &json!("cancelled_after_commit")),
        "{}",
        calls[0]
    );
}

#[tokio::test]
async fn a_call_whose_future_is_dropped_is_audited_cancelled_once() {
    let sink = MemorySink::new();
    let (tools, effects) = set(sink.clone());
    let call = tools.call(request(&caller("alice", ALL), 7, "gated", json!({})));
    // The transport gives up on the call (its client went away): the future is dropped mid-handler.
    dropped_after_50ms(call).await;
    effects.gate.notify_waiters();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !effects.woke.load(Ordering::SeqCst),
        "the handler was stopped"
    );
    let records = sink.records();
    let calls = tool_calls(&records);
    assert_eq!(calls.len(), 1, "{records:?}");
    assert_eq!(calls[0]["outcome"], "cancelled");
    assert_eq!(calls[0]["error"], "cancelled");
    assert_eq!(calls[0]["request_id"], 7);
    assert_eq!(tools.calls_in_flight(), 0);
}

/// The panic messages that reached the hook installed before the library's (the default one prints them on
/// stderr), for the messages holding `needle`.
fn hook_messages_holding(needle: &'static str) -> Arc<Mutex<Vec<String>>> {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let kept = heard.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| {
                info.payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
            })
            .unwrap_or_default();
        if message.contains(needle) {
            kept.lock().unwrap().push(message);
        } else {
            previous(info);
        }
    }));
    // The library's hook wraps the one in place (set again: a tool set built earlier installed it already).
    task::install_panic_hook();
    heard
}

#[tokio::test]
async fn panics_on_other_threads_are_outcome_panic_and_their_secret_stays_out_of_answers_records_and_stderr()
 {
    let sink = MemorySink::new();
    let (tools, _) = set(sink.clone());
    let secret = "hunter2-do-not-print";
    let printed = hook_messages_holding(secret);
    for tool in ["blocking_panic", "task_panic", "tokio_blocking_panic"] {
        let response = tools
            .call(request(
                &caller("alice", ALL),
                1,
                tool,
                json!({ "secret": secret }),
            ))
            .await
            .unwrap();
        assert_eq!(response.outcome(), Outcome::Panic, "{tool}");
        assert_eq!(response.error_code(), Some("tool_panicked"), "{tool}");
        let shown = serde_json::to_string(&response.into_call_tool_result()).unwrap();
        assert!(!shown.contains(secret), "{tool}: {shown}");
    }
    let records = sink.records();
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let outcomes: Vec<_> = tool_calls(&records)
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("panic"), json!("panic"), json!("panic")]);
    // What would have been printed: only the panic on tokio's own blocking thread, which the library cannot know
    // for the tool's (the README says so: use `task::spawn_blocking`).
    let printed = printed.lock().unwrap().clone();
    assert_eq!(printed.len(), 1, "{printed:?}");
    assert!(printed[0].starts_with("tokio thread saw"), "{printed:?}");
}

/// Refuses every call from `mallory`, before the arguments are even decoded.
struct NoMallory;

impl Guard for NoMallory {
    fn stage(&self) -> GuardStage {
        GuardStage::BeforeDecoding
    }
    fn check<'a>(&'a self, call: &'a GuardCall<'a>) -> Check<'a> {
        if call.caller().id() == "mallory" {
            return Check::refuse(Refusal::denied("blocked_caller", "this caller is blocked"));
        }
        Check::pass()
    }
}

/// Asks "a policy service" (asynchronously) whether a destructive tool may run on this ticket.
struct Policy {
    asked: Arc<Mutex<Vec<String>>>,
}

impl Guard for Policy {
    fn check<'a>(&'a self, call: &'a GuardCall<'a>) -> Check<'a> {
        Check::later(async move {
            tokio::task::yield_now().await;
            self.asked.lock().unwrap().push(format!(
                "{} {} {}",
                call.tool().name(),
                call.tool().scopes()[0],
                call.arguments()["id"]
            ));
            if call.arguments()["id"] == 13 {
                return Err(Refusal::denied("policy_denied", "ticket 13 is frozen"));
            }
            Ok(guard::Pass::new())
        })
    }
}

#[tokio::test]
async fn guards_and_argument_rules_refuse_inside_the_audit_with_their_own_codes() {
    let sink = MemorySink::new();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let effects = Effects::default();
    let tools = ToolSet::builder(effects.clone())
        .tool_with::<close_ticket>(|tool| {
            tool.guard(Policy {
                asked: asked.clone(),
            })
        })
        .tool::<look>()
        .guard(NoMallory)
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let alice = caller("alice", "tickets.close t.read");
    let cases = [
        (
            caller("mallory", "tickets.close t.read"),
            1,
            "blocked_caller",
        ),
        (alice.clone(), 15, "not_reporter"),
        (caller("bob", "tickets.close"), 13, "policy_denied"),
    ];
    for (who, id, code) in &cases {
        let response = tools
            .call(request(who, 1, "close_ticket", json!({ "id": id })))
            .await
            .unwrap();
        assert_eq!(response.outcome(), Outcome::Denied, "{code}");
        assert_eq!(response.error_code(), Some(*code));
    }
    // The set guard covers every tool; the tool's guard only its own.
    let response = tools
        .call(request(&caller("mallory", "t.read"), 2, "look", json!({})))
        .await
        .unwrap();
    assert_eq!(response.error_code(), Some("blocked_caller"));
    let response = tools
        .call(request(&alice, 3, "close_ticket", json!({"id": 4})))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Ok);
    assert_eq!(
        effects.writes.load(Ordering::SeqCst),
        1,
        "only the allowed call ran"
    );
    // The policy ran after decoding, for the calls that got that far, and saw name, scopes and arguments.
    assert_eq!(
        *asked.lock().unwrap(),
        [
            "close_ticket tickets.close 13",
            "close_ticket tickets.close 4"
        ]
    );

    let records = sink.records();
    let calls = tool_calls(&records);
    let codes: Vec<_> = calls.iter().map(|r| r["error"].clone()).collect();
    assert_eq!(
        codes,
        [
            json!("blocked_caller"),
            json!("not_reporter"),
            json!("policy_denied"),
            json!("blocked_caller"),
            Value::Null
        ]
    );
    // Only the call whose handler ran has a `call_started` record.
    assert_eq!(
        records
            .iter()
            .filter(|r| r["event"] == "call_started")
            .count(),
        1
    );
    // Fields the handler added are in its record, bounded.
    let fields = &calls[4]["fields"];
    assert_eq!(fields["closed_ticket"], 4);
    assert!(fields["note"].as_str().unwrap().len() < 1100, "{fields}");
}

#[tokio::test]
async fn rates_and_concurrency_refuse_with_outcome_limited() {
    let sink = MemorySink::new();
    let (tools, effects) = set(sink.clone());
    let alice = caller("alice", ALL);
    let bob = caller("bob", ALL);
    // `rationed` allows two calls a minute per caller.
    let mut codes = Vec::new();
    for who in [&alice, &alice, &alice, &bob] {
        let response = tools
            .call(request(who, 1, "rationed", json!({})))
            .await
            .unwrap();
        codes.push(response.error_code().map(str::to_owned));
    }
    assert_eq!(codes, [None, None, Some("rate_limited".into()), None]);

    // `gated` runs one call at a time: a second is refused at once, not queued.
    let first = tokio::spawn({
        let tools = tools.clone();
        let alice = alice.clone();
        async move { tools.call(request(&alice, 2, "gated", json!({}))).await }
    });
    while tools.calls_in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let second = tools
        .call(request(&bob, 3, "gated", json!({})))
        .await
        .unwrap();
    assert_eq!(second.outcome(), Outcome::Limited);
    assert_eq!(second.error_code(), Some("overloaded"));
    effects.gate.notify_waiters();
    assert_eq!(first.await.unwrap().unwrap().outcome(), Outcome::Ok);

    let records = sink.records();
    let limited = tool_calls(&records)
        .into_iter()
        .filter(|r| r["outcome"] == "limited")
        .count();
    assert_eq!(limited, 2);
}

/// One caller cannot take every place among the calls running (the set's 64 by default): with a limit per caller,
/// its next call is refused `overloaded` while another caller's is served, and a place given back is its again.
#[tokio::test]
async fn a_caller_at_its_own_limit_is_refused_while_others_are_served() {
    let sink = MemorySink::new();
    let effects = Effects::default();
    let tools = ToolSet::builder(effects.clone())
        .tool::<queued>()
        .max_concurrent_calls_per_caller(Some(2))
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let alice = caller("alice", "t.read");
    let bob = caller("bob", "t.read");
    let running: Vec<_> = (0..2)
        .map(|id| {
            let (tools, alice) = (tools.clone(), alice.clone());
            tokio::spawn(async move { tools.call(request(&alice, id, "queued", json!({}))).await })
        })
        .collect();
    while tools.calls_in_flight() < 2 {
        tokio::task::yield_now().await;
    }
    let third = tools
        .call(request(&alice, 3, "queued", json!({})))
        .await
        .unwrap();
    assert_eq!(third.outcome(), Outcome::Limited);
    assert_eq!(third.error_code(), Some("overloaded"));
    let refusal = third.refusal().unwrap();
    assert!(refusal.message().contains("this caller"), "{refusal}");
    // Another caller is served meanwhile.
    let served = tokio::spawn({
        let (tools, bob) = (tools.clone(), bob.clone());
        async move { tools.call(request(&bob, 4, "queued", json!({}))).await }
    });
    while tools.calls_in_flight() < 3 {
        tokio::task::yield_now().await;
    }
    // Opened until every call waiting at it is through (a call counted may not be waiting at it yet).
    let open_gate = |calls: &[tokio::task::JoinHandle<_>]| {
        let done = calls.iter().all(|call| call.is_finished());
        effects.gate.notify_waiters();
        done
    };
    let mut calls = running;
    calls.push(served);
    while !open_gate(&calls) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().outcome(), Outcome::Ok);
    }
    // Its places given back, the caller's next call runs.
    let again = tokio::spawn({
        let (tools, alice) = (tools.clone(), alice.clone());
        async move { tools.call(request(&alice, 5, "queued", json!({}))).await }
    });
    while !open_gate(std::slice::from_ref(&again)) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(again.await.unwrap().unwrap().outcome(), Outcome::Ok);
    let records = sink.records();
    let calls = tool_calls(&records);
    assert_eq!(calls.len(), 5);
    assert_eq!(
        calls.iter().filter(|r| r["outcome"] == "limited").count(),
        1
    );
}

/// A call refused `overloaded` never ran: it does not use up its caller's rate (the limits once checked the rate
/// first, so a caller turned away by a busy tool lost calls it had not made).
#[tokio::test]
async fn a_call_refused_overloaded_does_not_use_up_the_rate() {
    let effects = Effects::default();
    let tools = ToolSet::builder(effects.clone())
        .tool::<gated>()
        .rate_limit(Rate::per_minute(2).unwrap())
        .audit_sink(MemorySink::new())
        .build()
        .unwrap();
    let alice = caller("alice", "t.read");
    let first = tokio::spawn({
        let tools = tools.clone();
        let alice = alice.clone();
        async move { tools.call(request(&alice, 1, "gated", json!({}))).await }
    });
    while tools.calls_in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let busy = tools
        .call(request(&alice, 2, "gated", json!({})))
        .await
        .unwrap();
    assert_eq!(busy.error_code(), Some("overloaded"));
    effects.gate.notify_waiters();
    assert_eq!(first.await.unwrap().unwrap().outcome(), Outcome::Ok);
    // The second of the two calls a minute allows.
    let third = tokio::spawn({
        let tools = tools.clone();
        let alice = alice.clone();
        async move { tools.call(request(&alice, 3, "gated", json!({}))).await }
    });
    // (Refused, it would not wait at the gate.)
    while tools.calls_in_flight() == 0 && !third.is_finished() {
        tokio::task::yield_now().await;
    }
    effects.gate.notify_waiters();
    let third = third.await.unwrap().unwrap();
    assert_eq!(third.outcome(), Outcome::Ok, "{:?}", third.error_code());
}

/// `Rate`'s fields are public: a rate written without `Rate::new` is checked when the set is built, not taken as
/// another rate (a count of 0 allowed a call per period) or left to panic in the limiter (a period of centuries).
#[test]
fn a_rate_out_of_bounds_is_refused_when_the_set_is_built() {
    let out_of_bounds = [
        Rate {
            count: 0,
            period: Duration::from_secs(60),
        },
        Rate {
            count: 1,
            period: Duration::MAX,
        },
        Rate {
            count: 5,
            period: Duration::from_millis(10),
        },
    ];
    for rate in out_of_bounds {
        let set = ToolSet::builder(Effects::default())
            .tool::<look>()
            .rate_limit(rate)
            .build();
        let Err(error) = set else {
            panic!("built with {rate:?}")
        };
        let error = error.to_string();
        assert!(error.contains("the rate limit of the tool set"), "{error}");
        let tool = ToolSet::builder(Effects::default())
            .tool_with::<look>(|tool| tool.rate_limit(rate))
            .build();
        let Err(error) = tool else {
            panic!("built with {rate:?}")
        };
        let error = error.to_string();
        assert!(error.contains("the rate limit of look"), "{error}");
    }
}

/// A timeout under a millisecond is refused when the set is built, as the grammar refuses `0s`: a zero timeout
/// was taken, and every call of the tool timed out (or, for a handler that finishes on its first poll, ran
/// unbounded by it).
#[test]
fn a_timeout_under_a_millisecond_is_refused_when_the_set_is_built() {
    for timeout in [Duration::ZERO, Duration::from_micros(999)] {
        let set = ToolSet::builder(Effects::default())
            .tool::<look>()
            .timeout(timeout)
            .build();
        let Err(error) = set else {
            panic!("built with a timeout of {timeout:?}")
        };
        let error = error.to_string();
        assert!(error.contains("the timeout of the tool set"), "{error}");
        let tool = ToolSet::builder(Effects::default())
            .tool_with::<look>(|tool| tool.timeout(timeout))
            .build();
        let Err(error) = tool else {
            panic!("built with a timeout of {timeout:?}")
        };
        let error = error.to_string();
        assert!(error.contains("the timeout of look"), "{error}");
    }
    let long = ToolSet::builder(Effects::default())
        .tool_with::<look>(|tool| tool.timeout(Duration::MAX))
        .timeout(Duration::from_millis(1))
        .build();
    assert!(long.is_ok(), "a long timeout is the caller's choice");
}

/// A context kept past its call reaches neither the record nor the client: a field added then is refused (it was
/// accepted and silently lost), and the handler's token, asked for only after the call timed out, is already
/// cancelled (it was a new token that nothing would cancel, so work handed it would carry on).
#[tokio::test]
async fn a_context_kept_past_its_call_is_ended_and_its_token_cancelled() {
    let effects = Effects::default();
    let sink = MemorySink::new();
    let tools = ToolSet::builder(effects.clone())
        .tool::<keeper>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let response = tools
        .call(request(&caller("alice", "t.read"), 1, "keeper", json!({})))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Timeout);
    let kept = effects.kept.lock().unwrap().clone().expect("kept");
    assert!(kept.has_ended());
    assert!(!kept.audit_field("late", 1));
    assert!(kept.cancellation().is_cancelled());
    let records = sink.records();
    assert!(
        records.iter().all(|r| r.get("fields").is_none()),
        "{records:?}"
    );
}

#[tokio::test]
async fn a_set_wide_rate_counts_per_caller_and_tool() {
    let sink = MemorySink::new();
    let tools = ToolSet::builder(Effects::default())
        .tool::<look>()
        .tool::<rationed>()
        .rate_limit(Rate::per_minute(1).unwrap())
        .audit_sink(sink)
        .build()
        .unwrap();
    let alice = caller("alice", "t.read");
    let mut codes = Vec::new();
    for tool in ["look", "look", "rationed", "rationed"] {
        let response = tools
            .call(request(&alice, 1, tool, json!({})))
            .await
            .unwrap();
        codes.push(response.error_code().map(str::to_owned));
    }
    let limited = Some("rate_limited".to_owned());
    assert_eq!(codes, [None, limited.clone(), None, limited]);
}

#[tokio::test]
async fn shutdown_lets_calls_finish_refuses_new_ones_and_stops_the_rest() {
    let sink = MemorySink::new();
    let (tools, effects) = set(sink.clone());
    let alice = caller("alice", ALL);
    let running = tokio::spawn({
        let tools = tools.clone();
        let alice = alice.clone();
        async move { tools.call(request(&alice, 1, "gated", json!({}))).await }
    });
    while tools.calls_in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    // The call in flight finishes within the grace period...
    let shutdown = tokio::spawn({
        let tools = tools.clone();
        async move { tools.shutdown(Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    // ...new calls are refused meanwhile...
    let refused = tools
        .call(request(&alice, 2, "look", json!({})))
        .await
        .unwrap();
    assert_eq!(refused.error_code(), Some("shutting_down"));
    effects.gate.notify_waiters();
    assert_eq!(running.await.unwrap().unwrap().outcome(), Outcome::Ok);
    shutdown.await.unwrap();
    let outcomes: Vec<_> = tool_calls(&sink.records())
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("limited"), json!("ok")]);

    // ...and one that outlives the grace period is stopped, with its record written before shutdown returns.
    let sink = MemorySink::new();
    let (tools, effects) = set(sink.clone());
    let running = tokio::spawn({
        let tools = tools.clone();
        async move { tools.call(request(&alice, 3, "gated", json!({}))).await }
    });
    while tools.calls_in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    tools.shutdown(Duration::from_millis(50)).await;
    let records = sink.records();
    let calls = tool_calls(&records);
    assert_eq!(calls.len(), 1, "{records:?}");
    assert_eq!(calls[0]["outcome"], "cancelled");
    assert_eq!(calls[0]["error"], "shutting_down");
    let stopped = running.await.unwrap().unwrap();
    assert_eq!(stopped.error_code(), Some("shutting_down"));
    assert!(!effects.woke.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_huge_denied_argument_cannot_blow_up_its_record() {
    let sink = MemorySink::new();
    let (tools, _) = set(sink.clone());
    // About 4 MB of declared arguments, recorded in clear (they are not redacted): an array, and a deep, wide
    // object.
    let items: Vec<u64> = (0..500_000).map(|i| i * 1_000_003).collect();
    let extra: Value = (0..50).fold(
        json!("leaf"),
        |v, i| json!({ "k": v, "pad": "y".repeat(2000), "list": vec![i; 1000] }),
    );
    let arguments = json!({ "items": items, "extra": extra });
    assert!(arguments.to_string().len() > 4_000_000);
    let response = tools
        .call(request(&caller("eve", ""), 1, "tally", arguments))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Denied);
    let record = serde_json::to_string(&sink.records()[0]).unwrap();
    assert!(record.len() < 32 * 1024, "{} bytes", record.len());
    // Cut to its first items, or summarised whole once the budget is spent: either way its size is told.
    assert!(record.contains("500000 items"), "{record:.500}");
}

/// A guard whose policy service never answers.
struct Unanswered;

impl Guard for Unanswered {
    fn check<'a>(&'a self, _: &'a GuardCall<'a>) -> Check<'a> {
        Check::later(std::future::pending())
    }
}

#[tokio::test]
async fn a_guard_that_panics_or_never_answers_is_contained_and_audited() {
    let sink = MemorySink::new();
    let effects = Effects::default();
    let tools = ToolSet::builder(effects.clone())
        .tool_with::<look>(|tool| tool.timeout(Duration::from_millis(100)).guard(Unanswered))
        .tool::<effect>()
        .guard(guard::from_fn(GuardStage::BeforeDecoding, |call| {
            if call.caller().id() == "crash" {
                panic!("guard saw {}", call.arguments()["secret"]);
            }
            Ok(())
        }))
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let hung = tools
        .call(request(&caller("alice", ALL), 1, "look", json!({})))
        .await
        .unwrap();
    assert_eq!(hung.outcome(), Outcome::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));
    let crashed = tools
        .call(request(
            &caller("crash", ALL),
            2,
            "effect",
            json!({"secret": "hunter2"}),
        ))
        .await
        .unwrap();
    assert_eq!(crashed.outcome(), Outcome::Panic);
    assert_eq!(crashed.error_code(), Some("tool_panicked"));
    assert_eq!(effects.writes.load(Ordering::SeqCst), 0);
    // The next call works, and every call has its one record, with no secret in it.
    let fine = tools
        .call(request(
            &caller("alice", ALL),
            3,
            "effect",
            json!({"secret": "x"}),
        ))
        .await
        .unwrap();
    assert_eq!(fine.outcome(), Outcome::Ok);
    let records = sink.records();
    let outcomes: Vec<_> = tool_calls(&records)
        .iter()
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("timeout"), json!("panic"), json!("ok")]);
    assert!(!serde_json::to_string(&records).unwrap().contains("hunter2"));
}

/// Checks a PIN; its messages quote the value, as careless validators do.
fn check_pin(pin: &str) -> Result<(), validator::ValidationError> {
    if pin == "boom" {
        panic!("cannot check {pin}");
    }
    if pin.len() != 4 {
        let mut error = validator::ValidationError::new("pin");
        error.message = Some(format!("{pin} is not four digits").into());
        return Err(error);
    }
    Ok(())
}

/// Unlocks with a PIN.
#[secure_tool(scope = "t.write", audit_redact = ["pin"])]
async fn unlock(
    /// The PIN.
    #[validate(custom(function = "check_pin"))]
    pin: String,
    /// A note.
    #[validate(custom(function = "check_pin"))]
    note: String,
) -> Result<String, ToolError> {
    let _ = (pin, note);
    Ok("unlocked".into())
}

#[tokio::test]
async fn user_validators_can_neither_leak_a_redacted_value_nor_crash_the_call() {
    let sink = MemorySink::new();
    let tools = ToolSet::builder(())
        .tool::<unlock>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let who = caller("alice", "t.write");
    // A validator's message quoting the value is not shown for a redacted argument; for another it is.
    let response = tools
        .call(request(
            &who,
            1,
            "unlock",
            json!({"pin": "12", "note": "xyz"}),
        ))
        .await
        .unwrap();
    assert_eq!(response.error_code(), Some("invalid_input"));
    let message = response.refusal().unwrap().message().to_owned();
    assert!(!message.contains("12 is not"), "{message}");
    assert!(
        message.contains("`pin`: failed a check of the tool's own"),
        "{message}"
    );
    assert!(message.contains("xyz is not four digits"), "{message}");
    // A validator that panics fails the call as a panic, and the next call works.
    let response = tools
        .call(request(
            &who,
            2,
            "unlock",
            json!({"pin": "boom", "note": "1234"}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Panic);
    let response = tools
        .call(request(
            &who,
            3,
            "unlock",
            json!({"pin": "1234", "note": "5678"}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Ok);
    let text = serde_json::to_string(&sink.records()).unwrap();
    assert!(!text.contains("boom") && !text.contains("\"12\""), "{text}");
}

#[tokio::test]
async fn a_huge_string_request_id_is_shortened_in_the_record() {
    let sink = MemorySink::new();
    let (tools, _) = set(sink.clone());
    let id = secure_tools::RequestId::String("i".repeat(4_000_000).into());
    let request =
        secure_tools::CallRequest::new(caller("eve", ""), "look", None).with_request_id(id);
    let response = tools.call(request).await.unwrap();
    assert_eq!(response.outcome(), Outcome::Denied);
    let record = serde_json::to_string(&sink.records()[0]).unwrap();
    assert!(record.len() < 4096, "{} bytes", record.len());
    assert!(record.contains("[4000000 bytes in all, sha-256 "));
}

/// Sign-in details, named in camelCase on the wire.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignIn {
    /// The user.
    #[validate(custom(function = "check_pin"))]
    user_name: String,
    /// The password.
    #[validate(custom(function = "check_pin"))]
    pass_word: String,
}

/// Signs in.
#[secure_tool(scope = "t.write", audit_redact = ["passWord"])]
async fn sign_in(
    secure_tools::Args(args): secure_tools::Args<SignIn>,
) -> Result<String, ToolError> {
    Ok(args.user_name)
}

/// Review finding: validator names a rule by its Rust field (`pass_word`) and redaction goes by the argument's
/// name in the schema (`passWord`), so a custom validator's message quoting a redacted value was shown. Now a
/// rule's own message is shown only for a field whose name is a declared, unredacted argument.
#[tokio::test]
async fn a_renamed_redacted_field_keeps_its_validators_message_to_itself() {
    let sink = MemorySink::new();
    let tools = ToolSet::builder(())
        .tool::<sign_in>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let response = tools
        .call(request(
            &caller("alice", "t.write"),
            1,
            "sign_in",
            json!({"userName": "al", "passWord": "s3cr3t-value"}),
        ))
        .await
        .unwrap();
    assert_eq!(response.error_code(), Some("invalid_input"));
    let message = response.refusal().unwrap().message().to_owned();
    assert!(!message.contains("s3cr3t"), "{message}");
    assert!(
        message.contains("`pass_word`: failed a check of the tool's own"),
        "{message}"
    );
    // A renamed field is treated as redacted (its wire name is not its Rust name): described by its rule only.
    assert!(!message.contains("al is not"), "{message}");
    let text = serde_json::to_string(&sink.records()).unwrap();
    assert!(!text.contains("s3cr3t"), "{text}");
}

/// Review finding: `CallRequest`'s derived `Debug` printed every argument's value, so `?request` in a log showed
/// redacted ones. It shows their names only.
#[test]
fn a_call_requests_debug_shows_argument_names_not_values() {
    let request = request(
        &caller("alice", "t.write"),
        1,
        "store",
        json!({"secret": "hunter2-in-debug", "name": "db"}),
    );
    let shown = format!("{request:?}");
    assert!(!shown.contains("hunter2-in-debug"), "{shown}");
    assert!(
        shown.contains("\"secret\"") && shown.contains("\"name\""),
        "{shown}"
    );
}

/// Review finding: decoding takes a whole float (`13.0`, `1.3e1`) for an integer argument by decoding a copy with
/// the floats written as integers, but the guards after decoding were given the arguments as sent: a policy that
/// refuses ticket 13 let `{"id": 13.0}` through to the handler. They now see the copy the handler's input came from.
#[tokio::test]
async fn a_whole_float_for_an_integer_is_the_integer_to_the_guards_after_decoding() {
    let sink = MemorySink::new();
    let effects = Effects::default();
    let tools = ToolSet::builder(effects.clone())
        .tool_with::<close_ticket>(|tool| {
            tool.guard(Policy {
                asked: Arc::default(),
            })
        })
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let bob = caller("bob", "tickets.close");
    for id in ["13", "13.0", "1.3e1"] {
        let id: Value = serde_json::from_str(id).unwrap();
        let response = tools
            .call(request(&bob, 1, "close_ticket", json!({ "id": id })))
            .await
            .unwrap();
        assert_eq!(response.outcome(), Outcome::Denied, "{id}");
        assert_eq!(response.error_code(), Some("policy_denied"), "{id}");
    }
    assert_eq!(effects.writes.load(Ordering::SeqCst), 0);
    let records = sink.records();
    assert!(
        records.iter().all(|r| r["event"] != "call_started"),
        "{records:?}"
    );
    // The record shows the arguments as the handler would have had them.
    for call in tool_calls(&records) {
        assert_eq!(call["inputs"]["id"], json!(13), "{call}");
        assert!(call["inputs"]["id"].is_u64(), "{call}");
    }
}

/// A guard that decides synchronously and slowly (a blocking lookup), before the arguments are decoded.
struct SlowLookup(Duration);

impl Guard for SlowLookup {
    fn stage(&self) -> GuardStage {
        GuardStage::BeforeDecoding
    }
    fn check<'a>(&'a self, _: &'a GuardCall<'a>) -> Check<'a> {
        std::thread::sleep(self.0);
        Check::pass()
    }
}

/// A guard during which the server shuts down: it waits for the set's shutdown (no grace) to stop the calls in
/// flight, as a blocking guard would see a shutdown that happened meanwhile.
struct ShutdownMeanwhile(Arc<std::sync::OnceLock<ToolSet<Effects>>>);

impl Guard for ShutdownMeanwhile {
    fn stage(&self) -> GuardStage {
        GuardStage::BeforeDecoding
    }
    fn check<'a>(&'a self, _: &'a GuardCall<'a>) -> Check<'a> {
        let tools = self.0.get().unwrap().clone();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                // The grace of zero runs out at the timer's next tick, and the calls in flight are told to stop;
                // then the shutdown waits for them, which this call cannot do from here.
                let _ =
                    tokio::time::timeout(Duration::from_millis(50), tools.shutdown(Duration::ZERO))
                        .await;
            });
        });
        Check::pass()
    }
}

/// Review finding: a call out of time, or stopped by the shutdown, while a synchronous guard ran, still had its
/// `call_started` record written and its handler polled once (most handlers do their effect then) before anything
/// looked at the time or the stop. It is now refused before its record, as it would have been while it waited.
#[tokio::test]
async fn a_call_out_of_time_before_its_handler_starts_does_nothing() {
    let sink = MemorySink::new();
    let effects = Effects::default();
    let tools = ToolSet::builder(effects.clone())
        .tool_with::<effect>(|tool| {
            tool.timeout(Duration::from_millis(10))
                .guard(SlowLookup(Duration::from_millis(30)))
        })
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let response = tools
        .call(request(
            &caller("alice", ALL),
            1,
            "effect",
            json!({"secret": "s"}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Timeout);
    assert_eq!(response.error_code(), Some("timeout"));
    assert_eq!(effects.writes.load(Ordering::SeqCst), 0);
    let records = sink.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "timeout");
}

/// The same for a call that the shutdown stopped while a synchronous guard ran (the guard blocks a worker thread:
/// the runtime needs another).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_stopped_before_its_handler_starts_does_nothing() {
    let sink = MemorySink::new();
    let effects = Effects::default();
    let stopping = Arc::new(std::sync::OnceLock::new());
    let tools = ToolSet::builder(effects.clone())
        .tool_with::<effect>(|tool| tool.guard(ShutdownMeanwhile(stopping.clone())))
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let _ = stopping.set(tools.clone());
    let response = tools
        .call(request(
            &caller("alice", ALL),
            2,
            "effect",
            json!({"secret": "s"}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Cancelled);
    assert_eq!(response.error_code(), Some("shutting_down"));
    assert_eq!(effects.writes.load(Ordering::SeqCst), 0);
    let records = sink.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["error"], "shutting_down");
}

/// Cancels the call as its client would while the guard runs (rmcp cancels the request's token when the client
/// sends `notifications/cancelled`, or its connection goes).
struct ClientCancelsMeanwhile;

impl Guard for ClientCancelsMeanwhile {
    fn stage(&self) -> GuardStage {
        GuardStage::BeforeDecoding
    }
    fn check<'a>(&'a self, call: &'a GuardCall<'a>) -> Check<'a> {
        if let Some(request) = call.context().rmcp() {
            request.ct.cancel();
        }
        Check::pass()
    }
}

/// The same for a call its client cancelled while a synchronous guard ran.
#[tokio::test]
async fn a_call_cancelled_before_its_handler_starts_does_nothing() {
    let effects = Effects::default();
    let tester = secure_tools::testing::ToolTester::new(
        ToolSet::builder(effects.clone())
            .tool_with::<effect>(|tool| tool.guard(ClientCancelsMeanwhile)),
    )
    .unwrap();
    let client = tester.client(caller("alice", ALL)).await.unwrap();
    let mut params = rmcp::model::CallToolRequestParams::new("effect");
    params.arguments = secure_tools::testing::arguments(json!({"secret": "s"}));
    // The cancelled call is answered at once with its refusal: a call left unanswered would only fail after 5 s.
    let answer = tokio::time::timeout(Duration::from_secs(5), client.call_tool(params))
        .await
        .expect("the cancelled call is answered, not left waiting")
        .expect("the refusal is a tool result");
    assert_eq!(answer.is_error, Some(true), "{answer:?}");
    let refusal = answer
        .structured_content
        .as_ref()
        .expect("the refusal's content");
    assert_eq!(refusal["error"]["code"], "cancelled", "{answer:?}");
    let record = tester.last_call_record().expect("the call's record");
    assert_eq!(record.outcome, Outcome::Cancelled);
    assert_eq!(record.error.as_deref(), Some("cancelled"));
    assert_eq!(effects.writes.load(Ordering::SeqCst), 0);
    let records = tester.records();
    assert!(
        records.iter().all(|r| r["event"] != "call_started"),
        "{records:?}"
    );
    client.cancel().await.unwrap();
}

/// Trial finding: a client's cancellation was recorded `error` (the handler's own code) when the handler saw it
/// through its token and gave up before the pipeline saw it, and `cancelled` otherwise: the record depended on how
/// the handler was written. A handler that fails once its client has cancelled is recorded `cancelled`.
#[tokio::test]
async fn a_handler_giving_up_on_its_clients_cancellation_is_recorded_cancelled() {
    let effects = Effects::default();
    let tester =
        secure_tools::testing::ToolTester::new(ToolSet::builder(effects).tool::<gives_up>())
            .unwrap();
    let client = tester.client(caller("alice", ALL)).await.unwrap();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        client.call_tool(rmcp::model::CallToolRequestParams::new("gives_up")),
    )
    .await
    .expect("answered")
    .expect("a tool result");
    assert_eq!(answer.is_error, Some(true), "{answer:?}");
    let record = tester.last_call_record().expect("the call's record");
    assert_eq!(
        (record.outcome, record.error.as_deref()),
        (Outcome::Cancelled, Some("cancelled"))
    );
    client.cancel().await.unwrap();
}

/// What `sign_in_to_vault` takes: names it does not declare are taken as labels (its schema admits them).
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct VaultLogin {
    /// The vault.
    vault: String,
    /// Its password.
    password: String,
    /// Labels.
    #[serde(flatten)]
    labels: std::collections::HashMap<String, String>,
}

/// Opens a vault.
#[secure_tool(scope = "t.write", audit_redact = ["password"])]
async fn sign_in_to_vault(
    secure_tools::Args(login): secure_tools::Args<VaultLogin>,
) -> Result<String, ToolError> {
    Ok(format!(
        "{}: {} labels, {} bytes of password",
        login.vault,
        login.labels.len(),
        login.password.len()
    ))
}

/// Review finding: a tool whose schema admits names it does not declare (an `Args<T>` with a flattened map)
/// recorded those names' values in clear, on a refusal before decoding and on success alike: `Password` beside the
/// redacted `password` put the password in the record. Only the names the schema declares, and does not redact,
/// are recorded in clear.
#[tokio::test]
async fn names_a_tool_does_not_declare_are_recorded_as_secrets_even_when_its_schema_admits_them() {
    let sink = MemorySink::new();
    let tools = ToolSet::builder(())
        .tool::<sign_in_to_vault>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let arguments = json!({"vault": "home", "password": "a", "Password": "hunter2"});
    let refused = tools
        .call(request(
            &caller("eve", ""),
            1,
            "sign_in_to_vault",
            arguments.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(refused.outcome(), Outcome::Denied);
    let called = tools
        .call(request(
            &caller("alice", "t.write"),
            2,
            "sign_in_to_vault",
            arguments,
        ))
        .await
        .unwrap();
    assert_eq!(
        called.result().unwrap(),
        &secure_tools::ToolOutput::Text("home: 1 labels, 1 bytes of password".into())
    );
    let records = sink.records();
    assert_eq!(records.len(), 3, "{records:?}");
    for record in &records {
        let inputs = &record["inputs"];
        assert_eq!(inputs["vault"], "home", "{record}");
        assert_eq!(inputs["Password"]["redacted"], true, "{record}");
        assert_eq!(inputs["password"]["redacted"], true, "{record}");
    }
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
}

/// Review finding: a code is bounded to 128 bytes in the record (and the metrics' labels), but the bound cut only
/// codes over 1,024 bytes: a guard's 500-byte code was recorded whole.
#[tokio::test]
async fn a_long_code_is_cut_to_128_bytes_in_the_record() {
    let sink = MemorySink::new();
    let tools = ToolSet::builder(Effects::default())
        .tool::<look>()
        .guard(guard::from_fn(GuardStage::BeforeDecoding, |_| {
            Err(Refusal::denied("é".repeat(250), "no"))
        }))
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let response = tools
        .call(request(&caller("alice", ALL), 1, "look", json!({})))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Denied);
    let records = sink.records();
    let code = records[0]["error"].as_str().unwrap();
    assert!(code.len() <= 128, "{} bytes: {code}", code.len());
    assert!(code.starts_with("éé"), "{code}");
}

/// The threads `counter` started, for the test to join.
#[derive(Clone, Default)]
struct Counting(Arc<Mutex<Vec<std::thread::JoinHandle<Option<u64>>>>>);

/// Hands its context to a thread that sets the field `n` to 0, 1, 2 ... until it is refused (the call has
/// ended), and returns at once.
#[secure_tool(scope = "t.read", read_only)]
async fn counter(cx: CallContext, State(counting): State<Counting>) -> Result<String, ToolError> {
    let (counting_tx, counting_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut last = None;
        for n in 0.. {
            if !cx.audit_field("n", n) {
                break;
            }
            last = Some(n);
            if n == 0 {
                let _ = counting_tx.send(());
            }
        }
        last
    });
    counting_rx.recv().unwrap();
    counting.0.lock().unwrap().push(thread);
    Ok("counting".into())
}

/// Review finding: `audit_field` looked at whether the call had ended before it took the fields' lock, and the
/// record took the fields without it when it saw none: a field set by another thread as the call ended could be
/// accepted (`true`) after the record had taken the fields, and lost. Every field accepted is in the record.
#[tokio::test]
async fn a_field_accepted_as_the_call_ends_is_in_its_record() {
    let sink = MemorySink::new();
    let counting = Counting::default();
    let tools = ToolSet::builder(counting.clone())
        .tool::<counter>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let alice = caller("alice", "t.read");
    for round in 0..300 {
        let response = tools
            .call(request(&alice, round, "counter", json!({})))
            .await
            .unwrap();
        assert_eq!(response.outcome(), Outcome::Ok);
        let thread = counting.0.lock().unwrap().pop().unwrap();
        let last = thread.join().unwrap();
        let records = sink.records();
        let recorded = &records.last().unwrap()["fields"]["n"];
        assert_eq!(recorded, &json!(last), "round {round}");
    }
}

/// Keeps its call's context for later, and returns at once.
#[secure_tool(scope = "t.read", read_only)]
async fn keep_context(
    cx: CallContext,
    State(effects): State<Effects>,
) -> Result<String, ToolError> {
    *effects.kept.lock().unwrap() = Some(cx);
    Ok("kept".into())
}

/// Keeps its call's cancellation token for later (a task it started would watch it), and returns at once.
#[secure_tool(scope = "t.read", read_only)]
async fn keep_token(
    cancel: CancellationToken,
    State(effects): State<Effects>,
) -> Result<String, ToolError> {
    *effects.kept_token.lock().unwrap() = Some(cancel);
    Ok("kept".into())
}

/// Review finding: a call made in process (no MCP session, whose request token rmcp cancels once it answers)
/// left its handler's token uncancelled when it ended normally: work handed the token ran on after the call,
/// though the docs say a kept context's token is cancelled once the record is written. Now it is, whether the
/// token was asked for during the call or after it.
#[tokio::test]
async fn the_handlers_token_is_cancelled_when_its_call_ends() {
    let effects = Effects::default();
    let tools = ToolSet::builder(effects.clone())
        .tool::<keep_context>()
        .tool::<keep_token>()
        .audit_sink(MemorySink::new())
        .build()
        .unwrap();
    let alice = caller("alice", "t.read");
    for (id, tool) in [(1, "keep_context"), (2, "keep_token")] {
        let response = tools
            .call(request(&alice, id, tool, json!({})))
            .await
            .unwrap();
        assert_eq!(response.outcome(), Outcome::Ok, "{tool}");
    }
    let token = effects.kept_token.lock().unwrap().clone().expect("kept");
    assert!(token.is_cancelled());
    let kept = effects.kept.lock().unwrap().clone().expect("kept");
    assert!(kept.has_ended());
    assert!(kept.cancellation().is_cancelled());
}

/// Review finding: a plain rmcp tool called in process, with no server to run it, had its `call_started` record
/// written before the pipeline found it had nothing to run: the record of a start that never was. The handler is
/// looked for first.
#[tokio::test]
async fn a_plain_tool_called_without_its_server_records_no_start() {
    let sink = MemorySink::new();
    let tools = ToolSet::builder(())
        .plain_tool(secure_tools::PlainTool::new("ping").unscoped())
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let response = tools
        .call(request(&caller("alice", ""), 1, "ping", json!({})))
        .await
        .unwrap();
    assert_eq!(response.error_code(), Some("internal_error"));
    let records = sink.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["event"], "tool_call");
}

/// Arguments whose own decoding takes a while (a type's `Deserialize` is the user's code too).
#[derive(schemars::JsonSchema, validator::Validate)]
struct SlowToDecode {
    /// Anything.
    #[allow(dead_code)]
    note: String,
}

impl<'de> serde::Deserialize<'de> for SlowToDecode {
    fn deserialize<D: serde::Deserializer<'de>>(decoder: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Plain {
            note: String,
        }
        std::thread::sleep(Duration::from_millis(30));
        Plain::deserialize(decoder).map(|plain| SlowToDecode { note: plain.note })
    }
}

/// Takes its time to decode.
#[secure_tool(scope = "t.write")]
async fn slow_to_decode(
    secure_tools::Args(_args): secure_tools::Args<SlowToDecode>,
    State(effects): State<Effects>,
) -> Result<String, ToolError> {
    effects.writes.fetch_add(1, Ordering::SeqCst);
    Ok("done".into())
}

/// A guard after decoding that counts its checks.
struct CountedAfterDecoding(Arc<AtomicUsize>);

impl Guard for CountedAfterDecoding {
    fn stage(&self) -> GuardStage {
        GuardStage::AfterDecoding
    }
    fn check<'a>(&'a self, _: &'a GuardCall<'a>) -> Check<'a> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Check::pass()
    }
}

/// Review finding: the look for a stop ran once a guard's check had been called, before its future was polled; a
/// synchronous guard does all its work in the check, so a call already out of time still ran it (a quota used up,
/// say). Decoding here outlasts the timeout: the guard after it is not called.
#[tokio::test]
async fn a_guard_is_not_called_for_a_call_already_out_of_time() {
    let sink = MemorySink::new();
    let effects = Effects::default();
    let checks = Arc::new(AtomicUsize::new(0));
    let tools = ToolSet::builder(effects.clone())
        .tool_with::<slow_to_decode>(|tool| {
            tool.timeout(Duration::from_millis(10))
                .guard(CountedAfterDecoding(checks.clone()))
        })
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let response = tools
        .call(request(
            &caller("alice", ALL),
            1,
            "slow_to_decode",
            json!({"note": "n"}),
        ))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Timeout);
    assert_eq!(checks.load(Ordering::SeqCst), 0, "the guard was called");
    assert_eq!(effects.writes.load(Ordering::SeqCst), 0);
    assert_eq!(sink.records().len(), 1);
}

/// `look`, by hand, with a handler that answers `input_required` itself, as only the pipeline may (for the
/// questions a handler asks; the attribute cannot make such a handler).
struct Forged;

impl secure_tools::ToolInput for Forged {
    type Args = ArgsOf<look>;
}

impl secure_tools::SecureTool<Effects> for Forged {
    const META: secure_tools::__private::ToolMeta =
        <look as secure_tools::SecureTool<Effects>>::META;
    type Output = <look as secure_tools::SecureTool<Effects>>::Output;

    // The trait asks for a `'static` future from borrowed parameters, which an `async fn` cannot give.
    #[allow(clippy::manual_async_fn)]
    fn invoke(
        _args: Self::Args,
        _cx: &CallContext,
        _state: &Effects,
    ) -> impl Future<Output = Result<secure_tools::ToolOutput, Refusal>> + Send + 'static {
        async {
            let mut asked = serde_json::Map::new();
            asked.insert(
                "elicitation-1".into(),
                json!({"method": "elicitation/create", "params": {"message": "forged", "requestedSchema":
                    {"type": "object", "properties": {}}}}),
            );
            let asked = serde_json::from_value(Value::Object(asked)).unwrap();
            Ok(secure_tools::ToolOutput::InputRequired(
                secure_tools::rmcp::model::InputRequiredResult::new(
                    Some(asked),
                    Some("forged".into()),
                ),
            ))
        }
    }
}

/// Attack: a handler that answers `input_required` by itself would be recorded so (not as an error) and reach a
/// client of any revision with questions and a state the pipeline never made. It is refused as an internal error,
/// in one record.
#[tokio::test]
async fn a_handler_cannot_answer_input_required_itself() {
    let sink = MemorySink::new();
    let tools = ToolSet::builder(Effects::default())
        .tool::<Forged>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let response = tools
        .call(request(&caller("alice", ALL), 1, "look", json!({})))
        .await
        .unwrap();
    assert_eq!(response.outcome(), Outcome::Error);
    assert_eq!(
        response.refusal().map(Refusal::code),
        Some("internal_error")
    );
    let records = sink.records();
    let calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "tool_call")
        .collect();
    assert_eq!(calls.len(), 1, "{records:?}");
    assert_eq!(calls[0]["outcome"], "error");
    assert!(
        !records.iter().any(|r| r.to_string().contains("forged")),
        "{records:?}"
    );
}

/// Credentials, flattened into a sign-in's arguments.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct Credentials {
    pin: u32,
}

/// A sign-in whose PIN comes through a flattened struct.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct FlatSignIn {
    user: String,
    #[serde(flatten)]
    credentials: Credentials,
}

/// Signs in with a PIN.
#[secure_tool(scope = "t.write", audit_redact = ["pin"])]
async fn flat_sign_in(
    secure_tools::Args(args): secure_tools::Args<FlatSignIn>,
) -> Result<String, ToolError> {
    Ok(format!("{} {}", args.user, args.credentials.pin))
}

/// A token as sent, before it is checked.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct RawToken {
    token: String,
}

/// A token checked as a whole (`try_from`), whose error quotes it as careless conversions do.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
#[serde(try_from = "RawToken")]
#[schemars(with = "RawToken")]
struct CheckedToken {
    token: String,
}

impl TryFrom<RawToken> for CheckedToken {
    type Error = String;
    fn try_from(raw: RawToken) -> Result<Self, String> {
        match raw.token.strip_prefix("tk_") {
            Some(_) => Ok(CheckedToken { token: raw.token }),
            None => Err(format!("`{}` is not a token", raw.token)),
        }
    }
}

/// Uses a token.
#[secure_tool(scope = "t.write", audit_redact = ["token"])]
async fn use_token(
    secure_tools::Args(args): secure_tools::Args<CheckedToken>,
) -> Result<String, ToolError> {
    Ok(args.token.len().to_string())
}

/// Settings: one declared number, and any others by name.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct Tuning {
    token: u32,
    #[serde(flatten)]
    rest: std::collections::HashMap<String, u32>,
}

/// Tunes.
#[secure_tool(scope = "t.write", audit_redact = ["token"])]
async fn tune(secure_tools::Args(args): secure_tools::Args<Tuning>) -> Result<String, ToolError> {
    Ok(format!("{} {}", args.token, args.rest.len()))
}

/// Checks a password; its message quotes the value, as careless validators do.
fn check_strength(password: &str) -> Result<(), validator::ValidationError> {
    Err(validator::ValidationError::new("weak")
        .with_message(format!("`{password}` is too weak").into()))
}

/// A struct whose Rust names and wire names cross: the redacted `pw` is the field `password`, and `password` on
/// the wire is the field `hint`.
#[derive(serde::Deserialize, schemars::JsonSchema, validator::Validate)]
struct Crossed {
    #[serde(rename = "pw")]
    #[validate(custom(function = "check_strength"))]
    password: String,
    #[serde(rename = "password")]
    hint: String,
}

/// Sets a password.
#[secure_tool(scope = "t.write", audit_redact = ["pw"])]
async fn set_password(
    secure_tools::Args(args): secure_tools::Args<Crossed>,
) -> Result<String, ToolError> {
    Ok(args.hint)
}

/// Red-team findings: serde reports an error inside a flattened struct, or a container's own conversion
/// (`try_from`), at the arguments' root, and an error in a flattened map under the undeclared name; the message
/// was serde's or the type's, quoting a redacted value (`invalid type: string "hunter2", expected u32`, `` `hunter2`
/// is not a token ``). And a validator's message was shown for a field whose Rust name is another field's wire
/// name while its own wire name was redacted. For a tool with redacted arguments, a message is shown only where it
/// is known to be about a declared argument that is not redacted.
#[tokio::test]
async fn a_redacted_value_is_not_quoted_through_flatten_try_from_or_crossed_names() {
    let sink = MemorySink::new();
    let tools = ToolSet::builder(())
        .tool::<flat_sign_in>()
        .tool::<use_token>()
        .tool::<tune>()
        .tool::<set_password>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let who = caller("alice", "t.write");
    for (id, tool, arguments) in [
        (1, "flat_sign_in", json!({"user": "bob", "pin": "hunter2"})),
        (2, "use_token", json!({"token": "hunter2"})),
        (3, "tune", json!({"token": 1, "Token": "hunter2"})),
        (4, "set_password", json!({"pw": "hunter2", "password": "x"})),
    ] {
        let response = tools
            .call(request(&who, id, tool, arguments))
            .await
            .unwrap();
        assert_eq!(response.outcome(), Outcome::Invalid, "{tool}");
        let message = response.refusal().unwrap().message().to_owned();
        assert!(!message.contains("hunter2"), "{tool}: {message}");
        assert!(!message.is_empty(), "{tool}");
    }
    let text = serde_json::to_string(&sink.records()).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    // What names no value is still said: a missing argument, and an error under a declared, unredacted one.
    let response = tools
        .call(request(&who, 5, "flat_sign_in", json!({"user": "bob"})))
        .await
        .unwrap();
    assert_eq!(response.refusal().unwrap().message(), "missing field `pin`");
    let response = tools
        .call(request(
            &who,
            6,
            "flat_sign_in",
            json!({"user": 7, "pin": 1}),
        ))
        .await
        .unwrap();
    assert!(
        response
            .refusal()
            .unwrap()
            .message()
            .starts_with("`user`: invalid type: integer `7`"),
        "{:?}",
        response.refusal()
    );
}

/// An argument that panics as it is dropped, quoting its value.
#[derive(schemars::JsonSchema, Debug)]
#[schemars(transparent)]
struct Touchy(String);

impl<'de> serde::Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(Touchy)
    }
}

impl Drop for Touchy {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("dropped touchy {}", self.0);
        }
    }
}

/// Holds a touchy secret, behind a rule that refuses.
#[secure_tool(scope = "t.write", audit_redact = ["secret"], authorize = refuse_all)]
async fn touchy(secret: Touchy) -> Result<String, ToolError> {
    Ok(secret.0.len().to_string())
}

async fn refuse_all(_: &ArgsOf<touchy>, _: &GuardCall<'_>) -> Result<(), Refusal> {
    Err(Refusal::denied("refused", "refused"))
}

/// Red-team finding: decoded arguments dropped when a later stage refused (the argument rule, here) were dropped
/// outside the tool's name, so a panic as they dropped printed its message, which quoted the value, on stderr.
#[tokio::test]
async fn decoded_arguments_dropped_after_a_refusal_keep_their_panics_to_themselves() {
    let heard = hook_messages_holding("dropped touchy");
    let sink = MemorySink::new();
    let tools = ToolSet::builder(())
        .tool::<touchy>()
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    let response = tools
        .call(request(
            &caller("alice", "t.write"),
            1,
            "touchy",
            json!({"secret": "hunter2"}),
        ))
        .await
        .unwrap();
    assert_ne!(response.outcome(), Outcome::Ok);
    let heard = heard.lock().unwrap().clone();
    assert!(heard.is_empty(), "{heard:?}");
    assert_eq!(tool_calls(&sink.records()).len(), 1);
    assert!(
        !serde_json::to_string(&sink.records())
            .unwrap()
            .contains("hunter2")
    );
}
