//! Records of refused traffic, throttled. Refusing a request costs a client nothing, so without a throttle one
//! client could write thousands of records a second and drown the trail (and the disk) in them. Up to a rate
//! ([`DEFAULT_REJECTION_RECORDS`], a burst of 50 and 10 a second after it) each refusal is written; past it, each
//! is counted, and the count is written as an `audit_suppressed` record before the next record that is written,
//! every few seconds ([`FLUSH_COUNTS_EVERY`], by the runner), when the last holder drops it, and at shutdown.
//! Every refusal is accounted for, written or counted.
//!
//! Tool calls are never throttled: each has its one record, whatever happens.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use governor::DefaultDirectRateLimiter;

use crate::audit::{Audit, AuditEvent};
use crate::call::Rate;

/// How many refusal records are written before they are counted instead: 50 at once, then 10 a second.
pub const DEFAULT_REJECTION_RECORDS: Rate = Rate {
    count: 50,
    period: std::time::Duration::from_secs(5),
};

/// How often the server writes the counts of refusals left unwritten, if there are any.
pub(crate) const FLUSH_COUNTS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The kinds of refusal throttled, each counted on its own.
const KINDS: [&str; 3] = ["http_rejected", "tls_rejected", "connection_rejected"];

pub(crate) struct Rejections {
    audit: Audit,
    limiter: Option<DefaultDirectRateLimiter>,
    /// The refusals counted since the last count was written, by kind and then by reason.
    suppressed: Mutex<[BTreeMap<&'static str, u64>; KINDS.len()]>,
    /// Whether the operator was told that records are being counted; reset once they are written again.
    warned: AtomicBool,
    #[cfg(feature = "otel")]
    telemetry: Option<crate::telemetry::Telemetry>,
}

impl Rejections {
    /// Refusals recorded at most at `rate`; `None` writes every one.
    pub(crate) fn new(audit: Audit, rate: Option<Rate>) -> Self {
        Rejections {
            audit,
            limiter: rate
                .map(|rate| DefaultDirectRateLimiter::direct(crate::call::limits::quota(rate))),
            suppressed: Default::default(),
            warned: AtomicBool::new(false),
            #[cfg(feature = "otel")]
            telemetry: None,
        }
    }

    /// Counts authentication failures in these metrics too (before the throttle, so a flood shows in full).
    #[cfg(feature = "otel")]
    pub(crate) fn counting(mut self, telemetry: Option<crate::telemetry::Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Writes `event` if the rate allows, else counts it.
    pub(crate) fn record(&self, event: AuditEvent) {
        #[cfg(feature = "otel")]
        if let Some(telemetry) = &self.telemetry {
            match &event {
                AuditEvent::HttpRejected {
                    status: 401,
                    reason,
                    ..
                }
                | AuditEvent::TlsRejected { reason, .. } => telemetry.auth_failure(reason),
                _ => {}
            }
        }
        let admitted = self
            .limiter
            .as_ref()
            .is_none_or(|limiter| limiter.check().is_ok());
        if !admitted {
            let kind = KINDS.iter().position(|k| *k == event.name());
            if let (Some(kind), Some(reason)) = (kind, event.rejection_reason()) {
                *self.counts()[kind].entry(reason).or_default() += 1;
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "refused requests arrive faster than their records are written; counting them instead"
                    );
                }
                return;
            }
        }
        self.flush_counts();
        self.write(event);
    }

    /// Writes the counts of records left out, if any.
    pub(crate) fn flush_counts(&self) {
        let counted = std::mem::take(&mut *self.counts());
        for (kind, reasons) in KINDS.iter().zip(counted) {
            let count = reasons.values().sum();
            if count > 0 {
                self.warned.store(false, Ordering::Relaxed);
                self.write(AuditEvent::AuditSuppressed {
                    suppressed_event: kind,
                    count,
                    reasons,
                });
            }
        }
    }

    /// The counts (a count's update cannot panic: a poisoned lock's data is whole).
    fn counts(&self) -> std::sync::MutexGuard<'_, [BTreeMap<&'static str, u64>; KINDS.len()]> {
        self.suppressed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, event: AuditEvent) {
        if let Err(error) = self.audit.record(event) {
            tracing::error!(%error, "could not audit a refused request");
        }
    }
}

