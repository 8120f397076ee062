//! Keeping rmcp's own `debug` and `trace` events, which print requests whole, out of your logs (feature
//! `tracing-subscriber`).
//!
//! rmcp (3.11) logs, with targets under `rmcp`:
//!
//! - at `debug`, every request it receives (`received request`, target `rmcp::service`), params included, so a
//!   `tools/call`'s arguments, redacted ones too; and every result it sends (`response message`), so a tool's output;
//! - at `trace`, every event of its serve loop (`new event`), the same messages again, and over streamable HTTP every
//!   message it sends;
//! - at `info` and above, nothing of a request's params or a result: the client's `initialize` information, its
//!   notifications whole (`received notification`), the `reason` of its `notifications/cancelled` whole
//!   (`cancelled`: any text, as long as a message may be, a line per cancellation), the end of a session, and
//!   errors; and, at `warn`, each request it answers with an error or rejects (`response error`, `rejected peer
//!   request`) and each response of the client's it cannot route (`Error sending response`), each with the
//!   client's request id printed raw: a line feed in an id forged whole lines of a log (a fake audit record among
//!   them, where the audit goes to stderr), and a 4 MB id wrote 4 MB of log per request. [`filter`] drops the
//!   events that print what a client sent whole and those that print its request id (an unknown tool's refusal is in
//!   the audit).
//!
//! What is left of rmcp's events, and your own, can still carry what a client sent (an error's text, say). Give
//! your `fmt` layer [`fields`]: it writes every control, format and separator character of a field as `\u{...}`
//! and cuts an event's fields past [`MAX_FIELDS_BYTES`], so no client can write a line of your log, send the
//! terminal a control sequence, or make one line of it large.
//!
//! The runners hand rmcp a call's arguments where those events do not look: the stdio runner (see
//! [`LineTransport::hold_tool_arguments`](crate::serve::LineTransport::hold_tool_arguments)) and the HTTP runner,
//! which reads a `tools/call`'s body before rmcp does, whenever something may hear `debug` events (a subscriber,
//! or a `log` logger that `tracing`'s `log` features feed). So no subscriber sees the arguments of a call made to a
//! runner, at any level. Where rmcp reads messages itself (secure tools merged into a server that uses rmcp's own
//! transports) it prints them, and only your subscriber can keep them out: give it [`filter`]. A subscriber at
//! `debug` without it logs every argument of every such call, and a tool's output on every transport.

use std::fmt;

use tracing::Metadata;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// The most detailed level of rmcp's events that [`filter`] lets through.
pub const RMCP_MAX_LEVEL: LevelFilter = LevelFilter::INFO;

