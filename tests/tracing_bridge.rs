//! What a `tracing` subscriber receives: each call's span, and the audit bridge's events.
//!
//! Alone in its own test binary: `tracing` caches per call site whether anyone listens, so a thread-local
//! subscriber in a binary whose other tests run concurrently without one may miss events.

use std::sync::{Arc, Mutex};

use secure_tools::{ToolError, ToolSet, TracingSink, secure_tool};
use secure_tools_tests::{caller, request};
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Logs from inside the handler.
#[secure_tool(scope = "whoami")]
async fn whoami() -> Result<String, ToolError> {
    tracing::info!(inside = true, "handler log line");
    Ok("me".into())
}

/// Fails on an I/O error; it redacts nothing.
#[secure_tool(scope = "whoami")]
async fn broken() -> Result<String, ToolError> {
    Err(std::io::Error::other("disk on fire").into())
}

/// Fails on errors quoting a redacted argument (an I/O error, serde's), and panics on blocking threads holding
/// it.
#[secure_tool(scope = "whoami", audit_redact = ["secret"])]
async fn leaky(
    /// A secret.
    secret: String,
) -> Result<String, ToolError> {
    if secret.starts_with("io") {
        return Err(std::io::Error::other(format!("disk on fire under {secret}")).into());
    }
    if secret.starts_with("serde") {
        let number: u32 = serde_json::from_value(json!(secret)).map_err(ToolError::internal)?;
        return Ok(number.to_string());
    }
    if secret.starts_with("tokio") {
        tokio::task::spawn_blocking(move || -> String { panic!("tokio thread saw {secret}") })
            .await?;
        return Ok("unreachable".into());
    }
    secure_tools::task::spawn_blocking(move || -> String { panic!("helper thread saw {secret}") })
        .await?;
    Ok("unreachable".into())
}

/// A layer that remembers each event as a line, with the fields of the spans it happened in.
#[derive(Default, Clone)]
struct Captured(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

struct SpanFields(String);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Captured {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields(String::new());
        attrs.record(&mut fields);
        ctx.span(id)
            .unwrap()
            .extensions_mut()
            .insert(SpanFields(fields.0));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields(format!("event target={}", event.metadata().target()));
        event.record(&mut fields);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let ext = span.extensions();
                let own = ext.get::<SpanFields>().map_or("", |f| f.0.as_str());
                fields
                    .0
                    .push_str(&format!(" in {}{{{}}}", span.name(), own.trim()));
            }
        }
        self.0.lock().unwrap().push(fields.0);
    }
}

#[test]
fn calls_run_in_a_span_and_the_tracing_bridge_carries_the_record() {
    let captured = Captured::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(captured.clone()))
        .unwrap();
    // Without the time driver: a handler that waits then runs without its timeout (and says so once), rather
    // than the pipeline panicking.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let set = ToolSet::builder(())
            .tool::<whoami>()
            .tool::<broken>()
            .tool::<leaky>()
            .server_id("test-server")
            .audit_sink(TracingSink)
            .build()
            .unwrap();
        let who = caller("dave", "whoami");
        set.call(request(&who, 5, "whoami", json!({})))
            .await
            .unwrap();
        set.call(request(&who, 6, "broken", json!({})))
            .await
            .unwrap();
        for secret in [
            "io-hunter2",
            "serde-hunter2",
            "tokio-hunter2",
            "helper-hunter2",
        ] {
            set.call(request(&who, 6, "leaky", json!({ "secret": secret })))
                .await
                .unwrap();
        }
    });
    let lines = captured.0.lock().unwrap().clone();
    // An internal error's detail goes to the log for the operator, but only from a tool that redacts nothing:
    // an error's text may quote an argument (serde's does), so of a tool that redacts only the kind of error is
    // logged. A panic's message, which may quote a redacted argument too, goes nowhere, on whichever thread it
    // happened.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("disk on fire") && l.contains("tool=broken")),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains("hunter2")), "{lines:#?}");
    for kind in ["std::io::Error (Other)", "serde_json::Error (Data)"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(kind) && l.contains("tool=leaky")),
            "{kind}: {lines:#?}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("no time driver")),
        "{lines:#?}"
    );
    let panics = lines
        .iter()
        .filter(|l| l.contains("event=\"tool_call\"") && l.contains("outcome=\"panic\""))
        .count();
    assert_eq!(panics, 2, "{lines:#?}");
    let handler = lines
        .iter()
        .find(|l| l.contains("handler log line"))
        .expect("handler event captured");
    assert!(
        handler.contains("in tool_call{tool=whoami request_id=5 call_id="),
        "{handler}"
    );
    let audit = lines
        .iter()
        .find(|l| l.contains("target=secure_tools::audit") && l.contains("event=\"tool_call\""))
        .expect("audit event captured");
    for field in [
        "tool=whoami",
        "outcome=\"ok\"",
        "ok=true",
        "caller=dave",
        "server_id=test-server",
        "request_id=5",
        "call_id=",
    ] {
        assert!(audit.contains(field), "{field} missing from {audit}");
    }
}