/// The counts left are written when the last holder goes (a router made for embedding, dropped with its app).
impl Drop for Rejections {
    fn drop(&mut self) {
        self.flush_counts();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MemorySink;

    fn rejected() -> AuditEvent {
        AuditEvent::HttpRejected {
            status: 401,
            reason: "missing_token",
            detail: None,
            subject: None,
            method: "POST".into(),
            path: "/mcp".into(),
            remote_addr: Some("127.0.0.1:40000".into()),
            forwarded_for: None,
            session_id: None,
        }
    }

    #[test]
    fn past_the_burst_refusals_are_counted_and_the_count_written() {
        let sink = MemorySink::default();
        let audit = Audit::new("test", vec![std::sync::Arc::new(sink.clone())]);
        let rejections = Rejections::new(
            audit,
            Some(Rate::new(5, std::time::Duration::from_secs(3600)).unwrap()),
        );
        for _ in 0..20 {
            rejections.record(rejected());
        }
        assert_eq!(sink.records().len(), 5);
        rejections.flush_counts();
        let records = sink.records();
        assert_eq!(records.len(), 6);
        assert_eq!(records[5]["event"], "audit_suppressed");
        assert_eq!(records[5]["suppressed_event"], "http_rejected");
        assert_eq!(records[5]["count"], 15);
        // Nothing left to count.
        rejections.flush_counts();
        assert_eq!(sink.records().len(), 6);
    }

    /// A red team's flood of junk requests (`404`) hid its token guesses (`401`) in one count: the count says how
    /// many of each reason were left out.
    #[test]
    fn a_count_says_how_many_of_each_reason_were_left_out() {
        let sink = MemorySink::default();
        let audit = Audit::new("test", vec![std::sync::Arc::new(sink.clone())]);
        let rejections = Rejections::new(
            audit,
            Some(Rate::new(5, std::time::Duration::from_secs(3600)).unwrap()),
        );
        let not_found = || AuditEvent::HttpRejected {
            status: 404,
            reason: "not_found",
            detail: None,
            subject: None,
            method: "GET".into(),
            path: "/junk".into(),
            remote_addr: Some("127.0.0.1:40000".into()),
            forwarded_for: None,
            session_id: None,
        };
        for _ in 0..30 {
            rejections.record(not_found());
        }
        for _ in 0..7 {
            rejections.record(rejected());
        }
        rejections.record(AuditEvent::TlsRejected {
            reason: "no_client_certificate",
            detail: None,
            peer: "127.0.0.1:40001".into(),
        });
        rejections.flush_counts();
        let records = sink.records();
        let counts: Vec<_> = records
            .iter()
            .filter(|r| r["event"] == "audit_suppressed")
            .collect();
        assert_eq!(counts.len(), 2, "{records:?}");
        assert_eq!(counts[0]["suppressed_event"], "http_rejected");
        assert_eq!(counts[0]["count"], 32);
        assert_eq!(
            counts[0]["reasons"],
            serde_json::json!({"not_found": 25, "missing_token": 7})
        );
        assert_eq!(counts[1]["suppressed_event"], "tls_rejected");
        assert_eq!(counts[1]["count"], 1);
        assert_eq!(
            counts[1]["reasons"],
            serde_json::json!({"no_client_certificate": 1})
        );
    }

    #[test]
    fn without_a_rate_every_refusal_is_written() {
        let sink = MemorySink::default();
        let audit = Audit::new("test", vec![std::sync::Arc::new(sink.clone())]);
        let rejections = Rejections::new(audit, None);
        for _ in 0..200 {
            rejections.record(rejected());
        }
        assert_eq!(sink.records().len(), 200);
    }

    /// Counts are not left in memory when nothing else is written: dropping the last holder writes them.
    #[test]
    fn counts_left_are_written_when_dropped() {
        let sink = MemorySink::default();
        let audit = Audit::new("test", vec![std::sync::Arc::new(sink.clone())]);
        let rejections = Rejections::new(audit, Some(Rate::per_minute(1).unwrap()));
        for _ in 0..5 {
            rejections.record(rejected());
        }
        assert_eq!(sink.records().len(), 1);
        drop(rejections);
        let records = sink.records();
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[1]["event"], "audit_suppressed");
        assert_eq!(records[1]["count"], 4);
    }
}
