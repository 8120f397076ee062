//! OpenTelemetry (feature `otel`): a span per call, call metrics, and the audit records as logs.
//!
//! **Spans.** Every call of a tool set given a [`Telemetry`] ([`ToolSetBuilder::telemetry`]) runs in a span of
//! kind `SERVER` named `tools/call {tool}`, following the OpenTelemetry semantic conventions for MCP:
//! `mcp.method.name` (`tools/call`), `gen_ai.tool.name`, `gen_ai.operation.name` (`execute_tool`),
//! `jsonrpc.request.id`, `mcp.session.id`, `network.transport` (`pipe` over stdio, `tcp` over HTTP, none over a
//! transport the conventions have no value for),
//! `client.address`, and on a call that did not succeed `error.type` (the refusal's code: `missing_scope:files.write`,
//! `rate_limited`, `tool_error`, ...) with an error status; ours add `secure_tools.outcome` and
//! `secure_tools.call_id`. The span continues the caller's trace: its parent is the W3C trace context
//! (`traceparent`, `tracestate`) in the request's `_meta` (SEP-414), or else in the HTTP request's headers. The
//! handler runs with the span as its current context, so spans your tool starts nest under it.
//!
//! Every audit record of the call (`call_started`, `tool_call`) carries the span's `trace_id` and `span_id`, and
//! the caller's span as `parent_span_id`: a record, its span and the caller's trace join on those ids. (With
//! traces not exported, or a tracer that makes no spans, a call has no span of its own: its records carry no
//! `span_id`.)
//!
//! **Metrics** ([`metric`] has the names): calls by tool and outcome, a duration histogram
//! (`mcp.server.operation.duration`, seconds), refusals by code, rate-limited calls, and authentication failures of
//! the HTTP runner. Tool names come from the set's definitions (a call of a tool that does not exist counts under
//! `_unknown`), so a caller cannot grow the number of series.
//!
//! **Logs.** [`AuditLogs`] emits each record as an OpenTelemetry log record (its body the record's JSON line, as
//! the chained audit file holds it when there is one, chain fields included; its trace context the call's span,
//! flagged sampled only when that span was, or without a span of its own when the caller's was), so a collector can
//! ship the trail to a SIEM. It never fails a write, so it is a copy beside a durable sink (a chained file's mirror,
//! or a second sink), never the trail itself: the local audit file stays the source of truth.
//!
//! **Setting it up.** The runners do it from the standard `OTEL_*` variables ([`Otel::from_env`]): nothing is
//! exported unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or a signal's own `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`)
//! is set, or the HTTP runner serves `/metrics`. A server of your own that sets up the SDK itself passes its
//! providers to [`Telemetry::new`], or uses the global ones with [`Telemetry::global`]; a runner serving a tool set
//! with a `Telemetry` of its own leaves the SDK to it (it reads no `OTEL_*` variable and sets no global provider).
//!
//! [`ToolSetBuilder::telemetry`]: crate::ToolSetBuilder::telemetry

mod sdk;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::{
    BoundCounter, BoundHistogram, Counter, Histogram, Meter, MeterProvider,
};
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{
    SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, Tracer as _, TracerProvider,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, StringValue, global};
use opentelemetry_sdk::propagation::TraceContextPropagator;

pub(crate) use sdk::Lookup;
pub use sdk::{Otel, OtelError};

use crate::audit::chain::LineMirror;
use crate::audit::{AuditError, AuditEvent, AuditRecord, AuditSink, Outcome, TraceContext};

/// The names of the metrics (as exported over OTLP; Prometheus turns dots into underscores and adds `_total` to
/// counters and the unit to the histogram: `secure_tools_calls_total`, `mcp_server_operation_duration_seconds`).
pub mod metric {
    /// Calls, by `gen_ai.tool.name` and `secure_tools.outcome`.
    pub const CALLS: &str = "secure_tools.calls";
    /// The duration of each call, in seconds (the MCP semantic conventions' operation duration), by
    /// `mcp.method.name`, `gen_ai.tool.name`, `network.transport` and, for a call that did not succeed,
    /// `error.type`.
    pub const DURATION: &str = "mcp.server.operation.duration";
    /// Calls that did not succeed, by `gen_ai.tool.name` and `secure_tools.code`.
    pub const REFUSALS: &str = "secure_tools.refusals";
    /// Calls refused by a rate limit, by `gen_ai.tool.name`.
    pub const RATE_LIMITED: &str = "secure_tools.rate_limited";
    /// Requests or connections refused for their credentials (HTTP 401, a rejected client certificate), by
    /// `secure_tools.reason`. Counted before the audit's throttle of such refusals, so a flood shows in full.
    pub const AUTH_FAILURES: &str = "secure_tools.auth.failures";
}

/// The tool name metrics use for a call of a tool that does not exist.
pub(crate) const UNKNOWN_TOOL: &str = "_unknown";