/// A filter that lets everything through but the rmcp crate's events and spans below [`RMCP_MAX_LEVEL`], and its
/// events that print what a client sent whole (a notification, a cancellation's reason), and the OpenTelemetry
/// crates' events that carry a URL, an endpoint or headers (which may hold a collector's key), whatever level the
/// rest of your subscriber listens at.
///
/// It only ever removes events, so it goes with your own filter (an `EnvFilter` from `RUST_LOG`, say), combined
/// with it into one (`EnvFilter::from_default_env().and(secure_tools::logging::filter())`, `and` from
/// `tracing_subscriber::filter::FilterExt`) on your layer (`.with_filter(...)`): an event must pass both, and the
/// pair keeps your filter's level. `RUST_LOG=rmcp=trace` then still shows rmcp only up to `info`. It matches rmcp's
/// targets exactly (`rmcp` and `rmcp::...`); a directive such as `rmcp=info` in an `EnvFilter` or a `Targets` would
/// also catch every target that merely starts with `rmcp` (`rmcp_client`, say).
///
/// Not as a layer of its own beside your filter (`.with(EnvFilter::...).with(filter())`): it lets every level
/// through for other targets, and a subscriber's most detailed level is the most detailed of its layers', so
/// `tracing`'s maximum level would be `trace` whatever yours: events below your level would no longer be skipped
/// by that one comparison, and the runners, which hold a call's arguments out of rmcp's sight whenever the maximum
/// level lets rmcp's `debug` events be heard, would hold every call's (a second parse and a copy of each).
///
/// ```
/// use tracing::Subscriber as _;
/// use tracing_subscriber::filter::{FilterExt as _, LevelFilter, Targets};
/// use tracing_subscriber::prelude::*;
///
/// // Your filter: `EnvFilter::from_default_env()` (feature `env-filter`) goes the same way.
/// let levels = Targets::new().with_default(LevelFilter::INFO);
/// // Your layer: `fmt::layer()`, say.
/// let layer = tracing_subscriber::layer::Identity::new();
/// let subscriber = tracing_subscriber::registry()
///     .with(layer.with_filter(levels.and(secure_tools::logging::filter())));
/// assert_eq!(subscriber.max_level_hint(), Some(LevelFilter::INFO));
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!(target: "rmcp::service", "client initialized"); // kept
///     tracing::debug!(target: "rmcp::service", "received request"); // dropped
///     tracing::info!("your own info event"); // kept
/// });
/// ```
///
/// A layer meant to hear every level but rmcp's detail takes it alone:
/// `layer.with_filter(secure_tools::logging::filter())`.
pub fn filter() -> FilterFn<fn(&Metadata<'_>) -> bool> {
    // It lets every level through for other targets, and says so: combined with a filter that has a level (with
    // `and`), the pair keeps that level as its hint, so events and spans more detailed than it are not even
    // built (without a hint, the pair's would be unknown, as if every level were on).
    FilterFn::new(passes as fn(&Metadata<'_>) -> bool).with_max_level_hint(LevelFilter::TRACE)
}

fn passes(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    let rmcp = target == "rmcp" || target.starts_with("rmcp::");
    // rmcp's `received notification` (at `info`) prints each notification whole, what a client put in it
    // included (a `tools/call` sent without an id, arguments and all), and its `cancelled` (at `info`) the `reason`
    // a client gave in `notifications/cancelled`, whole (megabytes of it, a line per cancellation): not let through
    // at any level. The cancelled call's audit record says it was cancelled.
    // Its events with an `id` or `originating_request_id` field print the client's request id raw, whatever its
    // length and whatever it holds (line feeds, a terminal's escape): not let through either.
    // The OpenTelemetry exporter's event on a refused export (at `debug`) quotes the signal's whole URL, which may
    // carry a collector's key in its query (red-team finding); none that carries a URL, an endpoint or headers is
    // let through, at any level.
    if target.starts_with("opentelemetry")
        && ["url", "endpoint", "headers"]
            .iter()
            .any(|name| metadata.fields().field(name).is_some())
    {
        return false;
    }
    !rmcp
        || (*metadata.level() <= RMCP_MAX_LEVEL
            && metadata.fields().field("notification").is_none()
            && metadata.fields().field("reason").is_none()
            && metadata.fields().field("id").is_none()
            && metadata.fields().field("originating_request_id").is_none())
}

/// The most bytes of an event's fields (or of a span's, each time some are recorded) that [`fields`] writes; past
/// it they are cut, saying how many bytes were left out. A line also shows the fields of the spans it is in, each
/// bounded the same way.
pub const MAX_FIELDS_BYTES: usize = 4096;

/// Field formatting for a `fmt` layer (`fmt::layer().fmt_fields(secure_tools::logging::fields())`) that no client
/// can forge a line of the log with: `tracing_subscriber`'s default fields, with every control character (line
/// feeds and the escape that starts a terminal's control sequences among them), format character (Unicode's `Cf`:
/// zero-width and bidirectional ones) and line or paragraph separator written as `\u{...}`, and an event's fields
/// cut past [`MAX_FIELDS_BYTES`]. The file server logs through it.
///
/// ```
/// use tracing_subscriber::prelude::*;
///
/// let layer = tracing_subscriber::fmt::layer()
///     .with_writer(std::io::stderr)
///     .fmt_fields(secure_tools::logging::fields());
/// let _subscriber = tracing_subscriber::registry().with(layer);
/// ```
pub fn fields() -> SafeFields {
    SafeFields(())
}

/// See [`fields`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SafeFields(());

impl<'writer> FormatFields<'writer> for SafeFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut shown = Shown::default();
        DefaultFields::new().format_fields(Writer::new(&mut shown), fields)?;
        writer.write_str(&shown.text)?;
        if shown.left_out > 0 {
            write!(writer, " ... ({} bytes more)", shown.left_out)?;
        }
        Ok(())
    }
}

/// Fields' text as [`fields`] writes it, up to [`MAX_FIELDS_BYTES`], and how many bytes were left out.
#[derive(Default)]
struct Shown {
    text: String,
    left_out: usize,
}

impl fmt::Write for Shown {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.text.len() >= MAX_FIELDS_BYTES {
                self.left_out += c.len_utf8();
            } else if hidden(c) {
                fmt::Write::write_fmt(&mut self.text, format_args!("\\u{{{:04x}}}", u32::from(c)))?;
            } else {
                self.text.push(c);
            }
        }
        Ok(())
    }
}

