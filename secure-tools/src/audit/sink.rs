use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use super::record::{AuditEvent, AuditRecord};

/// Why an audit record could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The destination refused the bytes.
    #[error("audit sink could not write: {0}")]
    Io(#[from] io::Error),
    /// The record could not be encoded.
    #[error("audit record could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    /// The record was written (the file holds it, and a chained file's chain moved on past it) but could not be
    /// made durable as the sink was asked to (`fdatasync` failed): it is reported as a failure all the same, so a
    /// call whose record may not survive a power loss is not answered as if it would.
    #[error("audit record written but not synced to the disk: {0}")]
    NotSynced(io::Error),
    /// The sink panicked; the panic was caught and the write counted as failed.
    #[error("audit sink panicked")]
    Panicked,
    /// The sink refused for a reason of its own.
    #[error("audit sink failed: {0}")]
    Other(String),
}

/// A destination for audit records.
///
/// `write` must not return before the record is handed to its destination: the pipeline reports a call's result
/// only after its record is written, and fails the call if the write fails.
pub trait AuditSink: Send + Sync + 'static {
    /// Writes one record.
    fn write(&self, record: &AuditRecord) -> Result<(), AuditError>;
    /// Flushes anything buffered (called at shutdown).
    fn flush(&self) -> Result<(), AuditError> {
        Ok(())
    }
}

/// Writes each record as one line of JSON, and flushes it, before the call's result is returned.
pub struct JsonLinesSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonLinesSink {
    /// Records go to `out`.
    pub fn new(out: impl Write + Send + 'static) -> Self {
        JsonLinesSink {
            out: Mutex::new(Box::new(out)),
        }
    }

    /// Records go to standard error (the default: standard output belongs to the protocol).
    pub fn stderr() -> Self {
        JsonLinesSink::new(io::stderr())
    }

    /// Records are appended to the file at `path`, created if missing.
    pub fn append_to(path: impl AsRef<Path>) -> io::Result<Self> {
        let file: File = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonLinesSink::new(file))
    }
}

impl AuditSink for JsonLinesSink {
    fn write(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let mut line = super::record_line(record)?;
        line.push(b'\n');
        // A panic elsewhere while the lock was held cannot leave a half-written line behind: each line goes out in
        // one `write_all`, so the poisoned writer is still usable.
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_all(&line)?;
        out.flush()?;
        Ok(())
    }

    fn flush(&self) -> Result<(), AuditError> {
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(out.flush()?)
    }
}

/// Hands each record to `tracing` as an event with target `secure_tools::audit`, its fields as event fields, so a
/// subscriber the application already has receives the audit trail.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    fn write(&self, record: &AuditRecord) -> Result<(), AuditError> {
        match &record.event {
            AuditEvent::ToolCall(call) => {
                let inputs = serde_json::to_string(&call.inputs)?;
                let scopes = call
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                let request_id = call.request_id.to_string();
                let fields = call
                    .fields
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()?;
                tracing::info!(
                    target: "secure_tools::audit",
                    ts = %record.ts,
                    server_id = %record.server_id,
                    event = "tool_call",
                    call_id = %call.call_id,
                    request_id = %request_id,
                    tool = %call.tool,
                    scopes = %scopes,
                    caller = %call.caller,
                    outcome = call.outcome.as_str(),
                    ok = call.ok,
                    inputs = %inputs,
                    error = call.error.as_deref(),
                    duration_us = call.duration_us,
                    transport = call.origin.transport,
                    client_name = call.origin.client_name.as_deref(),
                    client_version = call.origin.client_version.as_deref(),
                    remote_addr = call.origin.remote_addr.map(tracing::field::display),
                    forwarded_for = call.origin.forwarded_for.map(tracing::field::display),
                    session_id = call.origin.session_id.as_deref(),
                    token_id = call.origin.token_id.as_deref(),
                    fields = fields.as_deref(),
                    "tool call"
                );
            }
            AuditEvent::HttpRejected {
                status,
                reason,
                detail,
                subject,
                method,
                path,
                remote_addr,
                forwarded_for,
                session_id,
            } => {
                tracing::info!(
                    target: "secure_tools::audit",
                    ts = %record.ts,
                    server_id = %record.server_id,
                    event = "http_rejected",
                    status = *status,
                    reason = *reason,
                    detail = *detail,
                    subject = subject.as_deref(),
                    method = %method,
                    path = %path,
                    remote_addr = remote_addr.as_deref(),
                    forwarded_for = forwarded_for.as_deref(),
                    session_id = session_id.as_deref(),
                    "http rejected"
                );
            }
            other => {
                let fields = serde_json::to_string(other)?;
                tracing::info!(
                    target: "secure_tools::audit",
                    ts = %record.ts,
                    server_id = %record.server_id,
                    event = other.name(),
                    fields = %fields,
                    "{}",
                    other.name()
                );
            }
        }
        Ok(())
    }
}

/// Keeps records in memory: for tests and benchmarks. [`MemorySink::records`] gives them as JSON values, the shape
/// a JSON Lines reader would see.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    records: Arc<Mutex<Vec<AuditRecord>>>,
}

impl MemorySink {
    /// An empty sink; clones share the records.
    pub fn new() -> Self {
        MemorySink::default()
    }

    /// The records so far, as JSON values.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records
            .iter()
            .map(|r| serde_json::to_value(r).expect("audit records serialize"))
            .collect()
    }

    /// The records so far, typed.
    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Lends the records so far to `read`, under the sink's lock: for a count, or a few of them, without copying
    /// them all.
    #[cfg(feature = "testing")]
    pub(crate) fn with_records<R>(&self, read: impl FnOnce(&[AuditRecord]) -> R) -> R {
        read(&self.records.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Forgets the records so far.
    pub fn clear(&self) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl AuditSink for MemorySink {
    fn write(&self, record: &AuditRecord) -> Result<(), AuditError> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record.clone());
        Ok(())
    }
}

impl<T: AuditSink> AuditSink for Arc<T> {
    fn write(&self, record: &AuditRecord) -> Result<(), AuditError> {
        (**self).write(record)
    }
    fn flush(&self) -> Result<(), AuditError> {
        (**self).flush()
    }
}