/// Histogram boundaries, in seconds: calls of a local tool take microseconds, a remote one's seconds.
const DURATION_BOUNDARIES: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 5.0, 30.0,
];

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("secure-tools")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// What a tool set reports to OpenTelemetry: its tracer and its instruments.
#[derive(Clone)]
pub struct Telemetry {
    tracer: std::sync::Arc<global::BoxedTracer>,
    calls: Counter<u64>,
    duration: Histogram<f64>,
    refusals: Counter<u64>,
    rate_limited: Counter<u64>,
    auth_failures: Counter<u64>,
    /// The call counter and the duration bound to the attributes of calls that succeeded, per tool, outcome and
    /// transport: recorded without hashing and looking up the attributes each time. Tool names come from the set's
    /// definitions, so the map stays as small as the set.
    bound: Arc<Mutex<HashMap<BoundKey, BoundCall>>>,
    /// Whether spans go anywhere: `false` when traces are not exported, so that a call does not build a span
    /// (its name and attributes) only for the no-op tracer to drop it.
    spans: bool,
    /// Whether a call's span continues the trace context its caller sent (W3C `traceparent` in `_meta` or a
    /// header): see [`Telemetry::without_caller_context`].
    caller_context: bool,
}

/// A tool's name, the call's outcome and its transport.
type BoundKey = (Arc<str>, Outcome, Option<&'static str>);

/// The instruments a call without a refusal code records, bound to its attributes.
struct BoundCall {
    calls: BoundCounter<u64>,
    duration: BoundHistogram<f64>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Spans and metrics through these providers.
    pub fn new<T>(tracers: &T, meters: &impl MeterProvider) -> Self
    where
        T: TracerProvider,
        T::Tracer: Send + Sync + 'static,
        <T::Tracer as opentelemetry::trace::Tracer>::Span: Send + Sync + 'static,
    {
        let tracer = global::BoxedTracer::new(Box::new(tracers.tracer_with_scope(scope())));
        Self::with(tracer, &meters.meter_with_scope(scope()))
    }

    /// Spans and metrics through the global providers (`opentelemetry::global`), as set when this is called.
    pub fn global() -> Self {
        Self::with(
            global::tracer_with_scope(scope()),
            &global::meter_with_scope(scope()),
        )
    }

    fn with(tracer: global::BoxedTracer, meter: &Meter) -> Self {
        Telemetry {
            tracer: std::sync::Arc::new(tracer),
            calls: meter
                .u64_counter(metric::CALLS)
                .with_description("Tool calls, by tool and outcome")
                .with_unit("{call}")
                .build(),
            duration: meter
                .f64_histogram(metric::DURATION)
                .with_description("Duration of tool calls, from receipt to result")
                .with_unit("s")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            refusals: meter
                .u64_counter(metric::REFUSALS)
                .with_description("Tool calls that did not succeed, by tool and code")
                .with_unit("{call}")
                .build(),
            rate_limited: meter
                .u64_counter(metric::RATE_LIMITED)
                .with_description("Tool calls refused by a rate limit, by tool")
                .with_unit("{call}")
                .build(),
            auth_failures: meter
                .u64_counter(metric::AUTH_FAILURES)
                .with_description("Requests refused for their credentials, by reason")
                .with_unit("{request}")
                .build(),
            bound: Arc::default(),
            spans: true,
            caller_context: true,
        }
    }

    /// Calls do not continue the trace context their callers send (`traceparent` and `tracestate`, in `_meta` or
    /// HTTP headers): each call's span starts a trace of its own, and its records carry that trace, naming no
    /// parent. For a server at the edge, where any caller could attach its calls to another's trace, or keep them out
    /// of the backend by sending `sampled` off (the runners do this for `OTEL_PROPAGATORS=none`).
    pub fn without_caller_context(mut self) -> Self {
        self.caller_context = false;
        self
    }

    /// No spans: the calls' records still carry the caller's trace context.
    fn without_spans(mut self) -> Self {
        self.spans = false;
        self
    }

    /// Starts the span of a call.
    pub(crate) fn start_call(&self, call: &CallFacts<'_>) -> CallSpan {
        let parent = if self.caller_context {
            remote_parent(call.traceparent, call.tracestate)
        } else {
            None
        };
        let remote_parent_span = parent.as_ref().map(|cx| cx.span().span_context().span_id());
        let base = parent.unwrap_or_else(Context::current);
        // The span the call starts under (the caller's, or one current in this process): never the call's own.
        let base_span = {
            let span = base.span();
            let ids = span.span_context();
            ids.is_valid().then(|| ids.span_id())
        };
        if !self.spans {
            // What the no-op tracer would give: the caller's span as the call's.
            return CallSpan {
                context: base,
                remote_parent_span,
                base_span,
                transport: call.transport,
                own: false,
            };
        }
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new("mcp.method.name", "tools/call"));
        attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        attributes.push(KeyValue::new("gen_ai.tool.name", tool_name(call.tool)));
        attributes.push(KeyValue::new("jsonrpc.request.id", call.request_id.clone()));
        attributes.push(KeyValue::new("secure_tools.call_id", call.call_id.clone()));
        attributes.extend(call.transport.and_then(network_transport));
        if let Some(session) = call.session_id {
            attributes.push(KeyValue::new("mcp.session.id", session.to_owned()));
        }
        // Behind a trusted proxy, the client is the one it forwarded for (the semantic conventions' `client.address`,
        // "behind any intermediaries"), and the connection's end the proxy's (`network.peer.*`).
        match (call.forwarded_for, call.client_address) {
            (Some(client), peer) => {
                attributes.push(KeyValue::new("client.address", client.to_string()));
                if let Some(peer) = peer {
                    attributes.push(KeyValue::new("network.peer.address", peer.ip().to_string()));
                    attributes.push(KeyValue::new("network.peer.port", i64::from(peer.port())));
                }
            }
            (None, Some(addr)) => {
                attributes.push(KeyValue::new("client.address", addr.ip().to_string()));
                attributes.push(KeyValue::new("client.port", i64::from(addr.port())));
            }
            (None, None) => {}
        }
        let span = self
            .tracer
            .span_builder(format!(
                "tools/call {}",
                call.tool.map_or(UNKNOWN_TOOL, |tool| &**tool)
            ))
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&*self.tracer, &base);
        let context = base.with_span(span);
        CallSpan {
            context,
            remote_parent_span,
            base_span,
            transport: call.transport,
            own: true,
        }
    }

    /// Ends a call's span and counts the call.
    pub(crate) fn end_call(
        &self,
        span: Option<CallSpan>,
        tool: Option<&Arc<str>>,
        outcome: Outcome,
        code: Option<&str>,
        duration: Duration,
    ) {
        let transport = span.as_ref().and_then(|s| s.transport);
        if let Some(span) = span.filter(|span| span.own) {
            let span = span.context.span();
            span.set_attribute(KeyValue::new("secure_tools.outcome", outcome.as_str()));
            if let Some(code) = code {
                span.set_attribute(KeyValue::new("error.type", code.to_owned()));
                span.set_status(Status::error(code.to_owned()));
            }
            span.end();
        }
        let seconds = duration.as_secs_f64();
        if code.is_none()
            && let Some(name) = tool
        {
            let key = (name.clone(), outcome, transport);
            let mut bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
            let call = bound
                .entry(key)
                .or_insert_with(|| self.bind(name, outcome, transport));
            call.calls.add(1);
            call.duration.record(seconds);
            return;
        }
        let tool = KeyValue::new("gen_ai.tool.name", tool_name(tool));
        self.calls.add(
            1,
            &[
                tool.clone(),
                KeyValue::new("secure_tools.outcome", outcome.as_str()),
            ],
        );
        let mut attributes = vec![KeyValue::new("mcp.method.name", "tools/call"), tool.clone()];
        attributes.extend(transport.and_then(network_transport));
        if let Some(code) = code {
            attributes.push(KeyValue::new("error.type", code.to_owned()));
            self.refusals.add(
                1,
                &[
                    tool.clone(),
                    KeyValue::new("secure_tools.code", code.to_owned()),
                ],
            );
            if code == crate::call::codes::RATE_LIMITED {
                self.rate_limited.add(1, &[tool]);
            }
        }
        self.duration.record(seconds, &attributes);
    }

    /// The call counter and the duration bound to the attributes of a call of `tool` with `outcome` and no code,
    /// the same attributes [`Telemetry::end_call`] gives them unbound.
    fn bind(
        &self,
        tool: &Arc<str>,
        outcome: Outcome,
        transport: Option<&'static str>,
    ) -> BoundCall {
        let tool = KeyValue::new("gen_ai.tool.name", tool_name(Some(tool)));
        let mut attributes = vec![KeyValue::new("mcp.method.name", "tools/call"), tool.clone()];
        attributes.extend(transport.and_then(network_transport));
        BoundCall {
            calls: self.calls.bind(&[
                tool,
                KeyValue::new("secure_tools.outcome", outcome.as_str()),
            ]),
            duration: self.duration.bind(&attributes),
        }
    }

    /// Counts a request or connection refused for its credentials.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .add(1, &[KeyValue::new("secure_tools.reason", reason)]);
    }
}