/// Whether `c` is written out by [`fields`]: a control, format or line or paragraph separator character, or another
/// that shows as nothing (a Hangul filler, a variation selector: a second round's client name held them, written
/// as they were by rmcp's log of the peer it met, while the audit file escaped them).
fn hidden(c: char) -> bool {
    c.is_control()
        || crate::text::format_or_separator(c)
        || crate::text::invisible(c)
        || crate::text::variation_selector(c)
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing::callsite::{Callsite, Identifier};
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;
    use tracing::subscriber::Interest;

    use super::*;

    struct Nowhere;
    impl Callsite for Nowhere {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!()
        }
    }
    static NOWHERE: Nowhere = Nowhere;

    fn passes_at(target: &'static str, level: Level) -> bool {
        let metadata = Metadata::new(
            "event",
            target,
            level,
            None,
            None,
            None,
            FieldSet::new(&[], Identifier(&NOWHERE)),
            Kind::EVENT,
        );
        passes(&metadata)
    }

    #[test]
    fn combined_with_a_level_the_level_stays_the_hint() {
        use tracing_subscriber::filter::{FilterExt as _, Targets};
        use tracing_subscriber::layer::Filter;
        use tracing_subscriber::registry::Registry;
        let warn = Targets::new().with_default(LevelFilter::WARN);
        let both = warn.and(filter());
        assert_eq!(
            Filter::<Registry>::max_level_hint(&both),
            Some(LevelFilter::WARN)
        );
        assert_eq!(
            Filter::<Registry>::max_level_hint(&filter()),
            Some(LevelFilter::TRACE)
        );
    }

    /// The subscriber's own hint is what `tracing` takes as the most detailed level anything listens at (what the
    /// runners read to know whether rmcp's `debug` events may be heard).
    #[test]
    fn combined_with_the_users_filter_the_subscriber_keeps_the_users_level() {
        use tracing::Subscriber as _;
        use tracing_subscriber::filter::{FilterExt as _, Targets};
        use tracing_subscriber::layer::{Identity, Layer as _, SubscriberExt as _};
        let warn = || Targets::new().with_default(LevelFilter::WARN);
        // The form the docs show: the user's layer with one filter, the user's level and this one.
        let combined =
            tracing_subscriber::registry().with(Identity::new().with_filter(warn().and(filter())));
        assert_eq!(combined.max_level_hint(), Some(LevelFilter::WARN));
        // Each a layer of its own, the subscriber takes the most detailed of their hints: every level.
        let stacked = tracing_subscriber::registry().with(warn()).with(filter());
        assert_eq!(stacked.max_level_hint(), Some(LevelFilter::TRACE));
    }

    #[test]
    fn caps_rmcp_and_only_rmcp_at_info() {
        for target in [
            "rmcp",
            "rmcp::service",
            "rmcp::transport::streamable_http_server::tower",
        ] {
            for level in [Level::ERROR, Level::WARN, Level::INFO] {
                assert!(passes_at(target, level), "{target} {level}");
            }
            for level in [Level::DEBUG, Level::TRACE] {
                assert!(!passes_at(target, level), "{target} {level}");
            }
        }
        for target in [
            "rmcp_logs",
            "rmcpx::service",
            "secure_tools::serve",
            "my_server",
        ] {
            assert!(passes_at(target, Level::TRACE), "{target}");
        }
    }

    /// A red team's (round three): at `debug`, the OTLP exporter's event on a refused export quoted the signal's
    /// whole URL, a collector key in its query included. The OpenTelemetry crates' events that carry a URL, an
    /// endpoint or headers are not let through, at any level; their others are.
    #[test]
    fn the_exporters_urls_and_headers_are_not_let_through() {
        let passes_with = |target: &'static str, names: &'static [&'static str]| {
            passes(&Metadata::new(
                "event",
                target,
                Level::ERROR,
                None,
                None,
                None,
                FieldSet::new(names, Identifier(&NOWHERE)),
                Kind::EVENT,
            ))
        };
        for target in ["opentelemetry-otlp", "opentelemetry_sdk", "opentelemetry"] {
            for fields in [
                &["name", "status_code", "url", "response_body"][..],
                &["name", "endpoint"],
                &["name", "headers"],
            ] {
                assert!(!passes_with(target, fields), "{target} {fields:?}");
            }
            assert!(passes_with(target, &["name", "error"]), "{target}");
        }
        assert!(passes_with("my_server", &["url"]));
    }

    /// A field's line feeds, escape and format characters are written out, and an event's fields are cut past the
    /// bound (a red team forged log lines, and wrote megabytes of log per request, through values a client chose).
    #[test]
    fn fields_cannot_forge_a_line_nor_flood_the_log() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::prelude::*;
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .fmt_fields(fields());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let id = "x\n{\"event\":\"tool_call\"}\u{1b}[2J\u{202e}\u{2028}\u{3164}\u{fe0f}";
            tracing::warn!(%id, "response error");
            tracing::warn!(id = %"y".repeat(100_000), "response error");
        });
        let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert!(
            lines[0].ends_with(
                r#"response error id=x\u{000a}{"event":"tool_call"}\u{001b}[2J\u{202e}\u{2028}\u{3164}\u{fe0f}"#
            ),
            "{log}"
        );
        assert!(
            lines[1].len() < MAX_FIELDS_BYTES + 200,
            "{} bytes",
            lines[1].len()
        );
        assert!(
            lines[1].ends_with("bytes more)"),
            "{}",
            &lines[1][lines[1].len() - 40..]
        );
    }

    /// rmcp's events that print a client's request id are dropped whatever their level.
    #[test]
    fn rmcps_events_with_a_request_id_are_dropped() {
        let metadata = Metadata::new(
            "event",
            "rmcp::service",
            Level::WARN,
            None,
            None,
            None,
            FieldSet::new(&["message", "id", "error"], Identifier(&NOWHERE)),
            Kind::EVENT,
        );
        assert!(!passes(&metadata));
        assert!(passes_at("rmcp::service", Level::WARN));
    }
}
