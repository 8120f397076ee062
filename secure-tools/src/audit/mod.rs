//! The audit trail: one record per call, whatever its outcome.
//!
//! Records are JSON objects with top-level fields, written one per line by [`JsonLinesSink`] (to stderr by
//! default: stdout belongs to the protocol) or handed to a `tracing` subscriber by [`TracingSink`]. Strings from
//! callers are escaped by the JSON encoder, so a newline, a control character or a fragment of fake JSON in an
//! argument stays inside its string and can never break a line or forge a record; long strings are shortened.
//! An argument named in `audit_redact` is replaced by a [`marker`](redact_inputs) carrying only its length, and
//! every value is bounded (strings, arrays, objects, depth, and the whole).

pub mod chain;
mod record;
mod sink;

pub use chain::{
    ChainKey, ChainedFileSink, CheckpointKey, CheckpointPublicKey, Checkpoints, Durability,
};
#[cfg_attr(not(feature = "http"), allow(unused_imports))]
pub(crate) use record::MAX_TRACEPARENT_BYTES;
#[cfg_attr(not(any(feature = "http", feature = "otel")), allow(unused_imports))]
pub(crate) use record::MAX_TRACESTATE_BYTES;
pub use record::{
    AuditEvent, AuditRecord, CallStartedEvent, MAX_AUDIT_ITEMS, MAX_AUDIT_STRING,
    MAX_AUDIT_VALUE_BYTES, Origin, Outcome, Timestamp, ToolCallEvent, TraceContext, redact_inputs,
};
pub(crate) use record::{
    bound, bounded_request_id, record_line, redact_owned, safe_json_line, shorten_str,
};
pub use sink::{AuditError, AuditSink, JsonLinesSink, MemorySink, TracingSink};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a tool set's records go, and the server id stamped on each.
#[derive(Clone)]
pub struct Audit {
    server_id: Arc<str>,
    sinks: Arc<[Arc<dyn AuditSink>]>,
    failed: Arc<AtomicBool>,
}

impl Audit {
    /// Records go to every sink given, in order. A write fails if any sink fails.
    pub fn new(server_id: impl Into<Arc<str>>, sinks: Vec<Arc<dyn AuditSink>>) -> Self {
        Audit {
            server_id: server_id.into(),
            sinks: sinks.into(),
            failed: Arc::default(),
        }
    }

    /// The server id stamped on every record.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Whether the last write failed. While it has, calls are refused before their handler runs; each refusal is
    /// still written (and a success clears the flag).
    ///
    /// A sink that panics counts as one that failed: the panic is caught, the write reported failed.
    pub fn is_failing(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Writes one record to every sink.
    pub fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.record_at(Timestamp(std::time::SystemTime::now()), event)
    }

    /// Writes one record, stamped `ts`, to every sink.
    pub(crate) fn record_at(&self, ts: Timestamp, mut event: AuditEvent) -> Result<(), AuditError> {
        event.bound_values();
        let record = AuditRecord {
            ts,
            server_id: self.server_id.clone(),
            event,
        };
        let mut result = Ok(());
        for sink in self.sinks.iter() {
            let written =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.write(&record)))
                    .unwrap_or(Err(AuditError::Panicked));
            if let Err(err) = written {
                result = Err(err);
            }
        }
        self.failed.store(result.is_err(), Ordering::Relaxed);
        result
    }

    /// Flushes every sink (at shutdown). A sink that panics counts as one that failed.
    pub fn flush(&self) -> Result<(), AuditError> {
        self.sinks.iter().try_for_each(|sink| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink.flush()))
                .unwrap_or(Err(AuditError::Panicked))
        })
    }
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("server_id", &self.server_id)
            .field("sinks", &self.sinks.len())
            .field("failing", &self.is_failing())
            .finish()
    }
}