/// A tool's name as an attribute value: shared with the tool set, not copied per call.
fn tool_name(tool: Option<&Arc<str>>) -> opentelemetry::Value {
    match tool {
        Some(name) => StringValue::from(name.clone()).into(),
        None => UNKNOWN_TOOL.into(),
    }
}

/// `network.transport` as the semantic conventions define it (`pipe`, `tcp`, `udp`, `unix`, `quic`): `pipe` for
/// stdio, `tcp` for HTTP, `unix` for a transport named so; none for any other (the testing client's `in-process`,
/// a name of a server's own), rather than a value that would misdescribe it.
fn network_transport(transport: &str) -> Option<KeyValue> {
    let value = match transport {
        "stdio" => "pipe",
        "http" => "tcp",
        "unix" => "unix",
        _ => return None,
    };
    Some(KeyValue::new("network.transport", value))
}

/// What the span of a call is made from.
pub(crate) struct CallFacts<'a> {
    /// `None` for a tool the set does not have.
    pub(crate) tool: Option<&'a Arc<str>>,
    pub(crate) request_id: String,
    pub(crate) call_id: String,
    pub(crate) transport: Option<&'static str>,
    pub(crate) session_id: Option<&'a str>,
    pub(crate) client_address: Option<std::net::SocketAddr>,
    /// The client a trusted proxy forwarded the call for, where `client_address` is the proxy's.
    pub(crate) forwarded_for: Option<std::net::IpAddr>,
    pub(crate) traceparent: Option<&'a str>,
    pub(crate) tracestate: Option<&'a str>,
}

/// The span of one call, with the context the handler runs in.
pub(crate) struct CallSpan {
    context: Context,
    remote_parent_span: Option<SpanId>,
    /// The span the call started under, if any: its id is not the call's span id.
    base_span: Option<SpanId>,
    transport: Option<&'static str>,
    /// Whether the span is the call's own (else the caller's, or none: not ours to end).
    own: bool,
}

impl CallSpan {
    /// The context the call's work runs in (the span as current).
    pub(crate) fn context(&self) -> &Context {
        &self.context
    }

    /// The ids the call's audit records carry.
    pub(crate) fn record_ids(&self) -> Option<TraceContext> {
        let span = self.context.span();
        let ids = span.span_context();
        ids.is_valid().then(|| TraceContext {
            trace_id: base16ct::lower::encode_string(&ids.trace_id().to_bytes()),
            // Without a span of its own (traces not exported, or a tracer that makes no spans, such as the API's
            // no-op one behind `Telemetry::global()` with no provider set, which hands back the parent's context),
            // the call's context is the span it started under (its caller's, or one current in this process when a
            // handler calls another tool): that is not the call's span.
            span_id: (self.base_span != Some(ids.span_id()))
                .then(|| base16ct::lower::encode_string(&ids.span_id().to_bytes())),
            parent_span_id: self
                .remote_parent_span
                .map(|id| base16ct::lower::encode_string(&id.to_bytes())),
            // The span's flags: the sampler's decision for a span of its own, or else its caller's (as sent).
            sampled: ids.trace_flags().is_sampled(),
        })
    }
}

/// The caller's span, from a W3C `traceparent` (and `tracestate`), as a remote parent; `None` unless valid. Read
/// by the SDK's W3C propagator, once the audit's own reading accepts it: the propagator splits a value into a
/// vector of its parts (16 bytes a part, so a few megabytes of `-` in a request's `_meta` made tens of megabytes)
/// and reads ids more loosely (`+1`, short ids), so records would carry ids the caller never sent.
fn remote_parent(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Context> {
    let traceparent = traceparent.filter(|p| crate::audit::TraceContext::parse(p).is_some());
    // Printable ASCII (and the list's optional tabs) only, as W3C Trace Context writes its values: the SDK refuses
    // only `,` and `=` in a value, and an OTel round's CR LF, escape sequences and NUL from `_meta` went into every
    // span the caller parented, and on to whatever the handler propagated to.
    // Tabs only around a list's members, where the list's grammar allows white space (a second round's tab inside a
    // value was kept).
    let tracestate = tracestate.filter(|s| {
        s.len() <= crate::audit::MAX_TRACESTATE_BYTES
            && s.split(',').all(|member| {
                member
                    .trim_matches([' ', '\t'])
                    .bytes()
                    .all(|b| (0x20..=0x7e).contains(&b))
            })
    });
    /// The two trace-context fields, as the propagator reads headers.
    struct Fields<'a>(&'a str, Option<&'a str>);
    impl Extractor for Fields<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                "traceparent" => Some(self.0),
                "tracestate" => self.1,
                _ => None,
            }
        }
        fn keys(&self) -> Vec<&str> {
            vec!["traceparent", "tracestate"]
        }
    }
    let fields = Fields(traceparent?, tracestate);
    let context = TraceContextPropagator::new().extract_with_context(&Context::new(), &fields);
    context.has_active_span().then_some(context)
}

/// Emits each audit record as an OpenTelemetry log record: body the record's JSON, event name
/// `secure_tools.audit.{event}`, the trace context of the call's span, attributes naming the server, and for a call
/// the tool, outcome and call id. Beside a chained audit file it is the file's [`LineMirror`]
/// ([`ChainedFileSink::with_mirror`](crate::audit::ChainedFileSink::with_mirror)): the body is then the line as
/// written, with `seq`, `prev` and the seal (and checkpoints are copied too), so a collector's copy shows a gap as
/// the file does. Otherwise add it as an [`AuditSink`] beside a durable one, never alone:
/// [`ToolSetBuilder::audit_sink`](crate::ToolSetBuilder::audit_sink) replaces the default destination, and this sink
/// never fails a write (the batch exporter drops and reports), so alone it would leave no durable trail and the
/// audit could not fail closed. The local audit file stays the source of truth.
pub struct AuditLogs {
    logger: opentelemetry_sdk::logs::SdkLogger,
}

impl AuditLogs {
    /// Records go out through `provider`.
    pub fn new(provider: &opentelemetry_sdk::logs::SdkLoggerProvider) -> Self {
        AuditLogs {
            logger: provider.logger_with_scope(scope()),
        }
    }
}

impl AuditLogs {
    /// Emits one log record: `body` is the record's JSON, or a line of the audit file that holds no record of this
    /// process (a checkpoint, a record appended as JSON) when `record` is `None`.
    fn emit(&self, record: Option<&AuditRecord>, body: StringValue) {
        let mut log = self.logger.create_log_record();
        log.set_body(AnyValue::String(body));
        let Some(record) = record else {
            log.set_timestamp(std::time::SystemTime::now());
            log.set_event_name("secure_tools.audit.line");
            log.set_severity_number(Severity::Info);
            log.set_severity_text(Severity::Info.name());
            self.logger.emit(log);
            return;
        };
        log.set_timestamp(record.ts.0);
        log.set_event_name(event_name(&record.event));
        log.add_attribute(
            "secure_tools.server_id",
            StringValue::from(record.server_id.clone()),
        );
        let (severity, trace) = match &record.event {
            AuditEvent::ToolCall(call) => {
                // A tool the set does not have is named by the caller (up to a kilobyte, any text): under
                // `_unknown`, as in the span and the metrics, so that callers cannot grow an index of names. The
                // body keeps the name as recorded.
                let unknown = matches!(
                    call.error.as_deref(),
                    Some(crate::call::codes::UNKNOWN_TOOL | crate::call::codes::UNDECLARED_TOOL)
                );
                let tool = if unknown {
                    StringValue::from(UNKNOWN_TOOL)
                } else {
                    StringValue::from(call.tool.clone())
                };
                log.add_attribute("gen_ai.tool.name", tool);
                log.add_attribute("secure_tools.outcome", call.outcome.as_str());
                log.add_attribute("secure_tools.call_id", call.call_id.to_string());
                // A round that asked the client a question is not a failure.
                let severity = if call.ok || call.outcome == Outcome::InputRequired {
                    Severity::Info
                } else {
                    Severity::Warn
                };
                (severity, call.trace.as_ref())
            }
            AuditEvent::CallStarted(call) => {
                log.add_attribute("gen_ai.tool.name", StringValue::from(call.tool.clone()));
                log.add_attribute("secure_tools.call_id", call.call_id.to_string());
                (Severity::Info, call.trace.as_ref())
            }
            AuditEvent::ServerStart { .. }
            | AuditEvent::ServerStop { .. }
            | AuditEvent::Session { .. }
            | AuditEvent::SessionClosed { .. } => (Severity::Info, None),
            _ => (Severity::Warn, None),
        };
        log.set_severity_number(severity);
        log.set_severity_text(severity.name());
        // The span the record was written in: the call's, or without a span of its own, its caller's.
        if let Some(trace) = trace
            && let (Ok(trace_id), Some(Ok(span_id))) = (
                TraceId::from_hex(&trace.trace_id),
                trace
                    .span_id
                    .as_deref()
                    .or(trace.parent_span_id.as_deref())
                    .map(SpanId::from_hex),
            )
        {
            let flags = if trace.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::NOT_SAMPLED
            };
            log.set_trace_context(trace_id, span_id, Some(flags));
        }
        self.logger.emit(log);
    }
}

/// As a sink of its own (the audit goes to no file): each record serialized for the log's body.
impl AuditSink for AuditLogs {
    fn write(&self, record: &AuditRecord) -> Result<(), AuditError> {
        // The other sink reports what cannot be encoded; a copy for the collector is not worth failing a call.
        if let Ok(body) = serde_json::to_string(record) {
            self.emit(Some(record), body.into());
        }
        Ok(())
    }
}

/// Beside a chained audit file: each line as written, chain fields and all, with no second serialization.
impl LineMirror for AuditLogs {
    fn mirror(&self, record: Option<&AuditRecord>, line: &str) {
        // Shared, so that the batch processor's copy of the record does not copy the line again.
        self.emit(record, StringValue::from(Arc::<str>::from(line)));
    }
}

fn event_name(event: &AuditEvent) -> &'static str {
    match event {
        AuditEvent::ToolCall(_) => "secure_tools.audit.tool_call",
        AuditEvent::CallStarted(_) => "secure_tools.audit.call_started",
        AuditEvent::ServerStart { .. } => "secure_tools.audit.server_start",
        AuditEvent::ServerStop { .. } => "secure_tools.audit.server_stop",
        AuditEvent::Session { .. } => "secure_tools.audit.session",
        AuditEvent::SessionClosed { .. } => "secure_tools.audit.session_closed",
        AuditEvent::VersionRejected { .. } => "secure_tools.audit.version_rejected",
        AuditEvent::MessageRejected { .. } => "secure_tools.audit.message_rejected",
        AuditEvent::MethodCall { .. } => "secure_tools.audit.method_call",
        AuditEvent::HttpRejected { .. } => "secure_tools.audit.http_rejected",
        AuditEvent::TlsRejected { .. } => "secure_tools.audit.tls_rejected",
        AuditEvent::ConnectionRejected { .. } => "secure_tools.audit.connection_rejected",
        AuditEvent::AuditSuppressed { .. } => "secure_tools.audit.audit_suppressed",
        AuditEvent::ToolsLockMismatch { .. } => "secure_tools.audit.tools_lock_mismatch",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use opentelemetry::logs::AnyValue;
    use opentelemetry::metrics::noop::NoopMeterProvider;
    use opentelemetry::trace::noop::NoopTracerProvider;
    use opentelemetry::trace::{TraceContextExt as _, TraceFlags};
    use opentelemetry::{Context, InstrumentationScope};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord, SdkLoggerProvider};
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Span, SpanData, SpanProcessor};

    use super::{AuditLogs, CallFacts, Telemetry, UNKNOWN_TOOL, remote_parent};
    use crate::audit::Outcome;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// The spans ended and the log records emitted, as a collector would receive them.
    #[derive(Debug, Default, Clone)]
    struct Received {
        spans: Arc<Mutex<Vec<SpanData>>>,
        logs: Arc<Mutex<Vec<SdkLogRecord>>>,
    }

    impl Received {
        fn spans(&self) -> Vec<SpanData> {
            std::mem::take(&mut *self.spans.lock().unwrap_or_else(PoisonError::into_inner))
        }

        /// The values of `key` on the log records of `event`.
        fn log_attributes(&self, event: &str, key: &str) -> Vec<String> {
            let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
            logs.iter()
                .filter(|log| log.event_name() == Some(event))
                .flat_map(|log| log.attributes_iter())
                .filter(|(k, _)| k.as_str() == key)
                .map(|(_, value)| match value {
                    AnyValue::String(value) => value.to_string(),
                    other => format!("{other:?}"),
                })
                .collect()
        }

        /// The trace flags of the log records of `event` (`None` for a record without a trace context).
        fn log_trace_flags(&self, event: &str) -> Vec<Option<TraceFlags>> {
            let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
            logs.iter()
                .filter(|log| log.event_name() == Some(event))
                .map(|log| log.trace_context().and_then(|cx| cx.trace_flags))
                .collect()
        }
    }

    impl SpanProcessor for Received {
        fn on_start(&self, _: &mut Span, _: &Context) {}
        fn on_end(&self, span: SpanData) {
            self.spans
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(span);
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    impl LogProcessor for Received {
        fn emit(&self, data: &mut SdkLogRecord, _: &InstrumentationScope) {
            self.logs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(data.clone());
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    /// A tool set's telemetry whose spans end in `Received`, with no metrics.
    fn traced() -> (Received, Telemetry) {
        let received = Received::default();
        let tracers = SdkTracerProvider::builder()
            .with_span_processor(received.clone())
            .build();
        (
            received,
            Telemetry::new(&tracers, &NoopMeterProvider::new()),
        )
    }

    fn call_over<'a>(
        tool: &'a Arc<str>,
        transport: &'static str,
        traceparent: &'a str,
    ) -> CallFacts<'a> {
        CallFacts {
            tool: Some(tool),
            request_id: "1".into(),
            call_id: "call".into(),
            transport: Some(transport),
            session_id: None,
            client_address: None,
            forwarded_for: None,
            traceparent: Some(traceparent),
            tracestate: None,
        }
    }

    #[test]
    fn a_call_under_a_no_op_tracer_records_its_callers_span_as_the_parent_only() {
        // A tracer that makes no spans (`Telemetry::global()` with no provider set) hands back its parent's
        // context: the call has no span of its own.
        let telemetry = Telemetry::new(&NoopTracerProvider::new(), &NoopMeterProvider::new());
        let tool = Arc::from("read");
        let span = telemetry.start_call(&call_over(&tool, "stdio", VALID));
        let ids = span.record_ids().unwrap();
        assert_eq!(ids.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(ids.parent_span_id.as_deref(), Some("b7ad6b7169203331"));
        assert_eq!(ids.span_id, None, "{ids:?}");
        telemetry.end_call(Some(span), Some(&tool), Outcome::Ok, None, Duration::ZERO);
    }

    #[test]
    fn a_call_made_under_a_current_span_without_its_own_does_not_take_that_span_for_its_own() {
        // A handler's in-process call of another tool, traces not exported: no traceparent, and the current
        // context holds the outer call's span. That span is not the inner call's.
        let outer = SdkTracerProvider::builder().build();
        let outer_span = opentelemetry::trace::Tracer::start(
            &opentelemetry::trace::TracerProvider::tracer(&outer, "outer"),
            "outer call",
        );
        let outer_id = opentelemetry::trace::Span::span_context(&outer_span).span_id();
        let _current = Context::current_with_span(outer_span).attach();
        let telemetry = Telemetry::new(&NoopTracerProvider::new(), &NoopMeterProvider::new());
        let tool = Arc::from("read");
        let facts = CallFacts {
            traceparent: None,
            ..call_over(&tool, "in-process", VALID)
        };
        for span in [
            telemetry.start_call(&facts),
            Telemetry::new(&NoopTracerProvider::new(), &NoopMeterProvider::new())
                .without_spans()
                .start_call(&facts),
        ] {
            let ids = span.record_ids().unwrap();
            assert_ne!(
                ids.span_id.as_deref(),
                Some(base16ct::lower::encode_string(&outer_id.to_bytes()).as_str()),
                "{ids:?}"
            );
            assert_eq!(ids.span_id, None, "{ids:?}");
        }
    }

    #[test]
    fn network_transport_is_set_only_to_a_value_the_conventions_define() {
        let (received, telemetry) = traced();
        let tool = Arc::from("read");
        for (transport, expected) in [
            ("stdio", Some("pipe")),
            ("http", Some("tcp")),
            ("unix", Some("unix")),
            ("in-process", None),
            ("websocket", None),
        ] {
            let span = telemetry.start_call(&call_over(&tool, transport, VALID));
            let ids = span.record_ids().unwrap();
            assert!(ids.span_id.is_some() && ids.span_id != ids.parent_span_id);
            telemetry.end_call(Some(span), Some(&tool), Outcome::Ok, None, Duration::ZERO);
            let spans = received.spans();
            assert_eq!(spans.len(), 1);
            let value = spans[0]
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "network.transport")
                .map(|kv| kv.value.as_str().into_owned());
            assert_eq!(value.as_deref(), expected, "{transport}");
        }
    }

    #[test]
    fn without_the_callers_context_a_call_starts_a_trace_of_its_own() {
        let (received, telemetry) = traced();
        let telemetry = telemetry.without_caller_context();
        let tool = Arc::from("read");
        let span = telemetry.start_call(&call_over(&tool, "http", VALID));
        let ids = span.record_ids().unwrap();
        assert_ne!(ids.trace_id, "0af7651916cd43dd8448eb211c80319c", "{ids:?}");
        assert_eq!(ids.parent_span_id, None, "{ids:?}");
        assert!(ids.span_id.is_some(), "{ids:?}");
        telemetry.end_call(Some(span), Some(&tool), Outcome::Ok, None, Duration::ZERO);
        let spans = received.spans();
        assert_eq!(
            spans[0].parent_span_id,
            opentelemetry::trace::SpanId::INVALID
        );
    }

    #[test]
    fn a_tracestate_of_other_than_printable_ascii_is_dropped() {
        let state = |tracestate: &str| {
            remote_parent(Some(VALID), Some(tracestate))
                .unwrap()
                .span()
                .span_context()
                .trace_state()
                .header()
        };
        assert_eq!(
            state("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        );
        for hostile in [
            "vendor=ok\r\n2026-01-01T00:00:00Z ERROR forged entry",
            "vendor=\u{1b}[31mRED\u{1b}[0m\u{7}",
            "vendor=a\u{0}b",
            "vendor=h\u{e9}llo\u{202e}txt",
            "vendor=a\tb",
        ] {
            assert_eq!(state(hostile), "", "{hostile:?}");
        }
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_address_is_the_forwarded_one() {
        let (received, telemetry) = traced();
        let tool = Arc::from("read");
        let peer: std::net::SocketAddr = "10.0.0.2:40000".parse().unwrap();
        let attributes = |forwarded_for: Option<std::net::IpAddr>| {
            let facts = CallFacts {
                client_address: Some(peer),
                forwarded_for,
                ..call_over(&tool, "http", VALID)
            };
            let span = telemetry.start_call(&facts);
            telemetry.end_call(Some(span), Some(&tool), Outcome::Ok, None, Duration::ZERO);
            let spans = received.spans();
            let mut pairs: Vec<(String, String)> = spans[0]
                .attributes
                .iter()
                .filter(|kv| {
                    kv.key.as_str().starts_with("client.")
                        || kv.key.as_str().starts_with("network.peer.")
                })
                .map(|kv| (kv.key.to_string(), kv.value.as_str().into_owned()))
                .collect();
            pairs.sort();
            pairs
        };
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            attributes(None),
            [
                pair("client.address", "10.0.0.2"),
                pair("client.port", "40000")
            ]
        );
        assert_eq!(
            attributes(Some("198.51.100.7".parse().unwrap())),
            [
                pair("client.address", "198.51.100.7"),
                pair("network.peer.address", "10.0.0.2"),
                pair("network.peer.port", "40000")
            ]
        );
    }

    #[tokio::test]
    async fn the_logs_name_an_unknown_tool_as_spans_and_metrics_do() {
        let received = Received::default();
        let loggers = SdkLoggerProvider::builder()
            .with_log_processor(received.clone())
            .build();
        let tools = crate::ToolSet::builder(())
            .audit_sink(AuditLogs::new(&loggers))
            .build()
            .unwrap();
        let caller = crate::Caller::new("alice", crate::Grant::parse("").unwrap());
        let sent = "a-name-the-caller-chose-".repeat(40);
        let answer = tools
            .call(crate::call::CallRequest::new(caller, sent, None))
            .await;
        assert!(answer.is_err());
        assert_eq!(
            received.log_attributes("secure_tools.audit.tool_call", "gen_ai.tool.name"),
            [UNKNOWN_TOOL]
        );
    }

    #[tokio::test]
    async fn a_calls_log_records_are_flagged_sampled_only_when_its_trace_is() {
        // A collector sampling by trace, or a backend joining logs to spans, reads the log record's flags: a call
        // whose span the sampler dropped, or whose caller sent flags `00`, must not claim its trace was sampled.
        let (sent_01, sent_00) = (
            Some(VALID),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),
        );
        let (yes, no) = (Some(TraceFlags::SAMPLED), Some(TraceFlags::NOT_SAMPLED));
        // The SDK's default sampler; `None`: traces not exported, so the call has no span of its own.
        let parent_based = || Some(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let always_off = || Some(Sampler::AlwaysOff);
        let (mut wanted, mut got) = (Vec::new(), Vec::new());
        for (case, sampler, traceparent, flags) in [
            ("always off, no caller", always_off(), None, no),
            ("always off, caller's 01", always_off(), sent_01, no),
            ("parent-based, no caller", parent_based(), None, yes),
            ("parent-based, caller's 01", parent_based(), sent_01, yes),
            ("parent-based, caller's 00", parent_based(), sent_00, no),
            ("no span of its own, caller's 01", None, sent_01, yes),
            ("no span of its own, caller's 00", None, sent_00, no),
            ("no span of its own, no caller", None, None, None),
        ] {
            wanted.push((case, vec![flags]));
            let received = Received::default();
            let loggers = SdkLoggerProvider::builder()
                .with_log_processor(received.clone())
                .build();
            let spans = sampler.is_some();
            let tracers = SdkTracerProvider::builder()
                .with_sampler(sampler.unwrap_or(Sampler::AlwaysOn))
                .build();
            let mut telemetry = Telemetry::new(&tracers, &NoopMeterProvider::new());
            if !spans {
                telemetry = telemetry.without_spans();
            }
            let tools = crate::ToolSet::builder(())
                .telemetry(telemetry)
                .audit_sink(AuditLogs::new(&loggers))
                .build()
                .unwrap();
            let caller = crate::Caller::new("alice", crate::Grant::parse("").unwrap());
            let connection = crate::call::Connection {
                traceparent: traceparent.map(Arc::from),
                ..Default::default()
            };
            let call = crate::call::CallRequest::new(caller, "absent", None);
            let _ = tools.call(call.with_connection(connection)).await;
            got.push((
                case,
                received.log_trace_flags("secure_tools.audit.tool_call"),
            ));
        }
        assert_eq!(got, wanted);
    }

    #[test]
    fn a_remote_parent_is_taken_only_from_a_traceparent_the_audit_reads_too() {
        let parent = remote_parent(Some(VALID), Some("vendor=value")).unwrap();
        let span = parent.span();
        let context = span.span_context();
        assert_eq!(
            context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(context.trace_state().header(), "vendor=value");
        // Ids the SDK alone would read (`from_str_radix` takes a sign and short ids).
        for loose in [
            "00-abc-+1-01",
            "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(remote_parent(Some(loose), None).is_none(), "{loose}");
        }
        // A later version may add fields, not megabytes of them.
        let long = format!("01-{}{}", &VALID[3..], "-x".repeat(1 << 20));
        assert!(remote_parent(Some(&long), None).is_none());
        assert!(crate::audit::TraceContext::parse(&long).is_none());
        let dashes = "-".repeat(4 << 20);
        assert!(remote_parent(Some(&dashes), None).is_none());
        // A tracestate too long to keep is dropped, the parent kept.
        let state = format!("vendor={}", "a".repeat(2000));
        let parent = remote_parent(Some(VALID), Some(&state)).unwrap();
        assert_eq!(parent.span().span_context().trace_state().header(), "");
    }
}
